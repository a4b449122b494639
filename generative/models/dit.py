"""Diffusion Transformer with adaLN-Zero conditioning (Peebles and Xie 2023, "Scalable Diffusion
Models with Transformers").

    h = W_patch patchify(x) + pos       p x p patches, fixed 2-D sin-cos position embedding
    c = ConditioningEmbedding(c_noise, labels)     (embeddings.py; already passed through SiLU)
    block:  (shift1, scale1, gate1, shift2, scale2, gate2) = W_ada c     (W_ada zero-initialised)
            h = h + gate1 * Attention(LN(h) (1 + scale1) + shift1)
            h = h + gate2 * MLP(LN(h) (1 + scale2) + shift2)
    final:  (shift, scale) = W_final c                                 (W_final zero-initialised)
            out = unpatchify(W_out (LN(h) (1 + scale) + shift))          (W_out zero-initialised)

Every LayerNorm follows a gated residual add, so each is computed together with that add by
``kernels.adaln_residual(h, y, gate, shift, scale) -> (h + gate y, LN(h + gate y) (1 + scale) +
shift)``: a block receives the previous block's pending MLP branch (y, gate) and adds it in its
first adaln_residual (for the first block y = 0 and gate = 0), and the final layer adds the last
one. The function computed is exactly the DiT block above. With adaLN-Zero every gate and the output
projection start at zero, so the network outputs exactly zeros at initialisation.

Departures from DiT, on purpose: the class embedding is added to the noise features before the
mapping network (EDM's layout, shared with the UNet and MLP) instead of after it; the noise
embedding uses EDM's positional frequencies; the model predicts only the C output channels (no
learned variance).

Config fields (``generative.models.default_config('dit')`` gives these defaults, sized for 8x8
  digits):
  patch_size (2): side of the square patches; image height and width must be multiples of it.
  hidden_size (128): token width (a multiple of 4 for the 2-D position embedding and of num_heads).
  depth (6): number of transformer blocks.
  num_heads (4): attention heads.
  mlp_ratio (4.0): MLP hidden width as a multiple of hidden_size.
  noise_channels (256): number of sinusoidal / Fourier features of c_noise (DiT uses 256).
  embedding ('positional'): 'positional' or 'fourier' features of c_noise.
  num_classes (0): 0 = unconditional; else labels in 0 .. num_classes (num_classes = "no label").
  dropout (0.0): dropout rate on the attention and MLP branches, active only with train=True (DiT
    uses none).
  dtype ('float32'): computation dtype ('bfloat16' for mixed precision); parameters stay float32.
  impl ('auto'): implementation of the attention and adaLN cores ('xla', 'pallas' or 'auto'; see
    kernels/)."""

import chex
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from generative.models.embeddings import ConditioningEmbedding, check_embedding_fields
from generative.models.unet import IMPLS
from kernels import adaln_residual, attention

_dense_init = nn.initializers.xavier_uniform()


def sincos_position_embedding(grid_h, grid_w, channels):
    """Fixed 2-D sin-cos embedding [grid_h * grid_w, channels], half the channels per axis (DiT)."""
    quarter = channels // 4
    omega = 1.0 / 10_000 ** (np.arange(quarter) / quarter)
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")

    def embed_1d(pos):
        angles = pos.reshape(-1)[:, None] * omega
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([embed_1d(rows), embed_1d(cols)], axis=1).astype(np.float32)


def patchify(x, p):
    """[B, H, W, C] -> [B, (H/p)(W/p), p p C], patches in row-major order."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // p, p, w // p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // p) * (w // p), p * p * c)


def unpatchify(tokens, p, h, w):
    """Inverse of ``patchify``: [B, (H/p)(W/p), p p C] -> [B, H, W, C]."""
    b, _, d = tokens.shape
    c = d // (p * p)
    x = tokens.reshape(b, h // p, w // p, p, p, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class DiTBlock(nn.Module):
    """One adaLN-Zero block: (h, pending MLP branch (y, gate), c) -> (h, new pending branch)."""

    num_heads: int
    mlp_ratio: float
    dropout: float
    impl: str
    dtype: str

    @nn.compact
    def __call__(self, h, pending, c, train):
        b, t, d = h.shape
        dense = dict(dtype=self.dtype, kernel_init=_dense_init)
        modulation = nn.Dense(
            6 * d, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="adaLN"
        )(c)
        shift1, scale1, gate1, shift2, scale2, gate2 = jnp.split(modulation, 6, axis=-1)

        h, a = adaln_residual(h, *pending, shift1, scale1, impl=self.impl)
        q, k, v = jnp.split(nn.Dense(3 * d, name="qkv", **dense)(a), 3, axis=-1)
        heads = (b, t, self.num_heads, d // self.num_heads)
        y = attention(q.reshape(heads), k.reshape(heads), v.reshape(heads), impl=self.impl)
        y = nn.Dense(d, name="proj", **dense)(y.reshape(b, t, d))
        y = nn.Dropout(self.dropout, deterministic=not train)(y)

        h, m = adaln_residual(h, y, gate1, shift2, scale2, impl=self.impl)
        y = nn.gelu(nn.Dense(int(d * self.mlp_ratio), name="fc1", **dense)(m), approximate=True)
        y = nn.Dense(d, name="fc2", **dense)(y)
        y = nn.Dropout(self.dropout, deterministic=not train)(y)
        return h, (y, gate2)


class DiT(nn.Module):
    """apply(variables, x_in [B, H, W, C], c_noise [B], labels=None, train=False) -> like x_in."""

    patch_size: int = 2
    hidden_size: int = 128
    depth: int = 6
    num_heads: int = 4
    mlp_ratio: float = 4.0
    noise_channels: int = 256
    embedding: str = "positional"
    num_classes: int = 0
    dropout: float = 0.0
    dtype: str = "float32"
    impl: str = "auto"

    def __post_init__(self):
        if self.patch_size < 1 or self.depth < 1 or self.num_heads < 1 or self.mlp_ratio <= 0:
            raise ValueError(
                "need patch_size, depth, num_heads >= 1 and mlp_ratio > 0, got "
                f"{self.patch_size}, {self.depth}, {self.num_heads}, {self.mlp_ratio}"
            )
        if self.hidden_size % 4 or self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of 4 and of num_heads "
                f"({self.num_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {self.impl!r}")
        check_embedding_fields(self.embedding, self.noise_channels, self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x_in, c_noise, labels=None, train=False):
        chex.assert_rank(x_in, 4)
        b, height, width, channels = x_in.shape
        chex.assert_shape(c_noise, (b,))
        p, d = self.patch_size, self.hidden_size
        if height % p or width % p:
            raise ValueError(f"image size {height}x{width} is not a multiple of patch_size {p}")

        c = ConditioningEmbedding(
            self.embedding, self.noise_channels, d, self.num_classes, self.dtype
        )(c_noise, labels)
        h = nn.Dense(d, dtype=self.dtype, kernel_init=_dense_init, name="patch_embed")(
            patchify(x_in, p)
        )
        h = h + jnp.asarray(sincos_position_embedding(height // p, width // p, d), h.dtype)

        pending = (jnp.zeros_like(h), jnp.zeros((b, d), h.dtype))
        for i in range(self.depth):
            h, pending = DiTBlock(
                self.num_heads,
                self.mlp_ratio,
                self.dropout,
                self.impl,
                self.dtype,
                name=f"block{i}",
            )(h, pending, c, train)

        final = nn.Dense(
            2 * d, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="final_adaLN"
        )
        shift, scale = jnp.split(final(c), 2, axis=-1)
        _, out = adaln_residual(h, *pending, shift, scale, impl=self.impl)
        out = nn.Dense(
            p * p * channels,
            dtype=self.dtype,
            kernel_init=nn.initializers.zeros,
            name="final_linear",
        )(out)
        return unpatchify(out, p, height, width).astype(x_in.dtype)
