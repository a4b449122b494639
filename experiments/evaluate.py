"""Metrics of a trained run's EMA samples (the evaluators of its config), printed as JSON and
written to DIR/eval_<step>.json:

    python -m experiments.evaluate --workdir DIR [--num 1000 --sampler heun --steps 18]
"""

import json
import os

import jax
from absl import app, flags

from generative.training import compilation_cache
from generative.training.checkpoint import load_run
from generative.training.errors import report_expected_errors
from generative.training.loop import evaluate

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_NUM = flags.DEFINE_integer(
    "num", None, "Number of samples (default: config.eval.num_samples).", lower_bound=1
)
_SAMPLER = flags.DEFINE_string("sampler", None, "Core sampler name (default: config.eval.sampler).")
_STEPS = flags.DEFINE_integer(
    "steps", None, "Number of noise levels (default: config.eval.steps).", lower_bound=1
)
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEP = flags.DEFINE_integer("checkpoint", None, "Checkpoint step (default: the latest).")


@report_expected_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    compilation_cache.enable()  # before anything compiles
    run = load_run(_WORKDIR.value, _STEP.value)
    key = jax.random.PRNGKey(_SEED.value)
    metrics = evaluate(
        run.task, run.config, run.params, key, num=_NUM.value, sampler=_SAMPLER.value,
        steps=_STEPS.value,
    )  # fmt: skip
    metrics = dict(step=int(run.state.step), **metrics)
    with open(os.path.join(_WORKDIR.value, f"eval_{int(run.state.step):07d}.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
