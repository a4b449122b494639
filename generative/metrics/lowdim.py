"""Two-sample distances for low-dimensional samples (sliced Wasserstein, kernel MMD) and mode
coverage of samples of a mixture with known centres.

* Sliced Wasserstein distance (Rabin et al. 2011; Bonneel et al. 2015): SW_p(X, Y)^p = E_theta
  W_p(theta . X, theta . Y)^p over directions theta uniform on the sphere, estimated with
  ``num_projections`` random directions. Each 1-D distance between the empirical measures is exact:
  W_p^p = int_0^1 |F^-1(u) - G^-1(u)|^p du, the quantile functions being step functions with jumps
  at multiples of 1/n and 1/m (sample sizes may differ).
* Maximum mean discrepancy (Gretton et al. 2012, JMLR, eqs. 3 and 5): MMD^2 = E k(x, x') + E k(y,
  y') - 2 E k(x, y). The unbiased U-statistic leaves out the diagonals of the within-sample kernel
  matrices (and can be slightly negative); the biased V-statistic keeps them. ``mmd`` uses the sum
  of Gaussian RBF kernels k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2)).
* Mode shares (``mode_shares``): each sample is assigned to its nearest centre and counts for that
  mode when it lies within ``radius`` of it; the share within the radius of any centre (sample
  quality: what fell off the modes) and each mode's share of all samples (coverage: a dropped mode
  has share 0). ``smallest_share_ratio`` is the smallest mode's share over the fair share 1/K (1 for
  perfectly balanced samples all on the modes, 0 when a mode is missed). For an isotropic Gaussian
  mode of std s in 2-D the share within r is 1 - exp(-r^2 / (2 s^2)) (a Rayleigh radius).

All functions are jit-compiled JAX (sizes and options static); inputs are checked before tracing.
"""

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp


def _check_samples(x, y):
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be [n, d] and [m, d], got {x.shape} and {y.shape}")


def wasserstein_1d(u: jax.Array, v: jax.Array, p: float = 2.0) -> jax.Array:
    """Exact W_p between the empirical measures of 1-D samples u [n] and v [m]."""
    if u.ndim != 1 or v.ndim != 1:
        raise ValueError(f"u and v must be 1-D samples, got shapes {u.shape} and {v.shape}")
    return _wasserstein_1d(u, v, float(p))


@functools.partial(jax.jit, static_argnames="p")
def _wasserstein_1d(u, v, p):
    n, m = u.shape[0], v.shape[0]
    # Quantile-function breakpoints k/n and l/m on the integer grid of step 1/(n m).
    levels = jnp.sort(jnp.concatenate([jnp.arange(1, n + 1) * m, jnp.arange(1, m + 1) * n]))
    widths = jnp.diff(levels, prepend=0)
    twice_mid = 2 * levels - widths
    u_q = jnp.sort(u)[jnp.minimum(twice_mid // (2 * m), n - 1)]
    v_q = jnp.sort(v)[jnp.minimum(twice_mid // (2 * n), m - 1)]
    return (jnp.sum(widths * jnp.abs(u_q - v_q) ** p) / (n * m)) ** (1.0 / p)


def sliced_wasserstein(
    x: jax.Array, y: jax.Array, key: jax.Array, num_projections: int = 128, p: float = 2.0
) -> jax.Array:
    """Monte-Carlo sliced Wasserstein distance SW_p between samples x [n, d] and y [m, d]."""
    _check_samples(x, y)
    if num_projections <= 0:
        raise ValueError(f"num_projections must be positive, got {num_projections}")
    return _sliced_wasserstein(x, y, key, int(num_projections), float(p))


@functools.partial(jax.jit, static_argnames=("num_projections", "p"))
def _sliced_wasserstein(x, y, key, num_projections, p):
    theta = jax.random.normal(key, (num_projections, x.shape[1]))
    theta = theta / jnp.linalg.norm(theta, axis=1, keepdims=True)
    distances = jax.vmap(lambda t: _wasserstein_1d(x @ t, y @ t, p))(theta)
    return jnp.mean(distances**p) ** (1.0 / p)


def squared_distances(x: jax.Array, y: jax.Array) -> jax.Array:
    """|x_i - y_j|^2 [n, m], clipped at 0 against rounding."""
    sq = jnp.sum(x**2, 1)[:, None] + jnp.sum(y**2, 1)[None, :] - 2.0 * x @ y.T
    return jnp.maximum(sq, 0.0)


def mmd_from_kernels(
    k_xx: jax.Array, k_yy: jax.Array, k_xy: jax.Array, unbiased: bool = True
) -> jax.Array:
    """MMD^2 estimate from the kernel matrices [n, n], [m, m], [n, m] (unbiased: n, m >= 2)."""
    n, m = k_xx.shape[0], k_yy.shape[0]
    if unbiased:
        within_x = (jnp.sum(k_xx) - jnp.trace(k_xx)) / (n * (n - 1))
        within_y = (jnp.sum(k_yy) - jnp.trace(k_yy)) / (m * (m - 1))
    else:
        within_x, within_y = jnp.mean(k_xx), jnp.mean(k_yy)
    return within_x + within_y - 2.0 * jnp.mean(k_xy)


def mmd(
    x: jax.Array, y: jax.Array, bandwidths: Sequence[float], unbiased: bool = True
) -> jax.Array:
    """Squared MMD of x [n, d] and y [m, d] under the sum of RBF kernels of these bandwidths."""
    _check_samples(x, y)
    bandwidths = tuple(float(s) for s in bandwidths)
    if not bandwidths or min(bandwidths) <= 0:
        raise ValueError(f"bandwidths must be non-empty and positive, got {bandwidths}")
    if unbiased and min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(f"the unbiased MMD needs >= 2 points per sample: {x.shape}, {y.shape}")
    return _rbf_mmd(x, y, bandwidths, bool(unbiased))


@functools.partial(jax.jit, static_argnames=("bandwidths", "unbiased"))
def _rbf_mmd(x, y, bandwidths, unbiased):
    def kernel(a, b):
        sq = squared_distances(a, b)
        return sum(jnp.exp(-sq / (2.0 * s**2)) for s in bandwidths)

    return mmd_from_kernels(kernel(x, x), kernel(y, y), kernel(x, y), unbiased)


def mode_shares(
    samples: jax.Array, centres: jax.Array, radius: float
) -> tuple[jax.Array, jax.Array]:
    """(share within `radius` of any centre, per-mode shares [K]) of samples [n, d] around centres
    [K, d]: a sample counts for its nearest centre when within `radius` of it (the per-mode shares
    are fractions of all n samples and sum to the first number). Non-finite samples count for no
    mode."""
    samples, centres = jnp.asarray(samples), jnp.asarray(centres)
    if samples.ndim != 2 or centres.ndim != 2 or samples.shape[1] != centres.shape[1]:
        raise ValueError(
            f"samples and centres must be [n, d] and [K, d], got {samples.shape} and "
            f"{centres.shape}"
        )
    if samples.shape[0] == 0 or centres.shape[0] == 0:
        raise ValueError(f"need >= 1 sample and >= 1 centre, got {samples.shape}, {centres.shape}")
    radius = float(radius)
    if not (0.0 < radius < float("inf")):
        raise ValueError(f"radius must be positive and finite, got {radius}")
    return _mode_shares(samples, centres, radius)


@jax.jit
def _mode_shares(samples, centres, radius):
    # Direct differences (not the |a|^2 + |b|^2 - 2ab expansion): a sample at a centre is at 0.
    distances = jnp.linalg.norm(samples[:, None, :] - centres[None, :, :], axis=-1)  # [n, K]
    nearest = jnp.argmin(jnp.where(jnp.isnan(distances), jnp.inf, distances), axis=1)
    within = jnp.take_along_axis(distances, nearest[:, None], axis=1)[:, 0] <= radius
    counts = jnp.zeros(centres.shape[0]).at[nearest].add(within.astype(jnp.float32))
    n = samples.shape[0]
    return jnp.mean(within.astype(jnp.float32)), counts / n


def smallest_share_ratio(shares: jax.Array) -> jax.Array:
    """K min_k share_k: the smallest of K mode shares as a multiple of the fair share 1/K."""
    shares = jnp.asarray(shares)
    if shares.ndim != 1 or shares.shape[0] == 0:
        raise ValueError(f"shares must be a non-empty vector [K], got shape {shares.shape}")
    return shares.shape[0] * jnp.min(shares)
