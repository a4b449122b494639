"""Exponential moving average of the parameters.

Two rules for the decay beta in ema <- beta * ema + (1 - beta) * params:

* 'fixed': beta is a constant (e.g. 0.9999, as in DDPM / score_sde).
* 'halflife': EDM's rule (Karras et al. 2022, training/training_loop.py). The average has a
  half-life of `halflife_images` training images, shortened to `rampup_ratio` times the images seen
  so far while training is young, so early averages are not dominated by the random initialisation:

      halflife = min(halflife_images, images_seen * rampup_ratio)
      beta = 0.5 ** (batch_size / max(halflife, 1e-8))
"""

import jax
import jax.numpy as jnp
import ml_collections


def ema_decay(ema_config: ml_collections.ConfigDict, step, batch_size: int):
    """The decay beta used for the update made after optimiser step `step` (0-based)."""
    if ema_config.kind == "fixed":
        return jnp.asarray(ema_config.decay, jnp.float32)
    if ema_config.kind == "halflife":
        images_seen = (jnp.asarray(step, jnp.float32) + 1.0) * batch_size
        halflife = jnp.asarray(ema_config.halflife_images, jnp.float32)
        if ema_config.rampup_ratio > 0:
            halflife = jnp.minimum(halflife, images_seen * ema_config.rampup_ratio)
        return 0.5 ** (batch_size / jnp.maximum(halflife, 1e-8))
    raise ValueError(f"ema.kind must be 'fixed' or 'halflife', got {ema_config.kind!r}")


def ema_update(ema_params, params, decay):
    """ema * decay + params * (1 - decay), leaf by leaf, in the EMA's dtype."""
    return jax.tree.map(
        lambda e, p: (decay * e + (1.0 - decay) * p.astype(e.dtype)).astype(e.dtype),
        ema_params,
        params,
    )
