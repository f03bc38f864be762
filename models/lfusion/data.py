"""HC18 fetal head data: ellipse-outline annotations to filled masks, subject split, 224x224 cache.

HC18 (van den Heuvel et al., PLoS ONE 13(8): e0200412, 2018; CC BY 4.0) annotates each
scan with the sonographer's ellipse outline. Some outlines are clipped by the image
border, so a hole fill fails; instead an ellipse is fitted to the outline pixels (direct
least squares, Fitzgibbon/Halir-Flusser) and the mask is the inside of that conic. Its
Ramanujan perimeter times the pixel size reproduces the CSV head circumference.

Images are resized (PIL bilinear) to 224x224 without keeping the aspect ratio, so the
resized pixel spacing differs in x and y; it is carried along as ``spacing_xy``.

CLI: ``python -m lfusion.data --data ../../shared/data/hc18 --out build/hc18``
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

SIZE = 224
# Mean and standard deviation of pixel/255 over the training split's 224x224 images,
# measured by `python -m lfusion.data` (it prints them) and fixed here so that every
# export uses the same normalisation.
NORM_MEAN = 0.1545
NORM_STD = 0.1704
SPLIT_NAMES = ("train", "val", "test")
SUBJECT_PATTERN = re.compile(r"^(\d+)_(\d*)HC$")


def normalize(image: np.ndarray) -> np.ndarray:
    """uint8 grey pixels -> float32 ``(pixel/255 - NORM_MEAN) / NORM_STD``."""
    return ((np.asarray(image, dtype=np.float32) / 255.0 - NORM_MEAN) / NORM_STD).astype(np.float32)


def subject_of(name: str) -> str:
    """``'010_2HC'`` -> ``'010'``: NNN_HC, NNN_2HC, NNN_3HC ... are scans of one subject."""
    match = SUBJECT_PATTERN.match(name)
    if match is None:
        raise ValueError(f"not an HC18 scan name: {name!r}")
    return match.group(1)


@dataclass(frozen=True)
class Ellipse:
    """Centre (x, y), semi-axes a >= b and angle of the a-axis from +x (radians), in pixels."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    def perimeter(self) -> float:
        """Ramanujan's second approximation of the ellipse perimeter."""
        h = ((self.a - self.b) / (self.a + self.b)) ** 2
        return math.pi * (self.a + self.b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))

    def inside(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Boolean mask of the points (x, y) inside or on the ellipse."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        u = (x - self.cx) * cos + (y - self.cy) * sin
        v = -(x - self.cx) * sin + (y - self.cy) * cos
        return (u / self.a) ** 2 + (v / self.b) ** 2 <= 1.0


def fit_ellipse(x: np.ndarray, y: np.ndarray) -> Ellipse:
    """Direct least-squares ellipse fit (Halir & Flusser's stable form of Fitzgibbon's method).

    Works on partial arcs, which is what a border-clipped outline leaves.
    """
    if x.size < 6:
        raise ValueError(f"need at least 6 outline points to fit an ellipse, got {x.size}")
    mx, my = x.mean(), y.mean()
    scale = max(x.std(), y.std())
    xs, ys = (x - mx) / scale, (y - my) / scale
    quadratic = np.stack([xs * xs, xs * ys, ys * ys], axis=1)
    linear = np.stack([xs, ys, np.ones_like(xs)], axis=1)
    s1, s2, s3 = quadratic.T @ quadratic, quadratic.T @ linear, linear.T @ linear
    t = -np.linalg.solve(s3, s2.T)
    m = s1 + s2 @ t
    m = np.array([m[2] / 2, -m[1], m[0] / 2])
    _, vectors = np.linalg.eig(m)
    vectors = np.real(vectors)
    condition = 4 * vectors[0] * vectors[2] - vectors[1] ** 2
    candidates = np.flatnonzero(condition > 0)
    if candidates.size == 0:
        raise ValueError("outline points do not determine an ellipse")
    a1 = vectors[:, candidates[0]]
    A, B, C = a1
    D, E, F_ = t @ a1
    # Back to pixel coordinates: substitute xs = (x - mx)/scale, ys = (y - my)/scale.
    return _conic_to_ellipse(A, B, C, D * scale, E * scale, F_ * scale * scale, mx, my)


def _conic_to_ellipse(A: float, B: float, C: float, D: float, E: float, F_: float, mx: float, my: float) -> Ellipse:
    """Geometric parameters of A x^2 + B xy + C y^2 + D x + E y + F = 0 (coordinates shifted by mx, my)."""
    denominator = B * B - 4 * A * C
    cx = (2 * C * D - B * E) / denominator
    cy = (2 * A * E - B * D) / denominator
    # Value of the conic at the centre gives the scale of the axes.
    centre_value = A * cx * cx + B * cx * cy + C * cy * cy + D * cx + E * cy + F_
    eigenvalues, eigenvectors = np.linalg.eigh(np.array([[A, B / 2], [B / 2, C]]))
    axes = np.sqrt(-centre_value / eigenvalues)
    major = int(np.argmax(axes))
    direction = eigenvectors[:, major]
    return Ellipse(
        cx=float(cx + mx),
        cy=float(cy + my),
        a=float(axes[major]),
        b=float(axes[1 - major]),
        angle=float(math.atan2(direction[1], direction[0])),
    )


def ellipse_from_outline(annotation: np.ndarray) -> Ellipse:
    """Fits the ellipse to the outline pixels (value > 0) of an HC18 annotation image."""
    ys, xs = np.nonzero(annotation > 127)
    return fit_ellipse(xs.astype(np.float64), ys.astype(np.float64))


def ellipse_mask(ellipse: Ellipse, source_shape: Tuple[int, int], out_shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """uint8 {0,1} mask of the ellipse (given in source pixels) rasterised at ``out_shape``.

    Pixel centres of the output grid are mapped back to the source grid, so resizing a
    mask never needs interpolation.
    """
    height, width = source_shape
    out_h, out_w = out_shape or source_shape
    x = (np.arange(out_w) + 0.5) * (width / out_w) - 0.5
    y = (np.arange(out_h) + 0.5) * (height / out_h) - 0.5
    return ellipse.inside(x[None, :], y[:, None]).astype(np.uint8)


def resize_image(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """uint8 grey image -> uint8 [size, size] (PIL bilinear, aspect ratio not kept)."""
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR), dtype=np.uint8)


def read_grey(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.uint8)


def read_csv(path: Path) -> Dict[str, List[float]]:
    """``{scan name without .png: [numeric columns]}``."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {row[0][: -len(".png")]: [float(v) for v in row[1:]] for row in rows[1:] if row}


@dataclass
class Scan:
    """One labelled scan at its original resolution."""

    name: str
    image: np.ndarray  # uint8 [H, W]
    mask: np.ndarray  # uint8 {0,1} [H, W], inside of the fitted ellipse
    ellipse: Ellipse
    pixel_size_mm: float
    hc_mm: float


def load_scan(data_root: Path | str, name: str) -> Scan:
    """Loads ``training_set/<name>.png`` with its annotation, pixel size and head circumference."""
    folder = Path(data_root) / "training_set"
    table = read_csv(folder / "training_set_pixel_size_and_HC.csv")
    if name not in table:
        raise KeyError(f"{name} is not listed in {folder / 'training_set_pixel_size_and_HC.csv'}")
    return load_scan_from_table(folder, name, table[name])


def resize_scan(scan: Scan, size: int = SIZE) -> Tuple[np.ndarray, np.ndarray, Tuple[float, float]]:
    """(image, mask, (mm per pixel in x, in y)) at ``size`` x ``size``."""
    height, width = scan.image.shape
    spacing_xy = (scan.pixel_size_mm * width / size, scan.pixel_size_mm * height / size)
    return resize_image(scan.image, size), ellipse_mask(scan.ellipse, scan.image.shape, (size, size)), spacing_xy


def split_subjects(subjects: Sequence[str], seed: int, fractions: Tuple[float, float, float]) -> Dict[str, List[str]]:
    """Seeded shuffle of the distinct subjects, cut into train/val/test by ``fractions``."""
    unique = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    n_train = int(round(fractions[0] * len(unique)))
    n_val = int(round(fractions[1] * len(unique)))
    shuffled = [unique[i] for i in order]
    parts = (shuffled[:n_train], shuffled[n_train : n_train + n_val], shuffled[n_train + n_val :])
    return {name: sorted(part) for name, part in zip(SPLIT_NAMES, parts)}


@dataclass
class Prepared:
    """The 224x224 cache: labelled scans (with split) and unlabelled test-set scans."""

    images: np.ndarray  # uint8 [N, 224, 224]
    masks: np.ndarray  # uint8 {0,1} [N, 224, 224]
    spacing_xy: np.ndarray  # float64 [N, 2] mm per resized pixel (x, y)
    hc_mm: np.ndarray  # float64 [N]
    pixel_size_mm: np.ndarray  # float64 [N], original resolution
    names: List[str]
    subjects: List[str]
    splits: List[str]
    unlabelled_images: np.ndarray  # uint8 [M, 224, 224]
    unlabelled_names: List[str]

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLIT_NAMES:
            raise ValueError(f"unknown split {split!r}, expected one of {SPLIT_NAMES}")
        return np.array([i for i, s in enumerate(self.splits) if s == split], dtype=np.int64)


def save_prepared(prepared: Prepared, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        path,
        images=prepared.images,
        masks=prepared.masks,
        spacing_xy=prepared.spacing_xy,
        hc_mm=prepared.hc_mm,
        pixel_size_mm=prepared.pixel_size_mm,
        names=np.array(prepared.names),
        subjects=np.array(prepared.subjects),
        splits=np.array(prepared.splits),
        unlabelled_images=prepared.unlabelled_images,
        unlabelled_names=np.array(prepared.unlabelled_names),
    )


def load_prepared(path: Path | str) -> Prepared:
    """Reads the cache written by the CLI; ``path`` is the cache folder or its ``prepared.npz``."""
    path = Path(path)
    if path.is_dir():
        path = path / "prepared.npz"
    with np.load(path) as npz:
        return Prepared(
            images=npz["images"],
            masks=npz["masks"],
            spacing_xy=npz["spacing_xy"],
            hc_mm=npz["hc_mm"],
            pixel_size_mm=npz["pixel_size_mm"],
            names=npz["names"].tolist(),
            subjects=npz["subjects"].tolist(),
            splits=npz["splits"].tolist(),
            unlabelled_images=npz["unlabelled_images"],
            unlabelled_names=npz["unlabelled_names"].tolist(),
        )


def prepare(data_root: Path, split_file: Path, seed: int, fractions: Tuple[float, float, float]) -> Tuple[Prepared, dict]:
    """Builds the cache and the split document (a fresh seeded split, written to ``split_file``)."""
    training = data_root / "training_set"
    table = read_csv(training / "training_set_pixel_size_and_HC.csv")
    names = sorted(table)
    subjects = [subject_of(n) for n in names]
    subject_split = split_subjects(subjects, seed, fractions)
    split_of_subject = {s: split for split, members in subject_split.items() for s in members}

    images, masks, spacing, fitted_hc = [], [], [], []
    for name in names:
        scan = load_scan_from_table(training, name, table[name])
        image224, mask224, spacing_xy = resize_scan(scan)
        images.append(image224)
        masks.append(mask224)
        spacing.append(spacing_xy)
        fitted_hc.append(scan.ellipse.perimeter() * scan.pixel_size_mm)

    test_folder = data_root / "test_set"
    unlabelled_names = sorted(read_csv(test_folder / "test_set_pixel_size.csv"))
    unlabelled = np.stack([resize_image(read_grey(test_folder / f"{n}.png")) for n in unlabelled_names])

    prepared = Prepared(
        images=np.stack(images),
        masks=np.stack(masks),
        spacing_xy=np.array(spacing, dtype=np.float64),
        hc_mm=np.array([table[n][1] for n in names]),
        pixel_size_mm=np.array([table[n][0] for n in names]),
        names=names,
        subjects=subjects,
        splits=[split_of_subject[s] for s in subjects],
        unlabelled_images=unlabelled,
        unlabelled_names=unlabelled_names,
    )
    relative_error = np.abs(np.array(fitted_hc) - prepared.hc_mm) / prepared.hc_mm
    train_pixels = prepared.images[prepared.indices("train")].astype(np.float64) / 255.0
    split_doc = {
        "dataset": "HC18 training_set (van den Heuvel et al., PLoS ONE 2018, CC BY 4.0)",
        "unit": "subject (NNN of NNN_HC, NNN_2HC, ...)",
        "seed": seed,
        "fractions": list(fractions),
        "subjects": subject_split,
        "scans": {split: [n for n, s in zip(names, prepared.splits) if s == split] for split in SPLIT_NAMES},
    }
    summary = {
        "scans": {split: int(len(prepared.indices(split))) for split in SPLIT_NAMES},
        "subjects": {split: len(members) for split, members in subject_split.items()},
        "unlabelled": len(unlabelled_names),
        "hc_relative_error_median": float(np.median(relative_error)),
        "hc_relative_error_max": float(relative_error.max()),
        "hc_relative_error_worst": names[int(np.argmax(relative_error))],
        "train_pixel_mean": float(train_pixels.mean()),
        "train_pixel_std": float(train_pixels.std()),
    }
    split_file.parent.mkdir(parents=True, exist_ok=True)
    split_file.write_text(json.dumps(split_doc, indent=1) + "\n")
    return prepared, summary


def load_scan_from_table(training: Path, name: str, row: List[float]) -> Scan:
    image = read_grey(training / f"{name}.png")
    ellipse = ellipse_from_outline(read_grey(training / f"{name}_Annotation.png"))
    return Scan(name, image, ellipse_mask(ellipse, image.shape), ellipse, row[0], row[1])


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Prepare the HC18 224x224 cache and the subject-level split.")
    parser.add_argument("--data", type=Path, default=Path("../../shared/data/hc18"))
    parser.add_argument("--out", type=Path, default=Path("build/hc18"))
    parser.add_argument("--split-file", type=Path, default=Path("splits/hc18_split.json"))
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--fractions", type=float, nargs=3, default=(0.70, 0.15, 0.15))
    args = parser.parse_args(argv)
    if not (args.data / "training_set").is_dir():
        parser.error(f"HC18 data not found at {args.data} (expected training_set/ and test_set/)")
    prepared, summary = prepare(args.data, args.split_file, args.seed, tuple(args.fractions))
    save_prepared(prepared, args.out / "prepared.npz")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
