import math

import numpy as np
import pytest

from lfusion.curve import CurveConfig
from lfusion.hc_bands import band_dice, band_summary, read_replay, render_replay_table
from lfusion.metrics import TRIMESTERS, first_trimester, trimester
from lfusion.train_heads import epoch_pool


def test_trimester_bands_follow_hadlock_and_agree_with_first_trimester():
    hc = np.array([60.0, 89.0, 90.0, 175.0, 257.0, 258.0, 330.0])
    assert list(trimester(hc)) == [0, 0, 1, 1, 1, 2, 2]
    assert list(trimester(hc) == 0) == list(first_trimester(hc))
    assert len(TRIMESTERS) == 3


def test_band_summary_per_band_and_all_with_missing_measurements():
    rows = band_summary([60, 80, 150, 300], [0.8, None, 0.95, 0.9], [65, None, 148, 310])
    assert [r["band"] for r in rows] == list(TRIMESTERS) + ["all"]
    first, second, third, everything = rows
    assert first["scans"] == 2 and first["dice_mean"] == pytest.approx(0.8) and first["hc_measured"] == 1
    assert first["hc_signed_error_mean_mm"] == pytest.approx(5.0) and second["hc_signed_error_mean_mm"] == pytest.approx(-2.0)
    assert first["hc_range_mm"] == [60.0, 80.0]
    assert everything["scans"] == 4 and everything["hc_abs_error_mean_mm"] == pytest.approx(17.0 / 3)
    assert band_dice(rows)["third trimester"] == pytest.approx(0.9)


def test_an_empty_band_is_nan_not_an_error():
    rows = band_summary([150.0], [0.9], [151.0])
    assert rows[0]["scans"] == 0 and math.isnan(rows[0]["dice_mean"]) and math.isnan(rows[0]["hc_range_mm"][0])


def test_replay_table_reads_frames_csv_and_skips_scans_without_a_reference(tmp_path):
    frames = tmp_path / "frames.csv"
    frames.write_text(
        "source,hcTrueMm,ellipseDice,hcFit,pixelsDice,pixelsHcMm\n"
        "a.png,70,0.8,75,0.7,80\n"
        "b.png,200,0.96,199,0.95,\n"
        "c.png,,0.5,10,0.5,10\n"
    )
    columns = read_replay(frames)
    assert columns["hcTrueMm"] == [70.0, 200.0] and columns["pixelsHcMm"] == [80.0, None]
    table = render_replay_table(columns, "test")
    assert "| first trimester (1) | 70-70 | ellipse | 0.800 / 0.800 | 5.00 / 5.00 | +5.00 | 1 |" in table
    assert "| all (2) | 70-200 | pixels | 0.825 / 0.825 | 10.00 / 10.00 | +10.00 | 1 |" in table


def test_epoch_pool_repeats_first_trimester_images_only(tmp_path):
    np.save(tmp_path / "train.hc_mm.npy", np.array([60.0, 200.0, 85.0, 300.0]))
    assert epoch_pool(tmp_path, 4, 1) is None
    assert sorted(epoch_pool(tmp_path, 4, 3).tolist()) == [0, 0, 0, 1, 2, 2, 2, 3]
    with pytest.raises(ValueError, match="5 training images"):
        epoch_pool(tmp_path, 5, 2)
    with pytest.raises(FileNotFoundError, match="rebuild the feature cache"):
        epoch_pool(tmp_path / "missing", 4, 2)


def test_oversampling_is_its_own_curve_budget():
    assert CurveConfig().key() == "dropout head, 12 epochs (<= 10 min), 0 augmented copies, k=10"
    assert CurveConfig(small_head_repeats=3).key() == CurveConfig().key() + ", first-trimester scans x3"
