"""USFM/BEiT-style Vision Transformer used as the frozen L-FUSION foundation encoder.

The module layout (and so the state-dict key names) follows USFM (openmedlab/USFM), which
is BEiT's: ``patch_embed.proj``, ``cls_token``, ``blocks.N.{norm1,attn,norm2,mlp}``,
``blocks.N.attn.{qkv,q_bias,v_bias,relative_position_bias_table,relative_position_index,proj}``,
``blocks.N.{gamma_1,gamma_2}`` (layer scale) and a final ``norm``. Positions enter only
through the per-block relative position bias, as in USFM, so a subset of tokens (masked
image modelling) is handled by gathering the bias entries of the kept tokens.

The encoder takes one grey channel, normalised with ``lfusion.data.normalize``.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class EncoderConfig:
    """Architecture of the encoder.

    ``feature_blocks`` are 1-based block numbers: block k's output is the token grid after
    k transformer blocks. Their layer-normalised patch tokens are concatenated along the
    channel axis, so ``forward_features`` returns ``width * len(feature_blocks)`` channels.
    """

    img_size: int = 224
    patch: int = 16
    in_chans: int = 1
    width: int = 192
    depth: int = 6
    heads: int = 3
    mlp_ratio: float = 4.0
    layer_scale_init: float = 0.1
    feature_blocks: Tuple[int, ...] = (2, 4, 6)

    def __post_init__(self) -> None:
        self.feature_blocks = tuple(int(b) for b in self.feature_blocks)
        if self.img_size % self.patch != 0:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch {self.patch}")
        if self.width % self.heads != 0:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not self.feature_blocks or any(b < 1 or b > self.depth for b in self.feature_blocks):
            raise ValueError(f"feature_blocks {self.feature_blocks} must lie in 1..{self.depth}")

    @property
    def grid(self) -> int:
        return self.img_size // self.patch

    @property
    def feature_channels(self) -> int:
        return self.width * len(self.feature_blocks)


def relative_position_index(grid: int) -> torch.Tensor:
    """BEiT's [N+1, N+1] index into the bias table (N = grid*grid patches plus one cls token).

    Patch pairs index their 2-D offset; the last three entries are cls->token, token->cls
    and cls->cls.
    """
    coords = torch.stack(torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (grid - 1)
    num_offsets = (2 * grid - 1) ** 2
    index = torch.zeros(grid * grid + 1, grid * grid + 1, dtype=torch.long)
    index[1:, 1:] = offsets[..., 0] * (2 * grid - 1) + offsets[..., 1]
    index[0, 1:] = num_offsets
    index[1:, 0] = num_offsets + 1
    index[0, 0] = num_offsets + 2
    return index


def grid_positions(grid: int, full_grid: int) -> torch.Tensor:
    """Patch positions [grid*grid] of a smaller image's grid x grid patches in the encoder's
    full_grid x full_grid layout (top-left corner), so that the relative position bias sees
    their true offsets: how an image below ``img_size`` (progressive-resolution pretraining)
    uses the same bias table."""
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    return (rows * full_grid + cols).flatten()


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, grid: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (width // heads) ** -0.5
        self.qkv = nn.Linear(width, width * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * grid - 1) ** 2 + 3, heads))
        self.register_buffer("relative_position_index", relative_position_index(grid))
        self.proj = nn.Linear(width, width)

    def position_bias(self, positions: Optional[torch.Tensor]) -> torch.Tensor:
        """Bias [heads, L, L] for all tokens, or [B, heads, L, L] for the token positions [B, L]."""
        if positions is None:
            index = self.relative_position_index
            return self.relative_position_bias_table[index.reshape(-1)].reshape(*index.shape, -1).permute(2, 0, 1)
        index = self.relative_position_index[positions[:, :, None], positions[:, None, :]]
        return self.relative_position_bias_table[index].permute(0, 3, 1, 2)

    def forward(self, x: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        batch, length, width = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * self.scale) @ k.transpose(-2, -1) + self.position_bias(positions)
        out = attn.softmax(dim=-1) @ v
        return self.proj(out.transpose(1, 2).reshape(batch, length, width))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=1e-6)
        self.attn = Attention(cfg.width, cfg.heads, cfg.grid)
        self.norm2 = nn.LayerNorm(cfg.width, eps=1e-6)
        self.mlp = Mlp(cfg.width, int(cfg.width * cfg.mlp_ratio))
        self.gamma_1 = nn.Parameter(torch.full((cfg.width,), cfg.layer_scale_init))
        self.gamma_2 = nn.Parameter(torch.full((cfg.width,), cfg.layer_scale_init))

    def forward(self, x: torch.Tensor, positions: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x + self.gamma_1 * self.attn(self.norm1(x), positions)
        return x + self.gamma_2 * self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.proj = nn.Conv2d(cfg.in_chans, cfg.width, kernel_size=cfg.patch, stride=cfg.patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class USFMEncoder(nn.Module):
    """ViT-B/16-style encoder with relative position bias and layer scale (USFM/BEiT)."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for block in self.blocks:
            nn.init.trunc_normal_(block.attn.relative_position_bias_table, std=0.02)
        # BEiT's depth-dependent rescaling keeps the residual stream's variance bounded.
        for layer, block in enumerate(self.blocks, start=1):
            block.attn.proj.weight.data.div_((2.0 * layer) ** 0.5)
            block.mlp.fc2.weight.data.div_((2.0 * layer) ** 0.5)

    def tokens(self, x: torch.Tensor, keep: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Patch embedding plus cls token; with ``keep`` [B, K] only those patch indices."""
        patches = self.patch_embed(x)
        if keep is not None:
            patches = torch.gather(patches, 1, keep[:, :, None].expand(-1, -1, patches.shape[-1]))
        return torch.cat([self.cls_token.expand(patches.shape[0], -1, -1), patches], dim=1)

    def forward_visible(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Final-normed tokens [B, 1+K, width] seeing only the kept patches (masked image modelling).

        ``x`` may be smaller than ``img_size`` (a multiple of the patch): its patches take their
        offsets from ``grid_positions``."""
        patch_positions = grid_positions(x.shape[-1] // self.cfg.patch, self.cfg.grid)[keep]
        positions = torch.cat([torch.zeros_like(keep[:, :1]), patch_positions + 1], dim=1)
        tokens = self.tokens(x, keep)
        for block in self.blocks:
            tokens = block(tokens, positions)
        return self.norm(tokens)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Image [B, 1, H, W] -> concatenated, layer-normalised block features [B, F, grid, grid]."""
        grid = self.cfg.grid
        tokens = self.tokens(x)
        features = []
        for number, block in enumerate(self.blocks, start=1):
            tokens = block(tokens)
            if number in self.cfg.feature_blocks:
                patch_tokens = F.layer_norm(tokens[:, 1:], (self.cfg.width,), eps=1e-6)
                features.append(patch_tokens.transpose(1, 2).reshape(x.shape[0], self.cfg.width, grid, grid))
            if number == max(self.cfg.feature_blocks):
                break
        return torch.cat(features, dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)


def save_encoder(encoder: USFMEncoder, path: Path, meta: Optional[dict] = None, half: bool = True) -> None:
    """Writes the encoder weights (fp16 by default, to keep the committed file small) with its config."""
    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in encoder.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"config": asdict(encoder.cfg), "state_dict": state, "meta": meta or {}}, path)


def load_encoder(path: Path | str) -> Tuple[USFMEncoder, EncoderConfig]:
    """Loads a checkpoint written by ``save_encoder``: float32, frozen, in eval mode."""
    checkpoint = torch.load(str(path), map_location="cpu")
    cfg = EncoderConfig(**checkpoint["config"])
    encoder = USFMEncoder(cfg)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in checkpoint["state_dict"].items()}
    encoder.load_state_dict(state)
    return freeze(encoder), cfg


def freeze(encoder: USFMEncoder) -> USFMEncoder:
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return encoder


def export_encoder_onnx(encoder: USFMEncoder, path: Path | str, opset: int = 14) -> None:
    """ONNX graph with input ``image`` [B,1,H,W] and output ``features`` [B,F,grid,grid], dynamic batch."""
    cfg = encoder.cfg
    dummy = torch.zeros(1, cfg.in_chans, cfg.img_size, cfg.img_size)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            dummy,
            str(path),
            input_names=["image"],
            output_names=["features"],
            dynamic_axes={"image": {0: "batch"}, "features": {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    encoder.train(was_training)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Export an encoder checkpoint to ONNX.")
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--opset", type=int, default=14)
    args = parser.parse_args(argv)
    encoder, cfg = load_encoder(args.checkpoint)
    export_encoder_onnx(encoder, args.out, args.opset)
    print(json.dumps({"onnx": str(args.out), "config": asdict(cfg)}))


if __name__ == "__main__":
    main()
