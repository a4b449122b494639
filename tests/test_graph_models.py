"""GNN layers, graph transformer, structural features: equivariance, padding, brute force."""

import itertools

import jax
import jax.numpy as jnp
import jraph
import networkx as nx
import numpy as np
import pytest

from generative.graphs import features, gnn, transformer


def _random_adj(rng, b, n, p=0.4, sizes=None):
    adj = (rng.random((b, n, n)) < p).astype(np.float32)
    adj = np.triu(adj, 1)
    adj = adj + adj.transpose(0, 2, 1)
    mask = np.ones((b, n), bool)
    if sizes is not None:
        for i, s in enumerate(sizes):
            mask[i, s:] = False
            adj[i, s:, :] = adj[i, :, s:] = 0
    return adj, mask


def _tuple_from_adj(adj, node_feats, pad_to=None):
    """Undirected graphs as a jraph GraphsTuple (each edge both ways), optionally jraph-padded."""
    graphs = []
    for a, x in zip(adj, node_feats):
        s, r = np.nonzero(a)
        graphs.append(
            jraph.GraphsTuple(
                nodes=x,
                edges=np.ones((len(s), 2), np.float32),
                globals=np.ones((1, 3), np.float32),
                senders=s,
                receivers=r,
                n_node=np.array([len(x)]),
                n_edge=np.array([len(s)]),
            )
        )
    g = jraph.batch_np(graphs)
    if pad_to is not None:
        g = jraph.pad_with_graphs(g, *pad_to)
    return g


GNN_LAYERS = {
    "gcn": lambda: gnn.GCN(8),
    "gat": lambda: gnn.GAT(4, num_heads=2),
    "gin": lambda: gnn.GIN((8, 8)),
    "gn": lambda: gnn.GraphNetwork((6,), (8,), (5,)),
}


@pytest.mark.parametrize("name", sorted(GNN_LAYERS))
def test_gnn_layers_equivariant_and_padding_free(name):
    rng = np.random.default_rng(0)
    n = 7
    adj, _ = _random_adj(rng, 2, n)
    x = rng.normal(size=(2, n, 5)).astype(np.float32)
    module = GNN_LAYERS[name]()
    graph = _tuple_from_adj(adj, x)
    params = jax.jit(module.init)(jax.random.key(0), graph)
    apply = jax.jit(module.apply)
    out = apply(params, graph)

    perm = rng.permutation(n)
    permuted = _tuple_from_adj(adj[:, perm][:, :, perm], x[:, perm])
    out_perm = apply(params, permuted)
    np.testing.assert_allclose(
        out_perm.nodes.reshape(2, n, -1), out.nodes.reshape(2, n, -1)[:, perm], atol=1e-5
    )
    if name == "gn":
        np.testing.assert_allclose(out_perm.globals, out.globals, atol=1e-5)

    padded = _tuple_from_adj(adj, x, pad_to=(2 * n + 3, int(adj.sum()) + 5, 3))
    out_pad = apply(params, padded)
    np.testing.assert_allclose(out_pad.nodes[: 2 * n], out.nodes, atol=1e-5)
    if name == "gn":
        np.testing.assert_allclose(out_pad.globals[:2], out.globals, atol=1e-5)


def test_gcn_matches_normalised_adjacency():
    rng = np.random.default_rng(1)
    adj, _ = _random_adj(rng, 1, 6)
    x = rng.normal(size=(1, 6, 3)).astype(np.float32)
    module = gnn.GCN(4)
    graph = _tuple_from_adj(adj, x)
    params = module.init(jax.random.key(0), graph)
    a_hat = adj[0] + np.eye(6)
    d = a_hat.sum(1)
    dense = params["params"]["Dense_0"]
    expected = (a_hat / np.sqrt(d[:, None] * d[None, :])) @ (x[0] @ dense["kernel"] + dense["bias"])
    np.testing.assert_allclose(module.apply(params, graph).nodes, expected, atol=1e-5)


def _dense_graph(rng, b, n, sizes, dx=3, de=2, dy=4):
    _, mask = _random_adj(rng, b, n, sizes=sizes)
    e = rng.normal(size=(b, n, n, de)).astype(np.float32)
    e = e + e.transpose(0, 2, 1, 3)
    return transformer.DenseGraph(
        nodes=jnp.asarray(rng.normal(size=(b, n, dx)), jnp.float32),
        edges=jnp.asarray(e),
        globals=jnp.asarray(rng.normal(size=(b, dy)), jnp.float32),
        node_mask=jnp.asarray(mask),
    )


SMALL = dict(
    num_layers=2,
    hidden_nodes=8,
    hidden_edges=4,
    hidden_globals=4,
    num_heads=2,
    ffn_nodes=8,
    ffn_edges=8,
    ffn_globals=8,
    out_nodes=2,
    out_edges=3,
    out_globals=2,
)


@pytest.fixture(scope="module")
def small_transformer():
    """(jitted apply, params): one initialisation shared by the transformer tests."""
    model = transformer.GraphTransformer(**SMALL)
    g = _dense_graph(np.random.default_rng(0), 1, 3, sizes=[3])
    return jax.jit(model.apply), jax.jit(model.init)(jax.random.key(0), g)


def test_transformer_permutation_equivariant(small_transformer):
    apply, params = small_transformer
    rng = np.random.default_rng(0)
    g = _dense_graph(rng, 2, 6, sizes=[6, 6])
    out = apply(params, g)
    perm = rng.permutation(6)
    gp = g._replace(nodes=g.nodes[:, perm], edges=g.edges[:, perm][:, :, perm])
    outp = apply(params, gp)
    np.testing.assert_allclose(outp.nodes, out.nodes[:, perm], atol=1e-4)
    np.testing.assert_allclose(outp.edges, out.edges[:, perm][:, :, perm], atol=1e-4)
    np.testing.assert_allclose(outp.globals, out.globals, atol=1e-4)
    np.testing.assert_allclose(out.edges, jnp.swapaxes(out.edges, 1, 2), atol=1e-6)


def test_transformer_padding_does_not_change_real_outputs(small_transformer):
    apply, params = small_transformer
    rng = np.random.default_rng(1)
    g = _dense_graph(rng, 2, 5, sizes=[5, 4])
    out = apply(params, g)
    garbage = lambda shape: jnp.asarray(rng.normal(size=shape) * 10, jnp.float32)  # noqa: E731
    edges = garbage((2, 8, 8, 2)).at[:, :5, :5].set(g.edges)
    gp = transformer.DenseGraph(
        nodes=garbage((2, 8, 3)).at[:, :5].set(g.nodes),
        edges=edges,
        globals=g.globals,
        node_mask=jnp.zeros((2, 8), bool).at[:, :5].set(g.node_mask),
    )
    outp = apply(params, gp)
    mask = np.asarray(g.node_mask)
    np.testing.assert_allclose(outp.nodes[:, :5] * mask[..., None], out.nodes, atol=1e-4)
    np.testing.assert_allclose(outp.edges[:, :5, :5], out.edges, atol=1e-4)
    np.testing.assert_allclose(outp.globals, out.globals, atol=1e-4)
    assert np.all(np.asarray(outp.nodes)[:, 5:] == 0) and np.all(np.asarray(outp.edges)[:, 5:] == 0)


def test_transformer_dense_and_sparse_layouts_agree(small_transformer):
    apply, params = small_transformer
    rng = np.random.default_rng(2)
    g = _dense_graph(rng, 3, 5, sizes=[5, 3, 4])
    dense = apply(params, g)
    sparse = apply(params, transformer.dense_to_pairs_tuple(g))
    mask = np.asarray(g.node_mask)
    np.testing.assert_allclose(sparse.nodes, np.asarray(dense.nodes)[mask], atol=1e-4)
    np.testing.assert_allclose(sparse.globals, dense.globals, atol=1e-4)
    expected_edges = np.concatenate(
        [np.asarray(dense.edges)[b][np.ix_(mask[b], mask[b])].reshape(-1, 3) for b in range(3)]
    )
    np.testing.assert_allclose(sparse.edges, expected_edges, atol=1e-4)


def test_transformer_rejects_bad_input():
    model = transformer.GraphTransformer(**SMALL)
    with pytest.raises(ValueError, match="DenseGraph or jraph.GraphsTuple"):
        model.init(jax.random.key(0), np.zeros((2, 3, 3)))
    bad = transformer.DenseGraph(
        jnp.zeros((2, 4, 3)), jnp.zeros((2, 5, 5, 2)), jnp.zeros((2, 4)), jnp.ones((2, 4), bool)
    )
    with pytest.raises(ValueError, match="must start with"):
        model.init(jax.random.key(0), bad)


def _brute_force_cycles(a, k):
    """Per-node and total counts of simple k-cycles by enumerating node sequences."""
    n = len(a)
    cycles = set()
    for nodes in itertools.permutations(range(n), k):
        if nodes[0] != min(nodes) or nodes[1] > nodes[-1]:
            continue
        if all(a[nodes[i], nodes[(i + 1) % k]] for i in range(k)):
            cycles.add(nodes)
    per_node = np.zeros(n)
    for c in cycles:
        per_node[list(c)] += 1
    return per_node, len(cycles)


def test_cycle_counts_match_brute_force():
    rng = np.random.default_rng(3)
    adj, mask = _random_adj(rng, 3, 8, p=0.5, sizes=[8, 7, 6])
    per_node, per_graph = features.cycle_counts(jnp.asarray(adj), jnp.asarray(mask))
    for b in range(3):
        a = adj[b]
        for k in (3, 4, 5, 6):
            node_counts, total = _brute_force_cycles(a, k)
            assert per_graph[b, k - 3] == pytest.approx(total, abs=1e-3), (b, k)
            if k <= 5:
                np.testing.assert_allclose(per_node[b, :, k - 3], node_counts, atol=1e-3)
        g = nx.from_numpy_array(a[mask[b]][:, mask[b]])
        nx_cycles = [c for c in nx.simple_cycles(g, length_bound=6) if len(c) >= 3]
        assert per_graph[b].sum() == pytest.approx(len(nx_cycles), abs=1e-3)


def test_components_and_spectrum():
    g = nx.disjoint_union_all([nx.path_graph(3), nx.cycle_graph(4), nx.empty_graph(1)])
    n = 10
    adj = np.zeros((1, n, n), np.float32)
    adj[0, :8, :8] = nx.to_numpy_array(g)
    mask = np.zeros((1, n), bool)
    mask[0, :8] = True
    labels, num, in_largest = features.connected_components(jnp.asarray(adj), jnp.asarray(mask))
    assert int(num[0]) == 3
    np.testing.assert_array_equal(np.asarray(labels[0, :8]), [0, 0, 0, 3, 3, 3, 3, 7])
    np.testing.assert_array_equal(np.asarray(in_largest[0]), [0, 0, 0, 1, 1, 1, 1, 0, 0, 0])
    num_zero, low_values, low_vectors = features.laplacian_features(
        jnp.asarray(adj), jnp.asarray(mask), num_eigenvalues=7
    )
    assert int(num_zero[0]) == 3
    expected = np.sort(np.linalg.eigvalsh(nx.laplacian_matrix(g).toarray()))[3:]
    np.testing.assert_allclose(low_values[0, :5], expected, atol=1e-4)
    np.testing.assert_allclose(low_values[0, 5:], 0.0)
    vec = np.asarray(low_vectors[0, :, 0])
    lap = nx.laplacian_matrix(g).toarray()
    np.testing.assert_allclose(lap @ vec[:8], expected[0] * vec[:8], atol=1e-4)
    node_f, graph_f = features.structural_features(jnp.asarray(adj), jnp.asarray(mask))
    assert node_f.shape == (1, n, 6) and graph_f.shape == (1, 10)
    assert np.all(np.asarray(node_f)[0, 8:] == 0)
