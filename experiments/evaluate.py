"""Metrics of a trained run's EMA samples (generative.training.evaluation), printed as JSON and
written to DIR/eval_<step>.json:

    python -m experiments.evaluate --workdir DIR [--num 1000 --sampler heun --steps 18]
"""

import json
import os

import jax
from absl import app, flags

from experiments.common import load_run
from generative.training.evaluation import evaluate_samples

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_NUM = flags.DEFINE_integer("num", None, "Number of samples (default: config.eval.num_samples).")
_SAMPLER = flags.DEFINE_string("sampler", None, "Core sampler name (default: config.eval.sampler).")
_STEPS = flags.DEFINE_integer("steps", None, "Number of noise levels (default: config.eval.steps).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEP = flags.DEFINE_integer("checkpoint", None, "Checkpoint step (default: the latest).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    experiment, state = load_run(_WORKDIR.value, _STEP.value)
    config = experiment.config
    sample_fn = experiment.sample_fn(
        _SAMPLER.value or config.eval.sampler, _STEPS.value or config.eval.steps
    )
    key = jax.random.PRNGKey(_SEED.value)
    samples = sample_fn(state.ema_params, key, _NUM.value or config.eval.num_samples)
    metrics = dict(step=int(state.step), **evaluate_samples(config, samples, key))
    with open(os.path.join(_WORKDIR.value, f"eval_{int(state.step):07d}.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
