"""Float64 reference vectors of the model package (docs/model-format.md, "Reference vectors").

Two cases share one set of fixed draws (m=2, n=3, k=4): an in-distribution scan (the first of
the test split) and its elastic skull deformation (the first scan of the test split's elastic
OOD set). Inputs are stored exactly as the SDK feeds them (float32) and the expected outputs are
computed in PyTorch in float64 from those same float32 inputs. To keep the package small, large
expected maps are stored rounded to float32 (relative error 6e-8, far below the tolerance) and
the elastic case carries only the encoder features and the final maps; ``cov_factor`` [m, r, HW]
(4 MB) is omitted and checked through ``laplace_maps``, which depend on it.

With the clip path, a third case (``"kind": "clip"``) holds one test clip as raw pixels
(``images_u8``, uint8 [T, 224, 224]: the SDK normalises and encodes every frame itself), the SDK's
draws for L = T * S * S pixels at small m, n, k, and the expected clip outputs (``clip_logit_mean``,
``clip_dropout_logits``, ``clip_fused``, ``clip_ood_score``) computed in float64.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch

from lfusion.data import normalize
from lfusion.features import load_set
from lfusion.inference import Bundle, Draws, bundle_from_build, clip_bundle_from_build, make_draws, run_frame
from lfusion.manifest import write_manifest

REFERENCE_DRAWS = {"m": 2, "n": 3, "k": 4}
CLIP_REFERENCE_DRAWS = {"m": 2, "n": 2, "k": 2}  # the clip case's arrays are L = T * S * S long: kept small
TOLERANCE = {"abs": 1e-4, "rel": 1e-3}
OOD_SET = "ood-test-elastic_skull"


def write_array(folder: Path, name: str, array: torch.Tensor | np.ndarray, dtype: str) -> dict:
    values = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    values = values.astype({"float64": "<f8", "float32": "<f4", "uint8": "u1"}[dtype])
    values = np.ascontiguousarray(values)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(values.tobytes())
    return {"file": name, "dtype": dtype, "shape": list(values.shape)}


def calibrated_ood(build: Path) -> dict:
    path = build / "calibration" / "calibration.json"
    if path.exists():
        return json.loads(path.read_text())["ood"]
    return {"map": "fused", "aggregation": "mean"}


def case_arrays(bundle64: Bundle, image: torch.Tensor, draws: Draws, ood: dict, folder: Path, prefix: str, full: bool, shared: Dict[str, dict]) -> Dict[str, dict]:
    """Runs one case in float64 and writes its arrays; ``shared`` are the draws' entries."""
    result = run_frame(bundle64, image.double(), draws.to(torch.float64), 1.0, ood_map=ood["map"], aggregation=ood["aggregation"])
    arrays = dict(shared)
    arrays["image"] = write_array(folder, f"{prefix}_image.bin", image, "float32")
    outputs = {"features": result["features"], "laplace_maps": result["laplace_maps"], "dropout_maps": result["dropout_maps"]}
    if full:
        outputs |= {k: result[k] for k in ("logit_mean", "cov_diag", "dropout_logits")}
        map_result = run_frame(bundle64, image.double(), draws.to(torch.float64), 0.0, features=result["features"])
        outputs["map_logit_mean"] = map_result["logit_mean"]
    for name, value in outputs.items():
        arrays[name] = write_array(folder, f"{prefix}_{name}.bin", value, "float32")
    arrays["fused"] = write_array(folder, f"{prefix}_fused.bin", result["fused"], "float64")
    arrays["ood_score"] = write_array(folder, f"{prefix}_ood_score.bin", result["ood_score"].reshape(1), "float64")
    return arrays


def reference_images(build: Path) -> List[Tuple[str, str, np.ndarray]]:
    """(case name, source, uint8 image) of the two reference cases, from the feature cache."""
    cache = build / "features"
    return [(name, f"{set_name}[0]", load_set(cache, set_name).images[0]) for name, set_name in (("in-distribution", "test"), ("elastic-ood", OOD_SET))]


class ClipCase(NamedTuple):
    bundle: Bundle  # the clip models (encoder included)
    source: str
    frames: np.ndarray  # uint8 [T, 224, 224]
    ood: dict  # the clip path's calibrated map and aggregation


def clip_reference(clip: Optional[Bundle], build: Path) -> Optional[ClipCase]:
    """The clip case's inputs: the first test clip of the clip cache, and the clip calibration's OOD choice."""
    if clip is None:
        return None
    from lfusion.clips import load_clip_set

    frames = load_clip_set(build / "clips" / "features", "test").images[0]
    calibration = build / "clips" / "calibration.json"
    ood = json.loads(calibration.read_text())["ood"] if calibration.exists() else {"map": "fused", "aggregation": "mean"}
    return ClipCase(clip, "clips test[0]", frames, ood)


def clip_case_arrays(case: ClipCase, folder: Path, seed: int) -> dict:
    """Runs the clip case in float64 (encoder per frame, clip heads, measures, fused map, OOD score)."""
    cfg = case.bundle.laplace.cfg
    pixels = len(case.frames) * cfg.output_size**2
    draws = make_draws(case.bundle, CLIP_REFERENCE_DRAWS["m"], CLIP_REFERENCE_DRAWS["n"], CLIP_REFERENCE_DRAWS["k"], seed, pixels=pixels)
    frames = torch.from_numpy(normalize(case.frames)).unsqueeze(1)  # float32, as the SDK feeds it
    result = run_frame(case.bundle.to(torch.float64), frames.double(), draws.to(torch.float64), 1.0, ood_map=case.ood["map"], aggregation=case.ood["aggregation"])
    arrays = {
        "images_u8": write_array(folder, "clip_images_u8.bin", case.frames, "uint8"),
        "weight_noise": write_array(folder, "clip_draws_weight_noise.bin", draws.weight_noise, "float32"),
        "posterior_scale": write_array(folder, "draws_posterior_scale.bin", torch.ones(1), "float32"),
        "dropout_masks": write_array(folder, "clip_draws_dropout_masks.bin", draws.dropout_masks, "float32"),
        "factor_noise": write_array(folder, "clip_draws_factor_noise.bin", draws.factor_noise, "float32"),
        "diag_noise": write_array(folder, "clip_draws_diag_noise.bin", draws.diag_noise, "float32"),
        "clip_logit_mean": write_array(folder, "clip_logit_mean.bin", result["logit_mean"], "float32"),
        "clip_dropout_logits": write_array(folder, "clip_dropout_logits.bin", result["dropout_logits"], "float32"),
        "clip_fused": write_array(folder, "clip_fused.bin", result["fused"], "float32"),
        "clip_ood_score": write_array(folder, "clip_ood_score.bin", result["ood_score"].reshape(1), "float64"),
    }
    return {"name": "clip", "kind": "clip", "source": case.source, "seed": seed, **CLIP_REFERENCE_DRAWS, "ood": {"map": case.ood["map"], "aggregation": case.ood["aggregation"]}, "arrays": arrays}


def write_reference(bundle: Bundle, package: Path, images: List[Tuple[str, str, np.ndarray]], ood: dict, seed: int, clip: Optional[ClipCase] = None, kept: Sequence[dict] = ()) -> dict:
    """Writes ``reference/``; the first case carries every expected output, the others the final maps
    (and the clip case, with ``clip``, its own). ``kept``: cases of the existing index to keep with their files: one
    that is not recomputed stays whole (the clip case when its models did not change), a recomputed one keeps the
    arrays it does not produce itself (the ``density_*`` vectors the density step adds)."""
    folder = package / "reference"
    keep = {entry["file"] for case in kept for entry in case["arrays"].values()}
    for stale in folder.glob("*.bin"):
        if stale.name not in keep:
            stale.unlink()
    draws = make_draws(bundle, REFERENCE_DRAWS["m"], REFERENCE_DRAWS["n"], REFERENCE_DRAWS["k"], seed)
    shared = {
        "weight_noise": write_array(folder, "draws_weight_noise.bin", draws.weight_noise, "float32"),
        "posterior_scale": write_array(folder, "draws_posterior_scale.bin", torch.ones(1), "float32"),
        "dropout_masks": write_array(folder, "draws_dropout_masks.bin", draws.dropout_masks, "float32"),
        "factor_noise": write_array(folder, "draws_factor_noise.bin", draws.factor_noise, "float32"),
        "diag_noise": write_array(folder, "draws_diag_noise.bin", draws.diag_noise, "float32"),
    }
    bundle64 = bundle.to(torch.float64)
    cases = []
    for number, (name, source, image224) in enumerate(images):
        image = torch.from_numpy(normalize(image224))[None, None]
        arrays = case_arrays(bundle64, image, draws, ood, folder, f"case{number}", number == 0, shared)
        cases.append({"name": name, "source": source, **REFERENCE_DRAWS, "ood": {"map": ood["map"], "aggregation": ood["aggregation"]}, "arrays": arrays})
    if clip is not None:
        cases.append(clip_case_arrays(clip, folder, seed))
    recomputed = {case["name"]: case for case in cases}
    for case in kept:
        if case["name"] in recomputed:
            for name, entry in case["arrays"].items():
                recomputed[case["name"]]["arrays"].setdefault(name, entry)
        else:
            cases.append(case)
    index = {
        "tolerance": TOLERANCE,
        "note": "expected outputs computed in float64 from the float32 inputs; maps stored as float32; a case checks the outputs it lists",
        "cases": cases,
    }
    (folder / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Rewrite the package's float64 reference vectors (and the manifest's checksums).")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    bundle = bundle_from_build(args.build, None if args.random_encoder else args.encoder, args.seed)
    clip = clip_bundle_from_build(args.build, None, args.seed, encoder=bundle.encoder)
    index = write_reference(bundle, args.package, reference_images(args.build), calibrated_ood(args.build), args.seed, clip_reference(clip, args.build))
    manifest = json.loads((args.package / "manifest.json").read_text())
    write_manifest(args.package, bundle, args.build, manifest["provenance"], clip)
    print(json.dumps([{"name": c["name"], "ood_score": c["arrays"].get("ood_score", c["arrays"].get("clip_ood_score"))} for c in index["cases"]]))


if __name__ == "__main__":
    main()
