"""Noise-level and class embeddings shared by the MLP, the UNet and the DiT.

The network sees the noise level through ``c_noise`` (a float per example, the preconditioning's
noise input: 1/4 ln sigma for EDM, (M - 1) t for VP, ln(sigma / 2) for VE). It is mapped to features
by one of

- positional (Transformer sinusoids, as DDPM++ and EDM use): for n channels and i = 0 .. n/2 - 1,
  w_i = (1 / max_positions)^(i / (n/2 - 1)) and features [cos(c w_i), sin(c w_i)] (EDM's
    ``endpoint=True``);
- Fourier (random Fourier features, as NCSN++ uses): w_i ~ N(0, scale^2) with scale 16, drawn once
  from a fixed
  seed and kept constant (not trained), features [cos(2 pi c w_i), sin(2 pi c w_i)].

`ConditioningEmbedding` then adds a learned class embedding (a table with num_classes + 1 rows; the
last row, index num_classes, is the "no label" class that classifier-free guidance trains with) and
applies a two-layer mapping network, as EDM's SongUNet does: emb = silu(W1 silu(W0
(features(c_noise) + E[label])))."""

import chex
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

EMBEDDINGS = ("positional", "fourier")
FOURIER_SCALE = 16.0  # NCSN++ (Song et al. 2021) default
MAX_POSITIONS = 10_000  # Transformer / DDPM++ default


def feature_dtype(c_noise):
    """The noise features' dtype: float32, or c_noise's if wider (float64 in x64 checks); never
    lower, so a bfloat16 network still sees its time in float32."""
    return jnp.promote_types(c_noise.dtype, jnp.float32)


def positional_embedding(c_noise, num_channels, max_positions=MAX_POSITIONS):
    """Sinusoidal features [cos(c w_i), sin(c w_i)] of c_noise [B] -> [B, num_channels] in
    ``feature_dtype`` (float32)."""
    half = num_channels // 2
    freqs = (1.0 / max_positions) ** (np.arange(half) / max(half - 1, 1))
    dtype = feature_dtype(c_noise)
    angles = c_noise.astype(dtype)[:, None] * jnp.asarray(freqs, dtype)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def fourier_embedding(c_noise, num_channels, scale=FOURIER_SCALE, seed=0):
    """Random Fourier features [cos(2 pi c w_i), sin(2 pi c w_i)], fixed w_i ~ N(0, scale^2)."""
    freqs = np.random.default_rng(seed).standard_normal(num_channels // 2) * scale
    dtype = feature_dtype(c_noise)
    angles = c_noise.astype(dtype)[:, None] * jnp.asarray(2 * np.pi * freqs, dtype)
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def check_embedding_fields(embedding, noise_channels, num_classes):
    """Raise ValueError for an unknown embedding, odd noise_channels or negative num_classes."""
    if embedding not in EMBEDDINGS:
        raise ValueError(f"embedding must be one of {EMBEDDINGS}, got {embedding!r}")
    if noise_channels < 2 or noise_channels % 2:
        raise ValueError(f"noise_channels must be even and >= 2, got {noise_channels}")
    if num_classes < 0:
        raise ValueError(f"num_classes must be >= 0 (0 = unconditional), got {num_classes}")


class ConditioningEmbedding(nn.Module):
    """(c_noise [B], labels [B] | None) -> conditioning vector [B, emb_channels] (after SiLU).

    Attributes:
      embedding: 'positional' or 'fourier' features of c_noise.
      noise_channels: number of features of c_noise (even).
      emb_channels: width of the mapping network and of the output.
      num_classes: 0 for an unconditional model; else labels take values 0 .. num_classes, where
        num_classes means "no label". labels=None on a conditional model means "no label" for
        every example.
      dtype: computation dtype of the mapping network.
    """

    embedding: str
    noise_channels: int
    emb_channels: int
    num_classes: int = 0
    dtype: str = "float32"

    @nn.compact
    def __call__(self, c_noise, labels=None):
        check_embedding_fields(self.embedding, self.noise_channels, self.num_classes)
        chex.assert_rank(c_noise, 1)
        batch = c_noise.shape[0]
        if self.embedding == "positional":
            features = positional_embedding(c_noise, self.noise_channels)
        else:
            features = fourier_embedding(c_noise, self.noise_channels)
        if self.num_classes == 0:
            if labels is not None:
                raise ValueError("labels were given to an unconditional model (num_classes=0)")
        else:
            if labels is None:
                labels = jnp.full((batch,), self.num_classes, jnp.int32)
            chex.assert_shape(labels, (batch,))
            if not jnp.issubdtype(labels.dtype, jnp.integer):
                raise ValueError(f"labels must be integers, got dtype {labels.dtype}")
            table = nn.Embed(
                self.num_classes + 1,
                self.noise_channels,
                embedding_init=nn.initializers.normal(stddev=1.0),
                name="label_embedding",
            )
            features = features + table(labels)
        dense = dict(dtype=self.dtype, kernel_init=nn.initializers.xavier_uniform())
        emb = nn.silu(nn.Dense(self.emb_channels, name="map_layer0", **dense)(features))
        return nn.silu(nn.Dense(self.emb_channels, name="map_layer1", **dense)(emb))


class LogVarianceHead(nn.Module):
    """u(c_noise) = w . fourier(c_noise) + b, [B]: the learned log-variance of EDM2 (Karras et al.
    2024) that sCM's adaptive weighting divides the loss by, loss / e^u + u (Lu and Song 2024).

    Fixed Fourier features with scale 1 (EDM2's bandwidth), a zero-initialised linear layer (u = 0,
    plain weighting, at the start), float32 throughout.
    """

    num_channels: int = 128

    @nn.compact
    def __call__(self, c_noise):
        chex.assert_rank(c_noise, 1)
        if self.num_channels < 2 or self.num_channels % 2:
            raise ValueError(f"num_channels must be even and >= 2, got {self.num_channels}")
        features = fourier_embedding(c_noise, self.num_channels, scale=1.0)
        out = nn.Dense(1, kernel_init=nn.initializers.zeros, name="linear")(features)
        return out[:, 0]
