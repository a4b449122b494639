"""Metric logs: one JSON object per line in `metrics.jsonl`, and TensorBoard summaries when the
`tensorboard` package is installed (it is optional; without it only the JSON lines are written).

A resumed run first cuts metrics.jsonl back to the restored step, so every step is recorded once
however often the run was killed."""

import json
import math
import os

import numpy as np
from absl import logging


def _plain(value):
    value = np.asarray(value)
    return value.item() if value.ndim == 0 else value.tolist()


class MetricWriter:
    """write(step, metrics, kind) appends {"step", "kind", **metrics} to workdir/metrics.jsonl
    (flushed at once, so a killed run keeps its log) and mirrors scalars to TensorBoard under
    `kind/name`."""

    def __init__(self, workdir: str, tensorboard: bool = True, resume_step: int = 0):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        _drop_records_after(self.path, resume_step)
        self._file = open(self.path, "a")  # noqa: SIM115 (kept open for the run; closed in close())
        self._tb = None
        if tensorboard:
            try:
                import tensorboard  # noqa: F401
                import tensorflow as tf
            except ImportError:
                logging.info("tensorboard is not installed: writing JSON lines only")
            else:
                self._tf = tf
                self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: dict, kind: str = "train") -> None:
        record = {"step": int(step), "kind": kind}
        record.update({k: _plain(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            with self._tb.as_default():
                for name, value in record.items():
                    if isinstance(value, float | int) and name != "step" and math.isfinite(value):
                        self._tf.summary.scalar(f"{kind}/{name}", value, step=int(step))
            self._tb.flush()

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _drop_records_after(path: str, step: int) -> None:
    """Rewrites `path` (atomically) without the records of steps after `step` and without a line
    cut short by a kill."""
    if not os.path.exists(path):
        return
    kept, dropped = [], 0
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                dropped += 1
                continue
            if record.get("step", 0) <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
            else:
                dropped += 1
    if dropped:
        with open(path + ".tmp", "w") as f:
            f.writelines(kept)
        os.replace(path + ".tmp", path)
        logging.info("metrics.jsonl: dropped %d records after step %d", dropped, step)


def read_metrics(workdir: str) -> list[dict]:
    """All records of workdir/metrics.jsonl, in order."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]
