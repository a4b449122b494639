"""The optimiser: Adam or AdamW with a linear learning-rate warm-up and global-norm gradient
clipping.

EDM trains with Adam (beta2 0.999, eps 1e-8), a learning-rate warm-up over the first 10M images and
no decay; score_sde adds gradient clipping at norm 1. Gradient accumulation happens in the train
step (step.py), which sums micro-batch gradients inside one jit before this transform sees them, so
the optimiser and the EMA advance once per full batch.
"""

import ml_collections
import optax

OPTIMIZERS = ("adam", "adamw")
DECAYS = ("constant", "cosine")


def learning_rate_schedule(
    optim_config: ml_collections.ConfigDict, num_steps: int
) -> optax.Schedule:
    """lr * min(1, (step + 1) / warmup_steps), then constant or a cosine decay to 0 at num_steps."""
    lr, warmup = optim_config.lr, optim_config.warmup_steps
    if optim_config.decay not in DECAYS:
        raise ValueError(f"optim.decay must be one of {DECAYS}, got {optim_config.decay!r}")
    ramp = optax.linear_schedule(lr / max(warmup, 1), lr, max(warmup - 1, 1))
    if optim_config.decay == "constant":
        after = optax.constant_schedule(lr)
    else:
        after = optax.cosine_decay_schedule(lr, max(num_steps - warmup, 1))
    if warmup <= 0:
        return after
    return optax.join_schedules([ramp, after], [warmup])


def make_optimizer(optim_config: ml_collections.ConfigDict, num_steps: int):
    """Clip by global norm (skipped when grad_clip is None or <= 0), then Adam or AdamW."""
    if optim_config.name not in OPTIMIZERS:
        raise ValueError(f"optim.name must be one of {OPTIMIZERS}, got {optim_config.name!r}")
    schedule = learning_rate_schedule(optim_config, num_steps)
    if optim_config.name == "adam":
        update = optax.adam(schedule, b1=optim_config.b1, b2=optim_config.b2, eps=optim_config.eps)
    else:
        update = optax.adamw(
            schedule,
            b1=optim_config.b1,
            b2=optim_config.b2,
            eps=optim_config.eps,
            weight_decay=optim_config.weight_decay,
        )
    clip = optim_config.grad_clip
    if clip is None or clip <= 0:
        return update
    return optax.chain(optax.clip_by_global_norm(clip), update)
