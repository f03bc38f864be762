"""Exports the model package (docs/model-format.md): ONNX graphs, reference vectors, manifest.

The heads are exported through the same functional forward used in training and evaluation:
``LaplaceHeadGraph`` draws the m weight samples inside the graph
(theta_j = theta_MAP + posterior_scale * sigma * weight_noise[j]) and runs them batched;
``DropoutHeadGraph`` takes the k dropout masks as input; ``measures.onnx`` is
``lfusion.measures.MeasuresGraph``. m, n and k are dynamic dimensions. The graphs' declared
inputs and outputs and the manifest are ``lfusion.manifest``'s; the reference vectors
``lfusion.reference``'s.

When the clip path has been trained (``build/clips``: heads, posterior, calibration), the same
graph classes export the 3D heads (``lfusion.heads3d``) as ``clip_laplace_head`` and
``clip_dropout_head`` and ``MeasuresGraph`` again as ``clip_measures`` over L = T * S * S pixels,
and the manifest gets its ``clip`` section; a package without them has neither.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Dict, Optional, Sequence

import onnx
import torch

from lfusion.features import read_json, sha256_of
from lfusion.heads import DropoutHead, LaplaceHead
from lfusion.inference import Bundle, bundle_from_build, clip_bundle_from_build
from lfusion.manifest import COVERED, DEFAULT_SAMPLING, LAPLACE_FIT_KEYS, clip_graph_specs, file_checksums, git_commit, graph_specs, head_settings, step_durations, write_manifest
from lfusion.measures import MeasuresGraph
from lfusion.reference import calibrated_ood, clip_reference, reference_images, write_reference

OPSET = 14


class LaplaceHeadGraph(torch.nn.Module):
    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.head = bundle.laplace
        self.bundle = bundle

    def forward(self, features, image, weight_noise, posterior_scale):
        thetas = self.bundle.weight_samples(weight_noise, posterior_scale)
        return self.head.forward_with(thetas, features, image, self.bundle.sampled_offset, upsample=not self.bundle.half_maps)


class DropoutHeadGraph(torch.nn.Module):
    def __init__(self, head: DropoutHead, upsample: bool = True) -> None:
        super().__init__()
        self.head = head
        self.upsample = upsample

    def forward(self, features, image, dropout_masks):
        return self.head(features, image, dropout_masks, upsample=self.upsample)


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
    export_head_graphs(bundle, specs, package)
    if clip is not None:
        clip_specs = clip_graph_specs(clip)
        export_graph(LaplaceHeadGraph(clip), clip_specs["clip_laplace_head"], package / clip_specs["clip_laplace_head"]["file"])
        export_graph(DropoutHeadGraph(clip.dropout), clip_specs["clip_dropout_head"], package / clip_specs["clip_dropout_head"]["file"])
        export_graph(MeasuresGraph(), clip_specs["clip_measures"], package / clip_specs["clip_measures"]["file"])
        specs |= clip_specs
    return specs


def export_head_graphs(bundle: Bundle, specs: Dict[str, dict], package: Path) -> None:
    """The 2D heads' and measures graphs (with ``bundle.half_maps`` the heads' maps, and so the measures', at half resolution)."""
    export_graph(LaplaceHeadGraph(bundle), specs["laplace_head"], package / specs["laplace_head"]["file"])
    export_graph(DropoutHeadGraph(bundle.dropout, upsample=not bundle.half_maps), specs["dropout_head"], package / specs["dropout_head"]["file"])
    export_graph(MeasuresGraph(), specs["measures"], package / specs["measures"]["file"])


def refresh_measures(package: Path) -> Dict[str, str]:
    """Re-exports an exported package's weightless graphs (``measures``, ``clip_measures``) from the
    current ``MeasuresGraph`` with the shapes its manifest declares, and updates their checksums.

    For a faster formulation of the same measures without rebuilding the package (nothing fitted
    changes: the reference vectors stay valid, ``tools/ort_parity.mjs`` checks them). Returns the
    new checksums by graph.
    """
    path = package / "manifest.json"
    manifest = json.loads(path.read_text())
    refreshed = {}
    for name in ("measures", "clip_measures"):
        spec = manifest["graphs"].get(name)
        if spec is None:
            continue
        export_graph(MeasuresGraph(), spec, package / spec["file"])
        spec["sha256"] = refreshed[name] = sha256_of(package / spec["file"])
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return refreshed


def refresh_heads(package: Path, bundle: Bundle, images: Sequence, build: Path, seed: int) -> dict:
    """Re-exports an exported package's 2D heads and measures graphs from ``bundle`` (its heads, e.g. with a refitted
    posterior on the last layers only, or with ``half_maps``) and updates what depends on them in the package: the
    graphs with their declared inputs, outputs and checksums, the manifest's ``laplace`` and ``dropout`` settings, ``ood`` and validation metrics (from
    ``build/calibration``, which must have been recalibrated on this posterior), the posterior's provenance, and the
    2D reference cases (``images`` as ``lfusion.reference.reference_images``; what they do not compute, the density
    vectors, and the other cases, the clip case, are kept).

    Everything the SDK fits on the Laplacian path's samples afterwards (the fused OOD decision's thresholds, the
    biometry calibration) must be rerun on the refreshed package. Returns the manifest.
    """
    path = package / "manifest.json"
    manifest = json.loads(path.read_text())
    specs = graph_specs(bundle)
    export_head_graphs(bundle, specs, package)
    for name in ("laplace_head", "dropout_head", "measures"):
        manifest["graphs"][name] = specs[name] | {"sha256": sha256_of(package / specs[name]["file"])}
    calibration = read_json(build / "calibration" / "calibration.json") or {}
    settings = head_settings(bundle, COVERED, DEFAULT_SAMPLING, calibration, seed, alerts=(3, 5))
    manifest["laplace"], manifest["dropout"] = settings["laplace"], settings["dropout"]
    if calibration:
        manifest["ood"] = settings["ood"]
        manifest["metrics"] |= {"validation": calibration.get("validation", {}), "calibration": calibration.get("auroc", {})}
    posterior = read_json(build / "laplace" / "posterior.json") or {}
    manifest["provenance"]["laplaceFit"] = {k: v for k, v in posterior.items() if k in LAPLACE_FIT_KEYS}
    manifest["provenance"]["gitCommit"] = git_commit()
    manifest["provenance"]["durationsSeconds"] |= step_durations(build)
    kept = json.loads((package / "reference" / "index.json").read_text())["cases"]
    write_reference(bundle, package, list(images), manifest["ood"], seed, kept=kept)
    manifest["files"] = file_checksums(package, manifest["graphs"])
    path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Export the L-FUSION model package (ONNX graphs + manifest).")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--split-file", type=Path, default=Path("splits/hc18_split.json"))
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--measures-only", action="store_true", help="re-export only the package's measures graphs (refresh_measures)")
    parser.add_argument("--heads-only", action="store_true", help="re-export only the 2D heads and measures graphs from build/'s heads and posterior and update what depends on them (refresh_heads)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.measures_only:
        print(json.dumps(refresh_measures(args.package), indent=1))
        return
    if args.heads_only:
        bundle = bundle_from_build(args.build, args.encoder, args.seed)
        manifest = refresh_heads(args.package, bundle, reference_images(args.build), args.build, args.seed)
        print(json.dumps({"laplace": manifest["laplace"], "ood": manifest["ood"]}, indent=1))
        return
    started = time.time()
    encoder_path = None if args.random_encoder else args.encoder
    bundle = bundle_from_build(args.build, encoder_path, args.seed)
    clip = clip_bundle_from_build(args.build, encoder_path, args.seed, encoder=bundle.encoder)
    for stale in args.package.glob("*.onnx"):
        stale.unlink()
    export_graphs(bundle, args.package, clip)
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
