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


def resize_probabilities(prob: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a probability map [h, w] to ``shape`` (H, W), pixel centres aligned.

    Output pixel centre x maps to input position (x + 0.5) * w / W - 0.5 (the grid convention of
    ``data.ellipse_mask`` and of PyTorch's ``align_corners=False``), clamped to the input's edge pixels.
    """
    prob = np.asarray(prob, dtype=np.float64)

    def weights(count_in: int, count_out: int):
        position = np.clip((np.arange(count_out) + 0.5) * count_in / count_out - 0.5, 0.0, count_in - 1.0)
        lower = np.floor(position).astype(np.int64)
        upper = np.minimum(lower + 1, count_in - 1)
        return lower, upper, position - lower

    top, bottom, fy = weights(prob.shape[0], shape[0])
    left, right, fx = weights(prob.shape[1], shape[1])
    rows = prob[top] * (1.0 - fy)[:, None] + prob[bottom] * fy[:, None]
    return rows[:, left] * (1.0 - fx)[None, :] + rows[:, right] * fx[None, :]


def original_resolution_metrics(prob: np.ndarray, truth: np.ndarray, pixel_size_mm: float, hc_mm: float) -> Dict[str, float]:
    """Dice, IoU, Hausdorff (mm), head circumference and its absolute difference (mm) of one scan.

    ``prob`` is the predicted foreground probability on the network's grid (224 or 256 square);
    it is resized to the scan's original grid (``truth``'s shape), thresholded at 0.5 and compared
    with the original-resolution mask; distances use the CSV's isotropic pixel size. The head
    circumference is the Ramanujan perimeter of the ellipse fitted to the predicted mask
    (``head_circumference_mm``); ``ad_mm`` is its distance to the CSV's ``hc_mm`` (NaN for an
    empty mask, as is ``hc_mm``; the Hausdorff distance is then infinite).
    """
    pred = resize_probabilities(prob, truth.shape) > 0.5
    spacing = (pixel_size_mm, pixel_size_mm)
    predicted_hc = head_circumference_mm(pred, spacing)
    return {
        "dice": dice(pred, truth),
        "iou": iou(pred, truth),
        "hd_mm": hausdorff_mm(pred, truth, spacing),
        "hc_mm": predicted_hc,
        "ad_mm": abs(predicted_hc - hc_mm),
    }


def gestational_age_weeks(hc_mm: np.ndarray | float) -> np.ndarray:
    """Hadlock et al. (Radiology 1984) gestational age from head circumference:
    GA [weeks] = 8.96 + 0.540 HC + 0.0003 HC^3, HC in cm."""
    hc_cm = np.asarray(hc_mm, dtype=np.float64) / 10.0
    return 8.96 + 0.540 * hc_cm + 0.0003 * hc_cm**3


FIRST_TRIMESTER_END_WEEKS = 14.0  # the first trimester ends at 13+6 weeks


def first_trimester(hc_mm: np.ndarray | float) -> np.ndarray:
    """True where Hadlock's gestational age of the head circumference is below 14+0 weeks
    (HC below about 90 mm)."""
    return gestational_age_weeks(hc_mm) < FIRST_TRIMESTER_END_WEEKS


TRIMESTER_ENDS_WEEKS = (FIRST_TRIMESTER_END_WEEKS, 28.0)  # the second trimester ends at 27+6 weeks
TRIMESTERS = ("first trimester", "second trimester", "third trimester")


def trimester(hc_mm: np.ndarray | float) -> np.ndarray:
    """Index into ``TRIMESTERS`` of each head circumference, by Hadlock's gestational age
    (0 where ``first_trimester`` is true: HC below about 89 mm; 2 from 28+0 weeks: HC from about 258 mm)."""
    return np.searchsorted(TRIMESTER_ENDS_WEEKS, gestational_age_weeks(hc_mm), side="right")
