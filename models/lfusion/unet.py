"""The paper's U-Net baselines at 256x256, with the same functional forward as the L-FUSION heads.

One small U-Net trunk (no normalisation layers, so a weight sample is just another vector):
encoder blocks of two 3x3 conv + ReLU at 256, 128, 64, 32 and 16 pixels (2x2 max pooling between
them), decoder blocks of two 3x3 conv + ReLU after 2x bilinear upsampling and concatenation with
the encoder block of the same size. Two heads on the last decoder block:

* ``SSNUNet``: the SSN head (``logit_mean``, rank-r ``cov_factor``, ``cov_diag``), trained with the
  SSN loss. The "SSN" baseline of the paper's tables; with a diagonal Laplace posterior over the
  trunk and the mean branch (fitted post hoc, ``lfusion.train_baselines``) it is the "Laplace
  U-Net" (Laplacian segmentation network). Weights split as in ``heads.LaplaceHead``:
  ``covered`` (trunk + mean branch) and ``map_only`` (covariance branch, kept at MAP).
* ``DropoutUNet``: one logit map, channel dropout after every conv block (encoder and decoder),
  masks as inputs ([k, Md], entries 0 or 1/(1-p); ``heads.random_masks`` draws them from a
  ``UNetConfig`` too), active at test time (MC dropout).

Weights are flat vectors laid out with ``layers.conv_layout``; ``layers.unflatten`` gives shared
([P]) or per-sample ([m, P]) tensors and ``layers.conv`` runs per-sample weights as one grouped
convolution, so m weight samples of the Laplace U-Net are one forward pass and parameters are never
modified in place.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from lfusion.layers import Layout, conv, conv_layout, init_vector, layout_size, unflatten, upsample2

UNET_SIZE = 256


@dataclass
class UNetConfig:
    channels: Tuple[int, ...] = (8, 16, 32, 32, 64)  # encoder block widths, one per resolution
    rank: int = 10
    diag_floor: float = 1e-4
    dropout_rate: float = 0.2

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)

    @property
    def block_channels(self) -> List[int]:
        """Output width of every conv block in forward order (encoder, then decoder)."""
        return list(self.channels) + list(reversed(self.channels[:-1]))

    @property
    def mask_count(self) -> int:
        return sum(self.block_channels)

    def to_dict(self) -> dict:
        return asdict(self)


def block_layout(name: str, cin: int, cout: int) -> Layout:
    return conv_layout(f"{name}.conv1", cin, cout, 3) + conv_layout(f"{name}.conv2", cout, cout, 3)


def unet_layout(cfg: UNetConfig) -> Layout:
    """Trunk (encoder ``enc<i>``, decoder ``dec<i>``) and the 1x1 mean branch, in forward order."""
    layout: Layout = []
    cin = 1
    for i, width in enumerate(cfg.channels):
        layout += block_layout(f"enc{i}", cin, width)
        cin = width
    for i in reversed(range(len(cfg.channels) - 1)):
        layout += block_layout(f"dec{i}", cin + cfg.channels[i], cfg.channels[i])
        cin = cfg.channels[i]
    return layout + conv_layout("mean", cfg.channels[0], 1, 1)


def ssn_covariance_layout(cfg: UNetConfig) -> Layout:
    return conv_layout("factor", cfg.channels[0], cfg.rank, 1) + conv_layout("diag", cfg.channels[0], 1, 1)


def conv_block(params: Dict[str, torch.Tensor], name: str, x: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    x = F.relu(conv(x, params[f"{name}.conv1.weight"], params[f"{name}.conv1.bias"]))
    x = F.relu(conv(x, params[f"{name}.conv2.weight"], params[f"{name}.conv2.bias"]))
    return x if mask is None else x * mask[:, :, None, None]


def unet_trunk(params: Dict[str, torch.Tensor], image: torch.Tensor, cfg: UNetConfig, masks: Optional[Sequence[torch.Tensor]] = None) -> torch.Tensor:
    """Last decoder block's features [B, channels[0], H, W] for a normalised image [B|1, 1, H, W].

    B is the image batch (shared weights), m (per-sample weights, one image) or k (dropout masks
    [k, C] per block, one image). H and W must be divisible by 2 ** (levels - 1).
    """
    block_masks = list(masks) if masks is not None else [None] * len(cfg.block_channels)
    skips = []
    x = image
    levels = len(cfg.channels)
    for i in range(levels):
        if i > 0:
            x = F.max_pool2d(x, 2)
        x = conv_block(params, f"enc{i}", x, block_masks[i])
        skips.append(x)
    for step, i in enumerate(reversed(range(levels - 1))):
        skip = skips[i]
        x = upsample2(x)
        x = torch.cat([x, skip.expand(x.shape[0], -1, -1, -1)], dim=1)
        x = conv_block(params, f"dec{i}", x, block_masks[levels + step])
    return x


def pixel_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """1x1 output layer: [B, C, H*W]."""
    return conv(x, weight, bias).flatten(2)


class SSNUNet(nn.Module):
    """U-Net with the SSN head: logits ~ N(logit_mean, cov_factor^T cov_factor + diag(cov_diag))."""

    def __init__(self, cfg: UNetConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.covered_layout = unet_layout(cfg)
        self.map_only_layout = ssn_covariance_layout(cfg)
        generator = torch.Generator().manual_seed(seed)
        self.covered = nn.Parameter(init_vector(self.covered_layout, generator))
        # Small, near-isotropic initial covariance (as heads.LaplaceHead): early samples stay near the mean.
        map_only = init_vector(self.map_only_layout, generator) * 0.1
        unflatten(map_only, self.map_only_layout)["diag.bias"].fill_(-3.0)
        self.map_only = nn.Parameter(map_only)

    @property
    def covered_count(self) -> int:
        return self.covered.numel()

    def forward_with(self, covered: torch.Tensor, image: torch.Tensor):
        """``covered`` [P] (image batch B) or [m, P] (one image, m weight samples).

        Returns logit_mean [B|m, HW], cov_factor [B|m, r, HW], cov_diag [B|m, HW].
        """
        params = unflatten(covered, self.covered_layout)
        features = unet_trunk(params, image, self.cfg)
        cov = unflatten(self.map_only, self.map_only_layout)
        factor = pixel_map(features, cov["factor.weight"], cov["factor.bias"])
        diag = F.softplus(pixel_map(features, cov["diag.weight"], cov["diag.bias"])[:, 0]) + self.cfg.diag_floor
        return pixel_map(features, params["mean.weight"], params["mean.bias"])[:, 0], factor, diag

    def mean_only(self, covered: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """logit_mean alone [B, HW] (what the GGN differentiates)."""
        params = unflatten(covered, self.covered_layout)
        return pixel_map(unet_trunk(params, image, self.cfg), params["mean.weight"], params["mean.bias"])[:, 0]

    def forward(self, image: torch.Tensor):
        return self.forward_with(self.covered, image)


class DropoutUNet(nn.Module):
    """MC-dropout U-Net: channel dropout after every conv block, active at inference."""

    def __init__(self, cfg: UNetConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = unet_layout(cfg)
        self.weights = nn.Parameter(init_vector(self.layout, torch.Generator().manual_seed(seed)))

    def forward(self, image: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """masks [B|k, Md] -> logits [B|k, HW]."""
        params = unflatten(self.weights, self.layout)
        block_masks = torch.split(masks, self.cfg.block_channels, dim=1)
        features = unet_trunk(params, image, self.cfg, block_masks)
        return pixel_map(features, params["mean.weight"], params["mean.bias"])[:, 0]


def parameter_count(cfg: UNetConfig) -> Dict[str, int]:
    return {"trunk_and_mean": layout_size(unet_layout(cfg)), "ssn_covariance": layout_size(ssn_covariance_layout(cfg))}
