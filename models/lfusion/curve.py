"""The encoder pretraining curve: what one frozen-encoder snapshot is worth to the heads.

For one encoder checkpoint (a milestone of ``lfusion.pretrain --snapshots``, the committed
``checkpoints/encoder.pt``, or none: a randomly initialised encoder, the curve's zero point):

1. frozen features of the training scans (+ ``augmented_copies`` seeded augmentations, as
   ``lfusion.features``), the validation and test scans and the test split's elastic-skull OOD
   set (``lfusion.ood.make_ood_sets``, the package evaluation's seeds) in a work folder;
2. the Dropout head trained with ``lfusion.train_heads``' recipe (loss, optimiser, cosine, best
   validation Dice, early stopping) at the budget of ``CurveConfig`` (reduced: one path, fewer
   epochs and augmented copies than ``make all``; see docs/results.md for how it ranks encoders);
3. test-split segmentation at the original resolution (``evaluate.test_metrics``: the mean of
   ``dropout_passes`` MC-dropout probabilities, threshold 0.5) and the elastic AUROC of the
   Dropout path's image-level measures (pixel means; test scans negative);
4. one row in the curve record (JSON), replacing an earlier row of the same encoder and budget.

``--render`` writes the curve table into docs/results.md from the record alone.

CLI: ``python -m lfusion.curve --snapshot PATH --record curve/pretraining-curve.json``
(``make -C models curve SNAPSHOT=PATH``).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from lfusion.results import replace_section

BEGIN = "<!-- pretraining-curve: written by lfusion.curve -->"
END = "<!-- /pretraining-curve -->"
# Image-level OOD scores of the Dropout path (pixel means), the first one the curve's headline.
CURVE_MEASURES = ("expected_entropy", "mutual_information", "expected_pairwise_kl", "pixel_variance")


@dataclass(frozen=True)
class CurveConfig:
    """One measurement's budget; rows of different budgets are never compared in one column."""

    augmented_copies: int = 0
    head_epochs: int = 12
    head_minutes: float = 10.0
    dropout_passes: int = 10
    seed: int = 18
    small_head_repeats: int = 1

    def key(self) -> str:
        oversampling = f", first-trimester scans x{self.small_head_repeats}" if self.small_head_repeats != 1 else ""
        return f"dropout head, {self.head_epochs} epochs (<= {self.head_minutes:g} min), {self.augmented_copies} augmented copies, k={self.dropout_passes}{oversampling}"


def pretraining_position(meta: dict) -> Dict[str, Optional[float]]:
    """Where an encoder stands on the curve, from its record (``lfusion.pretrain``'s JSON).

    Counts a warm start's own training (``pretraining_*``); records written before warm starts
    existed carry only ``total_wall_clock_minutes`` and ``images_seen``. An empty record is the
    untrained encoder."""
    return {
        "minutes": float(meta.get("pretraining_minutes", meta.get("total_wall_clock_minutes", 0.0))),
        "images_seen": int(meta.get("pretraining_images_seen", meta.get("images_seen", 0))),
        "run_step": meta.get("steps"),
        "loss": meta.get("final_loss"),
    }


def snapshot_label(snapshot: Optional[Path]) -> str:
    """``<run> step000200`` for a run's milestone (``<run>/snapshots/encoder-step000200.pt``), else the path."""
    if snapshot is None:
        return "random initialisation"
    if snapshot.parent.name == "snapshots":
        return f"{snapshot.parent.parent.name} {snapshot.stem.removeprefix('encoder-')}"
    return str(snapshot)


def upsert_row(rows: List[dict], row: dict) -> List[dict]:
    """The rows with ``row`` in place of any of the same encoder and budget, ordered by images seen."""
    kept = [r for r in rows if (r["encoder_sha256"], r["budget"]) != (row["encoder_sha256"], row["budget"])]
    return sorted(kept + [row], key=lambda r: (r["budget"], r["pretraining"]["images_seen"], r["measured_utc"]))


def render_table(rows: Sequence[dict]) -> str:
    """Markdown: one table per budget, one line per encoder, in pretraining order."""
    lines: List[str] = []
    for budget in sorted({r["budget"] for r in rows}):
        lines += [
            f"Budget: {budget}.",
            "",
            "| encoder | pretraining images | minutes | MAE loss | test Dice | HD mm | HC AD mm | val Dice (head epochs run) | elastic AUROC (entropy / MI) | measured (load) |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in (r for r in rows if r["budget"] == budget):
            position, test, auroc = r["pretraining"], r["test"], r["elastic_auroc"]
            loss = "-" if position["loss"] is None else f"{position['loss']:.3f}"
            lines.append(
                f"| {r['label']} | {position['images_seen']:,} | {position['minutes']:.0f} | {loss} | {test['dice']:.4f} | {test['hd_mm']:.1f} | "
                f"{test['ad_mm']:.1f} | {r['val_dice']:.4f} ({r['head_epochs_run']}) | {auroc['expected_entropy']:.3f} / {auroc['mutual_information']:.3f} | "
                f"{r['measured_utc'][:16].replace('T', ' ')} ({r['seconds']:.0f} s, load {r['load_average'][0]:.1f}) |"
            )
        lines.append("")
    banded = [r for r in rows if "test_by_band" in r]
    if banded:
        lines += [
            "Per trimester band (`lfusion.hc_bands`; rows measured since the bands were recorded): test Dice mean and HC AD mean (mm).",
            "",
            "| encoder | budget | first trimester | second trimester | third trimester | all |",
            "|---|---|---|---|---|---|",
        ]
        for r in banded:
            cells = [f"{b['dice_mean']:.4f} / {b['hc_abs_error_mean_mm']:.1f} ({b['scans']})" for b in r["test_by_band"]]
            lines.append(f"| {r['label']} | {r['budget']} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def mean_of(values: Sequence[Optional[float]]) -> float:
    finite = [v for v in values if v is not None]
    return float(np.mean(finite)) if finite else float("nan")


def encode_sets(encoder, prepared, cfg: CurveConfig, cache: Path, encoder_sha: str) -> None:
    """The feature cache ``lfusion.train_heads`` reads (train, val, test) plus the test elastic set."""
    from lfusion.features import training_images, write_set, write_training_hc
    from lfusion.ood import make_ood_sets

    cache.mkdir(parents=True, exist_ok=True)
    images, masks = training_images(prepared, cfg.augmented_copies, cfg.seed)
    write_set(cache, "train", encoder, images, masks)
    write_training_hc(cache, prepared, cfg.augmented_copies)
    for split in ("val", "test"):
        index = prepared.indices(split)
        write_set(cache, split, encoder, prepared.images[index], prepared.masks[index])
    elastic = make_ood_sets(prepared, "test", cfg.seed, names=("elastic_skull",))["elastic_skull"]
    write_set(cache, "ood-test-elastic_skull", encoder, elastic, None)
    meta = {"encoder_sha256": encoder_sha, "augmented_copies": cfg.augmented_copies, "seed": cfg.seed, "train_count": int(len(images)),
            "ood": {"test": ["elastic_skull"]}}
    (cache / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")


@torch.no_grad()
def dropout_pass(head, data, passes: int, seed: int):
    """(mean probabilities [N, 224, 224], {measure: image scores [N]}) with fixed masks for every image."""
    from lfusion.features import batch_tensors
    from lfusion.heads import random_masks
    from lfusion.measures import sample_measures

    masks = random_masks(passes, head.cfg, torch.Generator().manual_seed(seed))
    probs, scores = [], {name: [] for name in CURVE_MEASURES}
    for i in range(len(data.images)):
        features, image, _ = batch_tensors(data, np.array([i]))
        measures = sample_measures(head(features, image, masks))
        probs.append(measures["mean_prob"].reshape(224, 224).numpy())
        for name in CURVE_MEASURES:
            scores[name].append(float(measures[name].mean()))
    return np.stack(probs), scores


def measure(snapshot: Optional[Path], cfg: CurveConfig, prepared_path: Path, hc18: Path, work: Path) -> dict:
    """One curve row for ``snapshot`` (None: a randomly initialised encoder)."""
    from lfusion.data import load_prepared
    from lfusion.evaluate import test_metrics
    from lfusion.features import load_encoder_or_random, load_set
    from lfusion.hc_bands import band_summary
    from lfusion.heads import HeadConfig
    from lfusion.metrics import auroc
    from lfusion.train_heads import TrainConfig, load_head, train

    started = time.time()
    load_start = os.getloadavg()
    encoder, encoder_sha = load_encoder_or_random(snapshot, cfg.seed)
    meta = torch.load(str(snapshot), map_location="cpu").get("meta", {}) if snapshot else {}
    folder = work / encoder_sha[:16]
    encode_sets(encoder, load_prepared(prepared_path), cfg, folder / "features", encoder_sha)
    encoded = time.time()
    train_cfg = TrainConfig(head="dropout", epochs=cfg.head_epochs, minutes=cfg.head_minutes, seed=cfg.seed, small_head_repeats=cfg.small_head_repeats)
    progress = train(folder / "features", folder / "heads", train_cfg, HeadConfig(), resume=False)
    trained = time.time()
    head, _ = load_head(folder / "heads" / "dropout.pt")
    head.eval()
    probs, in_scores = dropout_pass(head, load_set(folder / "features", "test"), cfg.dropout_passes, cfg.seed)
    _, elastic_scores = dropout_pass(head, load_set(folder / "features", "ood-test-elastic_skull"), cfg.dropout_passes, cfg.seed)
    columns = test_metrics(probs, prepared_path, hc18)
    return {
        "label": snapshot_label(snapshot),
        "snapshot": str(snapshot) if snapshot else None,
        "encoder_sha256": encoder_sha,
        "pretraining": pretraining_position(meta),
        "budget": cfg.key(),
        "config": asdict(cfg),
        "test": {key: mean_of(columns[key]) for key in ("dice", "iou", "hd_mm", "ad_mm")} | {"scans": len(columns["dice"])},
        "test_dice_median": float(np.median([d for d in columns["dice"] if d is not None])),
        "test_by_band": band_summary(columns["hc_truth_mm"], columns["dice"], columns["hc_mm"]),
        "val_dice": float(progress["best_dice"]),
        "head_epochs_run": int(progress["epoch"]),
        "elastic_auroc": {name: auroc(in_scores[name], elastic_scores[name]) for name in CURVE_MEASURES},
        "seconds": round(time.time() - started, 1),
        "seconds_by_phase": {"features": round(encoded - started, 1), "head": round(trained - encoded, 1), "evaluation": round(time.time() - trained, 1)},
        "load_average": [round(load_start[0], 2), round(os.getloadavg()[0], 2)],
        "measured_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "cd models && nice -n %d /usr/bin/python3 -m lfusion.curve %s" % (os.nice(0), " ".join(shlex.quote(a) for a in sys.argv[1:])),
    }


def read_rows(record: Path) -> List[dict]:
    return json.loads(record.read_text())["rows"] if record.exists() else []


def write_rows(record: Path, rows: List[dict]) -> None:
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"about": __doc__.splitlines()[0], "rows": rows}, indent=1) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Measure one encoder snapshot for the pretraining curve, or render the curve table.")
    parser.add_argument("--snapshot", type=Path, help="encoder checkpoint (lfusion.encoder.save_encoder)")
    parser.add_argument("--random-encoder", action="store_true", help="measure a randomly initialised encoder (the curve's zero)")
    parser.add_argument("--record", type=Path, default=Path("curve/pretraining-curve.json"))
    parser.add_argument("--render", action="store_true", help="only write the table into --docs from --record")
    parser.add_argument("--docs", type=Path, default=Path("../docs/results.md"))
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--hc18", type=Path, default=Path("../../shared/data/hc18"))
    parser.add_argument("--work", type=Path, default=Path("build/curve"))
    parser.add_argument("--keep-features", action="store_true", help="keep the feature cache (about 200 MB) after measuring")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    defaults = CurveConfig()
    for name in ("augmented_copies", "head_epochs", "head_minutes", "dropout_passes", "seed", "small_head_repeats"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(defaults, name)), default=getattr(defaults, name))
    args = parser.parse_args(argv)
    if not args.render:
        if (args.snapshot is None) == (not args.random_encoder):
            parser.error("give exactly one of --snapshot and --random-encoder")
        if not (args.hc18 / "training_set").is_dir():
            parser.error(f"{args.hc18} has no HC18 training_set (the test Dice is measured at the original resolution)")
        torch.set_num_threads(args.threads)
        cfg = CurveConfig(**{name: getattr(args, name) for name in asdict(defaults)})
        row = measure(args.snapshot, cfg, args.prepared, args.hc18, args.work)
        if not args.keep_features:
            shutil.rmtree(args.work / row["encoder_sha256"][:16] / "features")
        write_rows(args.record, upsert_row(read_rows(args.record), row))
        print(json.dumps(row, indent=1))
    rows = read_rows(args.record)
    if rows:
        args.docs.write_text(replace_section(args.docs.read_text() if args.docs.exists() else "", CURVE_SECTION_HEAD + render_table(rows), BEGIN, END))


CURVE_SECTION_HEAD = """## Encoder pretraining curve (issue 16)

Each row: one frozen-encoder snapshot, measured by `make -C models curve SNAPSHOT=...` (`lfusion.curve`):
its features, the Dropout head trained on them at the budget named above the table, the test split's
Dice, HD and HC AD at the original resolution (mean of the MC-dropout probabilities) and the AUROC of the
test elastic-skull set against the test scans (Dropout path, pixel-mean expected entropy / mutual
information). Pretraining images and minutes count a warm start's own training; minutes are wall clock
on the shared 2-core machine (nice 19 in the background), so images seen is the comparable axis.
Rows come from `models/curve/pretraining-curve.json`; this table is rewritten from it.

"""


if __name__ == "__main__":
    main()
