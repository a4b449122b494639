"""DiGress discrete diffusion and continuous adjacency diffusion: exact math, short training."""

import functools
import importlib
import itertools
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


@pytest.mark.slow
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


def test_condition_vectors():
    from generative.graphs import conditioning

    cond = conditioning.condition_vector(
        [0, 2], [3.0, 5.0], [0.1, 0.4], num_domains=3, degree_scale=10.0
    )
    np.testing.assert_allclose(cond, [[1, 0, 0, 0.3, 0.1, 1], [0, 0, 1, 0.5, 0.4, 1]], atol=1e-6)


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


CONFIG_DIR = Path(__file__).parents[1] / "configs"
GRAPH_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("graph_*.py") if p.stem != "graph_base")


def _tiny_task(config_name, **task_fields):
    from generative.training.task import create_task

    config = importlib.import_module(f"configs.{config_name}").get_config()
    config.model.update(num_layers=1, hidden_nodes=8, hidden_edges=8, hidden_globals=8)
    config.model.update(num_heads=2, ffn_nodes=8, ffn_edges=8, ffn_globals=8)
    config.task.update(task_fields)
    return create_task(config)


def test_generation_requests_are_the_statistics_of_real_test_graphs():
    task = _tiny_task("graph_conditional_mixture", num_steps=4)
    requests = task.requests(50, seed=0)
    test = task.splits["test"]
    by_size = {}
    for g in test:
        by_size.setdefault((g.graph["domain"], len(g)), set()).add(2 * g.number_of_edges() / len(g))
    for d, n, degree in zip(requests["domain"], requests["num_nodes"], requests["average_degree"]):
        assert degree in by_size[(d, n)]  # the statistics of one real test graph
    assert len(set(requests["domain"])) > 1


def test_graph_batches_are_a_pure_function_of_the_step_and_split_over_hosts():
    task = _tiny_task("graph_digress_comm20", num_steps=4)
    whole = next(task.train_batches(5, 8, 0, 1))
    again = next(itertools.islice(task.train_batches(3, 8, 0, 1), 2, None))
    np.testing.assert_array_equal(whole["adj"], again["adj"])  # step 5 either way
    halves = [next(task.train_batches(5, 4, i, 2)) for i in range(2)]
    np.testing.assert_array_equal(np.concatenate([h["adj"] for h in halves]), whole["adj"])


# -------------------------------------------------------------------------- the configs


@pytest.mark.parametrize("name", GRAPH_CONFIGS)
def test_graph_configs_pass_the_checks(name):
    from generative.training.config_checks import check_config
    from generative.training.evaluation import check_evaluators

    config = importlib.import_module(f"configs.{name}").get_config()
    check_config(config, num_devices=1)
    task = _tiny_task(name)  # builds (data, model, process) without training
    check_evaluators(task.evaluators())


def test_graph_config_errors():
    from generative.training.task import create_task

    config = importlib.import_module("configs.graph_digress_comm20").get_config()
    bad = config.copy_and_resolve_references()
    bad.task.name = "gan"
    with pytest.raises(ValueError, match="unknown task 'gan'"):
        create_task(bad)
    bad = config.copy_and_resolve_references()
    bad.data.name = "zinc"
    with pytest.raises(ValueError, match="zinc"):
        create_task(bad)
    bad = config.copy_and_resolve_references()
    bad.task.condition = True
    with pytest.raises(ValueError, match="mixture"):
        create_task(bad)
    bad = importlib.import_module("configs.graph_pfgmpp_comm20").get_config()
    bad.task.loss.D = 2048
    with pytest.raises(ValueError, match="two different D"):
        create_task(bad)


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


def training_graph_counts(samples, graphs):
    """counts[i]: how many sampled adjacency matrices equal graphs[i] exactly; and how many equal
    none of them."""
    match = np.all(np.asarray(samples)[:, None] == np.asarray(graphs)[None], axis=(2, 3))
    return match.sum(0), int((~match.any(1)).sum())


def reproduces_training_graphs(samples, graphs, weights, num_se=4.0):
    """True iff every sample is exactly one of the (distinct) training graphs and each graph occurs
    with its training weight, within num_se binomial standard errors.

    Membership alone is passed by a sampler that stops after one denoiser step: from the prior,
    D(x_T, sigma_max) is about the weighted mean graph, quantised the majority graph, for every
    sample; D(x_T, sigma_min) is the training graph nearest to the noise, with frequencies set by
    the geometry (Voronoi cones), not by the weights. The frequencies reject both
    (test_adjacency_check_rejects_one_step_samplers)."""
    counts, unmatched = training_graph_counts(samples, graphs)
    n, w = len(samples), np.asarray(weights, np.float64)
    return unmatched == 0 and bool(
        np.all(np.abs(counts - n * w) <= num_se * np.sqrt(n * w * (1 - w)))
    )


def _weighted_point_set():
    """path, star and cycle on 5 nodes with weights 2/3, 1/6, 1/6 (the path four times)."""
    adj, x0 = _point_set()
    return adj, jnp.concatenate([x0[:1]] * 3 + [x0]), np.array([4, 1, 1]) / 6


def _sample_point_set(sampler, process, num_samples=128):
    """Adjacency matrices sampled with the exact denoiser of the weighted point set; ``sampler``
    a core sampler's name or a stand-in with its signature."""
    import math

    from generative import processes, samplers, schedules, sde_samplers
    from generative.closed_form import pfgmpp_point_denoiser
    from generative.graphs import continuous

    _, points, _ = _weighted_point_set()
    denoise = pfgmpp_point_denoiser(points, process.get("D", math.inf))
    kwargs = {k: v for k, v in process.items() if k != "name"}
    proc = processes.get_process(process["name"], **kwargs)
    k1, k2 = jax.random.split(jax.random.key(0))
    shape = (num_samples, points.shape[1])
    if sampler == "predictor_corrector":
        x = sde_samplers.predictor_corrector(
            proc, denoise, proc.prior_sample(k1, shape), key=k2, num_steps=200
        )
    else:
        sigmas = schedules.karras_sigmas(24, 0.002, 80.0)
        sample = samplers.get_sampler(sampler) if isinstance(sampler, str) else sampler
        x = sample(denoise, proc.perturb(k1, jnp.zeros(shape), sigmas[0]), sigmas, key=k2)
    return np.asarray(continuous.data_to_adjacency(x, jnp.ones((num_samples, 5), bool)))


@pytest.mark.parametrize(
    "sampler, process",
    [("heun", {"name": "edm"}), ("dpmpp_2m", {"name": "pfgmpp", "D": 64}),
     ("predictor_corrector", {"name": "vp"})],
)  # fmt: skip
def test_core_samplers_on_adjacency_reproduce_training_graphs(sampler, process):
    """With the exact denoiser of a weighted three-graph training set, the unchanged core samplers
    map the prior onto (quantised copies of) the training graphs, with the training weights."""
    adj, _, weights = _weighted_point_set()
    out = _sample_point_set(sampler, process)
    assert reproduces_training_graphs(out, adj, weights), training_graph_counts(out, adj)


def _denoise_once_at_sigma_max(denoise, x, sigmas, key=None):
    return denoise(x, sigmas[0])


def _denoise_once_at_sigma_min(denoise, x, sigmas, key=None):
    return denoise(x, sigmas[-2])  # sigmas ends with 0


@pytest.mark.parametrize(
    "fake", [_denoise_once_at_sigma_max, _denoise_once_at_sigma_min], ids=["sigma_max", "sigma_min"]
)
@pytest.mark.parametrize(
    "process", [{"name": "edm"}, {"name": "pfgmpp", "D": 64}], ids=["edm", "pfgmpp"]
)
def test_adjacency_check_rejects_one_step_samplers(fake, process):
    """One denoiser step from the prior gives training graphs only (the membership check the test
    above once was passes them), but not with the training weights."""
    adj, _, weights = _weighted_point_set()
    out = _sample_point_set(fake, process)
    counts, unmatched = training_graph_counts(out, adj)
    assert unmatched == 0, (counts, unmatched)
    assert not reproduces_training_graphs(out, adj, weights), counts


def test_adjacency_diffusion_loss_and_samplers_with_network():
    import ml_collections

    from generative.graphs import continuous

    mask = jnp.asarray([[1] * 6, [1] * 4 + [0] * 2], bool)
    adj = jnp.zeros((2, 6, 6)).at[:, 0, 1].set(1.0).at[:, 1, 0].set(1.0)
    from generative import processes, schedules

    model = continuous.AdjacencyDiffusion(
        continuous.AdjacencyNetwork(GraphTransformer(out_nodes=1, out_edges=1, **TINY)),
        processes.EDM(),
        ml_collections.ConfigDict({"name": "edm"}),
    )
    params = jax.jit(model.init)(jax.random.key(0), adj, mask)
    loss = jax.jit(model.loss)(params, jax.random.key(1), adj, mask)
    assert loss.shape == (2,) and np.all(np.isfinite(loss))
    noisy = jax.random.normal(jax.random.key(2), (2, 15))
    denoised = jax.jit(lambda p, x: model.denoiser(p, mask)(x, 1.0))(params, noisy)
    padded = ~np.asarray(continuous.pair_mask(mask))
    np.testing.assert_array_equal(np.asarray(denoised)[padded], -0.5)
    sigmas = schedules.karras_sigmas(4)
    for sampler in ("heun", "dpmpp_2m"):
        sample = jax.jit(functools.partial(model.sample, sampler=sampler, sigmas=sigmas))
        out = np.asarray(sample(params, jax.random.key(3), mask))
        np.testing.assert_array_equal(out, out.transpose(0, 2, 1))
        assert set(np.unique(out)) <= {0.0, 1.0}
        assert np.all(out[:, np.arange(6), np.arange(6)] == 0) and np.all(out[1, 4:] == 0)
