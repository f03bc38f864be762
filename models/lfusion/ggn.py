"""Diagonal generalised Gauss-Newton ("fast Hessian") of the Laplacian head at the MAP.

For the Bernoulli likelihood on the mean logits mu(theta) of one image, the GGN is
J^T Lambda J with J = d mu / d theta [HW, P] and Lambda = diag(p (1 - p)), p = sigmoid(mu).
Its diagonal is estimated without forming J: for a Rademacher vector v over the pixels,
g = J^T Lambda^(1/2) v is one vector-Jacobian product and E[g * g] = diag(J^T Lambda J)
exactly (E[v v^T] = I). Summing g over a batch of images with independent v per image is
still unbiased for the batch's sum (cross terms vanish in expectation), so one VJP per batch
and probe suffices. ``exact=True`` replaces the random probes by the pixel basis (HW VJPs per
image): slow, for tests.
"""
from __future__ import annotations

from typing import Callable, Iterable

import torch

MeanFn = Callable[[torch.Tensor], torch.Tensor]  # theta [P] -> logits [B, HW]


def ggn_diagonal_batch(mean_fn: MeanFn, theta: torch.Tensor, probes: int, generator: torch.Generator, exact: bool = False) -> torch.Tensor:
    """Estimate of sum over the batch of diag(J^T Lambda J), shape [P]."""
    theta = theta.detach().requires_grad_(True)
    logits = mean_fn(theta)
    probs = torch.sigmoid(logits.detach())
    sqrt_lambda = torch.sqrt(probs * (1.0 - probs))
    total = torch.zeros_like(theta)
    if exact:
        flat = sqrt_lambda.reshape(-1)
        for pixel in range(flat.numel()):
            direction = torch.zeros_like(flat)
            direction[pixel] = flat[pixel]
            (grad,) = torch.autograd.grad(logits, theta, direction.reshape(logits.shape), retain_graph=True)
            total += grad.square()
        return total.detach()
    for probe in range(probes):
        signs = torch.randint(0, 2, logits.shape, generator=generator, dtype=logits.dtype) * 2.0 - 1.0
        (grad,) = torch.autograd.grad(logits, theta, sqrt_lambda * signs, retain_graph=probe + 1 < probes)
        total += grad.square()
    return (total / probes).detach()


def ggn_diagonal(mean_fns: Iterable[MeanFn], theta: torch.Tensor, probes: int, seed: int, exact: bool = False) -> torch.Tensor:
    """Sum over all batches (the training set) of the per-batch estimates."""
    generator = torch.Generator().manual_seed(seed)
    total = torch.zeros_like(theta.detach())
    for mean_fn in mean_fns:
        total += ggn_diagonal_batch(mean_fn, theta, probes, generator, exact)
    return total
