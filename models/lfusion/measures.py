"""The single definition of L-FUSION's uncertainty measures, the fused map and the OOD score.

Every function is pure torch and works in any floating dtype: training and calibration call it
in float32, the reference vectors in float64, and ``measures.onnx`` is exported from
``MeasuresGraph`` below, which only composes these functions. The formulas are written out in
``docs/uncertainty.md``.

Conventions: logit samples are ``[S, HW]`` (sample axis first); probabilities are the sigmoid of
the foreground logit; every logarithm and entropy is in nats on ``p`` clamped to
``[ENTROPY_EPS, 1 - ENTROPY_EPS]``; variances over samples and over pixels are population
variances (divide by the count).
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import torch

from lfusion.layers import upsample2

ENTROPY_EPS = 1e-6

MEASURE_ORDER = (
    "mean_prob",
    "expected_entropy",
    "mutual_information",
    "expected_pairwise_kl",
    "pixel_variance",
    "total_entropy",
    "logit_variance",
)


def clamp_prob(p: torch.Tensor, eps: float = ENTROPY_EPS) -> torch.Tensor:
    return p.clamp(eps, 1.0 - eps)


def binary_entropy(p: torch.Tensor, eps: float = ENTROPY_EPS) -> torch.Tensor:
    """H(p) = -p log p - (1 - p) log(1 - p), both terms, p clamped to [eps, 1 - eps]."""
    q = clamp_prob(p, eps)
    return -(q * torch.log(q) + (1.0 - q) * torch.log1p(-q))


def population_variance(x: torch.Tensor, dim: int) -> torch.Tensor:
    return (x - x.mean(dim=dim, keepdim=True)).square().mean(dim=dim)


def clamp_logit(logits: torch.Tensor, eps: float = ENTROPY_EPS) -> torch.Tensor:
    """Logits clamped to [logit(eps), logit(1 - eps)]: sigmoid of it is p clamped to [eps, 1 - eps]."""
    limit = math.log((1.0 - eps) / eps)
    return logits.clamp(-limit, limit)


def entropy_of_logits(logits: torch.Tensor, eps: float = ENTROPY_EPS) -> torch.Tensor:
    """binary_entropy(sigmoid(logits)), computed from the clamped logit z without forming 1 - p:

    H = log(1 + e) + |z| e / (1 + e) with e = exp(-|z|), the symmetric form (H(z) = H(-z)) of
    p softplus(-z) + (1 - p) softplus(z): both terms are positive, so nothing cancels near
    saturation. (A float32 1 - p near saturation is dominated by rounding in some runtimes' sigmoid;
    and ONNX Runtime's Softplus is a scalar loop, 3x slower over m x n samples than Exp and Log.)
    """
    magnitude = clamp_logit(logits, eps).abs()
    decay = torch.exp(-magnitude)
    return torch.log(1.0 + decay) + magnitude * decay / (1.0 + decay)


def expected_pairwise_kl(logits: torch.Tensor, eps: float = ENTROPY_EPS) -> torch.Tensor:
    """Mean Bernoulli KL(p_i || p_j) over ordered pairs i != j of the S logit samples, in O(S).

    With p clamped to [eps, 1 - eps] and l = log p - log(1 - p) its log-odds (the clamped logit),
    KL(p_i||p_j) + KL(p_j||p_i) = (p_i - p_j)(l_i - l_j), so the average over ordered pairs is the
    sample covariance of p and l with divisor S - 1. A single sample has no pairs: the result is 0.
    """
    z = clamp_logit(logits, eps)
    q = torch.sigmoid(z)
    # S as a tensor (not a Python int) so that an exported graph keeps S dynamic.
    pairs_per_sample = (torch.ones_like(q[:, :1]).sum(dim=0) - 1.0).clamp(min=1.0)
    centred_p = q - q.mean(dim=0, keepdim=True)
    centred_l = z - z.mean(dim=0, keepdim=True)
    return (centred_p * centred_l).sum(dim=0) / pairs_per_sample


def sample_measures(logits: torch.Tensor, eps: float = ENTROPY_EPS) -> Dict[str, torch.Tensor]:
    """All per-pixel measures from logit samples [S, HW] (S >= 1), each [HW]."""
    probs = torch.sigmoid(logits)
    mean_prob = probs.mean(dim=0)
    total = binary_entropy(mean_prob, eps)
    expected = entropy_of_logits(logits, eps).mean(dim=0)
    return {
        "mean_prob": mean_prob,
        "expected_entropy": expected,
        "mutual_information": total - expected,
        "expected_pairwise_kl": expected_pairwise_kl(logits, eps),
        "pixel_variance": population_variance(probs, dim=0),
        "total_entropy": total,
        "logit_variance": population_variance(logits, dim=0),
    }


def stack_measures(measures: Dict[str, torch.Tensor]) -> torch.Tensor:
    """[len(MEASURE_ORDER), HW] in ``MEASURE_ORDER``."""
    return torch.stack([measures[name] for name in MEASURE_ORDER])


def unstack_measures(maps: torch.Tensor) -> Dict[str, torch.Tensor]:
    return {name: maps[i] for i, name in enumerate(MEASURE_ORDER)}


def laplace_logit_samples(
    logit_mean: torch.Tensor,
    cov_factor: torch.Tensor,
    cov_diag: torch.Tensor,
    factor_noise: torch.Tensor,
    diag_noise: torch.Tensor,
) -> torch.Tensor:
    """SSN logit samples [m*n, HW] (weight sample major) from m low-rank Gaussians.

    eta[j, s] = logit_mean[j] + cov_factor[j]^T factor_noise[j, s] + sqrt(cov_diag[j]) * diag_noise[j, s]
    with logit_mean [m, HW], cov_factor [m, r, HW], cov_diag [m, HW], factor_noise [m, n, r],
    diag_noise [m, n, HW].
    """
    low_rank = torch.matmul(factor_noise, cov_factor)  # [m, n, HW]
    eta = logit_mean[:, None, :] + low_rank + torch.sqrt(cov_diag)[:, None, :] * diag_noise
    return eta.reshape(-1, eta.shape[-1])


def fused_map(
    laplace: Dict[str, torch.Tensor],
    dropout: Dict[str, torch.Tensor],
    auxiliary: torch.Tensor,
    eps: float = ENTROPY_EPS,
) -> torch.Tensor:
    """U_fused = sqrt(Var_L + Var_D) * H(0.5 (p_L + p_D)) * Var_pixels(U_aux), per pixel [HW].

    Var(eta_L - eta_D) = Var_L + Var_D because the two paths' samples are drawn independently
    given the features; Var_pixels is the population variance of the auxiliary map over pixels.
    """
    disagreement = torch.sqrt(laplace["logit_variance"] + dropout["logit_variance"])
    entropy = binary_entropy(0.5 * (laplace["mean_prob"] + dropout["mean_prob"]), eps)
    return disagreement * entropy * population_variance(auxiliary, dim=-1)


def select_map(name: str, laplace: Dict[str, torch.Tensor], dropout: Dict[str, torch.Tensor], fused: torch.Tensor) -> torch.Tensor:
    """The map called ``fused``, ``laplace.<measure>`` or ``dropout.<measure>``."""
    if name == "fused":
        return fused
    path, _, measure = name.partition(".")
    maps = {"laplace": laplace, "dropout": dropout}.get(path)
    if maps is None or measure not in maps:
        raise ValueError(f"unknown map {name!r}: expected 'fused' or '<laplace|dropout>.<{'|'.join(MEASURE_ORDER)}>'")
    return maps[measure]


def parse_aggregation(aggregation: str) -> float | None:
    """None for ``mean``, q for ``quantile:q``."""
    if aggregation == "mean":
        return None
    kind, _, value = aggregation.partition(":")
    if kind == "quantile":
        q = float(value)
        if 0.0 <= q <= 1.0:
            return q
    raise ValueError(f"unknown aggregation {aggregation!r}: expected 'mean' or 'quantile:q' with 0 <= q <= 1")


def aggregate_many(values: torch.Tensor, aggregations: Sequence[str]) -> List[torch.Tensor]:
    """Image-level scores over the last (pixel) axis, one per aggregation (one sort for all).

    ``quantile:q`` sorts the N values ascending and interpolates linearly at position q * (N - 1)
    (the same as ``torch.quantile``'s default).
    """
    quantiles = [parse_aggregation(a) for a in aggregations]
    ordered = values.sort(dim=-1).values if any(q is not None for q in quantiles) else None
    count = values.shape[-1]
    scores = []
    for q in quantiles:
        if q is None:
            scores.append(values.mean(dim=-1))
            continue
        position = q * (count - 1)
        lower = int(math.floor(position))
        upper = min(lower + 1, count - 1)
        low_value = ordered[..., lower]
        scores.append(low_value + (position - lower) * (ordered[..., upper] - low_value))
    return scores


def aggregate(values: torch.Tensor, aggregation: str) -> torch.Tensor:
    """Image-level score over the last (pixel) axis: ``mean`` or ``quantile:q``."""
    return aggregate_many(values, [aggregation])[0]


def upsample_maps(maps: torch.Tensor) -> torch.Tensor:
    """Square maps [C, S*S] -> [C, 2S*2S], bilinear with half-pixel centres (the heads' own final upsampling).

    Measures are smooth where they matter, so computing them on the heads' 112x112 maps and upsampling the few
    measure maps (the SDK does, after the measures graph) stands in for upsampling every logit sample first
    (``lfusion.inference.Bundle.half_maps``).
    """
    side = math.isqrt(int(maps.shape[-1]))
    return upsample2(maps.reshape(1, -1, side, side)).reshape(int(maps.shape[0]), 4 * side * side)


class MeasuresGraph(torch.nn.Module):
    """The ``measures`` graph of the model package: head outputs and noise -> per-path maps [7, HW] (HW of the heads'
    maps)."""

    def forward(self, logit_mean, cov_factor, cov_diag, factor_noise, diag_noise, dropout_logits):
        eta = laplace_logit_samples(logit_mean, cov_factor, cov_diag, factor_noise, diag_noise)
        return stack_measures(sample_measures(eta)), stack_measures(sample_measures(dropout_logits))


def calibrated_map(path: Dict[str, torch.Tensor], auxiliary: torch.Tensor, eps: float = ENTROPY_EPS) -> torch.Tensor:
    """Intra-path Uncertainty-Calibration, per pixel [HW]: the fused map's form on one path,
    sqrt(logit_variance) * H(mean_prob) * Var_pixels(U_aux), with ``path`` the path's measures and
    ``auxiliary`` one of its maps (the path's best measure on validation)."""
    return torch.sqrt(path["logit_variance"]) * binary_entropy(path["mean_prob"], eps) * population_variance(auxiliary, dim=-1)
