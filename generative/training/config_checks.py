"""Checks of a run's config that run before anything is built or compiled.

`check_config` covers the schema every task shares (configs/base.py documents each field);
`check_diffusion_fields` the process / preconditioning / loss / sampler agreement of the tasks that
train a denoiser (images, points, adjacency matrices); `check_process_fields` its process /
preconditioning part (also used by the consistency tasks).
"""

import ml_collections

from generative.losses import LOSS_PROCESSES
from generative.preconditioning import PRECOND_PROCESSES
from generative.processes import PROCESSES
from generative.training.sampling import check_sampler, check_schedule_options

# Fields every config has (section -> fields); documented in configs/base.py.
REQUIRED_FIELDS = {
    "": ("seed", "data", "model", "task", "optim", "ema", "training", "sample", "eval"),
    "data": ("name",),
    "task": ("name",),
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
        "cond_dropout",
        "log_every",
        "sample_every",
        "eval_every",
        "checkpoint_every",
        "keep_checkpoints",
        "num_grid_samples",
        "time_limit_minutes",
        "init_from",
        "init_from_ema",
        "tensorboard",
        "on_nonfinite",
        "max_nonfinite_in_a_row",
    ),
    "sample": ("sampler", "steps", "schedule", "schedule_options", "guidance"),
    "eval": ("num_samples", "sampler", "steps", "batch_size", "evaluators"),
}


def check_config(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Raises ValueError naming the first missing or inconsistent field of the shared schema.

    The global batch (training.batch_size) must split evenly into accum_steps micro-batches, each of
    which splits evenly over the `num_devices` devices of the data-parallel mesh.
    """
    for section, fields in REQUIRED_FIELDS.items():
        if section and section not in config:
            raise ValueError(f"config is missing the section {section!r}")
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
    if not 0.0 <= training.cond_dropout < 1.0:
        raise ValueError(f"training.cond_dropout must be in [0, 1), got {training.cond_dropout}")
    if training.keep_checkpoints < 1:
        raise ValueError(f"training.keep_checkpoints must be >= 1, got {training.keep_checkpoints}")
    if training.on_nonfinite not in ("stop", "skip"):
        raise ValueError(
            f"training.on_nonfinite must be 'stop' or 'skip', got {training.on_nonfinite!r}"
        )
    if training.max_nonfinite_in_a_row < 1:
        raise ValueError(
            f"training.max_nonfinite_in_a_row must be >= 1, got {training.max_nonfinite_in_a_row}"
        )
    if config.sample.guidance < 0:
        raise ValueError(
            f"sample.guidance must be >= 0 (1 = conditional, 0 = unconditional), got "
            f"{config.sample.guidance}"
        )
    if config.eval.batch_size < 1:
        raise ValueError(f"eval.batch_size must be >= 1, got {config.eval.batch_size}")
    check_ema(config.ema, "ema")


def check_ema(rule: ml_collections.ConfigDict, where: str) -> None:
    if rule.kind not in ("fixed", "halflife"):
        raise ValueError(f"{where}.kind must be 'fixed' or 'halflife', got {rule.kind!r}")
    if rule.kind == "fixed" and not 0.0 <= rule.decay < 1.0:
        raise ValueError(f"{where}.decay must be in [0, 1), got {rule.decay}")
    if rule.kind == "halflife" and rule.halflife_images <= 0:
        raise ValueError(f"{where}.halflife_images must be positive, got {rule.halflife_images}")


def check_process_fields(config: ml_collections.ConfigDict, sections=("precond",)) -> None:
    """config.process is known and task.precond fits it; no task.<section> (precond, loss)
    restates a constant the process owns (sigma_data, PFGM++'s D)."""
    if "process" not in config or "name" not in config.process:
        raise ValueError(f"config.process.name is missing; one of {sorted(PROCESSES)}")
    for field in sections:
        if field not in config.task or "name" not in config.task[field]:
            raise ValueError(f"config.task.{field}.name is missing")
    process, precond = config.process, config.task.precond
    if process.name not in PROCESSES:
        raise ValueError(
            f"config.process.name: unknown process {process.name!r}; known: {sorted(PROCESSES)}"
        )
    if precond.name not in PRECOND_PROCESSES:
        raise ValueError(
            f"config.task.precond.name must be one of {sorted(PRECOND_PROCESSES)}, got "
            f"{precond.name!r}"
        )
    if process.name not in PRECOND_PROCESSES[precond.name]:
        raise ValueError(
            f"config.task.precond.name={precond.name!r} does not fit config.process.name="
            f"{process.name!r} (it is written for {' or '.join(PRECOND_PROCESSES[precond.name])})"
        )
    for constant in ("sigma_data", "D"):
        for field in sections:
            section = config.task[field]
            if constant not in section:
                continue
            owner = process.get(constant)
            if owner is not None and float(section[constant]) != float(owner):
                raise ValueError(
                    f"two different {constant}: config.task.{field}.{constant}="
                    f"{section[constant]} and config.process.{constant}={owner}; set it once, in "
                    "config.process"
                )
            raise ValueError(
                f"config.task.{field}.{constant} restates a constant of the process: set it only "
                f"in config.process.{constant}"
            )


def check_diffusion_fields(config: ml_collections.ConfigDict) -> None:
    """config.process, task.precond, task.loss and the samplers agree (the process owns sigma_data,
    the noise range and PFGM++'s D; nothing else may restate them differently)."""
    check_process_fields(config, ("precond", "loss"))
    name, loss = config.process.name, config.task.loss
    if loss.name not in LOSS_PROCESSES:
        raise ValueError(
            f"config.task.loss.name must be one of {sorted(LOSS_PROCESSES)}, got {loss.name!r}"
        )
    if name not in LOSS_PROCESSES[loss.name]:
        raise ValueError(
            f"config.task.loss.name={loss.name!r} trains under process "
            f"{' or '.join(LOSS_PROCESSES[loss.name])}, but config.process.name={name!r}"
        )
    check_sampler(config.sample.sampler)
    check_sampler(config.eval.sampler)
    check_schedule_options(config.sample)
