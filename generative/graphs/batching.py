"""Graph batches: networkx <-> dense masked tensors <-> padded jraph.GraphsTuple.

Two batch layouts are used by the graph models:

* Dense masked: `adj` float32 [B, n, n] (symmetric 0/1, zero diagonal) and `node_mask` bool [B, n];
  graph b occupies the first `n_b` rows/columns, the rest is zero padding. Used by the diffusion
  processes on the adjacency matrix and by dense graph transformers.
* Sparse jraph.GraphsTuple: every undirected edge is listed in both directions; the batch is padded
  with jraph's convention (one padding graph holding the padding nodes and edges, then empty
  graphs) to one of a few static `Bucket` sizes, so a jitted model compiles once per bucket
  instead of once per batch.

Graphs are relabelled 0..n-1 in `G.nodes` order; conversions preserve graphs up to isomorphism.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import chex
import networkx as nx
import numpy as np

from generative.graphs import jraph_compat as jc
from generative.graphs.orbits import check_simple_graph


class Bucket(NamedTuple):
    """Static padded size of a GraphsTuple batch (padding slots included)."""

    n_node: int  # node slots; >= real nodes + 1 (jraph's padding graph needs a node)
    n_edge: int  # directed edge slots; >= 2 * real undirected edges
    n_graph: int  # graph slots; >= real graphs + 1


def _check_graph_list(graphs: Sequence[nx.Graph], name: str = "graphs") -> None:
    if isinstance(graphs, nx.Graph) or not isinstance(graphs, Sequence):
        raise ValueError(f"{name} must be a list of networkx graphs, got {type(graphs).__name__}")
    if len(graphs) == 0:
        raise ValueError(f"{name} is empty; need at least one graph")
    for i, g in enumerate(graphs):
        check_simple_graph(g, f"{name}[{i}]")
        if g.number_of_nodes() == 0:
            raise ValueError(f"{name}[{i}] has no nodes")


def _edge_index(g: nx.Graph) -> np.ndarray:
    """Edges of `g` as int array [m, 2] over node positions 0..n-1 (self-loops dropped)."""
    position = {node: i for i, node in enumerate(g.nodes)}
    edges = [(position[u], position[v]) for u, v in g.edges if u != v]
    return np.asarray(edges, dtype=np.int32).reshape(-1, 2)


# ---------------------------------------------------------------------------- dense <-> networkx


def graphs_to_dense(graphs: Sequence[nx.Graph], max_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Stack graphs into (adj float32 [B, max_nodes, max_nodes], node_mask bool [B, max_nodes])."""
    _check_graph_list(graphs)
    sizes = [g.number_of_nodes() for g in graphs]
    if max(sizes) > max_nodes:
        raise ValueError(
            f"graph {int(np.argmax(sizes))} has {max(sizes)} nodes, more than max_nodes={max_nodes}"
        )
    adj = np.zeros((len(graphs), max_nodes, max_nodes), np.float32)
    node_mask = np.zeros((len(graphs), max_nodes), bool)
    for b, g in enumerate(graphs):
        edges = _edge_index(g)
        adj[b, edges[:, 0], edges[:, 1]] = 1.0
        adj[b, edges[:, 1], edges[:, 0]] = 1.0
        node_mask[b, : sizes[b]] = True
    return adj, node_mask


def dense_to_graphs(adj: np.ndarray, node_mask: np.ndarray) -> list[nx.Graph]:
    """Graphs from dense adjacencies: nodes where `node_mask`, edges where adj > 0.5 for i < j.

    Only the strict upper triangle is read, so the output is undirected without self-loops even if
    a sampled `adj` is not exactly symmetric. Kept nodes are relabelled 0..k-1 in index order.
    """
    adj, node_mask = np.asarray(adj), np.asarray(node_mask)
    chex.assert_rank([adj, node_mask], [3, 2])
    if adj.shape[1] != adj.shape[2] or adj.shape[:2] != node_mask.shape:
        raise ValueError(
            f"adj must be [B, n, n] and node_mask [B, n]; got {adj.shape} and {node_mask.shape}"
        )
    graphs = []
    for a, mask in zip(adj, node_mask.astype(bool), strict=True):
        kept = np.flatnonzero(mask)
        upper = np.triu(a[np.ix_(kept, kept)] > 0.5, k=1)
        g = nx.Graph()
        g.add_nodes_from(range(len(kept)))
        g.add_edges_from(zip(*np.nonzero(upper), strict=True))
        graphs.append(nx.convert_node_labels_to_integers(g))
    return graphs


# ----------------------------------------------------------------------- GraphsTuple <-> networkx


def make_buckets(
    graphs: Sequence[nx.Graph], batch_size: int, num_buckets: int = 3, seed: int = 0
) -> tuple[Bucket, ...]:
    """At most `num_buckets` static sizes for batches of `batch_size` graphs drawn from `graphs`.

    The largest bucket holds the worst case (the `batch_size` largest node counts and, separately,
    edge counts of the data set). The smaller ones sit at the k/K quantiles (k < K) of the node and
    edge totals of 512 random batches, so a typical batch pads little. Sizes are rounded up to
    multiples of 8; buckets with equal node slots (e.g. when all graphs have the same size) are
    merged into the one with the most edge slots. A batch goes to the smallest bucket it fits, so
    a jitted step compiles at most once per bucket.
    """
    _check_graph_list(graphs)
    if batch_size < 1 or num_buckets < 1:
        raise ValueError(
            f"batch_size and num_buckets must be >= 1, got {batch_size}, {num_buckets}"
        )
    nodes = np.array([g.number_of_nodes() for g in graphs])
    edges = np.array([2 * len(_edge_index(g)) for g in graphs])
    rng = np.random.default_rng(seed)
    replace = batch_size > len(graphs)
    draws = np.stack([rng.choice(len(graphs), batch_size, replace=replace) for _ in range(512)])
    quantiles = np.arange(1, num_buckets) / num_buckets
    node_sizes = list(np.quantile(nodes[draws].sum(axis=1), quantiles))
    edge_sizes = list(np.quantile(edges[draws].sum(axis=1), quantiles))
    top = np.argsort(-nodes, kind="stable")[:batch_size]
    top_edges = np.argsort(-edges, kind="stable")[:batch_size]
    node_sizes.append(nodes[top].sum() + (batch_size - len(top)) * nodes.max())
    edge_sizes.append(edges[top_edges].sum() + (batch_size - len(top_edges)) * edges.max())

    def round8(x: float) -> int:
        return int(8 * math.ceil(x / 8))

    edge_slots: dict[int, int] = {}  # node slots -> edge slots; equal node slots are merged
    for n, e in zip(node_sizes, edge_sizes, strict=True):
        edge_slots[round8(n + 1)] = max(edge_slots.get(round8(n + 1), 0), round8(e))
    return tuple(Bucket(n, e, batch_size + 1) for n, e in sorted(edge_slots.items()))


def choose_bucket(graphs: Sequence[nx.Graph], buckets: Sequence[Bucket]) -> Bucket:
    """The smallest bucket (by node slots) that fits the batch; ValueError if none does."""
    _check_graph_list(graphs)
    if len(buckets) == 0:
        raise ValueError("buckets is empty")
    n_node = sum(g.number_of_nodes() for g in graphs)
    n_edge = sum(2 * len(_edge_index(g)) for g in graphs)
    n_graph = len(graphs)
    for bucket in sorted(buckets):
        if n_node < bucket.n_node and n_edge <= bucket.n_edge and n_graph < bucket.n_graph:
            return bucket
    largest = max(buckets)
    raise ValueError(
        f"batch of {n_graph} graphs with {n_node} nodes and {n_edge} directed edges does not fit "
        f"the largest bucket {largest} (needs n_node > {n_node}, n_edge >= {n_edge}, "
        f"n_graph > {n_graph}); make larger buckets with make_buckets"
    )


def graphs_to_tuple(graphs: Sequence[nx.Graph], buckets: Sequence[Bucket]) -> jc.GraphsTuple:
    """Batch graphs into one GraphsTuple padded to the smallest fitting bucket.

    Features: nodes ones float32 [n_node, 1], edges ones float32 [n_edge, 1], globals float32
    [n_graph, 1] holding G.graph['domain'] (0 when absent); padding entries are zero. Each
    undirected edge appears twice (u -> v and v -> u).
    """
    bucket = choose_bucket(graphs, buckets)
    parts = []
    for g in graphs:
        edges = _edge_index(g)
        senders = np.concatenate([edges[:, 0], edges[:, 1]])
        receivers = np.concatenate([edges[:, 1], edges[:, 0]])
        parts.append(
            jc.GraphsTuple(
                nodes=np.ones((g.number_of_nodes(), 1), np.float32),
                edges=np.ones((len(senders), 1), np.float32),
                senders=senders.astype(np.int32),
                receivers=receivers.astype(np.int32),
                globals=np.full((1, 1), g.graph.get("domain", 0), np.float32),
                n_node=np.array([g.number_of_nodes()], np.int32),
                n_edge=np.array([len(senders)], np.int32),
            )
        )
    return jc.pad_with_graphs(jc.batch_np(parts), *bucket)


def tuple_to_graphs(graph: jc.GraphsTuple) -> list[nx.Graph]:
    """The real graphs of a GraphsTuple padded by `graphs_to_tuple` (padding graphs dropped)."""
    if not isinstance(graph, jc.GraphsTuple):
        raise ValueError(f"graph must be a jraph.GraphsTuple, got {type(graph).__name__}")
    n_node = np.asarray(graph.n_node)
    n_edge = np.asarray(graph.n_edge)
    n_real = len(n_node) - int(jc.get_number_of_padding_with_graphs_graphs(graph))
    senders, receivers = np.asarray(graph.senders), np.asarray(graph.receivers)
    node_start = np.concatenate([[0], np.cumsum(n_node)])
    edge_start = np.concatenate([[0], np.cumsum(n_edge)])
    graphs = []
    for i in range(n_real):
        g = nx.Graph()
        g.add_nodes_from(range(n_node[i]))
        s = senders[edge_start[i] : edge_start[i + 1]] - node_start[i]
        r = receivers[edge_start[i] : edge_start[i + 1]] - node_start[i]
        g.add_edges_from((int(u), int(v)) for u, v in zip(s, r, strict=True) if u != v)
        graphs.append(g)
    return graphs


def batch_iterator(
    graphs: Sequence[nx.Graph],
    batch_size: int,
    buckets: Sequence[Bucket],
    *,
    seed: int,
) -> Iterator[jc.GraphsTuple]:
    """Endless padded GraphsTuple batches: reshuffle every epoch, drop the last partial batch."""
    _check_graph_list(graphs)
    if not 1 <= batch_size <= len(graphs):
        raise ValueError(f"batch_size must be in 1..{len(graphs)}, got {batch_size}")
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(graphs))
        for start in range(0, len(graphs) - batch_size + 1, batch_size):
            yield graphs_to_tuple([graphs[i] for i in order[start : start + batch_size]], buckets)
