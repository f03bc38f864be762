"""Masked-image-modelling pretraining of the encoder on every HC18 image (no labels used).

Recipe (MAE with USFM's frequency masking, sized for two CPU cores):
- 75% of the 16x16 patches are dropped; the encoder sees only the kept ones, with the
  relative position bias entries of the kept tokens gathered (``USFMEncoder.forward_visible``).
- Spatial-frequency dual masking (USFM): for a random half of the batch, a random radial
  band of the input's 2-D spectrum is also removed, so the encoder must restore both
  missing regions and missing frequencies. The target is always the clean image.
- A light decoder (its own blocks, fixed 2-D sin-cos positions) predicts each masked
  patch's pixels normalised by that patch's mean and variance (MAE's normalised target).

Data: the labelled training-set scans of every split and the unlabelled test-set scans,
augmented with ``lfusion.augment``. Labels are never read.

Time-budgeted and resumable: ``--minutes`` bounds this run; the full state (model,
optimiser, step, learning-rate plan, RNG states, loss log) is saved in ``--state`` every
``--checkpoint-minutes`` and at the end, and ``--resume`` continues from it. The frozen
encoder's weights (fp16) go to ``--out`` with a JSON record next to it.
"""
from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from .augment import augment
from .data import load_prepared, normalize
from .encoder import Block, EncoderConfig, USFMEncoder, save_encoder


@dataclass
class PretrainConfig:
    batch: int = 32
    mask_ratio: float = 0.75
    frequency_mask_probability: float = 0.5
    frequency_band_width: tuple = (0.05, 0.3)  # fraction of the maximum radius
    decoder_width: int = 128
    decoder_depth: int = 2
    decoder_heads: int = 4
    lr: float = 1.0e-3
    min_lr: float = 1.0e-5
    weight_decay: float = 0.05
    warmup_steps: int = 200
    seed: int = 0


def sincos_positions(grid: int, width: int) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding [1, 1 + grid*grid, width] (zeros for the cls slot)."""
    quarter = width // 4
    frequencies = 1.0 / (10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32), indexing="ij")
    parts = []
    for coordinate in (rows.flatten(), cols.flatten()):
        angles = coordinate[:, None] * frequencies[None, :]
        parts += [angles.sin(), angles.cos()]
    table = torch.cat(parts, dim=1)
    table = torch.cat([table, torch.zeros(table.shape[0], width - table.shape[1])], dim=1)
    return torch.cat([torch.zeros(1, width), table])[None]


class MaskedAutoencoder(nn.Module):
    def __init__(self, encoder_cfg: EncoderConfig, cfg: PretrainConfig) -> None:
        super().__init__()
        self.encoder = USFMEncoder(encoder_cfg)
        decoder_cfg = EncoderConfig(
            img_size=encoder_cfg.img_size,
            patch=encoder_cfg.patch,
            width=cfg.decoder_width,
            depth=cfg.decoder_depth,
            heads=cfg.decoder_heads,
            feature_blocks=(cfg.decoder_depth,),
        )
        self.decoder_embed = nn.Linear(encoder_cfg.width, cfg.decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.register_buffer("decoder_positions", sincos_positions(encoder_cfg.grid, cfg.decoder_width))
        self.decoder_blocks = nn.ModuleList(Block(decoder_cfg) for _ in range(cfg.decoder_depth))
        self.decoder_norm = nn.LayerNorm(cfg.decoder_width, eps=1e-6)
        self.decoder_pred = nn.Linear(cfg.decoder_width, encoder_cfg.patch**2 * encoder_cfg.in_chans)

    def forward(self, corrupted: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch [B, grid*grid, patch*patch] from the kept patches of ``corrupted``."""
        visible = self.decoder_embed(self.encoder.forward_visible(corrupted, keep))
        batch, num_patches = keep.shape[0], self.encoder.cfg.grid**2
        tokens = self.mask_token.expand(batch, num_patches, -1).clone()
        tokens.scatter_(1, keep[:, :, None].expand(-1, -1, tokens.shape[-1]), visible[:, 1:])
        tokens = torch.cat([visible[:, :1], tokens], dim=1) + self.decoder_positions
        for block in self.decoder_blocks:
            tokens = block(tokens)
        return self.decoder_pred(self.decoder_norm(tokens))[:, 1:]


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, 1, H, W] -> [B, (H/p)*(W/p), p*p], row-major patches like the patch embedding."""
    batch, _, height, width = images.shape
    x = images.reshape(batch, height // patch, patch, width // patch, patch)
    return x.permute(0, 1, 3, 2, 4).reshape(batch, (height // patch) * (width // patch), patch * patch)


def remove_frequency_band(images: torch.Tensor, inner: torch.Tensor, outer: torch.Tensor) -> torch.Tensor:
    """Zeroes the spectrum of each image [B,1,H,W] at normalised radii in [inner_b, outer_b)."""
    height, width = images.shape[-2:]
    fy = torch.fft.fftfreq(height)[:, None]
    fx = torch.fft.rfftfreq(width)[None, :]
    radius = torch.sqrt(fy**2 + fx**2) / math.sqrt(0.5)
    band = (radius >= inner[:, None, None, None]) & (radius < outer[:, None, None, None])
    spectrum = torch.fft.rfft2(images)
    return torch.fft.irfft2(spectrum * (~band), s=(height, width))


def masked_patch_loss(prediction: torch.Tensor, images: torch.Tensor, keep: torch.Tensor, patch: int) -> torch.Tensor:
    """MSE on the dropped patches against per-patch normalised pixels."""
    target = patchify(images, patch)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    dropped = torch.ones(target.shape[:2], dtype=torch.bool)
    dropped.scatter_(1, keep, False)
    return ((prediction - target) ** 2).mean(-1)[dropped].mean()


def learning_rate(step: int, total_steps: int, cfg: PretrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr`` at ``total_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps))
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


class ImageStream:
    """Seeded epochs over the images: shuffled order, augmented, normalised batches."""

    def __init__(self, images: np.ndarray, seed: int) -> None:
        self.images = images
        self.rng = np.random.default_rng(seed)
        self.order: List[int] = []

    def next_batch(self, batch: int) -> torch.Tensor:
        chosen = []
        while len(chosen) < batch:
            if not self.order:
                self.order = self.rng.permutation(len(self.images)).tolist()
            chosen.append(self.order.pop())
        augmented = [normalize(augment(self.images[i], None, self.rng)[0]) for i in chosen]
        return torch.from_numpy(np.stack(augmented))[:, None]

    def state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "order": list(self.order)}

    def restore(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.order = list(state["order"])


def train_step(model: MaskedAutoencoder, images: torch.Tensor, cfg: PretrainConfig, generator: torch.Generator) -> torch.Tensor:
    batch = images.shape[0]
    num_patches = model.encoder.cfg.grid**2
    num_keep = int(round(num_patches * (1 - cfg.mask_ratio)))
    keep = torch.rand(batch, num_patches, generator=generator).argsort(dim=1)[:, :num_keep]
    inner = torch.rand(batch, generator=generator) * (1 - cfg.frequency_band_width[1])
    width = cfg.frequency_band_width[0] + torch.rand(batch, generator=generator) * (cfg.frequency_band_width[1] - cfg.frequency_band_width[0])
    apply = torch.rand(batch, generator=generator) < cfg.frequency_mask_probability
    # Images not chosen for frequency masking get an empty band.
    corrupted = remove_frequency_band(images, inner, torch.where(apply, inner + width, inner))
    prediction = model(corrupted, keep)
    return masked_patch_loss(prediction, images, keep, model.encoder.cfg.patch)


def save_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    torch.save(state, temporary)
    temporary.replace(path)


def write_encoder(model: MaskedAutoencoder, out: Path, record: dict) -> None:
    save_encoder(model.encoder, out, meta=record)
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Masked-image-modelling pretraining of the L-FUSION encoder.")
    parser.add_argument("--data", type=Path, default=Path("build/hc18"), help="prepared cache from lfusion.data")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/encoder.pt"))
    parser.add_argument("--state", type=Path, default=Path("build/pretrain/state.pt"))
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget of this run")
    parser.add_argument("--resume", action="store_true", help="continue from --state when it exists")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=PretrainConfig.batch)
    parser.add_argument("--lr", type=float, default=PretrainConfig.lr)
    parser.add_argument("--seed", type=int, default=PretrainConfig.seed)
    parser.add_argument("--width", type=int, default=EncoderConfig.width)
    parser.add_argument("--depth", type=int, default=EncoderConfig.depth)
    parser.add_argument("--heads", type=int, default=EncoderConfig.heads)
    parser.add_argument("--feature-blocks", type=int, nargs="+", default=list(EncoderConfig.feature_blocks))
    parser.add_argument("--log-every", type=int, default=20)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    started = time.monotonic()
    deadline = started + args.minutes * 60
    prepared = load_prepared(args.data)
    images = np.concatenate([prepared.images, prepared.unlabelled_images])

    resumed = args.resume and args.state.exists()
    if resumed:
        state = torch.load(str(args.state), map_location="cpu")
        encoder_cfg = EncoderConfig(**state["encoder_config"])
        cfg = PretrainConfig(**state["pretrain_config"])
    else:
        encoder_cfg = EncoderConfig(width=args.width, depth=args.depth, heads=args.heads, feature_blocks=tuple(args.feature_blocks))
        cfg = PretrainConfig(batch=args.batch, lr=args.lr, seed=args.seed)
    torch.manual_seed(cfg.seed)
    model = MaskedAutoencoder(encoder_cfg, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    stream = ImageStream(images, cfg.seed)
    step, seen, previous_minutes, log, commands = 0, 0, 0.0, [], []
    total_steps: Optional[int] = None
    if resumed:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["torch_generator"])
        stream.restore(state["stream"])
        step, seen, previous_minutes = state["step"], state["images_seen"], state["minutes"]
        log, commands, total_steps = state["log"], state["commands"], state["total_steps"]
    command = "cd models && /usr/bin/python3 -m lfusion.pretrain " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    commands.append(command)
    print(json.dumps({"resumed": resumed, "step": step, "images": len(images), "encoder": asdict(encoder_cfg), "pretrain": asdict(cfg)}), flush=True)

    def snapshot() -> dict:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_generator": generator.get_state(),
            "stream": stream.state(),
            "step": step,
            "images_seen": seen,
            "minutes": previous_minutes + (time.monotonic() - started) / 60,
            "total_steps": total_steps,
            "log": log,
            "commands": commands,
            "encoder_config": asdict(encoder_cfg),
            "pretrain_config": asdict(cfg),
        }

    def record() -> dict:
        return {
            "commands": commands,
            "total_wall_clock_minutes": round(previous_minutes + (time.monotonic() - started) / 60, 2),
            "steps": step,
            "images_seen": seen,
            "final_loss": log[-1]["loss"] if log else None,
            "machine": "2 shared CPU cores, torch %s, %d threads" % (torch.__version__, args.threads),
            "data": "HC18 training_set (all splits, no labels) + test_set, augmented",
            "recipe": "MAE 75% token dropping + USFM frequency-band input masking, normalised-pixel targets",
            "encoder_config": asdict(encoder_cfg),
            "pretrain_config": asdict(cfg),
            "loss_log": log,
        }

    model.train()
    run_start_step, run_start_time = step, time.monotonic()
    last_checkpoint, window_loss, window_count, window_start = time.monotonic(), 0.0, 0, time.monotonic()
    rate_probe_steps = 10
    while time.monotonic() < deadline:
        if step - run_start_step >= rate_probe_steps and (step - run_start_step) % rate_probe_steps == 0:
            # Re-plan the cosine schedule from this run's mean speed so that it ends at the
            # deadline even when the shared CPU slows down or speeds up.
            seconds_per_step = (time.monotonic() - run_start_time) / (step - run_start_step)
            total_steps = step + int((deadline - time.monotonic()) / seconds_per_step)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, total_steps or 10**9, cfg)
        batch = stream.next_batch(cfg.batch)
        loss = train_step(model, batch, cfg, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
        optimizer.step()
        step += 1
        seen += cfg.batch
        window_loss += float(loss)
        window_count += 1
        if step % args.log_every == 0:
            now = time.monotonic()
            entry = {
                "step": step,
                "images_seen": seen,
                "minutes": round(previous_minutes + (now - started) / 60, 2),
                "loss": round(window_loss / window_count, 5),
                "images_per_s": round(window_count * cfg.batch / (now - window_start), 2),
                "lr": optimizer.param_groups[0]["lr"],
                "planned_total_steps": total_steps,
            }
            log.append(entry)
            print(json.dumps(entry), flush=True)
            window_loss, window_count, window_start = 0.0, 0, now
        if time.monotonic() - last_checkpoint > args.checkpoint_minutes * 60:
            save_state(args.state, snapshot())
            write_encoder(model, args.out, record())
            last_checkpoint = time.monotonic()
    save_state(args.state, snapshot())
    write_encoder(model, args.out, record())
    print(json.dumps({"done": True, "steps": step, "images_seen": seen}), flush=True)


if __name__ == "__main__":
    main()
