"""Per-frame Dice of the 2D heads on moving frames (issue 16, item 2): how the frame path holds up on a sweep.

The 2D heads see one frame at a time. On the simulated test sweeps of ``lfusion.clips`` (each test scan under a
smoothly moving affine transform: rotation, zoom, translation and shear, areas from outside the scan black; written
raw by ``make clip-features``) every frame is encoded and segmented by the package's L-FUSION mask at its default
(m, n, k) with the SDK's draws, and scored against its own transformed mask. The still test scans at the same
224x224 resolution (the feature cache) are the reference row, so the difference is what motion, rotation and zoom
cost.

``sweep_summary`` (pure) summarises per-frame Dice; the CLI measures and writes the section of docs/results.md.

CLI: ``python -m lfusion.sweep_dice --build build --encoder checkpoints/encoder.pt --sweeps build/clips/test --docs ../docs/results.md``
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from lfusion.data import normalize
from lfusion.features import load_set
from lfusion.inference import Bundle, Draws, bundle_from_build, make_draws, run_frame, segmentation
from lfusion.manifest import DEFAULT_SAMPLING
from lfusion.metrics import dice
from lfusion.results import replace_section

BEGIN = "<!-- sweep-dice: written by lfusion.sweep_dice -->"
END = "<!-- /sweep-dice -->"
# The target for the 2D heads on the simulated sweeps (per-frame Dice, %).
TARGET_PCT = 94.0


def frame_dices(bundle: Bundle, features: np.ndarray, images: np.ndarray, masks: np.ndarray, draws: Draws) -> np.ndarray:
    """Dice of the L-FUSION mask of each frame (features float16 [N, F, g, g], images and masks uint8 [N, 224, 224])."""
    scores = np.empty(len(images))
    for i in range(len(images)):
        frame = torch.from_numpy(normalize(images[i]))[None, None]
        result = run_frame(bundle, frame, draws, features=torch.from_numpy(np.asarray(features[i : i + 1], dtype=np.float32)))
        scores[i] = dice(segmentation(result).reshape(images.shape[1:]).numpy(), masks[i] > 0)
    return scores


def sweep_summary(dices: Sequence[float], frames_per_clip: int = 1) -> Dict[str, object]:
    """Mean, median, 10th percentile, share of frames at or above 90% and the target, and (for clips) the mean per
    frame position in the clip. ``dices`` are in [0, 1], clip-major when ``frames_per_clip`` > 1."""
    values = np.asarray(dices, dtype=np.float64)
    if values.size == 0 or values.size % frames_per_clip:
        raise ValueError(f"{values.size} Dice values do not make whole clips of {frames_per_clip} frames")
    pct = 100.0 * values
    out: Dict[str, object] = {
        "frames": int(values.size),
        "mean": float(pct.mean()),
        "median": float(np.median(pct)),
        "p10": float(np.percentile(pct, 10)),
        "atLeast90": float(np.mean(pct >= 90.0)),
        "atLeastTarget": float(np.mean(pct >= TARGET_PCT)),
    }
    if frames_per_clip > 1:
        out["clips"] = int(values.size // frames_per_clip)
        out["meanByFrame"] = [float(v) for v in pct.reshape(-1, frames_per_clip).mean(axis=0)]
    return out


def section(sweeps: dict, still: dict, meta: dict) -> str:
    rows = [("simulated test sweeps (every frame)", sweeps), ("still test scans, same heads and resolution", still)]
    lines = [
        "## The 2D heads on moving frames (issue 16, item 2)",
        "",
        f"Per-frame Dice (%) of the package's L-FUSION mask at (m, n, k) = ({meta['m']}, {meta['n']}, {meta['k']}), SDK draws of seed "
        f"{meta['seed']}, 224x224, on the simulated test sweeps of `make -C models clip-features` (each test scan under a moving "
        "rotation, zoom, translation and shear; each frame scored against its own transformed mask), and on the still test scans. "
        f"Target on the sweeps: {TARGET_PCT:g}. Written by `make -C models sweep-dice` ({meta['seconds']:.0f} s, "
        f"encoder sha256 {meta['encoderSha256'][:12]}..., training augmentation `{meta['augmentation']}`).",
        "",
        "| frames | count | mean | median | 10th percentile | frames >= 90 | frames >= target |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, s in rows:
        lines.append(f"| {label} | {s['frames']} | {s['mean']:.2f} | {s['median']:.2f} | {s['p10']:.2f} | {100 * s['atLeast90']:.1f}% | {100 * s['atLeastTarget']:.1f}% |")
    by_frame = sweeps.get("meanByFrame")
    if by_frame:
        lines += ["", "Mean Dice by frame position in the sweep (0 = the sweep's first frame): " + ", ".join(f"{v:.1f}" for v in by_frame) + "."]
    return "\n".join(lines)


def load_sweeps(folder: Path, limit: Optional[int]):
    """(images, masks) uint8 [clips * frames, S, S] clip-major, and frames per clip, of a raw sweep folder."""
    index = json.loads((folder / "index.json").read_text())
    clips = index["count"] if limit is None else min(limit, index["count"])
    shape = (index["count"] * index["frames"], index["size"], index["size"])
    count = clips * index["frames"]
    images = np.fromfile(folder / "frames.u8", dtype=np.uint8).reshape(shape)[:count]
    masks = np.fromfile(folder / "masks.u8", dtype=np.uint8).reshape(shape)[:count]
    return images, masks, int(index["frames"])


@torch.no_grad()
def encode_frames(bundle: Bundle, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """float16 features, as the feature cache of the still scans holds them."""
    return np.concatenate([bundle.encoder.forward_features(torch.from_numpy(normalize(images[i : i + batch])).unsqueeze(1)).numpy().astype(np.float16) for i in range(0, len(images), batch)])


def measure(bundle: Bundle, sweeps: Path, still_cache: Path, draws: Draws, limit: Optional[int]) -> Dict[str, dict]:
    images, masks, frames_per_clip = load_sweeps(sweeps, limit)
    still = load_set(still_cache, "test")
    still_count = len(still.images) if limit is None else min(len(still.images), limit)
    return {
        "sweeps": sweep_summary(frame_dices(bundle, encode_frames(bundle, images), images, masks, draws), frames_per_clip),
        "still": sweep_summary(frame_dices(bundle, still.features[:still_count], still.images[:still_count], still.masks[:still_count], draws)),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Per-frame Dice of the 2D heads on the simulated test sweeps and the still test scans.")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--sweeps", type=Path, help="raw test sweeps (frames.u8, masks.u8, index.json; default: <build>/clips/test)")
    parser.add_argument("--limit", type=int, help="first N test clips (and N still scans) only")
    parser.add_argument("--out", type=Path, help="JSON record (default: <build>/results/sweep-dice.json)")
    parser.add_argument("--docs", type=Path, help="results.md to write the section into")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.time()
    bundle = bundle_from_build(args.build, args.encoder, args.seed)
    sampling = {key: DEFAULT_SAMPLING[key] for key in ("m", "n", "k")}
    draws = make_draws(bundle, sampling["m"], sampling["n"], sampling["k"], args.seed)
    found = measure(bundle, args.sweeps or args.build / "clips" / "test", args.build / "features", draws, args.limit)
    still_meta = json.loads((args.build / "features" / "meta.json").read_text())
    meta = {**sampling, "seed": args.seed, "seconds": time.time() - started, "limit": args.limit,
            "encoderSha256": still_meta.get("encoder_sha256", "unknown"), "augmentation": still_meta.get("augmentation", "paper")}
    record = {**found, "meta": meta}
    out = args.out or args.build / "results" / "sweep-dice.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    if args.docs:
        args.docs.write_text(replace_section(args.docs.read_text(), section(found["sweeps"], found["still"], meta), BEGIN, END))
    print(json.dumps({key: {k: v for k, v in value.items() if k != "meanByFrame"} for key, value in found.items()}))


if __name__ == "__main__":
    main()
