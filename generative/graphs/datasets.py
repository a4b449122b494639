"""Graph data sets made offline from a seed (networkx + scipy), with the splits of the papers.

Recipes (REFERENCE.md "Graph datasets"):

* comm20 (community-small; GraphRNN, GDSS): 100 graphs. N uniform in 12..20, two communities of
  N // 2 nodes each drawn from G(N // 2, 0.7) (so N is even, as in GDSS's generator); each of the
  (N/2)^2 cross pairs is an edge with probability 0.05 * 2 / (N/2); if none was drawn, one random
  bridge is added. Split: GDSS's 80/20 train/test; GDSS has no validation set, so `val` is the
  test list (DiGress instead uses 64/16/20).
* grid (GraphRNN, GDSS): grid_2d_graph(i, j) for i, j in 10..19 (100 graphs, 100..361 nodes).
  Split: 80/20 train/test, `val` is the test list.
* lobster (GRAN): random_lobster(80, 0.7, 0.7), kept when 10 <= n <= 100 and connected (a lobster
  always is unless empty), until 100 graphs. Split: 80/20 train/test, `val` is the test list.
* sbm (SPECTRE, DiGress): 200 graphs; k uniform in 2..5 blocks, block sizes uniform in 20..40,
  p_intra 0.3, p_inter 0.005; like SPECTRE's generator, disconnected draws are rejected.
  G.graph['blocks'] holds the true block sizes. Split: SPECTRE's 128/32/40 train/val/test.
* planar (SPECTRE, DiGress): 200 graphs; 64 uniform points in the unit square, edges of their
  Delaunay triangulation (scipy.spatial.Delaunay). Split 128/32/40.
* tree (Bergmeister et al. 2024): 200 uniformly random labelled trees on 64 nodes. Split 128/32/40.
* mixture: comm20, planar, lobster and tree together, each with its own split; every graph
  carries G.graph['domain'] (index into MIXTURE_DOMAINS) and G.graph['domain_name'].

Splits are a seeded random permutation of the generated list. With a `workdir`, each data set is
cached as JSON edge lists in `<workdir>/graph_datasets/<name>_seed<seed>.json` and read back on
later calls; generation from the same seed gives the same graphs with or without the cache.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable

import networkx as nx
import numpy as np
from scipy.spatial import Delaunay

MIXTURE_DOMAINS = ("comm20", "planar", "lobster", "tree")
_CACHE_VERSION = 1


# ------------------------------------------------------------------------------------- recipes


def community_graph(rng: np.random.Generator) -> nx.Graph:
    """One community-small graph (GraphRNN/GDSS `n_community` with two communities)."""
    size = int(rng.integers(12, 21)) // 2
    communities = [nx.gnp_random_graph(size, 0.7, seed=int(rng.integers(2**31))) for _ in range(2)]
    g = nx.disjoint_union(*communities)
    p_bridge = 0.05 * 2 / size
    cross = rng.random((size, size)) < p_bridge
    if not cross.any():
        cross[rng.integers(size), rng.integers(size)] = True
    g.add_edges_from((int(i), size + int(j)) for i, j in zip(*np.nonzero(cross), strict=True))
    return g


def sbm_graph(rng: np.random.Generator, p_intra: float = 0.3, p_inter: float = 0.005) -> nx.Graph:
    """One connected SPECTRE SBM graph: 2..5 blocks of 20..40 nodes."""
    while True:
        sizes = [int(s) for s in rng.integers(20, 41, size=int(rng.integers(2, 6)))]
        probs = np.full((len(sizes), len(sizes)), p_inter)
        np.fill_diagonal(probs, p_intra)
        g = nx.stochastic_block_model(sizes, probs.tolist(), seed=int(rng.integers(2**31)))
        if nx.is_connected(g):
            plain = nx.Graph(blocks=sizes)  # without networkx's per-node 'block' attributes
            plain.add_nodes_from(range(sum(sizes)))
            plain.add_edges_from(g.edges)
            return plain


def planar_graph(rng: np.random.Generator, num_points: int = 64) -> nx.Graph:
    """Delaunay triangulation of `num_points` uniform points in the unit square (SPECTRE)."""
    triangles = Delaunay(rng.random((num_points, 2))).simplices
    g = nx.Graph()
    g.add_nodes_from(range(num_points))
    for a, b, c in triangles:
        g.add_edges_from([(int(a), int(b)), (int(b), int(c)), (int(a), int(c))])
    return g


def lobster_graph(rng: np.random.Generator, mean: int = 80, p1: float = 0.7, p2: float = 0.7):
    """A GRAN lobster: networkx's random_lobster(80, 0.7, 0.7), kept when it has 10..100 nodes.

    Same construction as networkx: a backbone path of int(2 U mean + 0.5) nodes; each backbone
    node gets geometric(p1) leg nodes, each leg node geometric(p2) leaves. Drawn with numpy and cut
    short once it passes 100 nodes (it is then rejected anyway), which keeps rejection cheap.
    """
    while True:
        backbone = int(2 * rng.random() * mean + 0.5)
        if not 1 <= backbone <= 100:
            continue
        g = nx.path_graph(backbone)
        for spine in range(backbone):
            while rng.random() < p1 and g.number_of_nodes() <= 100:
                leg = g.number_of_nodes()
                g.add_edge(spine, leg)
                while rng.random() < p2 and g.number_of_nodes() <= 100:
                    g.add_edge(leg, g.number_of_nodes())
        if 10 <= g.number_of_nodes() <= 100:
            return g


def tree_graph(rng: np.random.Generator, num_nodes: int = 64) -> nx.Graph:
    """A uniformly random labelled tree on `num_nodes` nodes."""
    return nx.convert_node_labels_to_integers(
        nx.random_labeled_tree(num_nodes, seed=int(rng.integers(2**31)))
    )


def _grid_graphs(rng: np.random.Generator) -> list[nx.Graph]:
    del rng  # deterministic family
    return [
        nx.convert_node_labels_to_integers(nx.grid_2d_graph(i, j))
        for i in range(10, 20)
        for j in range(10, 20)
    ]


def _repeat(make: Callable[[np.random.Generator], nx.Graph], count: int):
    return lambda rng: [make(rng) for _ in range(count)]


# name -> (graphs from a generator, (train, val, test) sizes; val None means "val is test")
_RECIPES = {
    "comm20": (_repeat(community_graph, 100), (80, None, 20)),
    "grid": (_grid_graphs, (80, None, 20)),
    "lobster": (_repeat(lobster_graph, 100), (80, None, 20)),
    "sbm": (_repeat(sbm_graph, 200), (128, 32, 40)),
    "planar": (_repeat(planar_graph, 200), (128, 32, 40)),
    "tree": (_repeat(tree_graph, 200), (128, 32, 40)),
}
DATASET_NAMES = tuple(_RECIPES) + ("mixture",)


def _stable_id(name: str) -> int:
    return sum(ord(c) * 31**i for i, c in enumerate(name)) % 2**31


def generate_dataset(name: str, seed: int = 0) -> dict[str, list[nx.Graph]]:
    """Make data set `name` from `seed` (no cache): dict(train=[...], val=[...], test=[...])."""
    if name == "mixture":
        splits = {"train": [], "val": [], "test": []}
        for domain, domain_name in enumerate(MIXTURE_DOMAINS):
            for split, graphs in generate_dataset(domain_name, seed).items():
                for g in graphs:
                    g = g.copy()
                    g.graph.update(domain=domain, domain_name=domain_name)
                    splits[split].append(g)
        return splits
    if name not in _RECIPES:
        raise ValueError(f"unknown graph dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    make, (n_train, n_val, n_test) = _RECIPES[name]
    rng = np.random.default_rng([seed, _stable_id(name)])
    graphs = make(rng)
    order = rng.permutation(len(graphs))
    graphs = [graphs[i] for i in order]
    train, rest = graphs[:n_train], graphs[n_train:]
    if n_val is None:
        return {"train": train, "val": rest, "test": rest}
    return {"train": train, "val": rest[:n_val], "test": rest[n_val : n_val + n_test]}


# --------------------------------------------------------------------------------------- cache


def _to_json(g: nx.Graph) -> dict:
    return {"n": g.number_of_nodes(), "edges": [[int(u), int(v)] for u, v in g.edges], **g.graph}


def _from_json(record: dict) -> nx.Graph:
    g = nx.Graph()
    g.add_nodes_from(range(record["n"]))
    g.add_edges_from(map(tuple, record["edges"]))
    g.graph.update({k: v for k, v in record.items() if k not in ("n", "edges")})
    return g


def load_dataset(name: str, *, workdir: str | None = None, seed: int = 0) -> dict:
    """Data set `name` as dict(train=[nx.Graph], val=[...], test=[...]), cached under `workdir`.

    Names: comm20, grid, sbm, planar, lobster, tree, mixture (see the module docstring for the
    recipes and splits). Unknown name: ValueError listing the known ones.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown graph dataset {name!r}; known: {', '.join(DATASET_NAMES)}")
    if workdir is None:
        return generate_dataset(name, seed)
    path = os.path.join(workdir, "graph_datasets", f"{name}_seed{seed}.json")
    if os.path.exists(path):
        with open(path) as f:
            cached = json.load(f)
        if cached.get("version") == _CACHE_VERSION:
            return {k: [_from_json(r) for r in v] for k, v in cached["splits"].items()}
    splits = generate_dataset(name, seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(
            {
                "version": _CACHE_VERSION,
                "name": name,
                "seed": seed,
                "splits": {k: [_to_json(g) for g in v] for k, v in splits.items()},
            },
            f,
        )
    os.replace(tmp, path)  # atomic: concurrent readers never see a partial file
    return splits
