"""Graph generation as tasks of the one train loop (generative.training.task).

* 'digress': DiGress (Vignac et al. 2023) on structure-only graphs: discrete diffusion over
  (absent, present) edge types with marginal or uniform transitions (generative.graphs.digress).
* 'graph_diffusion': continuous diffusion of the adjacency's upper triangle under config.process
  with the core losses and samplers (generative.graphs.continuous).

Both train the graph transformer on dense padded batches {'adj' [B, n, n], 'node_mask' [B, n],
'cond' [B, c]} drawn from the training split: batch k holds the graphs
np.random.default_rng([seed, k]).choice(...) (with replacement only when the split is smaller than
the batch), so the stream is a pure function of the step and resume is exact. Samples are lists of
networkx graphs with node counts drawn from the training distribution, or, for a conditional
model (task.condition), the node counts and statistics of held-out test graphs (every request is
a combination some real graph has).

Evaluators added to generative.training.evaluation.EVALUATORS: 'graph_mmd' (degree / clustering /
orbit / spectral MMD^2 against the test split, next to the train-versus-test floor), 'graph_vun'
(valid, unique, novel), 'digress_nll' (the variational bound on the test graphs, nats per graph),
'graph_conditional' (requested versus achieved statistics at w = sample.guidance, 1 and 0).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from generative import guidance
from generative.graphs import batching, conditioning, continuous, datasets, digress, mmd, validity
from generative.graphs.transformer import GraphTransformer
from generative.processes import process_from_config
from generative.training import evaluation, sampling
from generative.training.config_checks import check_diffusion_fields
from generative.training.task import Phase, TaskBase
from generative.training.visualize import save_png

DATA_CACHE = os.path.join(evaluation.CLASSIFIER_CACHE, "graphs")
MODEL_FIELDS = (
    "num_layers", "hidden_nodes", "hidden_edges", "hidden_globals", "num_heads", "ffn_nodes",
    "ffn_edges", "ffn_globals",
)  # fmt: skip


def graph_transformer(model_config, out_edges: int) -> GraphTransformer:
    fields = {name: model_config[name] for name in MODEL_FIELDS}
    return GraphTransformer(**fields, out_nodes=1, out_edges=out_edges)


class GraphTask(TaskBase):
    """What both graph tasks share: the data, the batches, the conditions and the sampling loop."""

    trainable = ("net",)

    def __init__(self, config):
        super().__init__(config)
        data = config.data
        if data.name not in datasets.DATASET_NAMES:
            raise ValueError(f"data.name {data.name!r} unknown; known: {datasets.DATASET_NAMES}")
        self.conditional = bool(config.task.condition)
        if self.conditional and data.name != "mixture":
            raise ValueError("task.condition needs data.name = 'mixture' (domain labels)")
        if config.eval.validity not in ("", "planar", "sbm"):
            raise ValueError(
                f"eval.validity must be '', 'planar' or 'sbm', got {config.eval.validity!r}"
            )
        splits = datasets.load_dataset(data.name, workdir=DATA_CACHE, seed=data.seed)
        max_nodes = data.max_nodes or max(g.number_of_nodes() for g in splits["train"])
        splits = {k: [g for g in v if g.number_of_nodes() <= max_nodes] for k, v in splits.items()}
        if not splits["train"] or not splits["test"]:
            raise ValueError(f"no graphs with at most {max_nodes} nodes in {data.name}")
        self.splits, self.max_nodes = splits, max_nodes
        self.adj, self.node_mask = batching.graphs_to_dense(splits["train"], max_nodes)
        sizes = [g.number_of_nodes() for g in splits["train"]]
        self.count_probs = digress.node_count_distribution(sizes, max_nodes)
        self.cond = None
        if self.conditional:
            stats = conditioning.graph_statistics(splits["train"])
            domains = [g.graph["domain"] for g in splits["train"]]
            self.cond = np.asarray(self._condition(domains, **stats))
        self._samplers = {}

    def _condition(self, domains, average_degree, clustering):
        return conditioning.condition_vector(
            domains,
            average_degree,
            clustering,
            num_domains=len(datasets.MIXTURE_DOMAINS),
            degree_scale=self.config.task.degree_scale,
        )

    def describe(self) -> str:
        return (
            f"{self.config.data.name}: {len(self.splits['train'])} train / "
            f"{len(self.splits['test'])} test graphs, at most {self.max_nodes} nodes"
        )

    # ------------------------------------------------------------------ data

    def _batch(self, index):
        batch = {"adj": self.adj[index], "node_mask": self.node_mask[index]}
        if self.cond is not None:
            batch["cond"] = self.cond[index]
        return batch

    def example_batch(self):
        return self._batch(np.arange(2) % len(self.adj))

    def train_batches(self, start_step, batch_size, process_index, process_count):
        num, total = len(self.adj), batch_size * process_count
        step = start_step
        while True:
            rng = np.random.default_rng([self.config.seed, step])
            index = rng.choice(num, total, replace=num < total)
            yield self._batch(index[process_index * batch_size : (process_index + 1) * batch_size])
            step += 1

    def dropped_condition(self, key, batch):
        if self.cond is None:
            return None
        cond = batch["cond"]
        return guidance.drop_condition(
            key, cond, jnp.zeros_like(cond), self.config.training.cond_dropout
        )

    # ------------------------------------------------------------------ sampling

    def requests(self, num: int, seed: int) -> dict:
        """Conditions for generation: domain, node count, average degree and clustering of `num`
        held-out test graphs drawn with replacement."""
        rng = np.random.default_rng(seed)
        test = [self.splits["test"][i] for i in rng.integers(0, len(self.splits["test"]), num)]
        stats = conditioning.graph_statistics(test)
        return {
            "domain": np.array([g.graph["domain"] for g in test]),
            "num_nodes": np.array([g.number_of_nodes() for g in test]),
            **stats,
        }

    def num_eval_samples(self):
        return self.config.eval.num_samples or len(self.splits["test"])

    def sample(self, params, key, num, *, sampler=None, steps=None, guidance_weight=None,
               requests=None, batch_size=None, progress=None):  # fmt: skip
        """`num` networkx graphs, `batch_size` (default eval.batch_size) per jitted call. A
        conditional model samples the requests (default: those of `num` test graphs)."""
        config = self.config
        w = config.sample.guidance if guidance_weight is None else guidance_weight
        b = batch_size or config.eval.batch_size
        run = self._sampler(sampler or config.sample.sampler, steps or config.sample.steps, w)
        if self.conditional and requests is None:
            requests = self.requests(num, config.seed)
        graphs = []
        for start in range(0, num, b):
            node_key, sample_key = jax.random.split(jax.random.fold_in(key, start))
            cond = None
            if requests is None:
                mask = digress.sample_node_mask(node_key, jnp.asarray(self.count_probs), b)
            else:
                part = {k: np.resize(v[start : start + b], b) for k, v in requests.items()}
                mask = jnp.arange(self.max_nodes) < jnp.asarray(part["num_nodes"])[:, None]
                cond = self._condition(part["domain"], part["average_degree"], part["clustering"])
            adj = run(params, sample_key, mask, cond)
            graphs.extend(batching.dense_to_graphs(np.asarray(adj), np.asarray(mask)))
            if progress is not None:
                progress(min(b, num - start))
        return graphs[:num]

    def _sampler(self, sampler, steps, w):
        cache_key = (sampler, steps, w)
        if cache_key not in self._samplers:
            self._samplers[cache_key] = jax.jit(functools.partial(self.sample_adjacency, w=w))
        return self._samplers[cache_key]

    def save_samples(self, path, samples):
        save_png(path, samples)


class DigressTask(GraphTask):
    """DiGress: the graph transformer predicts clean node / edge types from z_t (CE loss with edge
    weight task.edge_weight), sampled ancestrally over task.num_steps steps."""

    def __init__(self, config):
        super().__init__(config)
        task = config.task
        node_m, edge_m = digress.type_marginals(self.adj, self.node_mask)
        self.diffusion = digress.make_diffusion(task.num_steps, task.transition, node_m, edge_m)
        self.net = digress.DigressNetwork(
            graph_transformer(config.model, 2), config.model.structural_features
        )

    def init(self, key, example_batch):
        x, e = digress.one_hot_graph(example_batch["adj"], example_batch["node_mask"])
        cond = example_batch.get("cond")
        t = jnp.zeros(x.shape[0])
        return {"net": self.net.init(key, x, e, t, example_batch["node_mask"], cond)["params"]}

    def logits_fn(self, params, cond):
        def logits(x_t, e_t, t_frac, node_mask, cond=cond):
            return self.net.apply({"params": params["net"]}, x_t, e_t, t_frac, node_mask, cond)

        return logits

    def loss_fn(self, params, frozen, batch, key):
        del frozen
        drop_key, loss_key = jax.random.split(key)
        cond = self.dropped_condition(drop_key, batch)
        x, e = digress.one_hot_graph(batch["adj"], batch["node_mask"])
        per_graph = digress.training_loss(
            loss_key,
            self.logits_fn(params, cond),
            self.diffusion,
            x,
            e,
            batch["node_mask"],
            self.config.task.edge_weight,
        )
        return per_graph.mean(), {}

    def phases(self):
        return [Phase("net", self.loss_fn)]

    def sample_adjacency(self, params, key, node_mask, cond, *, w):
        logits = self.logits_fn(params, None)
        if cond is not None:
            logits = guidance.classifier_free_logits(
                logits, w, cond={"cond": cond}, null={"cond": jnp.zeros_like(cond)}
            )
        _, e = digress.sample(key, logits, self.diffusion, node_mask)
        return e[..., 1:].sum(-1)

    def test_nll_bound(self, params, key) -> float:
        """The variational bound (nats per graph) on the test split, null condition."""
        adj, mask = batching.graphs_to_dense(self.splits["test"], self.max_nodes)
        x, e = digress.one_hot_graph(jnp.asarray(adj), jnp.asarray(mask))
        cond = None
        if self.conditional:
            cond = jnp.zeros((len(adj), self.cond.shape[-1]))

        @jax.jit
        def bound(params, key):
            return digress.variational_bound(
                key,
                self.logits_fn(params, cond),
                self.diffusion,
                x,
                e,
                jnp.asarray(mask),
                jnp.asarray(self.count_probs),
                self.config.task.vlb_samples,
            )

        return float(bound(params, key).mean())


class AdjacencyDiffusionTask(GraphTask):
    """Continuous diffusion of the packed adjacency under config.process (EDM, PFGM++, VP, ...),
    trained with task.loss and task.precond, sampled with sample.sampler."""

    def __init__(self, config):
        check_diffusion_fields(config)
        super().__init__(config)
        self.process = process_from_config(config.process)
        self.model = continuous.AdjacencyDiffusion(
            net=continuous.AdjacencyNetwork(graph_transformer(config.model, 1)),
            process=self.process,
            loss_config=config.task.loss,
            precond=config.task.precond.name,
        )

    def init(self, key, example_batch):
        adj, mask = example_batch["adj"], example_batch["node_mask"]
        return {"net": self.model.init(key, adj, mask, example_batch.get("cond"))}

    def loss_fn(self, params, frozen, batch, key):
        del frozen
        drop_key, loss_key = jax.random.split(key)
        cond = self.dropped_condition(drop_key, batch)
        per_graph = self.model.loss(params["net"], loss_key, batch["adj"], batch["node_mask"], cond)
        return per_graph.mean(), {}

    def phases(self):
        return [Phase("net", self.loss_fn)]

    def sample_adjacency(self, params, key, node_mask, cond, *, w, sampler=None, steps=None):
        config = self.config
        sampler = sampler or config.sample.sampler
        steps = steps or config.sample.steps
        sigmas = None
        if sampler not in sampling.SDE_SAMPLERS:
            sigmas = sampling.noise_levels(self.process, config.sample, steps)
        return self.model.sample(
            params["net"], key, node_mask, sampler=sampler, sigmas=sigmas, steps=steps,
            cond=cond, guidance_weight=w,
        )  # fmt: skip

    def _sampler(self, sampler, steps, w):
        cache_key = (sampler, steps, w)
        if cache_key not in self._samplers:
            run = functools.partial(self.sample_adjacency, w=w, sampler=sampler, steps=steps)
            self._samplers[cache_key] = jax.jit(run)
        return self._samplers[cache_key]


# ---------------------------------------------------------------------------------- evaluators


def _graph_mmd(graphs, context):
    task, config = context.task, context.config
    options = dict(descriptors=tuple(config.eval.descriptors), kernel=config.eval.kernel)
    model = mmd.graph_mmd(graphs, task.splits["test"], **options)
    floor = mmd.graph_mmd(task.splits["train"], task.splits["test"], **options)
    return {**model, **{f"{name}_floor": value for name, value in floor.items()}}


def _graph_vun(graphs, context):
    task, kind = context.task, context.config.eval.validity or None
    model = validity.vun(graphs, task.splits["train"], validity=kind)
    floor = validity.vun(task.splits["test"], task.splits["train"], validity=kind)
    return {**model, **{f"{name}_floor": value for name, value in floor.items()}}


def _digress_nll(graphs, context):
    del graphs
    return {"test_nll_bound": context.task.test_nll_bound(context.params, context.key)}


def _graph_conditional(graphs, context):
    """Requested versus achieved statistics at w = sample.guidance (the given samples), w = 1
    (plain conditional) and w = 0 (unconditional), on the same requests."""
    task, config = context.task, context.config
    num = len(graphs)
    requests = task.requests(num, config.seed)
    out = {}
    for w in sorted({float(config.sample.guidance), 1.0, 0.0}, reverse=True):
        if w == config.sample.guidance:
            sampled = graphs
        else:
            sampled = task.sample(context.params, context.key, num, guidance_weight=w,
                                  requests=requests)  # fmt: skip
        stats = conditioning.requested_vs_achieved(requests, sampled)
        out.update({f"w{w:g}_{name}": value for name, value in stats.items()})
    return out


evaluation.register_evaluator("graph_mmd", _graph_mmd)
evaluation.register_evaluator("graph_vun", _graph_vun)
evaluation.register_evaluator("digress_nll", _digress_nll)
evaluation.register_evaluator("graph_conditional", _graph_conditional)
