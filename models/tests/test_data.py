import json
import math

import numpy as np
import pytest
from scipy import ndimage

from conftest import MODELS_DIR
from lfusion.data import (
    NORM_MEAN,
    NORM_STD,
    SPLIT_NAMES,
    Ellipse,
    ellipse_mask,
    fit_ellipse,
    load_scan,
    normalize,
    read_csv,
    read_grey,
    resize_scan,
    split_subjects,
    subject_of,
)

SPLIT_FILE = MODELS_DIR / "splits" / "hc18_split.json"
BORDER_CLIPPED = ("186_HC", "346_HC")


def outline_points(ellipse: Ellipse, shape, count=2000):
    """Pixel coordinates of an outline drawn inside ``shape`` (points off the image are clipped away)."""
    t = np.linspace(0, 2 * np.pi, count, endpoint=False)
    cos, sin = math.cos(ellipse.angle), math.sin(ellipse.angle)
    x = ellipse.cx + ellipse.a * np.cos(t) * cos - ellipse.b * np.sin(t) * sin
    y = ellipse.cy + ellipse.a * np.cos(t) * sin + ellipse.b * np.sin(t) * cos
    x, y = np.rint(x), np.rint(y)
    inside = (x >= 0) & (x < shape[1]) & (y >= 0) & (y < shape[0])
    return x[inside], y[inside]


@pytest.mark.parametrize("cx, cy", [(400.0, 270.0), (120.0, 300.0), (400.0, 480.0)])
def test_fit_ellipse_recovers_full_and_border_clipped_outlines(cx, cy):
    truth = Ellipse(cx=cx, cy=cy, a=190.0, b=140.0, angle=0.4)
    x, y = outline_points(truth, (540, 800))
    fitted = fit_ellipse(x, y)
    assert fitted.cx == pytest.approx(truth.cx, abs=1.0)
    assert fitted.cy == pytest.approx(truth.cy, abs=1.0)
    assert fitted.a == pytest.approx(truth.a, abs=1.0)
    assert fitted.b == pytest.approx(truth.b, abs=1.0)
    assert fitted.perimeter() == pytest.approx(truth.perimeter(), rel=0.005)


def test_ellipse_mask_area_and_resampling():
    ellipse = Ellipse(cx=399.5, cy=269.5, a=200.0, b=120.0, angle=0.0)
    full = ellipse_mask(ellipse, (540, 800))
    assert full.dtype == np.uint8 and set(np.unique(full)) == {0, 1}
    assert full.sum() == pytest.approx(math.pi * 200 * 120, rel=0.01)
    small = ellipse_mask(ellipse, (540, 800), (224, 224))
    assert small.mean() == pytest.approx(full.mean(), rel=0.02)


def test_ramanujan_perimeter_of_a_circle():
    assert Ellipse(0, 0, 10.0, 10.0, 0.0).perimeter() == pytest.approx(2 * math.pi * 10.0)


def test_normalize_uses_the_constants():
    out = normalize(np.array([[0, 255]], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[-NORM_MEAN / NORM_STD, (1 - NORM_MEAN) / NORM_STD]], rtol=1e-6)


def test_subject_of_groups_repeat_scans():
    assert subject_of("010_HC") == subject_of("010_2HC") == subject_of("010_3HC") == "010"
    with pytest.raises(ValueError):
        subject_of("010_HC_Annotation")


def test_split_subjects_is_seeded_disjoint_and_complete():
    subjects = [f"{i:03d}" for i in range(200)]
    first = split_subjects(subjects, seed=3, fractions=(0.7, 0.15, 0.15))
    assert first == split_subjects(subjects, seed=3, fractions=(0.7, 0.15, 0.15))
    assert first != split_subjects(subjects, seed=4, fractions=(0.7, 0.15, 0.15))
    members = [set(first[name]) for name in SPLIT_NAMES]
    assert sum(len(m) for m in members) == 200 and set().union(*members) == set(subjects)
    assert [len(m) for m in members] == [140, 30, 30]


def test_committed_split_keeps_each_subject_in_one_split():
    doc = json.loads(SPLIT_FILE.read_text())
    subject_sets = [set(doc["subjects"][name]) for name in SPLIT_NAMES]
    for i in range(3):
        for j in range(i + 1, 3):
            assert not subject_sets[i] & subject_sets[j]
    for name in SPLIT_NAMES:
        assert {subject_of(scan) for scan in doc["scans"][name]} <= set(doc["subjects"][name])


def test_committed_split_covers_every_labelled_scan(hc18_root):
    doc = json.loads(SPLIT_FILE.read_text())
    listed = sorted(scan for name in SPLIT_NAMES for scan in doc["scans"][name])
    assert listed == sorted(read_csv(hc18_root / "training_set" / "training_set_pixel_size_and_HC.csv"))


@pytest.mark.parametrize("name", BORDER_CLIPPED)
def test_border_clipped_annotation_gives_full_ellipse_mask(hc18_root, name):
    scan = load_scan(hc18_root, name)
    outline = read_grey(hc18_root / "training_set" / f"{name}_Annotation.png") > 127
    border = np.concatenate([outline[0], outline[-1], outline[:, 0], outline[:, -1]])
    assert border.any(), "expected this annotation to be clipped by the image border"
    # A plain hole fill leaves the clipped ellipse empty; the fitted ellipse does not.
    assert ndimage.binary_fill_holes(outline).sum() < 0.5 * scan.mask.sum()
    assert scan.mask[outline].mean() > 0.4  # the outline lies on the mask's edge
    assert scan.ellipse.perimeter() * scan.pixel_size_mm == pytest.approx(scan.hc_mm, rel=0.005)


def test_fitted_head_circumference_matches_the_csv(hc18_root):
    table = read_csv(hc18_root / "training_set" / "training_set_pixel_size_and_HC.csv")
    for name in sorted(table)[::40]:
        scan = load_scan(hc18_root, name)
        assert scan.ellipse.perimeter() * scan.pixel_size_mm == pytest.approx(scan.hc_mm, rel=0.005), name


def test_resized_mask_and_spacing_keep_millimetres(hc18_root):
    scan = load_scan(hc18_root, "346_HC")
    image224, mask224, (sx, sy) = resize_scan(scan)
    assert image224.shape == mask224.shape == (224, 224) and image224.dtype == np.uint8
    height, width = scan.image.shape
    assert (sx, sy) == pytest.approx((scan.pixel_size_mm * width / 224, scan.pixel_size_mm * height / 224))
    # Area in mm^2 is preserved by the resize with its anisotropic spacing.
    assert mask224.sum() * sx * sy == pytest.approx(scan.mask.sum() * scan.pixel_size_mm**2, rel=0.02)
