"""Per-node counts of the 15 graphlet orbits on up to 4 nodes (ORCA numbering), no external binary.

Orbit numbering (Hocevar & Demsar 2014, ORCA; REFERENCE.md):

    0 edge (the degree)             1, 2  path on 3 nodes: end, middle     3 triangle
    4, 5  path on 4 nodes: end, middle       6, 7  star: leaf, centre      8 4-cycle
    9, 10, 11  paw (triangle with a tail): tail end, triangle nodes of degree 2, centre
    12, 13  diamond (K4 minus an edge): degree-2 nodes, degree-3 nodes     14 K4

Counts are of *induced* subgraphs. As in ORCA, we first count non-induced patterns rooted at each
node v with sparse matrix algebra, then remove the over-counts with the (upper-triangular)
relation between non-induced and induced counts. With A the adjacency, d the degrees,
t_v the triangles at v, T_uv = |N(u) & N(v)| on edges, C2(x) = x(x-1)/2, and K_uv the number of
K4s through edge uv (edges among the common neighbours of u and v):

    o14 = (1/3) sum_u K_vu
    sum_{a in N(v)} C2(T_va)                     = o13 + 3 o14
    (1/2) sum_{a,b in N(v)} A_ab (T_ab - 1)      = o12 + 3 o14
    t_v (d_v - 2)                                = o11 + 2 o13 + 3 o14
    C3(d_v)                                      = o7 + o11 + o13 + o14
    sum_{z in N(v)} T_vz (d_z - 2)               = o10 + 2 o12 + 2 o13 + 6 o14
    sum_{z in N(v)} (t_z - T_vz)                 = o9 + 2 o12 + 3 o14
    sum_{c != v} C2((A^2)_vc)                    = o8 + o12 + o13 + 3 o14
    sum_{z in N(v)} C2(d_z - 1)                  = o6 + o9 + o10 + 2 o12 + o13 + 3 o14
    paths v-a-b-c:  (A A (d-1))_v - d_v(d_v-1) - 2 t_v
                                                 = o4 + 2 o8 + 2 o9 + o10 + 4 o12 + 2 o13 + 6 o14
    paths a-v-b-c:  (d_v - 1)(A (d-1))_v - 2 t_v = o5 + 2 o8 + o10 + 2 o11 + 2 o12 + 4 o13 + 6 o14

Each coefficient is how many times the left side counts one induced graphlet with v in that
orbit (derived by listing the rooted copies; checked against brute-force enumeration of all
4-node subsets in tests/test_graph_metrics.py). Cost is O(sum of degree products), so graphs of a
few hundred nodes take milliseconds.
"""

from __future__ import annotations

import networkx as nx
import numpy as np
import scipy.sparse as sp

NUM_ORBITS = 15


def _c2(x):
    return x * (x - 1) // 2


def check_simple_graph(g, name: str = "g") -> None:
    """ValueError unless `g` is a simple undirected nx.Graph (each edge counted once)."""
    if not isinstance(g, nx.Graph):
        raise ValueError(f"{name} must be an undirected nx.Graph, got {type(g).__name__}")
    if g.is_multigraph():
        raise ValueError(
            f"{name} is a networkx {type(g).__name__}; pass simple nx.Graph objects "
            "(nx.Graph(g) merges parallel edges)"
        )
    if g.is_directed():
        raise ValueError(
            f"{name} is a networkx {type(g).__name__}; pass undirected nx.Graph objects "
            "(g.to_undirected())"
        )


def orbit_counts(g: nx.Graph) -> np.ndarray:
    """Induced 4-node graphlet orbit counts, int64 [n, 15], rows in `g.nodes` order."""
    check_simple_graph(g)
    n = g.number_of_nodes()
    if n == 0:
        return np.zeros((0, NUM_ORBITS), np.int64)
    a = nx.to_scipy_sparse_array(g, dtype=np.int64, weight=None, format="csr")
    a.setdiag(0)
    a.eliminate_zeros()
    a = sp.csr_matrix(a)
    d = np.asarray(a.sum(axis=1)).ravel()
    a2 = (a @ a).tocsr()
    common = a.multiply(a2).tocsr()  # T_uv on edges
    t = np.asarray(common.sum(axis=1)).ravel() // 2

    # K4s through each directed edge (u, v): edges among the common neighbours of u and v.
    u, v = a.nonzero()
    shared = a[u].multiply(a[v]).tocsr()  # row e: indicator of N(u) & N(v)
    k4_edge = np.asarray((shared @ a).multiply(shared).sum(axis=1)).ravel() // 2
    o14 = np.bincount(u, weights=k4_edge, minlength=n).astype(np.int64) // 3

    def rowsum(m) -> np.ndarray:
        return np.asarray(m.sum(axis=1)).ravel().astype(np.int64)

    pairs_in_triangles = common.copy()
    pairs_in_triangles.data = _c2(pairs_in_triangles.data)
    o13 = rowsum(pairs_in_triangles) - 3 * o14
    o12 = rowsum((a @ (common - a)).multiply(a)) // 2 - 3 * o14
    o11 = t * (d - 2) - 2 * o13 - 3 * o14
    o7 = d * (d - 1) * (d - 2) // 6 - o11 - o13 - o14
    o10 = common @ (d - 2) - 2 * o12 - 2 * o13 - 6 * o14
    o9 = a @ t - 2 * t - 2 * o12 - 3 * o14
    off_diagonal = a2.copy()
    off_diagonal.setdiag(0)
    off_diagonal.data = _c2(off_diagonal.data)
    o8 = rowsum(off_diagonal) - o12 - o13 - 3 * o14
    o6 = a @ _c2(d - 1) - o9 - o10 - 2 * o12 - o13 - 3 * o14
    walks = a @ (d - 1)
    o4 = a @ walks - d * (d - 1) - 2 * t
    o4 = o4 - 2 * o8 - 2 * o9 - o10 - 4 * o12 - 2 * o13 - 6 * o14
    o5 = (d - 1) * walks - 2 * t
    o5 = o5 - 2 * o8 - o10 - 2 * o11 - 2 * o12 - 4 * o13 - 6 * o14
    o1 = walks - 2 * t
    o2 = d * (d - 1) // 2 - t
    orbits = [d, o1, o2, t, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14]
    return np.stack([np.asarray(o, np.int64) for o in orbits], axis=1)
