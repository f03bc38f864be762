"""Live mode's cost on the fused OOD decision (issue 15): the decision that raises the alert, exact against live mode.

``scripts/live-quality.ts`` runs drifting sweeps of the test scans and of every OOD set through exact and live mode
and keeps each last frame's evidence (``ood.evidence``: density, uncertainty, segmentation and acquisition scores).
Live mode changes only what the heads' samples feed (the uncertainty score and the mask's evidence); whether that
moves the alert is the question here. The decision is calibrated exactly as ``lfusion.ood_decision`` calibrates the
package's (the same calibration sets of the SDK's scores, false-alarm rate and confidence), then, per OOD set and
mode: the AUROC of the decision's continuous min-p surprise against the test sweeps, the alarm rate at its
thresholds, and for each live mode the AUROC lost with a paired bootstrap 95% interval (the test sweeps and the set's
sweeps drawn again with replacement, the same draw for both modes).

    cd models && /usr/bin/python3 -m lfusion.live_decision --record ../build/live-quality.json --scores build/ood-scores/scores.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from lfusion.conformal import surprise
from lfusion.metrics import auroc
from lfusion.ood_decision import CALIBRATION, REASONS, decision_section, fires, load_scores, matrix


def paired_auroc_loss(negatives: Dict[str, np.ndarray], positives: Dict[str, np.ndarray], resamples: int = 500, seed: int = 7) -> Tuple[float, float, float]:
    """(loss, low, high): AUROC of mode ``exact`` minus mode ``live`` (negatives against positives, each a score per
    sweep, the same sweeps in both modes) and its paired bootstrap 95% interval."""
    loss = auroc(negatives["exact"], positives["exact"]) - auroc(negatives["live"], positives["live"])
    generator = np.random.default_rng(seed)
    losses = []
    for _ in range(resamples):
        neg = generator.integers(0, len(negatives["exact"]), len(negatives["exact"]))
        pos = generator.integers(0, len(positives["exact"]), len(positives["exact"]))
        losses.append(auroc(negatives["exact"][neg], positives["exact"][pos]) - auroc(negatives["live"][neg], positives["live"][pos]))
    low, high = np.percentile(losses, [2.5, 97.5])
    return float(loss), float(low), float(high)


def live_decision_table(record: Dict[str, Dict[str, list]], calibration: np.ndarray, names: Sequence[str], false_alarm_rate: float, confidence: Optional[float], resamples: int = 500) -> Dict[str, dict]:
    """Per set of the live-quality record: each mode's fused AUROC against ``test`` and alarm rate, and each live
    mode's AUROC loss with its interval, under the decision calibrated on ``calibration`` [n, len(names)]."""
    _, models, thresholds = decision_section(calibration, names, false_alarm_rate, "calibration", confidence)
    evidence = {name: {mode: matrix([r["evidence"] for r in rows], names) for mode, rows in modes.items()} for name, modes in record.items()}
    scores = {name: {mode: surprise(models, values) for mode, values in modes.items()} for name, modes in evidence.items()}
    alarms = {name: {mode: float(fires(values, thresholds).mean()) for mode, values in modes.items()} for name, modes in evidence.items()}
    table = {}
    for name, modes in scores.items():
        row = {"alarmRate": alarms[name]}
        if name != "test":
            row["auroc"] = {mode: auroc(scores["test"][mode], values) for mode, values in modes.items()}
            row["loss"] = {
                mode: paired_auroc_loss({"exact": scores["test"]["exact"], "live": scores["test"][mode]}, {"exact": modes["exact"], "live": values}, resamples)
                for mode, values in modes.items()
                if mode != "exact"
            }
        table[name] = row
    return table


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Live mode's AUROC loss on the fused OOD decision (scripts/live-quality.ts records).")
    parser.add_argument("--record", type=Path, default=Path("../build/live-quality.json"))
    parser.add_argument("--scores", type=Path, default=Path("build/ood-scores/scores.json"), help="the SDK's evidence of the calibration sets (models/tools/ood_scores.ts)")
    parser.add_argument("--false-alarm-rate", type=float, default=0.025)
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--resamples", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None, help="write the table as JSON here")
    args = parser.parse_args(argv)
    records = load_scores(args.scores)
    calibration = [r for name in CALIBRATION for r in records[name]]
    names = [n for n in REASONS if all(n in r for r in calibration)]
    live = json.loads(args.record.read_text())["record"]
    table = live_decision_table(live, matrix(calibration, names), names, args.false_alarm_rate, args.confidence or None, args.resamples)
    text = json.dumps({"evidence": names, "table": table}, indent=1)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
