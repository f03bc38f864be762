import numpy as np
import pytest

from lfusion.density import (
    DensityConfig,
    block_slices,
    density_score,
    fit_density,
    ledoit_wolf_shrinkage,
    pool,
    read_statistics,
    shrunk_precision,
    write_statistics,
)


def test_pool_mean_and_std_per_channel():
    features = np.arange(2 * 3 * 2 * 2, dtype=np.float32).reshape(2, 3, 2, 2)
    np.testing.assert_allclose(pool(features, "mean"), features.reshape(2, 3, 4).mean(axis=2))
    both = pool(features, "mean_std")
    assert both.shape == (2, 6)
    np.testing.assert_allclose(both[:, 3:], features.reshape(2, 3, 4).std(axis=2))
    with pytest.raises(ValueError):
        pool(features, "max")


def test_block_slices_keep_mean_and_std_of_a_block_together():
    assert [s.tolist() for s in block_slices(4, 2, "mean")] == [[0, 1], [2, 3]]
    assert [s.tolist() for s in block_slices(4, 2, "mean_std")] == [[0, 1, 4, 5], [2, 3, 6, 7]]


def test_shrinkage_is_small_with_many_samples_and_large_with_few():
    rng = np.random.default_rng(0)
    scales = np.linspace(0.5, 3, 10)
    many = rng.normal(size=(5000, 10)) * scales
    few = rng.normal(size=(6, 10)) * scales
    assert ledoit_wolf_shrinkage(many) < 0.05
    assert ledoit_wolf_shrinkage(few) > ledoit_wolf_shrinkage(many)


def test_precision_inverts_the_covariance_without_shrinkage():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 5)) @ rng.normal(size=(5, 5))
    precision, alpha = shrunk_precision(x, 0.0)
    assert alpha == 0.0
    np.testing.assert_allclose(precision @ np.cov(x.T, bias=True), np.eye(5), atol=1e-8)


def test_score_is_the_squared_mahalanobis_distance_and_ranks_outliers_higher():
    rng = np.random.default_rng(2)
    train = rng.normal(size=(2000, 4)) * np.array([1.0, 2.0, 0.5, 1.0])
    fitted = fit_density(train, [np.arange(4)], DensityConfig(per_block=False, shrinkage=0.0))
    inlier, outlier = np.zeros((1, 4)) + fitted.mean, fitted.mean + np.array([[0.0, 0.0, 3.0, 0.0]])
    assert density_score(inlier, fitted.mean, fitted.precision)[0] == pytest.approx(0.0)
    # 3 along an axis of std 0.5 is 6 standard deviations: d^2 close to 36.
    assert density_score(outlier, fitted.mean, fitted.precision)[0] == pytest.approx(36.0, rel=0.1)


def test_per_block_precision_is_block_diagonal_and_divided_by_block_size():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(500, 6))
    blocks = [np.arange(0, 2), np.arange(2, 6)]
    fitted = fit_density(train, blocks, DensityConfig(per_block=True, shrinkage=0.0))
    assert np.all(fitted.precision[np.ix_(blocks[0], blocks[1])] == 0)
    alone, _ = shrunk_precision(train[:, blocks[1]], 0.0)
    np.testing.assert_allclose(fitted.precision[np.ix_(blocks[1], blocks[1])], alone / 4)


def test_statistics_file_holds_the_diagonal_blocks_in_block_order(tmp_path):
    rng = np.random.default_rng(4)
    groups = block_slices(4, 2, "mean_std")  # [0, 1, 4, 5], [2, 3, 6, 7]
    fitted = fit_density(rng.normal(size=(300, 8)), groups, DensityConfig(pooling="mean_std", per_block=True))
    write_statistics(fitted, groups, tmp_path / "density.bin")
    assert (tmp_path / "density.bin").stat().st_size == 4 * (8 + 2 * 16)
    stored = np.fromfile(tmp_path / "density.bin", dtype="<f4")
    np.testing.assert_allclose(stored[:4], fitted.mean[[0, 1, 4, 5]], rtol=1e-6)
    back = read_statistics(tmp_path / "density.bin", groups)
    np.testing.assert_allclose(back.precision, fitted.precision, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back.mean, fitted.mean, rtol=1e-6)
    with pytest.raises(ValueError):
        read_statistics(tmp_path / "density.bin", [np.arange(8)])


def test_layout_copies_are_seeded_geometric_copies_of_each_image():
    from lfusion.density import LAYOUT, layout_copies

    images = np.random.default_rng(0).integers(1, 256, (3, 32, 32), dtype=np.uint8)
    copies = layout_copies(images, 2, seed=5)
    assert copies.shape == (6, 32, 32) and copies.dtype == np.uint8
    assert np.array_equal(copies, layout_copies(images, 2, seed=5)) and not np.array_equal(copies, layout_copies(images, 2, seed=6))
    assert layout_copies(images, 0, seed=5).shape == (0, 32, 32)
    # Geometry and layout only: no gain, contrast, speckle or compression step.
    assert LAYOUT.gain_range == (1.0, 1.0) and LAYOUT.gamma_range == (1.0, 1.0) and LAYOUT.speckle_probability == 0 and LAYOUT.compression_probability == 0
    assert LAYOUT.sector_probability > 0 and LAYOUT.max_rotation_deg == 180.0
