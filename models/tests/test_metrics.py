import math

import numpy as np
import pytest

from lfusion.metrics import auroc, dice, ellipse_circumference, hausdorff_mm, head_circumference_mm, iou, segmentation_summary


def ellipse(ax, ay, cx=112, cy=112, size=224):
    """Filled axis-aligned ellipse with semi-axes ax (along x, columns) and ay (along y, rows) in pixels."""
    rows, cols = np.mgrid[:size, :size]
    return (((cols - cx) / ax) ** 2 + ((rows - cy) / ay) ** 2 <= 1.0).astype(np.uint8)


def test_dice_and_iou_hand_computed():
    a = np.zeros((4, 4), np.uint8)
    b = np.zeros((4, 4), np.uint8)
    a[:2] = 1  # 8 pixels
    b[1:3] = 1  # 8 pixels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(4 / 12)
    assert dice(a, a) == 1.0 and dice(a, 1 - a) == 0.0
    assert dice(np.zeros((3, 3)), np.zeros((3, 3))) == 1.0


def test_head_circumference_of_synthetic_ellipses_with_anisotropic_spacing():
    spacing = (0.5, 0.25)  # mm per pixel along x and y
    mask = ellipse(ax=80, ay=90)
    expected = ellipse_circumference(80 * 0.5, 90 * 0.25)
    assert head_circumference_mm(mask, spacing) == pytest.approx(expected, rel=0.01)
    assert math.isnan(head_circumference_mm(np.zeros((224, 224)), spacing))


def test_ellipse_circumference_of_a_circle():
    assert ellipse_circumference(3.0, 3.0) == pytest.approx(2 * math.pi * 3.0)


def test_hausdorff_of_concentric_circles_in_mm():
    spacing = (0.2, 0.2)
    distance = hausdorff_mm(ellipse(30, 30), ellipse(35, 35), spacing)
    assert distance == pytest.approx(5 * 0.2, abs=0.2)  # within one pixel of rasterisation error
    assert hausdorff_mm(ellipse(30, 30), ellipse(30, 30), spacing) == 0.0
    assert hausdorff_mm(ellipse(30, 30), np.zeros((224, 224)), spacing) == math.inf
    # Anisotropic: a shift of 10 rows is 10 * sy mm.
    shifted = np.roll(ellipse(30, 30), 10, axis=0)
    assert hausdorff_mm(ellipse(30, 30), shifted, (0.1, 0.3)) == pytest.approx(3.0, abs=0.3)


def test_auroc():
    assert auroc([0, 1, 2], [3, 4]) == 1.0
    assert auroc([3, 4], [0, 1, 2]) == 0.0
    assert auroc([1, 1], [1, 1]) == 0.5
    assert auroc([0, 2], [1, 3]) == pytest.approx(0.75)


def test_segmentation_summary():
    truths = np.stack([ellipse(50, 40), ellipse(60, 45)])
    preds = np.stack([ellipse(50, 40), ellipse(58, 45)])
    spacing = np.array([[0.3, 0.3], [0.3, 0.3]])
    hc = np.array([head_circumference_mm(t, s) for t, s in zip(truths, spacing)])
    summary = segmentation_summary(preds, truths, spacing, hc)
    assert summary["count"] == 2
    assert 0.97 < summary["dice_mean"] < 1.0
    assert summary["hc_abs_diff_mm_mean"] > 0
    assert summary["hausdorff_mm_mean"] == pytest.approx((0 + 2 * 0.3) / 2, abs=0.2)
