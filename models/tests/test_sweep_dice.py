import pytest

from lfusion.sweep_dice import TARGET_PCT, section, sweep_summary


def test_summary_of_clips_gives_the_mean_per_frame_position():
    # Two clips of three frames: frame 0 perfect, frame 2 poor in both.
    summary = sweep_summary([1.0, 0.95, 0.5, 1.0, 0.85, 0.7], frames_per_clip=3)
    assert summary["frames"] == 6 and summary["clips"] == 2
    assert summary["mean"] == pytest.approx(100 * 5.0 / 6)
    assert summary["meanByFrame"] == pytest.approx([100.0, 90.0, 60.0])
    assert summary["atLeast90"] == pytest.approx(3 / 6)
    assert summary["atLeastTarget"] == pytest.approx(sum(v * 100 >= TARGET_PCT for v in [1.0, 0.95, 0.5, 1.0, 0.85, 0.7]) / 6)


def test_still_frames_have_no_frame_positions():
    summary = sweep_summary([0.9, 0.8])
    assert "meanByFrame" not in summary and summary["median"] == pytest.approx(85.0)


def test_partial_clips_and_empty_input_are_errors():
    with pytest.raises(ValueError):
        sweep_summary([0.9, 0.8, 0.7], frames_per_clip=2)
    with pytest.raises(ValueError):
        sweep_summary([])


def test_section_names_both_rows_and_the_settings():
    sweeps, still = sweep_summary([0.9, 0.8], frames_per_clip=2), sweep_summary([0.95])
    meta = {"m": 10, "n": 4, "k": 10, "seed": 18, "seconds": 12.0, "encoderSha256": "ab" * 32, "augmentation": "paper"}
    text = section(sweeps, still, meta)
    assert "| simulated test sweeps (every frame) | 2 | 85.00 |" in text
    assert "| still test scans, same heads and resolution | 1 | 95.00 |" in text
    assert "(10, 4, 10)" in text and "`paper`" in text
