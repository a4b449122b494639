"""Conditions for graph generation: domain and target statistics, with classifier-free guidance.

As in LGGM (Wang et al. 2024), one model is trained on a multi-domain mixture and conditioned on
the domain and on target statistics; here the average degree and the average clustering
coefficient. The condition vector of a graph is

    c = [one_hot(domain) (num_domains), average_degree / degree_scale, clustering, present]

and the null condition (label dropout, Ho & Salimans 2022) is all zeros, `present` = 0 included.
Training drops the whole condition with probability `drop_prob`; sampling mixes conditional and
unconditional predictions. For the discrete (DiGress) model guidance acts on log-probabilities of
the x-prediction,
    log p_w(x | z_t, c) = (1 + w) log p(x | z_t, c) - w log p(x | z_t, null), renormalised,
the categorical analogue of the guided score (w = 0: plain conditional).
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np


def graph_statistics(graphs: Sequence[nx.Graph]) -> dict[str, np.ndarray]:
    """Per graph: average degree 2|E|/|V| and average clustering coefficient (networkx)."""
    if len(graphs) == 0:
        raise ValueError("graphs is empty")
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


def drop_conditions(key, cond: jax.Array, drop_prob: float) -> jax.Array:
    """Replace each row by the null condition (zeros) with probability drop_prob."""
    if not 0.0 <= drop_prob < 1.0:
        raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
    keep = jax.random.bernoulli(key, 1.0 - drop_prob, (cond.shape[0], 1))
    return cond * keep


def guided_logits(logits_fn, cond: jax.Array, guidance: float):
    """Classifier-free guided x-prediction for DiGress: logits_fn(x_t, e_t, t, mask, cond) ->
    (node logits, edge logits) becomes a function of (x_t, e_t, t, mask) (see the docstring)."""
    null = jnp.zeros_like(cond)

    def guided(x_t, e_t, t_frac, node_mask):
        if guidance == 0.0:
            return logits_fn(x_t, e_t, t_frac, node_mask, cond)
        both = logits_fn(
            jnp.concatenate([x_t, x_t]),
            jnp.concatenate([e_t, e_t]),
            jnp.concatenate([t_frac, t_frac]),
            jnp.concatenate([node_mask, node_mask]),
            jnp.concatenate([cond, null]),
        )
        b = x_t.shape[0]
        return tuple(
            (1 + guidance) * jax.nn.log_softmax(out[:b]) - guidance * jax.nn.log_softmax(out[b:])
            for out in both
        )

    return guided


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
