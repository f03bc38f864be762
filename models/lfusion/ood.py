"""Seeded out-of-distribution (OOD) image generators for HC18, on 224x224 uint8 scans.

Each generator takes one in-distribution scan (and its head mask where it needs to know
where the head is) and a ``numpy.random.Generator``; the same generator state gives the
same image. ``make_ood_sets`` applies every generator to the scans of one split with a
seed per (set, scan), so sets are reproducible and independent of each other.

Sets:
- ``elastic_skull``: the paper's HC18 OOD samples, local shape changes of the skull.
- ``no_head``: frames without a head in view (a live probe between planes).
- ``gain_high`` / ``gain_low``: scanner gain set far too high or too low.
- ``shadowing``: heavy acoustic shadows across the head.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np
from PIL import Image
from scipy import ndimage

from .data import Prepared, load_prepared, load_scan

OOD_SET_NAMES = ("elastic_skull", "no_head", "gain_high", "gain_low", "shadowing")


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def skull_band_weight(mask: np.ndarray, band_px: float) -> np.ndarray:
    """Weight in [0, 1], 1 on the head outline and falling off as a Gaussian of the distance to it."""
    inside = mask.astype(bool)
    distance = np.where(inside, ndimage.distance_transform_edt(inside), ndimage.distance_transform_edt(~inside))
    return np.exp(-0.5 * (distance / band_px) ** 2)


def elastic_skull(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    strength: float = 8.0,
    smoothness_px: float = 6.0,
    band_px: float = 10.0,
) -> np.ndarray:
    """Elastic deformation concentrated on the skull: local dents and bulges of the head outline.

    A random displacement field (white noise smoothed by a Gaussian of ``smoothness_px``,
    scaled so that its largest displacement is ``strength`` pixels) is multiplied by a
    Gaussian band of width ``band_px`` around the annotated outline, so the skull and the
    tissue next to it move while the rest of the scan stays put.
    """
    size = image.shape
    weight = skull_band_weight(mask, band_px)
    fields = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.standard_normal(size), smoothness_px)
        field /= np.abs(field).max() + 1e-12
        fields.append(field * weight * strength)
    rows, cols = np.meshgrid(np.arange(size[0]), np.arange(size[1]), indexing="ij")
    warped = ndimage.map_coordinates(image.astype(np.float32), [rows + fields[0], cols + fields[1]], order=1, mode="reflect")
    return _to_uint8(warped)


def no_head(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    out_size: int = 224,
    crop_range: Sequence[float] = (0.35, 0.6),
    margin_px: int = 6,
    tries: int = 200,
) -> Optional[np.ndarray]:
    """A square crop from a region of the scan away from the head, resized to ``out_size``.

    Works at any resolution (use the original scan, when available, so that the crop is
    not blurred by upsampling). The crop side is a random fraction ``crop_range`` of the
    shorter image side; crops touching the head mask dilated by ``margin_px`` are
    rejected, and among ``tries`` candidates the one with the most tissue (mean intensity)
    is kept, so that the frame is not the black background outside the fan. Returns
    ``None`` when the head leaves no room for a crop.
    """
    height, width = image.shape
    blocked = ndimage.binary_dilation(mask.astype(bool), iterations=margin_px)
    blocked_sum = np.pad(blocked.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    best, best_mean = None, -1.0
    for _ in range(tries):
        side = int(round(rng.uniform(*crop_range) * min(height, width)))
        top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
        bottom, right = top + side, left + side
        touched = blocked_sum[bottom, right] - blocked_sum[top, right] - blocked_sum[bottom, left] + blocked_sum[top, left]
        if touched:
            continue
        crop = image[top:bottom, left:right]
        if crop.mean() > best_mean:
            best, best_mean = crop, float(crop.mean())
    if best is None:
        return None
    return np.asarray(Image.fromarray(best).resize((out_size, out_size), Image.BILINEAR), dtype=np.uint8)


def gain_high(image: np.ndarray, rng: np.random.Generator, gain_range: Sequence[float] = (3.0, 6.0), noise_floor: float = 25.0) -> np.ndarray:
    """Gain far too high: intensities multiplied by 3-6x and saturated, with the amplified
    electronic noise floor lifting the dark regions (mean ``noise_floor`` grey levels)."""
    gain = rng.uniform(*gain_range)
    floor = np.abs(rng.normal(0.0, noise_floor * math.sqrt(math.pi / 2), image.shape))
    return _to_uint8(image.astype(np.float32) * gain + floor)


def gain_low(image: np.ndarray, rng: np.random.Generator, gain_range: Sequence[float] = (0.06, 0.2), noise_sigma: float = 1.5) -> np.ndarray:
    """Gain far too low: intensities multiplied by 0.06-0.2 (a nearly black frame) plus faint noise."""
    gain = rng.uniform(*gain_range)
    return _to_uint8(image.astype(np.float32) * gain + rng.normal(0.0, noise_sigma, image.shape))


def shadowing(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    shadows: Sequence[int] = (1, 3),
    width_deg: Sequence[float] = (10.0, 25.0),
    attenuation: Sequence[float] = (0.03, 0.15),
) -> np.ndarray:
    """Heavy acoustic shadows: dark wedges radiating from a transducer above the image.

    The virtual transducer sits above the top edge; 1-3 wedges of 10-25 degrees start at a
    random depth (behind an imagined strong reflector) and darken everything below to
    3-15% of its intensity, with soft edges. The first wedge is aimed at the head centre so
    that the head is always partly shadowed.
    """
    size = image.shape[0]
    apex = np.array([-rng.uniform(0.3, 1.0) * size, rng.uniform(0.3, 0.7) * size])  # (row, col)
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    angle = np.degrees(np.arctan2(cols - apex[1], rows - apex[0]))
    depth = np.hypot(rows - apex[0], cols - apex[1])
    head_rows, head_cols = np.nonzero(mask)
    head_centre = np.array([head_rows.mean(), head_cols.mean()]) if head_rows.size else np.full(2, size / 2)
    head_angle = math.degrees(math.atan2(head_centre[1] - apex[1], head_centre[0] - apex[0]))
    head_depth = float(np.hypot(*(head_centre - apex)))
    gain = np.ones(image.shape, dtype=np.float32)
    for number in range(int(rng.integers(shadows[0], shadows[1] + 1))):
        centre = head_angle + (rng.uniform(-5, 5) if number == 0 else rng.uniform(-30, 30))
        half_width = rng.uniform(*width_deg) / 2
        start = head_depth - rng.uniform(0.2, 0.6) * size / 2
        edge = np.clip((half_width - np.abs(angle - centre)) / 2.0, 0, 1)  # 2-degree soft edge
        onset = np.clip((depth - start) / 6.0, 0, 1)  # 6-pixel soft onset
        gain *= 1 - (1 - rng.uniform(*attenuation)) * edge * onset
    return _to_uint8(image.astype(np.float32) * gain)


def make_ood_sets(
    prepared: Prepared,
    split: str,
    seed: int,
    strength: float = 8.0,
    limit: Optional[int] = None,
    data_root: Optional[Path] = None,
    names: Sequence[str] = OOD_SET_NAMES,
) -> Dict[str, np.ndarray]:
    """``{set name: uint8 [N, 224, 224]}`` built from the scans of ``split`` (first ``limit``), for ``names``.

    Scan i of set k (its place in ``OOD_SET_NAMES``) uses ``np.random.default_rng([seed, k, i])``,
    so a set is the same whichever others are made with it. With ``data_root`` (the
    HC18 folder) ``no_head`` crops the original-resolution scans instead of the 224x224
    ones. ``no_head`` skips scans whose head leaves no room for a crop, so it may hold
    fewer images.
    """
    indices = prepared.indices(split)[:limit]

    def head_free_crop(i: int, rng: np.random.Generator) -> Optional[np.ndarray]:
        if data_root is None:
            return no_head(prepared.images[i], prepared.masks[i], rng)
        scan = load_scan(data_root, prepared.names[i])
        return no_head(scan.image, scan.mask, rng)

    generators: Dict[str, Callable[[int, np.random.Generator], Optional[np.ndarray]]] = {
        "elastic_skull": lambda i, rng: elastic_skull(prepared.images[i], prepared.masks[i], rng, strength=strength),
        "no_head": head_free_crop,
        "gain_high": lambda i, rng: gain_high(prepared.images[i], rng),
        "gain_low": lambda i, rng: gain_low(prepared.images[i], rng),
        "shadowing": lambda i, rng: shadowing(prepared.images[i], prepared.masks[i], rng),
    }
    sets = {}
    for name in names:
        set_number = OOD_SET_NAMES.index(name)
        images = []
        for i in indices:
            out = generators[name](int(i), np.random.default_rng([seed, set_number, int(i)]))
            if out is not None:
                images.append(out)
        sets[name] = np.stack(images) if images else np.zeros((0,) + prepared.images.shape[1:], np.uint8)
    return sets


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Write the seeded OOD sets of one split (and a preview image).")
    parser.add_argument("--data", type=Path, default=Path("build/hc18"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strength", type=float, default=8.0)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--hc18", type=Path, default=None, help="HC18 folder: no-head crops from original-resolution scans")
    parser.add_argument("--out", type=Path, default=Path("build/ood/test.npz"))
    parser.add_argument("--preview", type=Path, default=None, help="PNG grid: one row per set, first 6 scans")
    args = parser.parse_args(argv)
    prepared = load_prepared(args.data)
    sets = make_ood_sets(prepared, args.split, args.seed, args.strength, args.limit, args.hc18)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **sets)
    if args.preview is not None:
        columns = 6
        groups = [prepared.images[prepared.indices(args.split)[:columns]]] + list(sets.values())
        rows = [np.concatenate([*g[:columns], *np.zeros((columns - len(g[:columns]),) + g.shape[1:], np.uint8)], axis=1) for g in groups]
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.preview)
    print({name: images.shape[0] for name, images in sets.items()})


if __name__ == "__main__":
    main()
