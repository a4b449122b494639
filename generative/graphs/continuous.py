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
Classifier-free guidance mixes denoiser outputs: D_w = (1 + w) D(x | c) - w D(x | null).
"""

from __future__ import annotations

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from generative import losses, preconditioning, processes, samplers, schedules, sde_samplers
from generative.graphs.transformer import DenseGraph, GraphTransformer

SDE_SAMPLERS = ("euler_maruyama", "predictor_corrector")


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
    """Glue between the adjacency network and the core losses / samplers (no state of its own)."""

    def __init__(
        self, net: AdjacencyNetwork, loss_config, precondition: str = "edm", sigma_data: float = 0.5
    ):
        self.net = net
        self.precondition = precondition
        self.sigma_data = sigma_data
        self.loss_fn = losses.make_loss(ml_collections.ConfigDict({"loss": loss_config}))

    def init(self, key, adj, node_mask, cond=None):
        x = adjacency_to_data(adj)
        return self.net.init(key, x, jnp.zeros(x.shape[0]), node_mask, cond)

    def denoiser(self, params, node_mask, cond=None):
        """denoise(x [B, P], sigma) -> x0_hat [B, P], padded pairs pinned to -1/2."""

        def raw(x_in, c_noise):
            return self.net.apply(params, x_in, c_noise, node_mask, cond)

        options = {"sigma_data": self.sigma_data} if self.precondition in ("edm", "pfgmpp") else {}
        denoise = preconditioning.precondition(raw, self.precondition, **options)
        mask = pair_mask(node_mask)

        def masked(x, sigma):
            return jnp.where(mask, denoise(x, sigma), -0.5)

        return masked

    def loss(self, params, key, adj, node_mask, cond=None):
        """Per-graph loss [B] of the configured core loss on x0 = pack(adj) - 1/2."""
        return self.loss_fn(self.denoiser(params, node_mask, cond), key, adjacency_to_data(adj))

    def sample(
        self, params, key, node_mask, *, cond=None, sampler="heun", schedule="karras",
        num_levels=32, sigma_min=0.002, sigma_max=80.0, process=None, guidance=0.0,
    ):  # fmt: skip
        """Graphs (0/1 adjacency [B, n, n]) from the prior through a core sampler.

        `sampler` names a generative.samplers ODE/SDE sampler on the noise levels of `schedule`
        (prior: the process's perturbation of 0 at sigmas[0], Gaussian or PFGM++), or one of
        SDE_SAMPLERS from generative.sde_samplers, which integrate the process's reverse SDE in
        `num_levels` steps from its own prior.
        """
        process = dict(process or {"name": "edm"})
        proc = processes.get_process(process.pop("name"), **process)
        b, n = node_mask.shape
        shape = (b, n * (n - 1) // 2)
        k_prior, k_sampler = jax.random.split(key)
        denoise = self.denoiser(params, node_mask, cond)
        if cond is not None and guidance:
            unconditional = self.denoiser(params, node_mask, jnp.zeros_like(cond))
            conditional = denoise

            def denoise(x, sigma):
                return (1 + guidance) * conditional(x, sigma) - guidance * unconditional(x, sigma)

        if sampler in SDE_SAMPLERS:
            x = proc.prior_sample(k_prior, shape)
            x = getattr(sde_samplers, sampler)(
                proc, denoise, x, key=k_sampler, num_steps=num_levels
            )
        else:
            sigmas = schedules.get_schedule(schedule)(num_levels, sigma_min, sigma_max)
            x = proc.perturb(k_prior, jnp.zeros(shape), sigmas[0])
            x = samplers.get_sampler(sampler)(denoise, x, sigmas, key=k_sampler)
        return data_to_adjacency(x, node_mask)
