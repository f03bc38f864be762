"""Feature density of the frozen encoder: how far a frame's features lie from the training scans'.

The score is the squared Mahalanobis distance of a frame's pooled encoder features
(``forward_features``: [F, g, g], F = width x feature blocks) from a Gaussian fitted on the
training split's scans and ``--layout-copies`` copies of each under ``LAYOUT`` (rotation, zoom,
shift, fan borders, wedges: how a head looks on another scanner's screen or depth setting, no
intensity change), with a shrinkage covariance. Fitted on the original scans alone, the density
took layout for anatomy: it flagged 50 of 118 test heads so transformed (docs/results.md). With ``per_block`` the Gaussian is
fitted per encoder block (block-diagonal precision), each block's distance divided by its
dimension and the blocks summed, so no block dominates by size. The SDK computes the same score
from the encoder output it already has (``scoreFeatureDensity``), from the statistics file this
module writes into the model package:

``density.bin``: float32 little-endian, ``mean [D]`` then the precision's diagonal blocks ``[d, d]``
row-major (the per-block scaling folded in), both in block order: block b holds the token means of its
channels, then (``mean_std``) their stds. D = pooled dimension, ``score = (v - mean)^T precision (v - mean)``.

Pure functions (pooling, shrinkage, fitting, scoring, AUROC) are tested in tests/test_density.py;
the CLI fits on the training split, compares poolings on validation sets and writes the package
file, its manifest section and float64 reference vectors.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from lfusion.augment import SWEEP, augment
from lfusion.data import load_prepared, read_grey, resize_image
from lfusion.features import encode, sha256_of
from lfusion.metrics import auroc

POOLINGS = ("mean", "mean_std")
STATISTICS_FILE = "density.bin"
# The geometry and layout steps of the real-sweep augmentation, without its gain, contrast, speckle and compression
# (those are what the acquisition evidence and a wrong device are).
LAYOUT = replace(SWEEP, gain_range=(1.0, 1.0), gamma_range=(1.0, 1.0), speckle_probability=0.0, compression_probability=0.0)


@dataclass(frozen=True)
class DensityConfig:
    pooling: str = "mean"
    per_block: bool = True
    # None: the Ledoit-Wolf estimate of the shrinkage towards a scaled identity.
    shrinkage: Optional[float] = None


def pool(features: np.ndarray, pooling: str) -> np.ndarray:
    """[N, F, g, g] -> float64 [N, D]: the token mean (D = F), or the mean then the std (D = 2F)."""
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}, expected one of {POOLINGS}")
    tokens = np.asarray(features, dtype=np.float64).reshape(features.shape[0], features.shape[1], -1)
    mean = tokens.mean(axis=2)
    return mean if pooling == "mean" else np.concatenate([mean, tokens.std(axis=2)], axis=1)


def block_slices(channels: int, blocks: int, pooling: str) -> List[np.ndarray]:
    """Indices of the pooled vector belonging to each encoder block (the mean and std parts of a block together)."""
    width = channels // blocks
    parts = 1 if pooling == "mean" else 2
    return [np.concatenate([np.arange(p * channels + b * width, p * channels + (b + 1) * width) for p in range(parts)]) for b in range(blocks)]


def ledoit_wolf_shrinkage(x: np.ndarray) -> float:
    """Ledoit & Wolf (2004) optimal weight of the scaled identity in ``(1-a) S + a (tr S / D) I`` for data [N, D]."""
    n, d = x.shape
    centred = x - x.mean(axis=0)
    sample = centred.T @ centred / n
    target = np.trace(sample) / d
    distance = np.sum((sample - target * np.eye(d)) ** 2)
    spread = np.sum([np.sum((np.outer(row, row) - sample) ** 2) for row in centred]) / n**2
    return float(min(max(spread / distance, 0.0), 1.0)) if distance > 0 else 1.0


def shrunk_precision(x: np.ndarray, shrinkage: Optional[float]) -> Tuple[np.ndarray, float]:
    """(precision [D, D], shrinkage used) of the shrinkage covariance of x [N, D]."""
    alpha = ledoit_wolf_shrinkage(x) if shrinkage is None else float(shrinkage)
    centred = x - x.mean(axis=0)
    sample = centred.T @ centred / len(x)
    d = x.shape[1]
    covariance = (1 - alpha) * sample + alpha * (np.trace(sample) / d) * np.eye(d)
    return np.linalg.inv(covariance), alpha


@dataclass
class Density:
    mean: np.ndarray  # float64 [D]
    precision: np.ndarray  # float64 [D, D]
    shrinkage: List[float]  # per block (one entry without per_block)


def fit_density(pooled: np.ndarray, blocks: List[np.ndarray], config: DensityConfig) -> Density:
    """Gaussian of the pooled training features; per block: block-diagonal precision, each block divided by its dimension."""
    mean = pooled.mean(axis=0)
    d = pooled.shape[1]
    groups = blocks if config.per_block else [np.arange(d)]
    precision = np.zeros((d, d))
    used = []
    for group in groups:
        block_precision, alpha = shrunk_precision(pooled[:, group], config.shrinkage)
        precision[np.ix_(group, group)] = block_precision / len(group) if config.per_block else block_precision
        used.append(alpha)
    return Density(mean=mean, precision=precision, shrinkage=used)


def density_score(pooled: np.ndarray, mean: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Squared Mahalanobis distance [N] of pooled features [N, D] (float64)."""
    centred = np.asarray(pooled, dtype=np.float64) - np.asarray(mean, dtype=np.float64)
    return np.einsum("nd,de,ne->n", centred, np.asarray(precision, dtype=np.float64), centred)


def as_stored(density: Density) -> Density:
    """The statistics as the package stores them (float32), back in float64: what the SDK computes with."""
    return Density(density.mean.astype(np.float32).astype(np.float64), density.precision.astype(np.float32).astype(np.float64), density.shrinkage)


def write_statistics(density: Density, groups: List[np.ndarray], path: Path) -> None:
    """float32: the mean and the precision's diagonal blocks, each group's indices in turn (block order)."""
    order = np.concatenate(groups)
    blocks = [density.precision[np.ix_(g, g)].astype("<f4").ravel() for g in groups]
    path.write_bytes(np.concatenate([density.mean[order].astype("<f4"), *blocks]).tobytes())


def read_statistics(path: Path, groups: List[np.ndarray]) -> Density:
    """The inverse of ``write_statistics``: mean and block-diagonal precision in the pooled vector's order."""
    dimension = sum(len(g) for g in groups)
    values = np.frombuffer(path.read_bytes(), dtype="<f4").astype(np.float64)
    expected = dimension + sum(len(g) ** 2 for g in groups)
    if values.size != expected:
        raise ValueError(f"{path}: {values.size} float32 values, expected {expected}")
    order = np.concatenate(groups)
    mean = np.zeros(dimension)
    mean[order] = values[:dimension]
    precision = np.zeros((dimension, dimension))
    offset = dimension
    for g in groups:
        precision[np.ix_(g, g)] = values[offset : offset + len(g) ** 2].reshape(len(g), len(g))
        offset += len(g) ** 2
    return Density(mean, precision, [])


def precision_groups(channels: int, blocks: int, config: DensityConfig) -> List[np.ndarray]:
    """The diagonal blocks of the precision: one per encoder block, or the whole vector."""
    groups = block_slices(channels, blocks, config.pooling)
    return groups if config.per_block else [np.concatenate(groups) if config.pooling == "mean" else np.arange(sum(len(g) for g in groups))]


# --- Data: the sets the score is fitted and validated on ----------------------------------------


def ood_dev_parts(root: Path) -> Dict[str, List[Path]]:
    """``ood-dev`` images grouped by part: musculoskeletal ds1/ds2/ds3 and infant hip."""
    parts: Dict[str, List[Path]] = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"):
            continue
        folder = path.parent.name
        part = f"{folder}/{path.name.split('_')[0]}" if folder == "musculoskeletal" else folder
        parts.setdefault(part, []).append(path)
    return parts


def load_images(paths: Sequence[Path]) -> np.ndarray:
    """Grey files -> uint8 [N, 224, 224], resized as the SDK and the factory resize (stretch, bilinear)."""
    return np.stack([resize_image(read_grey(p)) for p in paths])


@torch.no_grad()
def encoder_features(encoder, images: np.ndarray) -> np.ndarray:
    return encode(encoder, images).astype(np.float32) if len(images) else np.zeros((0, encoder.cfg.feature_channels, encoder.cfg.grid, encoder.cfg.grid), np.float32)


def evaluation_sets(prepared, seed: int, hc18: Optional[Path], ood_dev: Path, splits: Sequence[str]) -> Dict[str, np.ndarray]:
    """uint8 [N, 224, 224] per set: the HC18 splits, the synthetic OOD sets of ``splits`` and each ``ood-dev`` part."""
    from lfusion.ood import make_ood_sets

    sets: Dict[str, np.ndarray] = {split: prepared.images[prepared.indices(split)] for split in ("train", "val", "test")}
    for split in splits:
        for name, images in make_ood_sets(prepared, split, seed, data_root=hc18).items():
            sets[f"ood-{split}-{name}"] = images
    if ood_dev.is_dir():
        for part, paths in ood_dev_parts(ood_dev).items():
            sets[f"ood-dev-{part.replace('/', '-')}"] = load_images(paths)
    return sets


def write_sets(sets: Dict[str, np.ndarray], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, images in sets.items():
        np.ascontiguousarray(images, dtype=np.uint8).tofile(out / f"{name}.u8")
    (out / "index.json").write_text(json.dumps({"size": 224, "sets": {name: int(len(images)) for name, images in sets.items()}}, indent=1) + "\n")


def layout_copies(images: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """[N * copies, H, W] uint8: ``copies`` transforms of each image under ``LAYOUT`` (image-major), seeded."""
    rng = np.random.default_rng([seed, copies])
    return np.stack([augment(image, None, rng, LAYOUT)[0] for image in images for _ in range(copies)]) if copies else images[:0]


def main(argv: Optional[Sequence[str]] = None) -> None:
    from lfusion.encoder import load_encoder

    parser = argparse.ArgumentParser(description="Fit the feature-density statistics on the training split and write them into the package.")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--hc18", type=Path, default=Path("../../shared/data/hc18"))
    parser.add_argument("--ood-dev", type=Path, default=Path("../../shared/data/ood-dev"), help="real non-head ultrasound: validation of the choice only, never fitted on")
    parser.add_argument("--out", type=Path, default=Path("build/density"), help="per-set scores and the comparison of configurations")
    # mean_std per block: the best AUROC on the validation sets and ood-dev of the four compared (docs/results.md).
    parser.add_argument("--pooling", choices=POOLINGS, default="mean_std")
    parser.add_argument("--whole", action="store_true", help="one Gaussian over all blocks instead of one per block")
    parser.add_argument("--shrinkage", type=float, default=None, help="fixed shrinkage weight (default: Ledoit-Wolf)")
    parser.add_argument("--layout-copies", type=int, default=2, help="layout-augmented copies of each training scan fitted on beside it (0: the original scans only)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reuse-pooled", action="store_true", help="refit from build/density/pooled.npz of an earlier run (same encoder) instead of encoding again")
    parser.add_argument("--write-sets", type=Path, default=None, help="only write the val, test and OOD test sets as raw uint8 for models/tools/ood_scores.ts")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    config = DensityConfig(pooling=args.pooling, per_block=not args.whole, shrinkage=args.shrinkage)
    encoder, cfg = load_encoder(args.encoder)
    prepared = load_prepared(args.prepared)
    args.out.mkdir(parents=True, exist_ok=True)

    hc18 = args.hc18 if (args.hc18 / "training_set").is_dir() else None
    if args.write_sets is not None:
        sets = evaluation_sets(prepared, args.seed, hc18, args.ood_dev, ("val", "test"))
        # HC18's unlabelled test_set: in-distribution scans no head was trained on, calibration for the OOD decision.
        sets["hc18-unlabelled"] = prepared.unlabelled_images
        write_sets({name: images for name, images in sets.items() if name != "train" and not name.startswith("ood-val-")}, args.write_sets)
        return
    # Pooled once per set (the means are the first half of mean_std): the encoder is the slow part.
    cache = args.out / "pooled.npz"
    if args.reuse_pooled and cache.exists():
        with np.load(cache) as stored_pooled:
            both = {name: stored_pooled[name] for name in stored_pooled.files}
    else:
        sets = evaluation_sets(prepared, args.seed, hc18, args.ood_dev, ("val", "test"))
        # Fitted on (train-layout), and evaluated on: the test heads under other layouts (never fitted on).
        sets["train-layout"] = layout_copies(sets["train"], args.layout_copies, args.seed)
        sets["test-layout"] = layout_copies(sets["test"], 1, args.seed + 1)
        both = {name: pool(encoder_features(encoder, images), "mean_std") for name, images in sets.items()}
        np.savez(cache, **both)
    if len(both.get("train-layout", ())) != len(both["train"]) * args.layout_copies:
        raise SystemExit(f"{cache} holds no {args.layout_copies} layout copies per training scan: run without --reuse-pooled")
    both["fit"] = np.concatenate([both["train"], both["train-layout"]])
    channels = cfg.feature_channels

    comparison = {}
    for pooling in POOLINGS:
        for per_block in (True, False):
            candidate = DensityConfig(pooling=pooling, per_block=per_block, shrinkage=args.shrinkage)
            pooled = {name: p if pooling == "mean_std" else p[:, :channels] for name, p in both.items()}
            fitted = fit_density(pooled["fit"], block_slices(channels, len(cfg.feature_blocks), pooling), candidate)
            scores = {name: density_score(p, fitted.mean, fitted.precision) for name, p in pooled.items()}
            comparison[f"{pooling}{'/per-block' if per_block else '/whole'}"] = {
                name: round(auroc(scores["val"], scores[name]), 4) for name in scores if name.startswith("ood-val-") or name.startswith("ood-dev-")
            }

    pooled = {name: p if config.pooling == "mean_std" else p[:, :channels] for name, p in both.items()}
    density = fit_density(pooled["fit"], block_slices(channels, len(cfg.feature_blocks), config.pooling), config)
    groups = precision_groups(channels, len(cfg.feature_blocks), config)
    stored = as_stored(density)
    scores = {name: density_score(p, stored.mean, stored.precision) for name, p in pooled.items()}
    np.savez(args.out / "scores.npz", **scores)

    statistics = args.package / STATISTICS_FILE
    write_statistics(density, groups, statistics)
    section = {
        "file": STATISTICS_FILE,
        "sha256": sha256_of(statistics),
        "dtype": "float32",
        "dimension": int(density.mean.size),
        "layout": "mean [dimension], then the precision's diagonal blocks [dimension / precisionBlocks]^2 row-major, in block order",
        "precisionBlocks": len(groups),
        "features": "encoder.features",
        "pooling": config.pooling,
        "perBlock": config.per_block,
        "blocks": len(cfg.feature_blocks),
        "shrinkage": [round(a, 6) for a in density.shrinkage],
        "fittedOn": f"train split, {len(pooled['train'])} scans and {len(pooled['train-layout'])} layout-augmented copies (lfusion.density.LAYOUT: rotation, zoom, shift, fan borders, wedges)",
        "encoderSha256": sha256_of(args.encoder),
    }
    references = write_reference(args.package, stored, config.pooling)
    val99 = np.quantile(scores["val"], 0.99)
    summary = {
        "config": asdict(config),
        "seconds": round(time.time() - started, 1),
        "validationAuroc": {name: round(auroc(scores["val"], scores[name]), 4) for name in scores if name.startswith("ood-")},
        # Share of the layout-transformed test heads above the validation heads' 99th percentile (3 of 118 plain test heads there before).
        "testLayoutAboveVal99": round(float(np.mean(scores["test-layout"] > val99)), 4),
        "testAboveVal99": round(float(np.mean(scores["test"] > val99)), 4),
        "comparison": comparison,
        "references": references,
    }
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    update_manifest(args.package, section)
    print(json.dumps(summary | {"section": section}, indent=1))


def write_reference(package: Path, stored: Density, pooling: str) -> Dict[str, float]:
    """Adds ``density_pooled`` (float64 [D]) and ``density_score`` (float64 [1]) to each reference case with features."""
    folder = package / "reference"
    index = json.loads((folder / "index.json").read_text())
    scores = {}
    for number, case in enumerate(index["cases"]):
        spec = case.get("arrays", {}).get("features")
        if spec is None or case.get("kind", "frame") != "frame":
            continue
        features = np.fromfile(folder / spec["file"], dtype="<f4").reshape(spec["shape"])
        pooled = pool(features, pooling)
        score = density_score(pooled, stored.mean, stored.precision)
        prefix = f"case{number}"
        for name, array in (("density_pooled", pooled[0]), ("density_score", score)):
            file = f"{prefix}_{name}.bin"
            np.asarray(array, dtype="<f8").tofile(folder / file)
            case["arrays"][name] = {"file": file, "dtype": "float64", "shape": list(np.shape(array))}
        scores[case["name"]] = float(score[0])
    (folder / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return scores


def update_manifest(package: Path, section: dict) -> None:
    """Writes the manifest's ``density`` section and the checksums of the reference files it changed."""
    path = package / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["density"] = {**manifest.get("density", {}), **section}
    for file in list(manifest.get("files", {})):
        if (package / file).exists():
            manifest["files"][file] = sha256_of(package / file)
    for added in sorted((package / "reference").glob("case*_density_*.bin")):
        manifest["files"][str(added.relative_to(package))] = sha256_of(added)
    path.write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
