import numpy as np
import pytest

from lfusion.data import Ellipse, Prepared, ellipse_mask
from lfusion.ood import (
    OOD_SET_NAMES,
    elastic_skull,
    gain_high,
    gain_low,
    make_ood_sets,
    no_head,
    shadowing,
    skull_band_weight,
)


def synthetic_scan(seed=0, a=28.0, b=22.0):
    """A speckled 224x224 'scan' with a bright elliptical skull ring and its filled mask."""
    rng = np.random.default_rng(seed)
    mask = ellipse_mask(Ellipse(cx=112.0, cy=120.0, a=a, b=b, angle=0.3), (224, 224))
    ring = skull_band_weight(mask, 2.0)
    image = 40 + 25 * rng.random((224, 224)) + 150 * ring
    return np.clip(image, 0, 255).astype(np.uint8), mask


def masked_generators():
    return {
        "elastic_skull": lambda image, mask, rng: elastic_skull(image, mask, rng, strength=8.0),
        "no_head": no_head,
        "gain_high": lambda image, mask, rng: gain_high(image, rng),
        "gain_low": lambda image, mask, rng: gain_low(image, rng),
        "shadowing": shadowing,
    }


@pytest.mark.parametrize("name", OOD_SET_NAMES)
def test_generators_are_deterministic_per_seed_and_change_the_image(name):
    image, mask = synthetic_scan()
    generate = masked_generators()[name]
    first = generate(image, mask, np.random.default_rng(7))
    again = generate(image, mask, np.random.default_rng(7))
    other = generate(image, mask, np.random.default_rng(8))
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert np.abs(first.astype(int) - image.astype(int)).mean() > 1.0


def test_elastic_deformation_is_concentrated_on_the_skull_and_grows_with_strength():
    image, mask = synthetic_scan()
    weight = skull_band_weight(mask, 10.0)
    changes = []
    for strength in (4.0, 12.0):
        change = np.abs(elastic_skull(image, mask, np.random.default_rng(1), strength=strength).astype(int) - image)
        near, far = change[weight > 0.5].mean(), change[weight < 1e-3].mean()
        assert near > 5 * far
        changes.append(near)
    assert changes[1] > changes[0]


def test_no_head_crop_avoids_the_head_and_gives_up_when_there_is_no_room():
    image, mask = synthetic_scan()
    marked = image.copy()
    marked[mask.astype(bool)] = 255  # a head no crop may show
    crop = no_head(marked, mask, np.random.default_rng(0))
    assert crop is not None and crop.shape == (224, 224) and crop.max() < 255
    full = np.ones_like(mask)
    assert no_head(image, full, np.random.default_rng(0)) is None


def test_gain_and_shadowing_act_in_the_documented_direction():
    image, mask = synthetic_scan()
    rng = np.random.default_rng(3)
    assert gain_high(image, rng).mean() > 2.5 * image.mean()
    assert gain_low(image, rng).mean() < 0.25 * image.mean()
    shadowed = shadowing(image, mask, rng)
    assert (shadowed <= image).all()
    assert shadowed[mask.astype(bool)].mean() < 0.9 * image[mask.astype(bool)].mean()


def test_make_ood_sets_is_seeded_and_uses_the_requested_split():
    scans = [synthetic_scan(seed) for seed in range(4)]
    prepared = Prepared(
        images=np.stack([s[0] for s in scans]),
        masks=np.stack([s[1] for s in scans]),
        spacing_xy=np.ones((4, 2)),
        hc_mm=np.ones(4),
        pixel_size_mm=np.ones(4),
        names=[f"{i:03d}_HC" for i in range(4)],
        subjects=[f"{i:03d}" for i in range(4)],
        splits=["train", "test", "test", "val"],
        unlabelled_images=np.zeros((0, 224, 224), np.uint8),
        unlabelled_names=[],
    )
    sets = make_ood_sets(prepared, "test", seed=5)
    assert tuple(sets) == OOD_SET_NAMES
    for name in OOD_SET_NAMES:
        assert sets[name].shape[1:] == (224, 224) and sets[name].dtype == np.uint8
        assert 0 < len(sets[name]) <= 2
    assert len(sets["gain_low"]) == 2
    again = make_ood_sets(prepared, "test", seed=5)
    for name in OOD_SET_NAMES:
        np.testing.assert_array_equal(sets[name], again[name])
    assert not np.array_equal(make_ood_sets(prepared, "test", seed=6)["shadowing"], sets["shadowing"])
    # One set made alone is the same set (the seed follows its place in OOD_SET_NAMES).
    alone = make_ood_sets(prepared, "test", seed=5, names=("shadowing",))
    assert tuple(alone) == ("shadowing",)
    np.testing.assert_array_equal(alone["shadowing"], sets["shadowing"])
