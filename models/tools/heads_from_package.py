"""A package's trained heads (2D, or the clip path's 3D ones) back as build checkpoints, read from its ONNX graphs.

For refitting what sits on top of the heads (the Laplace posterior, OOD calibration) when the build
folder that trained them is gone: a rerun of the head recipe gives other heads (docs/results.md), so
the package's own weights are the only copy. Writes ``<build>/heads/laplace.pt`` and
``<build>/heads/dropout.pt`` in ``lfusion.train_heads``'s checkpoint format and the package's fitted
posterior (on every covered layer or the last ones) as ``<build>/laplace/posterior.pt`` (``--architecture clip``:
the same under ``<build>/clips``).

Each weight is read from the Conv nodes in forward order (each must have its layer's size), the sampled layers'
MAP vector and posterior standard deviation by the one Add and Mul of the weight sampling
(``theta_MAP + scale * sigma * noise``). The recovery is checked, not assumed: the recovered heads
run in float64 on the package's reference inputs must reproduce its reference outputs.

    cd models && /usr/bin/python3 tools/heads_from_package.py --package packages/lfusion-hc18 --build build
    cd models && /usr/bin/python3 tools/heads_from_package.py --architecture clip --build build
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lfusion.data import normalize  # noqa: E402
from lfusion.features import load_encoder_or_random  # noqa: E402
from lfusion.heads import DropoutHead, HeadConfig, LaplaceHead  # noqa: E402
from lfusion.heads3d import ClipHeadConfig  # noqa: E402
from lfusion.inference import Bundle, Draws, run_frame  # noqa: E402
from lfusion.layers import Layout, split_layout  # noqa: E402


def conv_weights(model: onnx.ModelProto) -> List[Dict[str, np.ndarray]]:
    """{"weight", "bias"} of every Conv whose weight is a constant, in graph (= forward) order."""
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in initializers:
            weight = initializers[node.input[1]]
            bias = initializers[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0], np.float32)
            convs.append({"weight": weight, "bias": bias})
    return convs


def flat_vector(layout: Layout, convs: Iterator[Dict[str, np.ndarray]], graph: str) -> torch.Tensor:
    """The layout's tensors from the next Convs in order; each weight must have its layer's size (the exporter may
    have folded a kernel's trailing unit axes)."""
    parts: List[np.ndarray] = [np.zeros(0, np.float32)]
    layer: Dict[str, np.ndarray] = {}
    for name, shape in layout:
        if name.endswith(".weight"):
            layer = next(convs, {})
            if layer.get("weight") is None or layer["weight"].size != int(np.prod(shape)):
                raise ValueError(f"{graph}: the next Conv does not hold {name} {tuple(shape)}")
        parts.append((layer["weight"] if name.endswith(".weight") else layer["bias"]).reshape(-1))
    return torch.from_numpy(np.concatenate(parts).astype(np.float32))


def sampling_vectors(model: onnx.ModelProto, count: int) -> Dict[str, torch.Tensor]:
    """The MAP vector (the Add's [1, P] constant) and sigma (the Mul's) of the in-graph weight sampling; the exporter
    writes each as an initializer or a Constant node."""
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    initializers |= {node.output[0]: numpy_helper.to_array(node.attribute[0].t) for node in model.graph.node if node.op_type == "Constant" and node.attribute[0].name == "value"}
    found = {}
    for node in model.graph.node:
        for name in node.input:
            value = initializers.get(name)
            if value is not None and value.size == count and value.ndim == 2 and node.op_type in ("Add", "Mul"):
                found["theta" if node.op_type == "Add" else "sigma"] = torch.from_numpy(value.reshape(-1).astype(np.float32))
    if set(found) != {"theta", "sigma"}:
        raise ValueError(f"laplace_head: expected one Add (MAP) and one Mul (sigma) constant of {count} values, found {sorted(found)}")
    return found


def recover(package: Path, architecture: str = "2d") -> Bundle:
    """The package's heads of ``architecture`` (``2d`` or ``clip``) and their posterior (no encoder). A posterior on
    the last layers leaves the layers before them as ordinary Conv weights in the graph; the sampled ones are in the
    weight sampling's MAP vector."""
    manifest = json.loads((package / "manifest.json").read_text())
    settings, prefix, config = (manifest, "", HeadConfig) if architecture == "2d" else (manifest["clip"], "clip_", ClipHeadConfig)
    graphs = {kind: manifest["graphs"][f"{prefix}{kind}_head"] for kind in ("laplace", "dropout")}
    masked = {"dropout_after": tuple(settings["dropout"]["after"])} if architecture == "2d" and "after" in settings["dropout"] else {}
    cfg = config(feature_channels=int(graphs["laplace"]["inputs"]["features"][1]), rank=int(settings["laplace"]["rank"]), dropout_rate=float(settings["dropout"]["rate"]), **masked)
    laplace_graph, dropout_graph = (onnx.load(str(package / graphs[kind]["file"])) for kind in ("laplace", "dropout"))
    laplace = LaplaceHead(cfg)
    offset = laplace.covered_count - int(settings["laplace"]["weightCount"])
    vectors = sampling_vectors(laplace_graph, laplace.covered_count - offset)
    convs = iter(conv_weights(laplace_graph))
    at_map, _ = split_layout(cfg.covered_layout(), offset)
    covered = torch.cat([flat_vector(at_map, convs, "laplace_head"), vectors["theta"]])
    laplace.load_state_dict({"covered": covered, "map_only": flat_vector(cfg.map_only_layout(), convs, "laplace_head")})
    dropout = DropoutHead(cfg)
    dropout.load_state_dict({"weights": flat_vector(cfg.covered_layout(), iter(conv_weights(dropout_graph)), "dropout_head")})
    for head in (laplace, dropout):
        head.eval()
    # 2D heads whose maps are a quarter of the input's leave out their final upsampling (Bundle.half_maps).
    half_maps = architecture == "2d" and 4 * graphs["laplace"]["outputs"]["logit_mean"][1] == manifest["input"]["width"] * manifest["input"]["height"]
    return Bundle(None, laplace, vectors["sigma"], float(settings["laplace"]["priorPrecision"]), dropout, offset, half_maps)


def reference_errors(package: Path, recovered: Bundle, architecture: str = "2d", encoder: Optional[torch.nn.Module] = None) -> Dict[str, float]:
    """Largest absolute difference to the package's float64 reference outputs: of its in-distribution case (2d; the
    features are stored), or of its clip case (clip; the frames are stored, ``encoder`` encodes them)."""
    index = json.loads((package / "reference" / "index.json").read_text())
    case = next(c for c in index["cases"] if (c.get("kind") == "clip") == (architecture == "clip"))

    def array(name: str) -> torch.Tensor:
        spec = case["arrays"][name]
        dtype = {"float32": "<f4", "float64": "<f8", "uint8": "u1"}[spec["dtype"]]
        return torch.from_numpy(np.fromfile(package / "reference" / spec["file"], dtype=dtype).reshape(spec["shape"]).astype(np.float64))

    # The reference writer's own inference (lfusion.inference.run_frame), in float64 on the stored draws.
    bundle = replace(recovered, encoder=encoder if encoder is not None else torch.nn.Identity()).to(torch.float64)
    draws = Draws(*(array(name) for name in ("weight_noise", "factor_noise", "diag_noise", "dropout_masks")))
    if architecture == "clip":
        images = torch.from_numpy(normalize(array("images_u8").numpy().astype(np.uint8))).unsqueeze(1).double()
        result = run_frame(bundle, images, draws, float(array("posterior_scale")))
    else:
        result = run_frame(bundle, array("image"), draws, float(array("posterior_scale")), features=array("features"))
    logit_mean, cov_diag, dropout_logits = result["logit_mean"], result["cov_diag"], result["dropout_logits"]
    if architecture == "clip":
        expected = {"clip_logit_mean": logit_mean, "clip_dropout_logits": dropout_logits}
    else:
        expected = {"logit_mean": logit_mean, "cov_diag": cov_diag, "dropout_logits": dropout_logits}
    return {name: float((value - array(name)).abs().max()) for name, value in expected.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Recover the package's trained heads as build checkpoints.")
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--architecture", choices=("2d", "clip"), default="2d", help="clip: the 3D clip heads, into <build>/clips")
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"), help="encodes the clip reference frames (clip only)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted difference to the reference outputs")
    args = parser.parse_args()
    recovered = recover(args.package, args.architecture)
    encoder = load_encoder_or_random(args.encoder, 0)[0] if args.architecture == "clip" else None
    errors = reference_errors(args.package, recovered, args.architecture, encoder)
    print(json.dumps({"reference_max_abs_error": errors}, indent=1))
    if max(errors.values()) > args.tolerance:
        raise SystemExit(f"recovered heads do not reproduce the package's reference outputs (tolerance {args.tolerance})")
    root = args.build / "clips" if args.architecture == "clip" else args.build
    (root / "heads").mkdir(parents=True, exist_ok=True)
    source = {"recovered_from": str(args.package)}
    for kind, head in (("laplace", recovered.laplace), ("dropout", recovered.dropout)):
        torch.save({"kind": kind, "config": head.cfg.to_dict(), "state_dict": head.state_dict(), **source}, root / "heads" / f"{kind}.pt")
    (root / "laplace").mkdir(parents=True, exist_ok=True)
    posterior = {"sigma": recovered.sigma, "prior_precision": recovered.prior_precision, "sampled_offset": recovered.sampled_offset, "head": str(root / "heads" / "laplace.pt")}
    torch.save(posterior | source, root / "laplace" / "posterior.pt")


if __name__ == "__main__":
    main()
