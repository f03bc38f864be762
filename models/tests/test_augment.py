import math

import numpy as np

from lfusion.augment import (
    SWEEP,
    AugmentConfig,
    _log_uniform,
    augment,
    jpeg_round_trip,
    random_affine,
    sector_mask,
    speckle,
    wedge_mask,
)

IDENTITY = AugmentConfig(min_crop=1.0, max_rotation_deg=0.0, scale_range=(1.0, 1.0), max_shift=0.0, flip_probability=0.0, gain_range=(1.0, 1.0), gamma_range=(1.0, 1.0))


def head_scan(size=224):
    rows, cols = np.mgrid[0:size, 0:size]
    mask = (((rows - 112) / 50.0) ** 2 + ((cols - 112) / 40.0) ** 2 <= 1).astype(np.uint8)
    image = np.clip(60 + 120 * mask + np.random.default_rng(0).normal(0, 10, (size, size)), 0, 255).astype(np.uint8)
    return image, mask


def test_the_papers_augmentation_draws_no_extra_numbers():
    image, mask = head_scan()
    used, reference = np.random.default_rng(3), np.random.default_rng(3)
    augment(image, mask, used)
    random_affine(reference, 224, AugmentConfig())
    _log_uniform(reference, AugmentConfig().gain_range), _log_uniform(reference, AugmentConfig().gamma_range)
    assert used.random() == reference.random()


def test_sector_and_wedge_masks_follow_their_geometry():
    fan = sector_mask(224, -50.0, 112.0, math.radians(30), (60.0, 250.0))
    assert fan[150, 112] and fan[100, 112 + 40] and not fan[5, 112] and not fan[100, 5] and not fan[223, 112]
    wedge = wedge_mask(224, 0.0, 100.0, 0.0, math.radians(10))
    assert wedge[100, 100] and wedge[200, 120] and not wedge[100, 150] and not wedge[50, 0]


def test_sector_blackens_outside_the_fan_and_keeps_the_mask():
    image, mask = head_scan()
    cfg = AugmentConfig(**{**IDENTITY.__dict__, "sector_probability": 1.0})
    out, out_mask = augment(image, mask, np.random.default_rng(0), cfg)
    np.testing.assert_array_equal(out_mask, mask)
    inside = out > 0
    assert 0.3 < inside.mean() < 0.95 and out[0, 0] == 0
    np.testing.assert_array_equal(out[inside], image[inside])


def test_speckle_is_multiplicative_and_scales_with_strength():
    flat = np.full((224, 224), 100, np.uint8)
    flat[:, :20] = 0
    weak, strong = speckle(flat, np.random.default_rng(0), 0.1), speckle(flat, np.random.default_rng(0), 0.4)
    assert (weak[:, :20] == 0).all() and (strong[:, :20] == 0).all()
    assert abs(float(strong[:, 20:].mean()) - 100) < 3
    assert 8 < weak[:, 20:].std() < 12 and 35 < strong[:, 20:].std() < 45


def test_jpeg_round_trip_keeps_the_image_with_block_artefacts():
    image, _ = head_scan()
    out = jpeg_round_trip(image, 20)
    assert out.shape == image.shape and out.dtype == np.uint8
    difference = np.abs(out.astype(int) - image.astype(int))
    assert 0 < difference.mean() < 15


def test_sweep_rotates_over_the_full_circle_and_moves_the_head_partly_out_of_view():
    rng = np.random.default_rng(0)
    angles = []
    for _ in range(300):
        matrix, _ = random_affine(rng, 224, SWEEP)
        angles.append(abs(math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))))
    assert max(angles) > 170 and min(angles) < 10
    image, mask = head_scan()
    masks = [augment(image, mask, rng, SWEEP)[1] for _ in range(60)]
    cut = [m.sum() > 0 and (m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()) for m in masks]
    assert 0.1 < np.mean(cut) < 0.6  # the head (never at the border here) is cut by the frame in some frames


def test_feature_cache_training_copies_use_the_named_augmentation():
    from lfusion.data import Prepared
    from lfusion.features import training_images

    image, mask = head_scan()
    prepared = Prepared(
        images=np.stack([image, image[::-1]]), masks=np.stack([mask, mask[::-1]]), spacing_xy=np.ones((2, 2)), hc_mm=np.ones(2),
        pixel_size_mm=np.ones(2), names=["000_HC", "001_HC"], subjects=["000", "001"], splits=["train", "train"],
        unlabelled_images=np.zeros((0, 224, 224), np.uint8), unlabelled_names=[],
    )
    paper, paper_masks = training_images(prepared, 2, seed=4)
    sweep, _ = training_images(prepared, 2, seed=4, augmentation="sweep")
    assert paper.shape == sweep.shape == (6, 224, 224) and paper_masks.shape == (6, 224, 224)
    np.testing.assert_array_equal(sweep[:2], prepared.images)
    assert not np.array_equal(sweep[2:], paper[2:])
