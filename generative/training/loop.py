"""The one train loop: any task (generative.training.task), one checkpoint path, one EMA rule.

`train(config, workdir)` builds the run, resumes from the newest checkpoint, trains with a progress
bar and every few steps logs metrics (JSON lines, optional TensorBoard), pictures EMA samples,
evaluates (with its own progress bar), checkpoints, and plots the training curves (curves.png).
SIGTERM and Ctrl-C checkpoint and stop at the next step boundary; training.time_limit_minutes
stops early as if the last step were reached (checkpoint, pictures, final evaluation).

Nothing lost, nothing silent: the workdir is locked for the run's lifetime; a resume must use the
config the run was trained with (or say config_change_ok); config.json is written only after the
checkpoint has been restored, and metrics.jsonl is cut back to the restored step; a non-finite loss
or gradient norm at a logged step (training.on_nonfinite = 'stop') or a non-finite state at a save
stops the run with NonFiniteError and the last good checkpoint kept.

Determinism: step k uses the key fold_in(train_key, k) and the k-th batch of the task's data
stream, a pure function of (config, step, host); a resumed run starts the stream at batch k. So
train, kill, resume reproduces the uninterrupted run (bitwise on CPU).
"""

import math
import os
import time

import jax
import ml_collections
import optax
from absl import logging
from tqdm import tqdm

from generative.training import evaluation
from generative.training import workdir as workdir_lib
from generative.training.checkpoint import Checkpointer, TerminationFlag, restore_matching
from generative.training.compilation_cache import CacheCounter
from generative.training.config_checks import check_config, check_ema
from generative.training.errors import CheckpointError, CheckpointMismatchError, NonFiniteError
from generative.training.optim import make_optimizer
from generative.training.step import (
    abstract_state,
    init_state,
    make_mesh,
    make_train_step,
    put_batch,
)
from generative.training.task import create_task
from generative.training.visualize import save_curves_png
from generative.training.writers import MetricWriter, read_metrics


class Run:
    """The pieces of one run built from `config`: mesh, task, optimisers, checkpoints, keys.

    Everything that can reject a bad config (field checks, unknown names, batch/device mismatch)
    runs in the constructor, before any compilation.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config, self.workdir = config, workdir
        self.mesh = make_mesh()
        check_config(config, self.mesh.size)
        self.task = create_task(config)
        evaluation.check_evaluators(self.task.evaluators())
        for group, rules in self.task.emas().items():
            for name, rule in rules.items():
                check_ema(rule, f"ema ({group}.{name})")
        self.optimizers = {
            group: make_optimizer(config.optim, config.training.num_steps)
            for group in self.task.trainable
        }
        if config.training.on_nonfinite == "skip":
            limit = config.training.max_nonfinite_in_a_row
            self.optimizers = {
                group: optax.apply_if_finite(optimizer, limit)
                for group, optimizer in self.optimizers.items()
            }
        self.checkpointer = Checkpointer(
            os.path.join(workdir, "checkpoints"), config.training.keep_checkpoints
        )
        root = jax.random.PRNGKey(config.seed)
        self.init_key, self.train_key, self.sample_key, self.eval_key = jax.random.split(root, 4)

    def initial_state(self):
        state = init_state(self.task, self.optimizers, self.init_key, self.mesh)
        source = self.config.training.init_from
        if source:
            saved = Checkpointer(os.path.join(source, "checkpoints")).restore()
            if saved is None:
                raise CheckpointError(f"training.init_from={source!r} holds no checkpoint")
            state = restore_matching(state, saved, from_ema=self.config.training.init_from_ema)
        return state

    def restore(self, step: int | None = None):
        """The checkpointed state (the newest usable one by default), or a fresh one when there is
        none. The checkpoint's shapes are checked against the config before anything is read."""
        like = abstract_state(self.task, self.optimizers, self.mesh)
        restored = self.checkpointer.restore(like, step)
        return self.initial_state() if restored is None else restored

    def data(self, start_step: int):
        """This host's batches from step `start_step` on."""
        process_count = jax.process_count()
        return self.task.train_batches(
            start_step,
            self.config.training.batch_size // process_count,
            jax.process_index(),
            process_count,
        )


def evaluate(task, config, params, key, *, num=None, sampler=None, steps=None) -> dict:
    """Samples `num` (default: the task's eval.num_samples) with the eval sampler and scores them
    with the task's evaluators, under one progress bar; 'sample_seconds' is the sampling wall time
    (compilation included on the first call)."""
    names = task.evaluators()
    if not names:
        return {}
    num = num if num is not None else task.num_eval_samples()
    if num < 1:
        raise ValueError(f"the number of evaluation samples must be >= 1, got {num}")
    with tqdm(total=num + len(names), desc="eval", unit="sample", leave=False) as bar:
        start = time.perf_counter()
        samples = task.sample(
            params,
            key,
            num,
            sampler=sampler or config.eval.sampler,
            steps=steps or config.eval.steps,
            progress=bar.update,
        )
        seconds = time.perf_counter() - start
        context = evaluation.EvalContext(config, task, params, key)
        metrics = evaluation.evaluate(names, samples, context, progress=bar.update)
    return {**metrics, "sample_seconds": seconds}


def _every(period: int, step: int, last: bool) -> bool:
    """period > 0: every `period` steps and at the last step; 0: only at the last; < 0: never."""
    if period < 0:
        return False
    return last or (period > 0 and step % period == 0)


def _nonfinite_metrics(metrics: dict, training) -> str:
    """What in the logged metrics stops the run ('' if nothing): a non-finite loss or gradient norm
    ('stop'), or max_nonfinite_in_a_row skipped updates in a row ('skip')."""
    if training.on_nonfinite == "skip":
        limit = training.max_nonfinite_in_a_row
        return ", ".join(
            f"{name}={int(value)}"
            for name, value in metrics.items()
            if name.endswith("skipped_in_a_row") and value >= limit
        )
    return ", ".join(
        f"{name}={float(value)}"
        for name, value in metrics.items()
        if name.endswith(("loss", "grad_norm")) and not math.isfinite(float(value))
    )


def train(
    config: ml_collections.ConfigDict, workdir: str, *, config_change_ok: bool = False
) -> dict:
    """Trains (or resumes) the run `config` in `workdir`; returns the last logged metrics.

    Raises (before compiling the train step) WorkdirError for an unusable or busy workdir or a
    resume with a changed config (unless `config_change_ok`), CheckpointError when no checkpoint
    can be restored, and NonFiniteError when training diverges (the last good checkpoint is kept).
    """
    workdir_lib.check_workdir(workdir)
    with workdir_lib.WorkdirLock(workdir):
        run = Run(config, workdir)
        try:
            changes = {}
            if run.checkpointer.latest_step() is not None:
                changes = workdir_lib.check_resume_config(workdir, config, config_change_ok)
            try:
                state = run.restore()
            except CheckpointMismatchError as e:
                changed = workdir_lib.describe(changes) or "none"
                raise CheckpointMismatchError(f"{e}; config fields changed: {changed}") from None
            workdir_lib.write_config(workdir, config)
            return _train(run, state)
        finally:
            run.checkpointer.close()


def _train(run: Run, state) -> dict:
    config, workdir = run.config, run.workdir
    task, training = run.task, config.training
    start = int(state.step)
    if start:
        logging.info("resuming from step %d", start)
    train_step = make_train_step(task, run.optimizers, config, run.mesh)
    writer = MetricWriter(workdir, tensorboard=training.tensorboard, resume_step=start)
    batches = run.data(start)
    deadline = time.time() + 60 * training.time_limit_minutes
    last = {}
    window_start, window_time = start, time.perf_counter()
    cache, first_start = CacheCounter(), time.perf_counter()

    with (
        writer,
        TerminationFlag() as termination,
        tqdm(
            total=training.num_steps, initial=start, desc="train", unit="step", dynamic_ncols=True
        ) as progress,
    ):
        for step in range(start, training.num_steps):
            batch = put_batch(next(batches), run.mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(run.train_key, step))
            done = step + 1
            if step == start:  # one host sync: the compile (or cache load) of the step
                jax.block_until_ready(metrics)
                logging.info(
                    "first train step %.1f s (compiling or loading included); %s",
                    time.perf_counter() - first_start, cache.summary(),
                )  # fmt: skip
                cache.close()
            progress.update(1)
            out_of_time = training.time_limit_minutes > 0 and time.time() > deadline
            final = done == training.num_steps or out_of_time
            if _every(training.log_every, done, final):
                metrics = jax.device_get(metrics)
                now = time.perf_counter()  # the window since the last record (the first compiles)
                metrics["steps_per_sec"] = (done - window_start) / (now - window_time)
                metrics["examples_per_sec"] = metrics["steps_per_sec"] * training.batch_size
                window_start, window_time = done, now
                progress.set_postfix(loss=f"{float(metrics['loss']):.4f}")
                writer.write(done, metrics, "train")
                last.update(metrics)
                problem = _nonfinite_metrics(metrics, training)
                if problem:
                    raise NonFiniteError(
                        f"step {done}: {problem}; stopped, and {run.checkpointer.last_good()}. "
                        "Lower optim.lr, or set training.on_nonfinite='skip' to skip such updates"
                    )
            if _every(training.checkpoint_every, done, final) or termination.received:
                run.checkpointer.save(done, state)
            if termination.received:
                logging.warning("%s: saved checkpoint %d and stopped", termination.received, done)
                break
            if out_of_time:
                logging.warning("time limit of %g minutes reached", training.time_limit_minutes)
                writer.write(done, {"reason": "time_limit"}, "stop")
            sample_now = _every(training.sample_every, done, final)
            eval_now = _every(training.eval_every, done, final)
            if sample_now:
                samples = task.sample(
                    state.sampling_params(),
                    jax.random.fold_in(run.sample_key, done),
                    training.num_grid_samples,
                    batch_size=training.num_grid_samples,
                )
                task.save_samples(os.path.join(workdir, f"samples_{done:07d}.png"), samples)
            if eval_now:
                results = evaluate(
                    task, config, state.sampling_params(), jax.random.fold_in(run.eval_key, done)
                )
                writer.write(done, results, "eval")
                last.update(results)
            if sample_now or eval_now:
                save_curves_png(os.path.join(workdir, "curves.png"), read_metrics(workdir))
                window_start, window_time = done, time.perf_counter()
            if out_of_time:
                break
    cache.close()  # (a run that had no step left)
    if last:
        print(evaluation.metrics_table(last), flush=True)
    return last
