"""Trains the paper's U-Net baselines at 256x256 on the L-FUSION split, under one wall-clock budget.

* ``--model ssn``: SSN U-Net (``unet.SSNUNet``), SSN Monte-Carlo loss (``train_heads.ssn_loss``).
* ``--model dropout``: Dropout U-Net (``unet.DropoutUNet``), BCE + ``dice_weight`` x soft Dice with
  random channel masks (the Dropout head's loss).
* ``--model laplace``: Laplace U-Net, fitted post hoc on the trained SSN U-Net: diagonal GGN over
  the trunk and mean branch on the training scans (``ggn.ggn_diagonal``), prior precision by the
  Laplacian head's criterion (``laplace.choose_prior_precision`` on the validation NLL of the MC
  predictive). Its training time is the SSN U-Net's plus this fit.

Inputs: every U-Net input is the 224x224 cache image (``build/hc18``) resized to 256x256 (PIL
bilinear, ``to_unet_input``), for training, validation, test and the OOD sets alike (those are
generated at 224 by ``lfusion.ood``), so in-distribution and OOD scans take the same path and the
U-Nets see the same pixels as L-FUSION's encoder. Training masks are the annotation ellipses
rasterised at 256 (no mask interpolation). Augmentation: ``augment.augment`` (the paper's linear
transforms and crops up to 80%) on a fresh draw for two thirds of the scans each epoch, the share
of augmented copies in L-FUSION's feature cache (originals + 2 copies). Learning rate: cosine decay
over the wall-clock budget (the number of epochs that fit is not known in advance on a shared CPU).
Early stopping on validation Dice (MAP prediction at 256), best weights kept.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lfusion.augment import augment
from lfusion.data import load_prepared, load_scan, ellipse_mask, normalize, resize_image
from lfusion.ggn import ggn_diagonal
from lfusion.heads import random_masks
from lfusion.laplace import LaplaceConfig, choose_prior_precision, posterior_std, sample_weights
from lfusion.measures import ENTROPY_EPS, clamp_prob, laplace_logit_samples
from lfusion.metrics import dice
from lfusion.train_heads import soft_dice_loss, ssn_loss
from lfusion.unet import UNET_SIZE, DropoutUNet, SSNUNet, UNetConfig

TRAINED_KINDS = ("ssn", "dropout")


@dataclass
class BaselineConfig:
    model: str = "ssn"
    minutes: float = 15.0
    max_epochs: int = 60
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ssn_samples: int = 10
    dice_weight: float = 0.5
    augment_share: float = 2.0 / 3.0
    patience: int = 4
    seed: int = 18
    limit: Optional[int] = None  # first N training scans (smoke runs)


def to_unet_input(images224: np.ndarray) -> np.ndarray:
    """uint8 [N, 224, 224] -> uint8 [N, 256, 256]: the one resize every U-Net input takes."""
    return np.stack([resize_image(image, UNET_SIZE) for image in images224])


def image_batch(images256: np.ndarray) -> torch.Tensor:
    """uint8 [B, 256, 256] -> normalised float32 [B, 1, 256, 256] (L-FUSION's normalisation)."""
    return torch.from_numpy(normalize(images256)).unsqueeze(1)


def split_data(prepared_path: Path, hc18: Path, split: str, out: Path) -> Dict[str, np.ndarray]:
    """{"images": uint8 [N,256,256], "masks": uint8 [N,256,256]} of one split, cached in ``out``."""
    path = out / f"{split}-{UNET_SIZE}.npz"
    if path.exists():
        with np.load(path) as cached:
            return {key: cached[key] for key in cached.files}
    prepared = load_prepared(prepared_path)
    index = prepared.indices(split)
    masks = []
    for i in index:
        scan = load_scan(hc18, prepared.names[i])
        masks.append(ellipse_mask(scan.ellipse, scan.image.shape, (UNET_SIZE, UNET_SIZE)))
    data = {"images": to_unet_input(prepared.images[index]), "masks": np.stack(masks)}
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **data)
    return data


def make_model(kind: str, cfg: UNetConfig, seed: int):
    if kind == "ssn":
        return SSNUNet(cfg, seed)
    if kind == "dropout":
        return DropoutUNet(cfg, seed)
    raise ValueError(f"unknown U-Net {kind!r}, expected one of {TRAINED_KINDS}")


def model_loss(model, cfg: BaselineConfig, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    if isinstance(model, SSNUNet):
        return ssn_loss(*model(image), mask, cfg.ssn_samples, generator)
    logits = model(image, random_masks(len(image), model.cfg, generator))
    return F.binary_cross_entropy_with_logits(logits, mask) + cfg.dice_weight * soft_dice_loss(logits, mask)


@torch.no_grad()
def map_logits(model, image: torch.Tensor) -> torch.Tensor:
    """Deterministic logits [B, HW]: the SSN mean, the Dropout U-Net with all channels kept."""
    if isinstance(model, SSNUNet):
        return model(image)[0]
    return model(image, torch.ones(len(image), model.cfg.mask_count))


def validation_dice(model, data: Dict[str, np.ndarray], batch: int = 16) -> float:
    scores = []
    for start in range(0, len(data["images"]), batch):
        logits = map_logits(model, image_batch(data["images"][start : start + batch]))
        truths = data["masks"][start : start + batch].reshape(len(logits), -1)
        scores += [dice(p, t) for p, t in zip((logits > 0).numpy(), truths)]
    return float(np.mean(scores))


def training_batch(data: Dict[str, np.ndarray], index: np.ndarray, share: float, rng: np.random.Generator):
    """Normalised images [B,1,256,256] and masks [B, HW]; a ``share`` of them freshly augmented."""
    images, masks = [], []
    for i in index:
        image, mask = data["images"][i], data["masks"][i]
        if rng.random() < share:
            image, mask = augment(image, mask, rng)
        images.append(image)
        masks.append(mask)
    return image_batch(np.stack(images)), torch.from_numpy(np.stack(masks).reshape(len(index), -1).astype(np.float32))


def save_model(model, path: Path, extra: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = "ssn" if isinstance(model, SSNUNet) else "dropout"
    torch.save({"kind": kind, "config": model.cfg.to_dict(), "state_dict": model.state_dict(), **extra}, path)


def load_model(path: Path):
    checkpoint = torch.load(str(path), map_location="cpu")
    model = make_model(checkpoint["kind"], UNetConfig(**checkpoint["config"]), seed=0)
    model.load_state_dict(checkpoint["state_dict"])
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, checkpoint


def train(train_data: Dict[str, np.ndarray], val_data: Dict[str, np.ndarray], out: Path, cfg: BaselineConfig, unet_cfg: UNetConfig) -> dict:
    torch.manual_seed(cfg.seed)
    model = make_model(cfg.model, unet_cfg, cfg.seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    budget = cfg.minutes * 60.0
    count = len(train_data["images"]) if cfg.limit is None else min(cfg.limit, len(train_data["images"]))
    progress = {"best_dice": -1.0, "best_epoch": -1, "stale": 0, "history": [], "stopped": "max epochs"}
    started = time.time()
    for epoch in range(cfg.max_epochs):
        if progress["stale"] >= cfg.patience:
            progress["stopped"] = "early stopping"
            break
        if time.time() - started > budget:
            progress["stopped"] = "time budget"
            break
        generator = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)
        rng = np.random.default_rng([cfg.seed, epoch])
        order = rng.permutation(count)
        model.train()
        losses = []
        for start in range(0, count - cfg.batch + 1, cfg.batch):
            # The budget can end mid-epoch: the partial epoch is still validated below.
            elapsed = time.time() - started
            if elapsed > budget:
                break
            for group in optimiser.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1.0 + math.cos(math.pi * elapsed / budget))
            image, mask = training_batch(train_data, order[start : start + cfg.batch], cfg.augment_share, rng)
            loss = model_loss(model, cfg, image, mask, generator)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss))
        model.eval()
        score = validation_dice(model, val_data)
        progress["history"].append({"epoch": epoch + 1, "batches": len(losses), "loss": float(np.mean(losses)) if losses else math.nan, "val_dice": score, "seconds": round(time.time() - started, 1)})
        if score > progress["best_dice"]:
            progress.update(best_dice=score, best_epoch=epoch + 1, stale=0)
            save_model(model, out / f"{cfg.model}.pt", {"val_dice": score, "epoch": epoch + 1, "train_config": asdict(cfg)})
        else:
            progress["stale"] += 1
        print(json.dumps(progress["history"][-1]), flush=True)
    progress["seconds"] = round(time.time() - started, 1)
    return progress


def fit_laplace(ssn_path: Path, train_data: Dict[str, np.ndarray], val_data: Dict[str, np.ndarray], cfg: LaplaceConfig, val_scans: int = 32) -> dict:
    """Diagonal Laplace posterior over the SSN U-Net's trunk and mean branch: {sigma, prior_precision, ...}.

    The Laplacian head's settings (``laplace.LaplaceConfig``); the prior-precision grid is scored on
    ``val_scans`` validation scans spread over the split (a U-Net pass at 256 costs far more than a head pass)."""
    started = time.time()
    model, _ = load_model(ssn_path)
    theta = model.covered.detach()
    count = len(train_data["images"])

    def batches():
        for start in range(0, count, cfg.ggn_batch):
            image = image_batch(train_data["images"][start : start + cfg.ggn_batch])
            yield lambda t, x=image: model.mean_only(t, x)

    ggn_diag = ggn_diagonal(batches(), theta, cfg.probes, cfg.seed)
    ggn_seconds = time.time() - started
    generator = torch.Generator().manual_seed(cfg.seed)
    weight_noise = torch.randn(cfg.weight_samples, theta.numel(), generator=generator)
    # Evenly spaced over the split: scan names (hence the order) follow gestational age loosely.
    picks = np.unique(np.linspace(0, len(val_data["images"]) - 1, min(val_scans, len(val_data["images"]))).round().astype(int))
    rows = []
    for tau in cfg.grid:
        thetas = sample_weights(theta, posterior_std(ggn_diag, tau), weight_noise, 1.0)
        draw = torch.Generator().manual_seed(cfg.seed + 1)  # the same SSN draws for every tau
        nll, dices = [], []
        with torch.no_grad():
            for i in picks:
                logit_mean, cov_factor, cov_diag = model.forward_with(thetas, image_batch(val_data["images"][i : i + 1]))
                factor_noise = torch.randn(cfg.weight_samples, cfg.logit_samples, cov_factor.shape[1], generator=draw)
                diag_noise = torch.randn(cfg.weight_samples, cfg.logit_samples, cov_diag.shape[1], generator=draw)
                prob = clamp_prob(torch.sigmoid(laplace_logit_samples(logit_mean, cov_factor, cov_diag, factor_noise, diag_noise)).mean(0), ENTROPY_EPS)
                truth = torch.from_numpy(val_data["masks"][i].reshape(-1).astype(np.float32))
                nll.append(float(-(truth * torch.log(prob) + (1 - truth) * torch.log1p(-prob)).mean()))
                dices.append(dice((prob > 0.5).numpy(), truth.numpy()))
        rows.append({"prior_precision": tau, "val_nll": float(np.mean(nll)), "val_dice": float(np.mean(dices))})
        print(json.dumps(rows[-1]), flush=True)
    tau = choose_prior_precision(rows, cfg.nll_tolerance)
    return {
        "sigma": posterior_std(ggn_diag, tau),
        "prior_precision": tau,
        "grid": rows,
        "ggn_seconds": round(ggn_seconds, 1),
        "seconds": round(time.time() - started, 1),
        "config": asdict(cfg) | {"grid": list(cfg.grid), "val_scans": int(len(picks))},
    }


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Train a U-Net baseline (ssn, dropout) or fit the Laplace U-Net (laplace) at 256x256.")
    parser.add_argument("--model", choices=TRAINED_KINDS + ("laplace",), required=True)
    parser.add_argument("--prepared", type=Path, default=Path("build/hc18"))
    parser.add_argument("--hc18", type=Path, default=Path("../../shared/data/hc18"))
    parser.add_argument("--out", type=Path, default=Path("build/baselines"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    defaults = BaselineConfig()
    for name in ("minutes", "max_epochs", "batch", "lr", "patience", "seed"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(getattr(defaults, name)), default=getattr(defaults, name))
    parser.add_argument("--limit", type=int, default=None, help="first N training scans (smoke runs)")
    parser.add_argument("--channels", type=int, nargs="+", default=list(UNetConfig().channels))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (args.hc18 / "training_set").is_dir():
        parser.error(f"HC18 data not found at {args.hc18} (the 256x256 masks are rasterised from its annotations)")
    train_data = split_data(args.prepared, args.hc18, "train", args.out)
    val_data = split_data(args.prepared, args.hc18, "val", args.out)
    if args.model == "laplace":
        fitted = fit_laplace(args.out / "ssn.pt", train_data, val_data, LaplaceConfig(seed=args.seed))
        torch.save({"sigma": fitted["sigma"], "prior_precision": fitted["prior_precision"], "ssn": str(args.out / "ssn.pt")}, args.out / "laplace.pt")
        summary = {k: v for k, v in fitted.items() if k != "sigma"}
    else:
        cfg = BaselineConfig(model=args.model, limit=args.limit, **{name: getattr(args, name) for name in ("minutes", "max_epochs", "batch", "lr", "patience", "seed")})
        progress = train(train_data, val_data, args.out, cfg, UNetConfig(channels=tuple(args.channels)))
        summary = progress | {"config": asdict(cfg), "unet": UNetConfig(channels=tuple(args.channels)).to_dict()}
    (args.out / f"{args.model}.summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps({k: v for k, v in summary.items() if k not in ("history", "grid")}, indent=1))


if __name__ == "__main__":
    main()
