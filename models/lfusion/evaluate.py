"""Held-out evaluation of the calibrated package on the test split (never used for any choice).

Runs the same inference as calibration on the test scans and the test-derived OOD sets and
reports segmentation metrics per path, the AUROC of every candidate OOD measure, and for the
calibrated choice the false-alarm rate on test scans and the detection rate per OOD set at the
calibrated threshold. Writes ``build/eval/summary.json`` and, when the package has been exported,
rewrites its manifest so that ``metrics.test`` holds this summary.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from lfusion.calibrate import auroc_table, candidates, segmentation_metrics, split_scores


def main(argv: Optional[Sequence[str]] = None) -> None:
    from lfusion.export import bundle_from_build, write_manifest

    parser = argparse.ArgumentParser(description="Evaluate the calibrated L-FUSION models on the test split.")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many scans per set (development)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    calibration = json.loads((args.build / "calibration" / "calibration.json").read_text())
    bundle = bundle_from_build(args.build, None if args.random_encoder else args.encoder, args.seed)
    scores, ood_scores, masks = split_scores(bundle, args.build / "features", "test", calibration["sampling"], args.seed, args.limit)
    table = auroc_table(scores, ood_scores)
    chosen = calibration["auroc"]["chosen"]
    column, threshold = candidates().index(chosen), calibration["ood"]["threshold"]
    summary = {
        "split": "test",
        "segmentation": segmentation_metrics(masks, args.prepared, "test"),
        "ood": {
            "chosen": chosen,
            "threshold": threshold,
            "aurocBySet": table[chosen],
            "falseAlarmRate": float((scores[:, column] > threshold).mean()),
            "detectionRate": {ood: float((s[:, column] > threshold).mean()) for ood, s in ood_scores.items()},
            "bestCandidateOnTest": max(table, key=lambda name: table[name]["mean"]),
        },
        "aurocTable": table,
        "counts": {"test": int(len(scores)), **{ood: int(len(s)) for ood, s in ood_scores.items()}},
        "seconds": round(time.time() - started, 1),
    }
    out = args.build / "eval"
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    manifest_path = args.package / "manifest.json"
    if manifest_path.exists():
        write_manifest(args.package, bundle, args.build, json.loads(manifest_path.read_text())["provenance"])
    print(json.dumps({k: v for k, v in summary.items() if k != "aurocTable"}, indent=1))


if __name__ == "__main__":
    main()
