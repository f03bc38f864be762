"""Calibration (validation) and held-out evaluation (test) of the clip path.

Every clip of a set goes through the whole clip inference in PyTorch: ``lfusion.inference.run_frame``,
the function the 2D calibration uses (the clip heads take one clip's ``[T, F, g, g]`` features and
``[T, 1, 224, 224]`` frames), with the SDK's own draws (``lfusion.sdk_draws``) for ``L = T * S * S``
pixels and the clip seed, so the threshold means the same in the SDK. Scores are per clip (the
aggregation runs over all L pixels of the clip).

* ``--split val``: every candidate OOD map x aggregation of ``lfusion.calibrate`` gets its AUROC per
  clip OOD set (validation clips negative); the best mean AUROC wins and its threshold is the 95th
  percentile of the validation clips' scores. Writes ``build/clips/calibration.json``.
* ``--split test``: the same scores on the test clips and test clip OOD sets, per-frame segmentation
  metrics, and the evaluation record ``build/results/lfusion-clip.json``
  (``/tmp/team/results-schema.md``; AUROCs of val from the calibration file). The test split is
  never used for a choice.

Segmentation is measured per frame: each path's mean probability (S x S per frame) is resized
bilinearly to the 224 x 224 frame (``lfusion.metrics.resize_probabilities``), thresholded at 0.5
and compared with the frame's mask, distances in mm with the source scan's resized pixel spacing.
A frame's true head circumference is measured on its true mask with the same ellipse estimator
(the sweep scales the head, so the CSV value does not apply to a frame).

Besides the package's candidate maps, the intra-path calibrated map (``lfusion.measures.calibrated_map``)
is scored for every auxiliary measure; ``<path>.calibrated`` is the one whose auxiliary is the path's
best measure (mean aggregation) on validation.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from lfusion.calibrate import AGGREGATIONS, CANDIDATE_MAPS, FALSE_ALARM_QUANTILE, auroc_table, candidates
from lfusion.clips import load_clip_set
from lfusion.data import load_prepared, normalize
from lfusion.features import ood_set_names
from lfusion.inference import Bundle, Draws, clip_bundle_from_build, make_draws, run_frame
from lfusion.manifest import CLIP_SAMPLING
from lfusion.measures import MEASURE_ORDER, aggregate_many, calibrated_map, select_map
from lfusion.metrics import auroc, dice, hausdorff_mm, head_circumference_mm, iou, resize_probabilities, segmentation_summary

# Alerts count windows, not frames: a window is T frames (stride frames apart).
RAISE_AFTER_WINDOWS, CLEAR_AFTER_WINDOWS = 2, 3
PATHS = ("laplace", "dropout")
AUXILIARY_MEASURES = [m for m in MEASURE_ORDER if m != "mean_prob"]
REPORTED_MEASURES = ("expected_entropy", "expected_pairwise_kl", "pixel_variance", "mutual_information")


def columns() -> List[str]:
    """Candidate maps of the package, then the calibrated map of each path for every auxiliary measure."""
    return candidates() + [f"{path}.calibrated[{aux}]|mean" for path in PATHS for aux in AUXILIARY_MEASURES]


def clip_pixels(bundle: Bundle, frames: int) -> int:
    return frames * bundle.laplace.cfg.output_size ** 2


def clip_draws(bundle: Bundle, sampling: Dict[str, int], seed: int, frames: int) -> Draws:
    return make_draws(bundle, sampling["m"], sampling["n"], sampling["k"], seed, pixels=clip_pixels(bundle, frames))


def score_set(bundle: Bundle, cache: Path, set_name: str, draws: Draws, limit: Optional[int]) -> Tuple[np.ndarray, Dict[str, np.ndarray], List[str]]:
    """(scores [N, columns], mean probabilities {path: float32 [N, T, S, S]}, clip names) of one cached set."""
    data = load_clip_set(cache, set_name)
    count = len(data.images) if limit is None else min(limit, len(data.images))
    size = bundle.laplace.cfg.output_size
    scores, probs = [], {path: [] for path in PATHS}
    for i in range(count):
        features = torch.from_numpy(np.asarray(data.features[i], dtype=np.float32))
        frames = torch.from_numpy(normalize(data.images[i])).unsqueeze(1)
        result = run_frame(bundle, frames, draws, 1.0, features=features)
        row = []
        for name in CANDIDATE_MAPS:
            row += [float(s) for s in aggregate_many(select_map(name, result["laplace"], result["dropout"], result["fused"]), AGGREGATIONS)]
        for path in PATHS:
            row += [float(calibrated_map(result[path], result[path][aux]).mean()) for aux in AUXILIARY_MEASURES]
        scores.append(row)
        for path in PATHS:
            probs[path].append(result[path]["mean_prob"].reshape(-1, size, size).numpy().astype(np.float32))
    return np.array(scores), {path: np.stack(p) for path, p in probs.items()}, data.names[:count]


def calibrated_auxiliary(table: Dict[str, Dict[str, float]]) -> Dict[str, str]:
    """Each path's best measure (mean aggregation, mean validation AUROC): the calibrated map's auxiliary."""
    return {path: max(AUXILIARY_MEASURES, key=lambda m: table[f"{path}.{m}|mean"]["mean"]) for path in PATHS}


def measure_table(table: Dict[str, Dict[str, float]], auxiliary: Dict[str, str]) -> Dict[str, Dict[str, float]]:
    """The record's measure ids: package candidates as they are, ``<path>.calibrated|mean`` for the chosen auxiliary."""
    out = {name: {k: v for k, v in row.items() if k != "mean"} for name, row in table.items() if ".calibrated[" not in name}
    for path, aux in auxiliary.items():
        out[f"{path}.calibrated|mean"] = {k: v for k, v in table[f"{path}.calibrated[{aux}]|mean"].items() if k != "mean"}
    return out


def split_scores(bundle: Bundle, cache: Path, split: str, draws: Draws, limit: Optional[int]):
    scores, probs, names = score_set(bundle, cache, split, draws, limit)
    ood = {}
    for name, set_name in ood_set_names(cache, split).items():
        ood[name] = score_set(bundle, cache, set_name, draws, limit)[0]
        print(json.dumps({"set": set_name, "clips": len(ood[name])}), flush=True)
    return scores, ood, probs, names


def frame_metrics(prob: np.ndarray, truth: np.ndarray, spacing_xy: Tuple[float, float]) -> Dict[str, float]:
    """One frame: S x S probability -> 224 x 224 mask vs the frame's true mask."""
    pred = resize_probabilities(prob, truth.shape) > 0.5
    truth_hc = head_circumference_mm(truth, spacing_xy)
    return {
        "dice": dice(pred, truth),
        "iou": iou(pred, truth),
        "hd_mm": hausdorff_mm(pred, truth, spacing_xy),
        "ad_mm": abs(head_circumference_mm(pred, spacing_xy) - truth_hc),
        "hc_truth_mm": truth_hc,
    }


def fused_probability(probs: Dict[str, np.ndarray]) -> np.ndarray:
    """The L-FUSION mask's probability: the average of both paths (``lfusion.inference.segmentation``)."""
    return 0.5 * (probs["laplace"] + probs["dropout"])


def segmentation_by_path(probs: Dict[str, np.ndarray], masks: np.ndarray, spacing: np.ndarray) -> Dict[str, dict]:
    """Per-path summaries over all frames (``lfusion.metrics.segmentation_summary``, true HC per frame)."""
    truths = masks.reshape(-1, *masks.shape[2:])
    spacing_frames = np.repeat(spacing, masks.shape[1], axis=0)
    truth_hc = np.array([head_circumference_mm(t, s) for t, s in zip(truths, spacing_frames)])
    summaries = {}
    for path, prob in {"lfusion": fused_probability(probs), **probs}.items():
        preds = np.stack([resize_probabilities(p, truths.shape[1:]) > 0.5 for p in prob.reshape(-1, *prob.shape[2:])])
        summaries[path] = segmentation_summary(preds, truths, spacing_frames, truth_hc)
    return summaries


def scan_spacing(prepared_path: Path, names: Sequence[str]) -> np.ndarray:
    prepared = load_prepared(prepared_path)
    index = {name: i for i, name in enumerate(prepared.names)}
    return prepared.spacing_xy[[index[n] for n in names]]


def calibrate(bundle: Bundle, cache: Path, prepared: Path, sampling: Dict[str, int], seed: int, limit: Optional[int]) -> dict:
    started = time.time()
    frames = int(json.loads((cache / "meta.json").read_text())["frames"])
    draws = clip_draws(bundle, sampling, seed, frames)
    scores, ood_scores, probs, names = split_scores(bundle, cache, "val", draws, limit)
    table = auroc_table(scores, ood_scores, columns())
    package_maps = candidates()
    best = max(package_maps, key=lambda name: table[name]["mean"])
    column = columns().index(best)
    threshold = float(np.quantile(scores[:, column], FALSE_ALARM_QUANTILE))
    ood_map, aggregation = best.split("|")
    masks = load_clip_set(cache, "val").masks[: len(names)]
    auxiliary = calibrated_auxiliary(table)
    return {
        "ood": {
            "map": ood_map,
            "aggregation": aggregation,
            "threshold": threshold,
            "raiseAfter": RAISE_AFTER_WINDOWS,
            "clearAfter": CLEAR_AFTER_WINDOWS,
            "calibrated": True,
            "criterion": f"highest mean AUROC over the validation clip OOD sets (one score per clip over its T*S*S pixels); threshold = {FALSE_ALARM_QUANTILE} quantile of validation in-distribution clip scores; raiseAfter/clearAfter count windows",
        },
        "sampling": sampling,
        "seed": seed,
        "frames": frames,
        "validation": segmentation_by_path(probs, masks, scan_spacing(prepared, names)),
        "auroc": {
            "chosen": best,
            "chosenBySet": table[best],
            "detectionRateAtThreshold": {ood: float((s[:, column] > threshold).mean()) for ood, s in ood_scores.items()},
            "calibratedAuxiliary": auxiliary,
            "table": table,
        },
        "measures": measure_table(table, auxiliary),
        "scores": {"in": scores.tolist(), **{ood: s.tolist() for ood, s in ood_scores.items()}},
        "counts": {"val": int(len(scores)), **{ood: int(len(s)) for ood, s in ood_scores.items()}},
        "seconds": round(time.time() - started, 1),
    }


def selected_scores(scores: Dict[str, list], table: Dict[str, Dict[str, float]], auxiliary: Dict[str, str]) -> Dict[str, dict]:
    """Raw clip-level scores of the reported measure ids (mean aggregation), per set."""
    names = columns()
    ids = [f"{p}.{m}|mean" for p in PATHS for m in REPORTED_MEASURES] + ["fused|mean"]
    picked = {i: names.index(i) for i in ids} | {f"{p}.calibrated|mean": names.index(f"{p}.calibrated[{a}]|mean") for p, a in auxiliary.items()}
    return {i: {s: [row[c] for row in rows] for s, rows in scores.items()} for i, c in picked.items()}


def evaluate(bundle: Bundle, cache: Path, prepared: Path, calibration: dict, limit: Optional[int], training: dict, command: str) -> Tuple[dict, dict]:
    """(summary, evaluation record) on the test split."""
    started = time.time()
    draws = clip_draws(bundle, calibration["sampling"], calibration["seed"], calibration["frames"])
    scores, ood_scores, probs, names = split_scores(bundle, cache, "test", draws, limit)
    table = auroc_table(scores, ood_scores, columns())
    auxiliary = calibration["auroc"]["calibratedAuxiliary"]
    chosen, threshold = calibration["auroc"]["chosen"], calibration["ood"]["threshold"]
    column = columns().index(chosen)
    masks = load_clip_set(cache, "test").masks[: len(names)]
    spacing = scan_spacing(prepared, names)
    fused = fused_probability(probs)
    per_frame = [frame_metrics(fused[c, t], masks[c, t], tuple(spacing[c])) for c in range(len(names)) for t in range(masks.shape[1])]
    summary = {
        "split": "test",
        "unit": "segmentation per frame (224 x 224), OOD per clip",
        "segmentation": segmentation_by_path(probs, masks, spacing),
        "ood": {
            "chosen": chosen,
            "threshold": threshold,
            "aurocBySet": table[chosen],
            "falseAlarmRate": float((scores[:, column] > threshold).mean()),
            "detectionRate": {ood: float((s[:, column] > threshold).mean()) for ood, s in ood_scores.items()},
            "bestCandidateOnTest": max(candidates(), key=lambda name: table[name]["mean"]),
        },
        "counts": {"test": int(len(scores)), **{ood: int(len(s)) for ood, s in ood_scores.items()}},
        "seconds": round(time.time() - started, 1),
    }
    test_scores = {"in": scores.tolist(), **{ood: s.tolist() for ood, s in ood_scores.items()}}
    record = {
        "model": "lfusion-clip",
        "label": "L-FUSION clip (ours)",
        "input": "clip",
        "resolution": 224,
        "trainingSeconds": training["seconds"],
        "trainingNote": training["note"],
        "command": command,
        "unit": "test metrics per clip frame (names '<scan>#<frame>', frame size 224 x 224, mm from the source scan's resized spacing, hc_truth_mm measured on the true frame mask; null where not finite, e.g. the Hausdorff distance of an empty mask); OOD scores and AUROCs per clip (16 frames)",
        "test": {
            "names": [f"{n}#{t:02d}" for n in names for t in range(masks.shape[1])],
            **{key: [finite_or_none(row[key]) for row in per_frame] for key in ("dice", "iou", "hd_mm", "ad_mm", "hc_truth_mm")},
        },
        "ood": {"val": calibration["measures"], "test": measure_table(table, auxiliary)},
        "scores": {"val": selected_scores(calibration["scores"], calibration["auroc"]["table"], auxiliary), "test": selected_scores(test_scores, table, auxiliary)},
    }
    return summary, record


def finite_or_none(value: float) -> Optional[float]:
    """JSON has no Infinity/NaN (an empty predicted mask has an infinite Hausdorff distance): null instead."""
    return float(value) if np.isfinite(value) else None


def training_record(clips_build: Path) -> dict:
    """Wall-clock seconds of the clip heads' training and the Laplace fit (from their summaries)."""
    heads = {kind: json.loads((clips_build / "heads" / f"{kind}.summary.json").read_text()) for kind in PATHS}
    fit = json.loads((clips_build / "laplace" / "posterior.json").read_text())
    seconds = sum(h["seconds"] for h in heads.values()) + fit["seconds"]
    note = (
        f"3D heads {heads['laplace']['seconds']:.0f} s (Laplacian, {heads['laplace']['epoch']} epochs) + {heads['dropout']['seconds']:.0f} s "
        f"(Dropout, {heads['dropout']['epoch']} epochs), Laplace fit {fit['seconds']:.0f} s; clip simulation + feature caching and the "
        "frozen encoder's pretraining not included; one CPU thread on a shared 2-core machine"
    )
    return {"seconds": round(seconds, 1), "note": note}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate (val) or evaluate (test) the clip path.")
    parser.add_argument("--split", choices=("val", "test"), required=True)
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--results", type=Path, default=Path("build/results/lfusion-clip.json"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many clips per set (development)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    clips_build = args.build / "clips"
    bundle = clip_bundle_from_build(args.build, None if args.random_encoder else args.encoder, args.seed)
    if bundle is None:
        parser.error(f"no trained clip heads and posterior under {clips_build}")
    cache = clips_build / "features"
    if args.split == "val":
        sampling = {k: CLIP_SAMPLING[k] for k in ("m", "n", "k")}
        result = calibrate(bundle, cache, args.prepared, sampling, args.seed, args.limit)
        (clips_build / "calibration.json").write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps({k: result[k] for k in ("ood", "validation", "counts", "seconds")} | {"chosenBySet": result["auroc"]["chosenBySet"]}, indent=1))
        return
    calibration = json.loads((clips_build / "calibration.json").read_text())
    command = "cd models && make clips  (python -m lfusion.clips; lfusion.train_heads/lfusion.laplace --architecture clip; lfusion.clip_eval --split val; lfusion.clip_eval --split test)"
    summary, record = evaluate(bundle, cache, args.prepared, calibration, args.limit, training_record(clips_build), command)
    (clips_build / "eval.json").write_text(json.dumps(summary, indent=1) + "\n")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(record) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
