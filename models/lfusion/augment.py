"""Training augmentations: the paper's (``AugmentConfig()``) and real sweeps' (``SWEEP``).

One affine resampling does everything geometric: a random crop whose side is 80-100% of
the image (then resized back to 224), rotation, isotropic scale, shift and a horizontal
flip. Intensities get a random gain and a gamma (contrast) change. Areas brought in from
outside the image are black, like the region outside an ultrasound fan.

``SWEEP`` adds what frames of a live sweep or a scanner-screen recording show (issue 16):
rotation over the full circle, zoom, shifts that carry the head partly out of view, black
sector (fan) borders and black wedges, stronger gain and contrast changes, speckle and
block compression (JPEG, standing in for video coding). The head mask follows the geometry
only: where a fan border or wedge blacks out part of the head, the mask keeps it, as the
sonographer's ellipse would. Every extra step is off in ``AugmentConfig()`` and draws no
random numbers there, so the paper's augmentation (and runs resumed with it) is unchanged.
"""
from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
from PIL import Image
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
    # Real-sweep steps (off here, on in SWEEP), each applied with its probability.
    sector_probability: float = 0.0  # black outside a fan whose apex lies above the image
    sector_half_angle_deg: Tuple[float, float] = (30.0, 50.0)
    wedge_probability: float = 0.0  # a black wedge from a random point on the border
    wedge_angle_deg: Tuple[float, float] = (10.0, 40.0)
    speckle_probability: float = 0.0  # multiplicative, spatially correlated noise
    speckle_strength: Tuple[float, float] = (0.1, 0.4)  # standard deviation of the multiplier
    compression_probability: float = 0.0  # JPEG round trip
    compression_quality: Tuple[int, int] = (15, 60)


# Frames of a real sweep or a scanner-screen recording (issue 16, item 2).
SWEEP = AugmentConfig(
    max_rotation_deg=180.0,
    scale_range=(0.7, 1.35),
    max_shift=0.25,
    gain_range=(0.6, 1.6),
    gamma_range=(0.7, 1.45),
    sector_probability=0.5,
    wedge_probability=0.3,
    speckle_probability=0.5,
    compression_probability=0.5,
)


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


def sector_mask(size: int, apex_row: float, apex_col: float, half_angle: float, radius: Tuple[float, float]) -> np.ndarray:
    """Boolean [size, size]: inside the fan of a sector probe (apex (row, col), opening downwards,
    ``half_angle`` radians either side of the vertical, between the two radii in pixels)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = rows - apex_row, cols - apex_col
    distance = np.hypot(dy, dx)
    return (np.abs(np.arctan2(dx, dy)) <= half_angle) & (distance >= radius[0]) & (distance <= radius[1])


def wedge_mask(size: int, apex_row: float, apex_col: float, direction: float, half_angle: float) -> np.ndarray:
    """Boolean [size, size]: the wedge from (row, col) around ``direction`` (radians, 0 = down)."""
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = np.arctan2(cols - apex_col, rows - apex_row) - direction
    return np.abs(np.angle(np.exp(1j * angle))) <= half_angle


def random_sector(rng: np.random.Generator, size: int, cfg: AugmentConfig) -> np.ndarray:
    """A fan that covers most of the frame: apex above the top edge, far radius beyond the bottom."""
    half_angle = math.radians(rng.uniform(*cfg.sector_half_angle_deg))
    apex_row = -rng.uniform(0.05, 0.4) * size
    apex_col = (0.5 + rng.uniform(-0.1, 0.1)) * size
    near = rng.uniform(0.0, 0.15) * size - apex_row
    far = rng.uniform(1.0, 1.3) * size - apex_row
    return sector_mask(size, apex_row, apex_col, half_angle, (max(0.0, near), far))


def random_wedge(rng: np.random.Generator, size: int, cfg: AugmentConfig) -> np.ndarray:
    """A wedge pointing into the frame from a random point of its border."""
    side, along = int(rng.integers(4)), rng.uniform(0, size - 1)
    # (apex row, apex col, direction into the frame) on the top, bottom, left and right edges.
    apex_row, apex_col, inward = ((0.0, along, 0.0), (size - 1.0, along, math.pi), (along, 0.0, math.pi / 2), (along, size - 1.0, -math.pi / 2))[side]
    direction = inward + math.radians(rng.uniform(-45.0, 45.0))
    return wedge_mask(size, apex_row, apex_col, direction, math.radians(rng.uniform(*cfg.wedge_angle_deg)) / 2)


def speckle(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """uint8 -> uint8: pixels times a mean-1 field of correlated noise (about two pixels)."""
    field = ndimage.gaussian_filter(rng.standard_normal(image.shape).astype(np.float32), 1.0)
    field *= strength / (field.std() + 1e-6)
    return np.clip(np.rint(image.astype(np.float32) * (1.0 + field)), 0, 255).astype(np.uint8)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))


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
    # Each extra step draws its numbers only when it can happen (the paper's config draws none).
    if cfg.speckle_probability > 0 and rng.random() < cfg.speckle_probability:
        image = speckle(image, rng, rng.uniform(*cfg.speckle_strength))
    if cfg.sector_probability > 0 and rng.random() < cfg.sector_probability:
        image = np.where(random_sector(rng, size, cfg), image, 0).astype(np.uint8)
    if cfg.wedge_probability > 0 and rng.random() < cfg.wedge_probability:
        image = np.where(random_wedge(rng, size, cfg), 0, image).astype(np.uint8)
    if cfg.compression_probability > 0 and rng.random() < cfg.compression_probability:
        image = jpeg_round_trip(image, int(rng.integers(cfg.compression_quality[0], cfg.compression_quality[1] + 1)))
    return image, mask


# By name, for the command lines (``lfusion.features --augmentation``).
AUGMENTATIONS = {"paper": AugmentConfig(), "sweep": SWEEP}
