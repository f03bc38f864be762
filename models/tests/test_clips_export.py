"""Export of the clip path: declared clip graphs, the manifest's clip section, and ONNX Runtime
against the PyTorch float64 clip reference case (encoder per frame, 3D heads, measures, fused map,
OOD score) on the SDK's draws, through ``models/tools/ort_parity.mjs``."""
import json

import numpy as np
import pytest
import torch

from lfusion.export import export_graphs
from lfusion.heads import DropoutHead, LaplaceHead
from lfusion.heads3d import ClipHeadConfig
from lfusion.inference import Bundle
from lfusion.manifest import clip_graph_specs, write_manifest
from lfusion.reference import ClipCase, write_reference
from test_export import ort_available, parity_report, small_bundle, validate_package

# Small widths, but the real geometry: 16 frames, 14x14 features, S = 56, 224x224 frames.
CLIP = ClipHeadConfig(feature_channels=48, proj_channels=4, decoder_channels=(4, 4, 2), stem_channels=2, fuse_channels=2, rank=2)


@pytest.fixture(scope="module")
def clip_package(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clip-package")
    bundle = small_bundle()
    laplace, dropout = LaplaceHead(CLIP, seed=11), DropoutHead(CLIP, seed=12)
    for module in (laplace, dropout):
        module.eval()
    sigma = 0.05 * torch.rand(laplace.covered_count, generator=torch.Generator().manual_seed(13))
    clip = Bundle(bundle.encoder, laplace, sigma, 3.0, dropout)
    export_graphs(bundle, folder, clip)
    rng = np.random.default_rng(1)
    images = [("in-distribution", "synthetic", rng.integers(0, 256, (224, 224), dtype=np.uint8))]
    frames = rng.integers(0, 256, (16, 224, 224), dtype=np.uint8)
    case = ClipCase(clip, "synthetic", frames, {"map": "laplace.expected_entropy", "aggregation": "quantile:0.9"})
    write_reference(bundle, folder, images, {"map": "fused", "aggregation": "mean"}, seed=5, clip=case)
    write_manifest(folder, bundle, folder / "no-build", {"seed": 5}, clip)
    return folder, clip


def test_clip_graphs_and_section_follow_the_contract(clip_package):
    folder, clip = clip_package
    manifest = validate_package(folder)
    section = manifest["clip"]
    assert section["frames"] == 16 and section["outputSize"] == 56
    assert section["laplace"]["weightCount"] == clip.laplace.covered_count and section["laplace"]["rank"] == CLIP.rank
    assert section["dropout"]["maskCount"] == CLIP.mask_count
    assert {"m", "n", "k", "maxM", "maxN", "maxK", "seed"} <= set(section["sampling"])
    specs = clip_graph_specs(clip)
    assert set(specs) == {"clip_laplace_head", "clip_dropout_head", "clip_measures"} <= set(manifest["graphs"])
    pixels = 16 * 56 * 56
    assert manifest["graphs"]["clip_laplace_head"]["inputs"] == {"features": [16, 48, 14, 14], "images": [16, 1, 224, 224], "weight_noise": ["m", clip.laplace.covered_count], "posterior_scale": [1]}
    assert manifest["graphs"]["clip_measures"]["outputs"] == {"laplace_maps": [7, pixels], "dropout_maps": [7, pixels]}
    case = json.loads((folder / "reference" / "index.json").read_text())["cases"][-1]
    assert case["kind"] == "clip" and case["arrays"]["images_u8"]["dtype"] == "uint8"
    assert case["arrays"]["clip_logit_mean"]["shape"] == [2, pixels] and case["arrays"]["diag_noise"]["shape"] == [2, 2, pixels]


@pytest.mark.skipif(not ort_available(), reason="node + onnxruntime-node (npm install at the repo root) not available")
def test_onnx_runtime_matches_pytorch_float64_clip_reference(clip_package):
    folder, _ = clip_package
    report = parity_report(folder)
    clip_checks = {c["name"] for case in report["report"] if case["case"] == "clip" for c in case["checks"]}
    assert clip_checks == {"clip_logit_mean", "clip_dropout_logits", "clip_fused", "clip_ood_score"}
