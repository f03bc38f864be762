"""The paper's Fig. 2 for HC18 as PNG (PIL only): image, mask, fused uncertainty and per-path maps.

Reads ``build/results/<model>.maps.npz`` (written by ``lfusion.evaluate --record``; keys
``<set>/<index>/<map>``) and draws one row per (set, scan): the image, the predicted mask's outline
on it, then the uncertainty maps. Each uncertainty column shares one logarithmic colour scale over
all rows (three decades below the column's maximum), so a brighter OOD row means a higher value
than the normal scan's, not a rescaled one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from lfusion.metrics import boundary

TILE = 144
DECADES = 3.0
# Anchor colours of a perceptually ordered dark-to-bright map (black, purple, red, orange, pale yellow).
ANCHORS = np.array([[0, 0, 4], [87, 16, 110], [188, 55, 84], [249, 142, 9], [252, 255, 164]], dtype=np.float64)
MAP_TITLES = {"fused": "fused (inter-path)", "laplace.calibrated": "Laplacian, calibrated", "dropout.calibrated": "Dropout, calibrated", "unet.calibrated": "SSN U-Net, calibrated"}


def colour(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> uint8 RGB [H, W, 3], linear between ``ANCHORS``."""
    position = np.clip(values, 0.0, 1.0) * (len(ANCHORS) - 1)
    lower = np.minimum(np.floor(position).astype(int), len(ANCHORS) - 2)
    fraction = (position - lower)[..., None]
    return np.rint(ANCHORS[lower] * (1 - fraction) + ANCHORS[lower + 1] * fraction).astype(np.uint8)


def log_scale(values: np.ndarray, top: float) -> np.ndarray:
    """log10 of values mapped to [0, 1] over [top / 10^DECADES, top]."""
    floor = top / 10**DECADES
    return (np.log10(np.maximum(values, floor)) - np.log10(floor)) / DECADES


def tile(rgb: np.ndarray) -> Image.Image:
    return Image.fromarray(rgb).resize((TILE, TILE), Image.BILINEAR)


def grey_rgb(image: np.ndarray) -> np.ndarray:
    return np.repeat(np.asarray(image, dtype=np.uint8)[..., None], 3, axis=2)


def mask_overlay(image: np.ndarray, prob: np.ndarray) -> np.ndarray:
    """The image with the predicted mask (prob > 0.5) tinted and its outline (2 px) in green."""
    rgb = grey_rgb(image).astype(np.float64)
    mask = prob > 0.5
    rgb[mask] = 0.6 * rgb[mask] + 0.4 * np.array([0, 160, 255])
    outline = boundary(mask)
    rgb[outline | np.roll(outline, 1, axis=0) | np.roll(outline, 1, axis=1)] = (0, 255, 0)
    return rgb.astype(np.uint8)


def rows_of(maps: Dict[str, np.ndarray]) -> List[Tuple[str, str]]:
    """(set, index) pairs in the file, the in-distribution scans first."""
    pairs = sorted({tuple(key.split("/")[:2]) for key in maps}, key=lambda p: (p[0] != "in", p[0], int(p[1])))
    return pairs


def figure(maps: Dict[str, np.ndarray], rows: Sequence[Tuple[str, str]], columns: Sequence[str], title: str) -> Image.Image:
    tops = {c: max(float(np.max(maps[f"{s}/{i}/{c}"].astype(np.float64))) for s, i in rows) for c in columns}
    header, label_width = 18, 92
    canvas = Image.new("RGB", (label_width + TILE * (2 + len(columns)), header * 2 + TILE * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 2), title, fill="black")
    for c, name in enumerate(["image", "mask"] + [MAP_TITLES.get(c, c) for c in columns]):
        draw.text((label_width + c * TILE + 2, header + 2), name[:24], fill="black")
    for r, (set_name, index) in enumerate(rows):
        prefix = f"{set_name}/{index}/"
        y = header * 2 + r * TILE
        draw.text((4, y + TILE // 2 - 6), "normal" if set_name == "in" else set_name, fill="black")
        image, prob = maps[prefix + "image"], maps[prefix + "mean_prob"].astype(np.float32)
        if prob.shape != image.shape:  # U-Net maps are 256x256, the images 224x224
            prob = np.asarray(Image.fromarray(prob).resize(image.shape[::-1], Image.BILINEAR))
        tiles = [grey_rgb(image), mask_overlay(image, prob)]
        tiles += [colour(log_scale(maps[prefix + c].astype(np.float64), tops[c])) for c in columns]
        for c, rgb in enumerate(tiles):
            canvas.paste(tile(rgb), (label_width + c * TILE, y))
    return canvas


def write_figures(records: Path, out: Path) -> List[Path]:
    """One PNG per ``<model>.maps.npz`` with uncertainty maps; returns the written paths."""
    written = []
    for path in sorted(records.glob("*.maps.npz"), key=lambda p: (not p.name.startswith("lfusion."), p.name)):
        model = path.name[: -len(".maps.npz")]
        with np.load(path) as npz:
            maps = {key: npz[key] for key in npz.files}
        if not maps:
            continue
        rows = rows_of(maps)
        set_name, index = rows[0]
        columns = [c for c in ("fused", "laplace.calibrated", "dropout.calibrated", "unet.calibrated") if f"{set_name}/{index}/{c}" in maps]
        # The first kept frame of every set: one normal scan and its OOD versions (no_head, which
        # skips scans, may show a crop of another scan).
        chosen = [(s, i) for n, (s, i) in enumerate(rows) if all(s != other for other, _ in rows[:n])]
        out.mkdir(parents=True, exist_ok=True)
        target = out / f"uncertainty-{model}.png"
        title = f"{model}: mean prediction and uncertainty maps (log colour scale per column, {DECADES:.0f} decades)"
        figure(maps, chosen, columns, title).quantize(colors=256, dither=Image.NONE).save(target, optimize=True)
        written.append(target)
    return written
