"""The train loop: build everything from a config, resume from the latest checkpoint, train with a
progress bar, and every few steps log metrics (JSON lines, TensorBoard), write a PNG of EMA samples,
evaluate and checkpoint.

Determinism: step k uses the key fold_in(train_key, k) and the k-th batch of the data stream, which
is a pure function of (config.data, config.seed, batch size, host); a resumed run starts the stream
at batch k (create_dataset's start_step). So train, kill, resume reproduces the uninterrupted run
(bitwise on CPU).
"""

import os
import time

import jax
import ml_collections
import numpy as np
from absl import logging
from tqdm import tqdm

from generative.data import create_dataset, dataset_info
from generative.losses import make_loss
from generative.models import create_model
from generative.training import evaluation
from generative.training.checkpoint import Checkpointer, TerminationFlag
from generative.training.config_checks import check_config
from generative.training.optim import make_optimizer
from generative.training.sampling import make_sample_fn
from generative.training.step import init_state, make_mesh, make_train_step, put_batch
from generative.training.visualize import save_png
from generative.training.writers import MetricWriter


class Experiment:
    """The pieces of one run built from `config`: model, loss, optimiser, mesh, data, samplers,
    checkpoints.

    Everything that can reject a bad config (field checks, unknown names, batch/device mismatch)
    runs in the constructor, before any compilation.
    """

    def __init__(self, config: ml_collections.ConfigDict, workdir: str):
        self.config, self.workdir = config, workdir
        self.mesh = make_mesh()
        check_config(config, self.mesh.size)
        self.info = dataset_info(config.data)
        num_classes = config.model.get("num_classes", 0) or 0
        if num_classes and num_classes != self.info["num_classes"]:
            raise ValueError(
                f"model.num_classes={num_classes} but the data set has "
                f"{self.info['num_classes']} classes"
            )
        self.model = create_model(config.model)
        self.loss_fn = make_loss(config)
        self.optimizer = make_optimizer(config.optim, config.training.num_steps)
        self.checkpointer = Checkpointer(
            os.path.join(workdir, "checkpoints"), config.training.keep_checkpoints
        )
        root = jax.random.PRNGKey(config.seed)
        self.init_key, self.train_key, self.sample_key, self.eval_key = jax.random.split(root, 4)

    def initial_state(self):
        example = {"x": np.zeros((1, *self.info["shape"]), np.float32)}
        num_classes = self.config.model.get("num_classes", 0) or 0
        return init_state(
            self.model, self.optimizer, example, self.init_key, self.mesh, num_classes
        )

    def restore(self, step: int | None = None):
        """The checkpointed state (latest by default), or a fresh one when there is no
        checkpoint."""
        state = self.initial_state()
        restored = self.checkpointer.restore(state, step)
        return state if restored is None else restored

    def data(self, start_step: int):
        """This host's batches from step `start_step` on."""
        process_count = jax.process_count()
        return create_dataset(
            self.config.data,
            split="train",
            batch_size=self.config.training.batch_size // process_count,
            seed=self.config.seed,
            process_index=jax.process_index(),
            process_count=process_count,
            start_step=start_step,
        )

    def sample_fn(self, sampler=None, steps=None):
        return make_sample_fn(
            self.model, self.config, shape=self.info["shape"], sampler=sampler, steps=steps
        )


def train(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Trains (or resumes) the experiment `config` in `workdir`; returns the last logged metrics."""
    experiment = Experiment(config, workdir)
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))

    training = config.training
    state = experiment.restore()
    start = int(state.step)
    if start:
        logging.info("resuming from step %d", start)
    train_step = make_train_step(
        experiment.model, experiment.loss_fn, experiment.optimizer, config, experiment.mesh
    )
    grid_fn = experiment.sample_fn()
    eval_fn = experiment.sample_fn(config.eval.sampler, config.eval.steps)
    writer = MetricWriter(workdir, tensorboard=config.get("tensorboard", True))
    batches = experiment.data(start)
    last = {}
    window_start, window_time = start, time.perf_counter()

    def every(period, step):
        """period > 0: every `period` steps and at the end; 0: only at the end; < 0: never."""
        if period < 0:
            return False
        return step == training.num_steps or (period > 0 and step % period == 0)

    with (
        TerminationFlag() as termination,
        tqdm(
            total=training.num_steps, initial=start, desc="train", unit="step", dynamic_ncols=True
        ) as progress,
    ):
        for step in range(start, training.num_steps):
            batch = put_batch(next(batches), experiment.mesh)
            state, metrics = train_step(
                state, batch, jax.random.fold_in(experiment.train_key, step)
            )
            done = step + 1
            progress.update(1)
            if every(training.log_every, done):
                metrics = jax.device_get(metrics)
                now = time.perf_counter()  # the window since the last record (the first compiles)
                metrics["steps_per_sec"] = (done - window_start) / (now - window_time)
                metrics["images_per_sec"] = metrics["steps_per_sec"] * training.batch_size
                window_start, window_time = done, now
                progress.set_postfix(loss=f"{float(metrics['loss']):.4f}")
                writer.write(done, metrics, "train")
                last.update(metrics)
            if every(training.checkpoint_every, done) or termination.received:
                experiment.checkpointer.save(done, state)
            if termination.received:
                logging.warning("SIGTERM: saved checkpoint %d and stopped", done)
                break
            if every(training.sample_every, done):
                grid = grid_fn(
                    state.ema_params,
                    jax.random.fold_in(experiment.sample_key, done),
                    training.num_grid_samples,
                )
                save_png(os.path.join(workdir, f"samples_{done:07d}.png"), grid)
                window_start, window_time = done, time.perf_counter()
            if every(training.eval_every, done):
                samples = eval_fn(
                    state.ema_params,
                    jax.random.fold_in(experiment.eval_key, done),
                    config.eval.num_samples,
                )
                results = evaluation.evaluate_samples(config, samples, experiment.eval_key)
                writer.write(done, results, "eval")
                last.update(results)
                window_start, window_time = done, time.perf_counter()
    writer.close()
    experiment.checkpointer.close()
    return last
