"""TensorFlow Datasets image sets (mnist, fashion_mnist, cifar10, ...) read by random access.

``tfds.data_source`` opens the prepared ArrayRecord files (``tfds build NAME`` or a ``data_dir``
that holds them; nothing is downloaded here). Shuffling and per-host sharding are index arithmetic
on top of it (generative.data.pipeline), so the order is a pure function of (seed, process_index,
process_count). Images are uint8 NHWC, mapped to float32 in [-1, 1] by x / 127.5 - 1; labels are
int32 (0 when the set has no label feature).
"""

from collections.abc import Iterator

import numpy as np

IMAGE_KEY = "image"
LABEL_KEY = "label"


def _builder_info(tfds_name: str, data_dir: str | None):
    import tensorflow_datasets as tfds

    try:
        return tfds.builder(tfds_name, data_dir=data_dir).info
    except tfds.core.DatasetNotFoundError as error:
        raise ValueError(f"unknown tfds_name={tfds_name!r} (a tensorflow-datasets name)") from error


def info(tfds_name: str, data_dir: str | None = None) -> dict:
    """shape (H, W, C) and num_classes (0 without a label feature) from the builder's features."""
    features = _builder_info(tfds_name, data_dir).features
    if IMAGE_KEY not in features:
        raise ValueError(f"tfds set {tfds_name!r} has no {IMAGE_KEY!r} feature: {list(features)}")
    num_classes = features[LABEL_KEY].num_classes if LABEL_KEY in features else 0
    return dict(shape=tuple(features[IMAGE_KEY].shape), num_classes=int(num_classes))


def to_model_range(images: np.ndarray) -> np.ndarray:
    """uint8 [0, 255] -> float32 [-1, 1]."""
    return images.astype(np.float32) / 127.5 - 1.0


def create_dataset(
    tfds_name: str,
    *,
    split: str,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    random_flip: bool = False,
    data_dir: str | None = None,
    start_step: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless {'x': float32 [B, H, W, C], 'label': int32 [B]} batches of this host's shard."""
    import tensorflow_datasets as tfds

    from generative.data import pipeline

    _builder_info(tfds_name, data_dir)  # a clear error for unknown names
    try:
        source = tfds.data_source(tfds_name, split=split, data_dir=data_dir, download=False)
    except (KeyError, FileNotFoundError, NotImplementedError) as error:
        raise ValueError(
            f"tfds set {tfds_name!r} split {split!r} is not prepared (as ArrayRecord files) under "
            f"data_dir={data_dir!r}; prepare it once with `tfds build {tfds_name} "
            f"--file_format=array_record` (downloads) or point data_dir at it. tfds: {error}"
        ) from error

    def fetch(indices: np.ndarray) -> dict[str, np.ndarray]:
        # One record at a time: ``__getitems__`` is not supported under tfds.testing.mock_data.
        records = [source[int(i)] for i in indices]
        images = np.stack([np.asarray(r[IMAGE_KEY]) for r in records])
        labels = np.array([r.get(LABEL_KEY, 0) for r in records], np.int32)
        return {"x": to_model_range(images), "label": labels}

    return pipeline.batches(
        fetch,
        len(source),
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        flip=random_flip,
        start_step=start_step,
    )
