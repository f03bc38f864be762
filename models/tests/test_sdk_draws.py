"""The factory's copy of the SDK's draws must equal what the SDK draws (values printed by src/runtime/draws.ts:
``drawSamples(0, {m:2,n:2,k:2}, {weightCount:5, maskCount:6, dropoutRate:0.2, rank:3, pixels:4})``)."""
import numpy as np

from lfusion.sdk_draws import DrawDimensions, draw_samples

SDK = {
    "weight_noise": [1.7912908792495728, -0.4366166889667511, -0.5614962577819824, -0.445167601108551, -1.4080907106399536,
                     0.19536873698234558, -0.20148921012878418, 1.4584013223648071, -1.1023792028427124, 0.4244946539402008],
    "dropout_masks": [0, 1.25, 1.25, 1.25, 1.25, 1.25, 1.25, 0, 0, 1.25, 1.25, 1.25],
    "factor_noise": [-0.6315801739692688, 1.752187728881836, 0.30741849541664124, 0.18392764031887054, -0.6224387288093567,
                     -0.6227462887763977, 0.058100830763578415, -0.5344959497451782, 0.19107460975646973,
                     -0.2596575915813446, 0.5496919751167297, 0.28937429189682007],
    "diag_noise": [2.7641468048095703, -0.19377170503139496, -0.6930184364318848, 0.0009014859097078443,
                   0.7301889061927795, 0.4495334327220917, 0.16265934705734253, 1.1298831701278687,
                   0.36437246203422546, 0.9569423794746399, -0.2574829161167145, 0.05297349393367767,
                   0.17499639093875885, -0.5958376526832581, 1.4131357669830322, -0.5477757453918457],
}


def test_draws_equal_the_sdk_bit_for_bit():
    draws = draw_samples(0, m=2, n=2, k=2, dims=DrawDimensions(weight_count=5, rank=3, mask_count=6, dropout_rate=0.2, pixels=4))
    assert draws["weight_noise"].shape == (2, 5)
    assert draws["factor_noise"].shape == (2, 2, 3)
    assert draws["diag_noise"].shape == (2, 2, 4)
    assert draws["dropout_masks"].shape == (2, 6)
    for name, expected in SDK.items():
        np.testing.assert_array_equal(draws[name].ravel(), np.asarray(expected, dtype=np.float32), err_msg=name)


def test_smaller_counts_are_the_first_rows_of_larger_ones():
    dims = DrawDimensions(weight_count=7, rank=2, mask_count=4, dropout_rate=0.5, pixels=3)
    small, large = draw_samples(5, 1, 2, 1, dims), draw_samples(5, 3, 4, 2, dims)
    np.testing.assert_array_equal(small["weight_noise"], large["weight_noise"][:1])
    np.testing.assert_array_equal(small["diag_noise"], large["diag_noise"][:1, :2])
    np.testing.assert_array_equal(small["dropout_masks"], large["dropout_masks"][:1])
