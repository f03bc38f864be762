"""Masked-image-modelling pretraining of the encoder on every HC18 image (no labels used).

Recipe (MAE with USFM's frequency masking, sized for two CPU cores):
- 75% of the 16x16 patches are dropped; the encoder sees only the kept ones, with the
  relative position bias entries of the kept tokens gathered (``USFMEncoder.forward_visible``).
- Spatial-frequency dual masking (USFM): for a random half of the batch, a random radial
  band of the input's 2-D spectrum is also removed, so the encoder must restore both
  missing regions and missing frequencies. The target is always the clean image.
- A light decoder (its own blocks, fixed 2-D sin-cos positions) predicts each masked
  patch's pixels normalised by that patch's mean and variance (MAE's normalised target).
- Progressive resolution (USFM, optional): the first ``--low-resolution-steps`` steps see
  the images at 112x112 (7x7 patches, about 4x cheaper); the relative position bias and the
  decoder positions take those patches' true offsets (``encoder.grid_positions``).

Data: the labelled training-set scans of every split and the unlabelled test-set scans,
augmented with ``lfusion.augment``. Labels are never read.

Resumable over many sessions: the schedule (warm-up, then cosine to ``min_lr`` at
``--plan-steps``) is fixed at the first start and stored in the state, so every resume
continues the same curve. ``--minutes`` bounds one session; the full state (model,
optimiser, step, plan, RNG states, loss log, every session's command, start, duration and
speed) is saved in ``--state`` every ``--checkpoint-minutes``, at the end and on SIGTERM,
and ``--resume`` continues from it. The frozen encoder's weights (fp16) go to ``--out``
with a JSON record next to it, and every ``--snapshot-every`` steps to a milestone file in
``--snapshots`` (what ``lfusion.curve`` measures). ``--init-encoder`` warm-starts the
encoder from a checkpoint (fresh decoder and optimiser); its training counts in the
records' ``pretraining_minutes`` and ``pretraining_images_seen``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import augment
from .data import load_prepared, normalize
from .encoder import Block, EncoderConfig, USFMEncoder, grid_positions, save_encoder


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
    # The schedule's length, fixed when a run starts and kept by every resume, so that a run
    # spread over many sessions follows one warm-up and one cosine.
    plan_steps: int = 1400
    # Progressive resolution (USFM): the plan's first steps see the images at low_resolution
    # (positions placed by encoder.grid_positions); 0 keeps every step at the full size.
    low_resolution_steps: int = 0
    low_resolution: int = 112
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
        """Predicted pixels of every patch [B, grid*grid, patch*patch] from the kept patches of ``corrupted``
        (its own grid: a smaller image places its patches by ``grid_positions``)."""
        visible = self.decoder_embed(self.encoder.forward_visible(corrupted, keep))
        grid, full_grid = corrupted.shape[-1] // self.encoder.cfg.patch, self.encoder.cfg.grid
        batch, num_patches = keep.shape[0], grid**2
        tokens = self.mask_token.expand(batch, num_patches, -1).clone()
        tokens.scatter_(1, keep[:, :, None].expand(-1, -1, tokens.shape[-1]), visible[:, 1:])
        positions = None if grid == full_grid else torch.cat([torch.zeros(1, dtype=torch.long), grid_positions(grid, full_grid) + 1])
        tokens = torch.cat([visible[:, :1], tokens], dim=1) + (self.decoder_positions if positions is None else self.decoder_positions[:, positions])
        for block in self.decoder_blocks:
            tokens = block(tokens, None if positions is None else positions.expand(batch, -1))
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


def learning_rate(step: int, cfg: PretrainConfig) -> float:
    """Linear warm-up then cosine decay to ``min_lr`` at the planned ``cfg.plan_steps``, then ``min_lr``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.plan_steps - cfg.warmup_steps))
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
    num_patches = (images.shape[-1] // model.encoder.cfg.patch) ** 2
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


def snapshot_path(directory: Path, step: int) -> Path:
    """``<directory>/encoder-step006000.pt``: milestone files sort by step."""
    return directory / f"encoder-step{step:06d}.pt"


def warm_start(model: MaskedAutoencoder, path: Path) -> dict:
    """Loads an encoder checkpoint (``save_encoder``) into the model's encoder; returns what it was trained with."""
    checkpoint = torch.load(str(path), map_location="cpu")
    model.encoder.load_state_dict({k: (v.float() if v.is_floating_point() else v) for k, v in checkpoint["state_dict"].items()})
    meta = checkpoint.get("meta", {})
    return {
        "path": str(path),
        "minutes": meta.get("total_wall_clock_minutes", 0.0),
        "images_seen": meta.get("images_seen", 0),
        "steps": meta.get("steps", 0),
        "commands": meta.get("commands", []),
    }


class StopRequest:
    """SIGTERM/SIGINT end the run after the current step, with its state saved (``kill PID`` is a clean stop)."""

    def __init__(self) -> None:
        self.signal: Optional[str] = None
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self._request)

    def _request(self, number: int, _frame: object) -> None:
        self.signal = signal.Signals(number).name


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Masked-image-modelling pretraining of the L-FUSION encoder.")
    parser.add_argument("--data", type=Path, default=Path("build/hc18"), help="prepared cache from lfusion.data")
    parser.add_argument("--out", type=Path, default=Path("checkpoints/encoder.pt"), help="latest encoder (fp16) and its JSON record")
    parser.add_argument("--state", type=Path, default=Path("build/pretrain/state.pt"))
    parser.add_argument("--snapshots", type=Path, help="folder for milestone encoders (every --snapshot-every steps)")
    parser.add_argument("--snapshot-every", type=int, default=200)
    parser.add_argument("--minutes", type=float, required=True, help="wall-clock budget of this session of the run")
    parser.add_argument("--until-step", type=int, help="also end this session at this step (the plan is unchanged)")
    parser.add_argument("--resume", action="store_true", help="continue from --state when it exists")
    parser.add_argument("--checkpoint-minutes", type=float, default=3.0)
    parser.add_argument("--threads", type=int, default=2)
    # Set at the first start and stored in the state; a resume keeps them.
    parser.add_argument("--plan-steps", type=int, help="length of the warm-up + cosine schedule (default %d)" % PretrainConfig.plan_steps)
    parser.add_argument("--warmup-steps", type=int, help="default %d" % PretrainConfig.warmup_steps)
    parser.add_argument("--low-resolution-steps", type=int, default=0, help="progressive resolution: this many first steps at --low-resolution")
    parser.add_argument("--low-resolution", type=int, default=PretrainConfig.low_resolution)
    parser.add_argument("--init-encoder", type=Path, help="warm start: encoder weights from this checkpoint, fresh decoder")
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
    stop = StopRequest()
    started = time.monotonic()
    cpu_started = time.process_time()
    deadline = started + args.minutes * 60
    prepared = load_prepared(args.data)
    images = np.concatenate([prepared.images, prepared.unlabelled_images])

    resumed = args.resume and args.state.exists()
    init: Optional[dict] = None
    if resumed:
        state = torch.load(str(args.state), map_location="cpu")
        encoder_cfg = EncoderConfig(**state["encoder_config"])
        cfg = PretrainConfig(**state["pretrain_config"])
        for name in ("plan_steps", "warmup_steps"):
            given = getattr(args, name)
            if given is not None and given != getattr(cfg, name):
                parser.error(f"--{name.replace('_', '-')} {given} differs from the resumed run's {getattr(cfg, name)} (start a new --state to change the plan)")
    else:
        if args.init_encoder is not None:
            encoder_cfg = EncoderConfig(**torch.load(str(args.init_encoder), map_location="cpu")["config"])
        else:
            encoder_cfg = EncoderConfig(width=args.width, depth=args.depth, heads=args.heads, feature_blocks=tuple(args.feature_blocks))
        schedule = {name: getattr(args, name) for name in ("plan_steps", "warmup_steps") if getattr(args, name) is not None}
        cfg = PretrainConfig(batch=args.batch, lr=args.lr, seed=args.seed, low_resolution_steps=args.low_resolution_steps,
                             low_resolution=args.low_resolution, **schedule)
        if cfg.low_resolution % encoder_cfg.patch or not 0 < cfg.low_resolution <= encoder_cfg.img_size:
            parser.error(f"--low-resolution {cfg.low_resolution} must be a multiple of the patch ({encoder_cfg.patch}) up to {encoder_cfg.img_size}")
    torch.manual_seed(cfg.seed)
    model = MaskedAutoencoder(encoder_cfg, cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    generator = torch.Generator().manual_seed(cfg.seed)
    stream = ImageStream(images, cfg.seed)
    step, seen, previous_minutes, previous_cpu_seconds, log, sessions = 0, 0, 0.0, 0.0, [], []
    if resumed:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        generator.set_state(state["torch_generator"])
        stream.restore(state["stream"])
        step, seen, previous_minutes = state["step"], state["images_seen"], state["minutes"]
        previous_cpu_seconds = state.get("cpu_seconds", 0.0)
        log, sessions, init = state["log"], state["sessions"], state["init"]
    elif args.init_encoder is not None:
        init = warm_start(model, args.init_encoder)
    command = "cd models && nice -n %d /usr/bin/python3 -m lfusion.pretrain %s" % (
        os.nice(0), " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])))
    session = {"command": command, "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"), "pid": os.getpid(),
               "start_step": step, "end_step": step, "minutes": 0.0, "images_per_s": None, "ended": "running"}
    sessions.append(session)
    print(json.dumps({"resumed": resumed, "step": step, "images": len(images), "init": init and init["path"],
                      "encoder": asdict(encoder_cfg), "pretrain": asdict(cfg)}), flush=True)

    def run_minutes() -> float:
        return previous_minutes + (time.monotonic() - started) / 60

    def update_session() -> None:
        session["end_step"] = step
        session["minutes"] = round((time.monotonic() - started) / 60, 2)
        session["images_per_s"] = round((step - session["start_step"]) * cfg.batch / max(1e-9, time.monotonic() - started), 2)

    def snapshot() -> dict:
        update_session()
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "torch_generator": generator.get_state(),
            "stream": stream.state(),
            "step": step,
            "images_seen": seen,
            "minutes": run_minutes(),
            "cpu_seconds": previous_cpu_seconds + time.process_time() - cpu_started,
            "log": log,
            "sessions": sessions,
            "init": init,
            "encoder_config": asdict(encoder_cfg),
            "pretrain_config": asdict(cfg),
        }

    def record() -> dict:
        """The encoder's provenance; ``pretraining_*`` count the warm start's training too."""
        update_session()
        minutes = run_minutes()
        return {
            "commands": [s["command"] for s in sessions],
            "sessions": sessions,
            "init": init,
            "total_wall_clock_minutes": round(minutes, 2),
            "cpu_minutes": round((previous_cpu_seconds + time.process_time() - cpu_started) / 60, 2),
            "steps": step,
            "images_seen": seen,
            "pretraining_minutes": round(minutes + (init["minutes"] if init else 0.0), 2),
            "pretraining_images_seen": seen + (init["images_seen"] if init else 0),
            "final_loss": log[-1]["loss"] if log else None,
            "lr": learning_rate(step, cfg),
            "machine": "2 shared CPU cores, torch %s, %d threads" % (torch.__version__, args.threads),
            "data": "HC18 training_set (all splits, no labels) + test_set, augmented",
            "recipe": "MAE 75% token dropping + USFM frequency-band input masking, normalised-pixel targets"
            + ("; encoder warm-started from %s, fresh decoder" % init["path"] if init else ""),
            "encoder_config": asdict(encoder_cfg),
            "pretrain_config": asdict(cfg),
            "loss_log": log,
        }

    def save_all() -> None:
        save_state(args.state, snapshot())
        write_encoder(model, args.out, record())

    model.train()
    last_checkpoint, window_loss, window_count, window_start = time.monotonic(), 0.0, 0, time.monotonic()
    last_step = cfg.plan_steps if args.until_step is None else min(cfg.plan_steps, args.until_step)
    while time.monotonic() < deadline and step < last_step and stop.signal is None:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, cfg)
        batch = stream.next_batch(cfg.batch)
        if step < cfg.low_resolution_steps:
            batch = F.interpolate(batch, size=(cfg.low_resolution, cfg.low_resolution), mode="area")
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
                "minutes": round(run_minutes(), 2),
                "loss": round(window_loss / window_count, 5),
                "images_per_s": round(window_count * cfg.batch / (now - window_start), 2),
                "resolution": int(batch.shape[-1]),
                "lr": optimizer.param_groups[0]["lr"],
            }
            log.append(entry)
            print(json.dumps(entry), flush=True)
            window_loss, window_count, window_start = 0.0, 0, now
        if args.snapshots is not None and step % args.snapshot_every == 0:
            write_encoder(model, snapshot_path(args.snapshots, step), record())
        if time.monotonic() - last_checkpoint > args.checkpoint_minutes * 60:
            save_all()
            last_checkpoint = time.monotonic()
    session["ended"] = stop.signal or ("plan complete" if step >= cfg.plan_steps else "until-step" if step >= last_step else "minutes spent")
    save_all()
    print(json.dumps({"done": True, "steps": step, "images_seen": seen, "ended": session["ended"]}), flush=True)


if __name__ == "__main__":
    main()
