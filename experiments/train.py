"""Train a model: `python -m experiments.train --config configs/NAME.py --workdir DIR`.

Any config field can be overridden on the command line (`--config.optim.lr=2e-4`). Re-running the
same command resumes from the newest checkpoint in DIR. Configs with experiment='graph' go to
generative.graphs.experiment.
"""

from absl import app, flags, logging
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
    """Trains the experiment `config` in `workdir` and returns its last metrics."""
    if config.get("experiment", "diffusion") == "graph":
        from generative.graphs import experiment

        return experiment.run(config, workdir)
    from generative.training.loop import train

    return train(config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _MULTIHOST.value:
        import jax

        jax.distributed.initialize()
    metrics = run(_CONFIG.value, _WORKDIR.value)
    logging.info("final metrics: %s", metrics)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)
