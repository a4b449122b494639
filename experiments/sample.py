"""Sample the EMA parameters of a trained run with any core sampler and save a PNG (and optionally
.npy):

python -m experiments.sample --workdir DIR --sampler heun --steps 18 --num 64 --out FILE.png
"""

import jax
import numpy as np
from absl import app, flags, logging

from experiments.common import load_run
from generative.training.visualize import save_png

_WORKDIR = flags.DEFINE_string("workdir", None, "Directory of a trained run.")
_SAMPLER = flags.DEFINE_string("sampler", None, "Core sampler name (default: the config's).")
_STEPS = flags.DEFINE_integer("steps", None, "Number of noise levels (default: the config's).")
_NUM = flags.DEFINE_integer("num", 64, "Number of samples.")
_OUT = flags.DEFINE_string("out", "samples.png", "Output PNG file.")
_NPY = flags.DEFINE_string("npy", None, "Optional .npy file for the raw samples.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEP = flags.DEFINE_integer("checkpoint", None, "Checkpoint step (default: the latest).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    experiment, state = load_run(_WORKDIR.value, _STEP.value)
    sample_fn = experiment.sample_fn(_SAMPLER.value, _STEPS.value)
    samples = sample_fn(state.ema_params, jax.random.PRNGKey(_SEED.value), _NUM.value)
    save_png(_OUT.value, samples)
    if _NPY.value:
        np.save(_NPY.value, samples)
    logging.info("wrote %d samples of step %d to %s", len(samples), int(state.step), _OUT.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["workdir"])
    app.run(main)
