"""Training losses as pure functions of a denoiser: loss(denoise, key, x0, **cond) -> [B].

Every loss draws a noise level per example, perturbs x0 exactly under its process, and weights the
denoising error |D(x, sigma) - x0|^2, averaged (``reduce='mean'``) or summed over each example's
elements; the caller averages over the batch. Models are denoisers in EDM's convention; see
``generative.preconditioning`` for turning a raw network (also a velocity field) into one.

  edm            ln sigma ~ N(p_mean, p_std^2), x = x0 + sigma n,
                 lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2        (Karras et al. 2022, eq. 8)
  pfgmpp         the same with PFGM++'s perturbation at r = sigma sqrt(D)     (Xu et al. 2023)
  dsm            t ~ U(eps, t_max), w(t) |score + n / std|^2                  (Song et al. 2021)
  flow_matching  t ~ U(0, 1) or logit-normal, |v_hat - (n - x0)|^2       (Lipman et al. 2023)

Denoising score matching in denoiser form: with x_t = s (x0 + sigma n), std = s sigma and the
score (s D - x_t) / std^2 (``processes.score_from_denoiser``), score + n / std equals
(D - x0) / (s sigma^2), so

  w(t) |score + n/std|^2 = w(t) |D - x0|^2 / (s^2 sigma^4),
  w = std^2 (score_sde's weighting)  ->  |D - x0|^2 / sigma^2,
  w = g(t)^2 (likelihood weighting, Song et al. 2021b)  ->  g^2 |D - x0|^2 / (s^2 sigma^4).

Flow matching in denoiser form: x_t = (1 - t) x0 + t n = x / (1 + sigma) with sigma = t / (1 - t),
and v_hat = (x_t - D) / t, so |v_hat - (n - x0)|^2 = |D - x0|^2 / t^2; with
``precondition(v, 'flow')`` this is exactly the velocity regression of the raw network v.
"""

import functools
import inspect
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from generative.processes import EDM, PFGMpp, per_example, process_name_of
from generative.schedules import concrete

Denoiser = Callable[..., jax.Array]


def _reduce(squared_error: jax.Array, reduce: str) -> jax.Array:
    """Per-example mean or sum over all but the batch axis."""
    axes = tuple(range(1, squared_error.ndim))
    if reduce == "mean":
        return jnp.mean(squared_error, axis=axes)
    if reduce == "sum":
        return jnp.sum(squared_error, axis=axes)
    raise ValueError(f"reduce must be 'mean' or 'sum', got {reduce!r}")


def _check_batch(x0: jax.Array) -> None:
    if x0.ndim < 2:
        raise ValueError(f"x0 must have shape [B, ...] with at least one data axis, got {x0.shape}")


def _check_denoised(denoised: jax.Array, x0: jax.Array) -> None:
    if denoised.shape != x0.shape:
        raise ValueError(
            f"denoise(x, sigma) must return x0's shape {x0.shape}, got {denoised.shape}"
        )


def _check_eps(eps, upper, expected: str) -> None:
    """ValueError unless a concrete ``eps`` is in (0, upper); tracers pass through."""
    value, high = concrete(eps), concrete(upper)
    if value is not None and not np.all(value > 0):
        raise ValueError(f"eps must be > 0, got {eps!r}")
    if value is not None and high is not None and not np.all(value < high):
        raise ValueError(f"eps must be < {expected}, got {eps!r}")


def _lognormal_denoising_loss(denoise, key, x0, process, p_mean, p_std, sigma_data, reduce, cond):
    _check_batch(x0)
    key_sigma, key_noise = jax.random.split(key)
    sigma = jnp.exp(p_mean + p_std * jax.random.normal(key_sigma, x0.shape[:1], x0.dtype))
    x = process.perturb(key_noise, x0, sigma)
    weight = (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2
    denoised = denoise(x, sigma, **cond)
    _check_denoised(denoised, x0)
    return weight * _reduce((denoised - x0) ** 2, reduce)


def edm_loss(
    denoise: Denoiser,
    key: jax.Array,
    x0: jax.Array,
    *,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
    reduce: str = "mean",
    **cond,
) -> jax.Array:
    """EDM's loss lambda(sigma) |D(x0 + sigma n, sigma) - x0|^2, ln sigma ~ N(p_mean, p_std^2).

    With EDM preconditioning lambda c_out^2 = 1, so this is the unit-weighted regression of the raw
    network onto its effective target (x0 - c_skip x) / c_out.
    """
    return _lognormal_denoising_loss(
        denoise, key, x0, EDM(), p_mean, p_std, sigma_data, reduce, cond
    )


def pfgmpp_loss(
    denoise: Denoiser,
    key: jax.Array,
    x0: jax.Array,
    *,
    D: float,
    p_mean: float = -1.2,
    p_std: float = 1.2,
    sigma_data: float = 0.5,
    reduce: str = "mean",
    **cond,
) -> jax.Array:
    """PFGM++'s loss: EDM's, with x drawn from the kernel ∝ (|x - x0|^2 + r^2)^(-(N+D)/2) at
    r = sigma sqrt(D) (Xu et al. 2023, their EDM-aligned training). D = inf is ``edm_loss``."""
    return _lognormal_denoising_loss(
        denoise, key, x0, PFGMpp(D=D), p_mean, p_std, sigma_data, reduce, cond
    )


DSM_WEIGHTINGS = ("score_sde", "likelihood")


def dsm_loss(
    denoise: Denoiser,
    key: jax.Array,
    x0: jax.Array,
    *,
    process,
    weighting: str = "score_sde",
    eps: float = 1e-5,
    reduce: str = "mean",
    **cond,
) -> jax.Array:
    """Continuous-time denoising score matching (Song et al. 2021) on an SDE process.

    t ~ U(eps, t_max); the loss is w(t) |score(x_t, t) + n / std(t)|^2 written through the denoiser
    (module docstring), w = std^2 for ``weighting='score_sde'``, w = g^2 for ``'likelihood'``.
    score_sde trains with eps = 1e-5 and sums over elements (``reduce='sum'`` gives its numbers).
    """
    if weighting not in DSM_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {DSM_WEIGHTINGS}, got {weighting!r}")
    _check_eps(eps, process.t_max, f"the process's t_max = {process.t_max!r}")
    _check_batch(x0)
    key_t, key_noise = jax.random.split(key)
    t = jax.random.uniform(key_t, x0.shape[:1], x0.dtype, minval=eps, maxval=process.t_max)
    sigma = process.sigma(t)
    x = process.perturb(key_noise, x0, sigma)
    denoised = denoise(x, sigma, **cond)
    _check_denoised(denoised, x0)
    if weighting == "score_sde":
        weight = 1 / sigma**2
    else:
        weight = process.diffusion(t) ** 2 / (process.scale(t) ** 2 * sigma**4)
    return weight * _reduce((denoised - x0) ** 2, reduce)


T_SAMPLINGS = ("uniform", "logit_normal")


def flow_matching_loss(
    denoise: Denoiser,
    key: jax.Array,
    x0: jax.Array,
    *,
    t_sampling: str = "uniform",
    logit_mean: float = 0.0,
    logit_std: float = 1.0,
    eps: float = 1e-5,
    reduce: str = "mean",
    **cond,
) -> jax.Array:
    """Conditional flow matching |v_hat(x_t, t) - (n - x0)|^2 for x_t = (1 - t) x0 + t n.

    t ~ U(0, 1) or, with ``t_sampling='logit_normal'``, sigmoid(N(logit_mean, logit_std^2))
    (Esser et al. 2024), clipped to [eps, 1 - eps]. Written through the denoiser at
    sigma = t / (1 - t) as |D - x0|^2 / t^2 (module docstring).
    """
    if t_sampling not in T_SAMPLINGS:
        raise ValueError(f"t_sampling must be one of {T_SAMPLINGS}, got {t_sampling!r}")
    _check_eps(eps, 0.5, "0.5 (t is clipped to [eps, 1 - eps])")
    _check_batch(x0)
    key_t, key_noise = jax.random.split(key)
    if t_sampling == "uniform":
        t = jax.random.uniform(key_t, x0.shape[:1], x0.dtype)
    else:
        t = jax.nn.sigmoid(
            logit_mean + logit_std * jax.random.normal(key_t, x0.shape[:1], x0.dtype)
        )
    t = jnp.clip(t, eps, 1 - eps)
    sigma = t / (1 - t)
    x = x0 + per_example(sigma, x0) * jax.random.normal(key_noise, x0.shape, x0.dtype)
    denoised = denoise(x, sigma, **cond)
    _check_denoised(denoised, x0)
    return _reduce((denoised - x0) ** 2, reduce) / t**2


_LOSSES = {
    "edm": edm_loss,
    "pfgmpp": pfgmpp_loss,
    "dsm": dsm_loss,
    "flow_matching": flow_matching_loss,
}

# The processes each loss trains under (config.process.name).
LOSS_PROCESSES = {
    "edm": ("edm",),
    "pfgmpp": ("pfgmpp",),
    "dsm": ("vp", "subvp", "ve"),
    "flow_matching": ("flow",),
}

# Loss keywords that are constants of the process: make_loss takes them from it, never from the
# loss config (one owner, so training, preconditioning and sampling cannot disagree).
PROCESS_OWNED = ("sigma_data", "D", "process", "process_kwargs")


def make_loss(loss_config, process) -> Callable[..., jax.Array]:
    """Build loss(denoise, key, x0, **cond) -> [B] from a loss config and the process.

    ``loss_config.name`` is one of 'edm', 'pfgmpp', 'dsm', 'flow_matching'; its other fields are
    that loss's keyword options (p_mean, p_std, reduce; dsm: weighting, eps; flow_matching:
    t_sampling, ...). The process's constants are filled in from ``process``: sigma_data (edm,
    pfgmpp), D (pfgmpp) and the SDE itself (dsm). Unknown fields, fields the process owns and a
    process the loss does not train under raise ValueError.
    """
    fields = dict(loss_config)
    name = fields.pop("name", None)
    if name not in _LOSSES:
        raise ValueError(f"loss name must be one of {sorted(_LOSSES)}, got {name!r}")
    process_name = process_name_of(process)
    if process_name not in LOSS_PROCESSES[name]:
        raise ValueError(
            f"the {name!r} loss trains under process {LOSS_PROCESSES[name]}, got process "
            f"{process_name!r}"
        )
    owned = sorted(set(fields) & set(PROCESS_OWNED))
    if owned:
        raise ValueError(
            f"loss field(s) {owned} belong to the process: set them in config.process instead"
        )
    loss_fn = _LOSSES[name]
    known = {
        p.name for p in inspect.signature(loss_fn).parameters.values() if p.kind is p.KEYWORD_ONLY
    }
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(
            f"loss config has unknown field(s) {unknown} for {name!r}; known: "
            f"{sorted(known - set(PROCESS_OWNED))}"
        )
    if name in ("edm", "pfgmpp"):
        fields["sigma_data"] = process.sigma_data
    if name == "pfgmpp":
        fields["D"] = process.D
    if name == "dsm":
        fields["process"] = process
    return functools.partial(loss_fn, **fields)
