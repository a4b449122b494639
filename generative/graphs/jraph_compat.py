"""The jraph helpers this project uses, working under current jax.

jraph 0.0.6 is archived. Most of its utilities still run, but a few call top-level aliases that jax
removed (`jax.tree_map`, `jax.tree_leaves`; now `jax.tree.map` / `jax.tree.leaves`):

    jraph.zero_out_padding               -> AttributeError: module 'jax' has no attribute 'tree_map'
    jraph.with_zero_out_padding_outputs  -> same (it calls zero_out_padding)
    jraph.get_fully_connected_graph      -> AttributeError: ... 'tree_leaves' (when given features)

This module re-implements those three with `jax.tree.*` (same semantics, same signatures) and
re-exports the jraph utilities that do still work, so project code imports graph helpers from one
place: `from generative.graphs import jraph_compat as jc`. Checked against jraph with the aliases
patched back in (tests/test_graph_data.py).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import jraph

# Utilities verified to work unchanged under jax 0.10 (tests/test_graph_data.py calls each one).
GraphsTuple = jraph.GraphsTuple
batch_np = jraph.batch_np
unbatch_np = jraph.unbatch_np
pad_with_graphs = jraph.pad_with_graphs
unpad_with_graphs = jraph.unpad_with_graphs
get_node_padding_mask = jraph.get_node_padding_mask
get_edge_padding_mask = jraph.get_edge_padding_mask
get_graph_padding_mask = jraph.get_graph_padding_mask
get_number_of_padding_with_graphs_graphs = jraph.get_number_of_padding_with_graphs_graphs

__all__ = [
    "GraphsTuple",
    "batch_np",
    "unbatch_np",
    "pad_with_graphs",
    "unpad_with_graphs",
    "get_node_padding_mask",
    "get_edge_padding_mask",
    "get_graph_padding_mask",
    "get_number_of_padding_with_graphs_graphs",
    "zero_out_padding",
    "with_zero_out_padding_outputs",
    "get_fully_connected_graph",
]


def _masked(mask: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """Multiply a leaf [N, ...] by a boolean mask [N] broadcast over its trailing axes."""
    return lambda x: mask.reshape(mask.shape + (1,) * (x.ndim - 1)).astype(x.dtype) * x


def zero_out_padding(graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
    """Zero the node, edge and global features of the padding added by `pad_with_graphs`.

    Same as `jraph.zero_out_padding` (which calls the removed `jax.tree_map`); jit-safe.
    """
    return graph._replace(
        nodes=jax.tree.map(_masked(get_node_padding_mask(graph)), graph.nodes),
        edges=jax.tree.map(_masked(get_edge_padding_mask(graph)), graph.edges),
        globals=jax.tree.map(_masked(get_graph_padding_mask(graph)), graph.globals),
    )


def with_zero_out_padding_outputs(
    graph_net: Callable[[jraph.GraphsTuple], jraph.GraphsTuple],
) -> Callable[[jraph.GraphsTuple], jraph.GraphsTuple]:
    """Wrap a graph -> graph function so that its padded outputs are zeroed."""

    @functools.wraps(graph_net)
    def wrapper(graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        return zero_out_padding(graph_net(graph))

    return wrapper


def get_fully_connected_graph(
    n_node_per_graph: int,
    n_graph: int,
    node_features=None,
    global_features=None,
    add_self_edges: bool = True,
) -> jraph.GraphsTuple:
    """`n_graph` complete graphs of `n_node_per_graph` nodes each (directed edges, both ways).

    Same output as `jraph.get_fully_connected_graph` (which calls the removed `jax.tree_leaves`):
    within each graph, edge k of the row-major n x n grid goes sender k % n -> receiver k // n,
    with the self edges (k % n == k // n) left out when `add_self_edges` is False.
    """
    if n_node_per_graph < 1 or n_graph < 1:
        raise ValueError(
            f"n_node_per_graph and n_graph must be >= 1, got {n_node_per_graph}, {n_graph}"
        )
    if node_features is not None:
        num_nodes = jax.tree.leaves(node_features)[0].shape[0]
        if n_node_per_graph * n_graph != num_nodes:
            raise ValueError(
                f"node_features has {num_nodes} rows, expected n_node_per_graph * n_graph = "
                f"{n_node_per_graph * n_graph}"
            )
    if global_features is not None:
        num_globals = jax.tree.leaves(global_features)[0].shape[0]
        if num_globals != n_graph:
            raise ValueError(f"global_features has {num_globals} rows, expected n_graph={n_graph}")
    senders, receivers = jnp.meshgrid(jnp.arange(n_node_per_graph), jnp.arange(n_node_per_graph))
    if not add_self_edges:
        # Row r of the grid holds receiver r; rolling by -r puts the self edge first, then drop it.
        senders = jax.vmap(jnp.roll)(senders, -jnp.arange(n_node_per_graph))[:, 1:]
        receivers = receivers[:, 1:]
    senders, receivers = senders.reshape(-1), receivers.reshape(-1)
    offsets = jnp.arange(n_graph) * n_node_per_graph
    return jraph.GraphsTuple(
        nodes=node_features,
        edges=None,
        n_node=jnp.full((n_graph,), n_node_per_graph),
        n_edge=jnp.full((n_graph,), senders.shape[0]),
        senders=(senders[None, :] + offsets[:, None]).reshape(-1),
        receivers=(receivers[None, :] + offsets[:, None]).reshape(-1),
        globals=global_features,
    )
