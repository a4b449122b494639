"""Residual MLP for low-dimensional data (2-D toy sets), conditioned on the noise level and a class.

    emb = ConditioningEmbedding(c_noise, labels)            (see embeddings.py)
    h   = W_in x
    h   = h + W_2 dropout(silu(W_1 silu(h) + W_e emb))    num_blocks times (W_2 zero-initialised)
    out = W_out silu(h)

Config fields (``generative.models.default_config('mlp')`` gives these defaults):
  width (256): hidden width, also the width of the embedding's mapping network.
  num_blocks (4): number of residual blocks.
  noise_channels (64): number of sinusoidal / Fourier features of c_noise.
  embedding ('positional'): 'positional' or 'fourier' (see embeddings.py).
  num_classes (0): 0 = unconditional; else labels in 0 .. num_classes (num_classes = "no label").
  dropout (0.0): dropout rate inside each block, active only with train=True.
  dtype ('float32'): computation dtype ('bfloat16' for mixed precision); parameters stay float32.
"""

import chex
import flax.linen as nn

from generative.models.embeddings import ConditioningEmbedding, check_embedding_fields


class MLP(nn.Module):
    """apply(variables, x_in [B, N], c_noise [B], labels=None, train=False) -> [B, N]."""

    width: int = 256
    num_blocks: int = 4
    noise_channels: int = 64
    embedding: str = "positional"
    num_classes: int = 0
    dropout: float = 0.0
    dtype: str = "float32"

    def __post_init__(self):
        if self.width < 1 or self.num_blocks < 0:
            raise ValueError(
                f"need width >= 1 and num_blocks >= 0, got {self.width}, {self.num_blocks}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        check_embedding_fields(self.embedding, self.noise_channels, self.num_classes)
        super().__post_init__()

    @nn.compact
    def __call__(self, x_in, c_noise, labels=None, train=False):
        chex.assert_rank(x_in, 2)
        chex.assert_shape(c_noise, (x_in.shape[0],))
        emb = ConditioningEmbedding(
            self.embedding, self.noise_channels, self.width, self.num_classes, self.dtype
        )(c_noise, labels)
        dense = dict(dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())
        h = nn.Dense(self.width, name="input", **dense)(x_in)
        for i in range(self.num_blocks):
            y = nn.Dense(self.width, name=f"block{i}_dense0", **dense)(nn.silu(h))
            y = y + nn.Dense(self.width, name=f"block{i}_emb", **dense)(emb)
            y = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(y))
            h = h + nn.Dense(
                self.width,
                dtype=self.dtype,
                kernel_init=nn.initializers.zeros,
                name=f"block{i}_dense1",
            )(y)
        out = nn.Dense(x_in.shape[-1], name="output", **dense)(nn.silu(h))
        return out.astype(x_in.dtype)
