"""Segmentation and OOD metrics (pure numpy functions on binary masks and scores).

Distances are in mm: ``spacing_xy`` is (mm per pixel along x, mm per pixel along y) of the mask
grid, so anisotropic 224x224 resizes keep correct distances.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np
from scipy import ndimage, stats


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """2|A∩B| / (|A|+|B|); 1 when both are empty."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    total = pred.sum() + truth.sum()
    return 1.0 if total == 0 else float(2.0 * np.logical_and(pred, truth).sum() / total)


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    pred, truth = pred.astype(bool), truth.astype(bool)
    union = np.logical_or(pred, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, truth).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask with a 4-neighbour outside it."""
    mask = mask.astype(bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff_mm(pred: np.ndarray, truth: np.ndarray, spacing_xy: Tuple[float, float]) -> float:
    """Symmetric Hausdorff distance between the two boundaries in mm; inf if exactly one is empty."""
    a, b = boundary(pred), boundary(truth)
    if not a.any() and not b.any():
        return 0.0
    if not a.any() or not b.any():
        return math.inf
    sampling = (spacing_xy[1], spacing_xy[0])  # (rows = y, cols = x)
    to_b = ndimage.distance_transform_edt(~b, sampling=sampling)
    to_a = ndimage.distance_transform_edt(~a, sampling=sampling)
    return float(max(to_b[a].max(), to_a[b].max()))


def ellipse_axes_mm(mask: np.ndarray, spacing_xy: Tuple[float, float]) -> Tuple[float, float]:
    """Semi-axes (a >= b) in mm of the ellipse with the mask's area moments.

    A filled ellipse with semi-axes a, b has second central moments a^2/4 and b^2/4 along its axes.
    """
    rows, cols = np.nonzero(mask)
    if rows.size < 3:
        return math.nan, math.nan
    points = np.stack([cols * spacing_xy[0], rows * spacing_xy[1]])
    eigen = np.linalg.eigvalsh(np.cov(points, bias=True))
    b, a = 2.0 * np.sqrt(np.maximum(eigen, 0.0))
    return float(a), float(b)


def ellipse_circumference(a: float, b: float) -> float:
    """Ramanujan's second approximation of the perimeter of an ellipse with semi-axes a, b."""
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1.0 + 3.0 * h / (10.0 + math.sqrt(4.0 - 3.0 * h)))


def head_circumference_mm(mask: np.ndarray, spacing_xy: Tuple[float, float]) -> float:
    """Head circumference of a segmentation (HC18's measure: the fitted ellipse's perimeter)."""
    a, b = ellipse_axes_mm(mask, spacing_xy)
    return math.nan if math.isnan(a) else ellipse_circumference(a, b)


def auroc(negatives: Sequence[float], positives: Sequence[float]) -> float:
    """P(score of a positive > score of a negative), ties counting one half (Mann-Whitney U)."""
    neg, pos = np.asarray(negatives, dtype=np.float64), np.asarray(positives, dtype=np.float64)
    ranks = stats.rankdata(np.concatenate([neg, pos]), method="average")
    rank_sum = ranks[len(neg) :].sum()
    return float((rank_sum - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def segmentation_summary(preds: np.ndarray, truths: np.ndarray, spacing_xy: np.ndarray, hc_mm: np.ndarray) -> Dict[str, float]:
    """Mean/std Dice, IoU, Hausdorff (mm) and absolute HC difference (mm) over a set of scans.

    ``hc_mm`` is the reference head circumference; the prediction's is measured on the 224 grid.
    """
    dices = np.array([dice(p, t) for p, t in zip(preds, truths)])
    ious = np.array([iou(p, t) for p, t in zip(preds, truths)])
    hds = np.array([hausdorff_mm(p, t, s) for p, t, s in zip(preds, truths, spacing_xy)])
    ads = np.array([abs(head_circumference_mm(p, s) - h) for p, s, h in zip(preds, spacing_xy, hc_mm)])
    finite = np.isfinite(hds)
    return {
        "count": int(len(dices)),
        "dice_mean": float(dices.mean()),
        "dice_std": float(dices.std()),
        "iou_mean": float(ious.mean()),
        "hausdorff_mm_mean": float(hds[finite].mean()) if finite.any() else math.inf,
        "hausdorff_mm_infinite": int((~finite).sum()),
        "hc_abs_diff_mm_mean": float(np.nanmean(ads)),
        "hc_abs_diff_mm_median": float(np.nanmedian(ads)),
    }
