"""Load real USFM weights (``USFM_latest.pth``, openmedlab/USFM) into the L-FUSION encoder.

USFM is a BEiT-style ViT-B/16 (width 768, depth 12, 12 heads, relative position bias,
layer scale) taking three channels. This module maps its checkpoint onto
``USFMEncoder`` with one grey input channel:

- The checkpoint may be a bare state dict or wrap it in ``model``/``state_dict``/``module``;
  ``module.``/``encoder.``/``backbone.`` key prefixes are stripped.
- A shared ``rel_pos_bias.relative_position_bias_table`` (BEiT pretraining option) is copied
  into every block, as USFM's own fine-tuning code does; stored ``relative_position_index``
  buffers are recomputed, not read.
- Pretraining-only keys (``mask_token``, ``lm_head.*``, ``head.*``, ``fc_norm.*``) are dropped;
  missing ``q_bias``/``v_bias`` become zeros and missing ``gamma_1``/``gamma_2`` ones
  (no layer scale). Any other unknown or missing key is an error.
- The RGB patch embedding becomes a grey one exactly: USFM sees the grey image copied to
  three channels and normalised per channel with ``rgb_mean``/``rgb_std``; that is folded into
  the kernel and bias so the encoder takes L-FUSION's normalised grey input
  (``lfusion.data.normalize``) and computes the same function.

CLI: ``python -m lfusion.usfm --weights USFM_latest.pth --out checkpoints/usfm_encoder.pt --onnx build/usfm_encoder.onnx``
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from .data import NORM_MEAN, NORM_STD
from .encoder import EncoderConfig, USFMEncoder, export_encoder_onnx, freeze, save_encoder

# timm's ImageNet statistics, which USFM's data transforms (USDSgen/data/transforms.py) use.
USFM_RGB_MEAN = (0.485, 0.456, 0.406)
USFM_RGB_STD = (0.229, 0.224, 0.225)
WRAPPER_KEYS = ("model", "state_dict", "module")
KEY_PREFIXES = ("module.", "encoder.", "backbone.")
PRETRAINING_ONLY_PREFIXES = ("mask_token", "lm_head.", "head.", "fc_norm.")


def usfm_config(feature_blocks: Tuple[int, ...] = (6, 8, 12)) -> EncoderConfig:
    """USFM's ViT-B/16 at 224x224; default features from blocks 6, 8, 12 (USFM's segmentation taps)."""
    return EncoderConfig(width=768, depth=12, heads=12, mlp_ratio=4.0, layer_scale_init=0.1, feature_blocks=feature_blocks)


def unwrap_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    state = checkpoint
    while isinstance(state, dict) and not any(torch.is_tensor(v) for v in state.values()):
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            raise ValueError(f"no state dict found in checkpoint with keys {sorted(state)[:10]}")
        state = inner
    out = {}
    for key, value in state.items():
        for prefix in KEY_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def grey_patch_embedding(
    weight: torch.Tensor,
    bias: torch.Tensor,
    rgb_mean: Sequence[float],
    rgb_std: Sequence[float],
) -> Tuple[torch.Tensor, torch.Tensor]:
    """RGB patch-embedding (kernel [C,3,p,p], bias [C]) -> grey one for L-FUSION's normalised input z.

    USFM's channel c sees (x - m_c)/s_c with x = z*NORM_STD + NORM_MEAN, so
    W' = sum_c W_c NORM_STD/s_c and b' = b + sum_c (NORM_MEAN - m_c)/s_c * sum(W_c).
    """
    std = torch.tensor(rgb_std, dtype=weight.dtype)[None, :, None, None]
    mean = torch.tensor(rgb_mean, dtype=weight.dtype)[None, :, None, None]
    grey_weight = (weight * NORM_STD / std).sum(dim=1, keepdim=True)
    grey_bias = bias + (weight * (NORM_MEAN - mean) / std).sum(dim=(1, 2, 3))
    return grey_weight, grey_bias


def convert_usfm_state(
    state: Dict[str, torch.Tensor],
    cfg: EncoderConfig,
    rgb_mean: Sequence[float] = USFM_RGB_MEAN,
    rgb_std: Sequence[float] = USFM_RGB_STD,
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """USFM key layout -> ``USFMEncoder(cfg)`` state dict; also returns notes on filled-in keys."""
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    notes: List[str] = []
    shared = state.pop("rel_pos_bias.relative_position_bias_table", None)
    if shared is not None:
        notes.append("shared relative position bias copied into every block")
        for block in range(cfg.depth):
            state.setdefault(f"blocks.{block}.attn.relative_position_bias_table", shared.clone())
    dropped = [k for k in state if k.startswith(PRETRAINING_ONLY_PREFIXES) or k.endswith("relative_position_index")]
    for key in dropped:
        del state[key]
    if state.get("pos_embed") is not None:
        raise ValueError("checkpoint has an absolute position embedding; USFM's encoder uses relative position bias only")

    weight, bias = grey_patch_embedding(state.pop("patch_embed.proj.weight"), state.pop("patch_embed.proj.bias"), rgb_mean, rgb_std)
    state["patch_embed.proj.weight"], state["patch_embed.proj.bias"] = weight, bias

    target = USFMEncoder(cfg).state_dict()
    for key, value in target.items():
        if key in state:
            continue
        if key.endswith(("attn.q_bias", "attn.v_bias")):
            state[key] = torch.zeros_like(value)
            notes.append(f"{key} missing: zeros")
        elif key.endswith(("gamma_1", "gamma_2")):
            state[key] = torch.ones_like(value)
            notes.append(f"{key} missing: ones (no layer scale)")
        elif key.endswith("relative_position_index"):
            state[key] = value
    unexpected = sorted(set(state) - set(target))
    missing = sorted(set(target) - set(state))
    if unexpected or missing:
        raise ValueError(f"USFM checkpoint does not match {cfg}: unexpected {unexpected[:8]}, missing {missing[:8]}")
    for key, value in target.items():
        if state[key].shape != value.shape:
            raise ValueError(f"{key}: checkpoint shape {tuple(state[key].shape)} != model shape {tuple(value.shape)}")
    return state, notes


def load_usfm(path: Path | str, cfg: Optional[EncoderConfig] = None) -> Tuple[USFMEncoder, EncoderConfig, List[str]]:
    """Frozen grey-input encoder with the weights of a USFM checkpoint."""
    cfg = cfg or usfm_config()
    checkpoint = torch.load(str(path), map_location="cpu")
    state, notes = convert_usfm_state(unwrap_state_dict(checkpoint), cfg)
    encoder = USFMEncoder(cfg)
    encoder.load_state_dict(state)
    return freeze(encoder), cfg, notes


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description="Convert USFM_latest.pth into an L-FUSION encoder checkpoint and ONNX graph.")
    parser.add_argument("--weights", type=Path, required=True, help="USFM_latest.pth")
    parser.add_argument("--out", type=Path, required=True, help="encoder checkpoint to write (lfusion.encoder format)")
    parser.add_argument("--onnx", type=Path, default=None, help="also export the encoder graph here")
    parser.add_argument("--feature-blocks", type=int, nargs="+", default=[6, 8, 12])
    parser.add_argument("--fp32", action="store_true", help="store float32 weights (default float16)")
    args = parser.parse_args(argv)
    encoder, cfg, notes = load_usfm(args.weights, usfm_config(tuple(args.feature_blocks)))
    save_encoder(encoder, args.out, meta={"source": str(args.weights), "notes": notes}, half=not args.fp32)
    if args.onnx is not None:
        export_encoder_onnx(encoder, args.onnx)
    print(json.dumps({"config": asdict(cfg), "notes": notes, "out": str(args.out), "onnx": str(args.onnx)}, indent=1))


if __name__ == "__main__":
    main()
