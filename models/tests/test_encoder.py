import json

import numpy as np
import onnx
import pytest
import torch

from lfusion.data import Prepared, save_prepared
from lfusion.encoder import EncoderConfig, USFMEncoder, export_encoder_onnx, grid_positions, load_encoder, relative_position_index, save_encoder
from lfusion import pretrain


def small_config(**overrides):
    return EncoderConfig(**{"width": 32, "depth": 3, "heads": 2, "feature_blocks": (1, 3), **overrides})


def test_default_config_feature_shape():
    torch.manual_seed(0)
    encoder = USFMEncoder(EncoderConfig()).eval()
    with torch.no_grad():
        features = encoder.forward_features(torch.randn(2, 1, 224, 224))
    assert EncoderConfig().feature_channels == 576
    assert features.shape == (2, 576, 14, 14)


@pytest.mark.parametrize("overrides", [{"feature_blocks": (0,)}, {"feature_blocks": (4,)}, {"width": 30, "heads": 4}, {"img_size": 100}])
def test_config_rejects_inconsistent_values(overrides):
    with pytest.raises(ValueError):
        small_config(**overrides)


def test_relative_position_index_follows_beit():
    # 2x2 grid: patch pairs index (dy + 1) * 3 + (dx + 1); 9, 10, 11 are cls->token, token->cls, cls->cls.
    expected = [
        [11, 9, 9, 9, 9],
        [10, 4, 3, 1, 0],
        [10, 5, 4, 2, 1],
        [10, 7, 6, 4, 3],
        [10, 8, 7, 5, 4],
    ]
    assert relative_position_index(2).tolist() == expected


def test_visible_tokens_match_full_pass_and_follow_their_positions():
    torch.manual_seed(0)
    encoder = USFMEncoder(small_config()).eval()
    for block in encoder.blocks:
        torch.nn.init.normal_(block.attn.relative_position_bias_table, std=1.0)
    x = torch.randn(2, 1, 224, 224)
    with torch.no_grad():
        tokens = encoder.tokens(x)
        for block in encoder.blocks:
            tokens = block(tokens)
        full = encoder.norm(tokens)
        all_kept = encoder.forward_visible(x, torch.arange(196).expand(2, -1))
        keep = torch.tensor([[5, 17, 100, 3], [0, 195, 42, 43]])
        order = torch.tensor([2, 0, 3, 1])
        subset = encoder.forward_visible(x, keep)
        permuted = encoder.forward_visible(x, keep[:, order])
    torch.testing.assert_close(all_kept, full)
    # Positions travel with the tokens: permuting the kept set permutes the outputs only.
    torch.testing.assert_close(permuted[:, 1:], subset[:, 1:][:, order], rtol=1e-5, atol=1e-5)
    # ...and positions matter: the same patch contents placed at other positions change the output.
    moved = torch.zeros_like(x)
    moved[..., 32:48, 64:80] = x[..., 0:16, 80:96]  # patch 5 -> patch 32
    moved[..., 48:64, 16:32] = x[..., 16:32, 16:32]  # patch 15 -> patch 43
    with torch.no_grad():
        original = encoder.forward_visible(x, torch.tensor([[5, 15]]).expand(2, -1))
        relocated = encoder.forward_visible(moved, torch.tensor([[32, 43]]).expand(2, -1))
    torch.testing.assert_close(encoder.tokens(x, torch.tensor([[5, 15]]).expand(2, -1)), encoder.tokens(moved, torch.tensor([[32, 43]]).expand(2, -1)))
    assert not torch.allclose(original, relocated, atol=1e-3)


def test_a_smaller_image_sees_the_offsets_of_the_full_grid():
    assert grid_positions(14, 14).tolist() == list(range(196))
    assert grid_positions(7, 14)[[0, 1, 7, 48]].tolist() == [0, 1, 14, 6 * 14 + 6]
    torch.manual_seed(0)
    encoder = USFMEncoder(small_config()).eval()
    for block in encoder.blocks:
        torch.nn.init.normal_(block.attn.relative_position_bias_table, std=1.0)
    small = torch.randn(2, 1, 112, 112)
    placed = torch.zeros(2, 1, 224, 224)
    placed[..., :112, :112] = small
    keep = torch.tensor([[0, 9, 30, 48], [3, 4, 40, 12]])
    with torch.no_grad():
        # The kept patches of the 112 image behave exactly as the same patches in the top-left of a 224 image.
        torch.testing.assert_close(encoder.forward_visible(small, keep), encoder.forward_visible(placed, grid_positions(7, 14)[keep]))


def test_low_resolution_step_trains_the_shared_bias_table():
    torch.manual_seed(0)
    cfg = pretrain.PretrainConfig(decoder_width=16, decoder_depth=1, decoder_heads=2)
    model = pretrain.MaskedAutoencoder(small_config(), cfg)
    loss = pretrain.train_step(model, torch.randn(2, 1, 112, 112), cfg, torch.Generator().manual_seed(0))
    loss.backward()
    table = model.encoder.blocks[0].attn.relative_position_bias_table.grad
    assert torch.isfinite(loss) and table.abs().sum() > 0
    # Offsets beyond +-6 patches never occur in a 7x7 grid: their entries get no gradient.
    assert table.reshape(-1)[: 27 * 27].reshape(27, 27, -1)[0].abs().sum() == 0


def test_save_load_roundtrip_is_frozen_and_close(tmp_path):
    torch.manual_seed(0)
    encoder = USFMEncoder(small_config()).eval()
    save_encoder(encoder, tmp_path / "encoder.pt", meta={"note": "test"})
    loaded, cfg = load_encoder(tmp_path / "encoder.pt")
    assert cfg == encoder.cfg and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    x = torch.randn(1, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(x), encoder.forward_features(x), rtol=2e-2, atol=2e-2)


def test_onnx_export_has_named_io_and_dynamic_batch(tmp_path):
    encoder = USFMEncoder(small_config())
    export_encoder_onnx(encoder, tmp_path / "encoder.onnx")
    model = onnx.load(str(tmp_path / "encoder.onnx"))
    onnx.checker.check_model(model)
    (image,), (features,) = model.graph.input, model.graph.output
    assert image.name == "image" and features.name == "features"
    image_dims = [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim]
    feature_dims = [d.dim_param or d.dim_value for d in features.type.tensor_type.shape.dim]
    assert image_dims == ["batch", 1, 224, 224]
    assert feature_dims == ["batch", 64, 14, 14]
    assert 13 <= model.opset_import[0].version <= 17


def test_frequency_band_removal_and_learning_rate_schedule():
    images = torch.randn(2, 1, 32, 32)
    empty = torch.tensor([0.2, 0.5])
    torch.testing.assert_close(pretrain.remove_frequency_band(images, empty, empty), images, rtol=1e-4, atol=1e-4)
    filtered = pretrain.remove_frequency_band(images, torch.zeros(2), torch.full((2,), 2.0))
    assert filtered.abs().max() < 1e-4
    cfg = pretrain.PretrainConfig(warmup_steps=10, plan_steps=100, lr=1e-3, min_lr=1e-5)
    assert pretrain.learning_rate(0, cfg) == pytest.approx(1e-4)
    assert pretrain.learning_rate(10, cfg) == pytest.approx(1e-3)
    assert pretrain.learning_rate(55, cfg) == pytest.approx(0.5 * (1e-3 + 1e-5))
    assert pretrain.learning_rate(100, cfg) == pytest.approx(1e-5)
    assert pretrain.learning_rate(250, cfg) == pytest.approx(1e-5)


def test_masked_autoencoder_step_trains_the_encoder():
    torch.manual_seed(0)
    cfg = pretrain.PretrainConfig(decoder_width=16, decoder_depth=1, decoder_heads=2)
    model = pretrain.MaskedAutoencoder(small_config(), cfg)
    loss = pretrain.train_step(model, torch.randn(2, 1, 224, 224), cfg, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad.abs().sum() > 0
    assert model.encoder.blocks[0].attn.relative_position_bias_table.grad.abs().sum() > 0


def tiny_prepared(path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (6, 224, 224), dtype=np.uint8)
    prepared = Prepared(
        images=images[:4], masks=np.zeros((4, 224, 224), np.uint8), spacing_xy=np.ones((4, 2)), hc_mm=np.ones(4),
        pixel_size_mm=np.ones(4), names=["000_HC", "001_HC", "002_HC", "003_HC"], subjects=["000", "001", "002", "003"],
        splits=["train"] * 4, unlabelled_images=images[4:], unlabelled_names=["900_HC", "901_HC"],
    )
    save_prepared(prepared, path / "prepared.npz")
    return path


def test_pretraining_cli_resumes(tmp_path):
    args = ["--data", str(tiny_prepared(tmp_path / "hc18")), "--out", str(tmp_path / "encoder.pt"), "--state", str(tmp_path / "state.pt"),
            "--minutes", "0.03", "--resume", "--batch", "2", "--width", "32", "--depth", "2", "--heads", "2",
            "--feature-blocks", "1", "2", "--threads", "1"]
    pretrain.main(args)
    first = json.loads((tmp_path / "encoder.json").read_text())
    pretrain.main(args)
    second = json.loads((tmp_path / "encoder.json").read_text())
    assert first["steps"] > 0 and second["steps"] > first["steps"]
    assert second["images_seen"] == 2 * second["steps"] and len(second["commands"]) == 2
    assert second["sessions"][1]["start_step"] == first["steps"] and second["sessions"][1]["end_step"] == second["steps"]
    encoder, cfg = load_encoder(tmp_path / "encoder.pt")
    assert cfg.width == 32 and cfg.feature_blocks == (1, 2)


def test_resumed_pretraining_keeps_its_plan_and_snapshots_milestones(tmp_path):
    data = tiny_prepared(tmp_path / "hc18")
    init = USFMEncoder(small_config())
    save_encoder(init, tmp_path / "init.pt", meta={"total_wall_clock_minutes": 77.0, "images_seen": 1000, "steps": 10})

    def run(name, *extra):
        folder = tmp_path / name
        pretrain.main(["--data", str(data), "--out", str(folder / "encoder.pt"), "--state", str(folder / "state.pt"), "--snapshots", str(folder / "snapshots"),
                       "--snapshot-every", "2", "--batch", "2", "--threads", "1", "--resume", "--minutes", "10", *extra])
        return folder

    first = ["--plan-steps", "6", "--warmup-steps", "2", "--low-resolution-steps", "2", "--init-encoder", str(tmp_path / "init.pt")]
    whole = run("whole", *first)
    run("split", *first, "--until-step", "3")
    with pytest.raises(SystemExit):  # a resume cannot change the plan
        run("split", "--plan-steps", "8")
    split = run("split")
    record = json.loads((split / "encoder.json").read_text())
    assert record["steps"] == 6 and record["pretrain_config"]["plan_steps"] == 6
    assert [(s["start_step"], s["end_step"], s["ended"]) for s in record["sessions"]] == [(0, 3, "until-step"), (3, 6, "plan complete")]
    assert record["pretraining_images_seen"] == 1000 + 12 and record["pretraining_minutes"] >= 77.0
    # Resuming continues the same schedule and random streams: the weights are those of one uninterrupted session.
    for key, value in torch.load(str(whole / "state.pt"))["model"].items():
        torch.testing.assert_close(torch.load(str(split / "state.pt"))["model"][key], value, rtol=0, atol=0)
    snapshots = sorted((split / "snapshots").glob("*.pt"))
    assert [p.name for p in snapshots] == ["encoder-step000002.pt", "encoder-step000004.pt", "encoder-step000006.pt"]
    milestone = json.loads(snapshots[1].with_suffix(".json").read_text())
    assert milestone["steps"] == 4 and milestone["images_seen"] == 8 and milestone["init"]["images_seen"] == 1000
    assert milestone["lr"] == pytest.approx(pretrain.learning_rate(4, pretrain.PretrainConfig(**record["pretrain_config"])))
    encoder, cfg = load_encoder(snapshots[0])
    assert cfg == small_config()
    # The warm start is the encoder it names (a session that ends before its first step saves it unchanged).
    untouched = run("zero", "--plan-steps", "6", "--until-step", "0", "--init-encoder", str(tmp_path / "init.pt"))
    warm, _ = load_encoder(untouched / "encoder.pt")
    for key, value in init.state_dict().items():
        torch.testing.assert_close(warm.state_dict()[key], value.half().float() if value.is_floating_point() else value)
