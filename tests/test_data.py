"""Data: deterministic order, host sharding, digits split, synthetic moments, the tfds path."""

import itertools

import ml_collections
import numpy as np
import pytest
from scipy import integrate
from sklearn.datasets import load_digits

from generative.data import create_dataset, dataset_info, digits, pipeline, synthetic


def _config(**fields):
    return ml_collections.ConfigDict(fields)


def _take(iterator, n):
    return [next(iterator) for _ in range(n)]


def _sorted_rows(x):
    rows = x.reshape(len(x), -1)
    return rows[np.lexsort(rows.T[::-1])]


# ----------------------------------------------------------------------------------------- digits


def test_digits_split_sizes_range_and_partition():
    train_x, train_y = digits.load_split("train")
    test_x, test_y = digits.load_split("test")
    assert train_x.shape == (1438, 8, 8, 1) and test_x.shape == (359, 8, 8, 1)
    assert train_x.dtype == np.float32 and train_y.dtype == np.int32
    for x in (train_x, test_x):
        assert x.min() == -1.0 and x.max() == 1.0
        np.testing.assert_array_equal((x + 1.0) * 8.0, np.round((x + 1.0) * 8.0))  # 0..16 grid
    # Stratified: round(0.2 n_c) test images per class.
    class_sizes = np.bincount(load_digits().target)
    expected = [round(digits.TEST_FRACTION * n) for n in class_sizes]
    np.testing.assert_array_equal(np.bincount(test_y, minlength=10), expected)
    # Train and test partition the whole set (as multisets of image-label rows).
    full = load_digits()
    whole = np.concatenate([full.images.reshape(-1, 64) / 8.0 - 1.0, full.target[:, None]], 1)
    parts = np.concatenate(
        [
            np.concatenate([train_x.reshape(-1, 64), train_y[:, None]], 1),
            np.concatenate([test_x.reshape(-1, 64), test_y[:, None]], 1),
        ]
    )
    np.testing.assert_array_equal(_sorted_rows(parts), _sorted_rows(whole.astype(np.float32)))


def test_order_is_deterministic_from_seed_and_differs_across_seeds():
    for config in (_config(name="digits"), _config(name="moons")):
        first = _take(create_dataset(config, split="train", batch_size=32, seed=3), 3)
        again = _take(create_dataset(config, split="train", batch_size=32, seed=3), 3)
        other = _take(create_dataset(config, split="train", batch_size=32, seed=4), 3)
        for a, b in zip(first, again):
            np.testing.assert_array_equal(a["x"], b["x"])
            np.testing.assert_array_equal(a["label"], b["label"])
        assert not np.array_equal(first[0]["x"], other[0]["x"])
        assert first[0]["x"].dtype == np.float32 and first[0]["label"].dtype == np.int32


def test_shard_indices_are_disjoint_and_cover_each_epoch():
    num, count = 1438, 3
    for epoch in (0, 1):
        shards = [
            pipeline.shard_indices(num, seed=0, epoch=epoch, process_index=i, process_count=count)
            for i in range(count)
        ]
        assert all(len(s) == num // count for s in shards)
        union = np.concatenate(shards)
        assert len(np.unique(union)) == len(union) == num - num % count
    epoch0 = pipeline.shard_indices(num, seed=0, epoch=0, process_index=0, process_count=1)
    epoch1 = pipeline.shard_indices(num, seed=0, epoch=1, process_index=0, process_count=1)
    assert not np.array_equal(epoch0, epoch1)


def test_digits_host_streams_are_their_shards_epoch_after_epoch():
    images, _ = digits.load_split("train")
    count, batch = 2, 100  # 719 examples per host and epoch: batches straddle epochs
    for host in range(count):
        stream = create_dataset(
            _config(name="digits"),
            split="train",
            batch_size=batch,
            seed=7,
            process_index=host,
            process_count=count,
        )
        got = np.concatenate([b["x"] for b in _take(stream, 15)])
        expected = np.concatenate(
            [
                images[
                    pipeline.shard_indices(
                        1438, seed=7, epoch=e, process_index=host, process_count=count
                    )
                ]
                for e in range(3)
            ]
        )[: 15 * batch]
        np.testing.assert_array_equal(got, expected)


def test_start_step_equals_skipping_the_earlier_batches():
    for config in (_config(name="digits"), _config(name="checkerboard")):
        args = dict(split="train", batch_size=100, seed=2, process_index=1, process_count=2)
        skipped = list(itertools.islice(create_dataset(config, **args), 13, 17))
        started = _take(create_dataset(config, **args, start_step=13), 4)  # crosses epoch 1 -> 2
        for a, b in zip(skipped, started):
            np.testing.assert_array_equal(a["x"], b["x"])
            np.testing.assert_array_equal(a["label"], b["label"])
    with pytest.raises(ValueError, match="start_step"):
        create_dataset(_config(name="digits"), split="train", batch_size=4, seed=0, start_step=-1)


# -------------------------------------------------------------------------------------- synthetic


def _mean_and_cov_with_error(x):
    """Sample mean and covariance, and 5-sigma Monte-Carlo error bars for both."""
    n = len(x)
    mean = x.mean(0)
    centred = x - mean
    products = centred[:, :, None] * centred[:, None, :]
    cov = products.mean(0)
    return mean, cov, 5.0 * x.std(0) / np.sqrt(n), 5.0 * products.std(0) / np.sqrt(n)


def _raw_moments(curve, lo, hi, noise):
    """Exact mean and covariance of curve(t) + N(0, noise^2 I) for t ~ U[lo, hi], by quadrature."""

    def expect(f):
        return integrate.quad(f, lo, hi, limit=200)[0] / (hi - lo)

    mean = np.array([expect(lambda t, i=i: curve(t)[i]) for i in range(2)])
    second = np.array(
        [
            [expect(lambda t, i=i, j=j: curve(t)[i] * curve(t)[j]) for j in range(2)]
            for i in range(2)
        ]
    )
    return mean, second - np.outer(mean, mean) + noise**2 * np.eye(2)


def _standardised_cov(cov):
    std = np.sqrt(np.diag(cov))
    return cov / np.outer(std, std)


def test_synthetic_sets_are_standardised_and_match_their_definitions():
    rng = np.random.default_rng(0)
    num = 200_000
    # Raw recipes' population correlations by quadrature, independent of the module's constants.
    _, swiss = _raw_moments(
        lambda t: (t * np.cos(t), t * np.sin(t)),
        1.5 * np.pi,
        4.5 * np.pi,
        synthetic.SWISS_ROLL_NOISE,
    )
    upper = _raw_moments(lambda t: (np.cos(t), np.sin(t)), 0, np.pi, 0.0)
    lower = _raw_moments(lambda t: (1 - np.cos(t), 0.5 - np.sin(t)), 0, np.pi, 0.0)
    moons_mean = (upper[0] + lower[0]) / 2
    moons = (
        (upper[1] + np.outer(upper[0], upper[0]) + lower[1] + np.outer(lower[0], lower[0])) / 2
        - np.outer(moons_mean, moons_mean)
        + synthetic.MOONS_NOISE**2 * np.eye(2)
    )
    target_cov = {
        "moons": _standardised_cov(moons),
        "swiss_roll": _standardised_cov(swiss),
        "eight_gaussians": np.eye(2),
        # Black cells (i + j even) of the 4 x 4 board: E[(i - 3/2)(j - 3/2)] = 1/4 in cell units,
        # over the marginal variance 4/3.
        "checkerboard": np.array([[1.0, 3 / 16], [3 / 16, 1.0]]),
    }
    for name in synthetic.NAMES:
        x, label = synthetic.sample(name, rng, num)
        assert x.shape == (num, 2) and x.dtype == np.float32 and label.dtype == np.int32
        assert set(np.unique(label)) == set(range(synthetic.NUM_CLASSES[name]))
        mean, cov, mean_err, cov_err = _mean_and_cov_with_error(x.astype(np.float64))
        assert np.all(np.abs(mean) < mean_err), (name, mean)
        assert np.all(np.abs(cov - target_cov[name]) < cov_err), (name, cov)


def test_eight_gaussians_modes_and_checkerboard_cells():
    rng = np.random.default_rng(1)
    x, label = synthetic.sample("eight_gaussians", rng, 100_000)
    offset = x - synthetic.eight_gaussians_centers()[label]
    sq = (offset.astype(np.float64) ** 2).sum(1)
    # |x - c|^2 / s^2 ~ chi^2_2: mean 2, std 2.
    expected = 2 * synthetic.EIGHT_GAUSSIANS_STD**2
    assert abs(sq.mean() - expected) < 5 * expected / np.sqrt(len(sq))
    np.testing.assert_allclose(
        np.linalg.norm(synthetic.eight_gaussians_centers(), axis=1), np.sqrt(2 * (1 - 0.01))
    )
    x, _ = synthetic.sample("checkerboard", rng, 10_000)
    cell = np.floor(x / (np.sqrt(3.0) / 2.0) + 2.0).astype(int)
    assert np.all((cell >= 0) & (cell < 4)) and np.all(cell.sum(1) % 2 == 0)


# ------------------------------------------------------------------------------- info and errors


def test_dataset_info():
    assert dataset_info(_config(name="digits")) == dict(shape=(8, 8, 1), num_classes=10)
    assert dataset_info({"name": "eight_gaussians"}) == dict(shape=(2,), num_classes=8)


@pytest.mark.parametrize(
    "config, kwargs, match",
    [
        (dict(name="cifar"), {}, "name='cifar'.*known values"),
        (dict(), {}, "missing the field 'name'.*digits"),
        (dict(name="tfds"), {}, "missing the field 'tfds_name'"),
        (dict(name="tfds", tfds_name="no_such_set"), {}, "unknown tfds_name='no_such_set'"),
        (dict(name="digits"), dict(split="validation"), "split"),
        (dict(name="moons"), dict(split="val"), "split"),
        (dict(name="digits"), dict(batch_size=0), "batch_size"),
        (dict(name="moons"), dict(process_index=2, process_count=2), "process_index"),
    ],
)
def test_bad_configs_raise_before_the_first_batch(config, kwargs, match):
    args = dict(split="train", batch_size=4, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        create_dataset(_config(**config), **args)


# ------------------------------------------------------------------------------------------- tfds


def test_tfds_without_prepared_files_fails_clearly(tmp_path):
    config = _config(name="tfds", tfds_name="mnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not prepared.*tfds build mnist"):
        create_dataset(config, split="train", batch_size=4, seed=0)


def test_tfds_mnist_under_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    config = _config(name="tfds", tfds_name="mnist")
    with tfds.testing.mock_data(num_examples=20):
        assert dataset_info(config) == dict(shape=(28, 28, 1), num_classes=10)
        source = tfds.data_source("mnist", split="train")
        images = np.stack([source[i]["image"] for i in range(20)]).astype(np.float32) / 127.5 - 1
        # Two hosts, one epoch each (10 examples): disjoint shards covering all 20 examples.
        seen = []
        for host in range(2):
            stream = create_dataset(
                config, split="train", batch_size=10, seed=0, process_index=host, process_count=2
            )
            batch = next(stream)
            assert batch["x"].shape == (10, 28, 28, 1) and batch["x"].dtype == np.float32
            assert batch["label"].dtype == np.int32 and batch["label"].shape == (10,)
            assert -1.0 <= batch["x"].min() and batch["x"].max() <= 1.0
            seen.append(batch["x"])
        np.testing.assert_array_equal(_sorted_rows(np.concatenate(seen)), _sorted_rows(images))
        # Same seed, same order; flips mirror some images and leave the others; resuming at a
        # later step gives the same flipped batch as skipping to it.
        plain = next(create_dataset(config, split="train", batch_size=20, seed=5))["x"]
        again = next(create_dataset(config, split="train", batch_size=20, seed=5))["x"]
        np.testing.assert_array_equal(plain, again)
        flipped = next(
            create_dataset(
                _config(name="tfds", tfds_name="mnist", random_flip=True),
                split="train",
                batch_size=20,
                seed=5,
            )
        )["x"]
        same = np.all(flipped == plain, axis=(1, 2, 3))
        mirrored = np.all(flipped == plain[:, :, ::-1], axis=(1, 2, 3))
        assert np.all(same | mirrored) and (~same).any() and (~mirrored).any()
        flipped_config = _config(name="tfds", tfds_name="mnist", random_flip=True)
        args = dict(split="train", batch_size=8, seed=5)
        skipped = list(itertools.islice(create_dataset(flipped_config, **args), 3, 4))[0]
        started = next(create_dataset(flipped_config, **args, start_step=3))
        np.testing.assert_array_equal(skipped["x"], started["x"])
