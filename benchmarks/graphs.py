"""Graph transformer: dense [B, n, n] layout versus GraphsTuple message passing over all pairs.

Both layouts compute the same function with the same parameters (tests/test_graph_models.py
checks this); this times a jitted forward pass of each on random graphs, alternating A B A B and
quoting the median of the per-pair time ratios.

    python benchmarks/graphs.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from generative.graphs.transformer import DenseGraph, GraphTransformer, dense_to_pairs_tuple

CASES = ((32, 20), (8, 64))  # (graphs per batch, nodes per graph): Comm20-like and planar-like
MODEL = dict(num_layers=4, hidden_nodes=32, hidden_edges=16, hidden_globals=16, num_heads=4,
             ffn_nodes=64, ffn_edges=32, ffn_globals=32, out_nodes=1, out_edges=2)  # fmt: skip


def _batch(rng, b, n):
    sizes = rng.integers(n // 2, n + 1, b)
    mask = np.arange(n)[None] < sizes[:, None]
    adj = np.triu(rng.random((b, n, n)) < 0.3, 1)
    adj = (adj | adj.transpose(0, 2, 1)) & mask[:, :, None] & mask[:, None, :]
    edges = np.stack([1.0 - adj, adj], -1).astype(np.float32)
    nodes = np.ones((b, n, 1), np.float32)
    return DenseGraph(jnp.asarray(nodes), jnp.asarray(edges), jnp.zeros((b, 4)), jnp.asarray(mask))


def _time(fn, *args):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    model = GraphTransformer(**MODEL)
    print(f"{'batch x nodes':>14} {'dense ms':>10} {'sparse ms':>10} {'sparse/dense':>13}")
    for b, n in CASES:
        dense = _batch(rng, b, n)
        sparse = dense_to_pairs_tuple(dense)
        params = model.init(jax.random.key(0), dense)
        apply = jax.jit(model.apply)
        _time(apply, params, dense), _time(apply, params, sparse)  # compile both
        td, ts = [], []
        for _ in range(args.repeats):
            td.append(_time(apply, params, dense))
            ts.append(_time(apply, params, sparse))
        ratio = np.median(np.array(ts) / np.array(td))
        print(
            f"{f'{b} x {n}':>14} {1e3 * np.median(td):10.2f} {1e3 * np.median(ts):10.2f}"
            f" {ratio:13.2f}"
        )


if __name__ == "__main__":
    main()
