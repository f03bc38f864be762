"""The paper's Tables 1 and 3 and Fig. 2 from the evaluation records in ``build/results``.

One command (``make -C models results``) reads every record ``build/results/*.json`` (schema in
``docs/results.md``; written by ``lfusion.evaluate --record`` and, for clips, by ``lfusion.clips``)
and writes ``docs/results.md`` (tables, the paper's numbers beside ours, training times, reading),
``docs/results.json`` (every number) and ``docs/figures/*.png`` (``lfusion.figures``).

Table 1: per model, mean +- sd, 25th and 75th percentiles of Dice (%), Hausdorff distance (mm) and
HC absolute difference (mm) over the test scans at original resolution, and the same mean +- sd on
the first-trimester subset (``metrics.first_trimester``: Hadlock's gestational age of the CSV head
circumference below 14 weeks). An empty predicted mask has no Hausdorff distance and no HC: such
scans are counted, and left out of the HD and AD statistics.

Table 3: AUROC per OOD set. For each path and OOD set the best individual measure is the one with
the highest AUROC on that set's validation version; its test AUROC is reported, and so is the test
AUROC of the intra-path calibrated map built with it as auxiliary (``<path>.calibrated@<measure>``).
Inter-path (``fused``): the auxiliary is the best of both paths' measures on validation. Records
without the per-auxiliary variants fall back to their canonical ``<path>.calibrated`` and ``fused``.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from lfusion.metrics import first_trimester

MODEL_ORDER = ("ssn-unet", "dropout-unet", "laplace-unet", "lfusion", "lfusion-clip")
MEASURES = ("expected_entropy", "expected_pairwise_kl", "pixel_variance", "mutual_information")
MEASURE_SHORT = {"expected_entropy": "EE", "expected_pairwise_kl": "EP", "pixel_variance": "PV", "mutual_information": "MI"}
OOD_ORDER = ("elastic_skull", "no_head", "gain_high", "gain_low", "shadowing")
# Table 3 columns: (record, path, heading). Single-path baselines contribute their one path.
TABLE3_PATHS = (
    ("dropout-unet", "dropout", "D.U."),
    ("laplace-unet", "laplace", "L.U."),
    ("ssn-unet", "unet", "SSN U."),
    ("lfusion", "laplace", "L."),
    ("lfusion", "dropout", "D."),
)

# The paper's numbers (Mueller et al., L-FUSION, Table 1 and the HC18 rows of Table 3), for comparison only.
PAPER_TABLE1 = {
    "ssn-unet": {"mean": (87.6, 15.0, 8.4, 9.1, 16.7, 22.5), "p25": (85.7, 1.9, 2.9), "p75": (96.6, 10.9, 19.9), "first": (73.2, 23.5, 13.7, 9.6, 23.3, 29.6)},
    "dropout-unet": {"mean": (94.3, 8.0, 4.1, 4.3, 9.2, 11.3), "p25": (93.9, 1.8, 3.2), "p75": (97.2, 4.9, 10.5), "first": (87.7, 17.6, 4.2, 7.3, 10.1, 21.0)},
    "laplace-unet": {"mean": (85.4, 16.9, 9.9, 11.7, 21.9, 31.6), "p25": (82.7, 2.7, 4.3), "p75": (96.3, 11.6, 25.2), "first": (70.3, 22.2, 11.3, 10.6, 29.7, 30.1)},
    "lfusion": {"mean": (95.5, 8.0, 2.7, 3.0, 4.7, 6.2), "p25": (95.9, 1.3, 1.4), "p75": (97.7, 2.9, 5.6), "first": (89.0, 17.7, 3.4, 5.6, 6.4, 10.8)},
}
PAPER_TABLE3 = {  # HC18 (OOD: elastic deformations of the skull); individual, intra-path, inter-path C-1 / C-2
    "2D": {"individual": {"D.U.": 0.74, "L.U.": 0.57, "L.": 0.70, "D.": 0.72}, "intra": {"D.U.": 0.84, "L.U.": 0.52, "L.": 0.71, "D.": 0.74}, "inter": {"C-1": 1.00, "C-2": 1.00}},
    "Clip": {"individual": {"D.U.": 0.73, "L.U.": 0.57, "L.": 0.69, "D.": 0.70}, "intra": {"D.U.": 0.82, "L.U.": 0.53, "L.": 0.73, "D.": 0.75}, "inter": {"C-1": 0.98, "C-2": 0.99}},
}
# Everything in docs/results.md from this line on is written by hand (the reading of the numbers) and kept.
READING_MARKER = "<!-- reading: written by hand, kept by lfusion.results -->"
# The fused OOD decision's section, written by lfusion.ood_decision (its own build step) and kept here.
OOD_DECISION_BEGIN = "<!-- ood-decision: written by lfusion.ood_decision -->"
OOD_DECISION_END = "<!-- /ood-decision -->"
CLIP_OOD_DECISION_BEGIN = "<!-- clip-ood-decision: written by lfusion.ood_decision --clip -->"
CLIP_OOD_DECISION_END = "<!-- /clip-ood-decision -->"
PAPER_TRAINING_CLAIM = "training time drops by up to 40% (section 3, stated with the fetal-heart results)"


def load_records(folder: Path) -> Dict[str, dict]:
    records = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if isinstance(record, dict) and "model" in record and "test" in record:
            records[record["model"]] = record
    return {name: records[name] for name in sorted(records, key=lambda n: (MODEL_ORDER.index(n) if n in MODEL_ORDER else len(MODEL_ORDER), n))}


def load_alignment(sdk: Path, oracle: Path) -> Optional[dict]:
    """Issue 6's alignment comparison: the SDK's ``alignFrames`` (models/tools/clip_alignment.ts) and the bound with
    the sweeps' true transforms (``lfusion.clip_alignment``), when they have been run."""
    found = {name: json.loads(path.read_text()) for name, path in (("sdk", sdk), ("oracle", oracle)) if path.exists()}
    return found or None


def alignment_lines(alignment: dict) -> List[str]:
    lines = ["", "## Clip path: does aligning the sweep first help?", "",
             "Dice per frame on the simulated test sweeps (224x224, each frame against its own mask; the clip maps of aligned",
             "frames mapped back onto the frame), clip heads at the package's default (m, n, k), SDK draws of seed 18.", "",
             "| frames given to the clip heads | L-FUSION clip Dice | clips | command |", "|---|---|---|---|"]
    sdk, oracle = alignment.get("sdk"), alignment.get("oracle")
    if sdk:
        lines.append(f"| as simulated (SDK) | {100 * sdk['diceUnaligned']:.2f} | {sdk['clips']} | `{sdk['command']}` |")
        lines.append(f"| aligned by the SDK's `alignFrames` to the first frame | {100 * sdk['diceAligned']:.2f} | {sdk['clips']} | same run |")
    if oracle:
        lines.append(f"| as simulated (PyTorch) | {100 * oracle['diceMean']['unaligned']['lfusion']:.2f} | {oracle['clips']} | `make -C models clip-alignment` |")
        lines.append(f"| aligned with the true transforms (the best any aligner can do) | {100 * oracle['diceMean']['oracle_aligned']['lfusion']:.2f} | {oracle['clips']} | same run |")
    if sdk:
        lines += ["", f"`alignFrames` costs {sdk['alignMsPerFrameMean']:.0f} ms per 224x224 frame here; aligned clips were better on "
                  f"{sdk['alignedBetterClips']} of {sdk['clips']} clips (median change {100 * sdk['medianDiceGain']:+.2f} Dice points). "
                  "Aligning does not improve the clip heads' masks, probably because they were trained on moving sweeps and already follow the head, "
                  "while an aligned frame loses what the reference frame does not see."]
    return lines


def replace_section(text: str, section: str, begin: str, end: str) -> str:
    """``text`` with the section between the markers replaced by ``section``, or with it appended."""
    block = f"{begin}\n{section.rstrip()}\n{end}"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        return before + block + rest.split(end, 1)[1]
    return text.rstrip("\n") + "\n\n" + block + "\n"


def finite(values: Iterable[Optional[float]]) -> np.ndarray:
    array = np.array([math.nan if v is None else v for v in values], dtype=np.float64)
    return array[np.isfinite(array)]


def statistics(values: Iterable[Optional[float]]) -> Dict[str, float]:
    """mean, sd (population), 25th/75th percentiles and count of the finite values."""
    array = finite(values)
    if array.size == 0:
        return {"mean": math.nan, "sd": math.nan, "p25": math.nan, "p75": math.nan, "count": 0}
    return {"mean": float(array.mean()), "sd": float(array.std()), "p25": float(np.percentile(array, 25)), "p75": float(np.percentile(array, 75)), "count": int(array.size)}


def segmentation_table(record: dict) -> dict:
    """Table 1 numbers of one record: {"all"|"first_trimester": {"dice_pct"|"hd_mm"|"ad_mm": statistics}}."""
    test = record["test"]
    dice_pct = [None if d is None else 100.0 * d for d in test["dice"]]
    subset = first_trimester(np.array([math.nan if h is None else h for h in test["hc_truth_mm"]], dtype=np.float64))
    columns = {"dice_pct": dice_pct, "hd_mm": test["hd_mm"], "ad_mm": test["ad_mm"]}
    out = {}
    for name, keep in (("all", np.ones_like(subset)), ("first_trimester", subset)):
        out[name] = {key: statistics(v for v, k in zip(values, keep) if k) for key, values in columns.items()}
        out[name]["scans"] = int(keep.sum())
    out["empty_masks"] = int(sum(1 for v in test["hd_mm"] if v is None))
    return out


def auroc(record: dict, split: str, key: str, ood: str) -> Optional[float]:
    return record["ood"][split].get(key, {}).get(ood)


def present_id(record: dict, *ids: str) -> Optional[str]:
    """The first of ``ids`` in the record's test AUROC table (records differ in their canonical ids:
    ``fused`` / ``fused|mean``, ``<path>.calibrated`` / ``<path>.calibrated|mean``)."""
    return next((i for i in ids if i in record["ood"]["test"]), None)


def best_measure(record: dict, paths: Sequence[str], ood: str) -> Optional[str]:
    """``<path>.<measure>`` with the highest validation AUROC on ``ood`` among ``paths``."""
    options = [(auroc(record, "val", f"{p}.{m}|mean", ood), f"{p}.{m}") for p in paths for m in MEASURES]
    options = [(value, option) for value, option in options if value is not None]
    return max(options)[1] if options else None


def selected_aurocs(record: dict, path: str, ood: str) -> dict:
    """Best individual measure on validation and the test AUROCs of it and of its calibrated map."""
    option = best_measure(record, [path], ood)
    if option is None:
        return {}
    measure = option.partition(".")[2]
    calibrated = present_id(record, f"{path}.calibrated@{measure}", f"{path}.calibrated", f"{path}.calibrated|mean")
    return {
        "measure": measure,
        "individual": auroc(record, "test", f"{option}|mean", ood),
        "individual_val": auroc(record, "val", f"{option}|mean", ood),
        "calibrated": auroc(record, "test", calibrated, ood),
        "calibrated_val": auroc(record, "val", calibrated, ood),
        "calibrated_id": calibrated,
        "calibrated_measure": measure if "@" in calibrated else None,
    }


def fused_auroc(record: dict, ood: str) -> dict:
    paths = [p for p in ("laplace", "dropout") if f"{p}.{MEASURES[0]}|mean" in record["ood"]["test"]]
    option = best_measure(record, paths, ood) if len(paths) == 2 else None
    key = present_id(record, f"fused@{option}", "fused", "fused|mean")
    if key is None:
        return {}
    auxiliary = option if key.startswith("fused@") else None
    return {"auxiliary": auxiliary, "test": auroc(record, "test", key, ood), "val": auroc(record, "val", key, ood), "id": key}


def ood_sets(records: Dict[str, dict]) -> List[str]:
    present = {s for r in records.values() for values in r["ood"]["test"].values() for s in values}
    return [s for s in OOD_ORDER if s in present] + sorted(present - set(OOD_ORDER))


def table3(records: Dict[str, dict], sources: Sequence[str]) -> dict:
    """{ood: {"<heading>": selected_aurocs, "fused": fused_auroc}} for the records in ``sources``
    (the 2D models, or the clip record standing in for L-FUSION)."""
    out = {}
    for ood in ood_sets({name: records[name] for name in sources if name in records}):
        row = {}
        for model, path, heading in TABLE3_PATHS:
            source = next((s for s in sources if s == model or (model == "lfusion" and s == "lfusion-clip")), None)
            if source in records:
                row[heading] = selected_aurocs(records[source], path, ood)
        lfusion = "lfusion-clip" if "lfusion-clip" in sources else "lfusion"
        if lfusion in records:
            row["fused"] = fused_auroc(records[lfusion], ood)
        out[ood] = row
    return out


def table3_means(table: dict) -> dict:
    """Mean test AUROC over the OOD sets of every Table 3 column: {"<heading>": {"individual", "calibrated"}, "fused"}."""
    out = {}
    headings = {h for row in table.values() for h in row if h != "fused"}
    for heading in sorted(headings):
        cells = [row[heading] for row in table.values() if row.get(heading)]
        out[heading] = {part: float(np.mean([c[part] for c in cells])) for part in ("individual", "calibrated") if cells and all(c.get(part) is not None for c in cells)}
    fused = [row["fused"]["test"] for row in table.values() if row.get("fused") and row["fused"].get("test") is not None]
    if fused:
        out["fused"] = float(np.mean(fused))
    return out


def measure_table(record: dict, split: str = "test") -> Dict[str, Dict[str, float]]:
    """Every individual measure's AUROC per OOD set, plus the canonical calibrated and fused ids."""
    keys = [k for k in record["ood"][split] if "@" not in k and "quantile" not in k]
    return {k: record["ood"][split][k] for k in sorted(keys)}


def fmt(value: Optional[float], digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def pm(stats: Dict[str, float], digits: int = 1) -> str:
    return f"{fmt(stats['mean'], digits)} ± {fmt(stats['sd'], digits)}"


def training_rows(records: Dict[str, dict]) -> List[dict]:
    return [{"model": name, "label": r["label"], "input": r.get("input", "2D"), "seconds": r.get("trainingSeconds"), "note": r.get("trainingNote", "")} for name, r in records.items()]


def markdown(records: Dict[str, dict], numbers: dict, figures: List[str]) -> str:
    lines = ["# Results on HC18: the paper's Tables 1 and 3, reproduced here", ""]
    lines += [
        "Generated by `make -C models results` (`cd models && /usr/bin/python3 -m lfusion.results`) from the evaluation",
        "records in `models/build/results/*.json`; every number below is also in `docs/results.json`. Each record names the",
        "command that produced it (section *Provenance*). **Paper** rows/columns are the numbers printed in the L-FUSION",
        "paper (Müller et al.), copied for comparison; they were not measured here. Our models were trained on this",
        "2-core CPU with one thread each, on the subject-level split of `models/splits/hc18_split.json`",
        f"(test: {numbers['test_scans']} scans).",
        "",
        "## Table 1: segmentation on the HC18 test split (original resolution)",
        "",
        "DSC in %, HD and AD in mm, computed at each scan's original resolution: predicted foreground probabilities are",
        "resized (bilinear) from 224x224 (L-FUSION) or 256x256 (U-Nets) to the scan's size, thresholded at 0.5 and",
        "compared with the annotation ellipse; HD uses the CSV pixel size; AD = |HC of the ellipse fitted to the predicted",
        "mask (Ramanujan) − CSV HC|. First trimester: scans whose CSV head circumference gives a Hadlock (1984) gestational",
        f"age below 14 weeks (HC ≲ 89 mm; {numbers['first_trimester_scans']} test scans). sd is the population standard deviation.",
        "",
        "| model | DSC mean | HD mean | AD mean | DSC p25 | HD p25 | AD p25 | DSC p75 | HD p75 | AD p75 | DSC 1st trim. | HD 1st trim. | AD 1st trim. |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, table in numbers["table1"].items():
        a, f = table["all"], table["first_trimester"]
        label = records[name]["label"] + (" [clip]" if records[name].get("input") == "clip" and "clip" not in records[name]["label"].lower() else "")
        lines.append(
            f"| {label} | {pm(a['dice_pct'])} | {pm(a['hd_mm'])} | {pm(a['ad_mm'])} | {fmt(a['dice_pct']['p25'])} | {fmt(a['hd_mm']['p25'])} | {fmt(a['ad_mm']['p25'])} "
            f"| {fmt(a['dice_pct']['p75'])} | {fmt(a['hd_mm']['p75'])} | {fmt(a['ad_mm']['p75'])} | {pm(f['dice_pct'])} | {pm(f['hd_mm'])} | {pm(f['ad_mm'])} |"
        )
        paper = PAPER_TABLE1.get(name)
        if paper is not None and records[name].get("input", "2D") == "2D":
            m, p25, p75, first = paper["mean"], paper["p25"], paper["p75"], paper["first"]
            lines.append(
                f"| *Paper: {records[name]['label']}* | *{m[0]} ± {m[1]}* | *{m[2]} ± {m[3]}* | *{m[4]} ± {m[5]}* | *{p25[0]}* | *{p25[1]}* | *{p25[2]}* "
                f"| *{p75[0]}* | *{p75[1]}* | *{p75[2]}* | *{first[0]} ± {first[1]}* | *{first[2]} ± {first[3]}* | *{first[4]} ± {first[5]}* |"
            )
    empty = {n: t["empty_masks"] for n, t in numbers["table1"].items() if t["empty_masks"]}
    lines += ["", f"Empty predicted masks (left out of HD and AD): {empty if empty else 'none'}.", ""]

    lines += [
        "## Table 3: OOD detection (AUROC), best measure picked on validation, reported on test",
        "",
        "Negatives: the split's in-distribution scans; positives: one OOD set built from the same split's scans",
        "(`lfusion.ood`: elastic skull deformation = the paper's HC18 OOD samples; no head in view; gain far too high / low;",
        "acoustic shadowing), all generated at 224x224; the U-Nets get every image, in-distribution or OOD, through the same",
        "224 → 256 bilinear resize (they were trained on it too), so the resize cannot tell the sets apart. Image score: pixel mean of the map. For each path and set the individual measure",
        "(EE expected entropy, EP expected pairwise KL, PV pixel variance, MI mutual information) with the best *validation*",
        "AUROC on that set is chosen; the table gives its *test* AUROC, then the test AUROC of the intra-path calibrated map",
        "`sqrt(logit_variance) * H(mean_prob) * Var_pixels(U~)` with that measure as U~, and the inter-path fused map",
        "(L-FUSION only; U~ the best of both paths' measures on validation). Columns: D.U. Dropout U-Net, L.U. Laplace U-Net,",
        "SSN U. SSN U-Net (not in the paper's Table 3), L./D. L-FUSION's Laplacian / Dropout path. Superscript: the measure chosen.",
        "",
    ]
    headings = [h for _, _, h in TABLE3_PATHS]
    for title, key in (("2D", "table3"), ("Clip", "table3_clip")):
        if not numbers.get(key):
            continue
        lines += [f"### {title}", "", "| OOD set | " + " | ".join(f"{h} indiv." for h in headings) + " | " + " | ".join(f"{h} intra" for h in headings) + " | fused (inter) |", "|---" * (2 * len(headings) + 2) + "|"]
        for ood, row in numbers[key].items():
            cells = []
            for part, measure_key in (("individual", "measure"), ("calibrated", "calibrated_measure")):
                for h in headings:
                    cell = row.get(h) or {}
                    cells.append(f"{fmt(cell.get(part), 2)}<sup>{MEASURE_SHORT.get(cell.get(measure_key), '*')}</sup>" if cell else "–")
            fused = row.get("fused") or {}
            path, _, measure = (fused.get("auxiliary") or "").partition(".")
            aux = f"{path[0].upper()}.{MEASURE_SHORT[measure]}" if measure else "*"
            cells.append(f"{fmt(fused.get('test'), 2)}<sup>{aux}</sup>" if fused else "–")
            lines.append(f"| {ood} | " + " | ".join(cells) + " |")
        means = numbers[f"{key}_mean"]
        mean_cells = [fmt((means.get(h) or {}).get(part), 2) for part in ("individual", "calibrated") for h in headings]
        lines.append("| **mean over sets** | " + " | ".join(mean_cells) + f" | {fmt(means.get('fused'), 2)} |")
        paper = PAPER_TABLE3[title]
        lines.append(
            "| *Paper, HC18 (elastic)* | "
            + " | ".join(f"*{fmt(paper['individual'].get(h), 2)}*" for h in headings)
            + " | "
            + " | ".join(f"*{fmt(paper['intra'].get(h), 2)}*" for h in headings)
            + f" | *C-1 {paper['inter']['C-1']:.2f}, C-2 {paper['inter']['C-2']:.2f}* |"
        )
        lines.append("")
    lines += [
        "<sup>*</sup>: a record without per-auxiliary variants (the clip record): its single calibrated and fused maps as its",
        "producer defined them (auxiliary fixed before test; see that record's command).",
        "The paper marks its chosen measure with symbols (†, ∘, ∗, ◇) whose key is not in its text; they are left out.",
        "Its C-1/C-2 are two fusion variants (foundation model + Dropout head / + Dropout U-Net); ours is C-1.",
        "",
        "### AUROC of every measure on test (image score: pixel mean)",
        "",
        "| model | map | " + " | ".join(numbers["ood_sets"]) + " | mean |",
        "|---|---|" + "---|" * (len(numbers["ood_sets"]) + 1),
    ]
    for name, table in numbers["measure_tables"].items():
        for key, by_set in table.items():
            values = [by_set.get(s) for s in numbers["ood_sets"]]
            present = [v for v in values if v is not None]
            lines.append(f"| {records[name]['label']} | `{key}` | " + " | ".join(fmt(v, 3) for v in values) + f" | {fmt(float(np.mean(present)) if present else None, 3)} |")
    lines += ["", "`<path>.calibrated` and `fused` here use the auxiliary map with the best validation AUROC averaged over the sets (record field `auxiliary`)."]
    if numbers.get("clip_alignment"):
        lines += alignment_lines(numbers["clip_alignment"])
    lines += ["", "## Training time on this machine", "", "| model | input | training seconds | what is included |", "|---|---|---|---|"]
    for row in numbers["training"]:
        lines.append(f"| {row['label']} | {row['input']} | {fmt(row['seconds'], 0)} | {row['note']} |")
    if numbers.get("training_ratio") is not None:
        lines += ["", f"L-FUSION's training time is {100 * numbers['training_ratio']:.0f}% of the mean of the three U-Net baselines' (the Laplace U-Net's including its fit). Paper: {PAPER_TRAINING_CLAIM}."]
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{Path(f).stem}](figures/{Path(f).name})" for f in figures]
    lines += [
        "",
        "## Record format",
        "",
        "One JSON file per model in `models/build/results/` (`model`, `label`, `input` 2D|clip, `resolution`,",
        "`trainingSeconds`, `trainingNote`, `command`; `test`: per-scan `names`, `dice`, `iou`, `hd_mm`, `ad_mm`,",
        "`hc_truth_mm` (null where the prediction is empty); `ood.val` / `ood.test`: `{measure id: {OOD set: AUROC}}`;",
        "`scores`: the raw image-level scores). Measure ids: `<path>.<measure>|mean` with path `laplace`, `dropout` or `unet`",
        "(SSN U-Net), `<path>.calibrated@<measure>` (intra-path calibrated map with that auxiliary), `fused@<path>.<measure>`",
        "(inter-path), and the canonical `<path>.calibrated` / `fused` whose auxiliary (record field `auxiliary`) has the best",
        "mean validation AUROC. The U-Net records come from `lfusion.evaluate --record`, the clip record from `lfusion.clip_eval`.",
    ]
    lines += ["", "## Provenance", "", "| record | command | evaluation seconds |", "|---|---|---|"]
    for name, r in records.items():
        lines.append(f"| `{name}` | `{r.get('command', '')}` | {fmt(r.get('evaluationSeconds'), 0)} |")
    lines.append("")
    return "\n".join(lines)


def collect(records: Dict[str, dict]) -> dict:
    two_d = [n for n, r in records.items() if r.get("input", "2D") == "2D"]
    clip = [n for n, r in records.items() if r.get("input") == "clip"]
    any_record = records[two_d[0]] if two_d else next(iter(records.values()))
    training = training_rows(records)
    baselines = [r["seconds"] for r in training if r["model"] in ("ssn-unet", "dropout-unet", "laplace-unet") and r["seconds"]]
    lfusion = next((r["seconds"] for r in training if r["model"] == "lfusion"), None)
    return {
        "test_scans": len(any_record["test"]["dice"]),
        "first_trimester_scans": segmentation_table(any_record)["first_trimester"]["scans"],
        "table1": {name: segmentation_table(r) for name, r in records.items()},
        "table3": table3(records, two_d),
        "table3_clip": table3(records, clip) if clip else {},
        "table3_mean": table3_means(table3(records, two_d)),
        "table3_clip_mean": table3_means(table3(records, clip)) if clip else {},
        "ood_sets": ood_sets(records),
        "measure_tables": {name: measure_table(r) for name, r in records.items()},
        "measure_tables_val": {name: measure_table(r, "val") for name, r in records.items()},
        "training": training,
        "training_ratio": lfusion / float(np.mean(baselines)) if lfusion and baselines else None,
        "paper": {"table1": PAPER_TABLE1, "table3": PAPER_TABLE3, "training": PAPER_TRAINING_CLAIM},
        "commands": {name: r.get("command") for name, r in records.items()},
    }


def kept_reading(previous: str) -> str:
    """The hand-written part of an existing results.md (from ``READING_MARKER`` on), kept on regeneration."""
    start = previous.find(READING_MARKER)
    return "" if start < 0 else "\n" + previous[start:]


def kept_ood_decision(previous: str) -> str:
    """The fused OOD decision's section of an existing results.md, kept on regeneration."""
    start, end = previous.find(OOD_DECISION_BEGIN), previous.find(OOD_DECISION_END)
    return "" if start < 0 or end < 0 else "\n" + previous[start : end + len(OOD_DECISION_END)] + "\n"


def json_safe(value):
    """NaN and infinities -> None (JSON has neither), recursively."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def main(argv: Optional[Sequence[str]] = None) -> None:
    from lfusion.figures import write_figures

    parser = argparse.ArgumentParser(description="Write docs/results.md, docs/results.json and docs/figures from build/results/*.json.")
    parser.add_argument("--records", type=Path, default=Path("build/results"))
    parser.add_argument("--docs", type=Path, default=Path("../docs"))
    parser.add_argument("--alignment", type=Path, default=Path("build/results/clip-alignment.json"), help="models/tools/clip_alignment.ts output")
    parser.add_argument("--oracle-alignment", type=Path, default=Path("build/clips/alignment.json"), help="lfusion.clip_alignment output")
    args = parser.parse_args(argv)
    records = load_records(args.records)
    if not records:
        parser.error(f"no evaluation records in {args.records} (run lfusion.evaluate --record MODEL first)")
    numbers = collect(records)
    alignment = load_alignment(args.alignment, args.oracle_alignment)
    if alignment:
        numbers["clip_alignment"] = {name: {k: v for k, v in found.items() if k != "perClip"} for name, found in alignment.items()}
    figures = write_figures(args.records, args.docs / "figures")
    out = args.docs / "results.md"
    previous = out.read_text() if out.exists() else ""
    text = markdown(records, numbers, [str(f) for f in figures]) + kept_ood_decision(previous) + kept_reading(previous)
    out.write_text(text)
    (args.docs / "results.json").write_text(json.dumps(json_safe(numbers), indent=1, allow_nan=False) + "\n")
    print(json.dumps({"records": list(records), "figures": [str(f) for f in figures]}))


if __name__ == "__main__":
    main()
