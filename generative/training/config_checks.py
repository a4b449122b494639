"""Checks of an experiment config that run before anything is built or compiled."""

import ml_collections

# Fields every diffusion config must have (section -> fields); documented in configs/base.py.
REQUIRED_FIELDS = {
    "": ("seed", "data", "model", "precond", "loss", "optim", "ema", "training", "sample", "eval"),
    "data": ("name",),
    "model": ("name",),
    "precond": ("kind",),
    "loss": ("name",),
    "optim": (
        "name",
        "lr",
        "b1",
        "b2",
        "eps",
        "weight_decay",
        "warmup_steps",
        "decay",
        "grad_clip",
    ),
    "ema": ("kind",),
    "training": (
        "batch_size",
        "num_steps",
        "accum_steps",
        "label_dropout",
        "log_every",
        "sample_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "num_grid_samples",
    ),
    "sample": ("sampler", "steps", "schedule", "schedule_options", "guidance"),
    "eval": ("num_samples", "sampler", "steps"),
}


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ValueError naming the first missing or inconsistent field.

    The global batch (training.batch_size) must split evenly into accum_steps micro-batches, each of
    which splits evenly over the `num_devices` devices of the data-parallel mesh.
    """
    for section, fields in REQUIRED_FIELDS.items():
        node = config if not section else config[section]
        for field in fields:
            if field not in node:
                where = f"{section}.{field}" if section else field
                raise ValueError(f"config is missing the field {where!r}")
    training = config.training
    if training.batch_size <= 0 or training.num_steps <= 0:
        raise ValueError(
            f"training.batch_size and training.num_steps must be positive, got "
            f"{training.batch_size} and {training.num_steps}"
        )
    if training.accum_steps <= 0 or training.batch_size % training.accum_steps:
        raise ValueError(
            f"training.batch_size={training.batch_size} must be divisible by "
            f"training.accum_steps={training.accum_steps}"
        )
    micro_batch = training.batch_size // training.accum_steps
    if micro_batch % num_devices:
        raise ValueError(
            f"training.batch_size / training.accum_steps = {micro_batch} must be divisible by the "
            f"number of devices ({num_devices})"
        )
    if not 0.0 <= training.label_dropout < 1.0:
        raise ValueError(f"training.label_dropout must be in [0, 1), got {training.label_dropout}")
    if config.ema.kind not in ("fixed", "halflife"):
        raise ValueError(f"ema.kind must be 'fixed' or 'halflife', got {config.ema.kind!r}")
    if config.ema.kind == "fixed" and not 0.0 <= config.ema.decay < 1.0:
        raise ValueError(f"ema.decay must be in [0, 1), got {config.ema.decay}")
    if config.ema.kind == "halflife" and config.ema.halflife_images <= 0:
        raise ValueError(f"ema.halflife_images must be positive, got {config.ema.halflife_images}")
