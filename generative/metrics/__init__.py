"""Metrics: two-sample distances for 2-D sets, feature-space metrics for images.

lowdim (sliced Wasserstein, MMD, the share of samples near known mode centres and the smallest
mode's share), frechet (Fréchet distance, FID / IS / KID over any features),
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
from generative.metrics.lowdim import (
    mmd,
    mode_shares,
    sliced_wasserstein,
    smallest_share_ratio,
    wasserstein_1d,
)
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
    "mode_shares",
    "prdc",
    "sliced_wasserstein",
    "smallest_share_ratio",
    "train_digit_classifier",
    "wasserstein_1d",
]
