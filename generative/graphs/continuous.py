"""Continuous (score-based) diffusion on the symmetric adjacency matrix, GDSS-style.

A graph with adjacency A [n, n] and node mask becomes the vector of its strict upper triangle,

    x0 = pack(A) - 1/2  in {-1/2, +1/2}^P,  P = n (n - 1) / 2,

so its scale matches EDM's sigma_data = 0.5 and i.i.d. Gaussian (or PFGM++) noise on x0 is exactly
symmetric noise on A with an empty diagonal (GDSS symmetrises its noise the same way). Therefore the
core processes, losses and samplers (generative.losses / samplers / processes: EDM, PFGM++, VP;
heun, dpmpp_2m, predictor-corrector, ...) run on graphs unchanged: they only ever see [B, P] arrays
and a callable `denoise(x, sigma)`.

The denoiser unpacks x into a symmetric [B, n, n] matrix, runs the graph transformer over it with
the node mask, preconditions its output as the chosen kind (EDM Table 1), packs it back and pins
every pair that touches a padded node to the "no edge" value -1/2, so padding costs the loss
nothing and the samplers leave it empty. Samples are quantised by A_ij = [x_ij > 0].
Classifier-free guidance is generative.guidance's: D_w = D(x | null) + w (D(x | c) - D(x | null)).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from generative import guidance, losses, preconditioning
from generative.graphs.transformer import DenseGraph, GraphTransformer
from generative.training import sampling


def _upper_indices(n: int):
    return np.triu_indices(n, k=1)


def pack(matrix: jax.Array) -> jax.Array:
    """Strict upper triangle of [B, n, n] as [B, n (n - 1) / 2]."""
    chex.assert_rank(matrix, 3)
    rows, cols = _upper_indices(matrix.shape[-1])
    return matrix[:, rows, cols]


def num_nodes_from_pairs(num_pairs: int) -> int:
    n = int(round((1 + np.sqrt(1 + 8 * num_pairs)) / 2))
    if n * (n - 1) // 2 != num_pairs:
        raise ValueError(f"{num_pairs} is not n (n - 1) / 2 for any n")
    return n


def unpack(vector: jax.Array) -> jax.Array:
    """Inverse of `pack`: [B, P] -> symmetric [B, n, n] with a zero diagonal."""
    chex.assert_rank(vector, 2)
    n = num_nodes_from_pairs(vector.shape[-1])
    rows, cols = _upper_indices(n)
    upper = jnp.zeros((vector.shape[0], n, n), vector.dtype).at[:, rows, cols].set(vector)
    return upper + jnp.swapaxes(upper, 1, 2)


def pair_mask(node_mask: jax.Array) -> jax.Array:
    """[B, P] bool: both nodes of the pair are real."""
    return pack((node_mask[:, :, None] & node_mask[:, None, :]).astype(jnp.float32)) > 0


def adjacency_to_data(adj: jax.Array) -> jax.Array:
    """0/1 adjacency [B, n, n] -> x0 [B, P] in {-1/2, +1/2}."""
    return pack(adj) - 0.5


def data_to_adjacency(x: jax.Array, node_mask: jax.Array) -> jax.Array:
    """Quantise: A_ij = [x_ij > 0] on real pairs -> 0/1 [B, n, n]."""
    return unpack(((x > 0) & pair_mask(node_mask)).astype(jnp.float32))


class AdjacencyNetwork(nn.Module):
    """Raw network F(x_in, c_noise) over packed noisy adjacencies: the graph transformer sees edge
    feature x_ij, node features (mean of x_i. over real nodes, 1) and globals (c_noise, n / n_max,
    condition)."""

    transformer: GraphTransformer

    @nn.compact
    def __call__(self, x_in, c_noise, node_mask, cond=None):
        chex.assert_rank([x_in, node_mask], 2)
        b, n = node_mask.shape
        m = node_mask.astype(jnp.float32)
        a = unpack(x_in) * m[:, :, None] * m[:, None, :]
        row_mean = a.sum(-1) / jnp.maximum(m.sum(-1, keepdims=True), 1.0)
        nodes = jnp.stack([row_mean, jnp.ones_like(row_mean)], axis=-1)
        c_noise = jnp.broadcast_to(jnp.asarray(c_noise, jnp.float32).reshape(-1), (b,))
        globals_ = [c_noise[:, None], m.mean(-1, keepdims=True)]
        if cond is not None:
            globals_.append(cond)
        out = self.transformer(
            DenseGraph(nodes, a[..., None], jnp.concatenate(globals_, -1), node_mask)
        )
        return pack(out.edges[..., 0])


class AdjacencyDiffusion:
    """Glue between the adjacency network and the core losses / samplers (no state of its own).

    `process` owns the constants (sigma_data, noise range, PFGM++'s D); `precond` and
    `loss_config` are a preconditioning name and a generative.losses.make_loss config.
    """

    def __init__(self, net: AdjacencyNetwork, process, loss_config, precond: str = "edm"):
        self.net = net
        self.process = process
        self.precond = precond
        self.precond_options = preconditioning.process_options(precond, process)
        self.loss_fn = losses.make_loss(loss_config, process)

    def init(self, key, adj, node_mask, cond=None):
        x = adjacency_to_data(adj)
        return self.net.init(key, x, jnp.zeros(x.shape[0]), node_mask, cond)

    def denoiser(self, params, node_mask):
        """denoise(x [B, P], sigma, cond=None) -> x0_hat [B, P], padded pairs pinned to -1/2."""
        mask = pair_mask(node_mask)

        def raw(x_in, c_noise, cond=None):
            return self.net.apply(params, x_in, c_noise, node_mask, cond)

        denoise = preconditioning.precondition(raw, self.precond, **self.precond_options)

        def masked(x, sigma, cond=None):
            return jnp.where(mask, denoise(x, sigma, cond=cond), -0.5)

        return masked

    def loss(self, params, key, adj, node_mask, cond=None):
        """Per-graph loss [B] of the configured core loss on x0 = pack(adj) - 1/2."""
        denoise = self.denoiser(params, node_mask)
        return self.loss_fn(denoise, key, adjacency_to_data(adj), cond=cond)

    def sample(self, params, key, node_mask, *, sampler="heun", sigmas=None, steps=None,
               cond=None, guidance_weight=1.0):  # fmt: skip
        """Graphs (0/1 adjacency [B, n, n]) through a core sampler (generative.training.sampling:
        an ODE/SDE sampler on `sigmas` from the process's kernel at sigmas[0], or a reverse-SDE
        sampler in `steps` steps from its prior). With a condition [B, c], classifier-free
        guidance weight `guidance_weight` against the null (all-zero) condition."""
        b, n = node_mask.shape
        denoise = self.denoiser(params, node_mask)
        if cond is not None:
            denoise = guidance.classifier_free(
                denoise, guidance_weight, cond={"cond": cond}, null={"cond": jnp.zeros_like(cond)}
            )
        x = sampling.sample_denoiser(
            denoise, self.process, key, (b, n * (n - 1) // 2), sampler=sampler, sigmas=sigmas,
            steps=steps,
        )  # fmt: skip
        return data_to_adjacency(x, node_mask)
