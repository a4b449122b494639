"""Sample the EMA parameters of a trained run (any task) and save a PNG (and optionally the raw
samples: .npy for arrays, JSON edge lists for graphs):

python -m experiments.sample --workdir DIR --sampler heun --steps 18 --num 64 --out FILE.png
"""

import json

import jax
import numpy as np
from absl import app, flags, logging

from generative.training import compilation_cache
from generative.training.checkpoint import load_run
from generative.training.errors import report_expected_errors

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_SAMPLER = flags.DEFINE_string("sampler", None, "Core sampler name (default: the config's).")
_STEPS = flags.DEFINE_integer(
    "steps", None, "Number of noise levels (default: the config's).", lower_bound=1
)
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.", lower_bound=1)
_OUT = flags.DEFINE_string("out", "samples.png", "Output PNG file.")
_RAW = flags.DEFINE_string("npy", None, "Optional file for the raw samples (.npy, graphs: JSON).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEP = flags.DEFINE_integer("checkpoint", None, "Checkpoint step (default: the latest).")


@report_expected_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    compilation_cache.enable()  # before anything compiles
    run = load_run(_WORKDIR.value, _STEP.value)
    samples = run.task.sample(
        run.params, jax.random.PRNGKey(_SEED.value), _NUM.value, sampler=_SAMPLER.value,
        steps=_STEPS.value,
    )  # fmt: skip
    run.task.save_samples(_OUT.value, samples)
    if _RAW.value and isinstance(samples, np.ndarray):
        np.save(_RAW.value, samples)
    elif _RAW.value:
        with open(_RAW.value, "w") as f:
            json.dump(
                [{"n": len(g), "edges": [list(map(int, e)) for e in g.edges]} for g in samples], f
            )
    logging.info("wrote %d samples of step %d to %s", len(samples), int(run.state.step), _OUT.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
