"""Deterministic shuffling, per-host sharding and batching of finite, randomly accessible data.

Every process draws the same permutation of all N example indices for epoch e from
``numpy.random.default_rng([seed, e])``, keeps the first ``N - N % P`` of them (P = process_count)
and takes every P-th one starting at its ``process_index``. The shards of one epoch are therefore
disjoint, of equal size ``N // P`` and together cover all but ``N % P`` examples (a different few
each epoch). Batches are cut from the concatenation of the epochs, so every example on a host is
seen once per epoch.
"""

from collections.abc import Callable, Iterator

import numpy as np


def check_sharding(
    batch_size: int, process_index: int, process_count: int, num_examples: int | None = None
):
    """Raises ValueError unless the batch size, the host indices and (if given) the set size fit."""
    if not isinstance(batch_size, int | np.integer) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if not isinstance(process_count, int | np.integer) or process_count <= 0:
        raise ValueError(f"process_count must be a positive int, got {process_count!r}")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index must be in [0, {process_count}), got {process_index!r}")
    if num_examples is not None and num_examples < process_count:
        raise ValueError(
            f"cannot shard {num_examples} examples over process_count={process_count} hosts"
        )


def shard_indices(
    num_examples: int, *, seed: int, epoch: int, process_index: int, process_count: int
) -> np.ndarray:
    """Indices of this host's shard of epoch ``epoch``, in shuffled order: int64 [N // P]."""
    permutation = np.random.default_rng([seed, epoch]).permutation(num_examples)
    kept = num_examples - num_examples % process_count
    return permutation[:kept][process_index::process_count]


def index_batches(
    num_examples: int,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    start_step: int = 0,
) -> Iterator[np.ndarray]:
    """Endless stream of index batches int64 [batch_size] over consecutive shuffled epochs.

    Starts at batch ``start_step`` (computed directly, not by drawing the earlier batches). The
    arguments are checked here, before the first batch is asked for.
    """
    check_sharding(batch_size, process_index, process_count, num_examples)
    check_start_step(start_step)
    return _index_stream(num_examples, batch_size, seed, process_index, process_count, start_step)


def check_start_step(start_step: int):
    if not isinstance(start_step, int | np.integer) or start_step < 0:
        raise ValueError(f"start_step must be a non-negative int, got {start_step!r}")


def _index_stream(num_examples, batch_size, seed, process_index, process_count, start_step):
    def shard(epoch):
        return shard_indices(
            num_examples,
            seed=seed,
            epoch=epoch,
            process_index=process_index,
            process_count=process_count,
        )

    epoch, offset = divmod(start_step * batch_size, num_examples // process_count)
    pending = shard(epoch)[offset:]
    while True:
        while pending.size < batch_size:
            epoch += 1
            pending = np.concatenate([pending, shard(epoch)])
        yield pending[:batch_size]
        pending = pending[batch_size:]


def random_flip(rng: np.random.Generator, images: np.ndarray) -> np.ndarray:
    """Mirrors each NHWC image left-right with probability 1/2."""
    flip = rng.random(images.shape[0]) < 0.5
    return np.where(flip[:, None, None, None], images[:, :, ::-1], images)


def batches(
    fetch: Callable[[np.ndarray], dict[str, np.ndarray]],
    num_examples: int,
    *,
    batch_size: int,
    seed: int,
    process_index: int = 0,
    process_count: int = 1,
    flip: bool = False,
    start_step: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Endless stream of ``fetch(indices)`` batches from batch ``start_step`` on, maybe flipped.

    ``fetch`` maps an index batch to ``{'x': float32 [B, H, W, C], 'label': int32 [B]}``. The flips
    of batch t come from ``default_rng([seed, process_index, 1, t])``: the stream is a function of
    the arguments, and starting at ``start_step`` gives the same batches as skipping to it.
    """
    indices = index_batches(
        num_examples,
        batch_size=batch_size,
        seed=seed,
        process_index=process_index,
        process_count=process_count,
        start_step=start_step,
    )

    def stream():
        for step, batch_indices in enumerate(indices, start=start_step):
            batch = fetch(batch_indices)
            if flip:
                rng = np.random.default_rng([seed, process_index, 1, step])
                batch = dict(batch, x=random_flip(rng, batch["x"]))
            yield batch

    return stream()
