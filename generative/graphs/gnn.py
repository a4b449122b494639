"""Message-passing GNN layers on jraph GraphsTuples: GCN, GAT, GIN and a general GraphNetwork block.

Every module maps a `jraph.GraphsTuple` to a `jraph.GraphsTuple` with new node (and, for the
GraphNetwork block, edge and global) features, so the layers stack and mix freely. Messages travel
along directed edges sender -> receiver; an undirected graph lists each edge in both directions.

Padding: jraph pads a batch with one extra graph whose edges join padding nodes only, so real
outputs never see padded features. The layers use `jax.ops.segment_*` directly (no jraph helpers,
some of which call jax functions that no longer exist).

References: GCN, Kipf & Welling 2017; GAT, Velickovic et al. 2018; GIN, Xu et al. 2019; GraphNetwork
block, Battaglia et al. 2018 ("Relational inductive biases ...", Algorithm 1).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph


def _check_graph(graph: jraph.GraphsTuple, name: str = "graph") -> None:
    if not isinstance(graph, jraph.GraphsTuple):
        raise ValueError(f"{name} must be a jraph.GraphsTuple, got {type(graph).__name__}")
    if graph.nodes is None or graph.senders is None or graph.receivers is None:
        raise ValueError(f"{name} needs nodes, senders and receivers (got None)")
    chex.assert_rank(graph.nodes, 2)
    chex.assert_equal_shape([graph.senders, graph.receivers])


def graph_index(graph: jraph.GraphsTuple, per: str = "node") -> jax.Array:
    """Index of the graph each node (per='node') or edge (per='edge') belongs to, jit-safe."""
    counts, total = (
        (graph.n_node, graph.nodes.shape[0])
        if per == "node"
        else (graph.n_edge, graph.senders.shape[0])
    )
    return jnp.repeat(jnp.arange(counts.shape[0]), counts, total_repeat_length=total)


def segment_softmax(logits: jax.Array, segment_ids: jax.Array, num_segments: int) -> jax.Array:
    """Softmax of `logits` [E, ...] over entries sharing a segment id (max-shifted, stable)."""
    maxima = jax.ops.segment_max(logits, segment_ids, num_segments)
    shifted = jnp.exp(logits - jax.lax.stop_gradient(maxima[segment_ids]))
    return shifted / jax.ops.segment_sum(shifted, segment_ids, num_segments)[segment_ids]


class MLP(nn.Module):
    """Dense layers with an activation between them (none after the last)."""

    features: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x):
        act = getattr(nn, self.activation)
        for i, width in enumerate(self.features):
            x = nn.Dense(width)(x)
            if i < len(self.features) - 1:
                x = act(x)
        return x


class GCN(nn.Module):
    """Graph convolution h_i' = sum_{j in N(i) u {i}} W h_j / sqrt(d_i d_j), self-loop in d."""

    features: int

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        _check_graph(graph)
        n = graph.nodes.shape[0]
        h = nn.Dense(self.features)(graph.nodes)
        degree = (
            jax.ops.segment_sum(jnp.ones_like(graph.receivers, h.dtype), graph.receivers, n) + 1.0
        )
        norm = jax.lax.rsqrt(degree)
        messages = (h * norm[:, None])[graph.senders]
        aggregated = jax.ops.segment_sum(messages, graph.receivers, n) + h * norm[:, None]
        return graph._replace(nodes=aggregated * norm[:, None])


class GAT(nn.Module):
    """Graph attention: e_ij = LeakyReLU(a^T [W h_i || W h_j]), softmax over senders j of each i.

    Multi-head; heads are concatenated (or averaged with `concat=False`). Each node also attends to
    itself (the self-loop of the paper).
    """

    features: int
    num_heads: int = 4
    concat: bool = True
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        _check_graph(graph)
        n = graph.nodes.shape[0]
        h = nn.Dense(self.features * self.num_heads, use_bias=False)(graph.nodes)
        h = h.reshape(n, self.num_heads, self.features)
        loops = jnp.arange(n, dtype=graph.senders.dtype)
        senders = jnp.concatenate([graph.senders, loops])
        receivers = jnp.concatenate([graph.receivers, loops])
        a_receiver = self.param(
            "a_receiver", nn.initializers.lecun_normal(), (self.num_heads, self.features)
        )
        a_sender = self.param(
            "a_sender", nn.initializers.lecun_normal(), (self.num_heads, self.features)
        )
        logits = (h * a_receiver).sum(-1)[receivers] + (h * a_sender).sum(-1)[senders]
        weights = segment_softmax(nn.leaky_relu(logits, self.negative_slope), receivers, n)
        out = jax.ops.segment_sum(weights[..., None] * h[senders], receivers, n)
        out = out.reshape(n, -1) if self.concat else out.mean(axis=1)
        return graph._replace(nodes=out + self.param("bias", nn.initializers.zeros, out.shape[-1:]))


class GIN(nn.Module):
    """Graph isomorphism layer h_i' = MLP((1 + eps) h_i + sum_{j in N(i)} h_j), eps learned."""

    features: Sequence[int]

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        _check_graph(graph)
        eps = self.param("eps", nn.initializers.zeros, ())
        neighbours = jax.ops.segment_sum(
            graph.nodes[graph.senders], graph.receivers, graph.nodes.shape[0]
        )
        return graph._replace(nodes=MLP(self.features)((1.0 + eps) * graph.nodes + neighbours))


class GraphNetwork(nn.Module):
    """Full GraphNetwork block (Battaglia et al. 2018, Algorithm 1) with sum aggregation:

        e_k' = phi_e(e_k, v_{s_k}, v_{r_k}, u),   v_i' = phi_v(sum_{k: r_k = i} e_k', v_i, u),
        u'   = phi_u(sum_i v_i', sum_k e_k', u).

    Missing edge or global features are treated as empty. Outputs replace nodes, edges and globals.
    """

    edge_features: Sequence[int]
    node_features: Sequence[int]
    global_features: Sequence[int]

    @nn.compact
    def __call__(self, graph: jraph.GraphsTuple) -> jraph.GraphsTuple:
        _check_graph(graph)
        n, num_graphs = graph.nodes.shape[0], graph.n_node.shape[0]
        num_edges = graph.senders.shape[0]
        edges = graph.edges if graph.edges is not None else jnp.zeros((num_edges, 0))
        globals_ = graph.globals if graph.globals is not None else jnp.zeros((num_graphs, 0))
        node_graph, edge_graph = graph_index(graph, "node"), graph_index(graph, "edge")

        edge_in = [
            edges,
            graph.nodes[graph.senders],
            graph.nodes[graph.receivers],
            globals_[edge_graph],
        ]
        new_edges = MLP(self.edge_features)(jnp.concatenate(edge_in, axis=-1))
        incoming = jax.ops.segment_sum(new_edges, graph.receivers, n)
        node_in = [incoming, graph.nodes, globals_[node_graph]]
        new_nodes = MLP(self.node_features)(jnp.concatenate(node_in, axis=-1))
        global_in = [
            jax.ops.segment_sum(new_nodes, node_graph, num_graphs),
            jax.ops.segment_sum(new_edges, edge_graph, num_graphs),
            globals_,
        ]
        new_globals = MLP(self.global_features)(jnp.concatenate(global_in, axis=-1))
        return graph._replace(nodes=new_nodes, edges=new_edges, globals=new_globals)
