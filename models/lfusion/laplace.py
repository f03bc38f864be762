"""Diagonal Laplace posterior of the Laplacian head's covered weights (trunk + mean branch).

q(theta) = N(theta_MAP, diag(sigma^2)), sigma = (GGN_diag + tau)^(-1/2), with the GGN diagonal
summed over the training scans (the originals: augmentation regularises the fit, it is not
more data) and the prior precision tau chosen on the validation split from a log grid by the
per-pixel negative log-likelihood of the Monte-Carlo predictive (m weight samples x n SSN
logit samples, the same draws for every tau): the smallest tau (broadest posterior) whose NLL
is within ``nll_tolerance`` (relative) of the best. Validation NLL typically keeps improving by
fractions of a percent towards the MAP (tau -> infinity), which would leave the Laplacian path
with no epistemic spread; among predictives that fit the validation data equally well we keep
the most uncertain one. The clip heads (``--architecture clip``) use the same fit on the clip cache.
Weight samples are new tensors
``theta_MAP + scale * sigma * noise``: the MAP parameters are never modified.

``sampled_from`` restricts the posterior to the covered layers from that one on (the 2D package's
``stem``: stem, fuse and mean, a last-layers Laplace): the layers before it stay at MAP and run
once per image, not once per weight sample. The GGN diagonal of the sampled weights is the same
with or without the others (a diagonal ignores their coupling); the prior precision is chosen
again for the restricted posterior.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from lfusion.features import FRAMES, DataAccess
from lfusion.ggn import ggn_diagonal
from lfusion.heads import LaplaceHead
from lfusion.measures import ENTROPY_EPS, clamp_prob, laplace_logit_samples
from lfusion.metrics import dice
from lfusion.train_heads import load_head


@dataclass
class LaplaceConfig:
    probes: int = 2
    ggn_batch: int = 8
    grid: Sequence[float] = (1.0, 1e1, 1e2, 1e3, 1e4, 1e5)
    weight_samples: int = 6
    logit_samples: int = 4
    nll_tolerance: float = 0.01
    seed: int = 18
    sampled_from: Optional[str] = None  # first sampled covered layer (None: all)


def posterior_std(ggn_diag: torch.Tensor, prior_precision: float) -> torch.Tensor:
    return (ggn_diag + prior_precision).rsqrt()


def sample_weights(theta_map: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """[m, P] weight samples theta_MAP + scale * sigma * noise (new tensor; inputs untouched)."""
    return theta_map[None, :] + scale * sigma[None, :] * noise


def training_ggn(head: LaplaceHead, cache: Path, cfg: LaplaceConfig, originals: int, access: DataAccess = FRAMES) -> torch.Tensor:
    data = access.load(cache, "train")
    offset = head.sampled_offset(cfg.sampled_from)
    theta = head.covered.detach()[offset:]

    def batches():
        for start in range(0, originals, cfg.ggn_batch):
            features, image, _ = access.batch(data, np.arange(start, min(start + cfg.ggn_batch, originals)))
            yield lambda t, f=features, i=image: head.mean_only(t, f, i, offset)

    return ggn_diagonal(batches(), theta, cfg.probes, cfg.seed)


@torch.no_grad()
def predictive_scores(head: LaplaceHead, ggn_diag: torch.Tensor, cache: Path, cfg: LaplaceConfig, access: DataAccess = FRAMES) -> List[Dict[str, float]]:
    """Validation NLL and Dice of the MC predictive for every prior precision of the grid."""
    data = access.load(cache, "val")
    generator = torch.Generator().manual_seed(cfg.seed)
    offset = head.sampled_offset(cfg.sampled_from)
    theta_map = head.covered.detach()[offset:]
    count = len(data.images)
    weight_noise = torch.randn(cfg.weight_samples, theta_map.numel(), generator=generator)
    batch = 16
    inputs = [access.batch(data, np.arange(s, min(s + batch, count))) for s in range(0, count, batch)]
    draws = [
        (torch.randn(len(f), cfg.logit_samples, head.cfg.rank, generator=generator), torch.randn(len(f), cfg.logit_samples, m.shape[1], generator=generator))
        for f, _, m in inputs
    ]
    rows = []
    for tau in cfg.grid:
        thetas = sample_weights(theta_map, posterior_std(ggn_diag, tau), weight_noise, 1.0)
        nll, dices = [], []
        for (features, image, mask), (factor_noise, diag_noise) in zip(inputs, draws):
            prob = torch.zeros_like(mask)
            for theta in thetas:
                logit_mean, cov_factor, cov_diag = head.forward_with(theta, features, image, offset)
                for b in range(len(features)):
                    eta = laplace_logit_samples(logit_mean[b : b + 1], cov_factor[b : b + 1], cov_diag[b : b + 1], factor_noise[b : b + 1], diag_noise[b : b + 1])
                    prob[b] += torch.sigmoid(eta).mean(0)
            prob = clamp_prob(prob / len(thetas), ENTROPY_EPS)
            nll.append(-(mask * torch.log(prob) + (1 - mask) * torch.log1p(-prob)).mean(-1))
            dices += [dice(p, t) for p, t in zip((prob > 0.5).numpy(), mask.numpy())]
        rows.append({"prior_precision": tau, "val_nll": float(torch.cat(nll).mean()), "val_dice": float(np.mean(dices))})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def choose_prior_precision(rows: List[Dict[str, float]], tolerance: float) -> float:
    """Smallest prior precision whose validation NLL is within ``tolerance`` (relative) of the best."""
    best = min(row["val_nll"] for row in rows)
    return min(row["prior_precision"] for row in rows if row["val_nll"] <= best * (1.0 + tolerance))


def fit(head_path: Path, cache: Path, out: Path, cfg: LaplaceConfig, access: DataAccess = FRAMES) -> dict:
    started = time.time()
    head, _ = load_head(head_path)
    head.eval()
    meta = json.loads((cache / "meta.json").read_text())
    originals = int(meta["train_count"]) // (1 + int(meta.get("augmented_copies", 0)))
    ggn_diag = training_ggn(head, cache, cfg, originals, access)
    ggn_seconds = time.time() - started
    rows = predictive_scores(head, ggn_diag, cache, cfg, access)
    tau = choose_prior_precision(rows, cfg.nll_tolerance)
    sigma = posterior_std(ggn_diag, tau)
    summary = {
        "prior_precision": tau,
        "criterion": f"smallest prior precision whose validation per-pixel NLL of the MC predictive is within {cfg.nll_tolerance:.0%} of the best",
        "grid": rows,
        "ggn_scans": originals,
        "ggn_probes": cfg.probes,
        "ggn_quantiles": [float(q) for q in torch.quantile(ggn_diag, torch.tensor([0.0, 0.5, 0.99, 1.0]))],
        "sigma_quantiles": [float(q) for q in torch.quantile(sigma, torch.tensor([0.0, 0.5, 0.99, 1.0]))],
        "ggn_seconds": round(ggn_seconds, 1),
        "seconds": round(time.time() - started, 1),
        "config": asdict(cfg) | {"grid": list(cfg.grid)},
    }
    out.mkdir(parents=True, exist_ok=True)
    offset = head.sampled_offset(cfg.sampled_from)
    summary |= {"sampled_from": cfg.sampled_from, "sampled_offset": offset, "sampled_count": int(sigma.numel())}
    torch.save({"ggn_diag": ggn_diag, "sigma": sigma, "prior_precision": tau, "head": str(head_path), "sampled_from": cfg.sampled_from, "sampled_offset": offset}, out / "posterior.pt")
    (out / "posterior.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def load_posterior(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Fit the diagonal Laplace posterior of the Laplacian head.")
    parser.add_argument("--architecture", choices=("2d", "clip"), default="2d", help="clip: the 3D Laplacian head on the clip cache")
    parser.add_argument("--head", type=Path, default=None, help="default build/heads/laplace.pt (2d) or build/clips/heads/laplace.pt (clip)")
    parser.add_argument("--cache", type=Path, default=None, help="default build/features (2d) or build/clips/features (clip)")
    parser.add_argument("--out", type=Path, default=None, help="default build/laplace (2d) or build/clips/laplace (clip)")
    parser.add_argument("--ggn-batch", type=int, default=LaplaceConfig.ggn_batch)
    parser.add_argument("--probes", type=int, default=LaplaceConfig.probes)
    parser.add_argument("--grid", type=float, nargs="+", default=list(LaplaceConfig.grid))
    parser.add_argument("--weight-samples", type=int, default=LaplaceConfig.weight_samples)
    parser.add_argument("--logit-samples", type=int, default=LaplaceConfig.logit_samples)
    parser.add_argument("--nll-tolerance", type=float, default=LaplaceConfig.nll_tolerance)
    parser.add_argument("--seed", type=int, default=LaplaceConfig.seed)
    parser.add_argument("--sampled-from", default=None, help="first covered layer the posterior samples (2D head: proj, block1-4, stem, fuse, mean); default all")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared, busy CPU: measured 2-4x)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = LaplaceConfig(probes=args.probes, ggn_batch=args.ggn_batch, grid=tuple(args.grid), weight_samples=args.weight_samples, logit_samples=args.logit_samples, nll_tolerance=args.nll_tolerance, seed=args.seed, sampled_from=args.sampled_from)
    root = Path("build/clips") if args.architecture == "clip" else Path("build")
    access = FRAMES
    if args.architecture == "clip":
        from lfusion.clips import clip_access

        access = clip_access()
    summary = fit(args.head or root / "heads" / "laplace.pt", args.cache or root / "features", args.out or root / "laplace", cfg, access)
    print(json.dumps({k: v for k, v in summary.items() if k != "grid"}, indent=1))


if __name__ == "__main__":
    main()
