"""Continuous-time consistency models in TrigFlow (sCM, Lu and Song 2024): sCT and sCD.

TrigFlow: x_t = cos(t) x0 + sin(t) z, z ~ N(0, sd^2 I), t in [0, pi/2], and the consistency function
f(x_t, t) = cos(t) x_t - sin(t) sd F(x_t / sd, t) (``parametrization.trigflow_function``). The
continuous-time consistency condition is d f / dt = 0 along the PF-ODE, whose velocity dx_t/dt is
cos(t) z - sin(t) x0 for sCT (the one-sample estimate, from data) and a trained teacher's for sCD
(``trigflow_velocity(trigflow_denoiser_from_edm(D))``). sCM's Algorithm 1:

  t = arctan(e^tau / sd), tau ~ N(P_mean, P_std^2)                   (sigma = sd tan t log-normal)
  cos(t) sin(t) dF^- / dt = jvp(F^-, (x_t / sd, t), (cos sin dx_t/dt / sd, cos sin))
  g = -cos^2(t) (sd F^- - dx_t/dt) - r cos(t) sin(t) (x_t + sd dF^- / dt)   (= cos(t) d f^- / dt)
  g = g / (||g|| + c),  ||g|| the root mean square over one example's D elements
  loss = w(t) / (D e^u(t)) ||F(x_t / sd, t) - F^- - g||^2 + u(t),  w(t) = 1 / (sd tan t)

F^- is the online network under stop_gradient: only the plain forward pass F is differentiated,
and the JVP needs forward mode through every layer (the Pallas attention kernel has its own rule;
cuDNN attention has none). The JVP is taken with the tangent already scaled by cos(t) sin(t), as
the paper writes it, so it stays finite near t = 0 and pi/2. r ramps from 0 to 1 over the tangent
warm-up (``tangent_warmup``); u is the learned log-variance (adaptive weighting,
``generative.models.embeddings.LogVarianceHead``; u = 0 without one); w is the paper's prior
weighting. The network sees t in at least float32 (the published fix for gradient-norm spikes in
low precision keeps the time embedding in float32).
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from generative.consistency.parametrization import time_dtype
from generative.processes import per_example
from generative.schedules import concrete


def trigflow_times(key: jax.Array, batch_size: int, *, p_mean, p_std, sigma_data=0.5, dtype=None):
    """t = arctan(exp(tau) / sd), tau ~ N(P_mean, P_std^2), [batch_size] (sCM's proposal)."""
    if concrete(p_std) is not None and not concrete(p_std) > 0:
        raise ValueError(f"p_std must be > 0, got {p_std!r}")
    dtype = dtype or jnp.result_type(float)
    tau = p_mean + p_std * jax.random.normal(key, (batch_size,), dtype)
    return jnp.arctan(jnp.exp(tau) / sigma_data)


def tangent_warmup(step, warmup_steps: int) -> jax.Array:
    """r = min(1, step / H) (H = warmup_steps; 0: no warm-up, r = 1), float32, traced step ok."""
    if not isinstance(warmup_steps, (int, np.integer)) or warmup_steps < 0:
        raise ValueError(f"warmup_steps must be an int >= 0, got {warmup_steps!r}")
    if warmup_steps == 0:
        return jnp.ones((), jnp.float32)
    return jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup_steps)


def scm_tangent(target: Callable, x_t: jax.Array, t, dxt_dt: jax.Array, *, sigma_data=0.5,
                warmup=1.0, **cond):  # fmt: skip
    """(F^-, g) before normalisation: F^- = target(x_t / sd, t) and g = -cos^2(t) (sd F^- -
    dx_t/dt) - r cos(t) sin(t) (x_t + sd dF^-/dt), with the time derivative along dx_t/dt by one
    jax.jvp; with r = 1, g = cos(t) d/dt f^-(x_t, t) (f^- = ``trigflow_function(target)``).

    target(x_in, t, **cond) is the raw TrigFlow network; x_t, dxt_dt [B, ...], t [B].
    """
    if dxt_dt.shape != x_t.shape:
        raise ValueError(f"dxt_dt must have x_t's shape {x_t.shape}, got {dxt_dt.shape}")
    t = jnp.broadcast_to(jnp.asarray(t, time_dtype(x_t.dtype)), x_t.shape[:1])
    cos, sin = jnp.cos(t), jnp.sin(t)
    cos_sin = cos * sin
    cos_x, cos_sin_x = per_example(cos, x_t), per_example(cos_sin, x_t)

    def network(x_in, time):
        return target(x_in, time, **cond)

    primals = (x_t / sigma_data, t)
    tangents = (cos_sin_x * dxt_dt / sigma_data, cos_sin)
    f_minus, cos_sin_df = jax.jvp(network, primals, tangents)
    if f_minus.shape != x_t.shape:
        raise ValueError(f"target must return x_t's shape {x_t.shape}, got {f_minus.shape}")
    g = -(cos_x**2) * (sigma_data * f_minus - dxt_dt)
    g = g - warmup * (cos_sin_x * x_t + sigma_data * cos_sin_df)
    return f_minus, g


def normalize_tangent(g: jax.Array, c: float = 0.1) -> jax.Array:
    """g / (||g|| + c) per example, ||g|| = sqrt(mean(g^2)) over one example's elements: the
    paper's norm as a root mean square, so that c = 0.1 means the same on 2-D points and on images
    (a plain L2 norm grows with sqrt(D) and would make c vanish on large data)."""
    if concrete(c) is not None and not concrete(c) > 0:
        raise ValueError(f"tangent_c must be > 0, got {c!r}")
    rms = jnp.sqrt(jnp.mean(g**2, axis=tuple(range(1, g.ndim))))
    return g / per_example(rms + c, g)


def scm_loss(
    online: Callable[..., jax.Array],
    target: Callable[..., jax.Array],
    x0: jax.Array,
    key: jax.Array,
    *,
    sigma_data: float = 0.5,
    p_mean: float = -1.0,
    p_std: float = 1.4,
    tangent_c: float = 0.1,
    warmup=1.0,
    velocity: Callable[..., jax.Array] | None = None,
    logvar: Callable[[jax.Array], jax.Array] | None = None,
    **cond,
) -> jax.Array:
    """The sCM loss per example, [B] (module docstring): sCT with velocity=None (dx_t/dt = cos(t) z
    - sin(t) x0), sCD with velocity(x_t, t, **cond) = the teacher's dx_t/dt.

    online and target are the raw TrigFlow network F(x_in, t, **cond), target's parameters under
    stop_gradient (it is only differentiated forward, by the JVP); logvar(t) -> [B] the learned
    log-variance u(t) (None: u = 0); warmup the tangent warm-up factor r in [0, 1].
    """
    if np.ndim(x0) < 2:
        raise ValueError(f"x0 must have shape [B, ...] with a data axis, got {np.shape(x0)}")
    time_key, noise_key = jax.random.split(key)
    batch = x0.shape[0]
    t = trigflow_times(time_key, batch, p_mean=p_mean, p_std=p_std, sigma_data=sigma_data,
                       dtype=time_dtype(x0.dtype))  # fmt: skip
    z = sigma_data * jax.random.normal(noise_key, x0.shape, x0.dtype)
    cos, sin = per_example(jnp.cos(t), x0), per_example(jnp.sin(t), x0)
    x_t = cos * x0 + sin * z
    if velocity is None:
        dxt_dt = cos * z - sin * x0
    else:
        dxt_dt = lax.stop_gradient(velocity(x_t, t, **cond))
    f_minus, g = scm_tangent(target, x_t, t, dxt_dt, sigma_data=sigma_data, warmup=warmup, **cond)
    g = normalize_tangent(g, tangent_c)
    f_minus, g = lax.stop_gradient(f_minus), lax.stop_gradient(g)
    out = online(x_t / sigma_data, t, **cond)
    if out.shape != x0.shape:
        raise ValueError(f"online must return x0's shape {x0.shape}, got {out.shape}")
    u = jnp.zeros_like(t) if logvar is None else logvar(t)
    if u.shape != t.shape:
        raise ValueError(f"logvar must return one value per example {t.shape}, got {u.shape}")
    dim = math.prod(x0.shape[1:])
    squared = jnp.sum((out - f_minus - g) ** 2, axis=tuple(range(1, x0.ndim)))
    prior = 1 / (sigma_data * jnp.tan(t))
    return prior / (dim * jnp.exp(u)) * squared + u
