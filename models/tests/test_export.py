"""Export: declared graph interfaces, manifest checksums, and ONNX Runtime parity.

Debian has no python3-onnxruntime, so parity runs the SDK's own runtime (onnxruntime-node)
through ``models/tools/ort_parity.mjs``; it is skipped with a message when node or the npm
dependencies are absent.
"""
import hashlib
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from lfusion.encoder import EncoderConfig, USFMEncoder, freeze
from lfusion.export import check_declared, export_graphs, refresh_heads, refresh_measures
from lfusion.heads import DropoutHead, HeadConfig, LaplaceHead
from lfusion.inference import Bundle
from lfusion.manifest import graph_specs, write_manifest
from lfusion.measures import MEASURE_ORDER
from lfusion.reference import write_reference

MODELS = Path(__file__).resolve().parents[1]
REPO = MODELS.parent
PARITY_SCRIPT = MODELS / "tools" / "ort_parity.mjs"
COMMITTED = MODELS / "packages" / "lfusion-hc18"


def small_bundle() -> Bundle:
    torch.manual_seed(0)
    encoder = freeze(USFMEncoder(EncoderConfig(width=24, depth=2, heads=2, feature_blocks=(1, 2))))
    cfg = HeadConfig(feature_channels=48, proj_channels=8, decoder_channels=(8, 8, 4, 4), stem_channels=4, fuse_channels=4, rank=3)
    laplace, dropout = LaplaceHead(cfg, seed=1), DropoutHead(cfg, seed=2)
    sigma = 0.05 * torch.rand(laplace.covered_count, generator=torch.Generator().manual_seed(3))
    for module in (laplace, dropout):
        module.eval()
    return Bundle(encoder, laplace, sigma, 1.0, dropout)


def ort_available() -> bool:
    if shutil.which("node") is None:
        return False
    probe = subprocess.run(["node", "-e", "import('onnxruntime-node').then(() => process.exit(0), () => process.exit(1))"], cwd=MODELS, capture_output=True)
    return probe.returncode == 0


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def synthetic_images(seed: int, names=("in-distribution", "elastic-ood")):
    """Reference-case images (name, source, uint8 image) of random pixels."""
    rng = np.random.default_rng(seed)
    return [(name, "synthetic", rng.integers(0, 256, (224, 224), dtype=np.uint8)) for name in names]


def copy_of(folder: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "package"
    shutil.copytree(folder, copy)
    return copy


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("package")
    bundle = small_bundle()
    export_graphs(bundle, folder)
    write_reference(bundle, folder, synthetic_images(0), {"map": "fused", "aggregation": "quantile:0.9"}, seed=5)
    write_manifest(folder, bundle, folder / "no-build", {"seed": 5})
    return folder, bundle


def validate_package(folder: Path) -> dict:
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["format"] == "lfusion-model-package" and manifest["formatVersion"] == 1
    assert manifest["measures"]["order"] == list(MEASURE_ORDER)
    for name, spec in manifest["graphs"].items():
        assert sha256(folder / spec["file"]) == spec["sha256"], name
        check_declared(folder / spec["file"], spec)
    for relative, digest in manifest["files"].items():
        assert sha256(folder / relative) == digest, relative
    index = json.loads((folder / "reference" / "index.json").read_text())
    for case in index["cases"]:
        for name, entry in case["arrays"].items():
            itemsize = {"float64": 8, "float32": 4, "uint8": 1}[entry["dtype"]]
            assert (folder / "reference" / entry["file"]).stat().st_size == itemsize * int(np.prod(entry["shape"])), name
    return manifest


def test_exported_package_is_format_valid(package):
    folder, bundle = package
    manifest = validate_package(folder)
    assert manifest["laplace"]["weightCount"] == bundle.laplace.covered_count
    assert manifest["dropout"]["maskCount"] == bundle.dropout.cfg.mask_count
    assert set(manifest["graphs"]) == set(graph_specs(bundle))


def test_declared_shapes_are_enforced(package):
    folder, bundle = package
    spec = json.loads(json.dumps(graph_specs(bundle)["dropout_head"]))
    spec["inputs"]["dropout_masks"][1] += 1
    with pytest.raises(ValueError):
        check_declared(folder / spec["file"], spec)


def parity_report(folder: Path) -> dict:
    """tools/ort_parity.mjs on an exported package: its JSON report, asserted to pass."""
    result = subprocess.run(["node", str(PARITY_SCRIPT), str(folder)], cwd=MODELS, capture_output=True, text=True, timeout=300)
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"], json.dumps(report, indent=1)
    return report


@pytest.mark.skipif(not ort_available(), reason="node + onnxruntime-node (npm install at the repo root) not available")
def test_onnx_runtime_matches_pytorch_float64_reference(package):
    folder, _ = package
    report = parity_report(folder)
    checked = {c["name"] for case in report["report"] for c in case["checks"]}
    assert {"features", "logit_mean", "map_logit_mean", "dropout_logits", "laplace_maps", "dropout_maps"} <= checked


def test_refresh_measures_rewrites_the_measures_graph_and_its_checksum(package, tmp_path):
    folder, _ = package
    copy = copy_of(folder, tmp_path)
    stale = copy / json.loads((copy / "manifest.json").read_text())["graphs"]["measures"]["file"]
    stale.write_bytes(b"not a graph")
    assert set(refresh_measures(copy)) == {"measures"}  # the small package has no clip graphs
    validate_package(copy)
    if ort_available():
        parity_report(copy)


def test_refresh_heads_exports_a_last_layers_posterior_and_keeps_other_cases(package, tmp_path):
    folder, bundle = package
    copy = copy_of(folder, tmp_path)
    offset = bundle.laplace.sampled_offset("fuse")
    last = Bundle(bundle.encoder, bundle.laplace, bundle.sigma[offset:], 2.0, bundle.dropout, offset)
    build = tmp_path / "build"
    (build / "calibration").mkdir(parents=True)
    ood = {"map": "laplace.mutual_information", "aggregation": "mean", "threshold": 0.5, "raiseAfter": 3, "clearAfter": 5, "calibrated": True}
    (build / "calibration" / "calibration.json").write_text(json.dumps({"ood": ood, "validation": {"lfusion": {"dice": 0.9}}}))
    before = json.loads((copy / "manifest.json").read_text())
    manifest = refresh_heads(copy, last, synthetic_images(1), build, seed=5)
    validate_package(copy)
    assert manifest["laplace"]["weightCount"] == last.sampled_count == bundle.laplace.covered_count - offset
    assert manifest["graphs"]["laplace_head"]["inputs"]["weight_noise"] == ["m", last.sampled_count]
    assert manifest["laplace"]["covered"].startswith("last layers (fuse, mean)") and manifest["ood"] == ood
    assert manifest["graphs"]["encoder"] == before["graphs"]["encoder"]
    cases = json.loads((copy / "reference" / "index.json").read_text())["cases"]
    assert cases[0]["arrays"]["weight_noise"]["shape"] == [2, last.sampled_count]
    if ort_available():
        parity_report(copy)


def test_half_map_heads_export_small_maps_and_measures_and_full_resolution_references(package, tmp_path):
    # The committed package's form: heads without their final upsampling, the measures on their maps (the SDK
    # upsamples the measure maps; the reference's fused map is at full resolution).
    folder, bundle = package
    copy = copy_of(folder, tmp_path)
    half = replace(bundle, half_maps=True)
    manifest = refresh_heads(copy, half, synthetic_images(1), tmp_path / "no-build", seed=5)
    validate_package(copy)
    graphs = manifest["graphs"]
    assert graphs["laplace_head"]["outputs"]["cov_factor"] == ["m", 3, 112 * 112] and graphs["dropout_head"]["outputs"]["logits"] == ["k", 112 * 112]
    assert graphs["measures"]["inputs"]["diag_noise"] == ["m", "n", 112 * 112] and graphs["measures"]["outputs"]["laplace_maps"] == [len(MEASURE_ORDER), 112 * 112]
    case = json.loads((copy / "reference" / "index.json").read_text())["cases"][0]
    assert case["arrays"]["logit_mean"]["shape"] == [2, 112 * 112] and case["arrays"]["laplace_maps"]["shape"] == [len(MEASURE_ORDER), 112 * 112]
    assert case["arrays"]["fused"]["shape"] == [224 * 224]
    if ort_available():
        parity_report(copy)


def test_write_reference_keeps_the_cases_it_is_given_with_their_files(package, tmp_path):
    folder, bundle = package
    copy = copy_of(folder, tmp_path)
    for name in ("clip_kept.bin", "case0_density_score.bin"):
        (copy / "reference" / name).write_bytes(np.arange(3, dtype="<f4").tobytes())
    clip = {"name": "clip", "kind": "clip", "arrays": {"kept": {"file": "clip_kept.bin", "dtype": "float32", "shape": [3]}}}
    old = json.loads((copy / "reference" / "index.json").read_text())["cases"][0]
    old["arrays"]["density_score"] = {"file": "case0_density_score.bin", "dtype": "float32", "shape": [3]}
    index = write_reference(bundle, copy, synthetic_images(2, names=("in-distribution",)), {"map": "fused", "aggregation": "mean"}, seed=5, kept=[old, clip])
    assert [c["name"] for c in index["cases"]] == ["in-distribution", "clip"] and index["cases"][1] == clip
    assert index["cases"][0]["arrays"]["density_score"] == old["arrays"]["density_score"]
    assert index["cases"][0]["arrays"]["logit_mean"]["file"] == "case0_logit_mean.bin"
    for name in ("clip_kept.bin", "case0_density_score.bin"):
        assert (copy / "reference" / name).read_bytes() == np.arange(3, dtype="<f4").tobytes()
    assert not (copy / "reference" / "case1_image.bin").exists()  # the old second case's files are gone


@pytest.mark.skipif(not (COMMITTED / "manifest.json").exists(), reason="no committed package at models/packages/lfusion-hc18")
def test_committed_package_is_format_valid():
    validate_package(COMMITTED)
