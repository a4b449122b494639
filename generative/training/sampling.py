"""Drawing samples from a denoiser under the run's process: noise levels, prior, sampler.

Every task that samples a denoiser (images, 2-D points, adjacency matrices) goes through
`sample_denoiser`, so the process is the one owner of the noise range and of the prior:

* ODE/SDE samplers of generative.samplers (heun, dpmpp_2m, ...) run on the descending levels of
  `noise_levels`: the schedule's range (sigma_min, sigma_max; the VP schedule's betas and cut-off)
  comes from the process, and x starts as the process's perturbation of 0 at sigmas[0] (Gaussian,
  or for PFGM++ the heavy-tailed kernel with its D: Xu et al. 2023's prior at r_max = sigma_max
  sqrt(D)).
* the reverse-SDE samplers of generative.sde_samplers (euler_maruyama, predictor_corrector) take
  `steps` steps on the process's own time grid from its prior_sample.
"""

import inspect

import jax
import jax.numpy as jnp
import ml_collections

from generative import samplers, sde_samplers
from generative.processes import VP
from generative.schedules import get_schedule

SDE_SAMPLERS = ("euler_maruyama", "predictor_corrector")
# Schedule options each process supplies (and a config may therefore not set).
_RANGE_FIELDS = ("sigma_min", "sigma_max")
_VP_FIELDS = ("beta_d", "beta_min", "eps_s")


def check_sampler(name: str) -> None:
    if name not in SDE_SAMPLERS:
        samplers.get_sampler(name)


def schedule_process_options(schedule: str, process) -> dict:
    """The options of `schedule` that `process` owns (its noise range, or the VP betas)."""
    accepted = inspect.signature(get_schedule(schedule)).parameters
    if isinstance(process, VP) and "beta_d" in accepted:
        values = (process.beta_max - process.beta_min, process.beta_min, process.eps)
        return dict(zip(_VP_FIELDS, values, strict=True))
    options = {}
    for field in _RANGE_FIELDS:
        if field in accepted and hasattr(process, field):
            options[field] = getattr(process, field)
    return options


def check_schedule_options(sample_config: ml_collections.ConfigDict) -> None:
    """The schedule's options may not restate the process's range."""
    owned = sorted(
        set(sample_config.get("schedule_options", {}) or {}) & set(_RANGE_FIELDS + _VP_FIELDS)
    )
    if owned:
        raise ValueError(
            f"sample.schedule_options {owned} belong to the process: set config.process instead"
        )


def noise_levels(process, sample_config: ml_collections.ConfigDict, steps: int | None = None):
    """The descending sigmas (ending in 0) of sample_config.schedule with `steps` levels (default
    sample_config.steps), over the range of `process`."""
    steps = sample_config.steps if steps is None else steps
    check_schedule_options(sample_config)
    options = dict(sample_config.get("schedule_options", {}) or {})
    options.update(schedule_process_options(sample_config.schedule, process))
    return get_schedule(sample_config.schedule)(steps, **options)


def sample_denoiser(denoise, process, key, shape, *, sampler: str, sigmas=None, steps=None):
    """Samples [*shape] of denoise(x, sigma) with `sampler`: on the levels `sigmas` from the
    process's kernel at sigmas[0], or for an SDE sampler in `steps` steps from its prior."""
    prior_key, sampler_key = jax.random.split(key)
    if sampler in SDE_SAMPLERS:
        x = process.prior_sample(prior_key, shape)
        return getattr(sde_samplers, sampler)(
            process, denoise, x, key=sampler_key, num_steps=int(steps)
        )
    x = process.perturb(prior_key, jnp.zeros(shape), jnp.full(shape[:1], sigmas[0]))
    return samplers.get_sampler(sampler)(denoise, x, sigmas, key=sampler_key)
