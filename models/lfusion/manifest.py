"""The model package's ``manifest.json`` (docs/model-format.md) and its graphs' declarations.

``graph_specs`` / ``clip_graph_specs`` declare every graph's inputs and outputs (symbolic dims as
strings; ``lfusion.export`` exports the graphs against them); ``write_manifest`` writes the manifest
from the graphs in a package, every other file's checksum and the records in ``build/``: head
settings, sampling defaults, calibration (OOD map, aggregation, threshold), metrics, provenance,
and the ``clip`` section when the clip graphs are there.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Dict, Optional, Tuple

from lfusion.data import NORM_MEAN, NORM_STD
from lfusion.features import read_json, sha256_of
from lfusion.inference import AUXILIARY_MAP, Bundle, clip_bundle_from_build
from lfusion.layers import split_layout
from lfusion.measures import ENTROPY_EPS, MEASURE_ORDER

PACKAGE_NAME = "lfusion-hc18-2d"
DEFAULT_SAMPLING = {"m": 10, "n": 4, "k": 10, "maxM": 50, "maxN": 20, "maxK": 50}
COVERED = "trunk (proj, block1-4, stem, fuse) and mean branch; the covariance branch (factor, diag) stays at MAP"
# Clip windows cost T times a frame: smaller maxima (the per-sample 3D convolutions' im2col at S x S x T).
CLIP_SAMPLING = {"m": 10, "n": 4, "k": 10, "maxM": 20, "maxN": 10, "maxK": 20}
# What the manifest's provenance keeps of a Laplace fit's summary (lfusion.laplace).
LAPLACE_FIT_KEYS = ("prior_precision", "criterion", "grid", "ggn_scans", "ggn_probes", "sampled_from", "sampled_count")
CLIP_COVERED = "trunk (proj, block1-3 spatial and temporal convs, stem, fuse) and mean branch; the covariance branch (factor, diag) stays at MAP"


def graph_specs(bundle: Bundle) -> Dict[str, dict]:
    """Declared inputs/outputs of every graph (symbolic dims as strings)."""
    feature_shape = [1, bundle.laplace.cfg.feature_channels, 14, 14]
    image_shape = [1, 1, 224, 224]
    rank = bundle.laplace.cfg.rank
    maps = bundle.map_pixels  # the heads' and measures' maps (half resolution: the SDK upsamples the measure maps)
    return {
        "encoder": {
            "file": "encoder.onnx",
            "inputs": {"image": ["batch", 1, 224, 224]},
            "outputs": {"features": ["batch", bundle.laplace.cfg.feature_channels, 14, 14]},
        },
        "laplace_head": {
            "file": "laplace_head.onnx",
            "inputs": {"features": feature_shape, "image": image_shape, "weight_noise": ["m", bundle.sampled_count], "posterior_scale": [1]},
            "outputs": {"logit_mean": ["m", maps], "cov_factor": ["m", rank, maps], "cov_diag": ["m", maps]},
        },
        "dropout_head": {
            "file": "dropout_head.onnx",
            "inputs": {"features": feature_shape, "image": image_shape, "dropout_masks": ["k", bundle.dropout.cfg.mask_count]},
            "outputs": {"logits": ["k", maps]},
        },
        "measures": measures_spec("measures.onnx", rank, maps),
    }


def measures_spec(file: str, rank: int, pixels: int) -> dict:
    return {
        "file": file,
        "inputs": {
            "logit_mean": ["m", pixels],
            "cov_factor": ["m", rank, pixels],
            "cov_diag": ["m", pixels],
            "factor_noise": ["m", "n", rank],
            "diag_noise": ["m", "n", pixels],
            "dropout_logits": ["k", pixels],
        },
        "outputs": {"laplace_maps": [len(MEASURE_ORDER), pixels], "dropout_maps": [len(MEASURE_ORDER), pixels]},
    }


def clip_frames() -> int:
    from lfusion.clips import FRAMES

    return FRAMES


def clip_graph_specs(clip: Bundle) -> Dict[str, dict]:
    """The clip graphs (docs/model-format.md, "Clip path"): one clip of T frames per run."""
    cfg, frames = clip.laplace.cfg, clip_frames()
    pixels = frames * cfg.output_size**2
    features = [frames, cfg.feature_channels, cfg.grid, cfg.grid]
    images = [frames, 1, cfg.image_size, cfg.image_size]
    return {
        "clip_laplace_head": {
            "file": "clip_laplace_head.onnx",
            "inputs": {"features": features, "images": images, "weight_noise": ["m", clip.sampled_count], "posterior_scale": [1]},
            "outputs": {"logit_mean": ["m", pixels], "cov_factor": ["m", cfg.rank, pixels], "cov_diag": ["m", pixels]},
        },
        "clip_dropout_head": {
            "file": "clip_dropout_head.onnx",
            "inputs": {"features": features, "images": images, "dropout_masks": ["k", clip.dropout.cfg.mask_count]},
            "outputs": {"logits": ["k", pixels]},
        },
        "clip_measures": measures_spec("clip_measures.onnx", cfg.rank, pixels),
    }


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True).stdout.strip()
        return result.stdout.strip() + ("+uncommitted-changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError) as error:
        return f"unknown ({error})"


def file_checksums(package: Path, graphs: Dict[str, dict]) -> Dict[str, str]:
    """sha256 of every file in the package but the manifest and the graphs (which carry their own)."""
    graph_files = {spec["file"] for spec in graphs.values()}
    return {
        path.relative_to(package).as_posix(): sha256_of(path)
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.name != "manifest.json" and path.relative_to(package).as_posix() not in graph_files
    }


def write_manifest(package: Path, bundle: Bundle, build: Path, info: dict, clip: Optional[Bundle] = None) -> dict:
    """manifest.json from the graphs in ``package``, every other file's checksum and build/ records.

    The clip graphs and section are included when ``clip`` (default: the clip models in ``build``,
    if any) has its graphs in ``package``.
    """
    specs = graph_specs(bundle)
    clip = clip if clip is not None else clip_bundle_from_build(build, None, info.get("seed", 18), encoder=bundle.encoder)
    if clip is not None and all((package / spec["file"]).exists() for spec in clip_graph_specs(clip).values()):
        specs |= clip_graph_specs(clip)
    else:
        clip = None
    graphs = {name: spec | {"sha256": sha256_of(package / spec["file"])} for name, spec in specs.items()}
    files = file_checksums(package, graphs)
    calibration = read_json(build / "calibration" / "calibration.json") or {}
    evaluation = read_json(build / "eval" / "summary.json") or {}
    durations = step_durations(build)
    manifest = {
        "format": "lfusion-model-package",
        "formatVersion": 1,
        "name": PACKAGE_NAME,
        "classes": ["background", "fetal-head"],
        "input": {"width": 224, "height": 224, "channels": 1, "resize": "stretch", "normalization": {"mean": NORM_MEAN, "std": NORM_STD}},
        "pixelSpacing": "carried",
        "graphs": graphs,
        "files": files,
        **head_settings(bundle, COVERED, DEFAULT_SAMPLING, calibration, info["seed"], alerts=(3, 5)),
        "measures": {"order": list(MEASURE_ORDER), "entropyEpsilon": ENTROPY_EPS},
        "provenance": info
        | {
            "gitCommit": git_commit(),
            "durationsSeconds": durations,
            "features": read_json(build / "features" / "meta.json"),
            "laplaceFit": {k: v for k, v in (read_json(build / "laplace" / "posterior.json") or {}).items() if k in LAPLACE_FIT_KEYS},
        },
        "metrics": {"validation": calibration.get("validation", {}), "calibration": calibration.get("auroc", {}), "test": evaluation},
    }
    if clip is not None:
        manifest["clip"] = clip_section(clip, build / "clips", info)
    (package / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def sampled_layers(bundle: Bundle, covered: str) -> str:
    """``covered`` (what the posterior can cover), or the layers it samples when it starts later (a last-layers Laplace)."""
    if bundle.sampled_offset == 0:
        return covered
    before, after = (list(dict.fromkeys(name.split(".")[0] for name, _ in part)) for part in split_layout(bundle.laplace.covered_layout, bundle.sampled_offset))
    return f"last layers ({', '.join(after)}); the layers before them ({', '.join(before)}) and the covariance branch (factor, diag) stay at MAP and run once per image"


def step_durations(build: Path) -> Dict[str, float]:
    """Seconds of each `make` step recorded under ``build/stamps``."""
    return {p.stem: float(p.read_text()) for p in sorted((build / "stamps").glob("*.seconds"))}


def head_settings(bundle: Bundle, covered: str, sampling: dict, calibration: dict, seed: int, alerts: Tuple[int, int]) -> dict:
    """``laplace``, ``dropout``, ``sampling``, ``fusion`` and ``ood`` of one set of heads (the manifest's root or
    ``clip``); ``alerts`` (raiseAfter, clearAfter) hold only until calibration has chosen the OOD settings."""
    raise_after, clear_after = alerts
    uncalibrated = {"map": "fused", "aggregation": "mean", "threshold": 0.0, "raiseAfter": raise_after, "clearAfter": clear_after, "calibrated": False}
    return {
        "laplace": {
            "rank": bundle.laplace.cfg.rank,
            "weightCount": bundle.sampled_count,
            "priorPrecision": bundle.prior_precision,
            "posteriorScale": 1.0,
            "covered": sampled_layers(bundle, covered),
        },
        "dropout": {"rate": bundle.dropout.cfg.dropout_rate, "maskCount": bundle.dropout.cfg.mask_count, "after": list(bundle.dropout.cfg.dropout_after)},
        "sampling": sampling | {"seed": calibration.get("seed", seed)},
        "fusion": {"auxiliary": AUXILIARY_MAP},
        "ood": calibration.get("ood", uncalibrated),
    }


def clip_section(clip: Bundle, clips_build: Path, info: dict) -> dict:
    """The manifest's ``clip`` section from the clip models and their build records."""
    calibration = read_json(clips_build / "calibration.json") or {}
    evaluation = read_json(clips_build / "eval.json") or {}
    auroc = calibration.get("auroc", {})
    return {
        "frames": clip_frames(),
        "outputSize": clip.laplace.cfg.output_size,
        **head_settings(clip, CLIP_COVERED, CLIP_SAMPLING, calibration, info["seed"], alerts=(2, 3)),
        "metrics": {
            "validation": calibration.get("validation", {}),
            "calibration": {k: auroc[k] for k in ("chosen", "chosenBySet", "detectionRateAtThreshold", "calibratedAuxiliary") if k in auroc},
            "test": evaluation,
        },
        "provenance": {
            "features": read_json(clips_build / "features" / "meta.json"),
            "heads": {kind: {k: v for k, v in (read_json(clips_build / "heads" / f"{kind}.summary.json") or {}).items() if k != "history"} for kind in ("laplace", "dropout")},
            "laplaceFit": {k: v for k, v in (read_json(clips_build / "laplace" / "posterior.json") or {}).items() if k in LAPLACE_FIT_KEYS + ("seconds",)},
        },
    }

