"""Held-out evaluation on the test split (never used for any choice), in two modes.

* Default: the calibrated package. Runs the same inference as calibration on the test scans and
  the test-derived OOD sets and reports segmentation metrics per path, the AUROC of every
  candidate OOD measure, and for the calibrated choice the false-alarm rate on test scans and the
  detection rate per OOD set at the calibrated threshold. Writes ``build/eval/summary.json`` and,
  when the package has been exported, sets its manifest's ``metrics.test`` to it (nothing else).
* ``--record MODEL`` (``lfusion``, ``ssn-unet``, ``dropout-unet``, ``laplace-unet``): the paper's
  protocol for one model, written as ``build/results/<MODEL>.json`` in the shared record schema
  (``/tmp/team/results-schema.md``, summarised in ``docs/results.md``). Segmentation metrics per
  test scan at the original resolution (``metrics.original_resolution_metrics``); image-level
  scores (pixel mean) of each path's four measures, of the intra-path calibrated map
  (``measures.calibrated_map``) and, for L-FUSION, of the inter-path fused map
  (``measures.fused_map``), for every choice of auxiliary map, on the validation and test scans
  and their OOD sets; AUROC tables on both splits. The canonical ``<path>.calibrated`` and
  ``fused`` ids use the auxiliary map whose own AUROC, averaged over the validation OOD sets, is
  the highest. Also writes ``build/results/<MODEL>.maps.npz`` (maps of a few test scans and their
  OOD versions) for the figures.

Every model sees the 224x224 cache images (``build/features``) of the scans and of the OOD sets;
the U-Nets get them resized to 256 (``train_baselines.to_unet_input``), the same path for
in-distribution and OOD images. Draws are fixed across images (common random numbers).
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from lfusion.calibrate import auroc_table, candidates, segmentation_metrics, split_scores

PATH_MEASURES = ("expected_entropy", "expected_pairwise_kl", "pixel_variance", "mutual_information")
RECORD_MODELS = ("lfusion", "ssn-unet", "dropout-unet", "laplace-unet")
LABELS = {"lfusion": "L-FUSION (ours)", "ssn-unet": "SSN U-Net", "dropout-unet": "Dropout U-Net", "laplace-unet": "Laplace U-Net"}

# One frame through a model: uint8 [224, 224] image (and its cached encoder features, for L-FUSION)
# -> ({path: measures of lfusion.measures.sample_measures}, foreground probability [S, S]).
Predict = Callable[[np.ndarray, Optional[np.ndarray]], Tuple[Dict[str, Dict[str, torch.Tensor]], np.ndarray]]


@dataclass
class Model:
    name: str
    resolution: int
    paths: Tuple[str, ...]
    predict: Predict
    sampling: Dict[str, int]


def lfusion_model(build: Path, encoder: Optional[Path], seed: int, sampling: Dict[str, int]) -> Model:
    from lfusion.inference import bundle_from_build, image_input, make_draws, run_frame

    bundle = bundle_from_build(build, encoder, seed)
    draws = make_draws(bundle, sampling["m"], sampling["n"], sampling["k"], seed)

    def predict(image: np.ndarray, features: Optional[np.ndarray]):
        result = run_frame(bundle, image_input(image), draws, 1.0, features=torch.from_numpy(np.asarray(features, dtype=np.float32))[None])
        prob = 0.5 * (result["laplace"]["mean_prob"] + result["dropout"]["mean_prob"])
        return {"laplace": result["laplace"], "dropout": result["dropout"]}, prob.reshape(224, 224).numpy()

    return Model("lfusion", 224, ("laplace", "dropout"), predict, dict(sampling))


def unet_model(name: str, baselines: Path, seed: int, sampling: Dict[str, int]) -> Model:
    """``ssn-unet`` (path ``unet``: n SSN logit samples), ``laplace-unet`` (m weight samples x n SSN
    samples) or ``dropout-unet`` (k dropout masks)."""
    from lfusion.heads import random_masks
    from lfusion.laplace import sample_weights
    from lfusion.measures import laplace_logit_samples, sample_measures
    from lfusion.train_baselines import image_batch, load_model, to_unet_input
    from lfusion.unet import UNET_SIZE

    generator = torch.Generator().manual_seed(seed)
    if name == "dropout-unet":
        model, _ = load_model(baselines / "dropout.pt")
        masks = random_masks(sampling["k"], model.cfg, generator)

        def logit_samples(image: torch.Tensor) -> torch.Tensor:
            return model(image, masks)

        path = "dropout"
    else:
        model, _ = load_model(baselines / "ssn.pt")
        if name == "laplace-unet":
            posterior = torch.load(str(baselines / "laplace.pt"), map_location="cpu")
            weight_noise = torch.randn(sampling["m"], model.covered_count, generator=generator)
            thetas = sample_weights(model.covered.detach(), posterior["sigma"], weight_noise, 1.0)
            path = "laplace"
        else:
            thetas = model.covered.detach()[None]
            path = "unet"
        weights = thetas.shape[0]
        pixels = UNET_SIZE * UNET_SIZE
        factor_noise = torch.randn(weights, sampling["n"], model.cfg.rank, generator=generator)
        diag_noise = torch.randn(weights, sampling["n"], pixels, generator=generator)

        def logit_samples(image: torch.Tensor) -> torch.Tensor:
            return laplace_logit_samples(*model.forward_with(thetas, image), factor_noise, diag_noise)

    @torch.no_grad()
    def predict(image: np.ndarray, features: Optional[np.ndarray]):
        measures = sample_measures(logit_samples(image_batch(to_unet_input(image[None]))))
        return {path: measures}, measures["mean_prob"].reshape(UNET_SIZE, UNET_SIZE).numpy()

    return Model(name, UNET_SIZE, (path,), predict, dict(sampling))


def image_scores(maps: Dict[str, Dict[str, torch.Tensor]]) -> Dict[str, float]:
    """Image-level scores (pixel means) of every measure id, for every auxiliary-map choice."""
    from lfusion.measures import calibrated_map, fused_map

    scores = {}
    for path, measures in maps.items():
        for measure in PATH_MEASURES:
            scores[f"{path}.{measure}|mean"] = float(measures[measure].mean())
            scores[f"{path}.calibrated@{measure}"] = float(calibrated_map(measures, measures[measure]).mean())
    if "laplace" in maps and "dropout" in maps:
        for path, measures in maps.items():
            for measure in PATH_MEASURES:
                scores[f"fused@{path}.{measure}"] = float(fused_map(maps["laplace"], maps["dropout"], measures[measure]).mean())
    return scores


def figure_maps(maps: Dict[str, Dict[str, torch.Tensor]], prob: np.ndarray, auxiliary: Dict[str, str]) -> Dict[str, np.ndarray]:
    """The maps of one frame that the figures show, float16 [S, S] each."""
    from lfusion.measures import calibrated_map, fused_map

    size = prob.shape[0]
    out = {"mean_prob": prob}
    for path, measures in maps.items():
        option = auxiliary.get(f"{path}.calibrated")
        if option is not None:
            out[f"{path}.calibrated"] = calibrated_map(measures, measures[option.partition(".")[2]]).reshape(size, size).numpy()
    if "fused" in auxiliary:
        path, _, measure = auxiliary["fused"].partition(".")
        out["fused"] = fused_map(maps["laplace"], maps["dropout"], maps[path][measure]).reshape(size, size).numpy()
    return {name: np.asarray(value, dtype=np.float16) for name, value in out.items()}


def score_sets(model: Model, cache: Path, split: str, limit: Optional[int], ood_limit: Optional[int] = None, keep: Sequence[int] = (), auxiliary: Optional[Dict[str, str]] = None):
    """({set: {id: [scores]}} with set "in" for the split's scans, probabilities [N, S, S] of the scans,
    {"<set>/<index>/<map>": array} of the ``keep`` indices). ``limit`` caps every set, ``ood_limit``
    the OOD sets (their first images)."""
    from lfusion.features import load_set, ood_set_names

    sets = {"in": split} | ood_set_names(cache, split)
    scores, probs, kept = {}, [], {}
    for set_name, cache_name in sets.items():
        started = time.time()
        data = load_set(cache, cache_name)
        cap = min(c for c in (limit, ood_limit if set_name != "in" else None, len(data.images)) if c is not None)
        count = int(cap)
        rows = []
        for i in range(count):
            maps, prob = model.predict(data.images[i], data.features[i] if model.name == "lfusion" else None)
            rows.append(image_scores(maps))
            if set_name == "in":
                probs.append(prob.astype(np.float32))
            # A set shorter than a kept index (no_head skips scans) keeps that index modulo its length.
            if auxiliary is not None and i in {k % count for k in keep}:
                kept[f"{set_name}/{i}/image"] = data.images[i]
                kept.update({f"{set_name}/{i}/{name}": value for name, value in figure_maps(maps, prob, auxiliary).items()})
        scores[set_name] = {key: [row[key] for row in rows] for key in rows[0]}
        print(json.dumps({"split": split, "set": set_name, "images": count, "seconds": round(time.time() - started, 1)}), flush=True)
    return scores, np.stack(probs), kept


def auroc_by_set(scores: Dict[str, Dict[str, List[float]]]) -> Dict[str, Dict[str, float]]:
    """{id: {ood set: AUROC}}, the split's scans negative."""
    from lfusion.metrics import auroc

    return {key: {s: auroc(scores["in"][key], values[key]) for s, values in scores.items() if s != "in"} for key in scores["in"]}


def best_auxiliary(table: Dict[str, Dict[str, float]], paths: Sequence[str]) -> str:
    """The ``<path>.<measure>`` among ``paths`` with the highest AUROC averaged over the OOD sets."""
    options = [f"{path}.{measure}" for path in paths for measure in PATH_MEASURES]
    return max(options, key=lambda option: float(np.mean(list(table[f"{option}|mean"].values()))))


def add_canonical(scores: Dict[str, Dict[str, List[float]]], auxiliary: Dict[str, str]) -> None:
    """Adds ``<path>.calibrated`` and ``fused`` (the chosen auxiliary's variants) in place."""
    for canonical, option in auxiliary.items():
        variant = f"{canonical}@{option.partition('.')[2]}" if canonical != "fused" else f"fused@{option}"
        for values in scores.values():
            values[canonical] = values[variant]


def test_metrics(probs: np.ndarray, prepared_path: Path, hc18: Path) -> Dict[str, list]:
    from lfusion.data import load_prepared, load_scan
    from lfusion.metrics import original_resolution_metrics

    prepared = load_prepared(prepared_path)
    names = [prepared.names[i] for i in prepared.indices("test")][: len(probs)]
    columns = {"names": names, "dice": [], "iou": [], "hd_mm": [], "ad_mm": [], "hc_mm": [], "hc_truth_mm": []}
    for name, prob in zip(names, probs):
        scan = load_scan(hc18, name)
        row = original_resolution_metrics(prob, scan.mask, scan.pixel_size_mm, scan.hc_mm)
        for key, value in row.items():
            columns[key].append(None if not np.isfinite(value) else float(value))
        columns["hc_truth_mm"].append(scan.hc_mm)
    return columns


def training_time(model: str, build: Path, baselines: Path, encoder: Optional[Path] = None) -> Tuple[float, str]:
    """(seconds, what they include) from the step stamps (L-FUSION; the encoder's pretraining from its checkpoint's
    record, ``<encoder>.json``) or the baseline summaries."""

    def summary(name: str) -> dict:
        return json.loads((baselines / f"{name}.summary.json").read_text())

    if model == "lfusion":
        steps = {step: float((build / "stamps" / f"{step}.seconds").read_text()) for step in ("features", "heads-laplace", "laplace", "heads-dropout")}
        note = ", ".join(f"{step} {seconds:.0f} s" for step, seconds in steps.items())
        record = encoder.with_suffix(".json") if encoder is not None else None
        minutes = json.loads(record.read_text()).get("pretraining_minutes") if record is not None and record.exists() else None
        pretraining = f"{minutes:.0f} min" if minutes is not None else "not recorded"
        return sum(steps.values()), f"{note}; encoder pretraining ({pretraining}, once for all tasks) not included"
    if model == "laplace-unet":
        ssn, fit = summary("ssn")["seconds"], summary("laplace")["seconds"]
        return ssn + fit, f"SSN U-Net training {ssn:.0f} s + post-hoc diagonal GGN Laplace fit {fit:.0f} s"
    trained = summary("ssn" if model == "ssn-unet" else "dropout")
    return trained["seconds"], f"{trained['stopped']} after {len(trained['history'])} epochs, best validation Dice {trained['best_dice']:.3f} at epoch {trained['best_epoch']}"


def build_record(model: Model, args: argparse.Namespace) -> Tuple[dict, Dict[str, np.ndarray]]:
    cache = args.build / "features"
    val_scores, _, _ = score_sets(model, cache, "val", args.limit, args.ood_limit)
    val_table = auroc_by_set(val_scores)
    auxiliary = {f"{path}.calibrated": best_auxiliary(val_table, [path]) for path in model.paths}
    if len(model.paths) == 2:
        auxiliary["fused"] = best_auxiliary(val_table, model.paths)
    test_scores, probs, kept = score_sets(model, cache, "test", args.limit, args.ood_limit, args.figure_scans, auxiliary)
    for scores in (val_scores, test_scores):
        add_canonical(scores, auxiliary)
    seconds, note = training_time(model.name, args.build, args.baselines, None if args.random_encoder else args.encoder)
    record = {
        "model": model.name,
        "label": LABELS[model.name],
        "input": "2D",
        "resolution": model.resolution,
        "trainingSeconds": round(seconds, 1),
        "trainingNote": note,
        "command": "cd models && /usr/bin/python3 -m lfusion.evaluate " + " ".join(shlex.quote(a) for a in args.argv),
        "sampling": model.sampling | {"seed": args.seed},
        "auxiliary": auxiliary,
        "counts": {split: {s: len(next(iter(v.values()))) for s, v in scores.items()} for split, scores in (("val", val_scores), ("test", test_scores))},
        "test": test_metrics(probs, args.prepared, args.hc18),
        "ood": {"val": auroc_by_set(val_scores), "test": auroc_by_set(test_scores)},
        "scores": {"val": val_scores, "test": test_scores},
    }
    return record, kept


def evaluate_package(args: argparse.Namespace) -> None:
    from lfusion.inference import bundle_from_build

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
    if manifest_path.exists():  # only metrics.test: later steps' sections (density, decisions, biometry) stay
        manifest = json.loads(manifest_path.read_text())
        manifest["metrics"]["test"] = summary
        manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k != "aurocTable"}, indent=1))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate the calibrated L-FUSION package on the test split, or write one model's evaluation record (--record).")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many scans per set (development)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    parser.add_argument("--record", choices=RECORD_MODELS, default=None, help="write build/results/<model>.json (the paper's protocol) instead")
    parser.add_argument("--baselines", type=Path, default=Path("build/baselines"), help="trained U-Net baselines (lfusion.train_baselines)")
    parser.add_argument("--hc18", type=Path, default=Path("../../shared/data/hc18"), help="HC18 folder: original-resolution masks, pixel sizes, HC")
    parser.add_argument("--samples", type=int, nargs=3, default=(10, 4, 10), metavar=("M", "N", "K"), help="weight samples, SSN logit samples per weight sample, dropout masks (the SSN U-Net draws M*N logit samples)")
    parser.add_argument("--figure-scans", type=int, nargs="*", default=[60], help="test indices whose maps (and their OOD versions') go to <model>.maps.npz")
    parser.add_argument("--ood-limit", type=int, default=None, help="at most this many images per OOD set (the first ones), for --record")
    parser.add_argument("--out", type=Path, default=Path("build/results"))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(args.threads)
    if args.record is None:
        evaluate_package(args)
        return
    if not (args.hc18 / "training_set").is_dir():
        parser.error(f"HC18 data not found at {args.hc18} (needed for original-resolution metrics)")
    m, n, k = args.samples
    if args.record == "lfusion":
        model = lfusion_model(args.build, None if args.random_encoder else args.encoder, args.seed, {"m": m, "n": n, "k": k})
    elif args.record == "ssn-unet":
        model = unet_model(args.record, args.baselines, args.seed, {"n": m * n})
    elif args.record == "laplace-unet":
        model = unet_model(args.record, args.baselines, args.seed, {"m": m, "n": n})
    else:
        model = unet_model(args.record, args.baselines, args.seed, {"k": k})
    started = time.time()
    record, kept = build_record(model, args)
    record["evaluationSeconds"] = round(time.time() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.record}.json").write_text(json.dumps(record) + "\n")
    np.savez_compressed(args.out / f"{args.record}.maps.npz", **kept)
    print(json.dumps({"model": args.record, "dice_mean": float(np.mean(record["test"]["dice"])), "auxiliary": record["auxiliary"], "seconds": record["evaluationSeconds"]}))


if __name__ == "__main__":
    main()
