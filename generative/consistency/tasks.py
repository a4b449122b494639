"""Consistency training and distillation as tasks of the one trainer (generative.training.task).

Each task is the diffusion task (data, network, the 'consistency' preconditioning, pictures,
evaluators) with a consistency loss on a pair of adjacent ascending levels t_i < t_{i+1} per example
(generative.consistency.losses) and consistency sampling:

* 'ct' (Song et al. 2023, sec. 5): d(f(x0 + t_{i+1} z), sg f^-(x0 + t_i z, t_i)) on
  config.task.num_levels fixed Karras levels, i uniform; the target f^- is the EMA 'target' of the
  online network with the fixed decay config.task.target_decay (mu = 0.95 in CM), read as
  frozen['net.target']; sampling uses the EMA 'ema' (config.ema).
* 'ict' (Song and Dhariwal 2023): the target is the online network under stop_gradient, pseudo-
  Huber distance, weight 1 / (t_{i+1} - t_i), the curriculum N(k) of the optimiser step k =
  frozen['step'] and i from the discrete log-normal. N(k) takes a handful of values over training:
  their level grids and pair probabilities are one padded table (pairs past N(k) - 1 have
  probability 0), so the step compiles once.
* 'cd' (Song et al. 2023, sec. 4): 'ct' with x_hat = one Euler or Heun PF-ODE step of a trained
  diffusion run's denoiser (config.task.teacher, restored with load_run into the frozen group
  'teacher'; its network and preconditioning come from that run's config) from t_{i+1} to t_i.

Samples: multistep consistency sampling (Song et al. 2023, Algorithm 1) at the levels (sigma_max,
*config.sample.consistency_levels)[:steps], steps = sample.steps / eval.steps (1 = one step), with
sampler 'consistency'. `denoiser(params)` is the consistency function f(x, sigma), an
x0-prediction in the denoiser convention: a core sampler's one Euler step from sigma_max to 0 is
one-step sampling, but an ODE solve over more levels does not sample the model; use `sample`.
"""

import functools
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from generative.consistency.losses import (
    SOLVERS,
    WEIGHTINGS,
    cd_loss,
    ct_loss,
    ict_levels,
    ict_num_levels,
    lognormal_level_probabilities,
    pseudo_huber,
    sample_level_indices,
    squared_l2,
)
from generative.consistency.sampling import multistep
from generative.training.checkpoint import load_run
from generative.training.config_checks import check_process_fields
from generative.training.diffusion_task import DiffusionTask
from generative.training.errors import RunError

DISTANCES = {"l2": squared_l2, "pseudo_huber": pseudo_huber}
SAMPLER = "consistency"


class ConsistencyTraining(DiffusionTask):
    """'ct': consistency training with an EMA target on fixed levels (Song et al. 2023)."""

    ema_target = True  # f^- = the EMA 'target' (False: the online network, iCT)

    def __init__(self, config):
        super().__init__(config)
        eps, sigma_max = self.process.sigma_min, self.process.sigma_max
        levels = tuple(float(t) for t in config.sample.consistency_levels)
        descending = (sigma_max, *levels)
        if not all(a > b > eps for a, b in zip(descending, levels)):
            raise ValueError(
                f"sample.consistency_levels must descend strictly inside (sigma_min, sigma_max) = "
                f"({eps}, {sigma_max}), got {levels}"
            )
        self.sample_levels = descending
        self.level_counts = self.possible_level_counts()
        width = int(self.level_counts.max())
        grid = functools.partial(ict_levels, eps=eps, sigma_max=sigma_max, rho=config.task.rho)
        grids = [np.asarray(grid(int(n))) for n in self.level_counts]
        self.level_table = np.stack([np.pad(g, (0, width - len(g)), mode="edge") for g in grids])
        self.probability_table = np.stack(
            [np.pad(self.pair_probabilities(g), (0, width - len(g))) for g in grids]
        )

    def check_fields(self, config):
        """An EDM process, the 'consistency' preconditioning, no task.loss, sampler
        'consistency', a known distance and weighting, an unconditional model."""
        name = config.task.name
        if "process" in config and config.process.get("name", "edm") != "edm":
            raise ValueError(
                f"task {name!r} trains a consistency model of EDM's process x = x0 + t n: "
                f"config.process.name must be 'edm', got {config.process.name!r}"
            )
        check_process_fields(config, ("precond",))
        if config.task.precond.name != "consistency":
            raise ValueError(
                f"task {name!r} needs config.task.precond.name='consistency' (f(x, eps) = x), got "
                f"{config.task.precond.name!r}"
            )
        if "loss" in config.task:
            raise ValueError(
                f"config.task.loss is not used by task {name!r}: remove it (task.distance and "
                "task.weighting choose the loss)"
            )
        for section in ("sample", "eval"):
            if config[section].sampler != SAMPLER:
                raise ValueError(
                    f"task {name!r} samples with its consistency function: config.{section}."
                    f"sampler must be {SAMPLER!r}, got {config[section].sampler!r}"
                )
        if config.task.distance not in DISTANCES:
            raise ValueError(
                f"config.task.distance must be one of {sorted(DISTANCES)}, got "
                f"{config.task.distance!r}"
            )
        if config.task.weighting not in WEIGHTINGS:
            raise ValueError(
                f"config.task.weighting must be one of {WEIGHTINGS}, got {config.task.weighting!r}"
            )
        if config.model.get("num_classes", 0):
            raise ValueError(f"task {name!r} is unconditional: set model.num_classes=0")

    def make_loss(self):
        """ct_loss(online_f, target_f, x0, key, levels, indices) -> [B]."""
        task = self.config.task
        return functools.partial(
            ct_loss, distance=DISTANCES[task.distance], weighting=task.weighting
        )

    # ------------------------------------------------------------------ levels

    def possible_level_counts(self) -> np.ndarray:
        """Every value N(k) takes in training, ascending: here the fixed config.task.num_levels."""
        n = self.config.task.num_levels
        if not isinstance(n, int) or n < 2:
            raise ValueError(f"config.task.num_levels must be an int >= 2, got {n!r}")
        return np.array([n])

    def num_levels(self, step) -> jax.Array:
        """N(k), the number of levels at optimiser step k."""
        del step
        return jnp.asarray(self.config.task.num_levels, jnp.int32)

    def pair_probabilities(self, levels: np.ndarray) -> np.ndarray:
        """P(i) over the pairs (t_i, t_{i+1}) of ascending levels: uniform (CM)."""
        return np.full(len(levels) - 1, 1 / (len(levels) - 1))

    def levels(self, step):
        """(levels, pair probabilities, N(k)) at step k: the table row of N(k), padded."""
        n = self.num_levels(step)
        row = jnp.searchsorted(jnp.asarray(self.level_counts), n)
        return jnp.asarray(self.level_table)[row], jnp.asarray(self.probability_table)[row], n

    # ------------------------------------------------------------------ training

    def emas(self):
        rules = super().emas()
        if self.ema_target:
            target = ml_collections.ConfigDict(
                {"kind": "fixed", "decay": self.config.task.target_decay}
            )
            rules = {group: {**named, "target": target} for group, named in rules.items()}
        return rules

    def target(self, frozen, online):
        """f^-: the network with the EMA 'target' (or `online` itself without one)."""
        if not self.ema_target:
            return online
        return self.denoiser({"net": frozen["net.target"]})

    def teachers(self, frozen) -> tuple:
        """The loss's arguments between target_f and x0: none for CT."""
        del frozen
        return ()

    def loss_fn(self, params, frozen, batch, key):
        """Batch mean of the consistency loss; i drawn for step frozen['step']."""
        dropout_key, index_key, loss_key = jax.random.split(key, 3)
        x0 = batch["x"]
        levels, probabilities, n = self.levels(frozen["step"])
        indices = sample_level_indices(index_key, probabilities, x0.shape[0])
        online = self.denoiser(params, train=True, dropout_key=dropout_key)
        target = self.target(frozen, online)
        per_example = self.loss(
            online, target, *self.teachers(frozen), x0, loss_key, levels, indices
        )
        return per_example.mean(), {"num_levels": n}

    # ------------------------------------------------------------------ sampling

    def make_sampler(self, sampler, steps, w, size):
        """run(params, key, labels): multistep consistency sampling at the first `steps` levels
        of (sigma_max, *sample.consistency_levels), from x = sigma_max z."""
        del w  # unconditional
        if sampler != SAMPLER:
            raise ValueError(
                f"a consistency model samples with sampler {SAMPLER!r}, got {sampler!r}"
            )
        if not 1 <= steps <= len(self.sample_levels):
            raise ValueError(
                f"steps={steps}: this model samples in 1 to {len(self.sample_levels)} steps, at "
                f"(sigma_max, *sample.consistency_levels) = {self.sample_levels}"
            )
        levels = jnp.asarray(self.sample_levels[:steps])
        shape = (size, *self.info["shape"])

        def run(params, key, labels):
            del labels
            prior_key, noise_key = jax.random.split(key)
            x = self.process.perturb(prior_key, jnp.zeros(shape), jnp.full(size, levels[0]))
            return multistep(
                self.denoiser(params), x, levels, key=noise_key, eps=self.process.sigma_min
            )

        return run


class ImprovedConsistencyTraining(ConsistencyTraining):
    """'ict': improved consistency training (Song and Dhariwal 2023): no EMA target, N(k) from
    config.task.s0, s1, level pairs from the discrete log-normal (task.p_mean, task.p_std)."""

    ema_target = False

    def possible_level_counts(self) -> np.ndarray:
        steps = np.arange(self.config.training.num_steps + 1)
        return np.unique(np.asarray(self.num_levels(steps)))

    def num_levels(self, step) -> jax.Array:
        task = self.config.task
        return ict_num_levels(step, self.config.training.num_steps, s0=task.s0, s1=task.s1)

    def pair_probabilities(self, levels: np.ndarray) -> np.ndarray:
        task = self.config.task
        return np.asarray(
            lognormal_level_probabilities(levels, p_mean=task.p_mean, p_std=task.p_std)
        )


class ConsistencyDistillation(ConsistencyTraining):
    """'cd': consistency distillation of the diffusion run in config.task.teacher (frozen group
    'teacher'), one config.task.solver step (euler, heun) of its PF-ODE per pair."""

    def __init__(self, config):
        super().__init__(config)
        teacher = load_teacher(config.task.teacher)
        if teacher.config.task.name != "diffusion":
            raise ValueError(
                f"config.task.teacher={config.task.teacher!r} is a {teacher.config.task.name!r} "
                "run; the teacher must be a 'diffusion' run"
            )
        if teacher.config.data.name != config.data.name or teacher.task.num_classes:
            raise ValueError(
                f"config.task.teacher={config.task.teacher!r} was trained on "
                f"{teacher.config.data.name!r} (num_classes={teacher.task.num_classes}); this run "
                f"needs an unconditional teacher of {config.data.name!r}"
            )
        self.teacher_task, self.teacher_params = teacher.task, teacher.params["net"]

    def make_loss(self):
        """cd_loss(online_f, target_f, teacher, x0, key, levels, indices) -> [B]."""
        task = self.config.task
        if task.solver not in SOLVERS:
            raise ValueError(f"config.task.solver must be one of {SOLVERS}, got {task.solver!r}")
        return functools.partial(
            cd_loss,
            solver=task.solver,
            distance=DISTANCES[task.distance],
            weighting=task.weighting,
        )

    def init(self, key, example_batch):
        return {**super().init(key, example_batch), "teacher": self.teacher_params}

    def teachers(self, frozen) -> tuple:
        return (self.teacher_task.denoiser({"net": frozen["teacher"]}),)


def load_teacher(workdir: str):
    """load_run(workdir) of a teacher, with a one-line ValueError for a missing or empty one."""
    if not workdir:
        raise ValueError("config.task.teacher is empty: give a trained diffusion run's workdir")
    if not os.path.isdir(workdir):
        raise ValueError(f"config.task.teacher={workdir!r} is not a directory")
    try:
        return load_run(workdir)
    except RunError as error:
        raise ValueError(f"config.task.teacher: {error}") from None
