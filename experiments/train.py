"""Train a model: `python -m experiments.train --config configs/NAME.py --workdir DIR`.

Any config field can be overridden on the command line (`--config.optim.lr=2e-4`). Re-running the
same command resumes from the newest checkpoint in DIR (a changed config needs --config_change_ok);
SIGTERM and Ctrl-C checkpoint and stop. Expected failures (a bad config, a busy workdir, a diverged
run) print one line and exit 1; --debug shows their traceback.
Every config (images, points, graphs) runs through the one loop, generative.training.loop.
"""

from absl import app, flags
from ml_collections import config_flags

from generative.training import compilation_cache
from generative.training.errors import report_expected_errors

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and samples.")
_MULTIHOST = flags.DEFINE_bool(
    "multihost",
    False,
    "Call jax.distributed.initialize() first (multi-host GPU clusters and TPU pod slices; run the "
    "same command on every host).",
)
_CONFIG_CHANGE_OK = flags.DEFINE_bool(
    "config_change_ok",
    False,
    "Resume even though the config differs from the one the run was trained with (the changed "
    "fields are logged).",
)


def run(config, workdir: str, config_change_ok: bool = False) -> dict:
    """Trains the run `config` in `workdir` (any task) and returns its last metrics."""
    from generative.training.loop import train

    return train(config, workdir, config_change_ok=config_change_ok)


@report_expected_errors
def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    compilation_cache.enable()  # before anything compiles
    if _MULTIHOST.value:
        import jax

        jax.distributed.initialize()
    run(_CONFIG.value, _WORKDIR.value, _CONFIG_CHANGE_OK.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    from generative.training.config_overrides import exit_on_bad_config_overrides

    exit_on_bad_config_overrides()  # unknown --config.FIELD or missing file: one line, exit 2
    app.run(main)
