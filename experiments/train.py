"""Train a model: `python -m experiments.train --config configs/NAME.py --workdir DIR`.

Any config field can be overridden on the command line (`--config.optim.lr=2e-4`). Re-running the
same command resumes from the newest checkpoint in DIR; SIGTERM and Ctrl-C checkpoint and stop.
Every config (images, points, graphs) runs through the one loop, generative.training.loop.
"""

from absl import app, flags
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost",
    False,
    "Call jax.distributed.initialize() first (multi-host GPU clusters and TPU pod slices; run the "
    "same command on every host).",
)


def run(config, workdir: str) -> dict:
    """Trains the run `config` in `workdir` (any task) and returns its last metrics."""
    from generative.training.loop import train

    return train(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MULTIHOST.value:
        import jax

        jax.distributed.initialize()
    run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    from generative.training.config_overrides import exit_on_bad_config_overrides

    exit_on_bad_config_overrides()  # unknown --config.FIELD or missing file: one line, exit 2
    app.run(main)
