"""Training augmentations of the paper: linear transforms and random crops up to 80%.

One affine resampling does everything geometric: a random crop whose side is 80-100% of
the image (then resized back to 224), rotation, isotropic scale, shift and a horizontal
flip. Intensities get a random gain and a gamma (contrast) change. Areas brought in from
outside the image are black, like the region outside an ultrasound fan.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AugmentConfig:
    min_crop: float = 0.8  # smallest crop side, as a fraction of the image side
    max_rotation_deg: float = 20.0
    scale_range: Tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.08  # fraction of the image side
    flip_probability: float = 0.5
    gain_range: Tuple[float, float] = (0.8, 1.25)
    gamma_range: Tuple[float, float] = (0.8, 1.25)


def _log_uniform(rng: np.random.Generator, bounds: Tuple[float, float]) -> float:
    return float(math.exp(rng.uniform(math.log(bounds[0]), math.log(bounds[1]))))


def random_affine(rng: np.random.Generator, size: int, cfg: AugmentConfig) -> Tuple[np.ndarray, np.ndarray]:
    """(matrix, offset) mapping output (row, col) to input (row, col), for ``ndimage.affine_transform``."""
    crop = rng.uniform(cfg.min_crop, 1.0)
    # The crop window stays inside the image; its centre moves by at most the slack.
    slack = (1.0 - crop) * size / 2
    crop_centre = np.full(2, (size - 1) / 2) + rng.uniform(-slack, slack, size=2)
    angle = math.radians(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    scale = _log_uniform(rng, cfg.scale_range)
    shift = rng.uniform(-cfg.max_shift, cfg.max_shift, size=2) * size
    flip = -1.0 if rng.random() < cfg.flip_probability else 1.0
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    matrix = (crop / scale) * rotation @ np.diag([1.0, flip])
    out_centre = np.full(2, (size - 1) / 2)
    offset = crop_centre + shift - matrix @ out_centre
    return matrix, offset


def adjust_intensity(image: np.ndarray, gain: float, gamma: float) -> np.ndarray:
    """uint8 -> uint8: ``255 * gain * (pixel/255) ** gamma``, clipped."""
    scaled = gain * np.power(image.astype(np.float32) / 255.0, gamma)
    return np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)


def augment(
    image224: np.ndarray,
    mask224: Optional[np.ndarray],
    rng: np.random.Generator,
    cfg: AugmentConfig = AugmentConfig(),
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Randomly transformed (image, mask); the mask (nearest neighbour) may be ``None`` for unlabelled images."""
    size = image224.shape[0]
    matrix, offset = random_affine(rng, size, cfg)
    image = ndimage.affine_transform(image224.astype(np.float32), matrix, offset, order=1, mode="constant", cval=0.0)
    image = adjust_intensity(np.clip(np.rint(image), 0, 255).astype(np.uint8), _log_uniform(rng, cfg.gain_range), _log_uniform(rng, cfg.gamma_range))
    mask = None
    if mask224 is not None:
        mask = ndimage.affine_transform(mask224, matrix, offset, order=0, mode="constant", cval=0).astype(np.uint8)
    return image, mask
