"""Errors per head-size band (issue 16, item 3): how the model does on small heads.

Bands are trimesters by Hadlock's gestational age of the reference HC (``metrics.trimester``),
so the smallest band is Table 1's first-trimester subset.

``band_summary`` (pure) summarises one output's per-scan Dice and HC; ``lfusion.curve`` stores it
with each curve row. The CLI reads a test-split SDK replay of the committed package (the
``frames.csv`` of ``lfusion replay --report`` with ground truth, as ``make -C models
biometry-results`` writes it in build/biometry-test) and writes the band table into
docs/results.md.

CLI: ``python -m lfusion.hc_bands --frames build/biometry-test/frames.csv --docs ../docs/results.md``
"""
from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from lfusion.metrics import TRIMESTERS, trimester
from lfusion.results import finite, replace_section

BEGIN = "<!-- hc-bands: written by lfusion.hc_bands -->"
END = "<!-- /hc-bands -->"
# (output name, Dice column, HC column) of a replay report's frames.csv: the SDK's ellipse and pixel outputs.
REPLAY_OUTPUTS = (("ellipse", "ellipseDice", "hcFit"), ("pixels", "pixelsDice", "pixelsHcMm"))


def band_summary(hc_truth: Sequence[float], dice: Sequence[Optional[float]], hc_pred: Sequence[Optional[float]]) -> List[dict]:
    """One row per trimester band, then ``all``: scans, mean and median Dice, mean and median absolute
    and mean signed HC error (mm) over the scans with a predicted HC (``hc_measured``). None or a
    non-finite value is a scan without that measurement."""
    truth = np.asarray(hc_truth, dtype=np.float64)
    bands = trimester(truth)
    rows = []
    for name, keep in [(band, bands == i) for i, band in enumerate(TRIMESTERS)] + [("all", np.ones(len(truth), dtype=bool))]:
        scan_dice = finite([d for d, k in zip(dice, keep) if k])
        errors = finite([None if p is None else p - t for p, t, k in zip(hc_pred, truth, keep) if k])
        stat = lambda fn, values: float(fn(values)) if values.size else math.nan  # noqa: E731
        rows.append({
            "band": name, "scans": int(keep.sum()),
            "hc_range_mm": [stat(np.min, truth[keep]), stat(np.max, truth[keep])],
            "dice_mean": stat(np.mean, scan_dice), "dice_median": stat(np.median, scan_dice),
            "hc_abs_error_mean_mm": stat(np.mean, np.abs(errors)), "hc_abs_error_median_mm": stat(np.median, np.abs(errors)),
            "hc_signed_error_mean_mm": stat(np.mean, errors), "hc_measured": int(errors.size),
        })
    return rows


def band_dice(summary: Sequence[dict]) -> Dict[str, float]:
    """{band: mean Dice} of a ``band_summary``."""
    return {row["band"]: row["dice_mean"] for row in summary}


def read_replay(frames_csv: Path) -> Dict[str, List[Optional[float]]]:
    """The columns of a replay report's frames.csv as numbers (empty cell: None), scans with a reference HC only."""
    with open(frames_csv, newline="") as handle:
        records = [r for r in csv.DictReader(handle) if r.get("hcTrueMm")]
    number = lambda cell: None if cell in ("", None) else float(cell)  # noqa: E731
    return {key: [number(r[key]) for r in records] for key in ("hcTrueMm",) + tuple(c for _, *cs in REPLAY_OUTPUTS for c in cs)}


def render_replay_table(columns: Dict[str, List[Optional[float]]], source: str) -> str:
    lines = [
        "## Errors per head-size band (issue 16, item 3)",
        "",
        f"The committed package on the test split: the SDK's outputs from one replay ({source}), per trimester band by",
        "Hadlock's gestational age of the reference HC (first trimester: below 14 weeks, HC below about 89 mm, Table 1's",
        "subset; third: from 28 weeks, about 258 mm). Ellipse: the posterior-median ellipse of `measureBiometry` (Dice 0",
        "where no head ellipse was found); pixels: the mean probability thresholded at 0.5. HC errors over the scans with",
        "an HC (last column). Regenerate: `make -C models hc-bands` (needs the replay of `make -C models biometry-results`).",
        "",
        "| band (scans) | reference HC mm | output | Dice mean / median | HC abs. error mean / median (mm) | HC signed error mean (mm) | scans with an HC |",
        "|---|---|---|---|---|---|---|",
    ]
    for output, dice_column, hc_column in REPLAY_OUTPUTS:
        for row in band_summary(columns["hcTrueMm"], columns[dice_column], columns[hc_column]):
            low, high = row["hc_range_mm"]
            lines.append(
                f"| {row['band']} ({row['scans']}) | {low:.0f}-{high:.0f} | {output} | {row['dice_mean']:.3f} / {row['dice_median']:.3f} | "
                f"{row['hc_abs_error_mean_mm']:.2f} / {row['hc_abs_error_median_mm']:.2f} | {row['hc_signed_error_mean_mm']:+.2f} | {row['hc_measured']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Per-HC-band Dice and HC error of an SDK replay of the test split.")
    parser.add_argument("--frames", type=Path, default=Path("build/biometry-test/frames.csv"), help="frames.csv of `lfusion replay --report` with ground truth")
    parser.add_argument("--docs", type=Path, default=Path("../docs/results.md"))
    args = parser.parse_args(argv)

    section = render_replay_table(read_replay(args.frames), f"`{args.frames.parent.name}/frames.csv`")
    args.docs.write_text(replace_section(args.docs.read_text(), section, BEGIN, END))
    print(section)


if __name__ == "__main__":
    main()
