import numpy as np
import torch

from lfusion.heads import random_masks
from lfusion.laplace import sample_weights
from lfusion.train_baselines import BaselineConfig, model_loss, to_unet_input, training_batch
from lfusion.unet import DropoutUNet, SSNUNet, UNetConfig, parameter_count

TINY = UNetConfig(channels=(2, 3, 4), rank=2)


def image(batch=1, size=16, seed=0):
    return torch.randn(batch, 1, size, size, generator=torch.Generator().manual_seed(seed))


def test_shapes_and_parameter_count():
    model = SSNUNet(TINY, seed=1)
    mean, factor, diag = model(image(batch=2))
    assert mean.shape == (2, 256) and factor.shape == (2, TINY.rank, 256) and diag.shape == (2, 256)
    assert bool((diag > 0).all())
    counts = parameter_count(TINY)
    assert model.covered_count == counts["trunk_and_mean"] and model.map_only.numel() == counts["ssn_covariance"]
    assert torch.allclose(model.mean_only(model.covered, image(batch=2)), mean)


def test_m_weight_samples_in_one_run_match_separate_runs():
    model = SSNUNet(TINY, seed=2)
    x = image()
    thetas = sample_weights(model.covered.detach(), torch.full((model.covered_count,), 0.05), torch.randn(3, model.covered_count), 1.0)
    with torch.no_grad():
        batched = model.forward_with(thetas, x)
        for j in range(3):
            for together, alone in zip(batched, model.forward_with(thetas[j], x)):
                assert torch.allclose(together[j], alone[0], atol=1e-5)
    # Sampling never touches the MAP weights.
    assert torch.equal(model.covered.detach(), SSNUNet(TINY, seed=2).covered.detach())


def test_dropout_masks_per_sample_match_separate_runs_and_all_ones_is_deterministic():
    model = DropoutUNet(TINY, seed=3)
    x = image()
    masks = random_masks(4, TINY, torch.Generator().manual_seed(0))
    assert masks.shape == (4, sum(TINY.block_channels)) and TINY.block_channels == [2, 3, 4, 3, 2]
    with torch.no_grad():
        together = model(x, masks)
        for j in range(4):
            assert torch.allclose(together[j], model(x, masks[j : j + 1])[0], atol=1e-5)
        ones = torch.ones(2, TINY.mask_count)
        first, second = model(x, ones)
        assert torch.equal(first, second)
        assert not torch.allclose(together[0], together[1])


def test_losses_are_finite_and_train_both_models():
    generator = torch.Generator().manual_seed(0)
    target = (image(batch=2, seed=5).flatten(1) > 0).float()
    for model, kind in ((SSNUNet(TINY, 0), "ssn"), (DropoutUNet(TINY, 0), "dropout")):
        loss = model_loss(model, BaselineConfig(model=kind, ssn_samples=3), image(batch=2), target, generator)
        loss.backward()
        assert torch.isfinite(loss) and all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_unet_input_and_training_batches():
    images224 = np.random.default_rng(0).integers(0, 255, (3, 224, 224), dtype=np.uint8)
    resized = to_unet_input(images224)
    assert resized.shape == (3, 256, 256) and resized.dtype == np.uint8
    flat = np.full((224, 224), 77, np.uint8)
    assert (to_unet_input(flat[None]) == 77).all()
    masks = np.zeros((3, 256, 256), np.uint8)
    masks[:, 100:150, 90:170] = 1
    data = {"images": resized, "masks": masks}
    x, y = training_batch(data, np.array([2, 0]), 0.0, np.random.default_rng(0))
    assert x.shape == (2, 1, 256, 256) and y.shape == (2, 256 * 256)
    assert torch.equal(y[0], torch.from_numpy(masks[2].reshape(-1).astype(np.float32)))
    augmented, augmented_masks = training_batch(data, np.array([2, 0]), 1.0, np.random.default_rng(0))
    assert not torch.equal(augmented, x) and 0 < float(augmented_masks.sum()) != float(y.sum())


def test_post_hoc_laplace_fit_on_a_tiny_ssn_unet(tmp_path):
    from lfusion.laplace import LaplaceConfig
    from lfusion.train_baselines import fit_laplace, save_model

    save_model(SSNUNet(TINY, seed=4), tmp_path / "ssn.pt", {})
    rng = np.random.default_rng(0)
    data = {"images": rng.integers(0, 255, (4, 16, 16), dtype=np.uint8), "masks": (rng.random((4, 16, 16)) > 0.5).astype(np.uint8)}
    fitted = fit_laplace(tmp_path / "ssn.pt", data, data, LaplaceConfig(grid=(1.0, 100.0), ggn_batch=2, weight_samples=2, logit_samples=2), val_scans=2)
    assert fitted["prior_precision"] in (1.0, 100.0) and len(fitted["grid"]) == 2
    sigma = fitted["sigma"]
    assert sigma.shape == (SSNUNet(TINY).covered_count,) and bool((sigma > 0).all()) and bool((sigma <= fitted["prior_precision"] ** -0.5 + 1e-6).all())
