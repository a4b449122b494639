"""Feature-space image metrics over any feature extractor: Fréchet distance (FID), IS and KID.

* Fréchet distance between N(mu1, C1) and N(mu2, C2) (Dowson and Landau 1982; FID, Heusel et al.
  2017): d^2 = |mu1 - mu2|^2 + tr(C1 + C2 - 2 (C1 C2)^{1/2}). C1 C2 is not symmetric, so instead of
  a general matrix square root we factor C_i = A_i^T A_i (eigendecomposition, negative rounding
  clipped to 0): the eigenvalues of C1 C2 are those of M M^T with M = A1 A2^T, so
  tr (C1 C2)^{1/2} is the sum of the singular values of M. Unlike square roots of eigenvalues,
  singular values carry only absolute rounding errors of order eps |M|, so identical or
  rank-deficient statistics (dead features) give 0 to about 1e-15 relative to the traces. All in
  float64 numpy (JAX runs in float32 here; 2048-d statistics need the precision). Covariances use
  ddof = 1.
* Inception score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), p(y) the split's mean of
  p(y|x); mean and standard deviation over ``num_splits`` equal splits.
* Kernel inception distance (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial
  kernel k(a, b) = (a . b / d + 1)^3, averaged over ``num_subsets`` random subsets of
  ``subset_size`` points of each sample.

"FID" here means the Fréchet distance in whatever feature space the caller picks: the digit
classifier (generative.metrics.digit_classifier) or Inception-v3 pool3
(generative.metrics.inception).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from generative.metrics.lowdim import mmd_from_kernels


def gaussian_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [F] and covariance [F, F] (ddof = 1) of features [N, F], in float64."""
    features = np.asarray(features, np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise ValueError(f"features must be [N >= 2, F], got shape {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False)


def _psd_factor(cov: np.ndarray) -> np.ndarray:
    """A with A^T A = cov, from the eigendecomposition (negative rounding clipped to 0)."""
    eigenvalues, vectors = np.linalg.eigh((cov + cov.T) / 2)
    return np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * vectors.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    dim = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu2.shape != (dim,) or cov1.shape != (dim, dim) or cov2.shape != (dim, dim):
        raise ValueError(
            f"expected mu [F] and cov [F, F] for both Gaussians, got {mu1.shape}, {cov1.shape}, "
            f"{mu2.shape}, {cov2.shape}"
        )
    trace_sqrt = np.linalg.svd(_psd_factor(cov1) @ _psd_factor(cov2).T, compute_uv=False).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * trace_sqrt)


def fid(real_features: np.ndarray, fake_features: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, F] and [M, F]."""
    return frechet_distance(
        *gaussian_statistics(real_features), *gaussian_statistics(fake_features)
    )


def inception_score(logits: np.ndarray, num_splits: int = 10) -> tuple[float, float]:
    """(mean, std) over splits of exp(E KL(p(y|x) || p(y))) from class logits [N, K]."""
    logits = np.asarray(logits, np.float64)
    if logits.ndim != 2 or not 1 <= num_splits <= logits.shape[0]:
        raise ValueError(f"need logits [N, K] with N >= num_splits={num_splits}: {logits.shape}")
    log_p = logits - np.logaddexp.reduce(logits, axis=1, keepdims=True)
    scores = []
    for part in np.array_split(log_p, num_splits):
        log_marginal = np.log(np.mean(np.exp(part), axis=0))
        kl = np.sum(np.exp(part) * (part - log_marginal), axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))


def kid(
    real_features: jax.Array,
    fake_features: jax.Array,
    key: jax.Array,
    num_subsets: int = 100,
    subset_size: int = 1000,
) -> jax.Array:
    """Kernel inception distance: mean unbiased polynomial-kernel MMD^2 over random subsets.

    Subsets hold min(subset_size, N, M) points of each sample, drawn without replacement.
    """
    real_features, fake_features = jnp.asarray(real_features), jnp.asarray(fake_features)
    if real_features.ndim != 2 or fake_features.shape[1:] != real_features.shape[1:]:
        raise ValueError(
            f"features must be [N, F] and [M, F]: {real_features.shape}, {fake_features.shape}"
        )
    size = min(subset_size, real_features.shape[0], fake_features.shape[0])
    if size < 2 or num_subsets < 1:
        raise ValueError(
            f"KID needs subsets of >= 2 points and num_subsets >= 1: {size}, {num_subsets}"
        )
    return _kid(real_features, fake_features, key, int(num_subsets), int(size))


@functools.partial(jax.jit, static_argnames=("num_subsets", "size"))
def _kid(real_features, fake_features, key, num_subsets, size):
    n, m, dim = real_features.shape[0], fake_features.shape[0], real_features.shape[1]

    def kernel(a, b):
        return (a @ b.T / dim + 1.0) ** 3

    def one_subset(subset_key):
        real_key, fake_key = jax.random.split(subset_key)
        x = real_features[jax.random.choice(real_key, n, (size,), replace=False)]
        y = fake_features[jax.random.choice(fake_key, m, (size,), replace=False)]
        return mmd_from_kernels(kernel(x, x), kernel(y, y), kernel(x, y))

    return jnp.mean(jax.lax.map(one_subset, jax.random.split(key, num_subsets)))


def extract_features(
    feature_fn: Callable[[jax.Array], jax.Array], images: np.ndarray, batch_size: int = 250
) -> np.ndarray:
    """feature_fn applied to images in batches of ``batch_size``; concatenated as numpy."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    parts = [
        np.asarray(feature_fn(images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(parts)
