import json

import numpy as np
import pytest
import torch

from lfusion.evaluate import PATH_MEASURES, add_canonical, auroc_by_set, best_auxiliary, image_scores, training_time
from lfusion.measures import sample_measures
from lfusion.results import READING_MARKER, collect, json_safe, kept_reading, markdown, segmentation_table, statistics

GENERATOR = torch.Generator().manual_seed(0)


def maps():
    return sample_measures(torch.randn(5, 64, generator=GENERATOR))


def test_image_scores_of_one_and_two_paths():
    single = image_scores({"unet": maps()})
    assert set(single) == {f"unet.{m}|mean" for m in PATH_MEASURES} | {f"unet.calibrated@{m}" for m in PATH_MEASURES}
    both = image_scores({"laplace": maps(), "dropout": maps()})
    assert len(both) == 2 * 8 + 8 and "fused@dropout.pixel_variance" in both


def test_auxiliary_choice_and_canonical_ids():
    scores = {
        "in": {"unet.expected_entropy|mean": [0.1, 0.2], "unet.pixel_variance|mean": [0.5, 0.6], "unet.calibrated@pixel_variance": [1.0, 2.0]},
        "gain": {"unet.expected_entropy|mean": [0.3, 0.4], "unet.pixel_variance|mean": [0.1, 0.2], "unet.calibrated@pixel_variance": [3.0, 4.0]},
    }
    for values in scores.values():
        for measure in ("expected_pairwise_kl", "mutual_information"):
            values[f"unet.{measure}|mean"] = [0.0, 0.0]
    table = auroc_by_set(scores)
    assert table["unet.expected_entropy|mean"] == {"gain": 1.0} and table["unet.pixel_variance|mean"] == {"gain": 0.0}
    assert best_auxiliary(table, ["unet"]) == "unet.expected_entropy"
    add_canonical(scores, {"unet.calibrated": "unet.pixel_variance"})
    assert scores["gain"]["unet.calibrated"] == [3.0, 4.0]


def record(model="ssn-unet", path="unet"):
    """A synthetic record: 4 scans, one empty prediction; EE is best on val, PV on test."""
    ood = {}
    for split, (ee, pv) in (("val", (0.9, 0.6)), ("test", (0.7, 0.95))):
        ood[split] = {f"{path}.expected_entropy|mean": {"gain_low": ee}, f"{path}.pixel_variance|mean": {"gain_low": pv}}
        ood[split] |= {f"{path}.calibrated@expected_entropy": {"gain_low": 0.8}, f"{path}.calibrated@pixel_variance": {"gain_low": 0.99}, f"{path}.calibrated": {"gain_low": 0.8}}
    return {
        "model": model,
        "label": "SSN U-Net",
        "input": "2D",
        "resolution": 256,
        "trainingSeconds": 900.0,
        "trainingNote": "test",
        "command": "cmd",
        "test": {"names": list("abcd"), "dice": [0.9, 0.8, 0.7, 0.0], "iou": [0.8, 0.7, 0.6, 0.0], "hd_mm": [1.0, 2.0, 3.0, None], "ad_mm": [2.0, 4.0, 6.0, None], "hc_truth_mm": [60.0, 80.0, 170.0, 200.0]},
        "ood": ood,
    }


def test_table1_statistics_and_first_trimester_subset():
    assert statistics([1.0, 2.0, 3.0, None]) == {"mean": 2.0, "sd": pytest.approx(np.std([1, 2, 3])), "p25": 1.5, "p75": 2.5, "count": 3}
    table = segmentation_table(record())
    assert table["all"]["dice_pct"]["mean"] == pytest.approx(60.0) and table["empty_masks"] == 1
    assert table["first_trimester"]["scans"] == 2 and table["first_trimester"]["dice_pct"]["mean"] == pytest.approx(85.0)
    assert table["all"]["hd_mm"]["count"] == 3


def test_table3_picks_the_measure_on_validation_and_reports_test():
    numbers = collect({"ssn-unet": record()})
    cell = numbers["table3"]["gain_low"]["SSN U."]
    assert cell["measure"] == "expected_entropy" and cell["individual"] == 0.7 and cell["calibrated"] == 0.8
    text = markdown({"ssn-unet": record()}, numbers, [])
    assert "*Paper: SSN U-Net*" in text and "| gain_low |" in text
    json.dumps(json_safe(numbers), allow_nan=False)


def test_hand_written_reading_is_kept():
    previous = "tables\n" + READING_MARKER + "\nour reading\n"
    assert kept_reading(previous) == "\n" + READING_MARKER + "\nour reading\n"
    assert kept_reading("tables only") == ""
    assert json_safe({"x": [float("nan"), np.float32(1.5), np.int64(2)]}) == {"x": [None, 1.5, 2]}


def test_lfusion_training_time_sums_the_step_stamps_and_names_the_encoder_pretraining(tmp_path):
    stamps = tmp_path / "build" / "stamps"
    stamps.mkdir(parents=True)
    for step, seconds in (("features", 10), ("heads-laplace", 20), ("laplace", 3), ("heads-dropout", 30)):
        (stamps / f"{step}.seconds").write_text(str(seconds))
    encoder = tmp_path / "encoder.pt"
    seconds, note = training_time("lfusion", tmp_path / "build", tmp_path / "baselines", encoder)
    assert seconds == 63 and "pretraining (not recorded" in note
    encoder.with_suffix(".json").write_text('{"pretraining_minutes": 335.06}')
    assert "encoder pretraining (335 min, once for all tasks)" in training_time("lfusion", tmp_path / "build", tmp_path / "baselines", encoder)[1]
