"""Network preconditioning: a raw network F(x_in, c_noise) becomes a denoiser D(x, sigma).

  D(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))    (EDM eq. 7)

with the coefficients of Karras et al. 2022, Table 1 (x unscaled, x = x0 + sigma n; sd = sigma_data,
q = sqrt(sigma^2 + sd^2)):

  kind    c_skip        c_out            c_in               c_noise
  edm     sd^2 / q^2    sigma sd / q     1 / q              ln(sigma) / 4
  vp      1             -sigma           1/sqrt(sigma^2+1)  (M - 1) t(sigma)
  iddpm   1             -sigma           1/sqrt(sigma^2+1)  M - 1 - argmin_j |u_j - sigma|
  ve      1             sigma            1                  ln(sigma / 2)
  flow    1/(1+sigma)   -sigma/(1+sigma) 1/(1+sigma)        t = sigma / (1 + sigma)

``pfgmpp`` is ``edm`` in PFGM++'s aligned level sigma = r / sqrt(D): Xu et al. 2023 train EDM's
preconditioned network unchanged, only the perturbation differs (see ``losses.pfgmpp_loss``).

``flow`` is our addition: the raw network is a velocity field v(x_t, t) of the linear interpolant
x_t = (1 - t) x0 + t n, and D = x_t - t v (Liu et al. 2023) with x_t = x/(1 + sigma), so a
flow-matching model runs in every EDM-convention sampler.

``consistency`` is the boundary-respecting parametrisation of a consistency function f(x, t), t =
sigma (Song et al. 2023, appendix C), with g = sigma - eps:

  consistency  sd^2 / (g^2 + sd^2)   sd g / q   1 / q   ln(sigma) / 4

c_skip(eps) = 1 and c_out(eps) = 0 exactly, so f(x, eps) = x for any network; eps is the process's
sigma_min. With eps = 0 it is ``edm``. See ``generative.consistency``.

``trigflow`` is a TrigFlow network F(x_t / sd, t) (Lu and Song 2024, sCM) in EDM coordinates: with
t = arctan(sigma / sd) and x_t = cos(t) x, f(x_t, t) = cos(t) x_t - sin(t) sd F is

  trigflow     sd^2 / q^2    -sigma sd / q    1 / q              arctan(sigma / sd)

(``edm`` with c_out negated and the time itself as c_noise), so a TrigFlow model runs in every
EDM-convention sampler; c_skip(0) = 1 and c_out(0) = 0.
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from generative.processes import VP, per_example


def edm_coefficients(sigma, *, sigma_data: float = 0.5):
    """(c_skip, c_out, c_in, c_noise) of EDM; lambda(sigma) c_out^2 = 1 for EDM's loss weight."""
    root = jnp.sqrt(sigma**2 + sigma_data**2)
    return (sigma_data / root) ** 2, sigma * sigma_data / root, 1 / root, jnp.log(sigma) / 4


def vp_coefficients(sigma, *, beta_d: float = 19.9, beta_min: float = 0.1, M: int = 1000):
    """VP preconditioning; t(sigma) is the VP SDE's inverse noise level (``VP.sigma_inv``)."""
    t = VP(beta_min=beta_min, beta_max=beta_min + beta_d).sigma_inv(sigma)
    return 1.0, -sigma, 1 / jnp.sqrt(sigma**2 + 1), (M - 1) * t


def ve_coefficients(sigma):
    return 1.0, sigma, 1.0, jnp.log(0.5 * sigma)


@functools.lru_cache
def iddpm_levels(M: int = 1000, C1: float = 0.001, C2: float = 0.008) -> np.ndarray:
    """iDDPM's discrete noise levels u_0 > ... > u_M = 0 (EDM Table 1, cosine schedule).

    u_{j-1} = sqrt((u_j^2 + 1) / max(alpha_bar(j-1) / alpha_bar(j), C1) - 1),
    alpha_bar(j) = sin(pi/2 j / (M (C2 + 1)))^2.
    """
    alpha_bar = np.sin(0.5 * np.pi * np.arange(M + 1) / (M * (C2 + 1))) ** 2
    u = np.zeros(M + 1)
    for j in range(M, 0, -1):
        u[j - 1] = np.sqrt((u[j] ** 2 + 1) / max(alpha_bar[j - 1] / alpha_bar[j], C1) - 1)
    return u


def iddpm_coefficients(sigma, *, M: int = 1000, C1: float = 0.001, C2: float = 0.008):
    """iDDPM preconditioning: c_noise is the DDPM step index of the nearest level u_j."""
    u = jnp.asarray(iddpm_levels(M, C1, C2), jnp.result_type(float))
    index = jnp.argmin(jnp.abs(u - jnp.asarray(sigma)[..., None]), axis=-1)
    return 1.0, -sigma, 1 / jnp.sqrt(sigma**2 + 1), (M - 1 - index).astype(u.dtype)


def flow_coefficients(sigma):
    """Velocity parameterisation: D = x_t - t v(x_t, t), t = sigma/(1+sigma), x_t = x/(1+sigma)."""
    t = sigma / (1 + sigma)
    return 1 - t, -t, 1 - t, t


def consistency_coefficients(t, *, sigma_data: float = 0.5, eps: float = 0.002):
    """(c_skip, c_out, c_in, c_noise) of a consistency function at t >= eps: c_skip = sd^2 /
    ((t - eps)^2 + sd^2), c_out = sd (t - eps) / sqrt(sd^2 + t^2), c_in = 1 / sqrt(t^2 + sd^2)."""
    root = jnp.sqrt(t**2 + sigma_data**2)
    gap = t - eps
    return (
        sigma_data**2 / (gap**2 + sigma_data**2),
        sigma_data * gap / root,
        1 / root,
        jnp.log(t) / 4,
    )


def trigflow_coefficients(sigma, *, sigma_data: float = 0.5):
    """(c_skip, c_out, c_in, c_noise) of a TrigFlow network: EDM's with c_out negated and c_noise =
    t = arctan(sigma / sd)."""
    c_skip, c_out, c_in, _ = edm_coefficients(sigma, sigma_data=sigma_data)
    return c_skip, -c_out, c_in, jnp.arctan(sigma / sigma_data)


COEFFICIENTS: dict[str, Callable] = {
    "edm": edm_coefficients,
    "pfgmpp": edm_coefficients,
    "vp": vp_coefficients,
    "iddpm": iddpm_coefficients,
    "ve": ve_coefficients,
    "flow": flow_coefficients,
    "consistency": consistency_coefficients,
    "trigflow": trigflow_coefficients,
}


# The processes each preconditioning kind is written for (config.process.name).
PRECOND_PROCESSES = {
    "edm": ("edm", "pfgmpp"),
    "pfgmpp": ("pfgmpp",),
    "vp": ("vp",),
    "iddpm": ("vp",),
    "ve": ("ve",),
    "flow": ("flow",),
    "consistency": ("edm",),
    "trigflow": ("edm",),
}

# Options that are constants of the process: process_options supplies them.
PROCESS_OWNED = ("sigma_data", "beta_d", "beta_min", "eps")


def process_options(kind: str, process) -> dict:
    """The options of preconditioning `kind` that `process` owns: sigma_data (edm, pfgmpp), the VP
    schedule (vp: beta_d = beta_max - beta_min, beta_min), sigma_data and eps = sigma_min
    (consistency), sigma_data (trigflow)."""
    if kind in ("edm", "pfgmpp", "trigflow"):
        return {"sigma_data": process.sigma_data}
    if kind == "consistency":
        return {"sigma_data": process.sigma_data, "eps": process.sigma_min}
    if kind == "vp":
        return {"beta_d": process.beta_max - process.beta_min, "beta_min": process.beta_min}
    return {}


def precondition(
    raw_net: Callable[..., jax.Array], kind: str, **options
) -> Callable[..., jax.Array]:
    """Wrap ``raw_net(x_in, c_noise, **cond)`` into ``denoise(x, sigma, **cond)``.

    Args:
      raw_net: the network; gets c_in x and c_noise of shape [B] (one per example).
      kind: one of COEFFICIENTS (see the module docstring).
      **options: the kind's constants: sigma_data (edm, pfgmpp, consistency, trigflow; default
        0.5), eps (consistency; default 0.002), beta_d, beta_min, M (vp), M, C1, C2 (iddpm).

    Returns:
      denoise(x, sigma, **cond) for x [B, ...] and sigma a scalar or [B].
    """
    if kind not in COEFFICIENTS:
        raise ValueError(f"unknown preconditioning kind {kind!r}; known: {sorted(COEFFICIENTS)}")
    coefficients = COEFFICIENTS[kind]
    try:  # reject misspelt options now, not at the first call
        coefficients(jnp.ones(()), **options)
    except TypeError as error:
        raise ValueError(
            f"bad options {sorted(options)} for preconditioning kind {kind!r}: {error}"
        )

    def denoise(x: jax.Array, sigma, **cond) -> jax.Array:
        sigma = jnp.asarray(sigma, x.dtype)
        c_skip, c_out, c_in, c_noise = coefficients(sigma, **options)
        c_noise = jnp.broadcast_to(jnp.asarray(c_noise, x.dtype), x.shape[:1])
        out = raw_net(per_example(c_in, x) * x, c_noise, **cond)
        if out.shape != x.shape:
            raise ValueError(f"raw_net must return x's shape {x.shape}, got {out.shape}")
        return per_example(c_skip, x) * x + per_example(c_out, x) * out

    return denoise
