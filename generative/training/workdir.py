"""A run's directory: checked before anything compiles, held by one run at a time, and its
config.json compared with the config of a resumed run.

- `check_workdir`: the path is (or can be made) a writable directory.
- `WorkdirLock`: an advisory lock (fcntl.flock on `.lock`) held for the run's lifetime; a second run
  on the same workdir is refused at once with the first one's process id. The kernel drops the lock
  when its process dies, so a killed run leaves no stale lock behind.
- `check_resume_config`: a run resumed from a checkpoint must have the config it was trained with;
  fields that only steer logging, pictures, evaluation and stopping may change (logged), others are
  refused (naming them) unless the user says `config_change_ok`.
- `write_config`: config.json, written atomically and only once the checkpoint has been restored,
  so a refused resume leaves the run's config.json as it was.
"""

import fcntl
import json
import os

import ml_collections
from absl import logging

from generative.training.errors import WorkdirError

CONFIG_FILE = "config.json"
# Fields that do not change what is trained: a resume may change them freely.
RUN_CONTROL = (
    "training.time_limit_minutes",
    "training.tensorboard",
    "training.log_every",
    "training.sample_every",
    "training.eval_every",
    "training.checkpoint_every",
    "training.keep_checkpoints",
    "training.num_grid_samples",
    "training.init_from",  # read only at a fresh start
    "training.init_from_ema",
    "model.impl",  # how the cores run (xla, pallas, ...), not what the network computes
    "eval.",
    "sample.",
)


def check_workdir(workdir: str) -> None:
    """Creates `workdir` if needed; WorkdirError unless it is a writable directory."""
    if not workdir:
        raise WorkdirError("--workdir is empty; give the directory for the run's files")
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise WorkdirError(f"workdir {workdir!r} is a file, not a directory")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise WorkdirError(f"workdir {workdir!r} cannot be created: {e.strerror}") from None
    if not os.access(workdir, os.W_OK | os.X_OK):
        raise WorkdirError(f"workdir {workdir!r} is not writable")


class WorkdirLock:
    """Holds an exclusive advisory lock on `workdir/.lock` (which records the holder's pid) while
    entered; WorkdirError if another process holds it."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".lock")
        self._file = None

    def __enter__(self):
        file = open(self.path, "a+")  # noqa: SIM115 (held until __exit__)
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            file.seek(0)
            holder = file.read().strip() or "unknown"
            file.close()
            raise WorkdirError(
                f"workdir {os.path.dirname(self.path)!r} is in use by another run (process "
                f"{holder}); wait for it to end or give another --workdir"
            ) from None
        file.truncate(0)
        file.write(str(os.getpid()))
        file.flush()
        self._file = file
        return self

    def __exit__(self, *exc):
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()
        return False


def read_config(workdir: str) -> ml_collections.ConfigDict:
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        raise WorkdirError(f"{workdir!r} holds no {CONFIG_FILE}; train there first")
    with open(path) as f:
        return ml_collections.ConfigDict(json.load(f))


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
    path = os.path.join(workdir, CONFIG_FILE)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(path + ".tmp", path)


def _flat(tree, prefix="") -> dict:
    if not isinstance(tree, dict):
        return {prefix[:-1]: tree}
    out = {}
    for name, value in tree.items():
        out.update(_flat(value, f"{prefix}{name}."))
    return out


def config_changes(old: dict, new: dict) -> dict:
    """{dotted field: (old value, new value)} of the fields that differ (missing: '<absent>')."""
    old, new = _flat(old), _flat(new)
    return {
        name: (old.get(name, "<absent>"), new.get(name, "<absent>"))
        for name in sorted(set(old) | set(new))
        if old.get(name, "<absent>") != new.get(name, "<absent>")
    }


def training_changes(changes: dict) -> dict:
    """The entries of config_changes that change what is trained (not RUN_CONTROL fields)."""
    return {name: change for name, change in changes.items() if not name.startswith(RUN_CONTROL)}


def describe(changes: dict) -> str:
    return ", ".join(f"{name} {old!r} -> {new!r}" for name, (old, new) in changes.items())


def check_resume_config(
    workdir: str, config: ml_collections.ConfigDict, config_change_ok: bool = False
) -> dict:
    """The changes of `config` from the workdir's config.json (none if it has none); WorkdirError
    if any changes what is trained and `config_change_ok` is False."""
    path = os.path.join(workdir, CONFIG_FILE)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        old = json.load(f)
    changes = config_changes(old, json.loads(config.to_json_best_effort()))
    refused = training_changes(changes)
    if refused and not config_change_ok:
        raise WorkdirError(
            f"the config differs from the one this run in {workdir!r} was trained with: "
            f"{describe(refused)}; resume with --config_change_ok to train on with it, or give "
            "another --workdir"
        )
    if changes:
        logging.warning("resuming with config changes: %s", describe(changes))
    return changes
