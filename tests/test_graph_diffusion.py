"""DiGress discrete diffusion and continuous adjacency diffusion: exact math, short training."""

import functools
import importlib
from pathlib import Path

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import optax
import pytest

from generative.graphs import digress
from generative.graphs.transformer import GraphTransformer

TINY = dict(
    num_layers=1,
    hidden_nodes=16,
    hidden_edges=8,
    hidden_globals=8,
    num_heads=2,
    ffn_nodes=16,
    ffn_edges=16,
    ffn_globals=16,
)


@pytest.mark.parametrize("transition", ["uniform", "marginal"])
def test_transitions_stochastic_and_marginal_stationary(transition):
    diff = digress.make_diffusion(
        50, transition, [0.2, 0.5, 0.3], [0.7, 0.1, 0.2], num_node_types=3, num_edge_types=3
    )
    for t in (1, 10, 49, 50):
        for m in (diff.node_marginal, diff.edge_marginal):
            q_t = np.asarray(digress.transition_matrix(diff.alpha(t), m))
            qbar_t = np.asarray(digress.transition_matrix(diff.alpha_bars[t], m))
            for q in (q_t, qbar_t):
                assert np.all(q >= 0)
                np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-6)
                np.testing.assert_allclose(np.asarray(m) @ q, m, atol=1e-6)
    abar = np.asarray(diff.alpha_bars)
    assert (
        abar[0] == 1.0 and abar[-1] == pytest.approx(0.0, abs=1e-6) and np.all(np.diff(abar) <= 0)
    )


def _chain_matrices(diff, m, t):
    """Q_1 .. Q_t and their product, brute force."""
    qs = [
        np.asarray(digress.transition_matrix(diff.alpha(s), m), np.float64) for s in range(1, t + 1)
    ]
    prod = np.eye(len(m))
    for q in qs:
        prod = prod @ q
    return qs, prod


@pytest.mark.parametrize("transition", ["uniform", "marginal"])
def test_posterior_is_bayes_rule(transition):
    m = np.array([0.6, 0.3, 0.1])
    diff = digress.make_diffusion(20, transition, m, m, num_node_types=3, num_edge_types=3)
    marginal = diff.node_marginal
    prior_x0 = np.array([0.5, 0.2, 0.3])
    rng = np.random.default_rng(0)
    for t in (1, 2, 7, 20):
        qs, qbar_prev = _chain_matrices(diff, np.asarray(marginal), t - 1)
        q_t = np.asarray(digress.transition_matrix(diff.alpha(t), marginal), np.float64)
        np.testing.assert_allclose(
            qbar_prev @ q_t, digress.transition_matrix(diff.alpha_bars[t], marginal), atol=1e-5
        )
        # joint[x0, z_{t-1}, z_t] = p(x0) q(z_{t-1} | x0) q(z_t | z_{t-1})
        joint = prior_x0[:, None, None] * qbar_prev[:, :, None] * q_t[None, :, :]
        for z in range(3):
            z_t = jax.nn.one_hot(z, 3)
            for x in range(3):
                bayes = joint[x, :, z] / joint[x, :, z].sum()
                ours = digress.posterior(diff, z_t, jax.nn.one_hot(x, 3), t, marginal)
                np.testing.assert_allclose(ours, bayes, atol=1e-5)
            # with p(x0 | z_t) exact, the marginalised posterior is p(z_{t-1} | z_t)
            p_x0 = joint[:, :, z].sum(1) / joint[:, :, z].sum()
            exact = joint[:, :, z].sum(0) / joint[:, :, z].sum()
            ours = digress.posterior_from_x0_probs(diff, z_t, jnp.asarray(p_x0), t, marginal)
            np.testing.assert_allclose(ours, exact, atol=1e-5)
            p_any = rng.dirichlet(np.ones(3))
            mixed = sum(
                p_any[x]
                * np.asarray(digress.posterior(diff, z_t, jax.nn.one_hot(x, 3), t, marginal))
                for x in range(3)
            )
            ours = digress.posterior_from_x0_probs(diff, z_t, jnp.asarray(p_any), t, marginal)
            np.testing.assert_allclose(ours, mixed, atol=1e-5)


def _tiny_setup(num_steps=20):
    """Cycle graphs of 4-7 nodes, their marginal diffusion and a 1-layer network (no structural
    features, to keep compilation short)."""
    rng = np.random.default_rng(0)
    graphs = [nx.cycle_graph(int(n)) for n in rng.integers(4, 8, size=8)]
    n = 8
    adj = np.zeros((len(graphs), n, n), np.float32)
    mask = np.zeros((len(graphs), n), bool)
    for i, g in enumerate(graphs):
        k = g.number_of_nodes()
        adj[i, :k, :k] = nx.to_numpy_array(g)
        mask[i, :k] = True
    node_m, edge_m = digress.type_marginals(adj, mask)
    diff = digress.make_diffusion(num_steps, "marginal", node_m, edge_m)
    x, e = digress.one_hot_graph(jnp.asarray(adj), jnp.asarray(mask))
    net = digress.DigressNetwork(GraphTransformer(out_nodes=1, out_edges=2, **TINY), False)
    t_frac = jnp.zeros(len(graphs))
    params = jax.jit(net.init)(jax.random.key(0), x, e, t_frac, jnp.asarray(mask))
    counts = digress.node_count_distribution(mask.sum(1), n)
    return diff, net, params, x, e, jnp.asarray(mask), counts


def test_sampled_graphs_symmetric_without_self_loops():
    """The sampler symmetrises and masks by itself: the x-prediction here is deliberately
    asymmetric and puts mass on the diagonal and the padding."""
    edge_m = np.array([0.6, 0.4])
    diff = digress.make_diffusion(20, "marginal", np.ones(1), edge_m)
    counts = digress.node_count_distribution([4, 5, 6, 7], 8)
    node_mask = digress.sample_node_mask(jax.random.key(1), jnp.asarray(counts), 6)
    bias = jax.random.normal(jax.random.key(5), (8, 8, 2)) * 3

    def logits_fn(x_t, e_t, t_frac, mask):
        return jnp.zeros_like(x_t), e_t * t_frac[:, None, None, None] + bias

    x, e = jax.jit(digress.sample, static_argnums=1)(jax.random.key(2), logits_fn, diff, node_mask)
    e = np.asarray(e)
    np.testing.assert_array_equal(e, e.transpose(0, 2, 1, 3))
    assert np.all(e[:, np.arange(8), np.arange(8)] == 0)
    pair = np.asarray(node_mask)[:, :, None] & np.asarray(node_mask)[:, None, :]
    np.testing.assert_array_equal(e.sum(-1), pair & ~np.eye(8, dtype=bool))
    assert 0 < e[..., 1].sum() < pair.sum()  # both edge types occur
    assert set(np.asarray(node_mask).sum(1)) <= {4, 5, 6, 7}


def test_training_lowers_loss_and_vlb():
    diff, net, params, x, e, mask, counts = _tiny_setup()
    counts = jnp.asarray(counts)
    opt = optax.adam(3e-3)
    state = opt.init(params)

    def loss_fn(p, key):
        return digress.training_loss(key, functools.partial(net.apply, p), diff, x, e, mask).mean()

    @jax.jit
    def update(p, s, key):
        loss, grads = jax.value_and_grad(loss_fn)(p, key)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    @jax.jit
    def evaluate(p):
        keys = jax.random.split(jax.random.key(123), 8)
        loss = jnp.mean(jax.vmap(lambda k: loss_fn(p, k))(keys))
        vlb = digress.variational_bound(
            jax.random.key(7), functools.partial(net.apply, p), diff, x, e, mask, counts, 20
        )
        return loss, vlb.mean()

    loss0, vlb0 = evaluate(params)
    for i in range(60):
        params, state, _ = update(params, state, jax.random.key(i))
    loss1, vlb1 = evaluate(params)
    assert np.isfinite(vlb0) and np.isfinite(vlb1)
    assert loss1 < 0.8 * loss0, (loss0, loss1)
    assert vlb1 < vlb0 - 1.0, (vlb0, vlb1)


def test_digress_bad_input():
    with pytest.raises(ValueError, match="transition"):
        digress.make_diffusion(10, "absorbing")
    with pytest.raises(ValueError, match="node_marginal"):
        digress.make_diffusion(10, "marginal")
    with pytest.raises(ValueError, match="num_steps"):
        digress.cosine_alpha_bars(0)
    with pytest.raises(ValueError, match="max_nodes"):
        digress.node_count_distribution([3, 30], 20)


# ------------------------------------------------------------------------------ conditioning


def test_condition_vectors_dropout_and_guidance():
    from generative.graphs import conditioning

    cond = conditioning.condition_vector(
        [0, 2], [3.0, 5.0], [0.1, 0.4], num_domains=3, degree_scale=10.0
    )
    np.testing.assert_allclose(cond, [[1, 0, 0, 0.3, 0.1, 1], [0, 0, 1, 0.5, 0.4, 1]], atol=1e-6)
    dropped = conditioning.drop_conditions(jax.random.key(0), jnp.ones((4000, 6)), 0.25)
    frac = float(jnp.mean(dropped[:, -1] == 0))
    assert abs(frac - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000)  # 4 standard errors
    assert set(np.unique(np.asarray(dropped))) <= {0.0, 1.0}

    def logits_fn(x, e, t, mask, c):  # conditional logits depend on the condition's first entry
        return x + c[:, None, :1], e + c[:, None, None, :1]

    x, e = jnp.zeros((2, 3, 2)).at[..., 0].set(1.0), jnp.zeros((2, 3, 3, 2))
    t, mask = jnp.zeros(2), jnp.ones((2, 3), bool)
    for w in (0.0, 2.0):
        gx, ge = conditioning.guided_logits(logits_fn, cond, w)(x, e, t, mask)
        cx, ux = jax.nn.log_softmax(logits_fn(x, e, t, mask, cond)[0]), jax.nn.log_softmax(x)
        expected = cx if w == 0 else (1 + w) * cx - w * ux
        np.testing.assert_allclose(jax.nn.log_softmax(gx), jax.nn.log_softmax(expected), atol=1e-5)
    with pytest.raises(ValueError, match="drop_prob"):
        conditioning.drop_conditions(jax.random.key(0), cond, 1.0)


def test_requested_vs_achieved_statistics():
    from generative.graphs import conditioning

    graphs = [nx.complete_graph(4), nx.cycle_graph(6)]  # degrees 3 and 2; clustering 1 and 0
    stats = conditioning.graph_statistics(graphs)
    np.testing.assert_allclose(stats["average_degree"], [3.0, 2.0])
    np.testing.assert_allclose(stats["clustering"], [1.0, 0.0])
    report = conditioning.requested_vs_achieved(
        {"average_degree": [2.0, 2.0], "clustering": [1, 0]}, graphs
    )
    assert report["average_degree_mae"] == pytest.approx(0.5)
    assert report["clustering_mae"] == pytest.approx(0.0)


def test_generation_requests_are_the_statistics_of_real_test_graphs():
    from generative.graphs import experiment

    test = [nx.complete_graph(4), nx.cycle_graph(6), nx.path_graph(3)]  # degree 3, 2, 4/3
    for domain, g in enumerate(test):
        g.graph["domain"] = domain
    requests = experiment._requests({"test": test}, 50, np.random.default_rng(0))
    for d, n, degree in zip(requests["domain"], requests["num_nodes"], requests["average_degree"]):
        assert (n, degree) == (len(test[d]), 2 * test[d].number_of_edges() / len(test[d]))
    assert set(requests["domain"]) == {0, 1, 2}


# -------------------------------------------------------------------------- the experiment


CONFIG_DIR = Path(__file__).parents[1] / "configs"
GRAPH_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("graph_*.py") if p.stem != "graph_base")


@pytest.mark.parametrize("name", GRAPH_CONFIGS)
def test_graph_configs_are_complete(name):
    from generative.graphs import experiment

    config = importlib.import_module(f"configs.{name}").get_config()
    assert config.experiment == "graph"
    experiment.check_config(config)


def test_experiment_config_errors():
    from generative.graphs import experiment

    config = experiment.default_config()
    experiment.check_config(config)
    bad = config.copy_and_resolve_references()
    bad.method = "gan"
    with pytest.raises(ValueError, match="config.method"):
        experiment.check_config(bad)
    bad = config.copy_and_resolve_references()
    bad.data.name = "zinc"
    with pytest.raises(ValueError, match="zinc"):
        experiment.check_config(bad)
    bad = config.copy_and_resolve_references()
    del bad.eval["kernel"]
    with pytest.raises(ValueError, match="config.eval.kernel is missing"):
        experiment.check_config(bad)
    bad = importlib.import_module("configs.graph_pfgmpp_comm20").get_config()
    bad.continuous.process.D = 2048
    with pytest.raises(ValueError, match="loss.D and config.continuous.process.D must agree"):
        experiment.check_config(bad)
    bad = config.copy_and_resolve_references()
    bad.condition.enabled = True
    with pytest.raises(ValueError, match="mixture"):
        experiment.check_config(bad)


# ------------------------------------------------------------------- continuous (adjacency)


def _point_set(n=5):
    from generative.graphs import continuous

    graphs = [nx.path_graph(n), nx.star_graph(n - 1), nx.cycle_graph(n)]
    adj = jnp.asarray(np.stack([nx.to_numpy_array(g) for g in graphs]), jnp.float32)
    return adj, continuous.adjacency_to_data(adj)


def test_pack_unpack_and_quantise():
    from generative.graphs import continuous

    adj, x0 = _point_set()
    np.testing.assert_array_equal(continuous.unpack(continuous.pack(adj)), adj)
    assert set(np.unique(np.asarray(x0))) == {-0.5, 0.5}
    noisy = x0 + jax.random.normal(jax.random.key(0), x0.shape)
    matrix = np.asarray(continuous.unpack(noisy))
    np.testing.assert_array_equal(matrix, matrix.transpose(0, 2, 1))  # i.i.d. noise -> symmetric
    assert np.all(matrix[:, np.arange(5), np.arange(5)] == 0)
    mask = jnp.asarray([[1, 1, 1, 1, 0]] * 3, bool)
    quantised = np.asarray(continuous.data_to_adjacency(jnp.ones_like(x0), mask))
    assert np.all(quantised[:, 4] == 0) and np.all(quantised[:, :4, :4] == 1 - np.eye(4))
    with pytest.raises(ValueError, match="n \\(n - 1\\) / 2"):
        continuous.unpack(jnp.zeros((1, 4)))


@pytest.mark.parametrize(
    "sampler, process",
    [("heun", {"name": "edm"}), ("dpmpp_2m", {"name": "pfgmpp", "D": 64}),
     ("predictor_corrector", {"name": "vp"})],
)  # fmt: skip
def test_core_samplers_on_adjacency_reproduce_training_graphs(sampler, process):
    """With the exact denoiser of a three-graph training set, the unchanged core samplers map the
    prior onto (a quantised copy of) training graphs."""
    import math

    from generative import processes, samplers, schedules, sde_samplers
    from generative.closed_form import pfgmpp_point_denoiser
    from generative.graphs import continuous

    adj, x0 = _point_set()
    denoise = pfgmpp_point_denoiser(x0, process.get("D", math.inf))
    kwargs = {k: v for k, v in process.items() if k != "name"}
    proc = processes.get_process(process["name"], **kwargs)
    k1, k2 = jax.random.split(jax.random.key(0))
    shape = (16, x0.shape[1])
    if sampler == "predictor_corrector":
        x = sde_samplers.predictor_corrector(
            proc, denoise, proc.prior_sample(k1, shape), key=k2, num_steps=200
        )
    else:
        sigmas = schedules.karras_sigmas(24, 0.002, 80.0)
        x = samplers.get_sampler(sampler)(
            denoise, proc.perturb(k1, jnp.zeros(shape), sigmas[0]), sigmas, key=k2
        )
    out = np.asarray(continuous.data_to_adjacency(x, jnp.ones((16, 5), bool)))
    train = np.asarray(adj)
    assert all(any(np.array_equal(a, t) for t in train) for a in out)


def test_adjacency_diffusion_loss_and_samplers_with_network():
    import ml_collections

    from generative.graphs import continuous

    mask = jnp.asarray([[1] * 6, [1] * 4 + [0] * 2], bool)
    adj = jnp.zeros((2, 6, 6)).at[:, 0, 1].set(1.0).at[:, 1, 0].set(1.0)
    model = continuous.AdjacencyDiffusion(
        continuous.AdjacencyNetwork(GraphTransformer(out_nodes=1, out_edges=1, **TINY)),
        ml_collections.ConfigDict({"name": "edm"}),
    )
    params = jax.jit(model.init)(jax.random.key(0), adj, mask)
    loss = jax.jit(model.loss)(params, jax.random.key(1), adj, mask)
    assert loss.shape == (2,) and np.all(np.isfinite(loss))
    noisy = jax.random.normal(jax.random.key(2), (2, 15))
    denoised = jax.jit(lambda p, x: model.denoiser(p, mask)(x, 1.0))(params, noisy)
    padded = ~np.asarray(continuous.pair_mask(mask))
    np.testing.assert_array_equal(np.asarray(denoised)[padded], -0.5)
    for sampler in ("heun", "dpmpp_2m"):
        sample = jax.jit(functools.partial(model.sample, sampler=sampler, num_levels=4))
        out = np.asarray(sample(params, jax.random.key(3), mask))
        np.testing.assert_array_equal(out, out.transpose(0, 2, 1))
        assert set(np.unique(out)) <= {0.0, 1.0}
        assert np.all(out[:, np.arange(6), np.arange(6)] == 0) and np.all(out[1, 4:] == 0)
