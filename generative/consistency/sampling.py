"""Consistency sampling: one step and multistep (Song et al. 2023, Algorithm 1), EDM and TrigFlow.

EDM coordinates, f(x, t) a consistency function with f(x, eps) = x and levels T = tau_0 > tau_1 >
... > tau_k > eps:

  x = f(x_T, T),  x_T = T z;  for tau in tau_1..tau_k: x = f(x + sqrt(tau^2 - eps^2) z, tau).

TrigFlow (Lu and Song 2024), times pi/2 >= t_0 > ... > t_k > 0, x starts as sd z (the prior at
pi/2):

  x = f(x, t_0);  for t in t_1..t_k: x = f(cos(t) x + sin(t) sd z, t);

sCM's two-step sampler is times = (pi/2, 1.1) (``SCM_TWO_STEPS``).

The core samplers' conventions (``generative.samplers``): pure functions of (f, x, levels) with x
[B, ...] at the first level's scale, f called with one level per example, [B]; conditioning closed
over (``functools.partial``); one ``lax.scan`` over the levels after the first, so the levels are
traced and only their number is static; the standard normal z of step i for sample b is
``normal(fold_in(fold_in(key, sample_index[b]), i))``, so a sample does not change with the batch
size or device count (``sample_index`` defaults to arange(B)).
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from generative.samplers import checked_sample_keys, per_sample_normal
from generative.schedules import check_in_dtype, concrete

SCM_TWO_STEPS = (math.pi / 2, 1.1)


def _one_line(values: np.ndarray) -> str:
    """Levels for an error message, on one line (long arrays elided)."""
    return np.array2string(values, separator=", ", threshold=8, max_line_width=10**9)


def _prepare(name, f, x, levels, key, sample_index, *, lower, lower_name, upper=None):
    """Validate the arguments (levels by value when concrete); return x, levels in x's dtype and
    the per-sample keys (None for a single level)."""
    if not callable(f):
        raise ValueError(f"{name}: f must be a callable f(x, t), got {f!r}")
    x = jnp.asarray(x)
    if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name}: x must be a floating array [B, *event], got {x.dtype} {x.shape}")
    if np.ndim(levels) != 1 or np.shape(levels)[0] < 1:
        raise ValueError(
            f"{name}: levels must be a 1-D array of >= 1 levels, got {np.shape(levels)}"
        )
    values = concrete(levels)
    if values is not None:
        shown = _one_line(values)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{name}: levels must be finite, got {shown}")
        if not np.all(np.diff(values) < 0):
            raise ValueError(f"{name}: levels must be strictly descending, got {shown}")
        if not values[-1] > lower:
            raise ValueError(f"{name}: every level must be > {lower_name}={lower}, got {shown}")
        if upper is not None and not values[0] <= np.asarray(upper, values.dtype):
            raise ValueError(f"{name}: every level must be <= {upper}, got {shown}")
        check_in_dtype(f"{name}: levels", values, x.dtype, "levels")
    levels = jnp.asarray(levels, x.dtype)
    sample_keys = None
    if levels.shape[0] > 1:
        why = "more than one level adds noise"
        sample_keys = checked_sample_keys(name, x, key, sample_index, why)
    out = jax.eval_shape(f, x, jax.ShapeDtypeStruct(x.shape[:1], x.dtype))
    if getattr(out, "shape", None) != x.shape:
        raise ValueError(
            f"{name}: f(x, t) must return x's shape {x.shape}, got {getattr(out, 'shape', out)}"
        )
    return x, levels, sample_keys


def _run(f, x, levels, sample_keys, renoise):
    """x = f(x, levels[0]); then for i >= 1: x = f(renoise(x, levels[i], z_i), levels[i])."""

    def call(x, level):
        return f(x, jnp.broadcast_to(level, x.shape[:1])).astype(x.dtype)

    x = call(x, levels[0])
    if sample_keys is None:
        return x

    def body(x, inputs):
        i, level = inputs
        z = per_sample_normal(sample_keys, x, i)
        return call(renoise(x, level, z), level), None

    steps = jnp.arange(1, levels.shape[0])
    x, _ = lax.scan(body, x, (steps, levels[1:]))
    return x


def multistep(
    f: Callable[..., jax.Array], x, levels, *, key=None, eps: float = 0.002, sample_index=None
) -> jax.Array:
    """Multistep consistency sampling (Song et al. 2023, Algorithm 1) in EDM coordinates.

    x = f(x, T) with x = T z at T = levels[0]; then x = f(x + sqrt(tau^2 - eps^2) z, tau) for each
    tau in levels[1:] (strictly descending, all > eps = the process's sigma_min). One level is
    ``one_step`` and needs no key; more need key.
    """
    x, levels, sample_keys = _prepare(
        "multistep", f, x, levels, key, sample_index, lower=eps, lower_name="eps"
    )

    def renoise(x, tau, z):
        return x + jnp.sqrt(tau**2 - eps**2) * z

    return _run(f, x, levels, sample_keys, renoise)


def one_step(f: Callable[..., jax.Array], x, sigma_max, *, eps: float = 0.002) -> jax.Array:
    """One-step consistency sampling x = f(x, sigma_max) for x = sigma_max z (Song et al. 2023)."""
    lo, hi = concrete(eps), concrete(sigma_max)
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"one_step: eps must be < sigma_max, got eps={eps}, sigma_max={sigma_max}")
    return multistep(f, x, jnp.reshape(jnp.asarray(sigma_max), (1,)), eps=eps)


def trigflow_multistep(
    f: Callable[..., jax.Array],
    x,
    times,
    *,
    key=None,
    sigma_data: float = 0.5,
    sample_index=None,
) -> jax.Array:
    """Multistep sampling of a TrigFlow consistency function f(x_t, t) (Lu and Song 2024).

    x = f(x, times[0]) with x = sd z (t = pi/2); then x = f(cos(t) x + sin(t) sd z, t) for each t
    in times[1:]; times strictly descending in (0, pi/2]. ``SCM_TWO_STEPS`` = (pi/2, 1.1) is sCM's
    two-step sampler.
    """
    x, times, sample_keys = _prepare(
        "trigflow_multistep",
        f,
        x,
        times,
        key,
        sample_index,
        lower=0.0,
        lower_name="0",
        upper=math.pi / 2,
    )

    def renoise(x, t, z):
        return jnp.cos(t) * x + jnp.sin(t) * sigma_data * z

    return _run(f, x, times, sample_keys, renoise)
