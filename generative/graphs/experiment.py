"""Graph generation experiments: `run(config, workdir)` trains, samples and evaluates one model.

`python -m experiments.train --config configs/graph_*.py --workdir DIR` calls `run` when
config.experiment == 'graph'. Steps:
  1. load the data set (generative.graphs.datasets, cached in the workdir);
  2. train the DiGress model (config.method = 'digress') or the continuous adjacency model
     ('continuous': EDM / PFGM++ / VP through generative.losses and generative.samplers), with an
     EMA of the weights, a tqdm bar, JSON-lines metrics in <workdir>/metrics.jsonl and a checkpoint
     <workdir>/checkpoint.msgpack (params, EMA, optimiser state, step; resumed if present);
  3. sample config.eval.num_samples graphs (timing them) and score them against the test set with
     the MMD^2 metrics (and V.U.N. where config.eval.validity is set), next to the train-versus-test
     floor of the same metrics; conditional runs also report requested versus achieved statistics;
  4. print the table, write <workdir>/results.json and return the numbers.

`default_config()` documents every field once; the files in configs/ override what differs.
"""

from __future__ import annotations

import functools
import json
import os
import time

import flax.serialization
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from generative.graphs import batching, conditioning, datasets, digress
from generative.graphs.transformer import GraphTransformer
from generative.training.ema import ema_update
from generative.training.writers import MetricWriter


def default_config() -> ml_collections.ConfigDict:
    """Defaults for every field of a graph experiment (each documented here once)."""
    c = ml_collections.ConfigDict()
    c.experiment = "graph"  # dispatch key for experiments/train.py
    c.seed = 0  # data split, initialisation, training and sampling randomness
    c.method = "digress"  # 'digress' (discrete diffusion) or 'continuous' (adjacency diffusion)

    c.data = ml_collections.ConfigDict()
    c.data.name = (
        "comm20"  # generative.graphs.datasets name (comm20, grid, sbm, planar, ..., mixture)
    )
    c.data.max_nodes = 0  # pad to this many nodes; 0 = the largest graph; larger graphs are dropped

    c.model = (
        ml_collections.ConfigDict()
    )  # GraphTransformer widths (DiGress uses 8 layers, 256/64/64)
    c.model.num_layers = 4
    c.model.hidden_nodes = 64
    c.model.hidden_edges = 32
    c.model.hidden_globals = 32
    c.model.num_heads = 4
    c.model.ffn_nodes = 128
    c.model.ffn_edges = 64
    c.model.ffn_globals = 64
    c.model.structural_features = (
        True  # cycles / spectrum / components of the noisy graph as inputs
    )

    c.digress = ml_collections.ConfigDict()
    c.digress.num_steps = 500  # diffusion steps T (DiGress: 500 for SPECTRE data, 1000 for QM9)
    c.digress.transition = "marginal"  # 'marginal' or 'uniform'
    c.digress.edge_weight = 5.0  # lambda of the edge cross-entropy (DiGress: 5)
    c.digress.vlb_samples = 16  # t draws per test graph for the variational bound (0: skip)

    c.continuous = ml_collections.ConfigDict()
    c.continuous.loss = ml_collections.ConfigDict({"name": "edm"})  # generative.losses.make_loss
    c.continuous.precondition = "edm"  # generative.preconditioning kind
    c.continuous.process = ml_collections.ConfigDict({"name": "edm"})  # prior draw at sigmas[0]
    c.continuous.sampler = "heun"  # generative.samplers name
    c.continuous.schedule = "karras"  # generative.schedules.get_schedule name
    c.continuous.num_levels = 32  # noise levels of the sampler
    c.continuous.sigma_min = 0.002
    c.continuous.sigma_max = 80.0
    c.continuous.sigma_data = 0.5

    c.condition = ml_collections.ConfigDict()
    c.condition.enabled = False  # condition on domain, average degree and clustering
    c.condition.drop_prob = 0.1  # classifier-free label dropout
    c.condition.guidance = 1.0  # guidance weight w at sampling (0: plain conditional)
    c.condition.degree_scale = 10.0  # average degree is divided by this in the condition vector

    c.train = ml_collections.ConfigDict()
    c.train.steps = 2000
    c.train.batch_size = 32
    c.train.learning_rate = 2e-4  # AdamW (DiGress: 2e-4, weight decay 1e-12)
    c.train.weight_decay = 1e-12
    c.train.grad_clip = 1.0  # global-norm clipping
    c.train.ema_decay = 0.999  # EMA decay (warm-up min(d, (1+k)/(10+k)) at step k) for sampling
    c.train.log_every = 50  # steps between JSON-lines metric records
    c.train.checkpoint_every = 1000  # steps between checkpoints (and one at the end)
    c.train.time_limit_minutes = 0.0  # stop training early after this wall time (0: no limit)

    c.eval = ml_collections.ConfigDict()
    c.eval.num_samples = 0  # graphs to sample; 0 = as many as the test set has
    c.eval.batch_size = 64  # graphs per sampling call
    c.eval.kernel = "gaussian_emd"  # 'gaussian_emd' (GraphRNN/GDSS) or 'gaussian_tv' (GRAN/DiGress)
    c.eval.descriptors = ("degree", "clustering", "orbit")
    c.eval.validity = ""  # '' (none), 'planar' or 'sbm' for V.U.N.
    return c


_METHODS = ("digress", "continuous")


def check_config(config: ml_collections.ConfigDict) -> None:
    """Raise ValueError on missing or bad fields before any work."""
    defaults = default_config()
    for section in ("data", "model", "train", "eval", "condition", "digress", "continuous"):
        if section not in config:
            raise ValueError(f"config.{section} is missing (see graphs.experiment.default_config)")
        for field in defaults[section]:
            if field not in config[section]:
                raise ValueError(f"config.{section}.{field} is missing")
    if config.method not in _METHODS:
        raise ValueError(f"config.method must be one of {_METHODS}, got {config.method!r}")
    if config.data.name not in datasets.DATASET_NAMES:
        raise ValueError(
            f"config.data.name {config.data.name!r} unknown; known: {datasets.DATASET_NAMES}"
        )
    if config.condition.enabled and config.data.name != "mixture":
        raise ValueError(
            "config.condition.enabled needs config.data.name = 'mixture' (domain labels)"
        )
    if config.train.steps < 0 or config.train.batch_size < 1:
        raise ValueError("config.train.steps must be >= 0 and config.train.batch_size >= 1")
    loss, process = config.continuous.loss, config.continuous.process
    if loss.name == "pfgmpp" and process.name == "pfgmpp" and loss.get("D") != process.get("D"):
        raise ValueError(
            "config.continuous.loss.D and config.continuous.process.D must agree (training and "
            f"sampling use one PFGM++ kernel), got {loss.get('D')} and {process.get('D')}"
        )
    if config.eval.validity not in ("", "planar", "sbm"):
        raise ValueError(
            f"config.eval.validity must be '', 'planar' or 'sbm', got {config.eval.validity!r}"
        )


# ----------------------------------------------------------------------------------- the data


def _prepare_data(config, workdir):
    splits = datasets.load_dataset(config.data.name, workdir=workdir, seed=config.seed)
    max_nodes = config.data.max_nodes or max(g.number_of_nodes() for g in splits["train"])
    splits = {k: [g for g in v if g.number_of_nodes() <= max_nodes] for k, v in splits.items()}
    if not splits["train"] or not splits["test"]:
        raise ValueError(f"no graphs with at most {max_nodes} nodes in {config.data.name}")
    adj, mask = batching.graphs_to_dense(splits["train"], max_nodes)
    data = {"adj": jnp.asarray(adj), "node_mask": jnp.asarray(mask)}
    if config.condition.enabled:
        stats = conditioning.graph_statistics(splits["train"])
        data["cond"] = conditioning.condition_vector(
            [g.graph["domain"] for g in splits["train"]],
            stats["average_degree"],
            stats["clustering"],
            num_domains=len(datasets.MIXTURE_DOMAINS),
            degree_scale=config.condition.degree_scale,
        )
    return splits, max_nodes, data


def _cond_dim(config):
    return (
        conditioning.condition_dim(len(datasets.MIXTURE_DOMAINS)) if config.condition.enabled else 0
    )


def _transformer(config, out_edges):
    m = config.model
    return GraphTransformer(
        num_layers=m.num_layers, hidden_nodes=m.hidden_nodes, hidden_edges=m.hidden_edges,
        hidden_globals=m.hidden_globals, num_heads=m.num_heads, ffn_nodes=m.ffn_nodes,
        ffn_edges=m.ffn_edges, ffn_globals=m.ffn_globals, out_nodes=1, out_edges=out_edges,
    )  # fmt: skip


# ------------------------------------------------------------------------------- the methods


class _Digress:
    """DiGress on structure-only graphs (one node type, edge types absent/present)."""

    def __init__(self, config, data, count_probs):
        self.config = config
        node_m, edge_m = digress.type_marginals(
            np.asarray(data["adj"]), np.asarray(data["node_mask"])
        )
        self.diffusion = digress.make_diffusion(
            config.digress.num_steps, config.digress.transition, node_m, edge_m
        )
        self.net = digress.DigressNetwork(_transformer(config, 2), config.model.structural_features)
        self.count_probs = jnp.asarray(count_probs)

    def init(self, key, data):
        x, e = digress.one_hot_graph(data["adj"][:2], data["node_mask"][:2])
        cond = data["cond"][:2] if "cond" in data else None
        return self.net.init(key, x, e, jnp.zeros(2), data["node_mask"][:2], cond)

    def loss(self, params, key, adj, node_mask, cond):
        x, e = digress.one_hot_graph(adj, node_mask)
        logits_fn = functools.partial(self.net.apply, params, cond=cond)
        return digress.training_loss(
            key, logits_fn, self.diffusion, x, e, node_mask, self.config.digress.edge_weight
        )

    def sample(self, params, key, node_mask, cond, guidance):
        if cond is None:
            logits_fn = functools.partial(self.net.apply, params)
        else:
            logits_fn = conditioning.guided_logits(
                lambda *a: self.net.apply(params, *a[:4], cond=a[4]),
                cond,
                guidance,
            )
        _, e = digress.sample(key, logits_fn, self.diffusion, node_mask)
        return e[..., 1:].sum(-1)

    def vlb(self, params, key, adj, node_mask, cond):
        x, e = digress.one_hot_graph(adj, node_mask)
        logits_fn = functools.partial(self.net.apply, params, cond=cond)
        return digress.variational_bound(
            key,
            logits_fn,
            self.diffusion,
            x,
            e,
            node_mask,
            self.count_probs,
            self.config.digress.vlb_samples,
        )


class _Continuous:
    """Score-based diffusion on the symmetric adjacency (generative.graphs.continuous)."""

    def __init__(self, config, data, count_probs):
        from generative.graphs import continuous

        self.config = config
        self.model = continuous.AdjacencyDiffusion(
            net=continuous.AdjacencyNetwork(_transformer(config, 1)),
            loss_config=config.continuous.loss,
            precondition=config.continuous.precondition,
            sigma_data=config.continuous.sigma_data,
        )

    def init(self, key, data):
        cond = data["cond"][:2] if "cond" in data else None
        return self.model.init(key, data["adj"][:2], data["node_mask"][:2], cond)

    def loss(self, params, key, adj, node_mask, cond):
        return self.model.loss(params, key, adj, node_mask, cond)

    def sample(self, params, key, node_mask, cond, guidance):
        c = self.config.continuous
        return self.model.sample(
            params, key, node_mask, cond=cond, sampler=c.sampler, schedule=c.schedule,
            num_levels=c.num_levels, sigma_min=c.sigma_min, sigma_max=c.sigma_max,
            process=c.process.to_dict(), guidance=guidance,
        )  # fmt: skip


# ------------------------------------------------------------------------------- train / eval


def train(config, workdir, method, data, log=print):
    """Train with AdamW + EMA; resumes from <workdir>/checkpoint.msgpack. Returns EMA params."""
    key = jax.random.key(config.seed)
    params = jax.jit(method.init)(
        jax.random.fold_in(key, 0), data
    )  # one compile, not one per shape
    tx = optax.chain(
        optax.clip_by_global_norm(config.train.grad_clip),
        optax.adamw(config.train.learning_rate, weight_decay=config.train.weight_decay),
    )
    state = {"params": params, "ema": params, "opt": tx.init(params), "step": 0}
    ckpt_path = os.path.join(workdir, "checkpoint.msgpack")
    if os.path.exists(ckpt_path):
        with open(ckpt_path, "rb") as f:
            state = flax.serialization.from_bytes(state, f.read())
        log(f"resumed from {ckpt_path} at step {int(state['step'])}")
    num_train = data["adj"].shape[0]
    has_cond = "cond" in data

    @jax.jit
    def step(state, key):
        k_batch, k_drop, k_loss = jax.random.split(key, 3)
        idx = jax.random.choice(
            k_batch,
            num_train,
            (config.train.batch_size,),
            replace=num_train < config.train.batch_size,
        )
        cond = None
        if has_cond:
            cond = conditioning.drop_conditions(
                k_drop, data["cond"][idx], config.condition.drop_prob
            )

        def loss_fn(p):
            return method.loss(p, k_loss, data["adj"][idx], data["node_mask"][idx], cond).mean()

        loss, grads = jax.value_and_grad(loss_fn)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        # EMA with the usual warm-up, so that short runs do not average in the initialisation
        d = jnp.minimum(config.train.ema_decay, (1.0 + state["step"]) / (10.0 + state["step"]))
        ema = ema_update(state["ema"], params, d)
        return {"params": params, "ema": ema, "opt": opt, "step": state["step"] + 1}, loss

    def save(state):
        tmp = ckpt_path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(flax.serialization.to_bytes(state))
        os.replace(tmp, ckpt_path)

    writer = MetricWriter(workdir, tensorboard=False)
    start, losses, t0 = int(state["step"]), [], time.time()
    bar = tqdm.trange(start, config.train.steps, desc="train", disable=start >= config.train.steps)
    deadline = time.time() + 60 * config.train.time_limit_minutes
    for i in bar:
        if config.train.time_limit_minutes and time.time() > deadline:
            log(f"time limit of {config.train.time_limit_minutes} minutes reached at step {i}")
            writer.write(i, {"reason": "time_limit"}, kind="stop")
            break
        state, loss = step(state, jax.random.fold_in(key, i + 1))
        losses.append(loss)  # a device array: no host sync on every step
        if (i + 1) % config.train.log_every == 0 or i + 1 == config.train.steps:
            record = {
                "loss": float(np.mean(jax.device_get(losses))),
                "steps_per_s": len(losses) / (time.time() - t0),
            }
            writer.write(i + 1, record, kind="train")
            bar.set_postfix(loss=f"{record['loss']:.4f}")
            losses, t0 = [], time.time()
        if (i + 1) % config.train.checkpoint_every == 0:
            save(state)
    writer.close()
    if int(state["step"]) > start:
        save(state)
    return state["ema"]


def _requests(splits, num, rng):
    """Conditions for generation: domain, node count, average degree and clustering of held-out
    test graphs, so that every request is a combination some real graph has."""
    test = [splits["test"][i] for i in rng.integers(0, len(splits["test"]), num)]
    stats = conditioning.graph_statistics(test)
    domains = np.array([g.graph["domain"] for g in test])
    counts = np.array([g.number_of_nodes() for g in test])
    return {"domain": domains, "num_nodes": counts, **stats}


def generate(
    config, method, params, key, num, max_nodes, count_probs, requests=None, guidance=0.0,
    null_condition=False,
):  # fmt: skip
    """Sample `num` graphs in batches; returns (graphs, seconds per graph excluding compilation).

    With `requests` (conditional model) graph i gets the node count and condition of request i,
    or the null condition if `null_condition` (the unconditional baseline).
    """
    sample_fn = jax.jit(method.sample, static_argnums=4)
    graphs, seconds, b = [], 0.0, config.eval.batch_size
    for start in tqdm.trange(0, num, b, desc="sample"):
        k_nodes, k_sample = jax.random.split(jax.random.fold_in(key, start))
        cond = None
        if requests is None:
            mask = digress.sample_node_mask(k_nodes, jnp.asarray(count_probs), b)
        else:
            sl = slice(start, start + b)
            counts = np.resize(requests["num_nodes"][sl], b)
            mask = jnp.arange(max_nodes) < jnp.asarray(counts)[:, None]
            cond = conditioning.condition_vector(
                np.resize(requests["domain"][sl], b), np.resize(requests["average_degree"][sl], b),
                np.resize(requests["clustering"][sl], b), num_domains=len(datasets.MIXTURE_DOMAINS),
                degree_scale=config.condition.degree_scale,
            )  # fmt: skip
            cond = cond * 0.0 if null_condition else cond
        if start == 0:  # compile ahead of time, outside the timing
            compiled = sample_fn.lower(params, k_sample, mask, cond, guidance).compile()
        t0 = time.time()
        adj = jax.block_until_ready(compiled(params, k_sample, mask, cond))
        seconds += time.time() - t0
        graphs.extend(batching.dense_to_graphs(np.asarray(adj), np.asarray(mask)))
    return graphs[:num], seconds / (-(-num // b) * b)


def _score(config, generated, splits):
    from generative.graphs import mmd, validity  # graph-data's metrics

    kernel = config.eval.kernel
    descriptors = tuple(config.eval.descriptors)
    model = mmd.graph_mmd(generated, splits["test"], descriptors=descriptors, kernel=kernel)
    floor = mmd.graph_mmd(splits["train"], splits["test"], descriptors=descriptors, kernel=kernel)
    if config.eval.validity:
        model.update(validity.vun(generated, splits["train"], validity=config.eval.validity))
        floor.update(validity.vun(splits["test"], splits["train"], validity=config.eval.validity))
    return model, floor


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Rows of metrics as a fixed-width table (metric names as columns)."""
    names = sorted({k for r in rows.values() for k in r})
    lines = ["".ljust(16) + "".join(n[:14].rjust(15) for n in names)]
    for label, r in rows.items():
        lines.append(
            label.ljust(16) + "".join((f"{r[n]:.4g}" if n in r else "-").rjust(15) for n in names)
        )
    return "\n".join(lines)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """Train, sample and evaluate one graph model; returns the results dict (also results.json)."""
    check_config(config)
    os.makedirs(workdir, exist_ok=True)
    splits, max_nodes, data = _prepare_data(config, workdir)
    sizes = np.array([g.number_of_nodes() for g in splits["train"]])
    count_probs = digress.node_count_distribution(sizes, max_nodes)
    method = (_Digress if config.method == "digress" else _Continuous)(config, data, count_probs)
    print(
        f"{config.data.name}: {len(splits['train'])} train / {len(splits['test'])} test graphs, "
        f"at most {max_nodes} nodes"
    )

    ema = train(config, workdir, method, data)
    key = jax.random.fold_in(jax.random.key(config.seed), 10**6)
    num = config.eval.num_samples or len(splits["test"])
    rng = np.random.default_rng(config.seed)
    results = {"config": config.to_dict()}

    if config.condition.enabled:
        requests = _requests(splits, num, rng)
        runs = {
            f"guided w={config.condition.guidance:g}": dict(guidance=config.condition.guidance),
            "conditional w=0": dict(guidance=0.0),
            "unconditional": dict(null_condition=True),
        }
        results["conditional"] = {}
        for label, kwargs in runs.items():
            graphs, sec = generate(
                config, method, ema, key, num, max_nodes, count_probs, requests, **kwargs
            )
            results["conditional"][label] = conditioning.requested_vs_achieved(requests, graphs)
            if label.startswith("guided"):
                generated, guided_sec = graphs, sec
        sec = guided_sec
        print(format_table(results["conditional"]))
    else:
        generated, sec = generate(config, method, ema, key, num, max_nodes, count_probs)
    results["seconds_per_graph"] = sec

    model_metrics, floor = _score(config, generated, splits)
    if config.method == "digress" and config.digress.vlb_samples:
        adj, mask = batching.graphs_to_dense(splits["test"], max_nodes)
        cond = jnp.zeros((len(adj), _cond_dim(config))) if config.condition.enabled else None
        vlb = jax.jit(method.vlb)(
            ema, jax.random.fold_in(key, 1), jnp.asarray(adj), jnp.asarray(mask), cond
        )
        model_metrics["test_nll_bound"] = float(vlb.mean())
    results.update(model=model_metrics, train_vs_test=floor)
    print(format_table({"model": model_metrics, "train vs test": floor}))
    print(f"sampling: {sec * 1e3:.1f} ms per graph")
    with open(os.path.join(workdir, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=float)
    with open(os.path.join(workdir, "samples.json"), "w") as f:
        samples = [{"n": len(g), "edges": [list(map(int, e)) for e in g.edges]} for g in generated]
        json.dump(samples, f)
    return results
