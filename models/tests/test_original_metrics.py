import math

import numpy as np
import pytest
import torch

from lfusion.data import Ellipse, ellipse_mask
from lfusion.measures import binary_entropy, calibrated_map, sample_measures
from lfusion.metrics import FIRST_TRIMESTER_END_WEEKS, first_trimester, gestational_age_weeks, original_resolution_metrics, resize_probabilities


def test_resize_probabilities_hand_computed_and_identity():
    small = np.arange(4.0).reshape(2, 2)
    expected = np.array([[0, 0.25, 0.75, 1], [0.5, 0.75, 1.25, 1.5], [1.5, 1.75, 2.25, 2.5], [2, 2.25, 2.75, 3]])
    assert np.allclose(resize_probabilities(small, (4, 4)), expected)
    values = np.random.default_rng(0).random((7, 5))
    assert np.allclose(resize_probabilities(values, (7, 5)), values)
    assert resize_probabilities(np.full((224, 224), 0.3), (540, 800)).shape == (540, 800)


def test_metrics_at_original_resolution_of_a_resized_ellipse():
    shape, pixel = (540, 800), 0.15
    ellipse = Ellipse(cx=410.0, cy=260.0, a=250.0, b=180.0, angle=0.4)
    truth = ellipse_mask(ellipse, shape)
    prob224 = ellipse_mask(ellipse, shape, (224, 224)).astype(np.float64)
    hc = ellipse.perimeter() * pixel
    row = original_resolution_metrics(prob224, truth, pixel, hc)
    assert row["dice"] > 0.99 and row["iou"] > 0.98
    assert row["hd_mm"] < 3 * pixel * 800 / 224  # within a few 224-grid pixels
    assert row["ad_mm"] == pytest.approx(abs(row["hc_mm"] - hc)) and row["ad_mm"] < 0.01 * hc
    empty = original_resolution_metrics(np.zeros((224, 224)), truth, pixel, hc)
    assert empty["dice"] == 0.0 and math.isinf(empty["hd_mm"]) and math.isnan(empty["ad_mm"])


def test_first_trimester_by_hadlock_gestational_age():
    # Hadlock: GA = 8.96 + 0.540 HC + 0.0003 HC^3 (HC in cm); 10 cm -> 14.66 weeks.
    assert gestational_age_weeks(100.0) == pytest.approx(14.66)
    assert list(first_trimester(np.array([60.0, 88.0, 90.0, 175.0]))) == [True, True, False, False]
    assert gestational_age_weeks(89.0) < FIRST_TRIMESTER_END_WEEKS < gestational_age_weeks(90.0)


def test_calibrated_map_is_the_fused_form_on_one_path():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    measures = sample_measures(logits)
    auxiliary = measures["mutual_information"]
    expected = logits.var(dim=0, unbiased=False).sqrt() * binary_entropy(torch.sigmoid(logits).mean(0)) * auxiliary.var(unbiased=False)
    assert torch.allclose(calibrated_map(measures, auxiliary), expected)
