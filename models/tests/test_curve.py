from pathlib import Path

from lfusion.results import replace_section
from lfusion.curve import BEGIN, END, CurveConfig, pretraining_position, render_table, snapshot_label, upsert_row


def row(sha, images, budget="b", measured="2026-11-30T21:00:00+00:00", dice=0.93):
    return {
        "label": f"encoder-{sha}", "encoder_sha256": sha, "budget": budget, "measured_utc": measured,
        "pretraining": {"minutes": images / 500, "images_seen": images, "run_step": None, "loss": 0.8},
        "test": {"dice": dice, "iou": 0.88, "hd_mm": 9.9, "ad_mm": 8.2, "scans": 118}, "val_dice": 0.91, "head_epochs_run": 12,
        "elastic_auroc": {"expected_entropy": 0.55, "mutual_information": 0.6}, "seconds": 600.0, "load_average": [4.2, 5.0],
    }


def test_position_counts_a_warm_start_and_reads_old_records():
    warm = {"total_wall_clock_minutes": 10.0, "images_seen": 320, "pretraining_minutes": 87.0, "pretraining_images_seen": 44224, "steps": 10, "final_loss": 0.9}
    assert pretraining_position(warm) == {"minutes": 87.0, "images_seen": 44224, "run_step": 10, "loss": 0.9}
    old = {"total_wall_clock_minutes": 77.02, "images_seen": 43904, "steps": 1372, "final_loss": 0.828}
    assert pretraining_position(old)["minutes"] == 77.02 and pretraining_position(old)["images_seen"] == 43904
    assert pretraining_position({}) == {"minutes": 0.0, "images_seen": 0, "run_step": None, "loss": None}


def test_upsert_replaces_the_same_encoder_and_budget_and_orders_by_images():
    rows = upsert_row([], row("b", 2000))
    rows = upsert_row(rows, row("a", 1000))
    rows = upsert_row(rows, row("a", 1000, budget="longer"))
    rows = upsert_row(rows, row("b", 2000, measured="2026-11-30T22:00:00+00:00", dice=0.94))
    assert [(r["encoder_sha256"], r["budget"]) for r in rows] == [("a", "b"), ("b", "b"), ("a", "longer")]
    assert rows[1]["test"]["dice"] == 0.94


def test_render_groups_by_budget_in_pretraining_order():
    rows = [row("late", 50000)]
    for extra in (row("early", 0), row("x", 10, budget="a")):
        rows = upsert_row(rows, extra)
    table = render_table(rows)
    lines = table.splitlines()
    assert lines[0] == "Budget: a." and lines.index("Budget: b.") > lines.index("Budget: a.")
    body = [line for line in lines if line.startswith("| encoder-")]
    assert [line.split(" | ")[0] for line in body] == ["| encoder-x", "| encoder-early", "| encoder-late"]
    assert "| 50,000 | 100 | 0.800 | 0.9300 | 9.9 | 8.2 | 0.9100 (12) | 0.550 / 0.600 | 2026-11-30 21:00 (600 s, load 4.2) |" in table


def test_section_is_replaced_in_place_or_appended():
    appended = replace_section("# Results\n\ntext\n", "table 1", BEGIN, END)
    assert appended == f"# Results\n\ntext\n\n{BEGIN}\ntable 1\n{END}\n"
    replaced = replace_section(appended + "\n## Later section\n", "table 2\n", BEGIN, END)
    assert replaced == f"# Results\n\ntext\n\n{BEGIN}\ntable 2\n{END}\n\n## Later section\n"


def test_budget_key_names_what_differs():
    assert CurveConfig().key() != CurveConfig(head_epochs=24).key() != CurveConfig(augmented_copies=2).key()
    assert "12 epochs" in CurveConfig().key() and "0 augmented copies" in CurveConfig().key()


def test_labels_name_the_run_and_step_of_a_milestone():
    assert snapshot_label(Path("/work/pretrain-runs/mae/snapshots/encoder-step000200.pt")) == "mae step000200"
    assert snapshot_label(Path("checkpoints/encoder.pt")) == "checkpoints/encoder.pt"
    assert snapshot_label(None) == "random initialisation"


def test_render_adds_the_band_table_for_rows_that_have_bands():
    from lfusion.hc_bands import band_summary

    banded = row("b", 10) | {"test_by_band": band_summary([60.0, 150.0, 300.0], [0.8, 0.95, 0.9], [65.0, 148.0, 310.0])}
    table = render_table([row("a", 0), banded])
    assert "| encoder-b | b | 0.8000 / 5.0 (1) | 0.9500 / 2.0 (1) | 0.9000 / 10.0 (1) | 0.8833 / 5.7 (3) |" in table
    assert "| encoder-a | b |" not in table and "band" not in render_table([row("a", 0)])
