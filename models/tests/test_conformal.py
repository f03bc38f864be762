import math

import numpy as np
import pytest

from lfusion.conformal import (
    calibrate,
    chance_above,
    clopper_pearson,
    conformal_level,
    conformal_rank,
    delong_interval,
    expected_false_alarm_rate,
    fit_tail,
    leave_one_out_min_p,
    min_p,
    p_value,
    threshold_at,
)
from lfusion.metrics import auroc


def test_p_value_is_the_conformal_rank_in_the_body_and_decays_beyond_the_tail_anchor():
    model = fit_tail(np.arange(1.0, 100.0), tail_size=9)  # n = 99, anchor = 90 (10th largest), mean excess 5
    assert model.anchor == 90.0 and model.scale == pytest.approx(5.0)
    assert p_value(model, np.array([50.0]))[0] == pytest.approx((1 + 50) / 100)  # 50..99 are >= 50
    assert p_value(model, np.array([-1e9]))[0] == pytest.approx(1.0)
    beyond = p_value(model, np.array([90.0 + 1e-9, 95.0, 99.0, 200.0]))
    assert beyond[0] == pytest.approx(10 / 100)
    assert beyond[1] == pytest.approx(10 / 100 * math.exp(-1.0))
    # Beyond the validation maximum a score keeps getting more surprising (ranks alone stop at 1/(n+1)).
    assert beyond[3] < beyond[2] < 1 / 100 * 2 and beyond[3] < 1e-9
    scores = np.linspace(-10, 300, 400)
    assert np.all(np.diff(p_value(model, scores)) <= 0)


def test_tied_top_scores_keep_a_finite_tail():
    model = fit_tail(np.r_[np.zeros(50), np.ones(20)], tail_size=7)  # a bounded score at its bound
    assert model.scale > 0 and p_value(model, np.array([1.0 + 1e-3]))[0] < p_value(model, np.array([1.0]))[0]
    with pytest.raises(ValueError):
        fit_tail(np.arange(5.0), tail_size=5)
    with pytest.raises(ValueError):
        fit_tail(np.r_[np.arange(10.0), np.nan], tail_size=3)


def test_threshold_is_where_the_p_value_crosses_the_level():
    rng = np.random.default_rng(3)
    model = fit_tail(rng.gamma(2.0, size=116), tail_size=12)
    for level in (1e-4, 0.003, 0.05, 0.3):  # tail and body
        t = threshold_at(model, level)
        assert p_value(model, np.array([t]))[0] >= level - 1e-12
        assert p_value(model, np.array([np.nextafter(t, np.inf) + 1e-9 * max(1, abs(t))]))[0] < level
    assert threshold_at(model, 0.0) == math.inf


def test_conformal_rank_accounts_for_the_calibration_size():
    assert conformal_rank(116, 0.025) == 115  # ceil(117 * 0.975) = ceil(114.075)
    assert conformal_rank(39, 0.025) == 39
    assert conformal_rank(38, 0.025) == 39  # more than n: no order statistic bounds 2.5% with 38 scans
    assert conformal_level(np.linspace(0.01, 1, 38), 0.025) == (0.0, 39)
    assert expected_false_alarm_rate(116, 115) == pytest.approx(2 / 117)
    # The realised rate is Beta(n+1-k, k): at the maximum of n it exceeds alpha with probability (1-alpha)^n.
    assert chance_above(116, 116, 0.025) == pytest.approx(0.975**116)
    # Training-conditional: the smallest k with P(rate > alpha) <= 10%; 116 scans need their maximum, 38 cannot.
    assert conformal_rank(116, 0.025, confidence=0.9) == 116
    assert conformal_rank(451, 0.025, confidence=0.9) == 445
    assert chance_above(451, 445, 0.025) <= 0.1 < chance_above(451, 444, 0.025)
    assert conformal_rank(38, 0.025, confidence=0.9) == 39


def test_min_p_decision_holds_its_false_alarm_rate_on_new_scans_with_many_scores():
    # Eight scores of mixed tails, 116 calibration scans: the union of per-score maxima fires on about 8/117 of
    # new scans; the conformal min-p level keeps the family-wise rate at (n+1-k)/(n+1) = 1.7% on average.
    rng = np.random.default_rng(7)
    draw = lambda size: np.column_stack([rng.normal(size=size), rng.gamma(1.5, size=size), rng.standard_t(4, size=size), rng.exponential(size=size),  # noqa: E731
                                         rng.uniform(size=size), rng.lognormal(size=size), -rng.gamma(3.0, size=size), rng.normal(size=size) ** 2])
    rates, maxima = [], []
    for _ in range(40):
        val, new = draw(116), draw(4000)
        fitted = calibrate(val, 0.025, tail_size=12)
        rates.append(np.mean(np.any(new > fitted["thresholds"], axis=1)))
        maxima.append(np.mean(np.any(new > val.max(axis=0), axis=1)))
    assert np.mean(maxima) > 0.05
    assert np.mean(rates) < 0.025 and np.mean(rates) > 0.008


def test_leave_one_out_scores_each_scan_against_the_others():
    val = np.column_stack([np.arange(20.0), np.zeros(20)])
    val[19, 1] = 5.0  # one scan far out on the second score
    loo = leave_one_out_min_p(val, tail_size=5)
    # Against the other 19 (all zero on the second score, a floored tail) the outlier is extreme.
    assert loo[19] < 1e-6 and np.argmin(loo) == 19
    assert loo[0] == pytest.approx(1.0)  # the smallest of both scores: p = 1 on each
    in_sample = min_p([fit_tail(val[:, j], 5) for j in range(2)], val)
    assert in_sample[19] > loo[19]  # in-sample the outlier explains itself: why the level uses leave-one-out


def test_clopper_pearson_is_exact_at_the_edges():
    assert clopper_pearson(0, 118)[0] == 0.0 and clopper_pearson(0, 118)[1] == pytest.approx(1 - 0.025 ** (1 / 118))
    assert clopper_pearson(51, 51)[1] == 1.0 and clopper_pearson(51, 51)[0] == pytest.approx(0.025 ** (1 / 51))
    low, high = clopper_pearson(6, 118)
    assert low < 6 / 118 < high


def test_delong_interval_matches_auroc_and_covers_it():
    rng = np.random.default_rng(5)
    neg, pos = rng.normal(size=118), rng.normal(1.0, size=60)
    area, low, high = delong_interval(neg, pos)
    assert area == pytest.approx(auroc(neg, pos))
    assert low < area < high and 0.1 < high - low < 0.3
    assert delong_interval(neg, neg.max() + 1 + rng.random(10)) == (1.0, 1.0, 1.0)
