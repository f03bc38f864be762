"""The full L-FUSION inference of one frame in PyTorch, exactly as the exported package runs it.

Used by calibration, evaluation and the reference vectors (any dtype: float32 for the first
two, float64 for the references), on the trained models that ``bundle_from_build`` and
``clip_bundle_from_build`` load from ``build/``. The heads run through the same per-sample functional forward
that is exported to ONNX; the measures come from ``lfusion.measures``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

from lfusion.data import normalize
from lfusion.features import load_encoder_or_random, read_json
from lfusion.heads import DropoutHead, LaplaceHead
from lfusion.laplace import load_posterior, sample_weights
from lfusion.measures import aggregate, fused_map, laplace_logit_samples, sample_measures, select_map, stack_measures, unstack_measures, upsample_maps
from lfusion.sdk_draws import DrawDimensions, draw_samples

AUXILIARY_MAP = "laplace.mutual_information"
IMAGE_SIDE = 224
# The 2D package's heads leave out their final 2x upsampling and the measures are upsampled instead: 3-5x less
# work in the heads and measures graphs for a measured cost of 0.003 Dice points and at most 0.002 AUROC on the
# test split and its OOD sets (docs/results.md, "Measures at the heads' resolution").
HALF_MAPS = True


@dataclass
class Bundle:
    encoder: torch.nn.Module
    laplace: LaplaceHead
    sigma: torch.Tensor
    prior_precision: float
    dropout: DropoutHead
    sampled_offset: int = 0  # the posterior samples the covered weights from this flat offset on (LaplaceHead.forward_with)
    half_maps: bool = False  # the heads' maps at half resolution, the measures upsampled (2D heads only)

    @property
    def map_pixels(self) -> int:
        """Pixels of each 2D head output map."""
        side = IMAGE_SIDE // 2 if self.half_maps else IMAGE_SIDE
        return side * side

    @property
    def sampled_count(self) -> int:
        return int(self.sigma.numel())

    def weight_samples(self, noise: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
        """[m, sampled_count] weight samples of the posterior's layers (new tensor)."""
        return sample_weights(self.laplace.covered[self.sampled_offset :], self.sigma, noise, scale)

    def to(self, dtype: torch.dtype) -> "Bundle":
        """A converted deep copy (the original's parameters stay as they are)."""
        return Bundle(
            copy.deepcopy(self.encoder).to(dtype),
            copy.deepcopy(self.laplace).to(dtype),
            self.sigma.to(dtype),
            self.prior_precision,
            copy.deepcopy(self.dropout).to(dtype),
            self.sampled_offset,
            self.half_maps,
        )


def load_bundle(encoder: torch.nn.Module, laplace_head: Path, posterior: Path, dropout_head: Path, half_maps: bool = False) -> Bundle:
    from lfusion.train_heads import load_head

    laplace, _ = load_head(laplace_head)
    dropout, _ = load_head(dropout_head)
    fitted = load_posterior(posterior)
    for module in (encoder, laplace, dropout):
        module.eval()
        for parameter in module.parameters():
            parameter.requires_grad_(False)
    return Bundle(encoder, laplace, fitted["sigma"].float(), float(fitted["prior_precision"]), dropout, int(fitted.get("sampled_offset", 0)), half_maps)


def bundle_from_build(build: Path, encoder_path: Optional[Path], seed: int, half_maps: bool = HALF_MAPS) -> Bundle:
    """The trained 2D models in ``build``; the encoder must be the one the feature cache was built with."""

    encoder, encoder_sha = load_encoder_or_random(encoder_path, seed)
    cached = (read_json(build / "features" / "meta.json") or {}).get("encoder_sha256")
    if cached is not None and cached != encoder_sha:
        raise ValueError(f"encoder {encoder_path} (sha256 {encoder_sha}) is not the one build/features was made with ({cached}): rebuild the features")
    return load_bundle(encoder, build / "heads" / "laplace.pt", build / "laplace" / "posterior.pt", build / "heads" / "dropout.pt", half_maps)


def clip_bundle_from_build(build: Path, encoder_path: Optional[Path], seed: int, encoder: Optional[torch.nn.Module] = None) -> Optional[Bundle]:
    """The trained clip models in ``build/clips`` (None when absent), on ``encoder`` or the one at ``encoder_path``."""
    clips = build / "clips"
    paths = (clips / "heads" / "laplace.pt", clips / "laplace" / "posterior.pt", clips / "heads" / "dropout.pt")
    if not all(path.exists() for path in paths):
        return None
    if encoder is None:
        encoder, encoder_sha = load_encoder_or_random(encoder_path, seed)
        cached = (read_json(clips / "features" / "meta.json") or {}).get("encoder_sha256")
        if cached is not None and cached != encoder_sha:
            raise ValueError(f"encoder {encoder_path} (sha256 {encoder_sha}) is not the one build/clips/features was made with ({cached})")
    return load_bundle(encoder, *paths)



@dataclass
class Draws:
    """Standard-normal and dropout draws for one frame (fixed across frames = common random numbers)."""

    weight_noise: torch.Tensor  # [m, Pw]
    factor_noise: torch.Tensor  # [m, n, r]
    diag_noise: torch.Tensor  # [m, n, HW]
    dropout_masks: torch.Tensor  # [k, Md]

    def to(self, dtype: torch.dtype) -> "Draws":
        return Draws(*(t.to(dtype) for t in (self.weight_noise, self.factor_noise, self.diag_noise, self.dropout_masks)))


def make_draws(bundle: Bundle, m: int, n: int, k: int, seed: int, pixels: Optional[int] = None) -> Draws:
    """The SDK's own draws for ``seed`` (``lfusion.sdk_draws``): with common random numbers an image-level
    score carries its draws' offset, so calibration, evaluation and the reference vectors use exactly the
    numbers the SDK draws by default. ``pixels``: of the heads' maps (default: the 2D bundle's ``map_pixels``)."""
    pixels = bundle.map_pixels if pixels is None else pixels
    dims = DrawDimensions(bundle.sampled_count, bundle.laplace.cfg.rank, bundle.dropout.cfg.mask_count, bundle.dropout.cfg.dropout_rate, pixels)
    arrays = draw_samples(seed, m, n, k, dims)
    return Draws(*(torch.from_numpy(arrays[name]) for name in ("weight_noise", "factor_noise", "diag_noise", "dropout_masks")))


def image_input(image224: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [224, 224] -> normalised [1, 1, 224, 224]."""
    return torch.from_numpy(normalize(image224)).to(dtype)[None, None]


@torch.no_grad()
def run_frame(
    bundle: Bundle,
    image: torch.Tensor,
    draws: Draws,
    posterior_scale: float = 1.0,
    features: Optional[torch.Tensor] = None,
    ood_map: str = "fused",
    aggregation: str = "mean",
) -> Dict[str, object]:
    """Everything the package computes for one normalised image [1, 1, 224, 224]: the heads' outputs, the measures
    graph's maps (``laplace_maps``/``dropout_maps``, at the heads' resolution), the per-path measures at full
    resolution (``laplace``/``dropout``: upsampled from those with ``half_maps``, as the SDK does), fused map, score."""
    if features is None:
        features = bundle.encoder.forward_features(image)
    scale = torch.tensor([posterior_scale], dtype=image.dtype)
    thetas = bundle.weight_samples(draws.weight_noise, scale)
    full = not bundle.half_maps
    logit_mean, cov_factor, cov_diag = bundle.laplace.forward_with(thetas, features, image, bundle.sampled_offset, upsample=full)
    dropout_logits = bundle.dropout(features, image, draws.dropout_masks, upsample=full)
    eta = laplace_logit_samples(logit_mean, cov_factor, cov_diag, draws.factor_noise, draws.diag_noise)
    # The measures graph's maps (at the heads' resolution), then at full resolution as the SDK upsamples them.
    graph_maps = {"laplace": stack_measures(sample_measures(eta)), "dropout": stack_measures(sample_measures(dropout_logits))}
    laplace, dropout = (unstack_measures(maps if full else upsample_maps(maps)) for maps in graph_maps.values())
    fused = fused_map(laplace, dropout, select_map(AUXILIARY_MAP, laplace, dropout, None))
    score = aggregate(select_map(ood_map, laplace, dropout, fused), aggregation)
    return {
        "features": features,
        "logit_mean": logit_mean,
        "cov_factor": cov_factor,
        "cov_diag": cov_diag,
        "dropout_logits": dropout_logits,
        "laplace_maps": graph_maps["laplace"],
        "dropout_maps": graph_maps["dropout"],
        "laplace": laplace,
        "dropout": dropout,
        "fused": fused,
        "ood_score": score,
    }


def segmentation(result: Dict[str, object]) -> torch.Tensor:
    """The L-FUSION mask [HW]: the two paths' averaged mean probability above 0.5."""
    return 0.5 * (result["laplace"]["mean_prob"] + result["dropout"]["mean_prob"]) > 0.5
