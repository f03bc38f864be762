"""Functional layers on flat weight vectors, shared by the L-FUSION heads (``lfusion.heads``,
``lfusion.heads3d``) and the U-Net baselines (``lfusion.unet``).

Weights live in flat vectors; a ``Layout`` names each tensor and its shape in order, and
``unflatten`` turns a vector ``[P]`` into shared conv weights and a batch ``[m, P]`` into
per-sample weights. A layer with per-sample weights is computed as batched matrix products (the
3x3 case as a sum of nine shifted products): a grouped convolution whose group count would be m,
written so that m stays a dynamic dimension in ONNX (an ONNX Conv's ``group`` is a fixed
attribute). Parameters are never modified in place by sampling. ``conv`` works for 2D and 3D kernels.
"""
from __future__ import annotations

import itertools
import math
from typing import Dict, List, Tuple, Union

import torch
import torch.nn.functional as F

Layout = List[Tuple[str, Tuple[int, ...]]]
Kernel = Union[int, Tuple[int, ...]]


def conv_layout(name: str, cin: int, cout: int, kernel: Kernel) -> Layout:
    """A conv layer's weight and bias; ``kernel`` is k (a k x k kernel) or a tuple of sizes per axis."""
    sizes = (kernel, kernel) if isinstance(kernel, int) else tuple(kernel)
    return [(f"{name}.weight", (cout, cin, *sizes)), (f"{name}.bias", (cout,))]


def layout_size(layout: Layout) -> int:
    return sum(int(torch.Size(shape).numel()) for _, shape in layout)


def split_layout(layout: Layout, offset: int) -> Tuple[Layout, Layout]:
    """The layout's tensors before flat offset ``offset`` and from it on (it must fall between two tensors)."""
    start = 0
    for index, (name, shape) in enumerate(layout):
        if start == offset:
            return layout[:index], layout[index:]
        start += int(torch.Size(shape).numel())
    if start == offset:
        return layout, []
    raise ValueError(f"offset {offset} is not at a tensor boundary of the layout")


def layout_offset(layout: Layout, name: str) -> int:
    """Flat offset of tensor ``name`` in the layout."""
    offset = 0
    for tensor, shape in layout:
        if tensor == name:
            return offset
        offset += int(torch.Size(shape).numel())
    raise KeyError(f"{name} is not in the layout ({', '.join(t for t, _ in layout)})")


def init_vector(layout: Layout, generator: torch.Generator) -> torch.Tensor:
    """He-normal weights (fan-in), zero biases, flattened in layout order."""
    parts = []
    for name, shape in layout:
        if name.endswith(".bias"):
            parts.append(torch.zeros(shape))
        else:
            fan_in = math.prod(shape[1:])
            parts.append(torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5)
    return torch.cat([p.flatten() for p in parts])


def unflatten(vector: torch.Tensor, layout: Layout) -> Dict[str, torch.Tensor]:
    """``[P]`` -> shared tensors; ``[m, P]`` -> per-sample tensors with a leading m axis."""
    lead = vector.shape[:-1]
    params, offset = {}, 0
    for name, shape in layout:
        size = int(torch.Size(shape).numel())
        params[name] = vector[..., offset : offset + size].reshape(*lead, *shape)
        offset += size
    return params


def conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Same-padded convolution over the trailing 2 or 3 axes of x [B, Cin, *spatial].

    ``weight`` is [Cout, Cin, *kernel] (shared) or [m, Cout, Cin, *kernel] (per sample; odd
    kernel sizes). With per-sample weights, x is [m, Cin, ...] or [1, Cin, ...] (shared input)
    and sample j of the output uses weight j: a grouped convolution with m groups. PyTorch runs
    it as one; an exported graph computes it as im2col + batched MatMul, because an ONNX Conv's
    ``group`` is a fixed attribute and m must stay dynamic. Tests and the ONNX parity check hold
    the two to the same result.
    """
    # Channel counts, kernel and spatial size are fixed per layer (int() keeps them constants in
    # an exported graph); only the sample axis is dynamic.
    spatial = x.dim() - 2
    kernel = tuple(int(k) for k in weight.shape[-spatial:])
    if spatial == 3 and kernel[1:] == (1, 1):
        # A (k, 1, 1) kernel is a 2D (k, 1) conv over [.., T, H*W]: PyTorch's CPU conv3d runs it ~10x slower.
        channels, frames, height, width = (int(s) for s in x.shape[1:])
        flat = conv(x.reshape(-1, channels, frames, height * width), weight.flatten(-2), bias)
        return flat.reshape(-1, int(flat.shape[1]), frames, height, width)
    padding = tuple(k // 2 for k in kernel)
    convolve = F.conv2d if spatial == 2 else F.conv3d
    if weight.dim() == spatial + 2:
        return convolve(x, weight, bias, padding=padding)
    samples, cout, cin = int(weight.shape[0]), int(weight.shape[1]), int(weight.shape[2])
    sizes = tuple(int(s) for s in x.shape[-spatial:])
    taps = math.prod(kernel)
    if torch.onnx.is_in_onnx_export():
        if taps == 1:
            columns = x.flatten(2)
        else:  # im2col from shifted slices (ONNX Runtime runs Slice+Concat far faster than unfold's Gathers)
            padded = F.pad(x, [p for half in reversed(padding) for p in (half, half)])
            windows = [
                padded[(slice(None), slice(None)) + tuple(slice(o, o + size) for o, size in zip(offset, sizes))]
                for offset in itertools.product(*(range(k) for k in kernel))
            ]
            columns = torch.stack(windows, dim=2).reshape(-1, cin * taps, math.prod(sizes))
        out = torch.matmul(weight.reshape(-1, cout, cin * taps), columns) + bias[:, :, None]
        return out.reshape(-1, cout, *sizes)
    grouped = x.expand(samples, *([-1] * (spatial + 1))).reshape(1, samples * cin, *sizes)
    out = convolve(grouped, weight.reshape(samples * cout, cin, *kernel), bias.reshape(-1), padding=padding, groups=samples)
    return out.reshape(samples, cout, *sizes)


def upsample2(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
