"""Noise-level schedules for samplers.

Every schedule returns a strictly descending 1-D array ``[sigma_0, ..., sigma_{n-1}, 0]`` of
``n + 1`` entries in EDM's unscaled coordinates (``x = x0 + sigma n``): ``n`` noise levels followed
by an exact 0, so a sampler with ``n`` steps ends at the data.

References:
  Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models", eq. 5.
  Crowson, k-diffusion ``sampling.py`` (exponential, polyexponential and VP schedules).
  Song et al. 2021, "Score-Based Generative Modeling through SDEs" (VP SDE).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def concrete(value):
    """``value`` as a NumPy array when it is known before tracing, else None (a jax tracer)."""
    try:
        return np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def _check_levels(n: int, sigma_min, sigma_max) -> None:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (number of noise levels), got {n!r}")
    lo, hi = concrete(sigma_min), concrete(sigma_max)
    if lo is not None and not np.all(lo > 0):
        raise ValueError(f"sigma_min must be > 0, got {sigma_min!r}")
    if lo is not None and hi is not None and not np.all(hi > lo):
        raise ValueError(
            f"sigma_max must be > sigma_min, got sigma_max={sigma_max!r}, sigma_min={sigma_min!r}"
        )


def _check_value(name: str, value, ok: Callable, expected: str) -> None:
    """ValueError naming ``name`` unless ``ok(value)``; skipped for a tracer."""
    known = concrete(value)
    if known is not None and not np.all(ok(known)):
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _append_zero(sigmas: jax.Array) -> jax.Array:
    return jnp.concatenate([sigmas, jnp.zeros((1,), sigmas.dtype)])


def karras_sigmas(n: int, sigma_min=0.002, sigma_max=80.0, rho: float = 7.0) -> jax.Array:
    """EDM noise levels (Karras et al. 2022, eq. 5), then a 0.

    sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..n-1,
    sigma_n = 0. With n = 1 the single level is sigma_max.
    """
    _check_levels(n, sigma_min, sigma_max)
    _check_value("rho", rho, lambda v: v > 0, "> 0")
    ramp = jnp.linspace(0.0, 1.0, n)
    inv_max = jnp.asarray(sigma_max, float) ** (1.0 / rho)
    inv_min = jnp.asarray(sigma_min, float) ** (1.0 / rho)
    return _append_zero((inv_max + ramp * (inv_min - inv_max)) ** rho)


def exponential_sigmas(n: int, sigma_min=0.002, sigma_max=80.0) -> jax.Array:
    """Levels evenly spaced in log sigma from sigma_max down to sigma_min, then a 0."""
    return polyexponential_sigmas(n, sigma_min, sigma_max, rho=1.0)


def polyexponential_sigmas(n: int, sigma_min=0.002, sigma_max=80.0, rho: float = 1.0) -> jax.Array:
    """k-diffusion's polynomial-in-log-sigma schedule, then a 0.

    log sigma_i = log sigma_min + (1 - i/(n-1))^rho (log sigma_max - log sigma_min), i = 0..n-1.
    rho = 1 is the exponential schedule; rho > 1 spends more levels at low noise.
    """
    _check_levels(n, sigma_min, sigma_max)
    _check_value("rho", rho, lambda v: v > 0, "> 0")
    ramp = jnp.linspace(1.0, 0.0, n) ** rho
    log_min = jnp.log(jnp.asarray(sigma_min, float))
    log_max = jnp.log(jnp.asarray(sigma_max, float))
    return _append_zero(jnp.exp(log_min + ramp * (log_max - log_min)))


def vp_sigmas(
    n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3
) -> jax.Array:
    """The VP SDE's noise levels at n times evenly spaced from t = 1 down to t = eps_s, then a 0.

    sigma(t) = sqrt(exp(1/2 beta_d t^2 + beta_min t) - 1) (EDM Table 1, VP column).
    """
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be a positive int (number of noise levels), got {n!r}")
    _check_value("eps_s", eps_s, lambda v: (v > 0) & (v < 1), "in (0, 1)")
    _check_value("beta_d", beta_d, lambda v: v > 0, "> 0")
    _check_value("beta_min", beta_min, lambda v: v >= 0, ">= 0")
    t = jnp.linspace(1.0, eps_s, n)
    return _append_zero(jnp.sqrt(jnp.expm1(0.5 * beta_d * t**2 + beta_min * t)))


SIGMAS_CONTRACT = (
    "sigmas must be a 1-D array of at least 2 noise levels, strictly descending from sigma_max "
    "and ending in exactly 0 (the schedules here return that)"
)


def check_sigmas(sigmas) -> None:
    """Raise ValueError unless ``sigmas`` is 1-D, >= 2 long, strictly descending and ends in 0.

    The shape is always checked; the values only when concrete (outside jit, or closed over).
    """
    shape = jnp.shape(sigmas)
    if len(shape) != 1 or shape[0] < 2:
        raise ValueError(f"{SIGMAS_CONTRACT}, got shape {shape}")
    values = concrete(sigmas)
    if values is None:
        return
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{SIGMAS_CONTRACT}; got non-finite levels {values}")
    if np.all(np.diff(values) > 0):
        raise ValueError(
            f"{SIGMAS_CONTRACT}; got them ascending {values} (reverse them, e.g. sigmas[::-1], and "
            "append 0 if it is missing)"
        )
    if values[-1] != 0:
        raise ValueError(f"{SIGMAS_CONTRACT}; got last entry {values[-1]}")
    if not np.all(np.diff(values) < 0):
        raise ValueError(f"{SIGMAS_CONTRACT}; got {values}")


def check_in_dtype(name: str, values: np.ndarray, dtype, what: str, *, log: bool = False) -> None:
    """Raise ValueError unless strictly descending ``values`` stay finite and strictly descending
    once cast to ``dtype`` (with ``log``: their logs, taken in ``dtype``, a final 0 giving -inf).

    Low precision rounds close levels to one value (bfloat16 has 8 significant bits), and then a
    step is empty or, in log sigma, divides by a zero step h. ``name`` is the argument to blame,
    ``what`` the quantity that collapses.
    """
    dtype = np.dtype(dtype)
    with np.errstate(over="ignore"):
        cast = np.asarray(values).astype(dtype)
    overflow = int(np.sum(~np.isfinite(cast)))
    if overflow:
        raise ValueError(
            f"{name}: {overflow} of {len(cast)} levels overflow in {dtype.name} (x's dtype); use "
            "a float32 x"
        )
    if log:
        with np.errstate(divide="ignore"):
            cast = np.log(cast)
        what = f"log({what})"
    collapsed = int(np.sum(~(np.diff(cast) < 0)))
    if collapsed:
        raise ValueError(
            f"{name}: {collapsed} of {len(cast) - 1} steps collapse to equal {what} in "
            f"{dtype.name} (x's dtype); use fewer steps or a float32 x"
        )


SCHEDULES: dict[str, Callable[..., jax.Array]] = {
    "karras": karras_sigmas,
    "exponential": exponential_sigmas,
    "polyexponential": polyexponential_sigmas,
    "vp": vp_sigmas,
}


def get_schedule(name: str) -> Callable[..., jax.Array]:
    """The schedule called ``name``: a key of SCHEDULES or its function's name ('karras_sigmas')."""
    key = name.removesuffix("_sigmas") if isinstance(name, str) else name
    if key not in SCHEDULES:
        raise ValueError(f"unknown schedule name {name!r}; known: {sorted(SCHEDULES)}")
    return SCHEDULES[key]
