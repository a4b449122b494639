"""Samplers that integrate from the first noise level of ``sigmas`` down to sigma = 0.

k-diffusion's ``sampling.py`` (Crowson) in pure JAX: every sampler is one ``lax.scan`` over its
steps, so it compiles once per shape (``sigmas`` is traced; only its length is static) and works
under ``jit``, ``vmap``, ``grad`` (with respect to x and to whatever the denoiser closes over) and
``shard_map``.

Shared conventions:

* ``denoise(x, sigma) -> E[x0 | x]`` is called with x [B, *event] and one noise level per example,
  sigma [B]. Conditioning (labels, guidance) is closed over: ``functools.partial(denoise,
  labels=labels)``.
* ``x`` [B, *event] starts at the scale of ``sigmas[0]`` (e.g. ``sigmas[0] * normal``); the return
  value is the sample at sigma = 0. Coordinates are EDM's unscaled ones, x = x0 + sigma n (divide by
  s(t) first).
* ``sigmas`` is descending and ends in exactly 0 (see ``generative.schedules``); it is checked with
  ``schedules.check_sigmas`` before anything is traced, and also in x's dtype, the one the steps
  run in (e.g. 200 Karras levels in bfloat16 give equal log sigmas, a zero DPM-Solver++ step).
* The probability-flow ODE is EDM's eq. 3 with s = 1, sigma(t) = t:
  dx/dsigma = (x - D(x, sigma)) / sigma.
* Every sampler scans the steps whose next level is > 0 and then takes one final step into
  sigma = 0, so no step divides by zero or takes log 0 (this is also why ``heun`` on n levels costs
  2n - 1 calls).
* Randomness: the standard normal draw that step i adds to sample b is
  ``normal(fold_in(fold_in(key, sample_index[b]), i))`` (``sample_noise``), so a sample does not
  change with the batch size or the number of devices. ``sample_index`` defaults to ``arange(B)``;
  under ``shard_map`` pass each shard its global indices.

Options every sampler accepts besides its own:

* ``callback``: called on the host (``jax.debug.callback``) once per step with a dict of
  k-diffusion's keys ``x`` (the iterate the denoiser sees, after any churn), ``i``, ``sigma``,
  ``sigma_hat``, ``denoised``.
* ``return_trajectory``: if True return ``(x, xs)`` with ``xs[i]`` the iterate at ``sigmas[i]``,
  shape [n + 1, B, ...].
* ``checks``: if True raise ``FloatingPointError`` naming the first step whose output is not finite
  (directly when called eagerly, through a host callback under ``jit``).
* ``sample_index``: int [B], the global index of each sample (see Randomness).
"""

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from generative import schedules

Denoiser = Callable[[jax.Array, jax.Array], jax.Array]

_RUN_OPTIONS = ("callback", "return_trajectory", "checks", "sample_index")


def sample_noise(key: jax.Array, step, x: jax.Array, *, sample_index=None) -> jax.Array:
    """The standard normal draw, shaped like x, that a sampler adds at step ``step`` (see module
    docstring)."""
    index = jnp.arange(x.shape[0]) if sample_index is None else jnp.asarray(sample_index)
    return per_sample_normal(per_sample_keys(key, index), x, step)


def checked_sample_keys(name: str, x: jax.Array, key, sample_index, why: str) -> jax.Array:
    """per_sample_keys(key, sample_index or arange(B)) after one-line checks of both (`why`: what
    makes the sampler `name` need a key)."""
    if key is None:
        raise ValueError(f"{name}: {why}; pass key=")
    index = jnp.arange(x.shape[0]) if sample_index is None else jnp.asarray(sample_index)
    if index.shape != x.shape[:1] or not jnp.issubdtype(index.dtype, jnp.integer):
        raise ValueError(
            f"{name}: sample_index must be int [B] = {x.shape[:1]}, got {index.dtype} {index.shape}"
        )
    return per_sample_keys(key, index)


def per_sample_keys(key: jax.Array, sample_index: jax.Array) -> jax.Array:
    """fold_in(key, sample_index[b]) for each sample b: [B] keys."""
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, sample_index)


def per_sample_normal(sample_keys: jax.Array, like: jax.Array, *indices) -> jax.Array:
    """normal(fold_in(... fold_in(sample_key_b, indices[0]) ..., indices[-1])) for each sample b."""

    def draw(sample_key):
        for index in indices:
            sample_key = jax.random.fold_in(sample_key, index)
        return jax.random.normal(sample_key, like.shape[1:], like.dtype)

    return jax.vmap(draw)(sample_keys)


def to_d(x: jax.Array, sigma, denoised: jax.Array) -> jax.Array:
    """The probability-flow ODE's derivative dx/dsigma = (x - D(x, sigma)) / sigma."""
    return (x - denoised) / sigma


@dataclasses.dataclass(frozen=True)
class _Context:
    """What one sampler call shares between its steps: the wrapped denoiser, the levels, the noise
    keys."""

    denoise_fn: Denoiser
    sigmas: jax.Array
    sample_keys: jax.Array | None
    callback: Callable | None
    return_trajectory: bool
    checks: bool

    @property
    def num_steps(self) -> int:
        return self.sigmas.shape[0] - 1

    def denoise(self, x, sigma):
        """D(x, sigma) with the step's scalar level given to every example, in x's dtype."""
        return self.denoise_fn(x, jnp.broadcast_to(sigma, x.shape[:1])).astype(x.dtype)

    def noise(self, x, *indices):
        return per_sample_normal(self.sample_keys, x, *indices)

    def run(self, step, finish, x, state=()):
        """``step(i, x, state) -> (x, state, info)`` for i < n - 1 in a scan, then ``finish(n - 1,
        x, state) -> (x, info)`` into sigma = 0; info holds ``denoised``, ``sigma_hat`` and, where
        churn moved x before the denoiser saw it, that ``x``."""

        def report(i, x_before, x_after, info):
            if self.callback is not None:
                values = {"x": x_before, "i": i, "sigma": self.sigmas[i], **info}
                jax.debug.callback(self.callback, values)
            return jnp.all(jnp.isfinite(x_after)) if self.checks else None

        def body(carry, i):
            x, state = carry
            x_next, state, info = step(i, x, state)
            finite = report(i, x, x_next, info)
            return (x_next, state), (x_next if self.return_trajectory else None, finite)

        last = self.num_steps - 1
        (x_last, state), (xs, finite) = lax.scan(body, (x, state), jnp.arange(last))
        x_final, info = finish(last, x_last, state)
        finite_last = report(last, x_last, x_final, info)
        if self.checks:
            _check_finite(jnp.append(finite, finite_last), self.sigmas)
        if self.return_trajectory:
            return x_final, jnp.concatenate([x[None], xs, x_final[None]])
        return x_final


def _raise_if_not_finite(finite, sigmas):
    finite = np.asarray(finite).reshape(-1, np.shape(finite)[-1]).all(0)
    if not finite.all():
        step = int(np.argmin(finite))
        sigmas = np.asarray(sigmas).reshape(-1, np.shape(sigmas)[-1])[0]
        raise FloatingPointError(
            f"sampler produced a non-finite x at step {step} "
            f"(sigma {sigmas[step]:.6g} -> {sigmas[step + 1]:.6g})"
        )


def _check_finite(finite, sigmas):
    if isinstance(finite, jax.core.Tracer):
        jax.debug.callback(_raise_if_not_finite, finite, sigmas)
    else:
        _raise_if_not_finite(finite, sigmas)


def _prepare(
    name,
    denoise,
    x,
    sigmas,
    key,
    *,
    needs_key,
    log_steps=False,
    ancestral=False,
    callback=None,
    return_trajectory=False,
    checks=False,
    sample_index=None,
    **unknown,
) -> tuple[_Context, jax.Array]:
    """Validate the arguments shared by every sampler (before tracing); return its context and x.

    ``sigmas`` must also survive x's dtype, the one the steps run in: stay strictly descending, in
    log sigma too for ``log_steps`` samplers, and keep ``ancestral_step``'s variance finite for
    ``ancestral`` ones (float16 overflows above sigma ~ 16).
    """
    if unknown:
        raise ValueError(
            f"{name}: unknown options {sorted(unknown)}; every sampler takes {list(_RUN_OPTIONS)} "
            f"besides its own (see its docstring)"
        )
    if not callable(denoise):
        raise ValueError(f"{name}: denoise must be a callable denoise(x, sigma), got {denoise!r}")
    x = jnp.asarray(x)
    if x.ndim < 1 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"{name}: x must be a floating array [B, *event], got {x.dtype} {x.shape}")
    schedules.check_sigmas(sigmas)
    values = schedules.concrete(sigmas)
    if values is not None:
        schedules.check_in_dtype(f"{name}: sigmas", values, x.dtype, "sigma", log=log_steps)
        if ancestral:
            _check_ancestral(name, values, x.dtype)
    sigmas = jnp.asarray(sigmas, x.dtype)
    sample_keys = None
    if needs_key:
        why = "this sampler (with these options) is stochastic"
        sample_keys = checked_sample_keys(name, x, key, sample_index, why)
    out = jax.eval_shape(denoise, x, jax.ShapeDtypeStruct(x.shape[:1], x.dtype))
    if getattr(out, "shape", None) != x.shape:
        raise ValueError(
            f"{name}: denoise(x, sigma) must return x's shape {x.shape}, "
            f"got {getattr(out, 'shape', out)}"
        )
    ctx = _Context(denoise, sigmas, sample_keys, callback, bool(return_trajectory), bool(checks))
    return ctx, x


def _check_ancestral(name, sigmas: np.ndarray, dtype):
    cast = sigmas.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        overflow = int(np.sum(~np.isfinite(_ancestral_variance(cast[:-1], cast[1:]))))
    if overflow:
        raise ValueError(
            f"{name}: sigmas: {overflow} of {len(cast) - 1} steps overflow {np.dtype(dtype).name} "
            "(x's dtype) in the ancestral noise variance; use a float32 x"
        )


# --------------------------------------------------------------------------------------------------
# EDM Algorithm 2's churn, shared by euler, heun and dpm_2.


def _churn(ctx, i, x, s_churn, s_tmin, s_tmax, s_noise):
    """EDM Algorithm 2, lines 4-6: with gamma = min(S_churn / N, sqrt 2 - 1) when
    S_tmin <= sigma_i <= S_tmax (else 0), sigma_hat = sigma_i (1 + gamma) and
    x_hat = x + sqrt(sigma_hat^2 - sigma_i^2) S_noise eps."""
    sigma = ctx.sigmas[i]
    if s_churn == 0:
        return x, sigma
    in_range = (s_tmin <= sigma) & (sigma <= s_tmax)
    gamma = jnp.where(in_range, min(s_churn / ctx.num_steps, math.sqrt(2) - 1), 0.0)
    sigma_hat = sigma * (gamma + 1)
    eps = ctx.noise(x, i) * s_noise
    # sqrt(sigma_hat^2 - sigma^2) written so that it is exactly 0 for gamma = 0 (with fused
    # multiply-adds the difference of squares can leave a rounding residual whose square root is
    # ~1e-10).
    return x + eps * (sigma * jnp.sqrt(gamma * (gamma + 2))), sigma_hat


def _churn_options(name, s_churn, s_tmin, s_tmax, s_noise):
    if not s_churn >= 0:
        raise ValueError(f"{name}: s_churn must be >= 0, got {s_churn}")
    return dict(s_churn=float(s_churn), s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise)


def _euler_step(ctx, churn):
    def step(i, x, state=()):
        x, sigma_hat = _churn(ctx, i, x, **churn)
        denoised = ctx.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        x_next = x + d * (ctx.sigmas[i + 1] - sigma_hat)
        return x_next, state, dict(x=x, sigma_hat=sigma_hat, denoised=denoised)

    return step


def _final(step):
    """A scan step used as the final step: drop the (empty) carried state."""

    def finish(i, x, state):
        x, _, info = step(i, x, state)
        return x, info

    return finish


def euler(
    denoise,
    x,
    sigmas,
    *,
    key=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
    **options,
):
    """Euler steps on the probability-flow ODE (EDM Algorithm 2 with Euler steps); first order.

    x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) (x_hat - D(x_hat, sigma_hat)) / sigma_hat, where
    x_hat, sigma_hat = x_i, sigma_i unless s_churn > 0 (then see ``heun``; needs key, else key is
    unused).
    """
    churn = _churn_options("euler", s_churn, s_tmin, s_tmax, s_noise)
    ctx, x = _prepare("euler", denoise, x, sigmas, key, needs_key=s_churn > 0, **options)
    step = _euler_step(ctx, churn)
    return ctx.run(step, _final(step), x)


def heun(
    denoise,
    x,
    sigmas,
    *,
    key=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
    **options,
):
    """EDM's sampler: Heun steps (Karras et al. 2022, Algorithm 1), with Algorithm 2's churn; second
    order.

    Each step to sigma_{i+1} > 0 corrects the Euler step with the derivative at its end point:
    x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) (d(x_hat, sigma_hat) + d(x', sigma_{i+1})) / 2. The
    last step into sigma = 0 is a plain Euler step, so n levels cost 2n - 1 denoiser calls (18
    Karras levels: 35). With s_churn > 0 (needs key), a step from sigma_i in [s_tmin, s_tmax] first
    raises the noise level to sigma_hat = sigma_i (1 + gamma), gamma = min(s_churn / n, sqrt 2 - 1),
    adding fresh noise scaled by s_noise.
    """
    churn = _churn_options("heun", s_churn, s_tmin, s_tmax, s_noise)
    ctx, x = _prepare("heun", denoise, x, sigmas, key, needs_key=s_churn > 0, **options)

    def step(i, x, state):
        x, sigma_hat = _churn(ctx, i, x, **churn)
        sigma_next = ctx.sigmas[i + 1]
        denoised = ctx.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        dt = sigma_next - sigma_hat
        x_2 = x + d * dt
        d_2 = to_d(x_2, sigma_next, ctx.denoise(x_2, sigma_next))
        x_next = x + (d + d_2) / 2 * dt
        return x_next, state, dict(x=x, sigma_hat=sigma_hat, denoised=denoised)

    return ctx.run(step, _final(_euler_step(ctx, churn)), x)


def dpm_2(
    denoise,
    x,
    sigmas,
    *,
    key=None,
    s_churn=0.0,
    s_tmin=0.0,
    s_tmax=float("inf"),
    s_noise=1.0,
    **options,
):
    """k-diffusion's DPM-Solver-2-style midpoint sampler (Lu et al. 2022; Karras et al. 2022);
    second order.

    Each step to sigma_{i+1} > 0 takes the derivative at the geometric midpoint
    sigma_mid = sqrt(sigma_hat sigma_{i+1}): x' = x_hat + (sigma_mid - sigma_hat) d(x_hat,
    sigma_hat), x_{i+1} = x_hat + (sigma_{i+1} - sigma_hat) d(x', sigma_mid). Last step into 0:
    Euler. Churn as ``heun``.
    """
    churn = _churn_options("dpm_2", s_churn, s_tmin, s_tmax, s_noise)
    ctx, x = _prepare("dpm_2", denoise, x, sigmas, key, needs_key=s_churn > 0, **options)

    def step(i, x, state):
        x, sigma_hat = _churn(ctx, i, x, **churn)
        sigma_next = ctx.sigmas[i + 1]
        denoised = ctx.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        sigma_mid = jnp.exp((jnp.log(sigma_hat) + jnp.log(sigma_next)) / 2)
        x_2 = x + d * (sigma_mid - sigma_hat)
        d_2 = to_d(x_2, sigma_mid, ctx.denoise(x_2, sigma_mid))
        x_next = x + d_2 * (sigma_next - sigma_hat)
        return x_next, state, dict(x=x, sigma_hat=sigma_hat, denoised=denoised)

    return ctx.run(step, _final(_euler_step(ctx, churn)), x)


def lms_coefficients(sigmas: jax.Array, order: int) -> jax.Array:
    """c[i, j] = integral from sigma_i to sigma_{i+1} of the Lagrange basis polynomial l_j on the
    nodes sigma_i, sigma_{i-1}, ..., sigma_{i-k+1}, k = min(i + 1, order); zero for j >= k. [n,
    order].

    The integrand has degree < order, so ``order``-point Gauss-Legendre quadrature is exact.
    """
    n = sigmas.shape[0] - 1
    i = jnp.arange(n)
    k = jnp.minimum(i + 1, order)
    nodes, weights = (jnp.asarray(a, sigmas.dtype) for a in np.polynomial.legendre.leggauss(order))
    a, b = sigmas[:-1], sigmas[1:]
    tau = (a + b)[:, None] / 2 + (b - a)[:, None] / 2 * nodes  # [n, q]
    w = (b - a)[:, None] / 2 * weights  # [n, q]
    node = lambda m: sigmas[jnp.maximum(i - m, 0)][:, None]  # noqa: E731  sigma_{i-m}, [n, 1]
    columns = []
    for j in range(order):
        basis = jnp.ones_like(tau)
        for m in range(order):
            if m == j:
                continue
            used = (m < k)[:, None]
            denominator = jnp.where(used, node(j) - node(m), 1.0)
            basis = basis * jnp.where(used, (tau - node(m)) / denominator, 1.0)
        columns.append(jnp.where(j < k, jnp.sum(w * basis, axis=1), 0.0))
    return jnp.stack(columns, axis=1)


def lms(denoise, x, sigmas, *, key=None, order=4, **options):
    """Linear multistep (Adams-Bashforth in sigma on a non-uniform grid; k-diffusion's
    ``sample_lms``).

    x_{i+1} = x_i + sum_j c[i, j] d_{i-j} with d_i = (x_i - D(x_i, sigma_i)) / sigma_i and c from
    ``lms_coefficients``: order ``order`` once ``order`` derivatives are stored; the start-up steps
    use what is there (the first is an Euler step), as in k-diffusion. One denoiser call per step;
    key is unused.
    """
    if not (isinstance(order, int) and order >= 1):
        raise ValueError(f"lms: order must be an int >= 1, got {order!r}")
    ctx, x = _prepare("lms", denoise, x, sigmas, None, needs_key=False, **options)
    coefficients = lms_coefficients(ctx.sigmas, order)

    def step(i, x, history):
        sigma = ctx.sigmas[i]
        denoised = ctx.denoise(x, sigma)
        history = jnp.concatenate([to_d(x, sigma, denoised)[None], history[:-1]])  # newest first
        x = x + sum(coefficients[i, j] * history[j] for j in range(order))
        return x, history, dict(sigma_hat=sigma, denoised=denoised)

    history = jnp.zeros((order,) + x.shape, x.dtype)
    return ctx.run(step, _final(step), x, history)


def _denoise_final(ctx):
    """The final step of the DPM-Solver++ family: x_0 = D(x, sigma_{n-1}) (their update at
    sigma_next = 0)."""

    def finish(i, x, state):
        sigma = ctx.sigmas[i]
        denoised = ctx.denoise(x, sigma)
        return denoised, dict(sigma_hat=sigma, denoised=denoised)

    return finish


def dpmpp_2m(denoise, x, sigmas, *, key=None, **options):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2), in lambda = -log sigma; second order.

    x_{i+1} = (sigma_{i+1} / sigma_i) x_i - expm1(-h) D_hat, h = lambda_{i+1} - lambda_i, with
    D_hat = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}, r = h_{i-1} / h (D_hat = D_0 on the first step).
    The last step, into sigma = 0, is x_0 = D(x, sigma_{n-1}). Deterministic: key is unused.
    """
    ctx, x = _prepare(
        "dpmpp_2m", denoise, x, sigmas, None, needs_key=False, log_steps=True, **options
    )

    def step(i, x, old_denoised):
        sigma, sigma_next = ctx.sigmas[i], ctx.sigmas[i + 1]
        denoised = ctx.denoise(x, sigma)
        h = jnp.log(sigma) - jnp.log(sigma_next)
        h_last = jnp.log(ctx.sigmas[jnp.maximum(i - 1, 0)]) - jnp.log(sigma)
        weight = jnp.where(i > 0, 1 / (2 * jnp.where(i > 0, h_last / h, 1.0)), 0.0)
        denoised_d = (1 + weight) * denoised - weight * old_denoised
        x = (sigma_next / sigma) * x - jnp.expm1(-h) * denoised_d
        return x, denoised, dict(sigma_hat=sigma, denoised=denoised)

    return ctx.run(step, _denoise_final(ctx), x, jnp.zeros_like(x))


def _ancestral_variance(sigma_from, sigma_to):
    """sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2 in the inputs' dtype (jax or NumPy)."""
    return sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2


def ancestral_step(sigma_from, sigma_to, eta: float = 1.0):
    """Split a step from sigma_from to sigma_to into a deterministic move to sigma_down and fresh
    noise of level sigma_up (eta = 1: the DDPM posterior, Ho et al. 2020):

      sigma_up = min(sigma_to, eta sqrt(sigma_to^2 (sigma_from^2 - sigma_to^2) / sigma_from^2)),
      sigma_down = sqrt(sigma_to^2 - sigma_up^2).
    """
    if not eta:
        return sigma_to, 0.0
    variance = _ancestral_variance(sigma_from, sigma_to)
    sigma_up = jnp.minimum(sigma_to, eta * jnp.sqrt(variance))
    return jnp.sqrt(sigma_to**2 - sigma_up**2), sigma_up


def euler_ancestral(denoise, x, sigmas, *, key=None, eta=1.0, s_noise=1.0, **options):
    """Ancestral sampling with Euler steps (k-diffusion's ``sample_euler_ancestral``).

    An Euler step to sigma_down, then fresh noise s_noise sigma_up eps with (sigma_down, sigma_up)
    from ``ancestral_step(sigma_i, sigma_{i+1}, eta)``; no noise on the last step into 0. eta > 0
    needs key.
    """
    if not eta >= 0:
        raise ValueError(f"euler_ancestral: eta must be >= 0, got {eta}")
    ctx, x = _prepare(
        "euler_ancestral", denoise, x, sigmas, key, needs_key=eta > 0, ancestral=eta > 0, **options
    )

    def move(i, x):
        sigma = ctx.sigmas[i]
        denoised = ctx.denoise(x, sigma)
        sigma_down, sigma_up = ancestral_step(sigma, ctx.sigmas[i + 1], eta)
        x = x + to_d(x, sigma, denoised) * (sigma_down - sigma)
        return x, sigma_up, dict(sigma_hat=sigma, denoised=denoised)

    def step(i, x, state):
        x, sigma_up, info = move(i, x)
        if eta:
            x = x + ctx.noise(x, i) * s_noise * sigma_up
        return x, state, info

    def finish(i, x, state):
        x, _, info = move(i, x)
        return x, info

    return ctx.run(step, finish, x)


def ddim(denoise, x, sigmas, *, key=None, eta=0.0, **options):
    """DDIM (Song et al. 2021, eq. 12) with its eta, written in sigma = sqrt((1 - alpha) / alpha).

    Dividing eq. 12 by sqrt(alpha_{i+1}) gives x_{i+1} = x0_hat + sigma_down eps_hat + sigma_up z
    with eps_hat = (x_i - x0_hat) / sigma_i and exactly ``ancestral_step``'s sigma_up (eq. 16's
    sigma_t, eta included) and sigma_down = sqrt(sigma_{i+1}^2 - sigma_up^2). That is
    ``euler_ancestral`` with the same eta, so this is it with DDIM's default eta = 0 (deterministic,
    the Euler method in sigma); eta = 1 is DDPM.
    """
    return euler_ancestral(denoise, x, sigmas, key=key, eta=eta, **options)


def dpmpp_2m_sde(
    denoise, x, sigmas, *, key=None, eta=1.0, s_noise=1.0, solver_type="midpoint", **options
):
    """DPM-Solver++(2M) SDE (Lu et al. 2022; k-diffusion's ``sample_dpmpp_2m_sde``).

    With h = lambda_{i+1} - lambda_i (lambda = -log sigma):
    x_{i+1} = (sigma_{i+1}/sigma_i) e^{-eta h} x_i + (1 - e^{-(1+eta) h}) D_i + correction
              + sigma_{i+1} sqrt(1 - e^{-2 eta h}) s_noise z,
    correction = (1 - e^{-(1+eta)h}) (D_i - D_{i-1}) / (2r) ('midpoint') or
    ((1 - e^{-(1+eta)h}) / (-(1+eta)h) + 1) (D_i - D_{i-1}) / r ('heun'), r = h_{i-1}/h, none on the
    first step. Last step: x_0 = D(x, sigma_{n-1}). eta = 0 is deterministic DPM-Solver++(2M)
    without a key.
    """
    if solver_type not in ("midpoint", "heun"):
        raise ValueError(
            f"dpmpp_2m_sde: solver_type must be 'midpoint' or 'heun', got {solver_type!r}"
        )
    if not eta >= 0:
        raise ValueError(f"dpmpp_2m_sde: eta must be >= 0, got {eta}")
    ctx, x = _prepare(
        "dpmpp_2m_sde", denoise, x, sigmas, key, needs_key=eta > 0, log_steps=True, **options
    )

    def step(i, x, state):
        old_denoised, h_last = state
        sigma, sigma_next = ctx.sigmas[i], ctx.sigmas[i + 1]
        denoised = ctx.denoise(x, sigma)
        h = jnp.log(sigma) - jnp.log(sigma_next)
        eta_h = eta * h
        x = sigma_next / sigma * jnp.exp(-eta_h) * x + -jnp.expm1(-h - eta_h) * denoised
        r = h_last / h
        if solver_type == "heun":
            weight = (-jnp.expm1(-h - eta_h) / (-h - eta_h) + 1) * (1 / r)
        else:
            weight = 0.5 * -jnp.expm1(-h - eta_h) * (1 / r)
        x = jnp.where(i > 0, x + weight * (denoised - old_denoised), x)
        if eta:
            x = x + ctx.noise(x, i) * sigma_next * jnp.sqrt(-jnp.expm1(-2 * eta_h)) * s_noise
        return x, (denoised, h), dict(sigma_hat=sigma, denoised=denoised)

    state = (jnp.zeros_like(x), jnp.ones((), x.dtype))
    return ctx.run(step, _denoise_final(ctx), x, state)


def dpmpp_3m_sde(denoise, x, sigmas, *, key=None, eta=1.0, s_noise=1.0, **options):
    """DPM-Solver++(3M) SDE (k-diffusion's ``sample_dpmpp_3m_sde``): third-order multistep in
    lambda.

    With h_eta = (1 + eta) h: x_{i+1} = e^{-h_eta} x_i + (1 - e^{-h_eta}) D_i + phi_2 d1 - phi_3 d2
    + sigma_{i+1} sqrt(1 - e^{-2 eta h}) s_noise z, where d1, d2 are the first and second divided
    differences of D over the last three levels (in units of h), phi_2 = (e^{-h_eta} - 1)/h_eta + 1
    and phi_3 = phi_2 / h_eta - 1/2; the second step uses phi_2 d1 only and the first neither. Last
    step: x_0 = D(x, sigma_{n-1}).
    """
    if not eta >= 0:
        raise ValueError(f"dpmpp_3m_sde: eta must be >= 0, got {eta}")
    ctx, x = _prepare(
        "dpmpp_3m_sde", denoise, x, sigmas, key, needs_key=eta > 0, log_steps=True, **options
    )

    def step(i, x, state):
        denoised_1, denoised_2, h_1, h_2 = state
        sigma, sigma_next = ctx.sigmas[i], ctx.sigmas[i + 1]
        denoised = ctx.denoise(x, sigma)
        h = jnp.log(sigma) - jnp.log(sigma_next)
        h_eta = h * (eta + 1)
        x = jnp.exp(-h_eta) * x + -jnp.expm1(-h_eta) * denoised
        r0, r1 = h_1 / h, h_2 / h
        d1_0 = (denoised - denoised_1) / r0
        d1_1 = (denoised_1 - denoised_2) / r1
        d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        phi_2 = jnp.expm1(-h_eta) / h_eta + 1
        phi_3 = phi_2 / h_eta - 0.5
        x = jnp.where(i >= 2, x + phi_2 * d1 - phi_3 * d2, jnp.where(i == 1, x + phi_2 * d1_0, x))
        if eta:
            x = x + ctx.noise(x, i) * sigma_next * jnp.sqrt(-jnp.expm1(-2 * h * eta)) * s_noise
        return x, (denoised, denoised_1, h, h_1), dict(sigma_hat=sigma, denoised=denoised)

    one = jnp.ones((), x.dtype)
    state = (jnp.zeros_like(x), jnp.zeros_like(x), one, one)
    return ctx.run(step, _denoise_final(ctx), x, state)


SAMPLERS: dict[str, Callable[..., jax.Array]] = {
    "euler": euler,
    "heun": heun,
    "dpm_2": dpm_2,
    "lms": lms,
    "dpmpp_2m": dpmpp_2m,
    "euler_ancestral": euler_ancestral,
    "dpmpp_2m_sde": dpmpp_2m_sde,
    "dpmpp_3m_sde": dpmpp_3m_sde,
    "ddim": ddim,
}


def get_sampler(name: str) -> Callable[..., jax.Array]:
    """The sampler called ``name`` (one of SAMPLERS)."""
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler name {name!r}; known: {sorted(SAMPLERS)}")
    return SAMPLERS[name]
