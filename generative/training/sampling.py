"""Sampling a trained network with any core sampler (generative.samplers), in EDM's unscaled
coordinates.

x starts as a draw from the noise kernel at the first level sigmas[0] around 0: Gaussian, or for
PFGM++ the heavy-tailed kernel with the trained D (Xu et al. 2023: the prior is the kernel at r_max
= sigma_max sqrt(D)). With a class-conditional network the labels cycle through the classes, and
config.sample.guidance w != 1 applies classifier-free guidance D = D_null + w (D_label - D_null) (Ho
and Salimans 2022).
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from generative.processes import get_process
from generative.samplers import get_sampler
from generative.schedules import get_schedule
from generative.training.step import network_denoiser


def noise_levels(sample_config: ml_collections.ConfigDict, steps: int | None = None):
    """The descending sigmas (ending in 0) of sample_config.schedule with `steps` levels."""
    steps = sample_config.steps if steps is None else steps
    return get_schedule(sample_config.schedule)(steps, **sample_config.schedule_options)


def prior_noise(config: ml_collections.ConfigDict, key, shape, sigma_max):
    """A draw from the perturbation kernel at level sigma_max around 0 (the sampler's start)."""
    if config.loss.name == "pfgmpp":
        process = get_process("pfgmpp", D=config.loss.D)
        return process.perturb(key, jnp.zeros(shape), jnp.full(shape[:1], sigma_max))
    return sigma_max * jax.random.normal(key, shape)


def guided_denoiser(denoise, labels, num_classes: int, guidance: float):
    """denoise(x, sigma) conditioned on `labels`, with classifier-free guidance weight
    `guidance`."""
    if labels is None:
        return denoise
    conditional = functools.partial(denoise, labels=labels)
    if guidance == 1.0:
        return conditional

    def guided(x, sigma):
        unconditional = denoise(x, sigma, labels=jnp.full_like(labels, num_classes))
        return unconditional + guidance * (conditional(x, sigma) - unconditional)

    return guided


def make_sample_fn(
    model,
    config: ml_collections.ConfigDict,
    *,
    shape,
    sampler: str | None = None,
    steps: int | None = None,
    chunk: int = 1000,
):
    """sample_fn(params, key, num) -> numpy [num, *shape]: samples of the network with `params`
    (pass the EMA parameters), `chunk` at a time through one jit-compiled sampler call (compiled
    once per chunk size and reused across calls). Different keys give independent samples."""
    sampler_fn = get_sampler(config.sample.sampler if sampler is None else sampler)
    sigmas = noise_levels(config.sample, steps)
    num_classes = config.model.get("num_classes", 0) or 0

    @functools.partial(jax.jit, static_argnums=3)
    def run(params, key, labels, size):
        noise_key, sampler_key = jax.random.split(key)
        denoise = network_denoiser(model, params, config.precond)
        denoise = guided_denoiser(denoise, labels, num_classes, config.sample.guidance)
        x = prior_noise(config, noise_key, (size, *shape), sigmas[0])
        return sampler_fn(denoise, x, sigmas, key=sampler_key)

    def sample_fn(params, key, num: int) -> np.ndarray:
        out = []
        for start in range(0, num, chunk):
            size = min(chunk, num - start)
            labels = None
            if num_classes:
                labels = jnp.arange(start, start + size, dtype=jnp.int32) % num_classes
            out.append(np.asarray(run(params, jax.random.fold_in(key, start), labels, size)))
        return np.concatenate(out)

    return sample_fn
