"""The real-weights path, checked with a random full-size state dict in USFM's own key layout."""
import onnx
import pytest
import torch

from lfusion.data import NORM_MEAN, NORM_STD
from lfusion.encoder import EncoderConfig, USFMEncoder, export_encoder_onnx
from lfusion.usfm import USFM_RGB_MEAN, USFM_RGB_STD, convert_usfm_state, load_usfm, usfm_config

WIDTH, DEPTH, HEADS, GRID = 768, 12, 12, 14


def random_usfm_checkpoint(seed=0):
    """Key names and shapes as in USFM_latest.pth (BEiT pretraining layout, shared relative bias)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std

    state = {
        "cls_token": rand(1, 1, WIDTH),
        "mask_token": rand(1, 1, WIDTH),
        "patch_embed.proj.weight": rand(WIDTH, 3, 16, 16),
        "patch_embed.proj.bias": rand(WIDTH),
        "rel_pos_bias.relative_position_bias_table": rand((2 * GRID - 1) ** 2 + 3, HEADS, std=0.5),
        "rel_pos_bias.relative_position_index": torch.zeros(GRID * GRID + 1, GRID * GRID + 1, dtype=torch.long),
        "norm.weight": 1 + rand(WIDTH),
        "norm.bias": rand(WIDTH),
        "lm_head.weight": rand(8192, WIDTH),
        "lm_head.bias": rand(8192),
    }
    for i in range(DEPTH):
        p = f"blocks.{i}."
        state.update({
            p + "gamma_1": 0.1 + rand(WIDTH),
            p + "gamma_2": 0.1 + rand(WIDTH),
            p + "norm1.weight": 1 + rand(WIDTH),
            p + "norm1.bias": rand(WIDTH),
            p + "attn.q_bias": rand(WIDTH),
            p + "attn.v_bias": rand(WIDTH),
            p + "attn.qkv.weight": rand(3 * WIDTH, WIDTH),
            p + "attn.proj.weight": rand(WIDTH, WIDTH),
            p + "attn.proj.bias": rand(WIDTH),
            p + "norm2.weight": 1 + rand(WIDTH),
            p + "norm2.bias": rand(WIDTH),
            p + "mlp.fc1.weight": rand(4 * WIDTH, WIDTH),
            p + "mlp.fc1.bias": rand(4 * WIDTH),
            p + "mlp.fc2.weight": rand(WIDTH, 4 * WIDTH),
            p + "mlp.fc2.bias": rand(WIDTH),
        })
    return state


@pytest.fixture(scope="module")
def raw_state():
    return random_usfm_checkpoint()


@pytest.fixture(scope="module")
def usfm_encoder(raw_state, tmp_path_factory):
    """The encoder loaded from a ``USFM_latest.pth`` file (state dict wrapped in ``model``)."""
    path = tmp_path_factory.mktemp("usfm") / "USFM_latest.pth"
    torch.save({"model": raw_state}, path)
    return load_usfm(path)


def test_converted_grey_encoder_computes_usfm_on_the_grey_image_copied_to_rgb(usfm_encoder, raw_state):
    encoder, cfg, notes = usfm_encoder
    assert cfg.width == 768 and cfg.depth == 12 and cfg.heads == 12 and cfg.feature_channels == 3 * 768
    assert any("shared relative position bias" in note for note in notes)

    # Reference: the unconverted three-channel network on USFM's own input convention.
    raw = raw_state
    rgb_cfg = EncoderConfig(**{**cfg.__dict__, "in_chans": 3})
    reference = USFMEncoder(rgb_cfg).eval()
    expected_state = reference.state_dict()
    for key in expected_state:
        if key.endswith("relative_position_bias_table"):
            expected_state[key] = raw["rel_pos_bias.relative_position_bias_table"]
        elif key in raw:
            expected_state[key] = raw[key]
    reference.load_state_dict(expected_state)

    grey = torch.rand(1, 1, 224, 224)
    rgb = (grey.expand(-1, 3, -1, -1) - torch.tensor(USFM_RGB_MEAN)[None, :, None, None]) / torch.tensor(USFM_RGB_STD)[None, :, None, None]
    with torch.no_grad():
        expected = reference.forward_features(rgb)
        actual = encoder.forward_features((grey - NORM_MEAN) / NORM_STD)
    assert actual.shape == (1, 2304, 14, 14)
    torch.testing.assert_close(actual, expected, rtol=1e-3, atol=1e-3)


def test_conversion_rejects_unknown_keys_and_wrong_shapes(raw_state):
    cfg = usfm_config()
    state = {**raw_state, "decoder.weight": torch.zeros(3)}
    with pytest.raises(ValueError, match="unexpected"):
        convert_usfm_state(state, cfg)
    state = {**raw_state, "blocks.0.mlp.fc1.weight": torch.zeros(10, WIDTH)}
    with pytest.raises(ValueError, match="shape"):
        convert_usfm_state(state, cfg)


def test_missing_layer_scale_and_qkv_bias_are_filled_neutrally(raw_state):
    state = dict(raw_state)
    for i in range(DEPTH):
        for name in ("gamma_1", "gamma_2", "attn.q_bias", "attn.v_bias"):
            del state[f"blocks.{i}.{name}"]
    converted, notes = convert_usfm_state(state, usfm_config())
    assert torch.equal(converted["blocks.3.gamma_1"], torch.ones(WIDTH))
    assert torch.equal(converted["blocks.3.attn.q_bias"], torch.zeros(WIDTH))
    assert len(notes) == 1 + 4 * DEPTH


def test_full_size_encoder_exports_to_onnx(usfm_encoder, tmp_path):
    export_encoder_onnx(usfm_encoder[0], tmp_path / "usfm_encoder.onnx")
    model = onnx.load(str(tmp_path / "usfm_encoder.onnx"), load_external_data=False)
    (image,), (features,) = model.graph.input, model.graph.output
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == ["batch", 1, 224, 224]
    assert [d.dim_param or d.dim_value for d in features.type.tensor_type.shape.dim] == ["batch", 2304, 14, 14]
