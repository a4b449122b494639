"""Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020).

Each real point r_i gets the ball of radius NND_k(r_i), the distance to its k-th nearest other real
point (likewise for fake points f_j). With counts taken over these k-NN balls:

* precision = 1/M sum_j 1[f_j lies in some real ball]
* recall    = 1/N sum_i 1[r_i lies in some fake ball]
* density   = 1/(k M) sum_j sum_i 1[f_j lies in the ball of r_i]
* coverage  = 1/N sum_i 1[the nearest fake point to r_i lies in the ball of r_i]

"Lies in" is the strict |a - b| < radius of the authors' reference code (``prdc`` package). Memory
is O((N + M)^2) floats for the pairwise distances.
"""

import functools

import jax
import jax.numpy as jnp

from generative.metrics.lowdim import squared_distances


def _kth_neighbour_distance(points: jax.Array, k: int) -> jax.Array:
    """Distance of each point to its k-th nearest other point (the point itself is the 0-th)."""
    sq = squared_distances(points, points)
    return jnp.sqrt(-jax.lax.top_k(-sq, k + 1)[0][:, k])


def prdc(real_features: jax.Array, fake_features: jax.Array, k: int = 5) -> dict[str, jax.Array]:
    """dict(precision, recall, density, coverage) of fake features [M, F] against real [N, F]."""
    if real_features.ndim != 2 or fake_features.shape[1:] != real_features.shape[1:]:
        raise ValueError(
            f"features must be [N, F] and [M, F], got {real_features.shape}, {fake_features.shape}"
        )
    if not 1 <= k < min(real_features.shape[0], fake_features.shape[0]):
        raise ValueError(f"k must be in [1, min(N, M)), got k={k}")
    return _prdc(real_features, fake_features, int(k))


@functools.partial(jax.jit, static_argnames="k")
def _prdc(real_features, fake_features, k):
    real_radii = _kth_neighbour_distance(real_features, k)
    fake_radii = _kth_neighbour_distance(fake_features, k)
    distances = jnp.sqrt(squared_distances(real_features, fake_features))  # [N, M]
    in_real_ball = distances < real_radii[:, None]
    return dict(
        precision=jnp.mean(jnp.any(in_real_ball, axis=0)),
        recall=jnp.mean(jnp.any(distances < fake_radii[None, :], axis=1)),
        density=jnp.sum(in_real_ball) / (k * fake_features.shape[0]),
        coverage=jnp.mean(jnp.min(distances, axis=1) < real_radii),
    )
