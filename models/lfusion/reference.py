"""Float64 reference vectors of the model package (docs/model-format.md, "Reference vectors").

Two cases share one set of fixed draws (m=2, n=3, k=4): an in-distribution scan (the first of
the test split) and its elastic skull deformation (the first scan of the test split's elastic
OOD set). Inputs are stored exactly as the SDK feeds them (float32) and the expected outputs are
computed in PyTorch in float64 from those same float32 inputs. To keep the package small, large
expected maps are stored rounded to float32 (relative error 6e-8, far below the tolerance) and
the elastic case carries only the encoder features and the final maps; ``cov_factor`` [m, r, HW]
(4 MB) is omitted and checked through ``laplace_maps``, which depend on it.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from lfusion.data import normalize
from lfusion.features import load_set
from lfusion.inference import Bundle, Draws, make_draws, run_frame
from lfusion.measures import stack_measures

REFERENCE_DRAWS = {"m": 2, "n": 3, "k": 4}
TOLERANCE = {"abs": 1e-4, "rel": 1e-3}
OOD_SET = "ood-test-elastic_skull"


def write_array(folder: Path, name: str, array: torch.Tensor, dtype: str) -> dict:
    values = array.detach().cpu().numpy().astype("<f8" if dtype == "float64" else "<f4")
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
    outputs = {"features": result["features"], "laplace_maps": stack_measures(result["laplace"]), "dropout_maps": stack_measures(result["dropout"])}
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


def write_reference(bundle: Bundle, package: Path, images: List[Tuple[str, str, np.ndarray]], ood: dict, seed: int) -> dict:
    """Writes ``reference/``; the first case carries every expected output, the others the final maps."""
    folder = package / "reference"
    for stale in folder.glob("*.bin"):
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
    index = {
        "tolerance": TOLERANCE,
        "note": "expected outputs computed in float64 from the float32 inputs; maps stored as float32; a case checks the outputs it lists",
        "cases": cases,
    }
    (folder / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    return index


def main(argv: Optional[Sequence[str]] = None) -> None:
    from lfusion.export import bundle_from_build, write_manifest

    parser = argparse.ArgumentParser(description="Rewrite the package's float64 reference vectors (and the manifest's checksums).")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true")
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    bundle = bundle_from_build(args.build, None if args.random_encoder else args.encoder, args.seed)
    index = write_reference(bundle, args.package, reference_images(args.build), calibrated_ood(args.build), args.seed)
    manifest = json.loads((args.package / "manifest.json").read_text())
    write_manifest(args.package, bundle, args.build, manifest["provenance"])
    print(json.dumps([{"name": c["name"], "ood_score": c["arrays"]["ood_score"]} for c in index["cases"]]))


if __name__ == "__main__":
    main()
