import numpy as np

from lfusion.ood_decision import BEGIN, END, choose_thresholds, fires, fused_score, tail_thresholds, write_section


def test_tail_thresholds_leave_at_most_the_share_above():
    scores = np.arange(1.0, 101.0).reshape(100, 1)
    assert tail_thresholds(scores, 0.0)[0] == 100.0
    assert tail_thresholds(scores, 0.025)[0] == 98.0  # 99 and 100 above: 2 of 100
    assert (scores[:, 0] > tail_thresholds(scores, 0.05)[0]).sum() == 5


def test_chosen_thresholds_keep_the_union_false_alarm_rate():
    rng = np.random.default_rng(0)
    val = rng.normal(size=(200, 4))
    thresholds, share = choose_thresholds(val, 0.025)
    assert fires(val, thresholds).mean() <= 0.025
    assert share > 0
    # One more scan per score would break the budget.
    looser = tail_thresholds(val, share + 1 / 200)
    assert fires(val, looser).mean() > 0.025


def test_fused_score_is_positive_exactly_when_the_decision_fires():
    rng = np.random.default_rng(1)
    val = rng.normal(size=(100, 3))
    thresholds, _ = choose_thresholds(val, 0.05)
    other = rng.normal(size=(300, 3)) * 2
    assert np.array_equal(fused_score(other, thresholds, val) > 0, fires(other, thresholds))


def test_section_is_replaced_not_duplicated(tmp_path):
    from lfusion.results import READING_MARKER

    doc = tmp_path / "results.md"
    doc.write_text(f"# tables\n\n{READING_MARKER}\nhand-written\n")
    write_section(doc, f"{BEGIN}\nfirst\n{END}\n")
    write_section(doc, f"{BEGIN}\nsecond\n{END}\n")
    text = doc.read_text()
    assert text.count(BEGIN) == 1 and "second" in text and "first" not in text
    assert text.index("second") < text.index(READING_MARKER) and text.endswith("hand-written\n")
