"""DiGress graph transformer (Vignac et al. 2023, Sec. 3.3, App. B): on node, edge, global features.

One layer (`GraphTransformerLayer`) does, with Q, K, V linear maps of the nodes split into heads:

    Y_ij   = (Q_i * K_j / sqrt(d)) * (1 + W1 E_ij) + W2 E_ij         edge FiLM of attention scores
    E_ij'  = W_e(Yg1(y) + (1 + Yg2(y)) * Y_ij)                        global FiLM of the edges
    X_i'   = W_x(Yx1(y) + (1 + Yx2(y)) * sum_j softmax_j(Y_ij) V_j)  global FiLM of the nodes
    y'     = MLP(W_y y + W_xy pool(X) + W_ey pool(E)),  pool = [mean, min, max, std]

followed by residual + LayerNorm and a feed-forward block for each of X, E and y. The softmax runs
over the keys j per channel, as in DiGress. All of it is permutation-equivariant in the nodes.

Two layouts of the same computation share parameters and this interface:
  * dense (`DenseGraph`, [B, n, n] pair tensors with a node mask): regular batched matmuls, the
    natural layout for accelerators, but it also computes the padded pairs;
  * sparse (`jraph.GraphsTuple` whose edges list the ordered pairs (receiver i, sender j) attended
    over, normally all pairs of a graph including i = j, see `dense_to_pairs_tuple`): gathers and
    segment sums over the real pairs only.
`benchmarks/graphs.py` times both: on a 2-core CPU with graphs of n/2..n nodes the sparse layout
took 0.5-0.6x the time of the dense one (benchmarks/RESULTS.md). The model returns the type it
is given.
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph
import numpy as np

from generative.graphs.gnn import graph_index, segment_softmax

_NEG = -1e9


class DenseGraph(NamedTuple):
    """A batch of graphs as dense masked tensors.

    nodes [B, n, dx], edges [B, n, n, de] (pair (i, j) at [:, i, j]), globals [B, dy] and
    node_mask bool [B, n] (False marks padding).
    """

    nodes: jax.Array
    edges: jax.Array
    globals: jax.Array
    node_mask: jax.Array


def check_dense_graph(graph: DenseGraph, name: str = "graph") -> None:
    if not isinstance(graph, DenseGraph):
        raise ValueError(f"{name} must be a DenseGraph, got {type(graph).__name__}")
    chex.assert_rank([graph.nodes, graph.edges, graph.globals, graph.node_mask], [3, 4, 2, 2])
    b, n = graph.node_mask.shape
    if graph.nodes.shape[:2] != (b, n) or graph.edges.shape[:3] != (b, n, n):
        raise ValueError(
            f"{name}: nodes {graph.nodes.shape} and edges {graph.edges.shape} must start with "
            f"(B, n) = {(b, n)} and (B, n, n) as the node_mask does"
        )
    if graph.globals.shape[0] != b:
        raise ValueError(f"{name}: globals {graph.globals.shape} must have batch size {b}")


def dense_to_pairs_tuple(graph: DenseGraph) -> jraph.GraphsTuple:
    """The sparse layout of a DenseGraph: one jraph edge per ordered pair (i, j) of real nodes.

    Host-side (numpy) conversion; edge k with receiver i and sender j carries edges[b, i, j].
    """
    check_dense_graph(graph)
    mask = np.asarray(graph.node_mask)
    nodes, edges, offsets = [], [], 0
    senders, receivers, n_node, n_edge = [], [], [], []
    for b in range(mask.shape[0]):
        idx = np.flatnonzero(mask[b])
        nodes.append(np.asarray(graph.nodes)[b, idx])
        ii, jj = np.meshgrid(idx, idx, indexing="ij")
        edges.append(np.asarray(graph.edges)[b, ii.ravel(), jj.ravel()])
        local = np.searchsorted(idx, ii.ravel()), np.searchsorted(idx, jj.ravel())
        receivers.append(local[0] + offsets)
        senders.append(local[1] + offsets)
        n_node.append(len(idx))
        n_edge.append(len(idx) ** 2)
        offsets += len(idx)
    return jraph.GraphsTuple(
        nodes=jnp.asarray(np.concatenate(nodes)),
        edges=jnp.asarray(np.concatenate(edges)),
        globals=jnp.asarray(graph.globals),
        senders=jnp.asarray(np.concatenate(senders), jnp.int32),
        receivers=jnp.asarray(np.concatenate(receivers), jnp.int32),
        n_node=jnp.asarray(n_node, jnp.int32),
        n_edge=jnp.asarray(n_edge, jnp.int32),
    )


def _moments(total, total_sq, count, minimum, maximum):
    mean = total / count
    std = jnp.sqrt(jnp.maximum(total_sq / count - mean**2, 0.0) + 1e-8)
    return jnp.concatenate([mean, minimum, maximum, std], axis=-1)


class _DenseLayout:
    """Pair tensors [B, n, n, ...]; node tensors [B, n, ...]."""

    def __init__(self, node_mask):
        self.node_mask = node_mask.astype(jnp.float32)[..., None]  # [B, n, 1]
        self.pair_mask = self.node_mask[:, :, None] * self.node_mask[:, None, :]  # [B, n, n, 1]

    def pair(self, q, k):
        return q[:, :, None] * k[:, None, :]

    def attend(self, scores, v):
        key_mask = self.node_mask[:, None, :, :, None] > 0  # [B, 1, n, 1, 1]
        weights = jax.nn.softmax(jnp.where(key_mask, scores, _NEG), axis=2)
        return jnp.sum(weights * v[:, None], axis=2)

    def to_nodes(self, y):
        return y[:, None, :]

    def to_pairs(self, y):
        return y[:, None, None, :]

    def mask_nodes(self, x):
        return x * self.node_mask

    def mask_pairs(self, e):
        return e * self.pair_mask

    def _pool(self, x, mask, axes):
        count = jnp.maximum(mask.sum(axes), 1.0)
        big = jnp.finfo(x.dtype).max
        minimum = jnp.where(mask > 0, x, big).min(axes)
        maximum = jnp.where(mask > 0, x, -big).max(axes)
        has_any = mask.sum(axes) > 0
        minimum, maximum = jnp.where(has_any, minimum, 0.0), jnp.where(has_any, maximum, 0.0)
        return _moments((x * mask).sum(axes), (x**2 * mask).sum(axes), count, minimum, maximum)

    def pool_nodes(self, x):
        return self._pool(x, self.node_mask, (1,))

    def pool_pairs(self, e):
        return self._pool(e, self.pair_mask, (1, 2))

    def symmetrise(self, e):
        return 0.5 * (e + jnp.swapaxes(e, 1, 2))


class _SparseLayout:
    """Pair tensors [E, ...] over the GraphsTuple's (receiver, sender) pairs; nodes [N, ...]."""

    def __init__(self, graph: jraph.GraphsTuple):
        self.graph = graph
        self.num_nodes, self.num_graphs = graph.nodes.shape[0], graph.n_node.shape[0]
        self.node_graph, self.edge_graph = graph_index(graph, "node"), graph_index(graph, "edge")

    def pair(self, q, k):
        return q[self.graph.receivers] * k[self.graph.senders]

    def attend(self, scores, v):
        weights = segment_softmax(scores, self.graph.receivers, self.num_nodes)
        return jax.ops.segment_sum(
            weights * v[self.graph.senders], self.graph.receivers, self.num_nodes
        )

    def to_nodes(self, y):
        return y[self.node_graph]

    def to_pairs(self, y):
        return y[self.edge_graph]

    def mask_nodes(self, x):
        return x

    def mask_pairs(self, e):
        return e

    def _pool(self, x, segments, counts):
        count = jnp.maximum(counts, 1)[:, None].astype(x.dtype)
        has_any = (counts > 0)[:, None]
        minimum = jnp.where(has_any, jax.ops.segment_min(x, segments, self.num_graphs), 0.0)
        maximum = jnp.where(has_any, jax.ops.segment_max(x, segments, self.num_graphs), 0.0)
        total = jax.ops.segment_sum(x, segments, self.num_graphs)
        total_sq = jax.ops.segment_sum(x**2, segments, self.num_graphs)
        return _moments(total, total_sq, count, minimum, maximum)

    def pool_nodes(self, x):
        return self._pool(x, self.node_graph, self.graph.n_node)

    def pool_pairs(self, e):
        return self._pool(e, self.edge_graph, self.graph.n_edge)

    def symmetrise(self, e):
        """Average each pair with its reverse; the pair set must be symmetric."""
        s, r = self.graph.senders, self.graph.receivers
        keys = r * self.num_nodes + s
        order = jnp.argsort(keys)
        reverse = order[jnp.searchsorted(keys[order], s * self.num_nodes + r)]
        return 0.5 * (e + e[reverse])


class GraphTransformerLayer(nn.Module):
    """One DiGress transformer layer (NodeEdgeBlock + residual/LayerNorm + feed-forward)."""

    num_heads: int
    ffn_nodes: int
    ffn_edges: int
    ffn_globals: int

    @nn.compact
    def __call__(self, x, e, y, layout):
        dx, de, dy = x.shape[-1], e.shape[-1], y.shape[-1]
        if dx % self.num_heads:
            raise ValueError(f"node width {dx} must be divisible by num_heads={self.num_heads}")
        d = dx // self.num_heads
        heads = lambda t: t.reshape(*t.shape[:-1], self.num_heads, d)  # noqa: E731
        q = heads(layout.mask_nodes(nn.Dense(dx, name="query")(x)))
        k = heads(layout.mask_nodes(nn.Dense(dx, name="key")(x)))
        v = heads(layout.mask_nodes(nn.Dense(dx, name="value")(x)))

        scores = layout.pair(q, k) / jnp.sqrt(d)
        e_mul = heads(layout.mask_pairs(nn.Dense(dx, name="edge_mul")(e)))
        e_add = heads(layout.mask_pairs(nn.Dense(dx, name="edge_add")(e)))
        scores = scores * (e_mul + 1.0) + e_add

        pair_feats = scores.reshape(*scores.shape[:-2], dx)
        y_e_add = layout.to_pairs(nn.Dense(dx, name="global_edge_add")(y))
        y_e_mul = layout.to_pairs(nn.Dense(dx, name="global_edge_mul")(y))
        new_e = layout.mask_pairs(
            nn.Dense(de, name="edge_out")(y_e_add + (y_e_mul + 1.0) * pair_feats)
        )

        attended = layout.attend(scores, v).reshape(*x.shape[:-1], dx)
        y_x_add = layout.to_nodes(nn.Dense(dx, name="global_node_add")(y))
        y_x_mul = layout.to_nodes(nn.Dense(dx, name="global_node_mul")(y))
        new_x = layout.mask_nodes(
            nn.Dense(dx, name="node_out")(y_x_add + (y_x_mul + 1.0) * attended)
        )

        new_y = (
            nn.Dense(dy, name="global_global")(y)
            + nn.Dense(dy, name="nodes_to_global")(layout.pool_nodes(x))
            + nn.Dense(dy, name="edges_to_global")(layout.pool_pairs(e))
        )
        new_y = nn.Dense(dy, name="global_out_2")(nn.relu(nn.Dense(dy, name="global_out_1")(new_y)))

        def residual_ffn(h, update, hidden, name):
            h = nn.LayerNorm(name=f"{name}_norm1")(h + update)
            ffn = nn.Dense(h.shape[-1], name=f"{name}_ffn2")(
                nn.relu(nn.Dense(hidden, name=f"{name}_ffn1")(h))
            )
            return nn.LayerNorm(name=f"{name}_norm2")(h + ffn)

        x = layout.mask_nodes(residual_ffn(x, new_x, self.ffn_nodes, "node"))
        e = layout.mask_pairs(residual_ffn(e, new_e, self.ffn_edges, "edge"))
        y = residual_ffn(y, new_y, self.ffn_globals, "global")
        return x, e, y


class GraphTransformer(nn.Module):
    """DiGress graph transformer: input MLPs, `num_layers` layers, output MLPs.

    Call with a `DenseGraph` (dense layout) or a `jraph.GraphsTuple` of pairs (sparse layout); the
    result is the same type with `out_nodes`/`out_edges`/`out_globals` output features (no global
    head when out_globals = 0). With
    `symmetric_edges`, edge outputs are averaged with their transpose (undirected graphs). Padded
    nodes and pairs of a DenseGraph come back as zeros.
    """

    num_layers: int = 4
    hidden_nodes: int = 64
    hidden_edges: int = 32
    hidden_globals: int = 32
    num_heads: int = 4
    ffn_nodes: int = 128
    ffn_edges: int = 64
    ffn_globals: int = 64
    out_nodes: int = 1
    out_edges: int = 1
    out_globals: int = 0
    symmetric_edges: bool = True

    @nn.compact
    def __call__(self, graph):
        if isinstance(graph, DenseGraph):
            check_dense_graph(graph)
            layout = _DenseLayout(graph.node_mask)
        elif isinstance(graph, jraph.GraphsTuple):
            if graph.edges is None or graph.globals is None:
                raise ValueError("the GraphsTuple needs edge and global features (got None)")
            chex.assert_rank([graph.nodes, graph.edges, graph.globals], 2)
            layout = _SparseLayout(graph)
        else:
            raise ValueError(
                f"graph must be a DenseGraph or jraph.GraphsTuple, got {type(graph).__name__}"
            )

        def mlp_in(h, width, name):
            return nn.relu(
                nn.Dense(width, name=f"{name}_2")(nn.relu(nn.Dense(width, name=f"{name}_1")(h)))
            )

        x = layout.mask_nodes(mlp_in(graph.nodes, self.hidden_nodes, "in_nodes"))
        e = layout.mask_pairs(mlp_in(graph.edges, self.hidden_edges, "in_edges"))
        if self.symmetric_edges:
            e = layout.symmetrise(e)
        y = mlp_in(graph.globals, self.hidden_globals, "in_globals")
        for i in range(self.num_layers):
            x, e, y = GraphTransformerLayer(
                self.num_heads, self.ffn_nodes, self.ffn_edges, self.ffn_globals, name=f"layer_{i}"
            )(x, e, y, layout)

        def mlp_out(h, width, name):
            return nn.Dense(width, name=f"{name}_2")(
                nn.relu(nn.Dense(h.shape[-1], name=f"{name}_1")(h))
            )

        x = layout.mask_nodes(mlp_out(x, self.out_nodes, "out_nodes"))
        e = layout.mask_pairs(mlp_out(e, self.out_edges, "out_edges"))
        if self.symmetric_edges:
            e = layout.symmetrise(e)
        y = mlp_out(y, self.out_globals, "out_globals") if self.out_globals else y[..., :0]
        return graph._replace(nodes=x, edges=e, globals=y)
