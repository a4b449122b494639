"""Distributions whose noisy marginals, scores and optimal denoisers are known exactly.

Tests and benchmarks use these as ground truth for samplers and losses; users can check their own
code with them.

``GaussianMixture``: data x0 ~ sum_k pi_k N(mu_k, C_k). Under Gaussian noise x = x0 + sigma n every
component stays Gaussian, x ~ sum_k pi_k N(mu_k, C_k + sigma^2 I), so with the posterior
responsibilities w_k(x) ∝ pi_k N(x; mu_k, C_k + sigma^2 I):

  score(x, sigma)   = grad_x log p_sigma(x) = -sum_k w_k (C_k + sigma^2 I)^{-1} (x - mu_k)
  denoise(x, sigma) = E[x0 | x] = x + sigma^2 score(x, sigma)     (Tweedie)

Each C_k is diagonalised once per call (C_k = U_k diag(lam_k) U_k^T), so per-example sigmas cost no
extra factorisations. Under a process with x_t = s(t) (x0 + sigma(t) n) the marginal at time t is
again a mixture, with means s mu_k and covariances s^2 C_k + (s sigma)^2 I (``.marginal``).

``pfgmpp_point_denoiser``: the exact optimal denoiser of a finite point set under the PFGM++ kernel
p_r(x | y) ∝ (|x - y|^2 + r^2)^(-(N + D)/2), r = sigma sqrt(D) (Xu et al. 2023, "PFGM++").

Arrays carry the batch on axis 0; ``sigma`` is a scalar or one level per example, shape [B].
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp


def _per_example(sigma, batch_shape) -> jax.Array:
    """Broadcast a scalar or [B] sigma to ``batch_shape`` (the leading axes of x)."""
    sigma = jnp.asarray(sigma)
    if sigma.ndim == 0:
        return jnp.broadcast_to(sigma, batch_shape)
    if sigma.ndim == 1 and len(batch_shape) >= 1 and sigma.shape[0] == batch_shape[0]:
        return jnp.broadcast_to(sigma.reshape((-1,) + (1,) * (len(batch_shape) - 1)), batch_shape)
    raise ValueError(
        f"sigma must be a scalar or have shape [B] = {tuple(batch_shape[:1])}, "
        f"got shape {sigma.shape}"
    )


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["weights", "means", "covs"], meta_fields=[]
)
@dataclasses.dataclass(frozen=True)
class GaussianMixture:
    """Mixture sum_k weights_k N(means_k, covs_k) in N dimensions (weights need not be normalised).

    Attributes:
      weights: [K] positive component weights.
      means: [K, N] component means.
      covs: [K, N, N] symmetric positive semi-definite covariances
        (positive definite where sigma = 0 is used).
    """

    weights: jax.Array
    means: jax.Array
    covs: jax.Array

    def __post_init__(self):
        shapes = [getattr(a, "shape", None) for a in (self.weights, self.means, self.covs)]
        if any(s is None for s in shapes):  # pytree machinery may rebuild with placeholder leaves
            return
        (w_shape, m_shape, c_shape) = shapes
        if len(m_shape) != 2:
            raise ValueError(f"means must have shape [K, N], got {m_shape}")
        k, n = m_shape
        if tuple(w_shape) != (k,):
            raise ValueError(f"weights must have shape [K] = ({k},), got {w_shape}")
        if tuple(c_shape) != (k, n, n):
            raise ValueError(f"covs must have shape [K, N, N] = ({k}, {n}, {n}), got {c_shape}")

    @property
    def dim(self) -> int:
        return self.means.shape[-1]

    @property
    def log_weights(self) -> jax.Array:
        return jnp.log(self.weights) - jnp.log(jnp.sum(self.weights))

    @functools.partial(jax.jit, static_argnames="n")
    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n exact draws, [n, N]."""
        key_k, key_z = jax.random.split(key)
        k = jax.random.categorical(key_k, self.log_weights, shape=(n,))
        lam, u = jnp.linalg.eigh(self.covs)
        z = jax.random.normal(key_z, (n, self.dim), self.means.dtype)
        root = u * jnp.sqrt(jnp.clip(lam, 0.0))[:, None, :]  # root root^T = C
        return self.means[k] + jnp.einsum("bij,bj->bi", root[k], z)

    def _posterior_terms(self, x, sigma):
        """log N(x; mu_k, C_k + sigma^2 I) [..., K] and (C_k + sigma^2 I)^{-1} (x - mu_k)."""
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape [..., N = {self.dim}], got {x.shape}")
        var = _per_example(sigma, x.shape[:-1]) ** 2
        lam, u = jnp.linalg.eigh(self.covs)  # [K, N], [K, N, N]
        diff = x[..., None, :] - self.means  # [..., K, N]
        proj = jnp.einsum("kij,...ki->...kj", u, diff)  # U_k^T (x - mu_k)
        total = lam + var[..., None, None]  # eigenvalues of C_k + sigma^2 I
        log_normal = -0.5 * (
            jnp.sum(proj**2 / total, -1)
            + jnp.sum(jnp.log(total), -1)
            + self.dim * math.log(2 * math.pi)
        )
        solved = jnp.einsum("kij,...kj->...ki", u, proj / total)
        return log_normal, solved

    @jax.jit
    def log_prob(self, x: jax.Array, sigma=0.0) -> jax.Array:
        """log p_sigma(x) of x = x0 + sigma n, x0 from the mixture; x [..., N] -> [...]."""
        log_normal, _ = self._posterior_terms(x, sigma)
        return jax.nn.logsumexp(self.log_weights + log_normal, axis=-1)

    @jax.jit
    def score(self, x: jax.Array, sigma=0.0) -> jax.Array:
        """grad_x log p_sigma(x) = -sum_k w_k(x) (C_k + sigma^2 I)^{-1} (x - mu_k); x [..., N]."""
        log_normal, solved = self._posterior_terms(x, sigma)
        resp = jax.nn.softmax(self.log_weights + log_normal, axis=-1)
        return -jnp.einsum("...k,...ki->...i", resp, solved)

    @jax.jit
    def denoise(self, x: jax.Array, sigma) -> jax.Array:
        """E[x0 | x0 + sigma n = x] = x + sigma^2 score(x, sigma) (Tweedie); x [..., N]."""
        var = _per_example(sigma, x.shape[:-1])[..., None] ** 2
        return x + var * self.score(x, sigma)

    @jax.jit
    def marginal(self, process, t) -> "GaussianMixture":
        """The mixture of x_t = s(t) x0 + s(t) sigma(t) n in process coordinates (scalar t).

        Valid for the Gaussian-kernel processes (VP, sub-VP, VE, EDM, Flow, PFGM++ with D = inf);
        its ``log_prob(x)`` and ``score(x)`` (sigma = 0) are the process's log-density and score
        at time t.
        """
        if not process.gaussian:
            raise ValueError(
                f"process must have a Gaussian perturbation kernel for a mixture marginal, "
                f"got {process!r}"
            )
        if jnp.ndim(t) != 0:
            raise ValueError(f"t must be a scalar, got shape {jnp.shape(t)}")
        s, std = process.scale(t), process.marginal_std(t)
        eye = jnp.eye(self.dim, dtype=self.covs.dtype)
        return GaussianMixture(self.weights, s * self.means, s**2 * self.covs + std**2 * eye)


def _point_kernel_log_density(points: jax.Array, D: float):
    """log p_r(x | y_i) for every point, [B, M], as a function of (x [B, *event], sigma).

    Multivariate Student-t with D degrees of freedom and scale sigma (the PFGM++ kernel):
      log p = lgamma((N+D)/2) - lgamma(D/2) - N/2 log(pi D sigma^2)
              - (N+D)/2 log1p(|x - y_i|^2 / (D sigma^2)),
    and N(y_i, sigma^2 I) for D = inf.
    """
    D = float(D)
    if not D > 0:
        raise ValueError(f"D (PFGM++ augmentation dimension) must be > 0 or inf, got {D}")
    points = jnp.asarray(points)
    event_shape = points.shape[1:]
    n_dim = math.prod(event_shape)
    flat_points = points.reshape(points.shape[0], n_dim)

    def log_density(x: jax.Array, sigma) -> jax.Array:
        if tuple(x.shape[1:]) != tuple(event_shape):
            raise ValueError(f"x must have shape [B, *{event_shape}], got {x.shape}")
        flat_x = x.reshape(x.shape[0], n_dim)
        var = _per_example(sigma, x.shape[:1])[:, None] ** 2  # [B, 1]
        dist2 = jnp.sum((flat_x[:, None, :] - flat_points[None]) ** 2, -1)  # [B, M]
        if math.isinf(D):
            return -dist2 / (2 * var) - 0.5 * n_dim * jnp.log(2 * math.pi * var)
        # the constant in float64 on the host: lgamma's difference cancels badly for large D
        log_norm = (
            math.lgamma(0.5 * (n_dim + D))
            - math.lgamma(0.5 * D)
            - 0.5 * n_dim * math.log(math.pi * D)
        )
        return (
            log_norm - 0.5 * n_dim * jnp.log(var) - 0.5 * (n_dim + D) * jnp.log1p(dist2 / (D * var))
        )

    return flat_points, log_density


def pfgmpp_point_denoiser(points: jax.Array, D: float):
    """The exact optimal denoiser of the point set ``points`` under the PFGM++ kernel.

    For data uniform on points y_1..y_M in N = prod(points.shape[1:]) dimensions and the kernel
    p_r(x | y) ∝ (|x - y|^2 + r^2)^(-(N + D)/2) with r = sigma sqrt(D) (Xu et al. 2023), the
    minimiser of E|D(x, sigma) - y|^2 is the posterior mean

      D(x, sigma) = sum_i w_i y_i,  w_i = softmax_i( -(N + D)/2 log1p(|x - y_i|^2 / (D sigma^2)) ).

    As D -> inf the weights tend to softmax(-|x - y_i|^2 / (2 sigma^2)), the Gaussian-kernel (EDM)
    denoiser, which ``D = math.inf`` gives exactly.

    Args:
      points: [M, *event] the data set.
      D: augmentation dimension, > 0 (``math.inf`` for the Gaussian kernel).

    Returns:
      denoise(x, sigma) with x [B, *event], sigma > 0 a scalar or [B]; memory O(B M N).
    """
    flat_points, log_density = _point_kernel_log_density(points, D)

    @jax.jit
    def denoise(x: jax.Array, sigma) -> jax.Array:
        weights = jax.nn.softmax(log_density(x, sigma), axis=-1)
        return (weights @ flat_points).reshape(x.shape).astype(x.dtype)

    return denoise


def pfgmpp_point_log_prob(points: jax.Array, D: float):
    """log p_sigma(x) = log mean_i p_r(x | y_i) of the point set under the PFGM++ kernel (exact).

    Returns log_prob(x, sigma) -> [B] with x [B, *event], sigma > 0 a scalar or [B].
    """
    _, log_density = _point_kernel_log_density(points, D)

    @jax.jit
    def log_prob(x: jax.Array, sigma) -> jax.Array:
        log_p = log_density(x, sigma)
        return jax.nn.logsumexp(log_p, axis=-1) - math.log(log_p.shape[-1])

    return log_prob
