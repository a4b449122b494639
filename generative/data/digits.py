"""scikit-learn's bundled 8x8 handwritten digits (1,797 images, no download) with a fixed split.

Pixels take the integer values 0..16 and are mapped to [-1, 1] by x / 8 - 1; images are NHWC [N, 8,
8, 1]. The split is stratified and does not depend on any training seed: within each class c (in
sklearn's order) the n_c indices are permuted by ``numpy.random.default_rng(SPLIT_SEED)`` (one
generator, classes taken in order 0..9) and the first round(TEST_FRACTION * n_c) go to the test
split. This gives 359 test and 1,438 train images, 35 to 37 of each class in the test split.
"""

import functools

import numpy as np

SPLIT_SEED = 0
TEST_FRACTION = 0.2
SPLITS = ("train", "test")
NUM_CLASSES = 10
SHAPE = (8, 8, 1)


@functools.cache
def _split_indices() -> dict[str, np.ndarray]:
    from sklearn.datasets import load_digits

    labels = load_digits().target
    rng = np.random.default_rng(SPLIT_SEED)
    test = []
    for c in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(labels == c))
        test.append(members[: round(TEST_FRACTION * members.size)])
    test = np.sort(np.concatenate(test))
    return {"train": np.setdiff1d(np.arange(labels.size), test), "test": test}


@functools.cache
def _load(split: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    indices = _split_indices()[split]
    images = (digits.images[indices] / 8.0 - 1.0).astype(np.float32)[..., None]
    return images, digits.target[indices].astype(np.int32)


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """The whole split: (images float32 [N, 8, 8, 1] in [-1, 1], labels int32 [N]), as copies."""
    if split not in SPLITS:
        raise ValueError(f"digits split must be one of {SPLITS}, got {split!r}")
    images, labels = _load(split)
    return images.copy(), labels.copy()
