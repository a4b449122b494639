"""Metrics: two-sample distances for 2-D sets, feature-space metrics for images.

lowdim (sliced Wasserstein, MMD), frechet (Fréchet distance, FID / IS / KID over any features),
prdc (precision, recall, density, coverage), digit_classifier (the project's own feature extractor
for digits) and inception (a Flax Inception-v3 loading user-supplied weights).
"""

from generative.metrics.digit_classifier import (
    digit_features,
    digit_logits,
    train_digit_classifier,
)
from generative.metrics.frechet import (
    extract_features,
    fid,
    frechet_distance,
    gaussian_statistics,
    inception_score,
    kid,
)
from generative.metrics.lowdim import mmd, sliced_wasserstein, wasserstein_1d
from generative.metrics.prdc import prdc

__all__ = [
    "digit_features",
    "digit_logits",
    "extract_features",
    "fid",
    "frechet_distance",
    "gaussian_statistics",
    "inception_score",
    "kid",
    "mmd",
    "prdc",
    "sliced_wasserstein",
    "train_digit_classifier",
    "wasserstein_1d",
]
