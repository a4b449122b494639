"""Conditions for graph generation: domain and target statistics, with classifier-free guidance.

As in LGGM (Wang et al. 2024), one model is trained on a multi-domain mixture and conditioned on
the domain and on target statistics; here the average degree and the average clustering
coefficient. The condition vector of a graph is

    c = [one_hot(domain) (num_domains), average_degree / degree_scale, clustering, present]

and the null condition (label dropout, Ho & Salimans 2022) is all zeros, `present` = 0 included.
Training drops the whole condition at rate training.cond_dropout and sampling mixes conditional
and unconditional predictions, both through generative.guidance (one convention: w = 1 plain
conditional, w = 0 unconditional; for DiGress on the log-probabilities of the x-prediction).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np

from generative.graphs.orbits import check_simple_graph


def graph_statistics(graphs: Sequence[nx.Graph]) -> dict[str, np.ndarray]:
    """Per graph: average degree 2|E|/|V| and average clustering coefficient (networkx)."""
    if len(graphs) == 0:
        raise ValueError("graphs is empty")
    for i, g in enumerate(graphs):
        check_simple_graph(g, f"graphs[{i}]")
    degree = np.array([2.0 * g.number_of_edges() / max(g.number_of_nodes(), 1) for g in graphs])
    clustering = np.array([nx.average_clustering(g) if len(g) else 0.0 for g in graphs])
    return {"average_degree": degree, "clustering": clustering}


def condition_dim(num_domains: int) -> int:
    return num_domains + 3


def condition_vector(domain, average_degree, clustering, *, num_domains: int, degree_scale: float):
    """Condition vectors [B, num_domains + 3] (see the module docstring)."""
    domain = jnp.asarray(domain, jnp.int32)
    chex.assert_rank(domain, 1)
    if num_domains < 1 or degree_scale <= 0:
        raise ValueError(
            f"need num_domains >= 1 and degree_scale > 0, got {num_domains}, {degree_scale}"
        )
    degree = jnp.asarray(average_degree, jnp.float32)
    clustering = jnp.asarray(clustering, jnp.float32)
    chex.assert_shape([degree, clustering], domain.shape)
    return jnp.concatenate(
        [
            jax.nn.one_hot(domain, num_domains),
            (degree / degree_scale)[:, None],
            clustering[:, None],
            jnp.ones_like(degree)[:, None],
        ],
        axis=-1,
    )


def requested_vs_achieved(requested: dict, graphs: Sequence[nx.Graph]) -> dict[str, float]:
    """Mean absolute error and correlation between requested and achieved statistics."""
    achieved = graph_statistics(graphs)
    out = {}
    for name in ("average_degree", "clustering"):
        req, got = np.asarray(requested[name], float), achieved[name]
        out[f"{name}_mae"] = float(np.mean(np.abs(req - got)))
        out[f"{name}_corr"] = (
            float(np.corrcoef(req, got)[0, 1]) if req.std() > 0 and got.std() > 0 else 0.0
        )
        out[f"{name}_requested_mean"] = float(req.mean())
        out[f"{name}_achieved_mean"] = float(got.mean())
    return out
