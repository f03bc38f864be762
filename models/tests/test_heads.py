from dataclasses import replace

import pytest
import torch

from lfusion import heads
from lfusion.export import LaplaceHeadGraph
from lfusion.inference import Bundle
from lfusion.heads import DropoutHead, HeadConfig, LaplaceHead, parameter_counts, random_masks
from lfusion.laplace import posterior_std, sample_weights
from lfusion.layers import conv, layout_size, upsample2

TINY = HeadConfig(feature_channels=6, proj_channels=5, decoder_channels=(4, 3, 3, 2), stem_channels=2, fuse_channels=3, rank=2)


def inputs(batch=1, grid=2, seed=0):
    generator = torch.Generator().manual_seed(seed)
    size = grid * 16
    return torch.randn(batch, TINY.feature_channels, grid, grid, generator=generator), torch.randn(batch, 1, size, size, generator=generator)


def test_per_sample_convolution_matches_conv2d():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 9, 7, generator=generator)
    for kernel in (1, 3):
        w = torch.randn(3, 5, 4, kernel, kernel, generator=generator)
        b = torch.randn(3, 5, generator=generator)
        batched = conv(x, w, b)
        for j in range(3):
            assert torch.allclose(batched[j], conv(x[j : j + 1], w[j], b[j])[0], atol=1e-5)
        shared_input = conv(x[:1], w, b)
        for j in range(3):
            assert torch.allclose(shared_input[j], conv(x[:1], w[j], b[j])[0], atol=1e-5)


def test_m_weight_samples_in_one_run_match_separate_runs():
    head = LaplaceHead(TINY, seed=3)
    features, image = inputs()
    thetas = head.covered.detach() + 0.1 * torch.randn(4, head.covered_count)
    with torch.no_grad():
        mean, factor, diag = head.forward_with(thetas, features, image)
        assert mean.shape == (4, 32 * 32) and factor.shape == (4, TINY.rank, 32 * 32) and diag.shape == (4, 32 * 32)
        for j in range(4):
            single = head.forward_with(thetas[j], features, image)
            for batched, alone in zip((mean, factor, diag), single):
                assert torch.allclose(batched[j], alone[0], atol=1e-5)
    assert (diag >= TINY.diag_floor).all()


def test_half_resolution_maps_are_the_full_maps_before_their_upsampling():
    # The 1x1 output layers commute with the bilinear upsampling, so the full maps are the half maps upsampled
    # (the diagonal's softplus does not commute: it only keeps its shape and floor).
    laplace, dropout = LaplaceHead(TINY, seed=5), DropoutHead(TINY, seed=6)
    features, image = inputs()
    thetas = laplace.covered.detach() + 0.1 * torch.randn(3, laplace.covered_count)
    masks = random_masks(2, TINY, torch.Generator().manual_seed(7))
    up = lambda maps: upsample2(maps.reshape(-1, 1, 16, 16)).reshape(*maps.shape[:-1], 32 * 32)
    with torch.no_grad():
        full, half = (laplace.forward_with(thetas, features, image, upsample=u) for u in (True, False))
        assert torch.allclose(up(half[0]), full[0], atol=1e-5) and torch.allclose(up(half[1]), full[1], atol=1e-5)
        assert half[2].shape == (3, 16 * 16) and (half[2] >= TINY.diag_floor).all()
        assert torch.allclose(up(dropout(features, image, masks, upsample=False)), dropout(features, image, masks), atol=1e-5)


def test_functional_sampling_leaves_map_untouched_and_scale_zero_is_map():
    head = LaplaceHead(TINY, seed=4)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    sigma = posterior_std(torch.rand(head.covered_count), 0.5)
    graph = LaplaceHeadGraph(Bundle(None, head, sigma, 0.5, None))
    features, image = inputs()
    noise = torch.randn(3, head.covered_count)
    with torch.no_grad():
        sampled = graph(features, image, noise, torch.ones(1))
        map_out = graph(features, image, noise, torch.zeros(1))
        reference = head(features, image)
    for key, value in head.state_dict().items():
        assert torch.equal(value, before[key]), key
    for got, want in zip(map_out, reference):
        assert torch.allclose(got, want.expand_as(got), atol=1e-6)
    assert not torch.allclose(sampled[0][0], reference[0][0])
    thetas = sample_weights(head.covered.detach(), sigma, noise, 2.0)
    assert torch.allclose(thetas, head.covered.detach() + 2.0 * sigma * noise)


LAST_LAYERS_DROPOUT = replace(TINY, dropout_after=("fuse", "block4", "stem"))


@pytest.mark.parametrize("cfg", [TINY, LAST_LAYERS_DROPOUT], ids=["every-block", "last-layers"])
def test_dropout_masks_are_inputs_and_rows_are_independent_passes(cfg):
    head = DropoutHead(cfg, seed=5)
    features, image = inputs()
    masks = random_masks(5, cfg, torch.Generator().manual_seed(0))
    kept = 1.0 / (1.0 - cfg.dropout_rate)
    assert set(masks.unique().tolist()) <= {0.0, kept}
    with torch.no_grad():
        logits = head(features, image, masks)
        for j in range(5):
            assert torch.allclose(logits[j], head(features, image, masks[j : j + 1])[0], atol=1e-6)
        all_kept = head(features, image, torch.ones(1, cfg.mask_count))
    assert logits.shape == (5, 32 * 32)
    assert not torch.allclose(logits[0], all_kept[0])


def test_last_layers_dropout_runs_the_decoder_once_and_masks_in_forward_order(monkeypatch):
    cfg = LAST_LAYERS_DROPOUT
    assert cfg.dropout_after == ("block4", "stem", "fuse") and cfg.mask_count == 2 + 2 + 3
    batches = []

    def counted(x, weight, bias):
        batches.append(x.shape[0])
        return conv(x, weight, bias)

    monkeypatch.setattr(heads, "conv", counted)
    with torch.no_grad():
        DropoutHead(cfg, seed=5)(*inputs(), random_masks(6, cfg, torch.Generator().manual_seed(1)))
    # proj, block1..4 and the stem once; fuse and the mean layer once per mask
    assert batches == [1, 1, 1, 1, 1, 1, 6, 6]
    with pytest.raises(ValueError, match="dropout_after"):
        replace(TINY, dropout_after=("mean",))


def test_training_only_dropout_is_kept_whole_at_inference():
    cfg = replace(LAST_LAYERS_DROPOUT, training_dropout_after=("block2", "block1"))
    assert cfg.training_layers == ("block1", "block2", "block4", "stem", "fuse") and cfg.mask_count == 7
    head = DropoutHead(cfg, seed=5)
    features, image = inputs()
    generator = torch.Generator().manual_seed(2)
    training = random_masks(3, cfg, generator, cfg.training_layers)
    assert training.shape == (3, 4 + 3 + 7)
    sampled = training[:, 7:]
    with torch.no_grad():
        at_inference = head(features, image, sampled)
        kept_whole = head(features, image, torch.cat([torch.ones(3, 7), sampled], dim=1), layers=cfg.training_layers)
        dropped = head(features, image, training, layers=cfg.training_layers)
    assert torch.allclose(at_inference, kept_whole, atol=1e-6)
    assert not torch.allclose(at_inference, dropped)


def test_default_heads_are_small():
    counts = parameter_counts(HeadConfig())
    assert counts["laplace_covered"] < 200_000 and counts["dropout"] < 200_000


def test_ssn_loss_reduces_to_bce_without_covariance_and_rewards_the_best_sample():
    import torch.nn.functional as F

    from lfusion.train_heads import ssn_loss

    generator = torch.Generator().manual_seed(6)
    mean = torch.randn(2, 50, generator=generator)
    target = (torch.rand(2, 50, generator=generator) > 0.5).float()
    no_cov = ssn_loss(mean, torch.zeros(2, 3, 50), torch.zeros(2, 50), target, 7, generator)
    assert torch.allclose(no_cov, F.binary_cross_entropy_with_logits(mean, target))
    # With spread: -log mean_s p(y|eta_s) <= mean_s -log p(y|eta_s) (Jensen), same draws.
    factor, diag = torch.ones(2, 3, 50), torch.ones(2, 50)
    noisy = ssn_loss(mean, factor, diag, target, 7, torch.Generator().manual_seed(9))
    replay = torch.Generator().manual_seed(9)
    eta = mean[:, None] + torch.randn(2, 7, 3, generator=replay) @ factor + torch.randn(2, 7, 50, generator=replay)
    per_sample = F.binary_cross_entropy_with_logits(eta, target[:, None].expand_as(eta), reduction="none").mean(-1)
    assert noisy < per_sample.mean() - 1e-3
    assert noisy >= per_sample.min(dim=1).values.mean() - 1e-6


def test_last_layers_posterior_equals_full_samples_with_the_earlier_layers_at_map():
    head = LaplaceHead(TINY, seed=5)
    features, image = inputs()
    for first in ("fuse", "stem", "block4", "mean"):
        offset = head.sampled_offset(first)
        tail = head.covered.detach()[offset:] + 0.1 * torch.randn(3, head.covered_count - offset)
        full = torch.cat([head.covered.detach()[:offset].expand(3, -1), tail], dim=1)
        with torch.no_grad():
            for late, everything in zip(head.forward_with(tail, features, image, offset), head.forward_with(full, features, image)):
                assert late.shape == everything.shape and torch.allclose(late, everything, atol=1e-5), first
    assert head.sampled_offset(None) == 0 and head.sampled_offset("proj") == 0
    assert head.covered_count - head.sampled_offset("fuse") == layout_size(head.covered_layout[-4:])


def test_last_layers_graph_takes_noise_for_the_sampled_weights_only():
    head = LaplaceHead(TINY, seed=6)
    offset = head.sampled_offset("fuse")
    sigma = posterior_std(torch.rand(head.covered_count - offset), 0.5)
    bundle = Bundle(None, head, sigma, 0.5, None, offset)
    features, image = inputs()
    noise = torch.randn(4, bundle.sampled_count)
    with torch.no_grad():
        got = LaplaceHeadGraph(bundle)(features, image, noise, torch.ones(1))
        want = head.forward_with(sample_weights(head.covered.detach()[offset:], sigma, noise, 1.0), features, image, offset)
    for a, b in zip(got, want):
        assert a.shape[0] == 4 and torch.allclose(a, b)
