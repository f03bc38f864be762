"""Conformal statistics of the fused OOD decision: per-evidence p-values, their min-p combination and its level.

Each evidence score (oriented: higher = less like a fetal head scan) gets a p-value against the calibration
heads (in-distribution scans, no labels needed), its null sample of n scans: the conformal rank ``(1 + #{v >= e}) / (n + 1)`` in the body and, beyond
the (m+1)-th largest validation score u, an exponential tail fitted to the top m excesses (peaks over
threshold, mean excess beta): ``(m + 1) / (n + 1) * exp(-(e - u) / beta)``. The tail lets a score beyond
anything seen in calibration be more surprising than the calibration maximum, which ranks alone cannot say.

The decision combines the evidence by the smallest p-value (Tippett's min-p): a frame is out of distribution
when ``min_j p_j < level``. Its level is the k-th of the calibration heads' own min-p (as a surprise), each
computed leave-one-out (against the other n-1 heads, as a new frame is against all n). The decision then fires
on ``(n + 1 - k) / (n + 1)`` of new in-distribution scans on average over calibration sets (exchangeability; the
leave-one-out tails make it approximate by O(1/n)), at most alpha with ``k = ceil((n + 1)(1 - alpha))``; the rate
of one calibration is Beta(n + 1 - k, k) distributed, and with a confidence k is the smallest for which it
exceeds alpha with at most 1 - confidence probability (training-conditional conformal, Vovk 2012). Because every p-value is monotone in its score, ``min_j p_j < level`` is the same as
every evidence against its own threshold (``p_j(threshold_j) = level``), which is what the SDK applies.

Pure functions; tests in tests/test_conformal.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class TailModel:
    """The null distribution of one evidence score: validation scores sorted descending, tail anchor and scale."""

    descending: np.ndarray  # float64 [n]
    tail_size: int  # m
    anchor: float  # u, the (m+1)-th largest validation score
    scale: float  # beta, mean excess of the top m over u (floored above zero)

    @property
    def n(self) -> int:
        return int(self.descending.size)


def tail_size_for(n: int) -> int:
    """Scans in the exponential tail: the top 10% of the validation scans, at least 5 (and fewer than n)."""
    return int(min(max(5, round(0.1 * n)), n - 1))


def fit_tail(values: Sequence[float], tail_size: int) -> TailModel:
    """The p-value model of one evidence score from its validation values (at least ``tail_size + 1``)."""
    descending = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    if not 0 < tail_size < descending.size:
        raise ValueError(f"tail size {tail_size} needs 0 < m < n = {descending.size}")
    if not np.all(np.isfinite(descending)):
        raise ValueError("evidence scores must be finite")
    anchor = float(descending[tail_size])
    excess = float(np.mean(descending[:tail_size] - anchor))
    # Tied top scores (a bounded score at its bound) have no spread: a floor keeps the tail finite.
    spread = float(descending[0] - descending[-1])
    floor = 1e-6 * spread if spread > 0 else 1e-12
    return TailModel(descending=descending, tail_size=tail_size, anchor=anchor, scale=max(excess, floor))


def p_value(model: TailModel, scores: np.ndarray) -> np.ndarray:
    """Conformal p-value of each score against the model's validation sample, exponential beyond the anchor."""
    scores = np.asarray(scores, dtype=np.float64)
    n, m = model.n, model.tail_size
    at_least = np.searchsorted(-model.descending, -scores, side="right")  # #{v >= e}
    body = (1.0 + at_least) / (n + 1.0)
    tail = (m + 1.0) / (n + 1.0) * np.exp(-np.maximum(scores - model.anchor, 0.0) / model.scale)
    return np.where(scores > model.anchor, tail, body)


def min_p(models: Sequence[TailModel], scores: np.ndarray) -> np.ndarray:
    """[N] smallest p-value over the evidence columns of ``scores`` [N, J]."""
    return np.min(np.stack([p_value(model, scores[:, j]) for j, model in enumerate(models)], axis=1), axis=1)


def fit_models(val: np.ndarray, tail_size: int) -> List[TailModel]:
    return [fit_tail(val[:, j], tail_size) for j in range(val.shape[1])]


def leave_one_out_min_p(val: np.ndarray, tail_size: int) -> np.ndarray:
    """[n] min-p of each validation scan against models fitted on the other n-1 (tail size as for n)."""
    n = val.shape[0]
    out = np.empty(n)
    for i in range(n):
        others = np.delete(val, i, axis=0)
        out[i] = min_p(fit_models(others, tail_size), val[i : i + 1])[0]
    return out


def conformal_rank(n: int, alpha: float, confidence: Optional[float] = None) -> int:
    """The order statistic k of n calibration scores to fire above.

    Without ``confidence``: k = ceil((n + 1)(1 - alpha)), new false alarms at most alpha on average over calibration
    sets. With it (training-conditional, Vovk 2012): the smallest k whose realised false-alarm rate, Beta(n + 1 - k, k)
    distributed, exceeds alpha with probability at most 1 - confidence, i.e. P(Binomial(n, alpha) <= n - k) <= 1 -
    confidence. More than n: the calibration set is too small."""
    marginal = int(math.ceil((n + 1) * (1 - alpha) - 1e-12))
    if confidence is None:
        return marginal
    for k in range(marginal, n + 1):
        if chance_above(n, k, alpha) <= 1 - confidence:
            return k
    return n + 1


def conformal_level(calibration_min_p: np.ndarray, alpha: float, confidence: Optional[float] = None) -> Tuple[float, int]:
    """(level, k): fire when min-p < level, the k-th smallest of -log(min-p) as a p-value.

    With k > n the calibration set is too small for alpha (and confidence): the level is 0 (never fires)."""
    n = calibration_min_p.size
    k = conformal_rank(n, alpha, confidence)
    if k > n:
        return 0.0, k
    # -log(min p) ascending: the k-th smallest surprise is the (n+1-k)-th smallest min-p.
    level = float(np.sort(calibration_min_p)[n - k])
    return level, k


def threshold_at(model: TailModel, level: float) -> float:
    """The score above which p < level (``p_value`` is non-increasing in the score)."""
    n, m = model.n, model.tail_size
    if level <= 0:
        return math.inf
    if level <= (m + 1.0) / (n + 1.0):
        return model.anchor + model.scale * math.log((m + 1.0) / ((n + 1.0) * level))
    # In the body p = (1 + c) / (n + 1) with c = #{v >= e}: p < level <=> c <= ceil(level (n + 1)) - 2 <=> e > v_(c+1).
    allowed = int(math.ceil(level * (n + 1.0) - 1e-12)) - 2
    return float(model.descending[allowed]) if allowed < n else -math.inf


def expected_false_alarm_rate(n: int, k: int) -> float:
    """Mean false-alarm rate of a new in-distribution scan at the k-th order statistic of n: (n + 1 - k) / (n + 1)."""
    return max(n + 1 - k, 0) / (n + 1.0)


def chance_above(n: int, k: int, alpha: float) -> float:
    """P(the realised false-alarm rate of a calibration draw exceeds alpha) at the k-th of n: Beta(n + 1 - k, k) above
    alpha, i.e. fewer than k of n uniforms below 1 - alpha: P(Binomial(n, alpha) <= n - k)."""
    return float(stats.binom.cdf(n - k, n, alpha)) if k <= n else 0.0


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> Tuple[float, float]:
    """Exact binomial confidence interval of a rate."""
    if trials == 0:
        return (math.nan, math.nan)
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(stats.beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(stats.beta.ppf(1 - tail, successes + 1, trials - successes))
    return low, high


def delong_interval(negatives: Sequence[float], positives: Sequence[float], confidence: float = 0.95) -> Tuple[float, float, float]:
    """(AUROC, low, high): DeLong et al. (1988) variance, normal interval clipped to [0, 1] (zero width at AUROC 1)."""
    neg, pos = np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)
    # psi(x, y) = 1 if x > y, 1/2 if tied: structural components of each positive and each negative.
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    area = float(psi.mean())
    v_pos, v_neg = psi.mean(axis=1), psi.mean(axis=0)
    variance = (np.var(v_pos, ddof=1) / pos.size if pos.size > 1 else 0.0) + (np.var(v_neg, ddof=1) / neg.size if neg.size > 1 else 0.0)
    half = float(stats.norm.ppf(0.5 + confidence / 2) * math.sqrt(variance))
    return area, max(0.0, area - half), min(1.0, area + half)


def surprise(models: Sequence[TailModel], scores: np.ndarray) -> np.ndarray:
    """The decision's continuous score: -log10 of the min-p (fires above -log10 of the level)."""
    return -np.log10(min_p(models, scores))


def calibrate(val: np.ndarray, alpha: float, tail_size: int, confidence: Optional[float] = None) -> Dict[str, object]:
    """Everything the decision needs from the calibration scans [n, J]: models, level, rank and per-evidence thresholds."""
    models = fit_models(val, tail_size)
    level, k = conformal_level(leave_one_out_min_p(val, tail_size), alpha, confidence)
    return {"models": models, "level": level, "rank": k, "thresholds": np.array([threshold_at(m, level) for m in models])}
