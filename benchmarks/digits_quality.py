"""Quality and speed of the main job (configs/digits_edm.py): trains it (or reuses a trained
workdir), then scores 1,000 EMA samples (Heun, 18 levels) with the project's digit classifier.

    python -m benchmarks.digits_quality --workdir workdirs/digits_edm

Prints one table: wall time of the training call, training steps/s and images/s (median over the
logged windows after the first, which includes compilation), sampling samples/s (1,000 samples,
Heun 18 levels = 35 network evaluations each, after a compiling warm-up call), the
classifier-feature Fréchet distance to the test split next to the train-vs-test floor, the share of
confident samples, the class histogram, and whether the target (distance <= 3x floor, >= 90%
confident, every class 5-15%) is met.
"""

import json
import os
import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from generative.training.checkpoint import load_run
from generative.training.evaluation import digit_metrics
from generative.training.loop import train
from generative.training.writers import read_metrics

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/digits_edm.py", "Experiment config (default: the main job)."
)
_WORKDIR = flags.DEFINE_string("workdir", "workdirs/digits_edm", "Run directory.")
_NUM = flags.DEFINE_integer("num", 1000, "Samples scored.")


def main(argv):
    del argv
    config, workdir = _CONFIG.value, _WORKDIR.value
    start = time.perf_counter()
    train(config, workdir)  # resumes / returns at once when the run is complete
    train_wall = time.perf_counter() - start

    records = [r for r in read_metrics(workdir) if r["kind"] == "train"]
    steps_per_sec = float(np.median([r["steps_per_sec"] for r in records[1:]] or [np.nan]))

    run = load_run(workdir)
    state = run.state

    def sample(key):
        return run.task.sample(run.params, key, _NUM.value, sampler="heun", steps=18)

    key = jax.random.PRNGKey(2026)
    sample(jax.random.fold_in(key, 1))  # compile
    start = time.perf_counter()
    samples = sample(key)
    samples_per_sec = _NUM.value / (time.perf_counter() - start)
    metrics = digit_metrics(samples)
    histogram = np.asarray(metrics["class_histogram"])
    met = (
        metrics["fd"] <= 3 * metrics["fd_floor"]
        and metrics["confident"] >= 0.9
        and histogram.min() >= 0.05
        and histogram.max() <= 0.15
    )
    rows = [
        ("training steps", int(state.step)),
        ("training wall time this call (s)", f"{train_wall:.0f}"),
        ("training steps/s", f"{steps_per_sec:.2f}"),
        ("training images/s", f"{steps_per_sec * config.training.batch_size:.0f}"),
        ("sampling samples/s (heun, 18 levels)", f"{samples_per_sec:.1f}"),
        ("Fréchet distance, samples vs test", f"{metrics['fd']:.2f}"),
        ("Fréchet distance, train vs test (floor)", f"{metrics['fd_floor']:.2f}"),
        ("ratio (target <= 3)", f"{metrics['fd_ratio']:.2f}"),
        ("confident > 0.9 (target >= 90%)", f"{100 * metrics['confident']:.1f}%"),
        ("class shares 0-9 (target 5-15%)", " ".join(f"{100 * h:.1f}" for h in histogram)),
        ("precision / recall", f"{metrics['precision']:.3f} / {metrics['recall']:.3f}"),
        ("density / coverage", f"{metrics['density']:.3f} / {metrics['coverage']:.3f}"),
        ("target met", "yes" if met else "no"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'quantity':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    with open(os.path.join(workdir, "digits_quality.json"), "w") as f:
        json.dump(dict(metrics, samples_per_sec=samples_per_sec, steps_per_sec=steps_per_sec), f)


if __name__ == "__main__":
    app.run(main)
