"""Thresholds and evaluation of the SDK's fused OOD decision (``decideOod``).

The SDK scores every frame with several evidence scores (higher = less like a fetal head scan):
``density`` (feature density, reason ``wrong-anatomy``), ``uncertainty`` (the L-FUSION image score,
``uncertain-shape``), ``head-area-low``/``head-area-high``/``ellipse-misfit`` (segmentation evidence,
``no-head``), ``brightness-high``/``brightness-low``/``head-shadow`` (``acquisition``). The decision fires
when any score is strictly above its threshold.

Thresholds are chosen on validation in-distribution scans only: every score gets the same tail share q of
the validation scans above its threshold, with q the largest for which the union (the decision) raises on
at most ``false_alarm_rate`` of them. The per-frame scores come from ``models/tools/ood_scores.ts`` (the
SDK's own draws and code); the thresholds go into the manifest's ``oodDecision``; the evaluation (AUROC
and alarm rates per OOD set, for every single score and the fused decision) into build/ood-decision and a
section of docs/results.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from lfusion.metrics import auroc
from lfusion.results import OOD_DECISION_BEGIN as BEGIN, OOD_DECISION_END as END, READING_MARKER

REASONS = {
    "density": "wrong-anatomy",
    "uncertainty": "uncertain-shape",
    "head-area-low": "no-head",
    "head-area-high": "no-head",
    "ellipse-misfit": "no-head",
    "brightness-high": "acquisition",
    "brightness-low": "acquisition",
    "head-shadow": "acquisition",
}


def matrix(records: Sequence[Dict[str, float]], names: Sequence[str]) -> np.ndarray:
    """[N, len(names)] float64 of per-frame evidence records (NaN where a record lacks a score)."""
    return np.array([[record.get(name, np.nan) for name in names] for record in records], dtype=np.float64).reshape(len(records), len(names))


def tail_thresholds(scores: np.ndarray, share: float) -> np.ndarray:
    """Per column: the smallest observed value with at most ``share`` of the rows strictly above it."""
    n = scores.shape[0]
    allowed = int(np.floor(share * n + 1e-9))
    ordered = np.sort(scores, axis=0)
    return ordered[n - 1 - allowed]


def fires(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[N] bool: any score strictly above its threshold."""
    return np.any(scores > thresholds, axis=1)


def choose_thresholds(val: np.ndarray, false_alarm_rate: float) -> Tuple[np.ndarray, float]:
    """(thresholds, share): the largest equal per-score tail share whose union raises on at most ``false_alarm_rate`` of ``val``."""
    n = val.shape[0]
    best = tail_thresholds(val, 0.0)
    best_share = 0.0
    for allowed in range(1, n):
        share = allowed / n
        thresholds = tail_thresholds(val, share)
        if fires(val, thresholds).mean() > false_alarm_rate:
            break
        best, best_share = thresholds, share
    return best, best_share


def fused_score(scores: np.ndarray, thresholds: np.ndarray, val: np.ndarray) -> np.ndarray:
    """Continuous decision score for AUROC: the largest margin above a threshold, each in units of the score's
    validation spread (interquartile range); positive exactly when the decision fires."""
    spread = np.subtract(*np.percentile(val, [75, 25], axis=0))
    spread = np.where(spread > 0, spread, 1.0)
    return np.max((scores - thresholds) / spread, axis=1)


def evaluate(sets: Dict[str, np.ndarray], names: Sequence[str], thresholds: np.ndarray, val: np.ndarray, negatives: str = "test") -> Dict[str, dict]:
    """Per OOD set: AUROC against ``negatives`` and alarm rate, for every single score and the fused decision."""
    negative = sets[negatives]
    table = {}
    for set_name, scores in sets.items():
        row = {"frames": int(len(scores)), "alarmRate": float(fires(scores, thresholds).mean())}
        if set_name != negatives:
            row["fusedAuroc"] = auroc(fused_score(negative, thresholds, val), fused_score(scores, thresholds, val))
        row["single"] = {
            name: {
                "auroc": None if set_name == negatives else auroc(negative[:, i], scores[:, i]),
                "alarmRate": float((scores[:, i] > thresholds[i]).mean()),
            }
            for i, name in enumerate(names)
        }
        table[set_name] = row
    return table


def load_scores(scores_json: Path, density_npz: Optional[Path]) -> Dict[str, List[Dict[str, float]]]:
    """SDK evidence per set; where the SDK ran without density statistics, the factory's density scores of the same frames."""
    scores = json.loads(scores_json.read_text())["scores"]
    if density_npz is not None and density_npz.exists():
        density = np.load(density_npz)
        for name, records in scores.items():
            if name in density.files and any("density" not in r for r in records):
                for record, value in zip(records, density[name]):
                    record.setdefault("density", float(value))
    return scores


def markdown(table: Dict[str, dict], names: Sequence[str], thresholds: Dict[str, dict], false_alarm_rate: float, provenance: str) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    ood = [s for s in table if s not in ("val", "test")]
    lines = [
        BEGIN,
        "## Fused OOD decision (feature density, uncertainty, segmentation, acquisition)",
        "",
        f"Thresholds chosen on the validation scans only, at a false-alarm rate of at most {false_alarm_rate:.1%} for the",
        f"decision; AUROC against the test scans. {provenance}",
        "",
        "| evidence | reason | threshold |",
        "|---|---|---|",
        *[f"| `{n}` | `{thresholds[n]['reason']}` | {thresholds[n]['threshold']:.4g} |" for n in names],
        "",
        "AUROC per OOD set (fused decision first, then each single score); last row: alarm rate of the decision.",
        "",
        "| set | frames | fused | " + " | ".join(f"`{n}`" for n in names) + " | alarm rate |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for s in ood:
        row = table[s]
        lines.append(f"| {s} | {row['frames']} | **{fmt(row.get('fusedAuroc'))}** | " + " | ".join(fmt(row["single"][n]["auroc"]) for n in names) + f" | {row['alarmRate']:.1%} |")
    for s in ("val", "test"):
        if s in table:
            lines.append(f"| {s} heads (false alarms) | {table[s]['frames']} | | " + " | ".join(f"{table[s]['single'][n]['alarmRate']:.1%}" for n in names) + f" | {table[s]['alarmRate']:.1%} |")
    lines += ["", END, ""]
    return "\n".join(lines)


def write_section(results_md: Path, section: str) -> None:
    """Replaces the decision section of docs/results.md (or inserts it before the hand-written reading)."""
    text = results_md.read_text() if results_md.exists() else ""
    if BEGIN in text:
        before, rest = text.split(BEGIN, 1)
        text = before + section + rest.split(END, 1)[1].lstrip("\n")
    elif READING_MARKER in text:
        before, after = text.split(READING_MARKER, 1)
        text = before + section + "\n" + READING_MARKER + after
    else:
        text = text + "\n" + section
    results_md.write_text(text)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Choose the fused OOD decision's thresholds on validation scans and evaluate it.")
    parser.add_argument("--scores", type=Path, default=Path("build/ood-scores/scores.json"))
    parser.add_argument("--density", type=Path, default=Path("build/density/scores.npz"))
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--false-alarm-rate", type=float, default=0.025)
    parser.add_argument("--out", type=Path, default=Path("build/ood-decision"))
    parser.add_argument("--docs", type=Path, default=Path("../docs"))
    args = parser.parse_args(argv)
    records = load_scores(args.scores, args.density)
    names = [n for n in REASONS if all(n in r for r in records["val"])]
    sets = {name: matrix(rs, names) for name, rs in records.items() if rs}
    thresholds, share = choose_thresholds(sets["val"], args.false_alarm_rate)
    section = {
        "falseAlarmRate": args.false_alarm_rate,
        "tailShare": share,
        "chosenOn": f"validation split, {len(sets['val'])} scans",
        "thresholds": {n: {"reason": REASONS[n], "threshold": float(t)} for n, t in zip(names, thresholds)},
    }
    manifest_path = args.package / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["oodDecision"] = section
    manifest_path.write_text(json.dumps(manifest, indent=1) + "\n")
    table = evaluate(sets, names, thresholds, sets["val"])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps({"oodDecision": section, "table": table}, indent=1) + "\n")
    provenance = f"Scores by the SDK (models/tools/ood_scores.ts, manifest sampling); `make -C models ood-decision`."
    write_section(args.docs / "results.md", markdown(table, names, section["thresholds"], args.false_alarm_rate, provenance))
    print(json.dumps({"oodDecision": section, "fused": {s: (r.get("fusedAuroc"), r["alarmRate"]) for s, r in table.items()}}, indent=1))


if __name__ == "__main__":
    main()
