"""Graph data: jraph shim, converters and buckets, data set recipes and caching."""

import jax
import jax.numpy as jnp
import jraph
import networkx as nx
import numpy as np
import pytest

from generative.graphs import batching, datasets
from generative.graphs import jraph_compat as jc


def _random_graphs(seed, count=6, n_range=(1, 12)):
    rng = np.random.default_rng(seed)
    graphs = []
    for _ in range(count):
        n = int(rng.integers(*n_range))
        graphs.append(nx.gnp_random_graph(n, 0.4, seed=int(rng.integers(1000))))
    return graphs


def _small_tuple():
    return jraph.GraphsTuple(
        nodes=np.arange(6, dtype=np.float32).reshape(3, 2) + 1,
        edges=np.ones((2, 1), np.float32),
        senders=np.array([0, 1], np.int32),
        receivers=np.array([1, 2], np.int32),
        globals=np.ones((1, 3), np.float32),
        n_node=np.array([3], np.int32),
        n_edge=np.array([2], np.int32),
    )


# ------------------------------------------------------------------------------------ jraph shim


@pytest.fixture
def jax_with_removed_aliases(monkeypatch):
    """jax with `tree_map` / `tree_leaves` patched back, so the original jraph code can run."""
    monkeypatch.setattr(jax, "tree_map", jax.tree.map, raising=False)
    monkeypatch.setattr(jax, "tree_leaves", jax.tree.leaves, raising=False)


def test_original_jraph_helpers_are_broken_under_current_jax():
    """If this starts failing, jraph or jax fixed the aliases and the shim can go."""
    padded = jraph.pad_with_graphs(_small_tuple(), 5, 4, 3)
    with pytest.raises(AttributeError, match="tree_map"):
        jraph.zero_out_padding(padded)
    with pytest.raises(AttributeError, match="tree_leaves"):
        jraph.get_fully_connected_graph(2, 3, node_features=np.ones((6, 1)))


def test_shim_zero_out_padding_matches_jraph(jax_with_removed_aliases):
    padded = jraph.pad_with_graphs(_small_tuple(), 5, 4, 3)
    padded = padded._replace(nodes=padded.nodes + 7.0, edges=padded.edges + 7.0)
    ours = jax.jit(jc.zero_out_padding)(padded)
    theirs = jraph.zero_out_padding(padded)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ours.nodes[3:], 0.0)  # the two padding nodes
    np.testing.assert_array_equal(ours.nodes[:3], padded.nodes[:3])
    wrapped = jc.with_zero_out_padding_outputs(lambda g: g._replace(globals=g.globals + 1))
    np.testing.assert_array_equal(wrapped(padded).globals[1:], 0.0)


@pytest.mark.parametrize("self_edges", [True, False])
def test_shim_fully_connected_graph_matches_jraph(jax_with_removed_aliases, self_edges):
    feats, globs = jnp.ones((8, 2)), jnp.ones((2, 1))
    ours = jc.get_fully_connected_graph(4, 2, feats, globs, add_self_edges=self_edges)
    theirs = jraph.get_fully_connected_graph(4, 2, feats, globs, add_self_edges=self_edges)
    for field in ("n_node", "n_edge", "senders", "receivers"):
        np.testing.assert_array_equal(getattr(ours, field), getattr(theirs, field))
    assert ours.n_edge[0] == (16 if self_edges else 12)
    with pytest.raises(ValueError, match="node_features"):
        jc.get_fully_connected_graph(4, 2, jnp.ones((7, 2)))


def test_shim_reexports_work():
    padded = jc.pad_with_graphs(jc.batch_np([_small_tuple(), _small_tuple()]), 8, 6, 4)
    assert jc.get_node_padding_mask(padded).sum() == 6
    assert jc.get_edge_padding_mask(padded).sum() == 4
    assert jc.get_graph_padding_mask(padded).sum() == 2
    assert len(jc.unbatch_np(jc.unpad_with_graphs(padded))) == 2


# ------------------------------------------------------------------------------------ converters


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_round_trip_preserves_graphs_and_padding(seed):
    graphs = _random_graphs(seed)
    adj, mask = batching.graphs_to_dense(graphs, max_nodes=12)
    assert adj.shape == (6, 12, 12) and adj.dtype == np.float32 and mask.dtype == bool
    np.testing.assert_array_equal(adj, np.swapaxes(adj, 1, 2))
    np.testing.assert_array_equal(np.diagonal(adj, axis1=1, axis2=2), 0.0)
    for a, m, g in zip(adj, mask, graphs, strict=True):
        n = g.number_of_nodes()
        assert m.sum() == n and m[:n].all()
        assert a[n:].sum() == 0 and a[:, n:].sum() == 0
        assert a.sum() == 2 * g.number_of_edges()
    back = batching.dense_to_graphs(adj, mask)
    assert all(nx.is_isomorphic(a, b) for a, b in zip(graphs, back, strict=True))


def test_dense_to_graphs_reads_upper_triangle_of_masked_nodes():
    adj = np.zeros((1, 4, 4), np.float32)
    adj[0, 0, 1] = 0.9  # only the upper entry set: still an edge
    adj[0, 2, 2] = 1.0  # self loop ignored
    adj[0, 1, 3] = adj[0, 3, 1] = 1.0  # edge to a masked-out node dropped
    (g,) = batching.dense_to_graphs(adj, np.array([[True, True, True, False]]))
    assert sorted(g.edges) == [(0, 1)] and g.number_of_nodes() == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_tuple_round_trip_preserves_graphs(seed):
    graphs = _random_graphs(seed)
    for i, g in enumerate(graphs):
        g.graph["domain"] = i % 3
    buckets = batching.make_buckets(graphs, batch_size=len(graphs))
    padded = batching.graphs_to_tuple(graphs, buckets)
    assert (padded.n_node.shape[0], padded.nodes.shape[0], padded.senders.shape[0]) == (
        buckets[-1].n_graph,
        *buckets[-1][:2],
    )
    np.testing.assert_array_equal(padded.globals[: len(graphs), 0], [i % 3 for i in range(6)])
    assert int(jc.get_node_padding_mask(padded).sum()) == sum(g.number_of_nodes() for g in graphs)
    back = batching.tuple_to_graphs(padded)
    assert len(back) == len(graphs)
    assert all(nx.is_isomorphic(a, b) for a, b in zip(graphs, back, strict=True))


def test_bucket_shapes_are_static_across_batches():
    data = _random_graphs(3, count=40, n_range=(5, 20))
    buckets = batching.make_buckets(data, batch_size=4, num_buckets=3)
    assert len(buckets) == 3 and buckets == tuple(sorted(buckets))
    largest = sorted(data, key=lambda g: -g.number_of_nodes())[:4]
    assert batching.choose_bucket(largest, buckets) == buckets[-1]  # the worst case fits
    assert len(batching.make_buckets([nx.cycle_graph(6)] * 9, batch_size=4)) == 1  # merged
    batches = batching.batch_iterator(data, 4, buckets, seed=0)
    shapes = {jax.tree.map(np.shape, next(batches)) for _ in range(30)}
    assert 1 <= len(shapes) <= 3  # only bucket shapes ever occur
    allowed = {(b.n_node, 1) for b in buckets}
    assert {s.nodes for s in shapes} <= allowed
    # Two different batches that fit the same bucket get identical shapes.
    small = [nx.path_graph(5)] * 4
    other = [nx.cycle_graph(5), nx.star_graph(4), nx.path_graph(5), nx.empty_graph(5)]
    a, b = batching.graphs_to_tuple(small, buckets), batching.graphs_to_tuple(other, buckets)
    assert jax.tree.map(np.shape, a) == jax.tree.map(np.shape, b)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="empty"):
        batching.graphs_to_dense([], max_nodes=4)
    with pytest.raises(ValueError, match="empty"):
        batching.graphs_to_tuple([], batching.make_buckets([nx.path_graph(3)], 1))
    with pytest.raises(ValueError, match="max_nodes=4"):
        batching.graphs_to_dense([nx.path_graph(5)], max_nodes=4)
    buckets = batching.make_buckets([nx.path_graph(3)], batch_size=1)
    with pytest.raises(ValueError, match="largest bucket"):
        batching.graphs_to_tuple([nx.complete_graph(30)], buckets)
    with pytest.raises(ValueError, match="list of networkx graphs"):
        batching.graphs_to_dense(nx.path_graph(3), max_nodes=4)
    with pytest.raises(ValueError, match="no nodes"):
        batching.graphs_to_dense([nx.Graph()], max_nodes=4)
    with pytest.raises(ValueError, match=r"\[B, n, n\]"):
        batching.dense_to_graphs(np.zeros((1, 3, 3)), np.ones((1, 4), bool))


# -------------------------------------------------------------------------------------- datasets


def test_unknown_dataset_lists_names():
    with pytest.raises(ValueError, match="comm20.*planar.*mixture"):
        datasets.load_dataset("cora")


def test_comm20_recipe():
    splits = datasets.load_dataset("comm20", seed=0)
    assert [len(splits[k]) for k in ("train", "val", "test")] == [80, 20, 20]
    for g in splits["train"] + splits["test"]:
        n = g.number_of_nodes()
        assert 12 <= n <= 20 and n % 2 == 0
        half = n // 2
        cross = sum(1 for u, v in g.edges if (u < half) != (v < half))
        assert cross >= 1
        # Expected cross edges: (N/2)^2 * 0.1 / (N/2) = N/20 <= 1; a dense cross cut would be wrong.
        assert cross <= 8
    # Intra-community density 0.7 (binomial standard error over ~1400 pairs is ~0.012).
    edges = sum(
        g.subgraph(range(g.number_of_nodes() // 2)).number_of_edges() for g in splits["train"]
    )
    pairs = sum(
        (g.number_of_nodes() // 2) * (g.number_of_nodes() // 2 - 1) / 2 for g in splits["train"]
    )
    assert abs(edges / pairs - 0.7) < 0.04


def test_sbm_and_planar_and_tree_recipes():
    rng = np.random.default_rng(0)
    for _ in range(5):
        g = datasets.sbm_graph(rng)
        sizes = g.graph["blocks"]
        assert 2 <= len(sizes) <= 5 and all(20 <= s <= 40 for s in sizes)
        assert g.number_of_nodes() == sum(sizes) and nx.is_connected(g)
    # Block densities over many graphs: 0.3 inside, 0.005 across (3-sigma binomial bounds).
    intra = [0, 0]
    inter = [0, 0]
    for _ in range(10):
        g = datasets.sbm_graph(rng)
        block = np.repeat(np.arange(len(g.graph["blocks"])), g.graph["blocks"])
        a = nx.to_numpy_array(g)
        same = block[:, None] == block[None, :]
        iu = np.triu_indices(len(block), 1)
        intra = [intra[0] + a[iu][same[iu]].sum(), intra[1] + same[iu].sum()]
        inter = [inter[0] + a[iu][~same[iu]].sum(), inter[1] + (~same[iu]).sum()]
    for (hits, total), p in ((intra, 0.3), (inter, 0.005)):
        assert abs(hits / total - p) < 3 * np.sqrt(p * (1 - p) / total) + 1e-3
    for _ in range(5):
        g = datasets.planar_graph(rng)
        assert g.number_of_nodes() == 64 and nx.is_connected(g) and nx.check_planarity(g)[0]
        # A Delaunay triangulation of n points with h on the hull has 3n - 3 - h edges.
        assert 2 * 64 - 3 <= g.number_of_edges() <= 3 * 64 - 6
        t = datasets.tree_graph(rng)
        assert t.number_of_nodes() == 64 and nx.is_tree(t)
    lob = datasets.lobster_graph(rng)
    assert 10 <= lob.number_of_nodes() <= 100 and nx.is_tree(lob)
    # A lobster becomes a caterpillar (a path plus leaves) after removing its leaves twice.
    core = lob.copy()
    for _ in range(2):
        core.remove_nodes_from([v for v in list(core) if core.degree(v) <= 1])
    assert core.number_of_nodes() == 0 or max(d for _, d in core.degree) <= 2


def test_split_sizes_grid_and_spectre_sets():
    grid = datasets.load_dataset("grid")
    assert [len(grid[k]) for k in ("train", "test")] == [80, 20]
    all_sizes = {g.number_of_nodes() for k in ("train", "test") for g in grid[k]}
    assert all_sizes == {i * j for i in range(10, 20) for j in range(10, 20)}
    for name in ("planar", "sbm", "tree"):
        splits = datasets.load_dataset(name)
        assert [len(splits[k]) for k in ("train", "val", "test")] == [128, 32, 40], name
    lobster = datasets.load_dataset("lobster")
    assert [len(lobster[k]) for k in ("train", "test")] == [80, 20]
    assert all(10 <= g.number_of_nodes() <= 100 for g in lobster["train"])


def test_cache_returns_identical_graphs(tmp_path):
    first = datasets.load_dataset("comm20", workdir=str(tmp_path), seed=3)
    assert (tmp_path / "graph_datasets" / "comm20_seed3.json").exists()
    second = datasets.load_dataset("comm20", workdir=str(tmp_path), seed=3)
    fresh = datasets.generate_dataset("comm20", seed=3)
    other_seed = datasets.generate_dataset("comm20", seed=4)
    for split in ("train", "val", "test"):
        for a, b, c in zip(first[split], second[split], fresh[split], strict=True):
            assert sorted(a.edges) == sorted(b.edges) == sorted(c.edges)
            assert a.number_of_nodes() == b.number_of_nodes() == c.number_of_nodes()
    assert any(
        sorted(a.edges) != sorted(b.edges)
        for a, b in zip(first["train"], other_seed["train"], strict=True)
    )


def test_mixture_has_domain_labels(tmp_path):
    splits = datasets.load_dataset("mixture", workdir=str(tmp_path))
    again = datasets.load_dataset("mixture", workdir=str(tmp_path))
    domains = {g.graph["domain"] for g in again["train"]}
    assert domains == set(range(len(datasets.MIXTURE_DOMAINS)))
    for g in again["train"]:
        assert datasets.MIXTURE_DOMAINS[g.graph["domain"]] == g.graph["domain_name"]
    assert len(splits["train"]) == 80 + 128 + 80 + 128
