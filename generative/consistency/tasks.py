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
* 'ect' (Geng et al. 2024): fine-tunes a trained unconditional EDM 'diffusion' run of the same data
  and network (training.init_from; its raw network F under the 'consistency' preconditioning is the
  boundary-respecting consistency function of its denoiser) with iCT's stop-gradient target on
  continuous pairs r < t: t from the clipped log-normal (task.p_mean, task.p_std), r = t - gap
  with the gap shrinking by task.gap_ratio every task.stage_steps steps (ect_gap); logs the stage
  and the mean relative gap (t - r) / t.
* 'sct' and 'scd' (Lu and Song 2024): continuous-time consistency models in TrigFlow
  (generative.consistency.scm) on a network under the 'trigflow' preconditioning, whose group 'net'
  also holds the adaptive weighting's log-variance head; 'scd' takes the PF-ODE velocity of the
  teacher in config.task.teacher (an EDM denoiser converted to TrigFlow), 'sct' the one-sample
  estimate from data. The tangent warm-up r is logged.

Samples: multistep consistency sampling (Song et al. 2023, Algorithm 1) at the levels (sigma_max,
*config.sample.consistency_levels)[:steps] (TrigFlow: (pi/2, *levels)), steps = sample.steps /
eval.steps (1 = one step), with sampler 'consistency'. `denoiser(params)` is the consistency
function f(x, sigma), an x0-prediction in the denoiser convention: a core sampler's one Euler step
from sigma_max to 0 is one-step sampling, but an ODE solve over more levels does not sample the
model; use `sample`. (sct/scd's `denoiser` is the TrigFlow network's EDM form, a denoiser that
ODE solvers can run.)
"""

import functools
import json
import math
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
    ect_gap,
    ect_loss,
    ect_stage,
    ect_times,
    ict_levels,
    ict_num_levels,
    lognormal_level_probabilities,
    pseudo_huber,
    sample_level_indices,
    squared_l2,
)
from generative.consistency.parametrization import (
    trigflow_denoiser_from_edm,
    trigflow_function,
    trigflow_velocity,
)
from generative.consistency.sampling import multistep, trigflow_multistep
from generative.consistency.scm import scm_loss, tangent_warmup
from generative.models.embeddings import LogVarianceHead
from generative.training.checkpoint import load_run
from generative.training.config_checks import check_process_fields
from generative.training.diffusion_task import DiffusionTask, network_fn
from generative.training.errors import RunError
from generative.training.workdir import config_changes, read_config, training_changes

DISTANCES = {"l2": squared_l2, "pseudo_huber": pseudo_huber}
SAMPLER = "consistency"


class ConsistencyTraining(DiffusionTask):
    """'ct': consistency training with an EMA target on fixed levels (Song et al. 2023)."""

    ema_target = True  # f^- = the EMA 'target' (False: the online network, iCT)

    def __init__(self, config):
        super().__init__(config)
        self.sample_levels = check_sample_levels(
            config.sample.consistency_levels,
            (self.process.sigma_min, self.process.sigma_max),
            "(sigma_min, sigma_max)",
        )
        self.setup_levels(config)

    def setup_levels(self, config):
        """The padded tables of every level grid and pair distribution the run's steps use."""
        eps, sigma_max = self.process.sigma_min, self.process.sigma_max
        self.level_counts = self.possible_level_counts()
        width = int(self.level_counts.max())
        grid = functools.partial(ict_levels, eps=eps, sigma_max=sigma_max, rho=config.task.rho)
        grids = [np.asarray(grid(int(n))) for n in self.level_counts]
        self.level_table = np.stack([np.pad(g, (0, width - len(g)), mode="edge") for g in grids])
        self.probability_table = np.stack(
            [np.pad(self.pair_probabilities(g), (0, width - len(g))) for g in grids]
        )

    def check_fields(self, config):
        """check_consistency_fields with the 'consistency' preconditioning, a known distance and
        weighting."""
        check_consistency_fields(config, "consistency", "f(x, eps) = x")
        if config.task.distance not in DISTANCES:
            raise ValueError(
                f"config.task.distance must be one of {sorted(DISTANCES)}, got "
                f"{config.task.distance!r}"
            )
        if config.task.weighting not in WEIGHTINGS:
            raise ValueError(
                f"config.task.weighting must be one of {WEIGHTINGS}, got {config.task.weighting!r}"
            )

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
        levels = jnp.asarray(sampling_levels(sampler, steps, self.sample_levels, "sigma_max"))
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
        check_diffusion_run("task.teacher", config.task.teacher, teacher.config, config)
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


class EasyConsistencyTuning(ConsistencyTraining):
    """'ect': easy consistency tuning (Geng et al. 2024) of the diffusion run in
    training.init_from: no EMA target, t from the clipped log-normal, r = ``ect_gap(t, step)``."""

    ema_target = False

    def __init__(self, config):
        super().__init__(config)
        self.gap(jnp.ones((1,)), 0)  # any other ValueError of the loss pieces, before compiling
        self.times(jax.random.key(0), 1)

    def check_fields(self, config):
        """ct's fields, and training.init_from an unconditional EDM 'diffusion' run of this data
        and network."""
        super().check_fields(config)
        task = config.task
        steps = task.stage_steps
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"config.task.stage_steps must be an int >= 1, got {steps!r}")
        for field, ok, rule in (
            ("gap_ratio", task.gap_ratio > 1, "> 1"),
            ("gap_k", task.gap_k >= 0, ">= 0"),
            ("p_std", task.p_std > 0, "> 0"),
        ):
            if not ok:
                raise ValueError(f"config.task.{field} must be {rule}, got {task[field]!r}")
        stages = (config.training.num_steps - 1) // steps + 1
        if task.gap_ratio**stages > 1e5:
            raise ValueError(
                f"config.task.gap_ratio ** stages = {task.gap_ratio} ** {stages} > 1e5: the last "
                "stage's gap t n(t) / q^(a+1) is below float32 resolution; raise "
                "config.task.stage_steps"
            )
        workdir = config.training.init_from
        run_workdir("training.init_from", workdir, "ECT starts from a trained diffusion run")
        try:
            init_config = read_config(workdir)
        except RunError as error:
            raise ValueError(f"config.training.init_from: {error}") from None
        check_diffusion_run("training.init_from", workdir, init_config, config, same_network=True)

    def setup_levels(self, config):
        """No level grids: ECT's t and r are continuous."""
        del config

    def make_loss(self):
        """ect_loss(online_f, target_f, x0, key, t, r) -> [B]."""
        task = self.config.task
        return functools.partial(
            ect_loss, distance=DISTANCES[task.distance], weighting=task.weighting
        )

    def times(self, key, batch_size):
        """t [B] from the log-normal (task.p_mean, task.p_std) clipped to the process's range."""
        task = self.config.task
        return ect_times(
            key, batch_size, p_mean=task.p_mean, p_std=task.p_std,
            eps=self.process.sigma_min, sigma_max=self.process.sigma_max,
        )  # fmt: skip

    def gap(self, t, step):
        """r [B] for t at optimiser step `step`."""
        task = self.config.task
        return ect_gap(
            t, step, stage_steps=task.stage_steps, q=task.gap_ratio, k=task.gap_k, b=task.gap_b,
            eps=self.process.sigma_min,
        )  # fmt: skip

    def loss_fn(self, params, frozen, batch, key):
        """Batch mean of the ECT loss at step frozen['step']; logs the stage and mean (t - r)/t."""
        dropout_key, time_key, loss_key = jax.random.split(key, 3)
        x0, step = batch["x"], frozen["step"]
        t = self.times(time_key, x0.shape[0])
        r = self.gap(t, step)
        online = self.denoiser(params, train=True, dropout_key=dropout_key)
        per_example = self.loss(online, online, x0, loss_key, t, r)
        metrics = {
            "stage": ect_stage(step, self.config.task.stage_steps),
            "relative_gap": jnp.mean((t - r) / t),
        }
        return per_example.mean(), metrics


class ContinuousConsistencyTraining(DiffusionTask):
    """'sct': continuous-time consistency training in TrigFlow (Lu and Song 2024) with
    generative.consistency.scm.scm_loss. The group 'net' holds the network ('network', a TrigFlow
    F(x_t / sd, t) under the 'trigflow' preconditioning) and the adaptive weighting's log-variance
    head ('logvar', trained with it); the target F^- is the network under stop_gradient. Samples:
    TrigFlow multistep sampling at (pi/2, *sample.consistency_levels)[:steps]; `denoiser` is the
    EDM-coordinate form, which every core sampler runs."""

    def __init__(self, config):
        super().__init__(config)
        self.sample_levels = check_sample_levels(
            config.sample.consistency_levels, (0.0, math.pi / 2), "(0, pi/2) (TrigFlow time)"
        )
        self.logvar_head = LogVarianceHead(config.task.logvar_channels)

    def check_fields(self, config):
        """check_consistency_fields with the 'trigflow' preconditioning, the loss's constants, and
        a network with forward-mode derivatives (no cuDNN attention)."""
        check_consistency_fields(config, "trigflow", "F(x_t / sd, t) in TrigFlow time")
        task, name = config.task, config.task.name
        for field, ok, rule in (
            ("tangent_c", task.tangent_c > 0, "> 0"),
            ("p_std", task.p_std > 0, "> 0"),
        ):
            if not ok:
                raise ValueError(f"config.task.{field} must be {rule}, got {task[field]!r}")
        warmup = task.tangent_warmup_steps
        if not isinstance(warmup, int) or isinstance(warmup, bool) or warmup < 0:
            raise ValueError(
                f"config.task.tangent_warmup_steps must be an int >= 0, got {warmup!r}"
            )
        channels = task.logvar_channels
        if not isinstance(channels, int) or channels < 2 or channels % 2:
            raise ValueError(f"config.task.logvar_channels must be even and >= 2, got {channels!r}")
        if config.model.get("impl") == "cudnn":
            raise ValueError(
                f"task {name!r} takes d f/dt with jax.jvp through the network, and cuDNN attention "
                "has no forward mode: set model.impl to 'pallas' (its kernel has a JVP rule), "
                "'xla' or 'auto', not 'cudnn'"
            )

    def make_loss(self):
        """scm_loss(online, target, x0, key, warmup=, velocity=, logvar=) -> [B]."""
        task = self.config.task
        return functools.partial(
            scm_loss, sigma_data=self.process.sigma_data, p_mean=task.p_mean, p_std=task.p_std,
            tangent_c=task.tangent_c,
        )  # fmt: skip

    def init(self, key, example_batch):
        net_key, head_key = jax.random.split(key)
        network = super().init(net_key, example_batch)["net"]
        head = self.logvar_head.init(head_key, jnp.zeros((1,)))["params"]
        return {"net": {"network": network, "logvar": head}}

    def denoiser(self, params, *, train=False, dropout_key=None):
        """The EDM-convention denoiser D(x, sigma) of the network ('trigflow' preconditioning)."""
        network = {"net": params["net"]["network"]}
        return super().denoiser(network, train=train, dropout_key=dropout_key)

    def consistency_function(self, params):
        """f(x_t, t) = cos(t) x_t - sin(t) sd F(x_t / sd, t) of the network in `params`."""
        raw_net = network_fn(self.model, params["net"]["network"])
        return trigflow_function(raw_net, sigma_data=self.process.sigma_data)

    def velocity(self, frozen):
        """The PF-ODE velocity dx_t/dt: None for sCT (the one-sample estimate from data)."""
        del frozen

    def loss_fn(self, params, frozen, batch, key):
        """Batch mean of the sCM loss; logs the tangent warm-up r."""
        dropout_key, loss_key = jax.random.split(key)
        net = params["net"]
        online = network_fn(self.model, net["network"], train=True, dropout_key=dropout_key)
        frozen_net = jax.lax.stop_gradient(net["network"])
        target = network_fn(self.model, frozen_net, train=True, dropout_key=dropout_key)

        def logvar(t):
            return self.logvar_head.apply({"params": net["logvar"]}, t)

        warmup = tangent_warmup(frozen["step"], self.config.task.tangent_warmup_steps)
        per_example = self.loss(
            online, target, batch["x"], loss_key, warmup=warmup, velocity=self.velocity(frozen),
            logvar=logvar,
        )  # fmt: skip
        return per_example.mean(), {"tangent_warmup": warmup}

    def make_sampler(self, sampler, steps, w, size):
        """run(params, key, labels): TrigFlow multistep sampling at the first `steps` times of
        (pi/2, *sample.consistency_levels) from x = sd z."""
        del w  # unconditional
        times = jnp.asarray(sampling_levels(sampler, steps, self.sample_levels, "pi/2"))
        shape, sd = (size, *self.info["shape"]), self.process.sigma_data

        def run(params, key, labels):
            del labels
            prior_key, noise_key = jax.random.split(key)
            x = sd * jax.random.normal(prior_key, shape)
            f = self.consistency_function(params)
            return trigflow_multistep(f, x, times, key=noise_key, sigma_data=sd)

        return run


class ContinuousConsistencyDistillation(ContinuousConsistencyTraining):
    """'scd': sCT with the PF-ODE velocity of the diffusion run in config.task.teacher (frozen
    group 'teacher'), its EDM denoiser converted to TrigFlow: dx_t/dt = (cos(t) x_t - D(x_t /
    cos(t), sd tan(t))) / sin(t)."""

    def __init__(self, config):
        super().__init__(config)
        teacher = load_teacher(config.task.teacher)
        check_diffusion_run("task.teacher", config.task.teacher, teacher.config, config)
        self.teacher_task, self.teacher_params = teacher.task, teacher.params["net"]

    def init(self, key, example_batch):
        return {**super().init(key, example_batch), "teacher": self.teacher_params}

    def velocity(self, frozen):
        denoise = self.teacher_task.denoiser({"net": frozen["teacher"]})
        sd = self.process.sigma_data
        return trigflow_velocity(trigflow_denoiser_from_edm(denoise, sigma_data=sd))


def check_consistency_fields(config, precond: str, why: str) -> None:
    """ValueError unless config has EDM's process, task.precond.name `precond`, no task.loss,
    sampler 'consistency' for samples and evaluation, and an unconditional model."""
    name = config.task.name
    if "process" in config and config.process.get("name", "edm") != "edm":
        raise ValueError(
            f"task {name!r} trains a consistency model of EDM's process x = x0 + t n: "
            f"config.process.name must be 'edm', got {config.process.name!r}"
        )
    check_process_fields(config, ("precond",))
    if config.task.precond.name != precond:
        raise ValueError(
            f"task {name!r} needs config.task.precond.name={precond!r} ({why}), got "
            f"{config.task.precond.name!r}"
        )
    if "loss" in config.task:
        raise ValueError(
            f"config.task.loss is not used by task {name!r}: remove it (the task's own fields "
            "choose the loss)"
        )
    for section in ("sample", "eval"):
        if config[section].sampler != SAMPLER:
            raise ValueError(
                f"task {name!r} samples with its consistency function: config.{section}."
                f"sampler must be {SAMPLER!r}, got {config[section].sampler!r}"
            )
    if config.model.get("num_classes", 0):
        raise ValueError(f"task {name!r} is unconditional: set model.num_classes=0")


def check_sample_levels(levels, interval: tuple, names: str) -> tuple:
    """(hi, *levels): sampling starts at hi, and sample.consistency_levels must descend strictly
    inside interval = (lo, hi), named `names`."""
    lo, hi = interval
    levels = tuple(float(t) for t in levels)
    descending = (hi, *levels)
    if not all(a > b > lo for a, b in zip(descending, levels)):
        raise ValueError(
            f"sample.consistency_levels must descend strictly inside {names} = ({lo}, {hi}), got "
            f"{levels}"
        )
    return descending


def sampling_levels(sampler: str, steps: int, levels: tuple, first_name: str) -> tuple:
    """The first `steps` of `levels` for `sampler` 'consistency' (ValueError otherwise)."""
    if sampler != SAMPLER:
        raise ValueError(f"a consistency model samples with sampler {SAMPLER!r}, got {sampler!r}")
    if not 1 <= steps <= len(levels):
        raise ValueError(
            f"steps={steps}: this model samples in 1 to {len(levels)} steps, at ({first_name}, "
            f"*sample.consistency_levels) = {levels}"
        )
    return levels[:steps]


def run_workdir(field: str, workdir: str, why: str) -> None:
    """One-line ValueErrors for an empty config.<field> or one that is not a directory."""
    if not workdir:
        raise ValueError(f"config.{field} is empty: {why}; give its workdir")
    if not os.path.isdir(workdir):
        raise ValueError(f"config.{field}={workdir!r} is not a directory")


def check_diffusion_run(
    field: str, workdir: str, run_config, config, *, same_network: bool = False
) -> None:
    """ValueError unless `run_config` (of the run in config.<field> = workdir) is an unconditional
    'diffusion' run of config.data.name; with same_network also EDM's process and
    preconditioning, config's sigma_data and exactly config.model (for an initialisation)."""
    where = f"config.{field}={workdir!r}"
    name = run_config.task.name
    if name != "diffusion":
        raise ValueError(f"{where} is a {name!r} run; it must be a 'diffusion' run")
    classes = run_config.model.get("num_classes", 0) or 0
    if run_config.data.name != config.data.name or classes:
        raise ValueError(
            f"{where} was trained on {run_config.data.name!r} (num_classes={classes}); this run "
            f"needs an unconditional run of {config.data.name!r}"
        )
    if not same_network:
        return
    process, precond = run_config.process, run_config.task.precond.name
    if process.name != "edm" or precond != "edm":
        raise ValueError(
            f"{where} has process {process.name!r} and precond {precond!r}; ECT starts from an "
            "EDM run (process 'edm', task.precond.name 'edm')"
        )
    if process.get("sigma_data") != config.process.get("sigma_data"):
        raise ValueError(
            f"{where} has process.sigma_data={process.get('sigma_data')}, this run "
            f"{config.process.get('sigma_data')}: the network's input scaling would differ"
        )
    model = json.loads(config.model.to_json_best_effort())
    # model.impl is run control: the same function and parameters whichever implementation runs
    changes = training_changes(
        config_changes({"model": run_config.model.to_dict()}, {"model": model})
    )
    if changes:
        shown = ", ".join(f"{k}: {a!r} there, {b!r} here" for k, (a, b) in changes.items())
        raise ValueError(f"{where} has another network ({shown}): its parameters would not fit")


def load_teacher(workdir: str):
    """load_run(workdir) of a teacher, with a one-line ValueError for a missing or empty one."""
    run_workdir("task.teacher", workdir, "the teacher is a trained diffusion run")
    try:
        return load_run(workdir)
    except RunError as error:
        raise ValueError(f"config.task.teacher: {error}") from None
