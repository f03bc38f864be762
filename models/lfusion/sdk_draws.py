"""The SDK's random draws, reproduced bit for bit (``src/runtime/random.ts`` and ``src/runtime/draws.ts``).

With common random numbers the SDK reuses one set of draws for every frame, so an image-level OOD
score carries that set's particular offset. Calibrating the threshold with the very draws the SDK
uses by default (seed, m, n, k recorded in the manifest) makes the threshold mean the same thing at
run time. Generators: splitmix32 seeding, xoshiro128**, Marsaglia's polar normals, inverted-dropout
masks; one stream per (tensor, row, sub-row).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict

import numpy as np

_MASK = 0xFFFFFFFF
# Stream ids of src/runtime/draws.ts, one per graph input.
_STREAM = {"weight_noise": 1, "dropout_masks": 2, "factor_noise": 3, "diag_noise": 4}


def _splitmix32(state: int) -> tuple:
    state = (state + 0x9E3779B9) & _MASK
    z = state
    z = ((z ^ (z >> 16)) * 0x21F0AAAD) & _MASK
    z = ((z ^ (z >> 15)) * 0x735A2D97) & _MASK
    return state, z ^ (z >> 15)


def _fold(seed: int) -> int:
    return ((seed & _MASK) ^ _splitmix32((seed >> 32) & _MASK)[1]) & _MASK


def derive_seed(seed: int, *keys: int) -> int:
    """``deriveSeed`` of random.ts: an independent 32-bit seed from a seed and integer keys."""
    state = _fold(seed)
    for key in keys:
        state = _splitmix32(state ^ _fold(key))[1]
    return _splitmix32(state)[1]


class Xoshiro128:
    """xoshiro128** seeded through splitmix32, as ``Random`` in random.ts."""

    def __init__(self, seed: int) -> None:
        state = _fold(seed)
        words = []
        for _ in range(4):
            state, value = _splitmix32(state)
            words.append(value)
        self._s = words

    def next_uint32(self) -> int:
        s0, s1, s2, s3 = self._s
        result = (_rotl((s1 * 5) & _MASK, 7) * 9) & _MASK
        t = (s1 << 9) & _MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        self._s = [s0, s1, s2, _rotl(s3, 11)]
        return result

    def normals(self, count: int) -> np.ndarray:
        """Standard normals by the polar method, in the SDK's order (computed in float64, stored float32)."""
        out = np.empty(count, dtype=np.float64)
        i = 0
        while i < count:
            while True:
                u = self.next_uint32() / 2147483648 - 1
                v = self.next_uint32() / 2147483648 - 1
                s = u * u + v * v
                if 0 < s < 1:
                    break
            factor = math.sqrt(-2 * math.log(s) / s)
            out[i] = u * factor
            i += 1
            if i < count:
                out[i] = v * factor
                i += 1
        return out.astype(np.float32)

    def dropout_mask(self, count: int, rate: float) -> np.ndarray:
        kept = np.float32(1 / (1 - rate))
        uniforms = np.array([self.next_uint32() for _ in range(count)], dtype=np.float64) / 4294967296
        return np.where(uniforms < rate, np.float32(0), kept).astype(np.float32)


def _rotl(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


@dataclass(frozen=True)
class DrawDimensions:
    weight_count: int
    rank: int
    mask_count: int
    dropout_rate: float
    pixels: int = 224 * 224


def draw_samples(seed: int, m: int, n: int, k: int, dims: DrawDimensions) -> Dict[str, np.ndarray]:
    """``drawSamples`` of draws.ts: the graph inputs that carry randomness, as float32 arrays."""

    def normal_rows(stream: str, rows: int, sub_rows: int, width: int) -> np.ndarray:
        data = np.empty((rows, sub_rows, width), dtype=np.float32)
        for row in range(rows):
            for sub in range(sub_rows):
                data[row, sub] = Xoshiro128(derive_seed(seed, _STREAM[stream], row, sub)).normals(width)
        return data

    masks = np.stack([
        Xoshiro128(derive_seed(seed, _STREAM["dropout_masks"], p, 0)).dropout_mask(dims.mask_count, dims.dropout_rate)
        for p in range(k)
    ])
    return {
        "weight_noise": normal_rows("weight_noise", m, 1, dims.weight_count).reshape(m, dims.weight_count),
        "dropout_masks": masks,
        "factor_noise": normal_rows("factor_noise", m, n, dims.rank),
        "diag_noise": normal_rows("diag_noise", m, n, dims.pixels),
    }
