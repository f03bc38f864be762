"""Chooses the OOD map, aggregation and threshold on validation data, and measures the package.

Every validation scan and every validation-derived OOD scan (``lfusion.ood`` sets built from the
validation split) goes through the full inference (``lfusion.inference.run_frame``) at the
package's default m, n, k with fixed draws. Each candidate (map x aggregation) gets its AUROC
per OOD set (validation scans negative, OOD scans positive); the candidate with the highest
mean AUROC over the sets wins, and its threshold is the 95th percentile of the validation
scans' scores (a 5% false-alarm rate per frame on in-distribution validation data). The
validation segmentation metrics of both paths and of the fused L-FUSION mask are recorded too.
The test split is never used here (see ``lfusion.evaluate``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from lfusion.data import load_prepared, normalize
from lfusion.features import load_set, ood_set_names
from lfusion.inference import Bundle, bundle_from_build, make_draws, run_frame, segmentation
from lfusion.manifest import DEFAULT_SAMPLING
from lfusion.measures import MEASURE_ORDER, aggregate_many, select_map
from lfusion.metrics import auroc, segmentation_summary

CANDIDATE_MAPS = ["fused"] + [f"{path}.{m}" for path in ("laplace", "dropout") for m in MEASURE_ORDER if m != "mean_prob"]
AGGREGATIONS = ["mean", "quantile:0.9", "quantile:0.99"]
FALSE_ALARM_QUANTILE = 0.95
RAISE_AFTER, CLEAR_AFTER = 3, 5


def candidates() -> List[str]:
    return [f"{m}|{a}" for m in CANDIDATE_MAPS for a in AGGREGATIONS]


def score_set(bundle: Bundle, cache: Path, set_name: str, sampling: Dict[str, int], seed: int, limit: Optional[int]):
    """(scores [N, candidates], masks [N, HW] bool per path) for one cached set."""
    data = load_set(cache, set_name)
    count = len(data.images) if limit is None else min(limit, len(data.images))
    draws = make_draws(bundle, sampling["m"], sampling["n"], sampling["k"], seed)
    scores, masks = [], {"lfusion": [], "laplace": [], "dropout": []}
    for i in range(count):
        image = torch.from_numpy(normalize(data.images[i]))[None, None]
        features = torch.from_numpy(np.asarray(data.features[i : i + 1], dtype=np.float32))
        result = run_frame(bundle, image, draws, 1.0, features=features)
        row = []
        for name in CANDIDATE_MAPS:
            values = select_map(name, result["laplace"], result["dropout"], result["fused"])
            row += [float(score) for score in aggregate_many(values, AGGREGATIONS)]
        scores.append(row)
        masks["lfusion"].append(segmentation(result).numpy())
        masks["laplace"].append((result["laplace"]["mean_prob"] > 0.5).numpy())
        masks["dropout"].append((result["dropout"]["mean_prob"] > 0.5).numpy())
    return np.array(scores), {k: np.stack(v).reshape(-1, 224, 224) for k, v in masks.items()}


def split_scores(bundle: Bundle, cache: Path, split: str, sampling: Dict[str, int], seed: int, limit: Optional[int]):
    """Candidate scores of the split's scans and of its OOD sets, and the split's masks per path."""
    scores, masks = score_set(bundle, cache, split, sampling, seed, limit)
    ood_scores = {ood: score_set(bundle, cache, set_name, sampling, seed, limit)[0] for ood, set_name in ood_set_names(cache, split).items()}
    return scores, ood_scores, masks


def auroc_table(scores: np.ndarray, ood_scores: Dict[str, np.ndarray], columns: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, float]]:
    """{column: {"mean": mean AUROC, <ood set>: AUROC}} with the split's scans as negatives; ``columns`` names the
    score columns (default: ``candidates()``)."""
    table = {}
    for c, name in enumerate(candidates() if columns is None else columns):
        per_set = {ood: auroc(scores[:, c], positives[:, c]) for ood, positives in ood_scores.items()}
        table[name] = {"mean": float(np.mean(list(per_set.values()))), **per_set}
    return table


def segmentation_metrics(masks: Dict[str, np.ndarray], prepared_path: Path, split: str) -> Dict[str, dict]:
    prepared = load_prepared(prepared_path)
    index = prepared.indices(split)[: len(next(iter(masks.values())))]
    return {path: segmentation_summary(m, prepared.masks[index], prepared.spacing_xy[index], prepared.hc_mm[index]) for path, m in masks.items()}


def calibrate(bundle: Bundle, cache: Path, prepared_path: Path, sampling: Dict[str, int], seed: int, limit: Optional[int]) -> dict:
    started = time.time()
    val_scores, ood_scores, val_masks = split_scores(bundle, cache, "val", sampling, seed, limit)
    table = auroc_table(val_scores, ood_scores)
    best = max(table, key=lambda name: table[name]["mean"])
    column = candidates().index(best)
    threshold = float(np.quantile(val_scores[:, column], FALSE_ALARM_QUANTILE))
    ood_map, aggregation = best.split("|")
    detection = {ood: float((scores[:, column] > threshold).mean()) for ood, scores in ood_scores.items()}
    return {
        "ood": {
            "map": ood_map,
            "aggregation": aggregation,
            "threshold": threshold,
            "raiseAfter": RAISE_AFTER,
            "clearAfter": CLEAR_AFTER,
            "calibrated": True,
            "criterion": f"highest mean AUROC over the validation OOD sets; threshold = {FALSE_ALARM_QUANTILE} quantile of validation in-distribution scores",
        },
        "sampling": sampling,
        "seed": seed,
        "validation": segmentation_metrics(val_masks, prepared_path, "val"),
        "auroc": {"chosen": best, "chosenBySet": table[best], "detectionRateAtThreshold": detection, "table": table},
        "counts": {"val": int(len(val_scores)), **{ood: int(len(s)) for ood, s in ood_scores.items()}},
        "seconds": round(time.time() - started, 1),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate the OOD map, aggregation and threshold on validation data.")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many scans per set (development)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = bundle_from_build(args.build, None if args.random_encoder else args.encoder, args.seed)
    sampling = {k: DEFAULT_SAMPLING[k] for k in ("m", "n", "k")}
    result = calibrate(bundle, args.build / "features", args.prepared, sampling, args.seed, args.limit)
    out = args.build / "calibration"
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("ood", "validation", "counts", "seconds")} | {"chosenBySet": result["auroc"]["chosenBySet"]}, indent=1))


if __name__ == "__main__":
    main()
