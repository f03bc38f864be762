"""Exports the model package (docs/model-format.md): ONNX graphs, manifest, checksums.

The heads are exported through the same functional forward used in training and evaluation:
``LaplaceHeadGraph`` draws the m weight samples inside the graph
(theta_j = theta_MAP + posterior_scale * sigma * weight_noise[j]) and runs them batched;
``DropoutHeadGraph`` takes the k dropout masks as input; ``measures.onnx`` is
``lfusion.measures.MeasuresGraph``. m, n and k are dynamic dimensions.

When the clip path has been trained (``build/clips``: heads, posterior, calibration), the same
graph classes export the 3D heads (``lfusion.heads3d``) as ``clip_laplace_head`` and
``clip_dropout_head`` and ``MeasuresGraph`` again as ``clip_measures`` over L = T * S * S pixels,
and the manifest gets its ``clip`` section; a package without them has neither.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import onnx
import torch

from lfusion.data import NORM_MEAN, NORM_STD
from lfusion.features import load_encoder_or_random, sha256_of
from lfusion.heads import DropoutHead, LaplaceHead
from lfusion.inference import AUXILIARY_MAP, Bundle, load_bundle
from lfusion.laplace import sample_weights
from lfusion.measures import ENTROPY_EPS, MEASURE_ORDER, MeasuresGraph

OPSET = 14
HW = 224 * 224
PACKAGE_NAME = "lfusion-hc18-2d"
DEFAULT_SAMPLING = {"m": 10, "n": 4, "k": 10, "maxM": 50, "maxN": 20, "maxK": 50}
COVERED = "trunk (proj, block1-4, stem, fuse) and mean branch; the covariance branch (factor, diag) stays at MAP"
# Clip windows cost T times a frame: smaller maxima (the per-sample 3D convolutions' im2col at S x S x T).
CLIP_SAMPLING = {"m": 10, "n": 4, "k": 10, "maxM": 20, "maxN": 10, "maxK": 20}
CLIP_COVERED = "trunk (proj, block1-3 spatial and temporal convs, stem, fuse) and mean branch; the covariance branch (factor, diag) stays at MAP"


class LaplaceHeadGraph(torch.nn.Module):
    def __init__(self, head: LaplaceHead, sigma: torch.Tensor) -> None:
        super().__init__()
        self.head = head
        self.register_buffer("sigma", sigma.detach().clone())

    def forward(self, features, image, weight_noise, posterior_scale):
        thetas = sample_weights(self.head.covered, self.sigma, weight_noise, posterior_scale)
        return self.head.forward_with(thetas, features, image)


class DropoutHeadGraph(torch.nn.Module):
    def __init__(self, head: DropoutHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, features, image, dropout_masks):
        return self.head(features, image, dropout_masks)


def graph_specs(bundle: Bundle) -> Dict[str, dict]:
    """Declared inputs/outputs of every graph (symbolic dims as strings)."""
    feature_shape = [1, bundle.laplace.cfg.feature_channels, 14, 14]
    image_shape = [1, 1, 224, 224]
    rank = bundle.laplace.cfg.rank
    return {
        "encoder": {
            "file": "encoder.onnx",
            "inputs": {"image": ["batch", 1, 224, 224]},
            "outputs": {"features": ["batch", bundle.laplace.cfg.feature_channels, 14, 14]},
        },
        "laplace_head": {
            "file": "laplace_head.onnx",
            "inputs": {"features": feature_shape, "image": image_shape, "weight_noise": ["m", bundle.laplace.covered_count], "posterior_scale": [1]},
            "outputs": {"logit_mean": ["m", HW], "cov_factor": ["m", rank, HW], "cov_diag": ["m", HW]},
        },
        "dropout_head": {
            "file": "dropout_head.onnx",
            "inputs": {"features": feature_shape, "image": image_shape, "dropout_masks": ["k", bundle.dropout.cfg.mask_count]},
            "outputs": {"logits": ["k", HW]},
        },
        "measures": measures_spec("measures.onnx", rank, HW),
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
            "inputs": {"features": features, "images": images, "weight_noise": ["m", clip.laplace.covered_count], "posterior_scale": [1]},
            "outputs": {"logit_mean": ["m", pixels], "cov_factor": ["m", cfg.rank, pixels], "cov_diag": ["m", pixels]},
        },
        "clip_dropout_head": {
            "file": "clip_dropout_head.onnx",
            "inputs": {"features": features, "images": images, "dropout_masks": ["k", clip.dropout.cfg.mask_count]},
            "outputs": {"logits": ["k", pixels]},
        },
        "clip_measures": measures_spec("clip_measures.onnx", cfg.rank, pixels),
    }


def example(shape: Sequence, sizes: Dict[str, int]) -> torch.Tensor:
    return torch.randn(*[sizes[d] if isinstance(d, str) else d for d in shape])


def export_graph(module: torch.nn.Module, spec: dict, path: Path) -> None:
    sizes = {"batch": 1, "m": 2, "n": 3, "k": 4}
    inputs = tuple(example(shape, sizes) for shape in spec["inputs"].values())
    dynamic = {name: {i: d for i, d in enumerate(shape) if isinstance(d, str)} for name, shape in {**spec["inputs"], **spec["outputs"]}.items()}
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Layer sizes are read with int() on purpose (fixed per layer): not a tracing hazard.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            inputs,
            str(path),
            input_names=list(spec["inputs"]),
            output_names=list(spec["outputs"]),
            dynamic_axes={name: axes for name, axes in dynamic.items() if axes},
            opset_version=OPSET,
            do_constant_folding=True,
        )
    declare_shapes(path, spec)
    check_declared(path, spec)


def declare_shapes(path: Path, spec: dict) -> None:
    """Writes the declared (symbolic or fixed) dims into the graph's input/output signature.

    The exporter names dims it computed through Shape ops (flatten) with generated symbols;
    the declared shapes are the true ones (the parity check runs the graph and compares sizes).
    """
    model = onnx.load(str(path))
    for values, declared in ((model.graph.input, spec["inputs"]), (model.graph.output, spec["outputs"])):
        for value in values:
            dims = value.type.tensor_type.shape.dim
            for dim, size in zip(dims, declared[value.name]):
                if isinstance(size, str):
                    dim.dim_param = size
                else:
                    dim.dim_value = size
    onnx.save(model, str(path))


def check_declared(path: Path, spec: dict) -> None:
    """The ONNX file's input/output names and fixed dims must be the declared ones."""
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    for kind, values in (("inputs", model.graph.input), ("outputs", model.graph.output)):
        actual = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}
        declared = spec[kind]
        if list(actual) != list(declared):
            raise ValueError(f"{path.name}: {kind} {list(actual)} != declared {list(declared)}")
        for name, shape in declared.items():
            fixed = [(a, d) for a, d in zip(actual[name], shape) if not isinstance(d, str)]
            if len(actual[name]) != len(shape) or any(a != d for a, d in fixed):
                raise ValueError(f"{path.name}: {name} has shape {actual[name]}, declared {shape}")


def export_graphs(bundle: Bundle, package: Path, clip: Optional[Bundle] = None) -> Dict[str, dict]:
    from lfusion.encoder import export_encoder_onnx

    package.mkdir(parents=True, exist_ok=True)
    specs = graph_specs(bundle)
    export_encoder_onnx(bundle.encoder, package / specs["encoder"]["file"], OPSET)
    check_declared(package / specs["encoder"]["file"], specs["encoder"])
    export_graph(LaplaceHeadGraph(bundle.laplace, bundle.sigma), specs["laplace_head"], package / specs["laplace_head"]["file"])
    export_graph(DropoutHeadGraph(bundle.dropout), specs["dropout_head"], package / specs["dropout_head"]["file"])
    export_graph(MeasuresGraph(), specs["measures"], package / specs["measures"]["file"])
    if clip is not None:
        clip_specs = clip_graph_specs(clip)
        export_graph(LaplaceHeadGraph(clip.laplace, clip.sigma), clip_specs["clip_laplace_head"], package / clip_specs["clip_laplace_head"]["file"])
        export_graph(DropoutHeadGraph(clip.dropout), clip_specs["clip_dropout_head"], package / clip_specs["clip_dropout_head"]["file"])
        export_graph(MeasuresGraph(), clip_specs["clip_measures"], package / clip_specs["clip_measures"]["file"])
        specs |= clip_specs
    return specs


def git_commit() -> str:
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "."], capture_output=True, text=True, check=True).stdout.strip()
        return result.stdout.strip() + ("+uncommitted-changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError) as error:
        return f"unknown ({error})"


def read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


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
    graph_files = {spec["file"] for spec in specs.values()}
    files = {
        path.relative_to(package).as_posix(): sha256_of(path)
        for path in sorted(package.rglob("*"))
        if path.is_file() and path.name != "manifest.json" and path.relative_to(package).as_posix() not in graph_files
    }
    calibration = read_json(build / "calibration" / "calibration.json") or {}
    evaluation = read_json(build / "eval" / "summary.json") or {}
    durations = {p.stem: float(p.read_text()) for p in sorted((build / "stamps").glob("*.seconds"))}
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
            "laplaceFit": {k: v for k, v in (read_json(build / "laplace" / "posterior.json") or {}).items() if k in ("prior_precision", "criterion", "grid", "ggn_scans", "ggn_probes")},
        },
        "metrics": {"validation": calibration.get("validation", {}), "calibration": calibration.get("auroc", {}), "test": evaluation},
    }
    if clip is not None:
        manifest["clip"] = clip_section(clip, build / "clips", info)
    (package / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def head_settings(bundle: Bundle, covered: str, sampling: dict, calibration: dict, seed: int, alerts: Tuple[int, int]) -> dict:
    """``laplace``, ``dropout``, ``sampling``, ``fusion`` and ``ood`` of one set of heads (the manifest's root or
    ``clip``); ``alerts`` (raiseAfter, clearAfter) hold only until calibration has chosen the OOD settings."""
    raise_after, clear_after = alerts
    uncalibrated = {"map": "fused", "aggregation": "mean", "threshold": 0.0, "raiseAfter": raise_after, "clearAfter": clear_after, "calibrated": False}
    return {
        "laplace": {
            "rank": bundle.laplace.cfg.rank,
            "weightCount": bundle.laplace.covered_count,
            "priorPrecision": bundle.prior_precision,
            "posteriorScale": 1.0,
            "covered": covered,
        },
        "dropout": {"rate": bundle.dropout.cfg.dropout_rate, "maskCount": bundle.dropout.cfg.mask_count},
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
            "laplaceFit": {k: v for k, v in (read_json(clips_build / "laplace" / "posterior.json") or {}).items() if k in ("prior_precision", "criterion", "grid", "ggn_scans", "ggn_probes", "seconds")},
        },
    }


def bundle_from_build(build: Path, encoder_path: Optional[Path], seed: int) -> Bundle:
    """The trained models in ``build``; the encoder must be the one the feature cache was built with."""

    encoder, encoder_sha = load_encoder_or_random(encoder_path, seed)
    cached = (read_json(build / "features" / "meta.json") or {}).get("encoder_sha256")
    if cached is not None and cached != encoder_sha:
        raise ValueError(f"encoder {encoder_path} (sha256 {encoder_sha}) is not the one build/features was made with ({cached}): rebuild the features")
    return load_bundle(encoder, build / "heads" / "laplace.pt", build / "laplace" / "posterior.pt", build / "heads" / "dropout.pt")


def clip_bundle_from_build(build: Path, encoder_path: Optional[Path], seed: int, encoder: Optional[torch.nn.Module] = None) -> Optional[Bundle]:
    """The trained clip models in ``build/clips`` (None when absent), on ``encoder`` or the one at ``encoder_path``."""
    clips = build / "clips"
    paths = (clips / "heads" / "laplace.pt", clips / "laplace" / "posterior.pt", clips / "heads" / "dropout.pt")
    if not all(path.exists() for path in paths):
        return None
    if encoder is None:
        encoder, encoder_sha = load_encoder_or_random(encoder_path, seed)
        cached = (read_json(clips / "features" / "meta.json") or {}).get("encoder_sha256")
        if cached is not None and cached != encoder_sha:
            raise ValueError(f"encoder {encoder_path} (sha256 {encoder_sha}) is not the one build/clips/features was made with ({cached})")
    return load_bundle(encoder, *paths)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Export the L-FUSION model package (ONNX graphs + manifest).")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--split-file", type=Path, default=Path("splits/hc18_split.json"))
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    encoder_path = None if args.random_encoder else args.encoder
    bundle = bundle_from_build(args.build, encoder_path, args.seed)
    clip = clip_bundle_from_build(args.build, encoder_path, args.seed, encoder=bundle.encoder)
    for stale in args.package.glob("*.onnx"):
        stale.unlink()
    export_graphs(bundle, args.package, clip)
    from lfusion.reference import calibrated_ood, clip_reference, reference_images, write_reference

    write_reference(bundle, args.package, reference_images(args.build), calibrated_ood(args.build), args.seed, clip_reference(clip, args.build))
    info = {
        "data": "HC18 training_set (van den Heuvel et al., PLoS ONE 13(8): e0200412, 2018; CC BY 4.0), resized to 224x224",
        "splitFile": str(args.split_file),
        "splitSha256": sha256_of(args.split_file) if args.split_file.exists() else None,
        "encoder": str(encoder_path) if encoder_path else "random-init (development)",
        "seed": args.seed,
        "command": "make -C models all",
        "exportSeconds": round(time.time() - started, 1),
    }
    manifest = write_manifest(args.package, bundle, args.build, info, clip)
    size = sum(p.stat().st_size for p in args.package.rglob("*") if p.is_file())
    print(json.dumps({"package": str(args.package), "bytes": size, "ood": manifest["ood"]}, indent=1))


if __name__ == "__main__":
    main()
