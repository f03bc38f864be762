"""Thresholds and evaluation of the SDK's fused OOD decision (``decideOod``).

The SDK scores every frame with several evidence scores (higher = less like a fetal head scan):
``density`` (feature density, reason ``wrong-anatomy``), ``uncertainty`` (the L-FUSION image score,
``uncertain-shape``), ``head-area-low``/``head-area-high``/``ellipse-misfit`` (segmentation evidence,
``no-head``), ``brightness-high``/``brightness-low``/``beam-shadow`` (``acquisition``). The decision fires
when any score is strictly above its threshold.

The thresholds are one conformal test (``lfusion.conformal``): each score's p-value against the calibration
heads (rank, with an exponential tail beyond the top 10%), combined by the smallest p-value, fired below the
conformal order statistic of the calibration heads' leave-one-out min-p (at most ``false_alarm_rate`` with
probability ``confidence``); each score's threshold is where its p-value crosses that level. Calibrated on
in-distribution scans only (the validation split and HC18's unlabelled test_set; never the test split); the
OOD sets are evaluated, never fitted on. The procedure is also checked with every in-distribution head held
out once (``held_out_alarms``). With ``--clip`` the same test calibrates the clip path's decision per window
(``manifest.clip.oodDecision``) on the validation sweeps' windows (``models/tools/clip_ood_scores.ts``: each window's
median frame density, brightness, head area and ellipse misfit of the clip heads' masks, and the clip score), and
evaluates it on the test sweeps and the clip OOD sets. The per-frame scores come from ``models/tools/ood_scores.ts`` (the SDK's
own draws and code); the thresholds go into the manifest's ``oodDecision``; the evaluation (AUROC with DeLong
intervals, detection and false-alarm rates with Clopper-Pearson intervals, per OOD set, for the decision and
every single score) into build/ood-decision and a section of docs/results.md.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from lfusion.conformal import TailModel, calibrate, chance_above, clopper_pearson, delong_interval, expected_false_alarm_rate, surprise, tail_size_for
from lfusion.metrics import auroc
from lfusion.results import CLIP_OOD_DECISION_BEGIN, CLIP_OOD_DECISION_END, OOD_DECISION_BEGIN as BEGIN, OOD_DECISION_END as END, READING_MARKER

REASONS = {
    "density": "wrong-anatomy",
    "uncertainty": "uncertain-shape",
    "head-area-low": "no-head",
    "head-area-high": "no-head",
    "ellipse-misfit": "no-head",
    "brightness-high": "acquisition",
    "brightness-low": "acquisition",
    "beam-shadow": "acquisition",
}


# In-distribution sets (fetal heads): the calibration sets and the held-out test split.
CALIBRATION = {"val": "validation split", "hc18-unlabelled": "HC18 unlabelled test_set"}
CLIP_CALIBRATION = {"val": "validation sweeps"}
# What the 2D and the clip decision's documentation differ by.
FRAME_TEXT = {"title": "## Fused OOD decision (feature density, uncertainty, segmentation, acquisition)", "unit": "frames", "begin": BEGIN, "end": END}
CLIP_TEXT = {"title": "## Fused OOD decision of the clip path, per 16-frame window", "unit": "windows", "begin": CLIP_OOD_DECISION_BEGIN, "end": CLIP_OOD_DECISION_END}
IN_DISTRIBUTION = (*CALIBRATION, "test")
HELD_OUT_FOLDS = 5


def matrix(records: Sequence[Dict[str, float]], names: Sequence[str]) -> np.ndarray:
    """[N, len(names)] float64 of per-frame evidence records (NaN where a record lacks a score)."""
    return np.array([[record.get(name, np.nan) for name in names] for record in records], dtype=np.float64).reshape(len(records), len(names))


def fires(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """[N] bool: any score strictly above its threshold (what the SDK applies)."""
    return np.any(scores > thresholds, axis=1)


def rate(hits: np.ndarray) -> dict:
    """Count, rate and 95% Clopper-Pearson interval of a boolean vector."""
    count, total = int(np.sum(hits)), int(np.size(hits))
    low, high = clopper_pearson(count, total)
    return {"count": count, "rate": count / total if total else float("nan"), "ci95": [low, high]}


def evaluate(sets: Dict[str, np.ndarray], names: Sequence[str], models: Sequence[TailModel], thresholds: np.ndarray, negatives: str = "test") -> Dict[str, dict]:
    """Per set: the decision's alarm rate (detection on OOD sets, false alarms on heads) and, against ``negatives``,
    its AUROC on the continuous min-p surprise, with every single score's AUROC and alarm rate beside it."""
    negative = sets[negatives]
    table = {}
    for set_name, scores in sets.items():
        row = {"frames": int(len(scores)), "alarm": rate(fires(scores, thresholds))}
        if set_name != negatives:
            area, low, high = delong_interval(surprise(models, negative), surprise(models, scores))
            row["fusedAuroc"] = {"auroc": area, "ci95": [low, high]}
        row["single"] = {
            name: {
                "auroc": None if set_name == negatives else auroc(negative[:, i], scores[:, i]),
                "alarmRate": float((scores[:, i] > thresholds[i]).mean()),
            }
            for i, name in enumerate(names)
        }
        table[set_name] = row
    return table


def held_out_alarms(heads: np.ndarray, folds: int, false_alarm_rate: float, confidence: Optional[float]) -> np.ndarray:
    """[N] bool: each head's alarm under the decision calibrated on the other folds, a check of the procedure with every
    head held out once. Folds are contiguous blocks: a subject's scans (adjacent by name) stay in one."""
    alarms = np.zeros(len(heads), dtype=bool)
    for block in np.array_split(np.arange(len(heads)), folds):
        rest = np.delete(heads, block, axis=0)
        fitted = calibrate(rest, false_alarm_rate, tail_size_for(len(rest)), confidence)
        alarms[block] = fires(heads[block], fitted["thresholds"])
    return alarms


def decision_section(val: np.ndarray, names: Sequence[str], false_alarm_rate: float, chosen_on: str, confidence: Optional[float] = None) -> tuple:
    """(manifest section, models, thresholds) of the conformal min-p decision calibrated on the heads ``val`` [n, J]:
    at most ``false_alarm_rate`` new false alarms on average or, with ``confidence``, with that probability."""
    n = val.shape[0]
    tail = tail_size_for(n)
    fitted = calibrate(val, false_alarm_rate, tail, confidence)
    if fitted["level"] <= 0:
        raise SystemExit(f"{n} calibration scans cannot bound the false-alarm rate at {false_alarm_rate} (confidence {confidence}): more scans, or a lower confidence")
    thresholds = fitted["thresholds"]
    section = {
        "falseAlarmRate": false_alarm_rate,
        "conformal": {
            "level": fitted["level"],
            "calibrationScans": n,
            "rank": fitted["rank"],
            "tailSize": tail,
            "expectedFalseAlarmRate": expected_false_alarm_rate(n, fitted["rank"]),
            **({} if confidence is None else {"confidence": confidence, "chanceAbove": chance_above(n, fitted["rank"], false_alarm_rate)}),
        },
        "chosenOn": chosen_on,
        "thresholds": {name: {"reason": REASONS[name], "threshold": float(t)} for name, t in zip(names, thresholds)},
    }
    return section, fitted["models"], thresholds


def load_scores(scores_json: Path) -> Dict[str, List[Dict[str, float]]]:
    """The SDK's evidence records per set (``models/tools/ood_scores.ts``)."""
    return json.loads(scores_json.read_text())["scores"]


def markdown(table: Dict[str, dict], names: Sequence[str], section: dict, held_out: dict, provenance: str, text: dict = FRAME_TEXT) -> str:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    pct = lambda r: f"{r['rate']:.1%} ({r['count']}) [{r['ci95'][0]:.1%}, {r['ci95'][1]:.1%}]"  # noqa: E731
    conformal, alpha = section["conformal"], section["falseAlarmRate"]
    n, k = conformal["calibrationScans"], conformal["rank"]
    rank_rule = f"k: the smallest with that chance at most {1 - conformal['confidence']:.0%}" if "confidence" in conformal else f"k = ceil((n+1)(1-{alpha:g}))"
    heads = [s for s in table if s in IN_DISTRIBUTION]
    ood = [s for s in table if s not in IN_DISTRIBUTION]
    thresholds = section["thresholds"]
    lines = [
        text["begin"],
        text["title"],
        "",
        f"One conformal test calibrated on in-distribution heads only ({section['chosenOn']}): each evidence score's p-value",
        f"against their scores (rank, exponential tail beyond the top {conformal['tailSize']}), combined by the smallest p-value; the decision",
        f"fires below p = {conformal['level']:.3g}, the {k}-th of {n} leave-one-out min-p values: {conformal['expectedFalseAlarmRate']:.1%} false",
        f"alarms on new heads on average over calibration sets, and above {alpha:.1%} for {chance_above(n, k, alpha):.0%} of them ({rank_rule}).",
        "Each threshold is where its score's p-value reaches that level. AUROC of the",
        f"continuous min-p against the test heads (95% DeLong interval; zero width at 1), rates with 95% Clopper-Pearson",
        f"intervals (frames of one subject are not independent: the intervals of ood-dev are optimistic). {provenance}",
        "",
        "| evidence | reason | threshold |",
        "|---|---|---|",
        *[f"| `{name}` | `{thresholds[name]['reason']}` | {thresholds[name]['threshold']:.4g} |" for name in names],
        "",
        f"| set | {text['unit']} | fused AUROC [95%] | alarm rate (count) [95%] |",
        "|---|---|---|---|",
    ]
    for s in ood:
        fused = table[s]["fusedAuroc"]
        lines.append(f"| {s} | {table[s]['frames']} | **{fused['auroc']:.3f}** [{fused['ci95'][0]:.3f}, {fused['ci95'][1]:.3f}] | {pct(table[s]['alarm'])} |")
    for s in heads:
        lines.append(f"| {s} heads (false alarms) | {table[s]['frames']} | | {pct(table[s]['alarm'])} |")
    lines += [
        "",
        f"The procedure with every in-distribution head held out once ({held_out['folds']} folds over the {held_out['heads']}",
        f"calibration and test heads, each calibrated on the other folds as above): false alarms {pct(held_out['alarm'])}.",
        "",
        "Single scores: AUROC against the test heads, and the alarm rate of each score at its threshold.",
        "",
        "| set | " + " | ".join(f"`{name}`" for name in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for s in table:
        single = table[s]["single"]
        cells = [f"{single[name]['alarmRate']:.1%}" if s in heads else f"{fmt(single[name]['auroc'])} / {single[name]['alarmRate']:.0%}" for name in names]
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", text["end"], ""]
    return "\n".join(lines)


def write_section(results_md: Path, section: str, begin: str = BEGIN, end: str = END) -> None:
    """Replaces the decision section of docs/results.md (or inserts it before the hand-written reading; the clip
    decision's, which ``lfusion.results`` does not regenerate, at the end, in the part it keeps)."""
    text = results_md.read_text() if results_md.exists() else ""
    if begin in text:
        before, rest = text.split(begin, 1)
        text = before + section + rest.split(end, 1)[1].lstrip("\n")
    elif READING_MARKER in text and begin == BEGIN:
        before, after = text.split(READING_MARKER, 1)
        text = before + section + "\n" + READING_MARKER + after
    else:
        text = text + "\n" + section
    results_md.write_text(text)


def with_section(manifest: dict, section: dict, clip: bool = False) -> dict:
    """The manifest with ``oodDecision`` set, in place or before ``biometry`` (which stays the last key); with
    ``clip``, ``clip.oodDecision``."""
    if clip:
        if "clip" not in manifest:
            raise SystemExit("the package has no clip heads: no clip decision to calibrate")
        return {**manifest, "clip": {**manifest["clip"], "oodDecision": section}}
    if "oodDecision" in manifest or "biometry" not in manifest:
        return {**manifest, "oodDecision": section}
    return {**{k: v for k, v in manifest.items() if k != "biometry"}, "oodDecision": section, "biometry": manifest["biometry"]}


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Calibrate the fused OOD decision on validation scans (conformal min-p) and evaluate it.")
    parser.add_argument("--scores", type=Path, default=Path("build/ood-scores/scores.json"))
    parser.add_argument("--package", type=Path, default=Path("packages/lfusion-hc18"))
    parser.add_argument("--false-alarm-rate", type=float, default=0.025)
    parser.add_argument("--confidence", type=float, default=0.9, help="probability that the realised false-alarm rate is at most --false-alarm-rate (0: on average only)")
    parser.add_argument("--calibration", nargs="+", help="in-distribution sets the decision is calibrated on (never test); default val and hc18-unlabelled, with --clip val")
    parser.add_argument("--clip", action="store_true", help="the clip path's decision per window (scores of models/tools/clip_ood_scores.ts; manifest clip.oodDecision)")
    parser.add_argument("--out", type=Path, default=Path("build/ood-decision"))
    parser.add_argument("--docs", type=Path, default=Path("../docs"))
    args = parser.parse_args(argv)
    records = load_scores(args.scores)
    names_of = CLIP_CALIBRATION if args.clip else CALIBRATION
    args.calibration = args.calibration or list(names_of)
    if "test" in args.calibration or any(name not in records for name in args.calibration):
        raise SystemExit(f"--calibration {args.calibration}: in-distribution sets other than test, from {sorted(records)}")
    calibration = [r for name in args.calibration for r in records[name]]
    names = [n for n in REASONS if all(n in r for r in calibration)]
    sets = {name: matrix(rs, names) for name, rs in records.items() if rs}
    unit = "windows" if args.clip else "scans"
    chosen_on = " + ".join(f"{names_of.get(name, name)}, {len(records[name])} {unit}" for name in args.calibration)
    section, models, thresholds = decision_section(matrix(calibration, names), names, args.false_alarm_rate, chosen_on, args.confidence or None)
    manifest_path = args.package / "manifest.json"
    manifest = with_section(json.loads(manifest_path.read_text()), section, args.clip)
    manifest_path.write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    table = evaluate(sets, names, models, thresholds)
    heads = np.concatenate([sets[name] for name in IN_DISTRIBUTION if name in sets])
    held_out = {"folds": HELD_OUT_FOLDS, "heads": len(heads), "alarm": rate(held_out_alarms(heads, HELD_OUT_FOLDS, args.false_alarm_rate, args.confidence or None))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "evaluation.json").write_text(json.dumps({"oodDecision": section, "table": table, "heldOut": held_out}, indent=1) + "\n")
    tool, target, text = ("clip_ood_scores.ts", "clip-ood-decision", CLIP_TEXT) if args.clip else ("ood_scores.ts", "ood-decision", FRAME_TEXT)
    provenance = f"Scores by the SDK (models/tools/{tool}, manifest sampling); `make -C models {target}`."
    write_section(args.docs / "results.md", markdown(table, names, section, held_out, provenance, text), text["begin"], text["end"])
    print(json.dumps({"oodDecision": section, "fused": {s: (r.get("fusedAuroc"), r["alarm"]) for s, r in table.items()}}, indent=1))


if __name__ == "__main__":
    main()
