"""Data: endless, deterministic, host-sharded batches for every data set the project trains on.

``data_config`` (an ml_collections ConfigDict or a dict) has a ``name`` in ``NAMES``:

* ``moons``, ``swiss_roll``, ``eight_gaussians``, ``checkerboard``: 2-D toy sets
  (generative.data.synthetic); batch t is drawn from ``numpy.random.default_rng([seed, split,
  process_index, t])`` (split: train 0, test 1), so hosts draw independent streams; label = mode
  index (0 for the swiss roll).
* ``digits``: scikit-learn's 8x8 digits with a fixed stratified split (generative.data.digits),
  shuffled and sharded per epoch (generative.data.pipeline).
* ``tfds``: ``tfds_name`` (e.g. 'mnist'), optional ``random_flip`` (default False) and ``data_dir``
  (default None), read through ``tfds.data_source`` (generative.data.tfds_source).

``batch_size`` is the per-host batch: each of the ``process_count`` hosts gets its own
``batch_size`` examples per step (the global batch is ``batch_size * process_count``).
"""

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from generative.data import digits, pipeline, synthetic, tfds_source

NAMES = (*synthetic.NAMES, "digits", "tfds")
_SYNTHETIC_SPLITS = ("train", "test")


def _field(data_config: Mapping[str, Any], name: str, known=None, default=...):
    if name in data_config:
        value = data_config[name]
    elif default is not ...:
        return default
    else:
        hint = f"; known values: {known}" if known else ""
        raise ValueError(f"data config is missing the field {name!r}{hint}")
    if known is not None and value not in known:
        raise ValueError(f"unknown data config {name}={value!r}; known values: {known}")
    return value


def dataset_info(data_config: Mapping[str, Any]) -> dict:
    """dict(shape=tuple per example, num_classes=int) of the configured data set."""
    name = _field(data_config, "name", NAMES)
    if name in synthetic.NAMES:
        return dict(shape=(2,), num_classes=synthetic.NUM_CLASSES[name])
    if name == "digits":
        return dict(shape=digits.SHAPE, num_classes=digits.NUM_CLASSES)
    return tfds_source.info(
        _field(data_config, "tfds_name"), _field(data_config, "data_dir", default=None)
    )


def _synthetic_batches(name, *, split, batch_size, seed, process_index, process_count, start_step):
    pipeline.check_sharding(batch_size, process_index, process_count)
    pipeline.check_start_step(start_step)
    if split not in _SYNTHETIC_SPLITS:
        raise ValueError(f"split must be one of {_SYNTHETIC_SPLITS} for {name!r}, got {split!r}")
    stream_id = [seed, _SYNTHETIC_SPLITS.index(split), process_index]

    def stream():
        for step in itertools.count(start_step):
            x, label = synthetic.sample(name, np.random.default_rng([*stream_id, step]), batch_size)
            yield {"x": x, "label": label}

    return stream()


def create_dataset(
    data_config: Mapping[str, Any],
    *,
    split: str,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless iterator of batches {'x': float32 [batch_size, ...], 'label': int32 [batch_size]}.

    The stream is a pure function of its arguments (config, split, batch size, seed, host index and
    host count). ``start_step`` starts at that batch directly (for resuming): the result equals
    ``itertools.islice(create_dataset(...), start_step, None)`` without drawing the skipped batches.
    Bad names, splits or sizes raise ValueError here, before the first batch.
    """
    name = _field(data_config, "name", NAMES)
    if name in synthetic.NAMES:
        return _synthetic_batches(
            name,
            split=split,
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start_step=start_step,
        )
    if name == "digits":
        images, labels = digits.load_split(split)
        return pipeline.batches(
            lambda i: {"x": images[i], "label": labels[i]},
            len(labels),
            batch_size=batch_size,
            seed=seed,
            process_index=process_index,
            process_count=process_count,
            start_step=start_step,
        )
    return tfds_source.create_dataset(
        _field(data_config, "tfds_name"),
        split=split,
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        random_flip=bool(_field(data_config, "random_flip", default=False)),
        data_dir=_field(data_config, "data_dir", default=None),
        start_step=start_step,
    )
