"""Graph metrics: orbit counts, MMD^2 with both kernel families, V.U.N. and the SBM test."""

import itertools

import networkx as nx
import numpy as np
import pytest
from scipy.optimize import linprog
from scipy.stats import chi2
from sklearn.metrics import adjusted_rand_score

from generative.graphs import datasets, mmd, orbits, validity

# ---------------------------------------------------------------------------------------- orbits


def brute_force_orbits(g: nx.Graph) -> np.ndarray:
    """Orbit counts by listing every induced subgraph on 2, 3 and 4 nodes."""
    index = {v: i for i, v in enumerate(g.nodes)}
    counts = np.zeros((len(index), 15), np.int64)
    for v in g.nodes:
        counts[index[v], 0] = g.degree(v)
    for triple in itertools.combinations(g.nodes, 3):
        sub = g.subgraph(triple)
        for v in triple:
            if sub.number_of_edges() == 3:
                counts[index[v], 3] += 1
            elif sub.number_of_edges() == 2:
                counts[index[v], 2 if sub.degree(v) == 2 else 1] += 1
    for quad in itertools.combinations(g.nodes, 4):
        sub = g.subgraph(quad)
        if not nx.is_connected(sub):
            continue
        degrees = dict(sub.degree)
        shape = (sub.number_of_edges(), tuple(sorted(degrees.values())))
        for v in quad:
            d = degrees[v]
            orbit = {
                (3, (1, 1, 2, 2)): {1: 4, 2: 5},  # path
                (3, (1, 1, 1, 3)): {1: 6, 3: 7},  # star
                (4, (2, 2, 2, 2)): {2: 8},  # 4-cycle
                (4, (1, 2, 2, 3)): {1: 9, 2: 10, 3: 11},  # paw
                (5, (2, 2, 3, 3)): {2: 12, 3: 13},  # diamond
                (6, (3, 3, 3, 3)): {3: 14},  # K4
            }[shape][d]
            counts[index[v], orbit] += 1
    return counts


@pytest.mark.parametrize("seed", range(5))
def test_orbit_counts_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    for p in (0.15, 0.35, 0.6, 0.85):
        g = nx.gnp_random_graph(int(rng.integers(6, 13)), p, seed=int(rng.integers(1000)))
        np.testing.assert_array_equal(orbits.orbit_counts(g), brute_force_orbits(g))


def test_orbit_counts_of_named_graphs():
    k4 = orbits.orbit_counts(nx.complete_graph(4))
    np.testing.assert_array_equal(k4, np.tile([3, 0, 0, 3] + [0] * 10 + [1], (4, 1)))
    cycle = orbits.orbit_counts(nx.cycle_graph(4))
    np.testing.assert_array_equal(cycle[:, 8], 1)
    # Labels other than 0..n-1 and isolated nodes.
    g = nx.relabel_nodes(nx.star_graph(3), {0: "c", 1: "x", 2: "y", 3: "z"})
    g.add_node("lonely")
    counts = orbits.orbit_counts(g)
    np.testing.assert_array_equal(counts[:, 7], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(counts[:, 6], [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(counts[4], 0)
    np.testing.assert_array_equal(counts, brute_force_orbits(g))


# ------------------------------------------------------------------------------------------- MMD


def _edge():
    return nx.path_graph(2)


HAND_SETS = ([_edge(), nx.complete_graph(3)], [nx.complete_graph(4)])


def _e(d, sigma=1.0):
    return np.exp(-(d**2) / (2 * sigma**2))


def test_mmd_hand_computed_degree_both_kernels():
    # Degree histograms: edge -> bin 1, K3 -> bin 2, K4 -> bin 3 (all mass in one bin).
    # EMD: d(edge, K3) = 1, d(edge, K4) = 2, d(K3, K4) = 1; TV: every pair 1.
    x, y = HAND_SETS
    emd = mmd.graph_mmd(x, y, descriptors=["degree"], kernel="gaussian_emd")["degree"]
    tv = mmd.graph_mmd(x, y, descriptors=["degree"], kernel="gaussian_tv")["degree"]
    xx = (2 + 2 * _e(1)) / 4
    assert emd == pytest.approx(xx + 1 - 2 * (_e(2) + _e(1)) / 2, abs=1e-12)
    assert tv == pytest.approx(xx + 1 - 2 * _e(1), abs=1e-12)


def test_mmd_hand_computed_clustering_and_orbit():
    x, y = HAND_SETS
    # Clustering: edge -> bin 0, K3 and K4 -> bin 99. EMD = 0.99 (bin distance 1/100), TV = 1.
    emd = mmd.graph_mmd(x, y, descriptors=["clustering"], kernel="gaussian_emd")["clustering"]
    tv = mmd.graph_mmd(x, y, descriptors=["clustering"], kernel="gaussian_tv")["clustering"]
    assert emd == pytest.approx((2 + 2 * _e(0.99, 0.1)) / 4 + 1 - (_e(0.99, 0.1) + 1), abs=1e-12)
    assert tv == pytest.approx((2 + 2 * _e(1, 0.1)) / 4 + 1 - (_e(1, 0.1) + 1), abs=1e-12)
    # Orbit vectors (sum over nodes / n): edge (1, 0, ...), K3 (2, 0, 0, 1, ...),
    # K4 (3, 0, 0, 3, 0, ..., 1): squared distances 2, 14, 6; plain Gaussian, sigma 30.
    for kernel in mmd.KERNELS:
        orbit = mmd.graph_mmd(x, y, descriptors=["orbit"], kernel=kernel)["orbit"]
        s = 30.0
        expected = (2 + 2 * _e(np.sqrt(2), s)) / 4 + 1 - (_e(np.sqrt(14), s) + _e(np.sqrt(6), s))
        assert orbit == pytest.approx(expected, abs=1e-12)


def test_spectral_histogram_bins():
    # Normalised Laplacian of K4: eigenvalues 0 and 4/3 (three times); bin width (2 + 1e-5)/200.
    hist = mmd.spectral_histogram(nx.complete_graph(4))
    assert hist.shape == (200,) and hist[0] == 1 and hist[133] == 3 and hist.sum() == 4


@pytest.mark.parametrize("kernel", mmd.KERNELS)
def test_mmd_is_zero_for_identical_sets(kernel):
    graphs = datasets.generate_dataset("comm20", seed=1)["test"][:8]
    result = mmd.graph_mmd(graphs, list(reversed(graphs)), kernel=kernel)
    assert set(result) == set(mmd.DESCRIPTORS)
    for value in result.values():
        assert abs(value) < 1e-12


def test_emd_1d_equals_transport_linear_program():
    rng = np.random.default_rng(0)
    length = 7
    cost = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :]) * 0.5
    # Equality constraints: row sums of the plan are p, column sums are q.
    rows = np.kron(np.eye(length), np.ones(length))
    cols = np.kron(np.ones(length), np.eye(length))
    for _ in range(4):
        p, q = rng.random((2, length)) * (rng.random((2, length)) < 0.6)
        p, q = p / p.sum(), q / q.sum()
        lp = linprog(cost.ravel(), A_eq=np.vstack([rows, cols]), b_eq=np.concatenate([p, q]))
        assert mmd.emd_1d(p[None], q[None], bin_distance=0.5)[0, 0] == pytest.approx(
            lp.fun, abs=1e-9
        )


def test_train_test_floor_is_below_a_wrong_model():
    data = datasets.generate_dataset("comm20", seed=0)
    rng = np.random.default_rng(0)
    wrong = [
        nx.gnp_random_graph(g.number_of_nodes(), 0.4, seed=int(rng.integers(1000)))
        for g in data["test"]
    ]
    floor = mmd.graph_mmd(data["test"], data["train"][:40])
    bad = mmd.graph_mmd(wrong, data["train"][:40])
    for name in mmd.DESCRIPTORS:
        assert floor[name] < bad[name], name


def test_mmd_bad_inputs():
    x, y = HAND_SETS
    with pytest.raises(ValueError, match="non-empty"):
        mmd.graph_mmd([], y)
    with pytest.raises(ValueError, match="unknown kernel"):
        mmd.graph_mmd(x, y, kernel="rbf")
    with pytest.raises(ValueError, match="descriptors"):
        mmd.graph_mmd(x, y, descriptors=["betweenness"])
    with pytest.raises(ValueError, match="descriptors"):
        mmd.graph_mmd(x, y, descriptors="degree")
    with pytest.raises(ValueError, match="at least one node"):
        mmd.graph_mmd([nx.Graph()], y)


# ------------------------------------------------------------------------------------------ VUN


def test_vun_hand_made_cases():
    relabelled_cycle = nx.relabel_nodes(nx.cycle_graph(4), {0: 3, 1: 0, 2: 1, 3: 2})
    generated = [nx.cycle_graph(4), relabelled_cycle, nx.complete_graph(4), nx.path_graph(4)]
    train = [nx.path_graph(4), nx.star_graph(3)]
    # unique: [1, 0, 1, 1]; novel: [1, 1, 1, 0]; all valid.
    assert validity.vun(generated, train) == {"valid": 1, "unique": 0.75, "novel": 0.75, "vun": 0.5}
    two_triangles = nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(3))
    generated = [nx.complete_graph(5), two_triangles, nx.cycle_graph(4), relabelled_cycle]
    generated.append(nx.path_graph(4))
    # valid (connected planar): [0, 0, 1, 1, 1]; unique [1, 1, 1, 0, 1]; novel [1, 1, 1, 1, 0].
    result = validity.vun(generated, train, validity="planar")
    assert result == {"valid": 0.6, "unique": 0.8, "novel": 0.8, "vun": 0.2}


def test_isomorphism_index_checks_exactly_after_the_hash():
    # C6 and two triangles are 2-regular on 6 nodes: same WL hash, not isomorphic.
    two_triangles = nx.disjoint_union(nx.complete_graph(3), nx.complete_graph(3))
    assert validity.wl_hash(nx.cycle_graph(6)) == validity.wl_hash(two_triangles)
    index = validity.IsomorphismIndex([nx.cycle_graph(6)])
    assert two_triangles not in index
    assert nx.relabel_nodes(nx.cycle_graph(6), {i: (i * 5) % 6 for i in range(6)}) in index


def test_sbm_wald_statistic_hand_computed():
    # Two blocks of 20 with 57 of 190 pairs inside each block (p = 0.3).
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 20)
    g = nx.Graph()
    g.add_nodes_from(range(40))
    for block in (range(20), range(20, 40)):
        pairs = list(itertools.combinations(block, 2))
        g.add_edges_from(pairs[i] for i in rng.choice(len(pairs), 57, replace=False))
    # No edge across: W = 0.005^2 / 1e-6 = 25 on the two off-diagonal entries.
    expected = (2 * 1.0 + 2 * chi2.sf(25.0, df=1)) / 4
    assert validity.sbm_test_p_value(g, labels) == pytest.approx(expected, abs=1e-6)
    # 2 of 400 pairs across (p = 0.005): every W is 0, mean p-value 1.
    g.add_edges_from([(0, 20), (1, 21)])
    assert validity.sbm_test_p_value(g, labels) == pytest.approx(1.0, abs=1e-6)
    assert validity.sbm_test_p_value(g, np.repeat([0, 1], [10, 30])) == 0.0  # block of 10


def test_sbm_validity_accepts_sbm_and_rejects_erdos_renyi():
    """True samples: the fit recovers the planted blocks, so the decision equals the decision with
    the planted blocks. DiGress's test itself accepts ~88% of true samples (177 of the 200 seed-0
    data set graphs with planted blocks, 175 with fitted ones; see validity.py): require >= 22 of
    30, about 3 binomial standard deviations below 0.88 * 30."""
    rng = np.random.default_rng(5)
    samples = [datasets.sbm_graph(rng) for _ in range(30)]
    recovered = agree = accepted = 0
    for g in samples:
        planted = np.repeat(np.arange(len(g.graph["blocks"])), g.graph["blocks"])
        fitted = validity.fit_sbm(g)
        recovered += adjusted_rand_score(planted, fitted) == 1.0
        accepted += validity.is_sbm_valid(g)
        agree += validity.is_sbm_valid(g) == (validity.sbm_test_p_value(g, planted) > 0.9)
    assert recovered >= 28 and agree >= 28 and accepted >= 22
    # Erdos-Renyi graphs of the same size and mean degree are rejected.
    for g in samples[:10]:
        n = g.number_of_nodes()
        er = nx.gnp_random_graph(n, 2 * g.number_of_edges() / (n * (n - 1)), seed=n)
        assert not validity.is_sbm_valid(er)


def test_vun_bad_inputs():
    with pytest.raises(ValueError, match="unknown validity"):
        validity.vun([nx.path_graph(3)], [], validity="tree")
    with pytest.raises(ValueError, match="non-empty"):
        validity.vun([], [nx.path_graph(3)])
