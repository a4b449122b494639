"""Consistency functions f(x, t) that equal x at the boundary, in EDM and in TrigFlow coordinates.

EDM coordinates (Song et al. 2023, appendix C), x = x0 + t n, t in [eps, T], eps = sigma_min:

  f(x, t) = c_skip(t) x + c_out(t) F(c_in(t) x, ln(t) / 4),
  c_skip = sd^2 / ((t - eps)^2 + sd^2),  c_out = sd (t - eps) / sqrt(sd^2 + t^2),
  c_in = 1 / sqrt(t^2 + sd^2),

so f(x, eps) = x exactly: the ``consistency`` kind of ``generative.preconditioning``, with sd and
eps from the EDM process.

TrigFlow (Lu and Song 2024, sCM), x_t = cos(t) x0 + sin(t) z, z ~ N(0, sd^2 I), t in [0, pi/2]:

  f(x_t, t) = cos(t) x_t - sin(t) sd F(x_t / sd, t),

the x0-prediction of a TrigFlow diffusion model and, unchanged, its consistency function (f = x_t at
t = 0). In EDM coordinates sigma = sd tan(t) and x = x_t / cos(t), so cos(t) = sd / sqrt(sd^2 +
sigma^2) and x_t / sd = x / sqrt(sd^2 + sigma^2): a TrigFlow network is EDM's preconditioning with
c_out negated and c_noise = arctan(sigma / sd). The PF-ODE velocity is dx_t/dt = sd F = (cos(t) x_t
- x0_hat) / sin(t).

Every function returned here takes x [B, ...] and t a scalar or [B] (one per example, as the core
samplers pass it) and passes conditioning keywords through to the network.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from generative.preconditioning import (
    PRECOND_PROCESSES,
    consistency_coefficients,
    edm_coefficients,
    precondition,
    process_options,
)
from generative.processes import per_example, process_name_of


def _options(process) -> dict:
    """sigma_data and eps = sigma_min of an EDM process (ValueError for any other)."""
    name = process_name_of(process)
    if name not in PRECOND_PROCESSES["consistency"]:
        raise ValueError(
            f"consistency functions are written for EDM's process (x = x0 + t n), got {name!r}"
        )
    return process_options("consistency", process)


def consistency_function(raw_net: Callable[..., jax.Array], process) -> Callable[..., jax.Array]:
    """f(x, t, **cond) = c_skip(t) x + c_out(t) raw_net(c_in(t) x, ln(t) / 4, **cond) with the
    process's sigma_data and eps = sigma_min (Song et al. 2023, appendix C)."""
    return precondition(raw_net, "consistency", **_options(process))


def consistency_from_denoiser(
    denoise: Callable[..., jax.Array], process
) -> Callable[..., jax.Array]:
    """A consistency function from an EDM-convention denoiser D(x, sigma) (ECT's initialisation,
    Geng et al. 2024):

      f(x, t) = c_skip(t) x + (t - eps) / t (D(x, t) - c_skip^EDM(t) x).

    If D = c_skip^EDM x + c_out^EDM F(c_in x, ln(t) / 4) (``precondition(F, 'edm')``) this is
    ``consistency_function(F, process)``, the same raw network with the boundary coefficients,
    since c_out / c_out^EDM = (t - eps) / t; for any D, f(x, eps) = x exactly.
    """
    options = _options(process)
    eps = options["eps"]

    def f(x: jax.Array, t, **cond) -> jax.Array:
        t = jnp.asarray(t, x.dtype)
        c_skip = consistency_coefficients(t, **options)[0]
        edm_skip = edm_coefficients(t, sigma_data=options["sigma_data"])[0]
        denoised = denoise(x, jnp.broadcast_to(t, x.shape[:1]), **cond)
        residual = denoised - per_example(edm_skip, x) * x
        return per_example(c_skip, x) * x + per_example((t - eps) / t, x) * residual

    return f


def time_dtype(dtype):
    """The dtype of a TrigFlow network's time input for data of `dtype`: at least float32 (sCM
    keeps the time embedding in float32 against gradient-norm spikes in low precision)."""
    return jnp.promote_types(dtype, jnp.float32)


def trigflow_function(
    raw_net: Callable[..., jax.Array], *, sigma_data: float = 0.5
) -> Callable[..., jax.Array]:
    """f(x_t, t, **cond) = cos(t) x_t - sin(t) sd raw_net(x_t / sd, t, **cond) (Lu and Song 2024,
    eq. 9): the TrigFlow x0-prediction and consistency function; raw_net gets t itself, [B], in
    ``time_dtype`` (float32 for bfloat16 data)."""

    def f(x_t: jax.Array, t, **cond) -> jax.Array:
        t = jnp.broadcast_to(jnp.asarray(t, time_dtype(x_t.dtype)), x_t.shape[:1])
        out = raw_net(x_t / sigma_data, t, **cond)
        if out.shape != x_t.shape:
            raise ValueError(f"raw_net must return x_t's shape {x_t.shape}, got {out.shape}")
        cos, sin = per_example(jnp.cos(t), x_t), per_example(jnp.sin(t), x_t)
        return (cos * x_t - sin * sigma_data * out).astype(x_t.dtype)

    return f


def trigflow_to_edm(x_t: jax.Array, t, *, sigma_data: float = 0.5):
    """(x, sigma) = (x_t / cos(t), sd tan(t)): TrigFlow's x_t = cos(t) x0 + sin(t) z in EDM's
    x = x0 + sigma n (t < pi/2)."""
    t = jnp.asarray(t, x_t.dtype)
    return x_t / per_example(jnp.cos(t), x_t), sigma_data * jnp.tan(t)


def edm_to_trigflow(x: jax.Array, sigma, *, sigma_data: float = 0.5):
    """(x_t, t) = (x sd / sqrt(sd^2 + sigma^2), arctan(sigma / sd)), the inverse of
    ``trigflow_to_edm`` (cos(arctan(sigma / sd)) written without the arctan)."""
    sigma = jnp.asarray(sigma, x.dtype)
    cos = sigma_data / jnp.sqrt(sigma_data**2 + sigma**2)
    return per_example(cos, x) * x, jnp.arctan(sigma / sigma_data)


def trigflow_denoiser_from_edm(
    denoise: Callable[..., jax.Array], *, sigma_data: float = 0.5
) -> Callable[..., jax.Array]:
    """The TrigFlow x0-prediction of an EDM denoiser: g(x_t, t) = D(x_t / cos(t), sd tan(t))
    (the same E[x0 | x], as x_t and x determine each other)."""

    def g(x_t: jax.Array, t, **cond) -> jax.Array:
        x, sigma = trigflow_to_edm(x_t, t, sigma_data=sigma_data)
        return denoise(x, jnp.broadcast_to(sigma, x.shape[:1]), **cond)

    return g


def edm_denoiser_from_trigflow(
    trig_denoise: Callable[..., jax.Array], *, sigma_data: float = 0.5
) -> Callable[..., jax.Array]:
    """The EDM denoiser of a TrigFlow x0-prediction g(x_t, t) (e.g. ``trigflow_function``):
    D(x, sigma) = g(x cos(t), t), t = arctan(sigma / sd); it runs in every core sampler."""

    def denoise(x: jax.Array, sigma, **cond) -> jax.Array:
        x_t, t = edm_to_trigflow(x, sigma, sigma_data=sigma_data)
        return trig_denoise(x_t, jnp.broadcast_to(t, x.shape[:1]), **cond)

    return denoise


def trigflow_velocity(trig_denoise: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """The PF-ODE velocity dx_t/dt = E[cos(t) z - sin(t) x0 | x_t] = (cos(t) x_t - g(x_t, t)) /
    sin(t) of a TrigFlow x0-prediction g, for t in (0, pi/2]; sCD's teacher tangent is
    ``trigflow_velocity(trigflow_denoiser_from_edm(D))``."""

    def velocity(x_t: jax.Array, t, **cond) -> jax.Array:
        t = jnp.broadcast_to(jnp.asarray(t, x_t.dtype), x_t.shape[:1])
        cos, sin = per_example(jnp.cos(t), x_t), per_example(jnp.sin(t), x_t)
        return (cos * x_t - trig_denoise(x_t, t, **cond)) / sin

    return velocity
