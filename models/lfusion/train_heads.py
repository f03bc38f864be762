"""Trains the Laplacian (SSN) head or the Dropout head on cached frozen features.

* Laplacian head: the SSN Monte-Carlo loss, -log (1/n) sum_s p(y | eta_s) with n logit samples
  of the low-rank Gaussian (a logsumexp over samples), per pixel.
* Dropout head: binary cross-entropy (+ ``--dice-weight`` x soft Dice loss) with random channel
  masks, the same forward as at inference.

The same loop trains the clip heads (``--architecture clip``: ``lfusion.heads3d`` on the clip
cache of ``lfusion.clips``); a ``DataAccess`` (``lfusion.features``) says how a cache's sets are loaded
and batched.

Seeded, time-budgeted and resumable: the full state (weights, optimiser, epoch, best score,
patience) is written to ``<out>/<head>.state.pt`` after each epoch and picked up with
``--resume``; the best weights by validation Dice go to ``<out>/<head>.pt``. Early stopping
after ``--patience`` epochs without improvement.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lfusion.features import FRAMES, DataAccess, FeatureSet
from lfusion.heads import DropoutHead, HeadConfig, LaplaceHead, config_from_dict, random_masks
from lfusion.measures import laplace_logit_samples
from lfusion.metrics import dice, first_trimester

HEAD_KINDS = ("laplace", "dropout")


@dataclass
class TrainConfig:
    head: str = "laplace"
    epochs: int = 30
    batch: int = 16
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ssn_samples: int = 10
    dice_weight: float = 0.5
    patience: int = 4
    minutes: float = 20.0
    seed: int = 18
    # Each first-trimester training image (metrics.first_trimester of its reference HC) is seen this many
    # times per epoch (issue 16, item 3: small heads); 1 keeps the plain shuffled epoch.
    small_head_repeats: int = 1


def ssn_loss(logit_mean, cov_factor, cov_diag, target: torch.Tensor, samples: int, generator: torch.Generator) -> torch.Tensor:
    """Per-pixel SSN Monte-Carlo negative log-likelihood, averaged over the batch."""
    batch, rank, pixels = cov_factor.shape
    factor_noise = torch.randn(batch, samples, rank, generator=generator)
    diag_noise = torch.randn(batch, samples, pixels, generator=generator)
    eta = laplace_logit_samples(logit_mean, cov_factor, cov_diag, factor_noise, diag_noise).reshape(batch, samples, pixels)
    log_lik = -F.binary_cross_entropy_with_logits(eta, target[:, None, :].expand_as(eta), reduction="none").sum(-1)
    return -(torch.logsumexp(log_lik, dim=1) - math.log(samples)).mean() / pixels


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    probs = torch.sigmoid(logits)
    overlap = (probs * target).sum(-1)
    return (1.0 - (2.0 * overlap + 1.0) / (probs.sum(-1) + target.sum(-1) + 1.0)).mean()


def make_head(kind: str, cfg: HeadConfig, seed: int):
    if kind == "laplace":
        return LaplaceHead(cfg, seed)
    if kind == "dropout":
        return DropoutHead(cfg, seed)
    raise ValueError(f"unknown head {kind!r}, expected one of {HEAD_KINDS}")


def head_loss(head, kind: str, cfg: TrainConfig, features, image, mask, generator) -> torch.Tensor:
    if kind == "laplace":
        return ssn_loss(*head(features, image), mask, cfg.ssn_samples, generator)
    layers = head.cfg.training_layers
    logits = head(features, image, random_masks(len(features), head.cfg, generator, layers), layers=layers)
    return F.binary_cross_entropy_with_logits(logits, mask) + cfg.dice_weight * soft_dice_loss(logits, mask)


@torch.no_grad()
def map_logits(head, features, image) -> torch.Tensor:
    """Deterministic logits: the Laplacian head's mean, the Dropout head with all channels kept."""
    if isinstance(head, LaplaceHead):
        return head(features, image)[0]
    return head(features, image, torch.ones(len(features), head.cfg.mask_count))


def validation_dice(head, data: FeatureSet, batch: int = 16, access: DataAccess = FRAMES) -> float:
    scores = []
    for start in range(0, len(data.images), batch):
        index = np.arange(start, min(start + batch, len(data.images)))
        features, image, mask = access.batch(data, index)
        pred = (map_logits(head, features, image) > 0).numpy()
        scores += [dice(p, t) for p, t in zip(pred, mask.numpy())]
    return float(np.mean(scores))


def epoch_pool(cache: Path, count: int, small_head_repeats: int) -> Optional[np.ndarray]:
    """The training indices one epoch shuffles: every image once plus ``small_head_repeats - 1`` more
    copies of each first-trimester image (None for 1: the plain permutation, unchanged)."""
    if small_head_repeats == 1:
        return None
    if small_head_repeats < 1:
        raise ValueError(f"small_head_repeats must be >= 1, got {small_head_repeats}")
    hc_path = cache / "train.hc_mm.npy"
    if not hc_path.exists():
        raise FileNotFoundError(f"{hc_path} is missing: rebuild the feature cache (lfusion.features) to oversample small heads")
    hc_mm = np.load(hc_path)
    if len(hc_mm) != count:
        raise ValueError(f"{hc_path} has {len(hc_mm)} values for {count} training images")
    small = np.flatnonzero(first_trimester(hc_mm))
    return np.concatenate([np.arange(count)] + [small] * (small_head_repeats - 1))


def save_head(head, path: Path, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": "laplace" if isinstance(head, LaplaceHead) else "dropout", "config": head.cfg.to_dict(), "state_dict": head.state_dict(), **extra}, path)


def load_head(path: Path):
    checkpoint = torch.load(str(path), map_location="cpu")
    head = make_head(checkpoint["kind"], config_from_dict(checkpoint["config"]), seed=0)
    head.load_state_dict(checkpoint["state_dict"])
    return head, checkpoint


def train(cache: Path, out: Path, cfg: TrainConfig, head_cfg: HeadConfig, resume: bool, access: DataAccess = FRAMES) -> Dict[str, object]:
    train_set, val_set = access.load(cache, "train"), access.load(cache, "val")
    head_cfg.feature_channels = int(train_set.features.shape[-3])
    state_path, best_path = out / f"{cfg.head}.state.pt", out / f"{cfg.head}.pt"
    torch.manual_seed(cfg.seed)
    head = make_head(cfg.head, head_cfg, cfg.seed)
    optimiser = torch.optim.AdamW(head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=cfg.epochs)
    cache_id = hashlib.sha256((cache / "meta.json").read_bytes()).hexdigest()
    progress = {"epoch": 0, "best_dice": -1.0, "best_epoch": -1, "stale": 0, "seconds": 0.0, "history": [], "cache_id": cache_id}
    state = torch.load(str(state_path), map_location="cpu") if resume and state_path.exists() else None
    if state is not None and state["progress"].get("cache_id") != cache_id:
        print(f"{state_path} was trained on another feature cache: starting afresh", flush=True)
        state = None
    if state is not None:
        head.load_state_dict(state["head"])
        optimiser.load_state_dict(state["optimiser"])
        schedule.load_state_dict(state["schedule"])
        progress = state["progress"]
    started = time.time() - progress["seconds"]
    count = len(train_set.images)
    pool = epoch_pool(cache, count, cfg.small_head_repeats)
    while progress["epoch"] < cfg.epochs and progress["stale"] < cfg.patience:
        if (time.time() - started) / 60.0 > cfg.minutes:
            progress["stopped"] = "time budget"
            break
        epoch = progress["epoch"]
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        order = torch.randperm(count, generator=generator).numpy() if pool is None else pool[torch.randperm(len(pool), generator=generator).numpy()]
        head.train()
        losses = []
        for start in range(0, len(order) - cfg.batch + 1, cfg.batch):
            features, image, mask = access.batch(train_set, order[start : start + cfg.batch])
            loss = head_loss(head, cfg.head, cfg, features, image, mask, generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss))
        schedule.step()
        head.eval()
        score = validation_dice(head, val_set, cfg.batch, access)
        progress["epoch"] = epoch + 1
        progress["history"].append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_dice": score, "seconds": round(time.time() - started, 1)})
        if score > progress["best_dice"]:
            progress.update(best_dice=score, best_epoch=epoch + 1, stale=0)
            save_head(head, best_path, {"val_dice": score, "epoch": epoch + 1, "train_config": asdict(cfg)})
        else:
            progress["stale"] += 1
        progress["seconds"] = time.time() - started
        torch.save({"head": head.state_dict(), "optimiser": optimiser.state_dict(), "schedule": schedule.state_dict(), "progress": progress}, state_path)
        print(json.dumps(progress["history"][-1]), flush=True)
    return progress


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Train an L-FUSION head on cached frozen features.")
    parser.add_argument("--head", choices=HEAD_KINDS, required=True)
    parser.add_argument("--architecture", choices=("2d", "clip"), default="2d", help="clip: the 3D heads on the clip cache (lfusion.clips)")
    parser.add_argument("--cache", type=Path, default=None, help="default build/features (2d) or build/clips/features (clip)")
    parser.add_argument("--out", type=Path, default=None, help="default build/heads (2d) or build/clips/heads (clip)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    defaults = TrainConfig()
    for name in ("epochs", "batch", "lr", "weight_decay", "ssn_samples", "dice_weight", "patience", "minutes", "seed", "small_head_repeats"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(defaults, name)), default=getattr(defaults, name))
    head_defaults = HeadConfig()
    parser.add_argument("--rank", type=int, default=head_defaults.rank)
    parser.add_argument("--dropout-rate", type=float, default=head_defaults.dropout_rate)
    parser.add_argument("--dropout-after", default=",".join(head_defaults.dropout_after), help="2d: the layers the Dropout head drops channels after, in training and at inference (its masks), comma-separated (block1..block4, stem, fuse)")
    parser.add_argument("--training-dropout-after", default="", help="2d: layers dropped in training only (kept whole at inference), comma-separated")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = TrainConfig(**{name: getattr(args, name) for name in asdict(defaults)})
    clip = args.architecture == "clip"
    if clip:
        from lfusion.clips import clip_access
        from lfusion.heads3d import ClipHeadConfig

        head_cfg, access = ClipHeadConfig(rank=args.rank, dropout_rate=args.dropout_rate), clip_access()
    else:
        head_cfg, access = HeadConfig(rank=args.rank, dropout_rate=args.dropout_rate, dropout_after=tuple(args.dropout_after.split(",")), training_dropout_after=tuple(filter(None, args.training_dropout_after.split(",")))), FRAMES
    args.cache = args.cache or Path("build/clips/features" if clip else "build/features")
    args.out = args.out or Path("build/clips/heads" if clip else "build/heads")
    args.out.mkdir(parents=True, exist_ok=True)
    progress = train(args.cache, args.out, cfg, head_cfg, args.resume, access)
    summary = {key: progress[key] for key in ("epoch", "best_dice", "best_epoch", "seconds")} | {"stopped": progress.get("stopped", "done")}
    (args.out / f"{cfg.head}.summary.json").write_text(json.dumps(summary | {"history": progress["history"]}, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
