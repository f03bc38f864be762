import numpy as np

from lfusion.conformal import min_p
from lfusion.ood_decision import BEGIN, CLIP_TEXT, END, decision_section, evaluate, fires, held_out_alarms, markdown, with_section, write_section

NAMES = ["density", "uncertainty", "head-area-low"]


def test_decision_thresholds_are_the_min_p_test_and_hold_the_rate_on_new_scans():
    rng = np.random.default_rng(0)
    val = rng.normal(size=(116, 3))
    section, models, thresholds = decision_section(val, NAMES, 0.025, "validation split, 116 scans")
    conformal = section["conformal"]
    assert conformal["rank"] == 115 and conformal["calibrationScans"] == 116 and conformal["tailSize"] == 12
    assert conformal["expectedFalseAlarmRate"] == 2 / 117
    assert [section["thresholds"][n]["reason"] for n in NAMES] == ["wrong-anatomy", "uncertain-shape", "no-head"]
    # Per-score thresholds are the min-p test: the same frames fire either way.
    new = rng.normal(size=(20000, 3))
    assert np.array_equal(fires(new, thresholds), min_p(models, new) < conformal["level"])
    assert fires(new, thresholds).mean() < 0.035  # about 2/117 on average over validation draws
    # Thresholds lie beyond the validation maxima: the union of eight maxima is what raised 5% before.
    assert np.all(thresholds > val.max(axis=0))


def test_evaluation_reports_rates_with_intervals_and_auroc_of_the_min_p():
    rng = np.random.default_rng(1)
    val, test = rng.normal(size=(116, 3)), rng.normal(size=(118, 3))
    far = rng.normal(size=(40, 3)) + np.array([10.0, 0, 0])
    section, models, thresholds = decision_section(val, NAMES, 0.025, "validation split, 116 scans")
    table = evaluate({"val": val, "test": test, "ood-far": far}, NAMES, models, thresholds)
    assert table["ood-far"]["alarm"]["count"] == 40 and table["ood-far"]["alarm"]["ci95"][1] == 1.0
    assert table["ood-far"]["fusedAuroc"]["auroc"] == 1.0
    assert table["ood-far"]["single"]["density"]["auroc"] == 1.0
    low, high = table["test"]["alarm"]["ci95"]
    assert low <= table["test"]["alarm"]["rate"] <= high and "fusedAuroc" not in table["test"]
    held_out = {"folds": 5, "heads": 234, "alarm": {"count": 3, "rate": 3 / 234, "ci95": [0.002, 0.037]}}
    text = markdown(table, NAMES, section, held_out, "provenance")
    assert text.startswith(BEGIN) and text.rstrip().endswith(END) and "| ood-far | 40 | **1.000**" in text


def test_section_goes_before_biometry_which_stays_last():
    manifest = {"name": "p", "density": {}, "biometry": {"intervalScale": 2}}
    assert list(with_section(manifest, {"falseAlarmRate": 0.025})) == ["name", "density", "oodDecision", "biometry"]
    replaced = with_section({"oodDecision": {"old": 1}, "biometry": {}}, {"new": 1})
    assert list(replaced) == ["oodDecision", "biometry"] and replaced["oodDecision"] == {"new": 1}


def test_section_is_replaced_not_duplicated(tmp_path):
    from lfusion.results import READING_MARKER

    doc = tmp_path / "results.md"
    doc.write_text(f"# tables\n\n{READING_MARKER}\nhand-written\n")
    write_section(doc, f"{BEGIN}\nfirst\n{END}\n")
    write_section(doc, f"{BEGIN}\nsecond\n{END}\n")
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and "second" in text and "first" not in text
    assert text.index("second") < text.index(READING_MARKER) and text.endswith("hand-written\n")


def test_clip_decision_goes_into_the_clip_section_and_after_the_reading_that_regeneration_keeps(tmp_path):
    from lfusion.results import READING_MARKER

    manifest = {"name": "p", "clip": {"frames": 16}, "biometry": {}}
    updated = with_section(manifest, {"new": 1}, clip=True)
    assert updated["clip"] == {"frames": 16, "oodDecision": {"new": 1}} and "oodDecision" not in updated and list(updated) == ["name", "clip", "biometry"]
    doc = tmp_path / "results.md"
    doc.write_text(f"# tables\n\n{READING_MARKER}\nhand-written\n")
    begin, end = CLIP_TEXT["begin"], CLIP_TEXT["end"]
    write_section(doc, f"{begin}\nfirst\n{end}\n", begin, end)
    write_section(doc, f"{begin}\nsecond\n{end}\n", begin, end)
    text = doc.read_text()
    assert text.count(begin) == 1 and "first" not in text and text.index(READING_MARKER) < text.index("second")


def test_held_out_alarms_calibrate_without_the_fold_they_score():
    rng = np.random.default_rng(2)
    heads = rng.normal(size=(300, 3))
    heads[290:, 0] += 50.0  # the last fold's block holds 10 far scans: calibrated without them, they fire
    alarms = held_out_alarms(heads, 5, 0.025, 0.9)
    assert alarms[290:].all()
    assert alarms[:240].mean() < 0.05
