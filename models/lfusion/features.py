"""Frozen-encoder feature cache, so head training never reruns the encoder per epoch.

For each set the cache holds ``<set>.features.npy`` (float16 [N, F, 14, 14]),
``<set>.images.npy`` (uint8 [N, 224, 224], the exact encoder input before normalisation) and,
for labelled sets, ``<set>.masks.npy`` (uint8 {0,1}). Sets:

* ``train``: every training scan plus ``--augmented-copies`` seeded augmentations of each,
* ``val``, ``test``: the scans of those splits,
* ``ood-<split>-<name>``: the OOD sets of ``lfusion.ood.make_ood_sets`` for val and test.

``meta.json`` records the encoder checkpoint's SHA-256, so a cache built from another encoder
is never reused silently. A ``DataAccess`` says how a cache's sets are loaded and batched for the
heads: ``FRAMES`` for this cache, ``lfusion.clips.clip_access()`` for the clip cache.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np
import torch

from lfusion.data import Prepared, load_prepared, normalize


@dataclass
class FeatureSet:
    features: np.ndarray  # float16 [N, F, g, g] (memory-mapped)
    images: np.ndarray  # uint8 [N, 224, 224]
    masks: Optional[np.ndarray]  # uint8 [N, 224, 224] or None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: Path) -> Optional[dict]:
    return json.loads(path.read_text()) if path.exists() else None


def image_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 224, 224] -> normalised float32 [N, 1, 224, 224]."""
    return torch.from_numpy(normalize(images)).unsqueeze(1)


@torch.no_grad()
def encode(encoder: torch.nn.Module, images: np.ndarray, batch: int = 16) -> np.ndarray:
    chunks = [encoder.forward_features(image_tensor(images[i : i + batch])).half().numpy() for i in range(0, len(images), batch)]
    return np.concatenate(chunks)


def training_images(prepared: Prepared, copies: int, seed: int, augmentation: str = "paper"):
    """Originals followed by ``copies`` augmented versions of each training scan (``lfusion.augment.AUGMENTATIONS``)."""
    from lfusion.augment import AUGMENTATIONS, augment

    index = prepared.indices("train")
    images, masks = [prepared.images[index]], [prepared.masks[index]]
    rng = np.random.default_rng(seed)
    for _ in range(copies):
        pairs = [augment(prepared.images[i], prepared.masks[i], rng, AUGMENTATIONS[augmentation]) for i in index]
        images.append(np.stack([p[0] for p in pairs]))
        masks.append(np.stack([p[1] for p in pairs]))
    return np.concatenate(images), np.concatenate(masks)


def write_training_hc(out: Path, prepared: Prepared, copies: int) -> None:
    """``train.hc_mm.npy``: the reference HC of each training image, in ``training_images``' order
    (read by ``lfusion.train_heads`` to oversample small heads)."""
    np.save(out / "train.hc_mm.npy", np.tile(prepared.hc_mm[prepared.indices("train")], copies + 1))


def write_set(out: Path, name: str, encoder, images: np.ndarray, masks: Optional[np.ndarray]) -> None:
    np.save(out / f"{name}.features.npy", encode(encoder, images))
    np.save(out / f"{name}.images.npy", images)
    if masks is not None:
        np.save(out / f"{name}.masks.npy", masks)


def load_set(cache: Path, name: str) -> FeatureSet:
    masks_path = cache / f"{name}.masks.npy"
    return FeatureSet(
        features=np.load(cache / f"{name}.features.npy", mmap_mode="r"),
        images=np.load(cache / f"{name}.images.npy"),
        masks=np.load(masks_path) if masks_path.exists() else None,
    )


def batch_tensors(data: FeatureSet, index: np.ndarray):
    """(features float32 [B,F,g,g], normalised image [B,1,224,224], mask float32 [B, HW] or None)."""
    index = np.sort(index)
    features = torch.from_numpy(np.asarray(data.features[index], dtype=np.float32))
    image = torch.from_numpy(normalize(data.images[index])).unsqueeze(1)
    mask = None if data.masks is None else torch.from_numpy(data.masks[index].reshape(len(index), -1).astype(np.float32))
    return features, image, mask


@dataclass(frozen=True)
class DataAccess:
    """How a feature cache's sets are read: ``load(cache, set name)`` and ``batch(set, indices)`` ->
    (features, normalised image(s), mask [B, pixels] or None), as the heads take them."""

    load: Callable[[Path, str], Any]
    batch: Callable[[Any, np.ndarray], tuple]


FRAMES = DataAccess(load_set, batch_tensors)


def ood_set_names(cache: Path, split: str) -> Dict[str, str]:
    """{ood name: cache set name} for the OOD sets of ``split`` in the cache."""
    meta = json.loads((cache / "meta.json").read_text())
    return {name: f"ood-{split}-{name}" for name in meta["ood"][split]}


def load_encoder_or_random(checkpoint: Optional[Path], seed: int):
    from lfusion.encoder import EncoderConfig, USFMEncoder, freeze, load_encoder

    if checkpoint is not None:
        return load_encoder(checkpoint)[0], sha256_of(checkpoint)
    torch.manual_seed(seed)
    return freeze(USFMEncoder(EncoderConfig())), "random-init"


def build_cache(prepared_path: Path, checkpoint: Optional[Path], out: Path, copies: int, seed: int, ood_splits: Sequence[str], hc18: Optional[Path], augmentation: str = "paper") -> dict:
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    prepared = load_prepared(prepared_path)
    encoder, encoder_sha = load_encoder_or_random(checkpoint, seed)
    images, masks = training_images(prepared, copies, seed, augmentation)
    write_set(out, "train", encoder, images, masks)
    write_training_hc(out, prepared, copies)
    for split in ("val", "test"):
        index = prepared.indices(split)
        write_set(out, split, encoder, prepared.images[index], prepared.masks[index])
    ood_names = {}
    for split in ood_splits:
        from lfusion.ood import make_ood_sets

        sets = make_ood_sets(prepared, split, seed, data_root=hc18)
        ood_names[split] = sorted(sets)
        for name, ood_images in sets.items():
            write_set(out, f"ood-{split}-{name}", encoder, ood_images, None)
    meta = {
        "encoder_checkpoint": str(checkpoint) if checkpoint else None,
        "encoder_sha256": encoder_sha,
        "encoder_config": encoder.cfg.__dict__ | {"feature_blocks": list(encoder.cfg.feature_blocks)},
        "augmented_copies": copies,
        "augmentation": augmentation,
        "seed": seed,
        "train_count": int(len(images)),
        "ood": ood_names,
        "ood_no_head_source": "original-resolution scans" if hc18 else "224x224 scans",
        "seconds": round(time.time() - started, 1),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    return meta


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Cache frozen-encoder features for head training and calibration.")
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--encoder", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--random-encoder", action="store_true", help="use a randomly initialised encoder (development)")
    parser.add_argument("--out", type=Path, default=Path("build/features"))
    parser.add_argument("--augmented-copies", type=int, default=2)
    parser.add_argument("--augmentation", choices=("paper", "sweep"), default="paper", help="of the augmented copies: the paper's, or real sweeps' (lfusion.augment.SWEEP)")
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument("--ood-splits", nargs="*", default=["val", "test"])
    parser.add_argument("--hc18", type=Path, default=Path("../../shared/data/hc18"), help="HC18 folder (no-head OOD crops at original resolution); skipped if absent")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint = None if args.random_encoder else args.encoder
    if checkpoint is not None and not checkpoint.exists():
        parser.error(f"encoder checkpoint {checkpoint} not found (pretrain first, or pass --random-encoder)")
    hc18 = args.hc18 if (args.hc18 / "training_set").is_dir() else None
    print(json.dumps(build_cache(args.prepared, checkpoint, args.out, args.augmented_copies, args.seed, args.ood_splits, hc18, args.augmentation), indent=1))


if __name__ == "__main__":
    main()
