import math

import torch

from lfusion.ggn import ggn_diagonal, ggn_diagonal_batch
from lfusion.heads import HeadConfig, LaplaceHead

TINY = HeadConfig(feature_channels=3, proj_channels=3, decoder_channels=(3, 2, 2, 2), stem_channels=2, fuse_channels=2, rank=2)


def tiny_problem(seed=0):
    torch.manual_seed(seed)
    head = LaplaceHead(TINY, seed=seed).double()
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 3, 2, 2, generator=generator, dtype=torch.float64)
    image = torch.randn(2, 1, 32, 32, generator=generator, dtype=torch.float64)
    theta = head.covered.detach().clone()
    return head, theta, (lambda t: head.mean_only(t, features, image))


def brute_force(mean_fn, theta):
    jacobian = torch.autograd.functional.jacobian(lambda t: mean_fn(t).reshape(-1), theta)  # [B*HW, P]
    p = torch.sigmoid(mean_fn(theta).reshape(-1))
    return (jacobian.square() * (p * (1 - p))[:, None]).sum(0)


def test_exact_mode_equals_brute_force_jacobian():
    head, theta, mean_fn = tiny_problem()
    expected = brute_force(mean_fn, theta)
    got = ggn_diagonal_batch(mean_fn, theta, probes=0, generator=torch.Generator(), exact=True)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-14)
    assert torch.equal(head.covered.detach(), theta)


def test_rademacher_estimate_within_statistical_tolerance():
    # For each entry the estimator is a mean of P i.i.d. terms with mean g and variance at most
    # 2 g^2, so its relative standard error is at most sqrt(2 / P); 6 of those bounds every entry.
    _, theta, mean_fn = tiny_problem(seed=1)
    expected = brute_force(mean_fn, theta)
    probes = 3000
    got = ggn_diagonal([mean_fn], theta, probes=probes, seed=7)
    bound = 6 * math.sqrt(2 / probes)
    assert ((got - expected).abs() <= bound * expected + 1e-12).all()
    assert not torch.allclose(got, expected, rtol=1e-6)  # it is an estimate, not the exact value


def test_sum_over_batches():
    _, theta, mean_fn = tiny_problem(seed=2)
    once = ggn_diagonal_batch(mean_fn, theta, 0, torch.Generator(), exact=True)
    twice = ggn_diagonal([mean_fn, mean_fn], theta, probes=0, seed=0, exact=True)
    assert torch.allclose(twice, 2 * once)


def test_prior_precision_is_the_broadest_within_tolerance_of_the_best_nll():
    from lfusion.laplace import choose_prior_precision, posterior_std

    rows = [{"prior_precision": t, "val_nll": v} for t, v in [(1.0, 1.5), (10.0, 0.58), (100.0, 0.2006), (1e3, 0.1979), (1e4, 0.1978), (1e5, 0.1974)]]
    assert choose_prior_precision(rows, 0.01) == 1e3
    assert choose_prior_precision(rows, 0.0) == 1e5
    assert torch.allclose(posterior_std(torch.tensor([0.0, 3.0]), 1.0), torch.tensor([1.0, 0.5]))
