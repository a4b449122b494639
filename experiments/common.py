"""What experiments/sample.py and experiments/evaluate.py share: the trained run of a workdir."""

import json
import os

import ml_collections

from generative.training.loop import Experiment


def load_run(workdir: str, step: int | None = None):
    """(experiment, state) of the run in `workdir` (its config.json), at checkpoint `step` (default:
    latest)."""
    config_path = os.path.join(workdir, "config.json")
    if not os.path.exists(config_path):
        raise ValueError(f"{workdir!r} holds no config.json; train there first (experiments.train)")
    with open(config_path) as f:
        config = ml_collections.ConfigDict(json.load(f))
    experiment = Experiment(config, workdir)
    if experiment.checkpointer.latest_step() is None:
        raise ValueError(f"{workdir!r} holds no checkpoint yet")
    return experiment, experiment.restore(step)
