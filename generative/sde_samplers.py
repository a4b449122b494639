"""Reverse-time SDE samplers on a process (Song et al. 2021, "Score-Based Generative Modeling
through SDEs").

For a forward SDE dx = f(x, t) dt + g(t) dw (``process.drift``, ``process.diffusion``; VP, sub-VP,
VE, EDM in ``generative.processes``) the reverse SDE is dx = [f - g^2 grad log p_t] dt + g dw_bar,
integrated from t_max down to t_min on the grid t_i = linspace(t_max, t_min, num_steps + 1). The
score comes from an EDM-convention denoiser through ``processes.score_from_denoiser``. Coordinates
are the process's own (x = s(t)(x0 + sigma n)): start from ``process.prior_sample``; the result is x
at t_min, from a last step without noise (score_sde's ``denoise=True``), so for VP it still carries
noise of level sigma(t_min) (about 0.01 for eps = 1e-3).

Randomness follows ``generative.samplers``: the draw for sample b at step i, substep j is
normal(fold_in(fold_in(fold_in(key, sample_index[b]), i), j), with j = 0 for the predictor and j = 1
+ k for the k-th corrector step, so an Euler-Maruyama sample does not depend on the batch size or
the device count (the corrector's step size does: see ``predictor_corrector``).
"""

import jax.numpy as jnp
import numpy as np
from jax import lax

from generative import processes, schedules
from generative.samplers import per_sample_keys, per_sample_normal


def _check(name, process, x, num_steps, key, sample_index):
    if not (hasattr(process, "drift") and hasattr(process, "diffusion")):
        raise ValueError(
            f"{name}: process must be an SDE with drift and diffusion, got {process!r}"
        )
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"{name}: num_steps must be an int >= 1, got {num_steps!r}")
    x = jnp.asarray(x)
    if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name}: x must be a floating array [B, *event], got {x.dtype} {x.shape}")
    t_max, t_min = schedules.concrete(process.t_max), schedules.concrete(process.t_min)
    if t_max is not None and t_min is not None:  # _integrate's time grid, in x's dtype
        ts = np.linspace(t_max, t_min, num_steps + 1)
        schedules.check_in_dtype(f"{name}: num_steps", ts, x.dtype, "t")
    if key is None:
        raise ValueError(f"{name}: the reverse SDE is stochastic; pass key=")
    index = jnp.arange(x.shape[0]) if sample_index is None else jnp.asarray(sample_index)
    if index.shape != x.shape[:1] or not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(f"{name}: sample_index must be int [B] = {x.shape[:1]}, got {index.shape}")
    return x, per_sample_keys(key, index)


def _integrate(process, denoise, x, keys, num_steps, corrector, return_trajectory):
    """Scan ``corrector`` then an Euler-Maruyama predictor step over the time grid; x_mean at the
    end."""
    score_fn = processes.score_from_denoiser(process, denoise)
    ts = jnp.linspace(process.t_max, process.t_min, num_steps + 1).astype(x.dtype)

    def score(x, t):
        return score_fn(x, jnp.broadcast_to(t, x.shape[:1])).astype(x.dtype)

    def step(x, i):
        t, dt = ts[i], ts[i + 1] - ts[i]
        x = corrector(score, x, i, ts)
        g = process.diffusion(t)
        x_mean = x + (process.drift(x, t) - g**2 * score(x, t)) * dt
        x = x_mean + g * jnp.sqrt(-dt) * per_sample_normal(keys, x, i, 0)
        return x, (x_mean, x if return_trajectory else None)

    x_last, (means, xs) = lax.scan(step, x, jnp.arange(num_steps))
    if return_trajectory:
        return means[-1], jnp.concatenate([x[None], xs[:-1], means[-1:]])
    return means[-1]


def euler_maruyama(
    process, denoise, x, *, key, num_steps=1000, sample_index=None, return_trajectory=False
):
    """Euler-Maruyama on the reverse SDE (score_sde's EulerMaruyamaPredictor, no corrector).

    x_mean = x + [f(x, t_i) - g(t_i)^2 score(x, t_i)] (t_{i+1} - t_i),
    x_{i+1} = x_mean + g(t_i) sqrt(t_i - t_{i+1}) z; returns the last x_mean. ``num_steps`` score
    calls. With return_trajectory, also the iterates [num_steps + 1, B, ...] (the last one
    noise-free).
    """
    x, keys = _check("euler_maruyama", process, x, num_steps, key, sample_index)
    return _integrate(
        process, denoise, x, keys, num_steps, lambda s, x, i, ts: x, return_trajectory
    )


def predictor_corrector(
    process,
    denoise,
    x,
    *,
    key,
    num_steps=1000,
    snr=0.16,
    n_steps=1,
    sample_index=None,
    axis_name=None,
    return_trajectory=False,
):
    """score_sde's PC sampler: at each t_i, ``n_steps`` Langevin corrector steps, then an
    Euler-Maruyama step.

    Langevin step (score_sde's LangevinCorrector): eps = 2 alpha (snr mean|z| / mean|score|)^2,
    x = x + eps score(x, t_i) + sqrt(2 eps) z, with alpha_i = (s(t_i) / s(t_{i+1}))^2 (score_sde's 1
    - beta_i for VP to first order, 1 for VE and EDM). As in score_sde the norms are averaged over
      the batch (per-sample
    norms make the step explode for samples whose score is near 0, at a mode, in low dimension), so
    this step size is the one place where a sample depends on its batch; under ``shard_map`` pass
    ``axis_name`` to average over all shards, which reproduces the unsharded result. Costs num_steps
    (1 + n_steps) score calls.
    """
    if not (isinstance(n_steps, int) and n_steps >= 0):
        raise ValueError(f"predictor_corrector: n_steps must be an int >= 0, got {n_steps!r}")
    if not snr > 0:
        raise ValueError(f"predictor_corrector: snr must be > 0, got {snr!r}")
    x, keys = _check("predictor_corrector", process, x, num_steps, key, sample_index)

    def mean_norm(v):
        mean = jnp.mean(jnp.sqrt(jnp.sum(v.reshape(v.shape[0], -1) ** 2, axis=1)))
        return mean if axis_name is None else lax.pmean(mean, axis_name)

    def langevin(score, x, i, ts):
        t = ts[i]
        alpha = (process.scale(t) / process.scale(ts[i + 1])) ** 2
        for j in range(n_steps):
            grad = score(x, t)
            z = per_sample_normal(keys, x, i, 1 + j)
            step_size = 2 * alpha * (snr * mean_norm(z) / mean_norm(grad)) ** 2
            x = x + step_size * grad + jnp.sqrt(2 * step_size) * z
        return x

    return _integrate(process, denoise, x, keys, num_steps, langevin, return_trajectory)
