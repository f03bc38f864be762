"""L-FUSION segmentation heads on frozen encoder features, with a functional forward.

Both heads share one trunk shape: a 1x1 projection of the features (at 14x14), four decoder
blocks (3x3 conv + ReLU; 2x bilinear upsampling after the first three: 14 -> 28 -> 56 -> 112),
a shallow stem on the full-resolution normalised image (pixel-unshuffled 224 -> 4 x 112x112, so
each stem pixel sees a 2x2 block of full-resolution pixels and their neighbours: the skip path
that sharpens boundaries), a 1x1 fusion layer, and 1x1 output layers whose maps take the fourth
2x bilinear upsampling to 224x224. (A 1x1 layer commutes with bilinear upsampling, whose weights
sum to one, so this equals applying the outputs at 224 at a quarter of the cost.) Nothing but
the final upsampling runs at 224x224, so m = 50 weight samples stay feasible on a CPU. Inference
can leave that upsampling out (``upsample=False``: maps at 112x112) and upsample the per-pixel
measures instead (``lfusion.inference.Bundle.half_maps``); training and the GGN use full maps.

* ``LaplaceHead`` (SSN): outputs ``logit_mean``, ``cov_factor`` (rank r) and ``cov_diag``
  (softplus + floor). The Laplace posterior can cover the trunk and the mean branch
  (``LaplaceHead.covered``); the covariance branch (``LaplaceHead.map_only``) stays at MAP. A
  posterior on the last covered layers only (from a flat offset in ``covered`` on,
  ``LaplaceHead.sampled_offset``) keeps the layers before it at MAP, so they run once per image,
  not once per weight sample.
* ``DropoutHead``: one logit map; channel dropout after the layers ``HeadConfig.dropout_after`` names
  (every decoder block, as shipped; ``block4, stem, fuse`` was measured and not taken, docs/results.md), with the masks
  as inputs (``[k, Md]``, entries 0 or 1/(1-p)), random masks when training. Layers before the first
  masked one run once per image, not once per mask: their outputs broadcast over the k passes. Layers in
  ``training_dropout_after`` are dropped in training only and kept whole at inference (ordinary dropout's
  expectation), so a head regularised everywhere can be sampled on its last layers alone.

Weights live in flat vectors (``lfusion.layers``: ``unflatten`` gives shared or per-sample
weights, ``conv`` runs per-sample weights as batched products, m dynamic in ONNX). Parameters
are never modified in place by sampling.

The two head classes only see their architecture through the config's four methods
(``covered_layout``, ``map_only_layout``, ``fused``, ``output``), so the 3D clip heads
(``lfusion.heads3d.ClipHeadConfig``) reuse them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from lfusion.heads3d import ClipHeadConfig
from lfusion.layers import Layout, conv, conv_layout, init_vector, layout_offset, layout_size, split_layout, unflatten, upsample2


@dataclass
class HeadConfig:
    feature_channels: int = 576
    proj_channels: int = 64
    decoder_channels: Tuple[int, ...] = (64, 32, 16, 8)
    stem_channels: int = 8
    fuse_channels: int = 16
    rank: int = 10
    diag_floor: float = 1e-4
    dropout_rate: float = 0.2
    # Layers whose output channels the Dropout head drops (block1.., stem, fuse): sampled at inference (the masks
    # the graph takes), and in training only (at inference kept whole).
    dropout_after: Tuple[str, ...] = ("block1", "block2", "block3", "block4")
    training_dropout_after: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if not self.dropout_after:
            raise ValueError("dropout_after: expected one or more layers")
        self.dropout_after = self.in_forward_order(self.dropout_after, "dropout_after")
        self.training_dropout_after = self.in_forward_order(self.training_dropout_after, "training_dropout_after")

    @property
    def layer_channels(self) -> Dict[str, int]:
        """Output channels of the layers a mask can follow, in forward order."""
        blocks = {f"block{i + 1}": c for i, c in enumerate(self.decoder_channels)}
        return blocks | {"stem": self.stem_channels, "fuse": self.fuse_channels}

    def in_forward_order(self, layers: Tuple[str, ...], field: str = "layers") -> Tuple[str, ...]:
        channels = self.layer_channels
        unknown = [name for name in layers if name not in channels]
        if unknown:
            raise ValueError(f"{field} {tuple(layers)}: expected layers of {tuple(channels)}")
        return tuple(name for name in channels if name in layers)

    @property
    def training_layers(self) -> Tuple[str, ...]:
        """The layers dropped in training: the sampled ones and the training-only ones, in forward order."""
        return self.in_forward_order(self.dropout_after + self.training_dropout_after)

    @property
    def mask_count(self) -> int:
        return sum(self.layer_channels[name] for name in self.dropout_after)

    def to_dict(self) -> dict:
        return asdict(self)

    # The architecture, as the heads below see it (lfusion.heads3d.ClipHeadConfig has the same four).
    def covered_layout(self) -> Layout:
        return trunk_layout(self)

    def map_only_layout(self) -> Layout:
        return covariance_layout(self)

    def fused(self, params: Dict[str, torch.Tensor], features: torch.Tensor, image: torch.Tensor, masks: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        return trunk(params, features, image, self, masks)

    def output(self, fused: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, upsample: bool = True) -> torch.Tensor:
        return output_map(fused, weight, bias, upsample)


def config_from_dict(values: dict):
    """The head config saved by ``to_dict``: a clip head's (``architecture: clip``) or the 2D one."""
    if values.get("architecture") == "clip":
        return ClipHeadConfig.from_dict(values)
    return HeadConfig(**values)


def trunk_layout(cfg: HeadConfig) -> Layout:
    """Trunk and mean branch, in forward order."""
    layout = conv_layout("proj", cfg.feature_channels, cfg.proj_channels, 1)
    channels = (cfg.proj_channels,) + cfg.decoder_channels
    for i in range(len(cfg.decoder_channels)):
        layout += conv_layout(f"block{i + 1}", channels[i], channels[i + 1], 3)
    layout += conv_layout("stem", 4, cfg.stem_channels, 3)
    layout += conv_layout("fuse", cfg.decoder_channels[-1] + cfg.stem_channels, cfg.fuse_channels, 1)
    layout += conv_layout("mean", cfg.fuse_channels, 1, 1)
    return layout


def covariance_layout(cfg: HeadConfig) -> Layout:
    return conv_layout("factor", cfg.fuse_channels, cfg.rank, 1) + conv_layout("diag", cfg.fuse_channels, 1, 1)


def pixel_unshuffle2(image: torch.Tensor) -> torch.Tensor:
    """[B, 1, H, W] -> [B, 4, H/2, W/2]: each 2x2 block of pixels becomes 4 channels."""
    height, width = int(image.shape[-2]), int(image.shape[-1])
    blocks = image.reshape(-1, 1, height // 2, 2, width // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return blocks.reshape(-1, 4, height // 2, width // 2)


def trunk(
    params: Dict[str, torch.Tensor],
    features: torch.Tensor,
    image: torch.Tensor,
    cfg: HeadConfig,
    masks: Optional[Dict[str, torch.Tensor]] = None,
) -> torch.Tensor:
    """Fused features [B, fuse_channels, H/2, W/2] (112x112 for a 224x224 image).

    B is the image batch (shared weights), m (per-sample weights, one image) or k (dropout
    masks, ``masks[name]`` [k, C] after layer ``name``, broadcast over one image). A layer before the
    first per-sample weights or mask runs once; its output broadcasts.
    """
    masks = masks or {}

    def layer(name: str, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(conv(x, params[f"{name}.weight"], params[f"{name}.bias"]))
        return x * masks[name][:, :, None, None] if name in masks else x

    x = F.relu(conv(features, params["proj.weight"], params["proj.bias"]))
    blocks = len(cfg.decoder_channels)
    for i in range(blocks):
        x = layer(f"block{i + 1}", x)
        if i + 1 < blocks:
            x = upsample2(x)
    stem = layer("stem", pixel_unshuffle2(image))
    return layer("fuse", torch.cat(torch.broadcast_tensors(x, stem), dim=1))


def output_map(fused: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, upsample: bool = True) -> torch.Tensor:
    """1x1 output layer: [B, C, H*W], upsampled to full resolution unless ``upsample`` is False (then at the fused
    features' resolution, half of it)."""
    maps = conv(fused, weight, bias)
    return (upsample2(maps) if upsample else maps).flatten(2)


def mean_logits(cfg, params: Dict[str, torch.Tensor], fused: torch.Tensor, upsample: bool = True) -> torch.Tensor:
    """[B, pixels] foreground logits."""
    return cfg.output(fused, params["mean.weight"], params["mean.bias"], upsample)[:, 0]


class LaplaceHead(nn.Module):
    """SSN head: logits ~ N(logit_mean, cov_factor^T cov_factor + diag(cov_diag))."""

    def __init__(self, cfg: HeadConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.covered_layout = cfg.covered_layout()
        self.map_only_layout = cfg.map_only_layout()
        generator = torch.Generator().manual_seed(seed)
        self.covered = nn.Parameter(init_vector(self.covered_layout, generator))
        map_only = init_vector(self.map_only_layout, generator)
        # Start with a small, near-isotropic covariance so early SSN samples stay close to the mean.
        map_only = map_only * 0.1
        diag_bias = unflatten(map_only, self.map_only_layout)["diag.bias"]
        diag_bias.fill_(-3.0)
        self.map_only = nn.Parameter(map_only)

    @property
    def covered_count(self) -> int:
        return self.covered.numel()

    def sampled_offset(self, first_layer: Optional[str]) -> int:
        """Flat offset in ``covered`` of ``first_layer``'s weight (None: 0, every covered layer sampled)."""
        return 0 if first_layer is None else layout_offset(self.covered_layout, f"{first_layer}.weight")

    def params_with(self, sampled: torch.Tensor, offset: int = 0) -> Dict[str, torch.Tensor]:
        """Covered parameters: the MAP's before flat offset ``offset`` (shared), ``sampled`` [.., P - offset] from it on."""
        before, after = split_layout(self.covered_layout, offset)
        return unflatten(self.covered[:offset], before) | unflatten(sampled, after)

    def forward_with(self, covered: torch.Tensor, features: torch.Tensor, image: torch.Tensor, offset: int = 0, upsample: bool = True):
        """``covered`` [P - offset] (features/image batch B) or [m, P - offset] (one image, m weight samples):
        the covered weights from flat offset ``offset`` on; the layers before it are the MAP's, run once.

        Returns logit_mean [B|m, HW], cov_factor [B|m, r, HW], cov_diag [B|m, HW]; HW is the full resolution's
        pixels, or a quarter of them without ``upsample``.
        """
        params = self.params_with(covered, offset)
        fused = self.cfg.fused(params, features, image)
        cov = unflatten(self.map_only, self.map_only_layout)
        factor = self.cfg.output(fused, cov["factor.weight"], cov["factor.bias"], upsample)
        diag = F.softplus(self.cfg.output(fused, cov["diag.weight"], cov["diag.bias"], upsample)[:, 0]) + self.cfg.diag_floor
        mean = mean_logits(self.cfg, params, fused, upsample)
        # Sampling the mean layer alone leaves the covariance maps shared by every sample.
        return mean, factor.expand(mean.shape[0], -1, -1), diag.expand(mean.shape[0], -1)

    def mean_only(self, covered: torch.Tensor, features: torch.Tensor, image: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """logit_mean alone (what the GGN differentiates), ``covered`` as in ``forward_with``."""
        params = self.params_with(covered, offset)
        return mean_logits(self.cfg, params, self.cfg.fused(params, features, image))

    def forward(self, features: torch.Tensor, image: torch.Tensor):
        return self.forward_with(self.covered, features, image)


class DropoutHead(nn.Module):
    """MC-dropout head: channel dropout after the layers ``cfg.dropout_after`` names, active at inference."""

    def __init__(self, cfg: HeadConfig, seed: int = 0) -> None:
        super().__init__()
        self.cfg = cfg
        self.layout = cfg.covered_layout()
        self.weights = nn.Parameter(init_vector(self.layout, torch.Generator().manual_seed(seed)))

    def forward(self, features: torch.Tensor, image: torch.Tensor, masks: torch.Tensor, upsample: bool = True, layers: Optional[Tuple[str, ...]] = None) -> torch.Tensor:
        """masks [B|k, Md] of ``layers`` (default ``cfg.dropout_after``; training: ``cfg.training_layers``) -> logits
        [B|k, HW] (``upsample`` as in ``LaplaceHead.forward_with``)."""
        layers = self.cfg.dropout_after if layers is None else layers
        parts = torch.split(masks, [self.cfg.layer_channels[name] for name in layers], dim=1)
        params = unflatten(self.weights, self.layout)
        return mean_logits(self.cfg, params, self.cfg.fused(params, features, image, dict(zip(layers, parts))), upsample)


def random_masks(count: int, cfg: HeadConfig, generator: Optional[torch.Generator] = None, layers: Optional[Tuple[str, ...]] = None) -> torch.Tensor:
    """[count, Md] channel masks of ``layers`` (default: the ``cfg.mask_count`` sampled ones): 0 with probability
    ``dropout_rate``, else 1/(1 - rate)."""
    width = cfg.mask_count if layers is None else sum(cfg.layer_channels[name] for name in layers)
    keep = torch.rand(count, width, generator=generator) >= cfg.dropout_rate
    return keep.float() / (1.0 - cfg.dropout_rate)


def parameter_counts(cfg: HeadConfig) -> Dict[str, int]:
    covered = layout_size(trunk_layout(cfg))
    return {
        "laplace_covered": covered,
        "laplace_map_only": layout_size(covariance_layout(cfg)),
        "dropout": covered,
    }
