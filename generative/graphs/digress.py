"""DiGress: discrete denoising diffusion on graphs (Vignac et al., ICLR 2023).

A graph is a one-hot node-type tensor X [B, n, Kx] and a one-hot edge-type tensor E [B, n, n, Ke]
(edge type 0 = "no edge"), with a node mask [B, n]. Padded nodes, padded pairs and the diagonal
hold all-zero vectors; E is symmetric.

Forward process, independently per node and per unordered pair, with a marginal row vector m:
    Q_t    = alpha_t I + (1 - alpha_t) 1 m^T            (one step, rows sum to 1)
    Qbar_t = abar_t  I + (1 - abar_t)  1 m^T,  abar_t = prod_{s<=t} alpha_s,  q(z_t | x) = x Qbar_t
m is uniform (`uniform` transition) or the training marginals of node and edge types (`marginal`,
which DiGress shows works better; m is then the stationary distribution of every Q_t).
The cosine schedule abar_t = f(t) / f(0), f(t) = cos^2(pi/2 (t/T + s) / (1 + s)) (Nichol & Dhariwal
2021), t = 0..T, so abar_0 = 1 exactly and abar_T = 0.

Posterior (DiGress Eq. 3 / App. A):
    q(z_{t-1} | z_t, x) = (z_t Q_t^T) o (x Qbar_{t-1}) / (x Qbar_t z_t^T),
and the reverse step marginalises the network's x-prediction p_theta(x | z_t):
    p_theta(z_{t-1} | z_t) = sum_x p_theta(x | z_t) q(z_{t-1} | z_t, x).
Training minimises cross-entropy of p_theta(x | z_t) with edge weight lambda (DiGress uses 5).
With abar_0 = 1 the last reverse step returns a draw of p_theta(x | z_1) itself, so the variational
bound is  -log p(n) + KL(q(z_T|x) || m) + sum_{t=1}^T E KL(q(z_{t-1}|z_t,x) || p_theta(z_{t-1}|z_t))
with the t = 1 term equal to -log p_theta(x | z_1).
"""

from __future__ import annotations

from collections.abc import Callable

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from generative.graphs import features as graph_features
from generative.graphs.transformer import DenseGraph, GraphTransformer

# denoise_logits(X_t, E_t, t_frac, node_mask) -> (node logits [B, n, Kx], edge logits [B, n, n, Ke])
LogitsFn = Callable[[jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

_TINY = 1e-12


def cosine_alpha_bars(num_steps: int, s: float = 0.008) -> np.ndarray:
    """abar_t for t = 0..T (abar_0 = 1, abar_T = 0), the cosine schedule."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    t = np.arange(num_steps + 1) / num_steps
    f = np.cos(0.5 * np.pi * (t + s) / (1 + s)) ** 2
    return np.clip(f / f[0], 0.0, 1.0)


def transition_matrix(alpha, marginal: jax.Array) -> jax.Array:
    """alpha I + (1 - alpha) 1 m^T, for alpha of any batch shape: [..., K, K]."""
    alpha = jnp.asarray(alpha, jnp.float32)[..., None, None]
    k = marginal.shape[-1]
    return alpha * jnp.eye(k) + (1.0 - alpha) * marginal[None, :]


@flax.struct.dataclass
class DiscreteDiffusion:
    """The forward process: abar_t [T + 1] and the limit marginals of node and edge types."""

    alpha_bars: jax.Array
    node_marginal: jax.Array
    edge_marginal: jax.Array

    @property
    def num_steps(self) -> int:
        return self.alpha_bars.shape[0] - 1

    def alpha(self, t):
        """One-step alpha_t = abar_t / abar_{t-1}, t >= 1 (0 where abar_{t-1} = 0)."""
        prev = self.alpha_bars[t - 1]
        return jnp.where(prev > 0, self.alpha_bars[t] / jnp.maximum(prev, _TINY), 0.0)


def make_diffusion(
    num_steps: int,
    transition: str,
    node_marginal=None,
    edge_marginal=None,
    *,
    num_node_types=1,
    num_edge_types=2,
) -> DiscreteDiffusion:
    """Build the process. transition 'uniform' ignores the marginals; 'marginal' needs them."""
    if transition == "uniform":
        node_m = np.full(num_node_types, 1.0 / num_node_types)
        edge_m = np.full(num_edge_types, 1.0 / num_edge_types)
    elif transition == "marginal":
        if node_marginal is None or edge_marginal is None:
            raise ValueError("transition='marginal' needs node_marginal and edge_marginal")
        node_m, edge_m = np.asarray(node_marginal, float), np.asarray(edge_marginal, float)
        for name, m in (("node_marginal", node_m), ("edge_marginal", edge_m)):
            if m.ndim != 1 or np.any(m < 0) or not np.isclose(m.sum(), 1.0):
                raise ValueError(f"{name} must be a 1-D probability vector, got {m}")
    else:
        raise ValueError(f"transition must be 'uniform' or 'marginal', got {transition!r}")
    return DiscreteDiffusion(
        jnp.asarray(cosine_alpha_bars(num_steps), jnp.float32),
        jnp.asarray(node_m, jnp.float32),
        jnp.asarray(edge_m, jnp.float32),
    )


def type_marginals(adj: np.ndarray, node_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training marginals for structure-only graphs: one node type; edge types (absent, present)
    over the unordered pairs of real nodes."""
    n_real = node_mask.sum(-1)
    pairs = float(np.sum(n_real * (n_real - 1) / 2))
    p_edge = float(np.triu(adj, 1).sum()) / max(pairs, 1.0)
    return np.ones(1), np.array([1.0 - p_edge, p_edge])


# ----------------------------------------------------------------------------- graph tensors


def masks(node_mask: jax.Array):
    """(node mask [B, n, 1], pair mask [B, n, n, 1] without the diagonal) as float32."""
    m = node_mask.astype(jnp.float32)
    pair = m[:, :, None] * m[:, None, :] * (1.0 - jnp.eye(m.shape[-1]))
    return m[..., None], pair[..., None]


def one_hot_graph(adj: jax.Array, node_mask: jax.Array, num_node_types: int = 1):
    """Structure-only graph -> (X [B, n, Kx], E [B, n, n, 2]); node type 0, edge type = adj."""
    chex.assert_rank([adj, node_mask], [3, 2])
    node_m, pair_m = masks(node_mask)
    x = jax.nn.one_hot(jnp.zeros(node_mask.shape, jnp.int32), num_node_types) * node_m
    e = jax.nn.one_hot((adj > 0.5).astype(jnp.int32), 2) * pair_m
    return x, e


def _sample_symmetric_edges(key, probs, pair_mask):
    """Categorical draw per unordered pair (upper triangle), mirrored; diagonal and padding zero."""
    n = probs.shape[1]
    types = jax.random.categorical(key, jnp.log(jnp.maximum(probs, _TINY)))
    upper = jnp.triu(jnp.ones((n, n), bool), 1)
    types = jnp.where(upper, types, jnp.swapaxes(types, 1, 2))
    return jax.nn.one_hot(types, probs.shape[-1]) * pair_mask


def _sample_nodes(key, probs, node_m):
    types = jax.random.categorical(key, jnp.log(jnp.maximum(probs, _TINY)))
    return jax.nn.one_hot(types, probs.shape[-1]) * node_m


def apply_noise(key, diffusion: DiscreteDiffusion, x, e, node_mask, t):
    """Draw z_t ~ x Qbar_t per node and per unordered pair; t int [B] in 0..T."""
    node_m, pair_m = masks(node_mask)
    abar = diffusion.alpha_bars[t]
    px = abar[:, None, None] * x + (1 - abar[:, None, None]) * diffusion.node_marginal
    pe = abar[:, None, None, None] * e + (1 - abar[:, None, None, None]) * diffusion.edge_marginal
    kx, ke = jax.random.split(key)
    return _sample_nodes(kx, px, node_m), _sample_symmetric_edges(ke, pe, pair_m)


def posterior(diffusion: DiscreteDiffusion, z_t, x0, t, marginal):
    """Exact q(z_{t-1} | z_t, x0) for one-hot (or probability-row) x0 [..., K]; t broadcasts.

    (z_t Q_t^T) o (x0 Qbar_{t-1}) normalised over z_{t-1}.
    """
    q_t = transition_matrix(diffusion.alpha(t), marginal)
    qbar_prev = transition_matrix(diffusion.alpha_bars[t - 1], marginal)
    left = jnp.einsum("...k,...jk->...j", z_t, q_t)
    right = jnp.einsum("...k,...kj->...j", x0, qbar_prev)
    unnorm = left * right
    return unnorm / jnp.maximum(unnorm.sum(-1, keepdims=True), _TINY)


def posterior_from_x0_probs(diffusion: DiscreteDiffusion, z_t, p_x0, t, marginal):
    """p(z_{t-1} | z_t) = sum_x p(x | z_t) q(z_{t-1} | z_t, x), with p_x0 [..., K] probabilities.

    Each q(. | z_t, x) = Qbar_{t-1}[x, :] o (z_t Q_t^T) / Qbar_t[x, z_t], so the sum is
    ((p / Qbar_t[:, z_t]) Qbar_{t-1}) o (z_t Q_t^T).
    """
    q_t = transition_matrix(diffusion.alpha(t), marginal)
    qbar_t = transition_matrix(diffusion.alpha_bars[t], marginal)
    qbar_prev = transition_matrix(diffusion.alpha_bars[t - 1], marginal)
    left = jnp.einsum("...k,...jk->...j", z_t, q_t)
    evidence = jnp.einsum("...k,...xk->...x", z_t, qbar_t)  # Qbar_t[x, z_t] for every x
    weights = p_x0 / jnp.maximum(evidence, _TINY)
    unnorm = jnp.einsum("...x,...xj->...j", weights, qbar_prev) * left
    return unnorm / jnp.maximum(unnorm.sum(-1, keepdims=True), _TINY)


# ------------------------------------------------------------------------------------ network


class DigressNetwork(nn.Module):
    """Graph transformer predicting x-logits from z_t, the time t/T, structural features of z_t and
    an optional condition vector `cond` [B, dc] (appended to the global features)."""

    transformer: GraphTransformer
    structural_features: bool = True

    @nn.compact
    def __call__(self, x_t, e_t, t_frac, node_mask, cond=None):
        chex.assert_rank([x_t, e_t, t_frac, node_mask], [3, 4, 1, 2])
        n = node_mask.shape[-1]
        node_m, pair_m = masks(node_mask)
        size = node_mask.sum(-1, keepdims=True) / n
        nodes, globals_ = [x_t], [t_frac[:, None], size]
        if self.structural_features:
            adj = 1.0 - e_t[..., 0] - (1.0 - pair_m[..., 0])  # any edge type but "none"
            node_f, graph_f = graph_features.structural_features(adj, node_mask)
            nodes.append(node_f)
            globals_.append(graph_f)
        if cond is not None:
            globals_.append(cond)
        graph = DenseGraph(
            jnp.concatenate(nodes, -1), e_t, jnp.concatenate(globals_, -1), node_mask
        )
        out = self.transformer(graph)
        return out.nodes * node_m, out.edges * pair_m


def _masked_mean(values, mask, axes):
    return (values * mask).sum(axes) / jnp.maximum(mask.sum(axes), 1.0)


def training_loss(
    key,
    denoise_logits: LogitsFn,
    diffusion: DiscreteDiffusion,
    x,
    e,
    node_mask,
    edge_weight: float = 5.0,
):
    """Per-graph loss [B]: CE(nodes) + lambda CE(edges), each averaged over the graph's real nodes /
    ordered pairs, at t ~ U{1..T} (DiGress Eq. 4 with lambda = `edge_weight`)."""
    chex.assert_rank([x, e, node_mask], [3, 4, 2])
    kt, kn = jax.random.split(key)
    b = x.shape[0]
    t = jax.random.randint(kt, (b,), 1, diffusion.num_steps + 1)
    x_t, e_t = apply_noise(kn, diffusion, x, e, node_mask, t)
    logits_x, logits_e = denoise_logits(x_t, e_t, t / diffusion.num_steps, node_mask)
    node_m, pair_m = masks(node_mask)
    ce_x = -jnp.sum(x * jax.nn.log_softmax(logits_x), -1, keepdims=True)
    ce_e = -jnp.sum(e * jax.nn.log_softmax(logits_e), -1, keepdims=True)
    return _masked_mean(ce_x, node_m, (1, 2)) + edge_weight * _masked_mean(ce_e, pair_m, (1, 2, 3))


def _reverse_step(key, diffusion, denoise_logits, x_t, e_t, node_mask, t):
    node_m, pair_m = masks(node_mask)
    tb = jnp.full((x_t.shape[0],), t)
    logits_x, logits_e = denoise_logits(x_t, e_t, tb / diffusion.num_steps, node_mask)
    px = posterior_from_x0_probs(
        diffusion, x_t, jax.nn.softmax(logits_x), t, diffusion.node_marginal
    )
    pe = posterior_from_x0_probs(
        diffusion, e_t, jax.nn.softmax(logits_e), t, diffusion.edge_marginal
    )
    kx, ke = jax.random.split(key)
    return _sample_nodes(kx, px, node_m), _sample_symmetric_edges(ke, pe, pair_m)


def sample(key, denoise_logits: LogitsFn, diffusion: DiscreteDiffusion, node_mask):
    """Ancestral sampling z_T ~ m, z_{t-1} ~ p_theta(z_{t-1} | z_t), t = T..1 (lax.scan).

    Returns (X [B, n, Kx], E [B, n, n, Ke]) one-hot; E symmetric with an empty diagonal.
    """
    chex.assert_rank(node_mask, 2)
    b, n = node_mask.shape
    node_m, pair_m = masks(node_mask)
    k0, kx, ke = jax.random.split(key, 3)
    x = _sample_nodes(
        kx,
        jnp.broadcast_to(diffusion.node_marginal, (b, n, diffusion.node_marginal.shape[0])),
        node_m,
    )
    e = _sample_symmetric_edges(
        ke,
        jnp.broadcast_to(diffusion.edge_marginal, (b, n, n, diffusion.edge_marginal.shape[0])),
        pair_m,
    )

    def step(carry, t):
        x, e, k = carry
        k, sub = jax.random.split(k)
        x, e = _reverse_step(sub, diffusion, denoise_logits, x, e, node_mask, t)
        return (x, e, k), None

    steps = jnp.arange(diffusion.num_steps, 0, -1)
    (x, e, _), _ = jax.lax.scan(step, (x, e, k0), steps)
    return x, e


def node_count_distribution(sizes, max_nodes: int) -> np.ndarray:
    """Empirical distribution of node counts over 0..max_nodes (for sampling and -log p(n))."""
    sizes = np.asarray(sizes)
    if sizes.size == 0 or sizes.min() < 1 or sizes.max() > max_nodes:
        raise ValueError(f"node counts must lie in 1..max_nodes={max_nodes}, got {sizes}")
    return np.bincount(sizes, minlength=max_nodes + 1) / sizes.size


def sample_node_mask(key, count_probs, batch_size: int):
    """node_mask [B, max_nodes] with n ~ count_probs (the training distribution)."""
    max_nodes = count_probs.shape[0] - 1
    counts = jax.random.categorical(
        key, jnp.log(jnp.maximum(count_probs, _TINY)), shape=(batch_size,)
    )
    return jnp.arange(max_nodes) < counts[:, None]


def _kl(p, q, mask, axes):
    """sum over masked positions of KL(p || q) for distributions on the last axis."""
    terms = jnp.where(
        p > 0, p * (jnp.log(jnp.maximum(p, _TINY)) - jnp.log(jnp.maximum(q, _TINY))), 0.0
    )
    return (terms.sum(-1, keepdims=True) * mask).sum(axes)


def variational_bound(
    key,
    denoise_logits: LogitsFn,
    diffusion: DiscreteDiffusion,
    x,
    e,
    node_mask,
    count_probs,
    num_t_samples: int = 8,
):
    """Monte-Carlo estimate of the negative ELBO in nats per graph [B] (see the module docstring).

    Counts each unordered pair once. The sum over t is T times the mean over `num_t_samples`
    stratified draws of t per graph (an unbiased estimate).
    """
    chex.assert_rank([x, e, node_mask], [3, 4, 2])
    b = x.shape[0]
    node_m, pair_m = masks(node_mask)
    upper = pair_m * jnp.triu(jnp.ones(pair_m.shape[1:3]), 1)[None, :, :, None]
    n_real = node_mask.sum(-1)
    log_pn = jnp.log(jnp.maximum(count_probs[n_real], _TINY))

    abar_T = diffusion.alpha_bars[-1]
    prior_x = abar_T * x + (1 - abar_T) * diffusion.node_marginal
    prior_e = abar_T * e + (1 - abar_T) * diffusion.edge_marginal
    kl_prior = _kl(prior_x, diffusion.node_marginal, node_m, (1, 2)) + _kl(
        prior_e, diffusion.edge_marginal, upper, (1, 2, 3)
    )

    T = diffusion.num_steps

    def term(key_i, i):
        kt, kn = jax.random.split(key_i)
        u = (i + jax.random.uniform(kt, (b,))) / num_t_samples
        t = jnp.clip(jnp.floor(u * T).astype(jnp.int32) + 1, 1, T)
        x_t, e_t = apply_noise(kn, diffusion, x, e, node_mask, t)
        logits_x, logits_e = denoise_logits(x_t, e_t, t / T, node_mask)
        tx, te = t[:, None], t[:, None, None]
        qx = posterior(diffusion, x_t, x, tx, diffusion.node_marginal)
        qe = posterior(diffusion, e_t, e, te, diffusion.edge_marginal)
        px = posterior_from_x0_probs(
            diffusion, x_t, jax.nn.softmax(logits_x), tx, diffusion.node_marginal
        )
        pe = posterior_from_x0_probs(
            diffusion, e_t, jax.nn.softmax(logits_e), te, diffusion.edge_marginal
        )
        return _kl(qx, px, node_m, (1, 2)) + _kl(qe, pe, upper, (1, 2, 3))

    keys = jax.random.split(key, num_t_samples)
    diffusion_terms = jax.vmap(term, out_axes=0)(keys, jnp.arange(num_t_samples))
    return -log_pn + kl_prior + T * diffusion_terms.mean(0)
