"""How much aligning a sweep can help the 3D head: the oracle bound for issue 6, item 3.

The SDK's ``alignFrames`` estimates each frame's transform to a reference frame. Here the TRUE
transforms of the simulated test sweeps (``lfusion.clips``) align every frame to frame 0's pose
(frame 0 <- scan <- frame t); the aligned clip is encoded and run through the clip heads exactly as
``lfusion.clip_eval`` runs them (same draws), and each path's probabilities are mapped back onto the
original frame t (frame t <- frame 0, bilinear) before the 0.5 threshold, so both runs are scored
against the same masks with the same code. An aligned frame loses what frame 0 does not see (black).
A real aligner can at best match the aligned run. Writes ``build/clips/alignment.json``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch

from lfusion.clip_eval import PATHS, clip_draws, fused_probability
from lfusion.clips import compose, invert, load_clip_set, resample, warp
from lfusion.data import normalize
from lfusion.inference import Bundle, clip_bundle_from_build, run_frame
from lfusion.manifest import CLIP_SAMPLING
from lfusion.metrics import dice, resize_probabilities


def clip_probabilities(bundle: Bundle, frames_u8: np.ndarray, draws, features: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """{path: mean probability [T, S, S]} of one clip (features computed when not given)."""
    frames = torch.from_numpy(normalize(frames_u8)).unsqueeze(1)
    cached = None if features is None else torch.from_numpy(np.asarray(features, dtype=np.float32))
    result = run_frame(bundle, frames, draws, 1.0, features=cached)
    size = bundle.laplace.cfg.output_size
    return {path: result[path]["mean_prob"].reshape(-1, size, size).numpy() for path in PATHS}


def frame_dice(probs: Dict[str, np.ndarray], masks: np.ndarray, back: Optional[Sequence[np.ndarray]]) -> Dict[str, list]:
    """Per-frame Dice per path; ``back[t]`` maps the aligned pose onto frame t (None: not aligned)."""
    out = {}
    for path, prob in {"lfusion": fused_probability(probs), **probs}.items():
        scores = []
        for t, mask in enumerate(masks):
            full = resize_probabilities(prob[t], mask.shape)
            if back is not None:
                full = resample(full, back[t], order=1)
            scores.append(dice(full > 0.5, mask))
        out[path] = scores
    return out


def compare(bundle: Bundle, cache: Path, raw_index: Path, sampling: Dict[str, int], seed: int, limit: Optional[int]) -> dict:
    started = time.time()
    data = load_clip_set(cache, "test")
    transforms = json.loads(raw_index.read_text())["transforms"]
    count = len(data.images) if limit is None else min(limit, len(data.images))
    draws = clip_draws(bundle, sampling, seed, data.images.shape[1])
    runs: Dict[str, Dict[str, list]] = {"unaligned": {}, "oracle_aligned": {}}
    for c in range(count):
        matrices = [np.array(t["frameFromScan"]) for t in transforms[c]]
        to_first = [compose(matrices[0], invert(m)) for m in matrices]  # frame t -> frame 0
        aligned = np.stack([warp(frame, matrix, order=1) for frame, matrix in zip(data.images[c], to_first)])
        scored = {
            "unaligned": frame_dice(clip_probabilities(bundle, data.images[c], draws, data.features[c]), data.masks[c], None),
            "oracle_aligned": frame_dice(clip_probabilities(bundle, aligned, draws), data.masks[c], [invert(m) for m in to_first]),
        }
        for run, by_path in scored.items():
            for path, scores in by_path.items():
                runs[run].setdefault(path, []).extend(scores)
    return {
        "clips": count,
        "frames": count * data.images.shape[1],
        "note": f"per-frame Dice at 224 x 224 (probabilities resized, aligned ones mapped back onto each frame); m, n, k = {sampling['m']}, {sampling['n']}, {sampling['k']}, SDK draws of seed {seed}",
        "diceMean": {run: {path: float(np.mean(s)) for path, s in by_path.items()} for run, by_path in runs.items()},
        "diceMedian": {run: {path: float(np.median(s)) for path, s in by_path.items()} for run, by_path in runs.items()},
        "seconds": round(time.time() - started, 1),
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Clip-head Dice on test sweeps aligned with their true transforms vs unaligned.")
    parser.add_argument("--build", type=Path, default=Path("build"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--limit", type=int, default=None, help="at most this many test clips")
    parser.add_argument("--seed", type=int, default=18)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    bundle = clip_bundle_from_build(args.build, args.encoder, args.seed)
    if bundle is None:
        parser.error(f"no trained clip heads under {args.build / 'clips'}")
    sampling = {k: CLIP_SAMPLING[k] for k in ("m", "n", "k")}
    result = compare(bundle, args.build / "clips" / "features", args.build / "clips" / "test" / "index.json", sampling, args.seed, args.limit)
    (args.build / "clips" / "alignment.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
