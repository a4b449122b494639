"""The one train loop: any task (generative.training.task), one checkpoint path, one EMA rule.

`train(config, workdir)` builds the run, resumes from the newest checkpoint, trains with a progress
bar and every few steps logs metrics (JSON lines, optional TensorBoard), pictures EMA samples,
evaluates (with its own progress bar), checkpoints, and plots the training curves (curves.png).
SIGTERM and Ctrl-C checkpoint and stop at the next step boundary; training.time_limit_minutes
stops early as if the last step were reached (checkpoint, pictures, final evaluation).

Determinism: step k uses the key fold_in(train_key, k) and the k-th batch of the task's data
stream, a pure function of (config, step, host); a resumed run starts the stream at batch k. So
train, kill, resume reproduces the uninterrupted run (bitwise on CPU).
"""

import os
import time

import jax
import ml_collections
from absl import logging
from tqdm import tqdm

from generative.training import evaluation
from generative.training.checkpoint import Checkpointer, TerminationFlag, restore_matching
from generative.training.config_checks import check_config, check_ema
from generative.training.optim import make_optimizer
from generative.training.step import init_state, make_mesh, make_train_step, put_batch
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
        self.checkpointer = Checkpointer(
            os.path.join(workdir, "checkpoints"), config.training.keep_checkpoints
        )
        root = jax.random.PRNGKey(config.seed)
        self.init_key, self.train_key, self.sample_key, self.eval_key = jax.random.split(root, 4)

    def initial_state(self):
        state = init_state(self.task, self.optimizers, self.init_key, self.mesh)
        source = self.config.training.init_from
        if source:
            saved = Checkpointer(os.path.join(source, "checkpoints")).restore_raw()
            state = restore_matching(state, saved)
        return state

    def restore(self, step: int | None = None):
        """The checkpointed state (latest by default), or a fresh one when there is none."""
        state = self.initial_state()
        restored = self.checkpointer.restore(state, step)
        return state if restored is None else restored

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


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) the run `config` in `workdir`; returns the last logged metrics."""
    run = Run(config, workdir)
    task, training = run.task, config.training
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    state = run.restore()
    start = int(state.step)
    if start:
        logging.info("resuming from step %d", start)
    train_step = make_train_step(task, run.optimizers, config, run.mesh)
    writer = MetricWriter(workdir, tensorboard=training.tensorboard)
    batches = run.data(start)
    deadline = time.time() + 60 * training.time_limit_minutes
    last = {}
    window_start, window_time = start, time.perf_counter()

    with (
        TerminationFlag() as termination,
        tqdm(
            total=training.num_steps, initial=start, desc="train", unit="step", dynamic_ncols=True
        ) as progress,
    ):
        for step in range(start, training.num_steps):
            batch = put_batch(next(batches), run.mesh)
            state, metrics = train_step(state, batch, jax.random.fold_in(run.train_key, step))
            done = step + 1
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
    writer.close()
    run.checkpointer.close()
    if last:
        print(evaluation.metrics_table(last), flush=True)
    return last
