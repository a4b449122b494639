"""Orbax checkpoints of the TrainState: keep the newest N, atomic writes, resume from the latest,
save on SIGTERM.

Orbax writes each step into a temporary directory and renames it when complete, so a run killed
mid-save leaves the previous checkpoint intact and `latest_step` never returns a partial one.
"""

import os
import signal

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores TrainStates under `directory` (kept: the newest `max_to_keep`)."""

    def __init__(self, directory: str, max_to_keep: int = 3):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.manager = ocp.CheckpointManager(
            os.path.abspath(directory),
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state) -> None:
        """Saves `state` as checkpoint `step` and waits until it is on disk (no-op if it already
        exists)."""
        if step in self.manager.all_steps():
            return
        self.manager.save(step, args=ocp.args.StandardSave(state))
        self.manager.wait_until_finished()

    def restore(self, like, step: int | None = None):
        """The checkpoint `step` (default: the latest) with the structure, dtypes and shardings of
        `like`, or None when there is none."""
        step = self.latest_step() if step is None else step
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        return self.manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


class TerminationFlag:
    """Records SIGTERM (e.g. a preempted TPU VM or a cluster's job end) so the loop can checkpoint
    and stop at the next step boundary instead of dying mid-step. Restores the previous handler on
    exit."""

    def __init__(self):
        self.received = False
        self._previous = None

    def _handle(self, signum, frame):
        del signum, frame
        self.received = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: signals cannot be caught here
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False
