"""Clip data (simulated sweeps, clip OOD sets) and the 3D heads: shapes, functional per-sample
weights, the exported im2col path, and the GGN diagonal against a brute-force Jacobian."""
import json

import numpy as np
import pytest
import torch

from lfusion.clips import FrameTransform, SweepConfig, exit_sweep, mask_targets, render, sweep, warp
from lfusion.ggn import ggn_diagonal_batch
from lfusion.heads import DropoutHead, LaplaceHead, config_from_dict, random_masks
from lfusion.heads3d import ClipHeadConfig
from lfusion.layers import conv

# L = 3 frames * 4 * 4 (grid 2, two decoder blocks -> S = 4; 16x16 frames, unshuffle 4).
TINY = ClipHeadConfig(feature_channels=3, proj_channels=3, decoder_channels=(3, 2), stem_channels=2, fuse_channels=2, rank=2, grid=2, image_size=16)
FRAMES = 3


def clip_inputs(batch=None, seed=0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    lead = () if batch is None else (batch,)
    features = torch.randn(*lead, FRAMES, TINY.feature_channels, TINY.grid, TINY.grid, generator=generator, dtype=dtype)
    frames = torch.randn(*lead, FRAMES, 1, TINY.image_size, TINY.image_size, generator=generator, dtype=dtype)
    return features, frames


def test_sweep_is_seeded_smooth_and_within_its_ranges():
    cfg = SweepConfig()
    first = sweep(np.random.default_rng(3), 224, cfg)
    assert first == sweep(np.random.default_rng(3), 224, cfg) and first != sweep(np.random.default_rng(4), 224, cfg)
    assert len(first) == cfg.frames
    shifts = np.array([[t.shift_x, t.shift_y] for t in first])
    rotations = np.array([t.rotation_deg for t in first])
    # Smooth: frame-to-frame steps are a small fraction of the total drift range.
    assert np.abs(np.diff(shifts, axis=0)).max() < 0.2 * (cfg.drift_shift * 224)
    assert np.abs(np.diff(rotations)).max() < 0.2 * cfg.drift_rotation_deg * 2
    bound = (cfg.start_shift + cfg.drift_shift * (1 + 2 * cfg.wobble)) * 224
    assert np.abs(shifts).max() <= bound


def test_frame_from_scan_is_the_transform_the_frame_shows():
    transform = FrameTransform(shift_x=12.0, shift_y=-7.0, rotation_deg=20.0, scale=1.1, shear=0.05)
    matrix = transform.frame_from_scan(224)
    scan = np.zeros((224, 224), np.uint8)
    scan[90:95, 130:135] = 255  # a bright square centred at x = 132, y = 92
    frame = warp(scan, matrix, order=1).astype(np.float64)
    ys, xs = np.nonzero(frame)
    centre = np.array([(xs * frame[ys, xs]).sum(), (ys * frame[ys, xs]).sum()]) / frame[ys, xs].sum()
    expected = matrix @ np.array([132.0, 92.0, 1.0])
    assert np.abs(centre - expected).max() < 0.5


def test_masks_move_with_their_frames_and_the_exit_sweep_leaves_the_head_mid_clip():
    yy, xx = np.mgrid[0:224, 0:224]
    mask = (((xx - 112) / 50.0) ** 2 + ((yy - 100) / 35.0) ** 2 <= 1).astype(np.uint8)
    image = (mask * 200 + 20).astype(np.uint8)
    base = sweep(np.random.default_rng(0), 224)
    frames, masks = render(image, mask, base)
    assert frames.shape == masks.shape == (16, 224, 224)
    assert ((frames > 110) == masks.astype(bool)).mean() > 0.99  # the mask covers the bright head in every frame
    leaving = exit_sweep(base, mask, np.random.default_rng(1))
    _, exit_masks = render(image, mask, leaving)
    assert exit_masks[0].sum() > 0.9 * mask.sum()
    assert exit_masks[8:].sum() == 0  # fully out of view from frame T // 2
    assert exit_masks[:4].sum() == masks[:4].sum()  # the exit starts at frame T // 4


def test_mask_targets_are_frame_major_cells():
    masks = np.zeros((1, 2, 8, 8), np.uint8)
    masks[0, 1, :4, 4:] = 1  # frame 1, top-right quarter
    targets = mask_targets(masks, 2)
    assert targets.shape == (1, 8)
    assert targets.tolist() == [[0, 0, 0, 0, 0, 1, 0, 0]]


def test_clip_heads_output_frame_major_maps_and_batch_m_samples_like_separate_runs():
    head = LaplaceHead(TINY, seed=1)
    features, frames = clip_inputs()
    pixels = FRAMES * TINY.output_size**2
    thetas = head.covered.detach() + 0.1 * torch.randn(3, head.covered_count, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        mean, factor, diag = head.forward_with(thetas, features, frames)
        assert mean.shape == (3, pixels) and factor.shape == (3, TINY.rank, pixels) and diag.shape == (3, pixels)
        for j in range(3):
            alone = head.forward_with(thetas[j], features[None], frames[None])
            for batched, single in zip((mean, factor, diag), alone):
                assert torch.allclose(batched[j], single[0], atol=1e-5)
    dropout = DropoutHead(TINY, seed=3)
    masks = random_masks(4, TINY, torch.Generator().manual_seed(4))
    with torch.no_grad():
        logits = dropout(features, frames, masks)
        assert logits.shape == (4, pixels)
        assert torch.allclose(logits[1], dropout(features, frames, masks[1:2])[0], atol=1e-5)


def test_clip_config_round_trips_through_the_checkpoint_dict():
    restored = config_from_dict(TINY.to_dict())
    assert isinstance(restored, ClipHeadConfig) and restored == TINY
    assert TINY.mask_count == sum(TINY.decoder_channels)


@pytest.mark.parametrize("kernel", [(1, 3, 3), (3, 1, 1), (1, 1, 1)])
def test_exported_im2col_path_equals_grouped_conv3d(monkeypatch, kernel):
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 4, 5, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(2, 4, 3, *kernel, generator=generator, dtype=torch.float64)
    bias = torch.randn(2, 4, generator=generator, dtype=torch.float64)
    grouped = conv(x, weight, bias)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    exported = conv(x, weight, bias)
    assert exported.shape == grouped.shape == (2, 4, 4, 5, 6)
    assert torch.allclose(exported, grouped, atol=1e-12)
    for j in range(2):
        padding = tuple(k // 2 for k in kernel)
        alone = torch.nn.functional.conv3d(x, weight[j], bias[j], padding=padding)
        assert torch.allclose(grouped[j], alone[0], atol=1e-12)


def test_clip_ggn_diagonal_equals_brute_force_jacobian():
    head = LaplaceHead(TINY, seed=6).double()
    features, frames = clip_inputs(batch=2, seed=7, dtype=torch.float64)
    theta = head.covered.detach().clone()

    def mean_fn(t):
        return head.mean_only(t, features, frames)

    jacobian = torch.autograd.functional.jacobian(lambda t: mean_fn(t).reshape(-1), theta)  # [B*L, P]
    p = torch.sigmoid(mean_fn(theta).reshape(-1))
    expected = (jacobian.square() * (p * (1 - p))[:, None]).sum(0)
    got = ggn_diagonal_batch(mean_fn, theta, probes=0, generator=torch.Generator(), exact=True)
    assert (expected > 0).sum() > 0.9 * expected.numel()
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-14)
    assert torch.equal(head.covered.detach(), theta)


def test_clip_record_names_the_calibrated_map_after_each_paths_best_validation_measure():
    from lfusion.clip_eval import AUXILIARY_MEASURES, calibrated_auxiliary, columns, measure_table

    table = {name: {"mean": 0.5, "a": 0.5} for name in columns()}
    table["laplace.expected_entropy|mean"]["mean"] = 0.9
    table["dropout.pixel_variance|mean"]["mean"] = 0.8
    table["dropout.calibrated[pixel_variance]|mean"]["a"] = 0.77
    auxiliary = calibrated_auxiliary(table)
    assert auxiliary == {"laplace": "expected_entropy", "dropout": "pixel_variance"}
    record = measure_table(table, auxiliary)
    assert record["dropout.calibrated|mean"] == {"a": 0.77}
    assert not any("[" in name for name in record) and "fused|mean" in record
    assert len(columns()) == len(set(columns())) == len(record) - 2 + 2 * len(AUXILIARY_MEASURES)


def test_true_transforms_align_every_frame_onto_the_first():
    from lfusion.clips import compose, invert

    yy, xx = np.mgrid[0:224, 0:224]
    mask = (((xx - 112) / 50.0) ** 2 + ((yy - 100) / 35.0) ** 2 <= 1).astype(np.uint8)
    trajectory = sweep(np.random.default_rng(2), 224)
    _, masks = render(mask * 255, mask, trajectory)
    matrices = [t.frame_from_scan(224) for t in trajectory]
    last_to_first = compose(matrices[0], invert(matrices[-1]))
    aligned = warp(masks[-1] * 255, last_to_first, order=1) > 127
    assert (aligned != masks[0].astype(bool)).mean() < 0.005
    assert np.allclose(compose(invert(last_to_first), last_to_first), np.eye(3)[:2])


def test_raw_ood_sets_are_the_cached_frames_per_clip_and_are_written_once(tmp_path):
    from lfusion.clips import CLIP_OOD_SET_NAMES, write_raw_ood

    cache, out = tmp_path / "cache", tmp_path / "raw"
    cache.mkdir()
    rng = np.random.default_rng(0)
    frames = {}
    for name in CLIP_OOD_SET_NAMES:
        frames[name] = rng.integers(0, 256, (2 * 3, 4, 4), dtype=np.uint8)  # 2 clips of 3 frames, frame-major
        np.save(cache / f"ood-test-{name}.images.npy", frames[name])
        (cache / f"ood-test-{name}.clips.json").write_text(json.dumps({"count": 2, "names": ["a", "b"]}))
    names = write_raw_ood(cache, out)
    assert names == [f"ood-test-{name}" for name in CLIP_OOD_SET_NAMES]
    for name in CLIP_OOD_SET_NAMES:
        folder = out / f"ood-test-{name}"
        index = json.loads((folder / "index.json").read_text())
        assert (index["count"], index["frames"], index["size"], index["names"]) == (2, 3, 4, ["a", "b"])
        assert (folder / "frames.u8").read_bytes() == frames[name].tobytes()
    kept = out / f"ood-test-{CLIP_OOD_SET_NAMES[0]}" / "frames.u8"
    kept.write_bytes(b"kept")
    write_raw_ood(cache, out)
    assert kept.read_bytes() == b"kept", "a set already written is not rewritten"
