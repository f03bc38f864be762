"""tools/heads_from_package.py: the committed package's heads read back from its graphs reproduce its reference outputs."""
import importlib.util
import json
from pathlib import Path

import pytest

MODELS = Path(__file__).resolve().parents[1]
COMMITTED = MODELS / "packages" / "lfusion-hc18"
pytestmark = pytest.mark.skipif(not (COMMITTED / "manifest.json").exists(), reason="no committed package at models/packages/lfusion-hc18")


def load_tool():
    spec = importlib.util.spec_from_file_location("heads_from_package", MODELS / "tools" / "heads_from_package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recovered_heads_reproduce_the_package_reference_outputs():
    tool = load_tool()
    bundle = tool.recover(COMMITTED)
    manifest = json.loads((COMMITTED / "manifest.json").read_text())
    assert bundle.sampled_count == manifest["laplace"]["weightCount"]
    assert bundle.laplace.covered_count - bundle.sampled_offset == manifest["laplace"]["weightCount"]
    errors = tool.reference_errors(COMMITTED, bundle)
    assert max(errors.values()) < 1e-4, errors


@pytest.mark.skipif(not (MODELS / "checkpoints" / "encoder.pt").exists(), reason="no committed encoder checkpoint")
def test_recovered_clip_heads_reproduce_the_package_clip_reference_outputs():
    from lfusion.features import load_encoder_or_random

    tool = load_tool()
    bundle = tool.recover(COMMITTED, "clip")
    manifest = json.loads((COMMITTED / "manifest.json").read_text())
    assert bundle.sampled_offset == 0 and bundle.sampled_count == manifest["clip"]["laplace"]["weightCount"]
    encoder, _ = load_encoder_or_random(MODELS / "checkpoints" / "encoder.pt", 0)
    errors = tool.reference_errors(COMMITTED, bundle, "clip", encoder)
    assert set(errors) == {"clip_logit_mean", "clip_dropout_logits"} and max(errors.values()) < 1e-4, errors


def test_a_head_with_one_weight_changed_does_not_pass():
    tool = load_tool()
    bundle = tool.recover(COMMITTED)
    with_change = bundle.laplace.state_dict()
    with_change["covered"][0] += 0.5  # the projection's first weight, at MAP (not sampled)
    bundle.laplace.load_state_dict(with_change)
    assert tool.reference_errors(COMMITTED, bundle)["logit_mean"] > 1e-3
