import numpy as np

from lfusion.live_decision import live_decision_table, paired_auroc_loss
from lfusion.ood_decision import REASONS


def test_paired_loss_is_zero_for_equal_modes_and_positive_when_live_ranks_worse():
    rng = np.random.default_rng(0)
    negatives, positives = rng.normal(0, 1, 60), rng.normal(1.5, 1, 40)
    same = paired_auroc_loss({"exact": negatives, "live": negatives}, {"exact": positives, "live": positives}, resamples=50)
    assert same == (0.0, 0.0, 0.0)
    worse = paired_auroc_loss({"exact": negatives, "live": negatives}, {"exact": positives, "live": positives - 1.0}, resamples=200)
    assert worse[0] > 0.1 and worse[1] > 0.0 and worse[1] <= worse[0] <= worse[2]


def test_live_decision_table_scores_each_mode_and_only_live_modes_lose():
    rng = np.random.default_rng(1)
    names = list(REASONS)
    heads = rng.normal(0, 1, (200, len(names)))

    def sweeps(shift: float, count: int):
        return [{"evidence": dict(zip(names, row))} for row in rng.normal(shift, 1, (count, len(names)))]

    test, ood = sweeps(0.0, 50), sweeps(2.0, 30)
    record = {"test": {"exact": test, "live": test}, "ood-x": {"exact": ood, "live": ood}}
    table = live_decision_table(record, heads, names, 0.05, None, resamples=20)
    assert set(table["test"]) == {"alarmRate"} and set(table["ood-x"]["loss"]) == {"live"}
    assert table["ood-x"]["auroc"]["exact"] == table["ood-x"]["auroc"]["live"] > 0.9
    assert table["ood-x"]["loss"]["live"] == (0.0, 0.0, 0.0)
    assert table["ood-x"]["alarmRate"]["exact"] > table["test"]["alarmRate"]["exact"]
