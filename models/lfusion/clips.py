"""HC18-clip: 16-frame simulated sweeps of the real HC18 scans, clip OOD sets and their feature cache.

As in the paper, a clip is a frame-by-frame sweep simulated from one 224x224 scan: every frame is
the scan under an affine transform (translation, rotation, isotropic scale, small shear about the
image centre) whose parameters move smoothly over the 16 frames (a random start, a linear drift
and one slow sinusoidal wobble per parameter). The mask takes the same transform (nearest
neighbour). Areas brought in from outside the scan are black, like the region outside a fan.
Clips inherit the scan's subject-level split; training clips also get one random gain and gamma
per clip (``lfusion.augment.adjust_intensity``); the sweep itself is the geometric augmentation.

Clip OOD sets (``ood-<split>-<name>``):

* ``elastic_skull``, ``no_head``, ``gain_high``, ``gain_low``, ``shadowing``: the 2D generators of
  ``lfusion.ood`` applied once to the scan, which is then swept with the same trajectory as its
  in-distribution clip: the corruption persists through the clip and moves with the anatomy
  (one elastic field, one shadow, one gain setting per clip).
* ``leaves_head``: an in-distribution scan whose sweep carries the head out of the field of view
  in mid-clip (the head is fully out from frame ``T // 2`` on).

The cache (``build/clips/features``) holds per set ``<set>.features.npy`` (float16 [N*T, F, 14, 14],
frame-major within a clip), ``<set>.images.npy`` (uint8 [N*T, 224, 224]), ``<set>.masks.npy`` for
labelled sets and ``<set>.clips.json`` (source scan and per-frame transform of every clip), in the
layout of ``lfusion.features`` so its writer and loader are reused; ``load_clip_set`` restores the
clip axis. The test clips are also written raw for the SDK side (``--raw-test``; ``--raw-val``; the test split's clip
OOD sets ``--raw-ood``, frames only, from the cache).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

from lfusion.data import Prepared, load_prepared

FRAMES = 16
CLIP_OOD_SET_NAMES = ("elastic_skull", "no_head", "gain_high", "gain_low", "shadowing", "leaves_head")
# Seed-sequence keys of the independent random streams (with the scan index).
_TRAJECTORY, _INTENSITY, _EXIT = 101, 102, 103


@dataclass(frozen=True)
class SweepConfig:
    """Ranges of the sweep parameters: start values (uniform) and total drift over the clip (uniform, +-)."""

    frames: int = FRAMES
    start_shift: float = 0.05  # fraction of the image side
    drift_shift: float = 0.08
    start_rotation_deg: float = 15.0
    drift_rotation_deg: float = 12.0
    start_log_scale: float = 0.1
    drift_log_scale: float = 0.08
    start_shear: float = 0.05
    drift_shear: float = 0.04
    wobble: float = 0.15  # sinusoid amplitude as a fraction of the drift range, 0.5-1.5 cycles per clip


@dataclass(frozen=True)
class FrameTransform:
    """One frame's sweep parameters; the forward map scan -> frame in (x, y) pixel coordinates is
    ``frame = c + shift + R(rotation) Shear(shear) scale (scan - c)``, c the image centre."""

    shift_x: float
    shift_y: float
    rotation_deg: float
    scale: float
    shear: float

    def frame_from_scan(self, size: int) -> np.ndarray:
        """2x3 affine matrix (x, y) of pixel centres: scan -> frame."""
        angle = math.radians(self.rotation_deg)
        rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        linear = rotation @ np.array([[1.0, self.shear], [0.0, 1.0]]) * self.scale
        centre = np.full(2, (size - 1) / 2)
        offset = centre + np.array([self.shift_x, self.shift_y]) - linear @ centre
        return np.concatenate([linear, offset[:, None]], axis=1)


def sweep(rng: np.random.Generator, size: int, cfg: SweepConfig = SweepConfig()) -> List[FrameTransform]:
    """A smooth random trajectory of ``cfg.frames`` transforms."""
    u = np.linspace(0.0, 1.0, cfg.frames)

    def track(start: float, drift: float) -> np.ndarray:
        cycles, phase = rng.uniform(0.5, 1.5), rng.uniform(0.0, 2 * math.pi)
        values = rng.uniform(-start, start) + rng.uniform(-drift, drift) * u
        return values + cfg.wobble * drift * (np.sin(2 * math.pi * cycles * u + phase) - math.sin(phase))

    shift_x = track(cfg.start_shift * size, cfg.drift_shift * size)
    shift_y = track(cfg.start_shift * size, cfg.drift_shift * size)
    rotation = track(cfg.start_rotation_deg, cfg.drift_rotation_deg)
    scale = np.exp(track(cfg.start_log_scale, cfg.drift_log_scale))
    shear = track(cfg.start_shear, cfg.drift_shear)
    return [FrameTransform(*(float(v) for v in values)) for values in zip(shift_x, shift_y, rotation, scale, shear)]


def exit_sweep(base: List[FrameTransform], mask: np.ndarray, rng: np.random.Generator) -> List[FrameTransform]:
    """``base`` plus a translation that carries the whole head out of view from frame T // 2 on.

    The translation grows smoothly (smoothstep) from frame T // 4 to T // 2 along a random
    direction, by enough to move the (transformed) head mask past the image border.
    """
    size, frames = mask.shape[0], len(base)
    angle = rng.uniform(0.0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    start, full = frames // 4, frames // 2
    shifted = []
    for t, transform in enumerate(base):
        frame_mask = warp(mask, transform.frame_from_scan(size), order=0)
        ys, xs = np.nonzero(frame_mask)
        # Distance along the direction for the head's trailing edge to pass the border (+ margin).
        if xs.size:
            extent = [(size - xs.min()) if direction[0] > 0 else (xs.max() + 1), (size - ys.min()) if direction[1] > 0 else (ys.max() + 1)]
            needed = min(e / abs(d) for e, d in zip(extent, direction) if abs(d) > 1e-3) + 4.0
        else:
            needed = 0.0
        progress = float(np.clip((t - start) / max(full - start, 1), 0.0, 1.0))
        amount = needed * progress * progress * (3 - 2 * progress)
        shifted.append(FrameTransform(transform.shift_x + amount * direction[0], transform.shift_y + amount * direction[1], transform.rotation_deg, transform.scale, transform.shear))
    return shifted


def resample(values: np.ndarray, frame_from_scan: np.ndarray, order: int) -> np.ndarray:
    """float32 ``values`` seen through ``frame_from_scan`` (2x3, x/y): bilinear for order 1, 0 outside."""
    linear, offset = frame_from_scan[:, :2], frame_from_scan[:, 2]
    inverse = np.linalg.inv(linear)
    swap = np.array([[0.0, 1.0], [1.0, 0.0]])  # (x, y) <-> (row, col)
    matrix = swap @ inverse @ swap
    shift = swap @ (-inverse @ offset)
    return ndimage.affine_transform(values.astype(np.float32), matrix, shift, order=order, mode="constant", cval=0.0)


def warp(image: np.ndarray, frame_from_scan: np.ndarray, order: int) -> np.ndarray:
    """The uint8 frame seen through ``frame_from_scan``, black outside."""
    return np.clip(np.rint(resample(image, frame_from_scan, order)), 0, 255).astype(np.uint8)


def _square(affine: np.ndarray) -> np.ndarray:
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def compose(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """2x3 affine ``first`` after ``second`` (x -> first(second(x)))."""
    return (_square(first) @ _square(second))[:2]


def invert(affine: np.ndarray) -> np.ndarray:
    return np.linalg.inv(_square(affine))[:2]


def render(image: np.ndarray, mask: Optional[np.ndarray], transforms: Sequence[FrameTransform]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(frames uint8 [T, H, W], masks uint8 [T, H, W] or None)."""
    size = image.shape[0]
    matrices = [t.frame_from_scan(size) for t in transforms]
    frames = np.stack([warp(image, m, 1) for m in matrices])
    masks = None if mask is None else np.stack([warp(mask, m, 0) for m in matrices])
    return frames, masks


@dataclass
class ClipBatch:
    frames: np.ndarray  # uint8 [N, T, 224, 224]
    masks: Optional[np.ndarray]  # uint8 [N, T, 224, 224]
    names: List[str]  # source scan of each clip
    transforms: List[List[FrameTransform]]


def scan_trajectory(seed: int, scan: int, size: int, cfg: SweepConfig) -> List[FrameTransform]:
    """The sweep of scan ``scan`` (shared by its in-distribution clip and its OOD clips)."""
    return sweep(np.random.default_rng([seed, _TRAJECTORY, scan]), size, cfg)


def in_distribution_clips(prepared: Prepared, indices: Sequence[int], seed: int, cfg: SweepConfig, jitter_intensity: bool) -> ClipBatch:
    from lfusion.augment import AugmentConfig, _log_uniform, adjust_intensity

    size = prepared.images.shape[1]
    frames, masks, transforms = [], [], []
    for i in indices:
        trajectory = scan_trajectory(seed, int(i), size, cfg)
        clip, clip_masks = render(prepared.images[i], prepared.masks[i], trajectory)
        if jitter_intensity:
            rng, ranges = np.random.default_rng([seed, _INTENSITY, int(i)]), AugmentConfig()
            clip = adjust_intensity(clip, _log_uniform(rng, ranges.gain_range), _log_uniform(rng, ranges.gamma_range))
        frames.append(clip)
        masks.append(clip_masks)
        transforms.append(trajectory)
    return ClipBatch(np.stack(frames), np.stack(masks), [prepared.names[i] for i in indices], transforms)


def ood_clips(prepared: Prepared, split: str, seed: int, limit: int, cfg: SweepConfig, data_root: Optional[Path]) -> Dict[str, ClipBatch]:
    """The clip OOD sets of the first ``limit`` scans of ``split`` (``no_head`` may hold fewer)."""
    from lfusion.ood import make_ood_sets

    size = prepared.images.shape[1]
    indices = prepared.indices(split)[:limit]
    corrupted = make_ood_sets(prepared, split, seed, limit=limit, data_root=data_root)
    sets = {}
    for name, images in corrupted.items():
        # make_ood_sets keeps the scan order; no_head drops scans without room for a crop, and
        # then its clips are named by number. Clip n is swept like scan indices[n].
        complete = len(images) == len(indices)
        trajectories = [scan_trajectory(seed, int(indices[n]), size, cfg) for n in range(len(images))]
        frames = [render(image, None, trajectory)[0] for image, trajectory in zip(images, trajectories)]
        names = [prepared.names[int(indices[n])] if complete else f"{name}-{split}-{n}" for n in range(len(images))]
        sets[name] = ClipBatch(np.stack(frames), None, names, trajectories)
    exits = []
    for i in indices:
        trajectory = exit_sweep(scan_trajectory(seed, int(i), size, cfg), prepared.masks[i], np.random.default_rng([seed, _EXIT, int(i)]))
        exits.append((render(prepared.images[i], None, trajectory)[0], trajectory))
    sets["leaves_head"] = ClipBatch(np.stack([c[0] for c in exits]), None, [prepared.names[i] for i in indices], [c[1] for c in exits])
    return sets


@dataclass
class ClipSet:
    features: np.ndarray  # float16 [N, T, F, g, g] (memory-mapped)
    images: np.ndarray  # uint8 [N, T, 224, 224]
    masks: Optional[np.ndarray]  # uint8 [N, T, 224, 224] or None
    names: List[str]


def load_clip_set(cache: Path, name: str) -> ClipSet:
    from lfusion.features import load_set

    flat = load_set(cache, name)
    frames = int(json.loads((cache / "meta.json").read_text())["frames"])
    clips = len(flat.images) // frames

    def fold(array):
        return None if array is None else array.reshape(clips, frames, *array.shape[1:])

    names = json.loads((cache / f"{name}.clips.json").read_text())["names"]
    return ClipSet(fold(flat.features), fold(flat.images), fold(flat.masks), names)


def mask_targets(masks: np.ndarray, output_size: int) -> np.ndarray:
    """uint8 [B, T, H, W] -> float32 {0, 1} [B, T * S * S]: the fraction of each S-grid cell inside the head, >= 0.5."""
    clips, frames, size = masks.shape[0], masks.shape[1], masks.shape[-1]
    factor = size // output_size
    cells = masks.reshape(clips, frames, output_size, factor, output_size, factor).mean(axis=(3, 5), dtype=np.float32)
    return (cells >= 0.5).astype(np.float32).reshape(clips, -1)


def clip_batch_tensors(data: ClipSet, index: np.ndarray, output_size: Optional[int] = None):
    """(features float32 [B, T, F, g, g], frames [B, T, 1, 224, 224] normalised, masks [B, L] or None),
    L = T * S * S frame-major at the clip heads' output size S."""
    import torch

    from lfusion.data import normalize
    from lfusion.heads3d import ClipHeadConfig

    index = np.sort(index)
    features = torch.from_numpy(np.asarray(data.features[index], dtype=np.float32))
    frames = torch.from_numpy(normalize(data.images[index])).unsqueeze(2)
    size = output_size or ClipHeadConfig().output_size
    masks = None if data.masks is None else torch.from_numpy(mask_targets(data.masks[index], size))
    return features, frames, masks


def clip_access():
    """The ``DataAccess`` (lfusion.features) of the clip cache."""
    from lfusion.features import DataAccess

    return DataAccess(load_clip_set, clip_batch_tensors)


def transforms_json(batch: ClipBatch, size: int) -> List[List[dict]]:
    return [[asdict(t) | {"frameFromScan": t.frame_from_scan(size).round(6).tolist()} for t in clip] for clip in batch.transforms]


def write_clip_set(out: Path, name: str, encoder, batch: ClipBatch) -> None:
    from lfusion.features import write_set

    clips, frames = batch.frames.shape[:2]
    flat_masks = None if batch.masks is None else batch.masks.reshape(clips * frames, *batch.masks.shape[2:])
    write_set(out, name, encoder, batch.frames.reshape(clips * frames, *batch.frames.shape[2:]), flat_masks)
    size = batch.frames.shape[-1]
    (out / f"{name}.clips.json").write_text(json.dumps({"count": clips, "frames": frames, "names": batch.names, "transforms": transforms_json(batch, size)}) + "\n")


def write_raw(folder: Path, batch: ClipBatch) -> dict:
    """frames.u8 / masks.u8 (uint8 [N, T, 224, 224], C order) and index.json, for the SDK side."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "frames.u8").write_bytes(np.ascontiguousarray(batch.frames).tobytes())
    (folder / "masks.u8").write_bytes(np.ascontiguousarray(batch.masks).tobytes())
    clips, frames, size = batch.frames.shape[:3]
    index = {
        "count": int(clips),
        "frames": int(frames),
        "size": int(size),
        "layout": "uint8 [count, frames, size, size], C order; masks 0/1",
        "names": batch.names,
        "transforms": transforms_json(batch, int(size)),
        "transformNote": "frameFromScan: 2x3 affine of pixel centres (x, y), source 224x224 scan -> frame; params as in lfusion.clips.FrameTransform",
    }
    (folder / "index.json").write_text(json.dumps(index) + "\n")
    return index


def write_raw_ood(cache: Path, folder: Path, split: str = "test") -> List[str]:
    """The cached clip OOD sets of ``split`` raw for the SDK side: ``folder/ood-<split>-<name>/`` with frames.u8 (uint8
    [N, T, 224, 224]) and index.json, as ``write_raw`` without masks; sets already there are kept. Returns the set names."""
    names = []
    for name in CLIP_OOD_SET_NAMES:
        target = folder / f"ood-{split}-{name}"
        names.append(target.name)
        if (target / "index.json").exists():
            continue
        meta = json.loads((cache / f"{target.name}.clips.json").read_text())
        images = np.load(cache / f"{target.name}.images.npy", mmap_mode="r")
        count = int(meta["count"])
        target.mkdir(parents=True, exist_ok=True)
        (target / "frames.u8").write_bytes(np.ascontiguousarray(images).tobytes())
        size = int(images.shape[-1])
        index = {"count": count, "frames": int(images.shape[0]) // count, "size": size, "layout": "uint8 [count, frames, size, size], C order", "names": meta["names"]}
        (target / "index.json").write_text(json.dumps(index) + "\n")
    return names


def build_clip_cache(prepared_path: Path, checkpoint: Optional[Path], out: Path, train_clips: int, ood_clips_per_set: int, seed: int, hc18: Optional[Path], raw_test: Optional[Path], raw_val: Optional[Path] = None, raw_ood: Optional[Path] = None) -> dict:
    """Writes every set not yet in ``out`` (resumable), then meta.json; the val and test sweeps (and the test OOD sets)
    also raw where asked and missing."""
    from lfusion.features import load_encoder_or_random

    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    prepared = load_prepared(prepared_path)
    encoder, encoder_sha = load_encoder_or_random(checkpoint, seed)
    meta_path = out / "meta.json"
    previous = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    if previous.get("encoder_sha256") not in (None, encoder_sha):
        raise ValueError(f"{out} was built with another encoder ({previous['encoder_sha256']}): use a fresh folder")
    cfg = SweepConfig()
    train_index = prepared.indices("train")
    train_index = np.sort(np.random.default_rng([seed, _TRAJECTORY]).permutation(train_index)[:train_clips])
    jobs = [("train", lambda: in_distribution_clips(prepared, train_index, seed, cfg, jitter_intensity=True))]
    jobs += [(split, lambda s=split: in_distribution_clips(prepared, prepared.indices(s), seed + 1, cfg, jitter_intensity=False)) for split in ("val", "test")]
    counts, ood_names = {}, {}
    raw = {"val": raw_val, "test": raw_test}
    for name, make in jobs:
        cached = (out / f"{name}.clips.json").exists()
        raw_folder = raw.get(name)
        wants_raw = raw_folder is not None and not (raw_folder / "index.json").exists()
        if not cached or wants_raw:
            batch = make()
            if not cached:
                write_clip_set(out, name, encoder, batch)
            if wants_raw:
                write_raw(raw_folder, batch)
            print(json.dumps({"set": name, "clips": len(batch.names), "seconds": round(time.time() - started, 1)}), flush=True)
        counts[name] = json.loads((out / f"{name}.clips.json").read_text())["count"]
    for split in ("val", "test"):
        ood_names[split] = list(CLIP_OOD_SET_NAMES)
        if all((out / f"ood-{split}-{name}.clips.json").exists() for name in CLIP_OOD_SET_NAMES):
            continue
        for name, batch in ood_clips(prepared, split, seed + 1, ood_clips_per_set, cfg, hc18).items():
            write_clip_set(out, f"ood-{split}-{name}", encoder, batch)
            print(json.dumps({"set": f"ood-{split}-{name}", "clips": len(batch.names), "seconds": round(time.time() - started, 1)}), flush=True)
    for split in ("val", "test"):
        for name in CLIP_OOD_SET_NAMES:
            counts[f"ood-{split}-{name}"] = json.loads((out / f"ood-{split}-{name}.clips.json").read_text())["count"]
    if raw_ood is not None:
        write_raw_ood(out, raw_ood)
    meta = {
        "frames": cfg.frames,
        "sweep": asdict(cfg),
        "encoder_checkpoint": str(checkpoint) if checkpoint else None,
        "encoder_sha256": encoder_sha,
        "seed": seed,
        "train_count": counts["train"],
        "counts": counts,
        "ood": ood_names,
        "seconds": round(time.time() - started + previous.get("seconds", 0.0), 1),
    }
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: Optional[Sequence[str]] = None) -> None:
    import torch

    parser = argparse.ArgumentParser(description="Simulate HC18 sweep clips and clip OOD sets, and cache their frozen-encoder features.")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true", help="use a randomly initialised encoder (development)")
    parser.add_argument("--out", type=Path, default=Path("build/clips/features"))
    parser.add_argument("--raw-test", type=Path, default=Path("build/clips/test"), help="also write the test clips raw here (frames.u8, masks.u8, index.json)")
    parser.add_argument("--raw-val", type=Path, help="also write the validation clips raw here (the clip biometry's calibration sweeps)")
    parser.add_argument("--raw-ood", type=Path, help="also write the test split's clip OOD sets raw here, one folder per set (the clip OOD decision's evaluation)")
    parser.add_argument("--train-clips", type=int, default=570, help="training clips (one per training scan, at most)")
    parser.add_argument("--ood-clips", type=int, default=40, help="clips per OOD set and split")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--hc18", type=Path, default=Path("../../shared/data/hc18"), help="HC18 folder (no-head crops at original resolution); skipped if absent")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = None if args.random_encoder else args.encoder
    if checkpoint is not None and not checkpoint.exists():
        parser.error(f"encoder checkpoint {checkpoint} not found")
    hc18 = args.hc18 if (args.hc18 / "training_set").is_dir() else None
    print(json.dumps(build_clip_cache(args.prepared, checkpoint, args.out, args.train_clips, args.ood_clips, args.seed, hc18, args.raw_test, args.raw_val, args.raw_ood), indent=1))


if __name__ == "__main__":
    main()
