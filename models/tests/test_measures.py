import math

import pytest
import torch

from lfusion.measures import (
    ENTROPY_EPS,
    MEASURE_ORDER,
    MeasuresGraph,
    aggregate,
    aggregate_many,
    binary_entropy,
    entropy_of_logits,
    expected_pairwise_kl,
    fused_map,
    laplace_logit_samples,
    sample_measures,
    select_map,
    stack_measures,
    unstack_measures,
    upsample_maps,
)


def logit(p):
    return math.log(p / (1 - p))


def test_binary_entropy_has_both_terms():
    p = torch.tensor([0.5, 0.1, 0.9, 0.0, 1.0], dtype=torch.float64)
    h = binary_entropy(p)
    assert h[0].item() == pytest.approx(math.log(2))
    expected = -(0.1 * math.log(0.1) + 0.9 * math.log(0.9))
    assert h[1].item() == pytest.approx(expected)
    assert h[2].item() == pytest.approx(expected)  # symmetric only with both terms
    eps = ENTROPY_EPS
    clamped = -(eps * math.log(eps) + (1 - eps) * math.log(1 - eps))
    assert h[3].item() == pytest.approx(clamped)
    assert h[4].item() == pytest.approx(clamped)


def test_hand_computed_two_samples():
    # Two samples at one pixel: p = 0.2 and 0.6.
    logits = torch.tensor([[logit(0.2)], [logit(0.6)]], dtype=torch.float64)
    m = sample_measures(logits)
    h = lambda p: -(p * math.log(p) + (1 - p) * math.log(1 - p))
    assert m["mean_prob"].item() == pytest.approx(0.4)
    assert m["total_entropy"].item() == pytest.approx(h(0.4))
    assert m["expected_entropy"].item() == pytest.approx((h(0.2) + h(0.6)) / 2)
    assert m["mutual_information"].item() == pytest.approx(h(0.4) - (h(0.2) + h(0.6)) / 2)
    assert m["pixel_variance"].item() == pytest.approx(0.04)  # population variance of {0.2, 0.6}
    assert m["logit_variance"].item() == pytest.approx(((logit(0.6) - logit(0.2)) / 2) ** 2)
    kl = lambda a, b: a * math.log(a / b) + (1 - a) * math.log((1 - a) / (1 - b))
    assert m["expected_pairwise_kl"].item() == pytest.approx((kl(0.2, 0.6) + kl(0.6, 0.2)) / 2)


def test_entropy_of_logits_is_binary_entropy_of_clamped_probability():
    logits = torch.tensor([-40.0, -13.0, -2.0, 0.0, 3.0, 14.0, 40.0], dtype=torch.float64)
    assert torch.allclose(entropy_of_logits(logits), binary_entropy(torch.sigmoid(logits)), rtol=1e-9, atol=1e-15)


def test_mutual_information_is_total_minus_expected_and_nonnegative():
    logits = torch.randn(12, 500, dtype=torch.float64) * 3
    m = sample_measures(logits)
    assert torch.allclose(m["mutual_information"], m["total_entropy"] - m["expected_entropy"])
    assert (m["mutual_information"] >= -1e-12).all()


def brute_force_pairwise_kl(probs):
    q = probs.clamp(ENTROPY_EPS, 1 - ENTROPY_EPS)
    s = q.shape[0]
    total = torch.zeros(q.shape[1], dtype=q.dtype)
    for i in range(s):
        for j in range(s):
            if i != j:
                total += q[i] * torch.log(q[i] / q[j]) + (1 - q[i]) * torch.log((1 - q[i]) / (1 - q[j]))
    return total / (s * (s - 1))


@pytest.mark.parametrize("samples", [2, 3, 17])
def test_pairwise_kl_linear_identity_matches_quadratic_brute_force(samples):
    generator = torch.Generator().manual_seed(samples)
    logits = torch.randn(samples, 300, generator=generator, dtype=torch.float64) * 4
    logits[:, :10] = 30.0  # saturated pixels exercise the clamp
    probs = torch.sigmoid(logits)
    assert torch.allclose(expected_pairwise_kl(logits), brute_force_pairwise_kl(probs), rtol=1e-9, atol=1e-12)


def test_single_sample_has_no_epistemic_spread():
    m = sample_measures(torch.randn(1, 50, dtype=torch.float64))
    for name in ("mutual_information", "expected_pairwise_kl", "pixel_variance", "logit_variance"):
        assert torch.allclose(m[name], torch.zeros(50, dtype=torch.float64), atol=1e-15), name


def test_float32_pairwise_kl_is_stable_for_many_samples():
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(1000, 200, generator=generator, dtype=torch.float64) * 0.01 + 8.0
    exact = expected_pairwise_kl(logits)
    approx = expected_pairwise_kl(logits.float()).double()
    assert torch.allclose(approx, exact, rtol=1e-2, atol=1e-9)


def test_laplace_logit_samples_formula():
    generator = torch.Generator().manual_seed(1)
    m, n, r, hw = 2, 3, 4, 5
    mean = torch.randn(m, hw, generator=generator, dtype=torch.float64)
    factor = torch.randn(m, r, hw, generator=generator, dtype=torch.float64)
    diag = torch.rand(m, hw, generator=generator, dtype=torch.float64) + 0.1
    fn = torch.randn(m, n, r, generator=generator, dtype=torch.float64)
    dn = torch.randn(m, n, hw, generator=generator, dtype=torch.float64)
    eta = laplace_logit_samples(mean, factor, diag, fn, dn)
    assert eta.shape == (m * n, hw)
    j, s = 1, 2
    expected = mean[j] + factor[j].T @ fn[j, s] + diag[j].sqrt() * dn[j, s]
    assert torch.allclose(eta[j * n + s], expected)


def test_fused_map_formula():
    generator = torch.Generator().manual_seed(2)
    lap = sample_measures(torch.randn(6, 40, generator=generator, dtype=torch.float64))
    drop = sample_measures(torch.randn(4, 40, generator=generator, dtype=torch.float64))
    aux = lap["mutual_information"]
    fused = fused_map(lap, drop, aux)
    p = 0.5 * (lap["mean_prob"] + drop["mean_prob"])
    h = -(p * p.log() + (1 - p) * (1 - p).log())
    var_aux = ((aux - aux.mean()) ** 2).mean()
    assert torch.allclose(fused, torch.sqrt(lap["logit_variance"] + drop["logit_variance"]) * h * var_aux)
    assert select_map("fused", lap, drop, fused) is fused
    assert select_map("dropout.pixel_variance", lap, drop, fused) is drop["pixel_variance"]
    with pytest.raises(ValueError):
        select_map("laplace.nope", lap, drop, fused)


def test_aggregation():
    values = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.0]], dtype=torch.float64)
    assert aggregate(values, "mean").item() == pytest.approx(2.0)
    assert aggregate(values, "quantile:0.5").item() == pytest.approx(2.0)
    assert aggregate(values, "quantile:0.9").item() == pytest.approx(3.6)  # position 0.9 * 4 = 3.6
    for bad in ("max", "quantile:1.5", "quantile:x"):
        with pytest.raises(ValueError):
            aggregate(values, bad)


def graph_inputs(seed: int, m: int, n: int, r: int, k: int, hw: int):
    """Random inputs of the measures graph, in its order."""
    generator = torch.Generator().manual_seed(seed)
    return (
        torch.randn(m, hw, generator=generator),
        torch.randn(m, r, hw, generator=generator),
        torch.rand(m, hw, generator=generator) + 0.1,
        torch.randn(m, n, r, generator=generator),
        torch.randn(m, n, hw, generator=generator),
        torch.randn(k, hw, generator=generator),
    )


def test_stack_order_and_graph():
    hw = 7
    args = graph_inputs(3, m=2, n=3, r=4, k=5, hw=hw)
    lap_maps, drop_maps = MeasuresGraph()(*args)
    assert lap_maps.shape == (len(MEASURE_ORDER), hw)
    expected = sample_measures(laplace_logit_samples(*args[:5]))
    assert torch.equal(unstack_measures(lap_maps)["expected_pairwise_kl"], expected["expected_pairwise_kl"])
    assert torch.equal(drop_maps, stack_measures(sample_measures(args[5])))


def test_quantile_matches_torch_quantile():
    values = torch.randn(3, 1001, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for q in (0.0, 0.37, 0.9, 0.99, 1.0):
        assert torch.allclose(aggregate(values, f"quantile:{q}"), torch.quantile(values, q, dim=-1))
    many = aggregate_many(values, ["mean", "quantile:0.9"])
    assert torch.allclose(many[0], values.mean(-1)) and torch.allclose(many[1], torch.quantile(values, 0.9, dim=-1))


def test_upsample_maps_is_the_heads_bilinear_upsampling_per_map():
    maps = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 5.0, 5.0, 5.0]])  # two 2x2 maps
    up = upsample_maps(maps)
    assert up.shape == (2, 16)
    # Half-pixel centres: the first row is x0, 0.75 x0 + 0.25 x1, 0.25 x0 + 0.75 x1, x1 (edges clamped).
    assert torch.allclose(up[0, :4], torch.tensor([1.0, 1.25, 1.75, 2.0]))
    assert torch.equal(up[1], torch.full((16,), 5.0))

