"""The 3D (clip) architecture of the L-FUSION heads: per-frame encoder features stacked over time.

A clip is T frames; its input is the frozen 2D encoder's features of every frame, ``[T, F, g, g]``
(the 2D encoder as a proxy for a 3D foundation model, as in the paper), and the normalised frames
``[T, 1, 224, 224]``. The trunk mirrors the 2D one with Conv3d: a 1x1x1 projection, decoder blocks
of a factorised 3D convolution (a (1,3,3) spatial conv + ReLU, then a (3,1,1) temporal conv + ReLU)
with 2x spatial bilinear upsampling between blocks (14 -> 28 -> 56), a stem on the
pixel-unshuffled frames (224 -> 16 x 56 x 56 per frame, a (1,3,3) conv: the skip path), a 1x1x1
fusion and 1x1x1 outputs. Every output is ``S x S`` per frame (S = 56), flattened frame-major:
``L = T * S * S``, index ``t * S * S + y * S + x``.

``ClipHeadConfig`` gives this architecture through the four methods that ``lfusion.heads``'
``LaplaceHead`` (SSN, Laplace over the covered weights) and ``DropoutHead`` (channel dropout after
every decoder block, masks as inputs) are written against, so both heads, their functional
per-sample weights (``lfusion.layers.conv`` with [m, ...] weights: batched MatMuls in ONNX, m dynamic), the GGN,
training, calibration and export are the 2D code. Inputs may carry a clip batch axis
(``[B, T, F, g, g]``, shared weights) or not (one clip, as in the exported graphs).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from lfusion.layers import Layout, conv, conv_layout, upsample2

SPATIAL, TEMPORAL, POINT = (1, 3, 3), (3, 1, 1), (1, 1, 1)


@dataclass
class ClipHeadConfig:
    feature_channels: int = 576
    proj_channels: int = 32
    decoder_channels: Tuple[int, ...] = (32, 16, 8)
    stem_channels: int = 8
    fuse_channels: int = 16
    rank: int = 10
    diag_floor: float = 1e-4
    dropout_rate: float = 0.2
    grid: int = 14  # encoder feature grid
    image_size: int = 224

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.image_size % self.output_size != 0:
            raise ValueError(f"image size {self.image_size} is not a multiple of the output size {self.output_size}")

    @property
    def output_size(self) -> int:
        """S: the decoder doubles the grid between blocks."""
        return self.grid * 2 ** (len(self.decoder_channels) - 1)

    @property
    def unshuffle(self) -> int:
        return self.image_size // self.output_size

    @property
    def layer_channels(self) -> Dict[str, int]:
        """Output channels of the layers a mask follows: the clip Dropout head drops channels after every decoder block,
        in training and at inference."""
        return {f"block{i + 1}": c for i, c in enumerate(self.decoder_channels)}

    @property
    def dropout_after(self) -> Tuple[str, ...]:
        return tuple(self.layer_channels)

    training_layers = dropout_after

    @property
    def mask_count(self) -> int:
        return sum(self.decoder_channels)

    def to_dict(self) -> dict:
        return asdict(self) | {"architecture": "clip"}

    @classmethod
    def from_dict(cls, values: dict) -> "ClipHeadConfig":
        return cls(**{k: v for k, v in values.items() if k != "architecture"})

    def covered_layout(self) -> Layout:
        """Trunk and mean branch, in forward order."""
        layout = conv_layout("proj", self.feature_channels, self.proj_channels, POINT)
        channels = (self.proj_channels,) + self.decoder_channels
        for i in range(len(self.decoder_channels)):
            layout += conv_layout(f"block{i + 1}.spatial", channels[i], channels[i + 1], SPATIAL)
            layout += conv_layout(f"block{i + 1}.temporal", channels[i + 1], channels[i + 1], TEMPORAL)
        layout += conv_layout("stem", self.unshuffle**2, self.stem_channels, SPATIAL)
        layout += conv_layout("fuse", self.decoder_channels[-1] + self.stem_channels, self.fuse_channels, POINT)
        return layout + conv_layout("mean", self.fuse_channels, 1, POINT)

    def map_only_layout(self) -> Layout:
        return conv_layout("factor", self.fuse_channels, self.rank, POINT) + conv_layout("diag", self.fuse_channels, 1, POINT)

    def fused(self, params: Dict[str, torch.Tensor], features: torch.Tensor, image: torch.Tensor, masks: Optional[Dict[str, torch.Tensor]] = None) -> torch.Tensor:
        """[B, fuse_channels, T, S, S] from features [B, T, F, g, g] | [T, F, g, g] and frames [B, T, 1, H, W] | [T, 1, H, W]."""
        if features.dim() == 4:
            features, image = features[None], image[None]
        x = F.relu(conv(features.transpose(1, 2), params["proj.weight"], params["proj.bias"]))
        blocks = len(self.decoder_channels)
        for i in range(blocks):
            x = F.relu(conv(x, params[f"block{i + 1}.spatial.weight"], params[f"block{i + 1}.spatial.bias"]))
            x = F.relu(conv(x, params[f"block{i + 1}.temporal.weight"], params[f"block{i + 1}.temporal.bias"]))
            if masks is not None:
                x = x * masks[f"block{i + 1}"][:, :, None, None, None]
            if i + 1 < blocks:
                x = upsample_spatial(x)
        stem = F.relu(conv(pixel_unshuffle_frames(image, self.unshuffle), params["stem.weight"], params["stem.bias"]))
        stem = stem.expand(x.shape[0], -1, -1, -1, -1)
        return F.relu(conv(torch.cat([x, stem], dim=1), params["fuse.weight"], params["fuse.bias"]))

    def output(self, fused: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, upsample: bool = True) -> torch.Tensor:
        """1x1x1 output layer: [B, C, L], L frame-major, at ``output_size`` (no final upsampling to leave out)."""
        if not upsample:
            raise ValueError("the clip heads' maps are at output_size already: upsample=False does not apply")
        return conv(fused, weight, bias).flatten(2)


def upsample_spatial(x: torch.Tensor) -> torch.Tensor:
    """[B, C, T, H, W] -> [B, C, T, 2H, 2W], bilinear per frame (time untouched)."""
    channels, frames, height, width = (int(s) for s in x.shape[1:])
    return upsample2(x.reshape(-1, channels * frames, height, width)).reshape(-1, channels, frames, 2 * height, 2 * width)


def pixel_unshuffle_frames(image: torch.Tensor, factor: int) -> torch.Tensor:
    """[B, T, 1, H, W] -> [B, factor^2, T, H/factor, W/factor]: each factor x factor block becomes channels."""
    frames, height, width = int(image.shape[1]), int(image.shape[-2]), int(image.shape[-1])
    blocks = image.reshape(-1, frames, height // factor, factor, width // factor, factor).permute(0, 3, 5, 1, 2, 4)
    return blocks.reshape(-1, factor * factor, frames, height // factor, width // factor)
