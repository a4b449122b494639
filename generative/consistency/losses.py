"""Consistency distillation and training losses, and the pieces of improved CT, as pure functions.

Levels are ascending here, eps = t_0 < t_1 < ... < t_{N-1} = T (iCT's indexing, shifted to start at
0); index i picks the adjacent pair (t_i, t_{i+1}), one per example. With z ~ N(0, I):

  CD (Song et al. 2023, sec. 4): w_i d(f(x0 + t_{i+1} z, t_{i+1}), sg f^-(x_hat_i, t_i)),
                                  x_hat_i = one teacher PF-ODE step (euler or heun) from
                                  x0 + t_{i+1} z down to t_i;
  CT (Song et al. 2023, sec. 5): the same with x_hat_i = x0 + t_i z, the same z: no teacher, the
                                  one-sample estimate E[z | x] of the score (E[x_hat_i | x] is the
                                  Euler step of the exact PF-ODE).

f^- is the target: an EMA of the online network in CM, the online network itself in iCT; its
output is always under stop_gradient, so pass the same f twice for iCT. Improved CT (Song and
Dhariwal 2023): pseudo-Huber d, weight w_i = 1 / (t_{i+1} - t_i), Karras levels (rho = 7) with the
curriculum N(k), and i drawn from the discrete log-normal (P_mean = -1.1, P_std = 2.0). CM's own
choice is ``weighting='uniform'`` with ``squared_l2`` (or LPIPS).

ECT (Geng et al. 2024, locuslab/ect training/loss.py) is CT in continuous time: any pair r < t per
example (``ect_loss``, which CT calls with t = t_{i+1}, r = t_i), t from the clipped log-normal
(``ect_times``) and r = t - gap with a gap that shrinks by q every stage (``ect_gap``); at r = eps
the target is f(x_r, eps) = x_r = x0 + eps z, denoising, where ECT starts from a diffusion model.

Every loss returns one value per example [B]; randomness comes only from the explicit key.
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.special import erf

from generative.processes import per_example
from generative.samplers import to_d
from generative.schedules import concrete, karras_sigmas

WEIGHTINGS = ("ict", "uniform")
SOLVERS = ("euler", "heun")


def _check_pair(a: jax.Array, b: jax.Array) -> None:
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(
            f"distance needs two arrays of one shape [B, ...], got {a.shape}, {b.shape}"
        )


def squared_l2(a: jax.Array, b: jax.Array) -> jax.Array:
    """|a - b|^2 per example (CM's l2 metric)."""
    _check_pair(a, b)
    return jnp.sum((a - b) ** 2, axis=tuple(range(1, a.ndim)))


def pseudo_huber(a: jax.Array, b: jax.Array, c: float | None = None) -> jax.Array:
    """sqrt(|a - b|^2 + c^2) - c per example, c = 0.00054 sqrt(dim) with dim the number of elements
    of one example (Song and Dhariwal 2023)."""
    if c is None:
        c = 0.00054 * math.sqrt(math.prod(a.shape[1:]))
    return jnp.sqrt(squared_l2(a, b) + c**2) - c


def ict_num_levels(step, total_steps: int, *, s0: int = 10, s1: int = 1280) -> jax.Array:
    """iCT's discretisation curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1 with K' = floor(K /
    (log2(s1 / s0) + 1)) (Song and Dhariwal 2023); int32, also for a traced step k."""
    if not (isinstance(s0, int) and isinstance(s1, int) and 1 <= s0 <= s1):
        raise ValueError(f"s0 and s1 must be ints with 1 <= s0 <= s1, got s0={s0!r}, s1={s1!r}")
    doublings = math.log2(s1 / s0)
    k_prime = math.floor(total_steps / (doublings + 1))
    if k_prime < 1:
        raise ValueError(
            f"total_steps must be >= log2(s1/s0) + 1 = {doublings + 1:g}, got {total_steps!r}"
        )
    known = concrete(step)
    if known is not None and not np.all(known >= 0):
        raise ValueError(f"step must be >= 0, got {step!r}")
    exponent = jnp.minimum(jnp.asarray(step) // k_prime, math.ceil(doublings))
    return (jnp.minimum(s0 * 2 ** exponent.astype(jnp.int32), s1) + 1).astype(jnp.int32)


def ict_levels(n: int, *, eps: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0):
    """n ascending Karras levels t_i = (eps^(1/rho) + i/(n-1) (T^(1/rho) - eps^(1/rho)))^rho,
    i = 0..n-1, with t_0 = eps and t_{n-1} = T = sigma_max exactly (iCT's grid)."""
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an int >= 2 (number of levels), got {n!r}")
    lo, hi = concrete(eps), concrete(sigma_max)
    if lo is not None and not lo > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if lo is not None and hi is not None and not lo < hi:
        raise ValueError(f"eps must be < sigma_max, got eps={eps!r}, sigma_max={sigma_max!r}")
    levels = jnp.flip(karras_sigmas(int(n), eps, sigma_max, rho)[:-1])
    return levels.at[0].set(eps).at[-1].set(sigma_max)


def lognormal_level_probabilities(levels, *, p_mean: float = -1.1, p_std: float = 2.0):
    """p_i ∝ erf((ln t_{i+1} - P_mean) / (sqrt(2) P_std)) - erf((ln t_i - P_mean) / (sqrt(2)
    P_std)) over the n - 1 adjacent pairs of ascending levels (Song and Dhariwal 2023)."""
    _check_levels(levels)
    cdf = erf((jnp.log(jnp.asarray(levels)) - p_mean) / (math.sqrt(2) * p_std))
    mass = jnp.diff(cdf)
    return mass / jnp.sum(mass)


def sample_level_indices(key: jax.Array, probabilities: jax.Array, batch_size: int) -> jax.Array:
    """batch_size indices i in [0, n - 2] drawn with P(i) = probabilities[i]: int [batch_size]."""
    return jax.random.categorical(key, jnp.log(probabilities), shape=(batch_size,))


def level_gap_weight(levels: jax.Array, indices: jax.Array) -> jax.Array:
    """iCT's weight 1 / (t_{i+1} - t_i) per example."""
    levels = jnp.asarray(levels)
    return 1 / (levels[indices + 1] - levels[indices])


def teacher_step(
    denoise: Callable[..., jax.Array], x: jax.Array, sigma, sigma_next, *, solver="heun", **cond
) -> jax.Array:
    """One PF-ODE step dx/dsigma = (x - D(x, sigma)) / sigma from sigma to sigma_next > 0, one
    level per example: Euler x' = x + h d(x, sigma), or Heun x + h (d(x, sigma) + d(x', sigma_next))
    / 2 (EDM Algorithm 1), h = sigma_next - sigma.

    The core samplers' steps live inside their scans with one level for the whole batch and a
    special last step into 0; CD needs a per-example pair of levels, so the step is written here,
    on their ``to_d``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    sigma_next = jnp.broadcast_to(jnp.asarray(sigma_next, x.dtype), x.shape[:1])
    s, s_next = per_example(sigma, x), per_example(sigma_next, x)
    d = to_d(x, s, denoise(x, sigma, **cond))
    x_euler = x + (s_next - s) * d
    if solver == "euler":
        return x_euler
    d_next = to_d(x_euler, s_next, denoise(x_euler, sigma_next, **cond))
    return x + (s_next - s) * (d + d_next) / 2


def _check_levels(levels) -> None:
    if np.ndim(levels) != 1 or np.shape(levels)[0] < 2:
        raise ValueError(f"levels must be a 1-D array of >= 2 levels, got {np.shape(levels)}")
    values = concrete(levels)
    if values is not None and not (values[0] > 0 and np.all(np.diff(values) > 0)):
        shown = np.array2string(values, separator=", ", threshold=8, max_line_width=10**9)
        raise ValueError(f"levels must be > 0 and strictly ascending (eps ... T), got {shown}")


def _check_inputs(x0, levels, indices, weighting) -> None:
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if np.ndim(x0) < 2:
        raise ValueError(f"x0 must have shape [B, ...] with a data axis, got {np.shape(x0)}")
    _check_levels(levels)
    if np.shape(indices) != np.shape(x0)[:1] or not jnp.issubdtype(
        jnp.result_type(indices), jnp.integer
    ):
        raise ValueError(
            f"indices must be int [B] = {np.shape(x0)[:1]}, got {jnp.result_type(indices)} "
            f"{np.shape(indices)}"
        )
    known, n = concrete(indices), np.shape(levels)[0]
    if known is not None and not np.all((known >= 0) & (known <= n - 2)):
        raise ValueError(
            f"indices must be in [0, {n - 2}] (pairs of {n} levels), got {known.min()} to "
            f"{known.max()}"
        )


def _pairs(x0, key, levels, indices):
    """t_i, t_{i+1}, z and x0 + t_{i+1} z per example."""
    levels = jnp.asarray(levels, x0.dtype)
    t, t_next = levels[indices], levels[indices + 1]
    z = jax.random.normal(key, x0.shape, x0.dtype)
    return t, t_next, z, x0 + per_example(t_next, x0) * z


def _consistency_loss(online_f, target_f, x_next, t_next, x_target, t, distance, weight, cond):
    """weight d(online_f(x_next, t_next), sg target_f(x_target, t)) per example."""
    online = online_f(x_next, t_next, **cond)
    if online.shape != x_next.shape:
        raise ValueError(f"online_f must return x's shape {x_next.shape}, got {online.shape}")
    target = lax.stop_gradient(target_f(x_target, t, **cond))
    return weight * distance(online, target)


def _weight(weighting, levels, indices, x0):
    if weighting == "ict":
        return level_gap_weight(jnp.asarray(levels, x0.dtype), indices)
    return jnp.ones(x0.shape[:1], x0.dtype)


def _check_times(x0, t, r):
    """t and r as floating [B] arrays of x0's dtype (a scalar is broadcast), t >= r > 0."""
    batch = np.shape(x0)[:1]
    for name, value in (("t", t), ("r", r)):
        if np.ndim(value) not in (0, 1) or (np.ndim(value) == 1 and np.shape(value) != batch):
            raise ValueError(f"{name} must be a scalar or [B] = {batch}, got {np.shape(value)}")
        if not jnp.issubdtype(jnp.result_type(value), jnp.floating):
            raise ValueError(f"{name} must be floating, got {jnp.result_type(value)}")
    known_t, known_r = concrete(t), concrete(r)
    if known_r is not None and not np.all(known_r > 0):
        raise ValueError(f"r must be > 0 (eps or more), got min {known_r.min()}")
    if known_t is not None and known_r is not None and not np.all(known_t >= known_r):
        raise ValueError(f"t must be >= r per example, got min t - r = {np.min(known_t - known_r)}")
    cast = lambda v: jnp.broadcast_to(jnp.asarray(v, x0.dtype), batch)  # noqa: E731
    return cast(t), cast(r)


def ect_loss(
    online_f: Callable[..., jax.Array],
    target_f: Callable[..., jax.Array],
    x0: jax.Array,
    key: jax.Array,
    t: jax.Array,
    r: jax.Array,
    *,
    distance: Callable = pseudo_huber,
    weighting: str = "ict",
    **cond,
) -> jax.Array:
    """The continuous-time pair loss w(t, r) d(f(x0 + t z, t), sg f^-(x0 + r z, r)), one z, [B].

    t, r scalars or [B] with t >= r > 0 (ECT: ``ect_times``, ``ect_gap``); weighting 'ict' (w =
    1 / (t - r); 0 where t = r, a pair of one point whose distance is 0) or 'uniform' (w = 1).
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if np.ndim(x0) < 2:
        raise ValueError(f"x0 must have shape [B, ...] with a data axis, got {np.shape(x0)}")
    t, r = _check_times(x0, t, r)
    z = jax.random.normal(key, x0.shape, x0.dtype)
    x_t, x_r = x0 + per_example(t, x0) * z, x0 + per_example(r, x0) * z
    if weighting == "ict":
        apart = t > r
        weight = jnp.where(apart, 1 / jnp.where(apart, t - r, 1), 0)
    else:
        weight = jnp.ones_like(t)
    return _consistency_loss(online_f, target_f, x_t, t, x_r, r, distance, weight, cond)


def ect_times(
    key: jax.Array,
    batch_size: int,
    *,
    p_mean: float = -1.1,
    p_std: float = 2.0,
    eps: float = 0.002,
    sigma_max: float = 80.0,
) -> jax.Array:
    """ECT's noise levels t = clip(exp(P_mean + P_std n), eps, sigma_max), n ~ N(0, 1): [B]."""
    if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if not p_std > 0:
        raise ValueError(f"p_std must be > 0, got {p_std!r}")
    if not 0 < eps < sigma_max:
        raise ValueError(f"need 0 < eps < sigma_max, got eps={eps!r}, sigma_max={sigma_max!r}")
    n = jax.random.normal(key, (int(batch_size),))
    return jnp.clip(jnp.exp(p_mean + p_std * n), eps, sigma_max)


def ect_stage(step, stage_steps: int) -> jax.Array:
    """ECT's stage a = floor(step / stage_steps), int32, also for a traced step."""
    if not isinstance(stage_steps, (int, np.integer)) or stage_steps < 1:
        raise ValueError(f"stage_steps must be an int >= 1, got {stage_steps!r}")
    known = concrete(step)
    if known is not None and not np.all(known >= 0):
        raise ValueError(f"step must be >= 0, got {step!r}")
    return (jnp.asarray(step) // int(stage_steps)).astype(jnp.int32)


def ect_gap(
    t: jax.Array,
    step,
    *,
    stage_steps: int,
    q: float = 2.0,
    k: float = 8.0,
    b: float = 1.0,
    eps: float = 0.002,
) -> jax.Array:
    """ECT's r = clip(t (1 - n(t) / q^(a + 1)), eps, t), n(t) = 1 + k sigmoid(-b t), a =
    ``ect_stage(step, stage_steps)`` (locuslab/ect: q^(stage + 1), so the first stage is
    denoising (r = eps) only where n(t) >= q); [B] like t, also for a traced step."""
    if not q > 1:
        raise ValueError(f"q must be > 1 (the gap shrinks by q per stage), got {q!r}")
    if not k >= 0:
        raise ValueError(f"k must be >= 0, got {k!r}")
    if not eps > 0:
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if not jnp.issubdtype(jnp.result_type(t), jnp.floating):
        raise ValueError(f"t must be floating, got {jnp.result_type(t)}")
    t = jnp.asarray(t)
    a = ect_stage(step, stage_steps)
    decay = jnp.power(jnp.asarray(q, t.dtype), -(a + 1).astype(t.dtype))
    n = 1 + k * jax.nn.sigmoid(-b * t)
    return jnp.minimum(jnp.maximum(t * (1 - n * decay), eps), t)


def ct_loss(
    online_f: Callable[..., jax.Array],
    target_f: Callable[..., jax.Array],
    x0: jax.Array,
    key: jax.Array,
    levels: jax.Array,
    indices: jax.Array,
    *,
    distance: Callable = pseudo_huber,
    weighting: str = "ict",
    **cond,
) -> jax.Array:
    """Consistency training: w_i d(f(x0 + t_{i+1} z, t_{i+1}), sg f^-(x0 + t_i z, t_i)), [B].

    levels ascending (``ict_levels``), indices int [B] (``sample_level_indices``); weighting 'ict'
    (1 / (t_{i+1} - t_i)) or 'uniform'. It is ``ect_loss`` at t = t_{i+1}, r = t_i.
    """
    _check_inputs(x0, levels, indices, weighting)
    levels = jnp.asarray(levels, x0.dtype)
    return ect_loss(
        online_f,
        target_f,
        x0,
        key,
        levels[indices + 1],
        levels[indices],
        distance=distance,
        weighting=weighting,
        **cond,
    )


def cd_loss(
    online_f: Callable[..., jax.Array],
    target_f: Callable[..., jax.Array],
    teacher: Callable[..., jax.Array],
    x0: jax.Array,
    key: jax.Array,
    levels: jax.Array,
    indices: jax.Array,
    *,
    solver: str = "heun",
    distance: Callable = pseudo_huber,
    weighting: str = "ict",
    **cond,
) -> jax.Array:
    """Consistency distillation: w_i d(f(x, t_{i+1}), sg f^-(x_hat_i, t_i)), x = x0 + t_{i+1} z
    and x_hat_i = ``teacher_step(teacher, x, t_{i+1}, t_i, solver=solver)``, [B].

    teacher is an EDM-convention denoiser D(x, sigma, **cond); the rest as ``ct_loss``.
    """
    _check_inputs(x0, levels, indices, weighting)
    t, t_next, _, x_next = _pairs(x0, key, levels, indices)
    x_target = lax.stop_gradient(teacher_step(teacher, x_next, t_next, t, solver=solver, **cond))
    weight = _weight(weighting, levels, indices, x0)
    return _consistency_loss(
        online_f, target_f, x_next, t_next, x_target, t, distance, weight, cond
    )
