"""A package's trained 2D heads back as build checkpoints, read from its ONNX graphs.

For refitting what sits on top of the heads (the Laplace posterior, OOD calibration) when the build
folder that trained them is gone: a rerun of the head recipe gives other heads (docs/results.md), so
the package's own weights are the only copy. Writes ``<build>/heads/laplace.pt`` and
``<build>/heads/dropout.pt`` in ``lfusion.train_heads``'s checkpoint format and the package's fitted
posterior (on every covered layer or the last ones) as ``<build>/laplace/posterior.pt``.

Each weight is found by its Conv node (layer shapes are unique within a head), the sampled layers'
MAP vector and posterior standard deviation by the one Add and Mul of the weight sampling
(``theta_MAP + scale * sigma * noise``). The recovery is checked, not assumed: the recovered heads
run in float64 on the package's reference inputs must reproduce its reference outputs.

    cd models && /usr/bin/python3 tools/heads_from_package.py --package packages/lfusion-hc18 --build build
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np
import onnx
import torch
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lfusion.heads import DropoutHead, HeadConfig, LaplaceHead  # noqa: E402
from lfusion.inference import Bundle  # noqa: E402
from lfusion.layers import Layout, split_layout  # noqa: E402


def conv_weights(model: onnx.ModelProto) -> Dict[tuple, Dict[str, np.ndarray]]:
    """{weight shape: {"weight", "bias"}} of every Conv whose weight is an initializer."""
    initializers = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] in initializers:
            weight = initializers[node.input[1]]
            bias = initializers[node.input[2]] if len(node.input) > 2 else np.zeros(weight.shape[0], np.float32)
            if tuple(weight.shape) in found:
                raise ValueError(f"two Conv layers with weight shape {weight.shape}: cannot tell them apart")
            found[tuple(weight.shape)] = {"weight": weight, "bias": bias}
    return found


def flat_vector(layout: Layout, convs: Dict[tuple, Dict[str, np.ndarray]], graph: str) -> torch.Tensor:
    parts: List[np.ndarray] = [np.zeros(0, np.float32)]
    for name, shape in layout:
        if name.endswith(".weight"):
            layer = convs.get(tuple(shape))
            if layer is None:
                raise ValueError(f"{graph}: no Conv with the weight shape of {name} {tuple(shape)}")
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


def recover(package: Path) -> Bundle:
    """The package's heads and posterior (no encoder). A posterior on the last layers leaves the layers before them
    as ordinary Conv weights in the graph; the sampled ones are in the weight sampling's MAP vector."""
    manifest = json.loads((package / "manifest.json").read_text())
    features = manifest["graphs"]["laplace_head"]["inputs"]["features"]
    cfg = HeadConfig(feature_channels=int(features[1]), rank=int(manifest["laplace"]["rank"]), dropout_rate=float(manifest["dropout"]["rate"]))
    laplace_graph = onnx.load(str(package / manifest["graphs"]["laplace_head"]["file"]))
    dropout_graph = onnx.load(str(package / manifest["graphs"]["dropout_head"]["file"]))
    laplace = LaplaceHead(cfg)
    offset = laplace.covered_count - int(manifest["laplace"]["weightCount"])
    vectors = sampling_vectors(laplace_graph, laplace.covered_count - offset)
    convs = conv_weights(laplace_graph)
    at_map, _ = split_layout(cfg.covered_layout(), offset)
    laplace.load_state_dict({"covered": torch.cat([flat_vector(at_map, convs, "laplace_head"), vectors["theta"]]), "map_only": flat_vector(cfg.map_only_layout(), convs, "laplace_head")})
    dropout = DropoutHead(cfg)
    dropout.load_state_dict({"weights": flat_vector(cfg.covered_layout(), conv_weights(dropout_graph), "dropout_head")})
    for head in (laplace, dropout):
        head.eval()
    return Bundle(None, laplace, vectors["sigma"], float(manifest["laplace"]["priorPrecision"]), dropout, offset)


def reference_errors(package: Path, recovered: Bundle) -> Dict[str, float]:
    """Largest absolute difference to the package's float64 reference outputs of its in-distribution case."""
    index = json.loads((package / "reference" / "index.json").read_text())
    case = index["cases"][0]

    def array(name: str) -> torch.Tensor:
        spec = case["arrays"][name]
        dtype = {"float32": "<f4", "float64": "<f8"}[spec["dtype"]]
        return torch.from_numpy(np.fromfile(package / "reference" / spec["file"], dtype=dtype).reshape(spec["shape"])).double()

    bundle = Bundle(None, copy.deepcopy(recovered.laplace).double(), recovered.sigma.double(), recovered.prior_precision, copy.deepcopy(recovered.dropout).double(), recovered.sampled_offset)
    features, image = array("features"), array("image")
    with torch.no_grad():
        thetas = bundle.weight_samples(array("weight_noise"), array("posterior_scale"))
        logit_mean, _, cov_diag = bundle.laplace.forward_with(thetas, features, image, bundle.sampled_offset)
        dropout_logits = bundle.dropout(features, image, array("dropout_masks"))
    got = {"logit_mean": logit_mean, "cov_diag": cov_diag, "dropout_logits": dropout_logits}
    return {name: float((value - array(name)).abs().max()) for name, value in got.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description="Recover the package's trained 2D heads as build checkpoints.")
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted difference to the reference outputs")
    args = parser.parse_args()
    recovered = recover(args.package)
    errors = reference_errors(args.package, recovered)
    print(json.dumps({"reference_max_abs_error": errors}, indent=1))
    if max(errors.values()) > args.tolerance:
        raise SystemExit(f"recovered heads do not reproduce the package's reference outputs (tolerance {args.tolerance})")
    heads = args.build / "heads"
    heads.mkdir(parents=True, exist_ok=True)
    source = {"recovered_from": str(args.package)}
    for kind, head in (("laplace", recovered.laplace), ("dropout", recovered.dropout)):
        torch.save({"kind": kind, "config": head.cfg.to_dict(), "state_dict": head.state_dict(), **source}, heads / f"{kind}.pt")
    (args.build / "laplace").mkdir(parents=True, exist_ok=True)
    posterior = {"sigma": recovered.sigma, "prior_precision": recovered.prior_precision, "sampled_offset": recovered.sampled_offset, "head": str(heads / "laplace.pt")}
    torch.save(posterior | source, args.build / "laplace" / "posterior.pt")


if __name__ == "__main__":
    main()
