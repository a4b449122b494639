"""UNet in the DDPM++ / NCSN++ style (Song et al. 2021), laid out as EDM's ``SongUNet`` (Karras
et al. 2022).

Encoder: a 3x3 input conv, then per level (resolution halves from one level to the next) a
downsampling residual block (not at level 0) and ``num_res_blocks`` residual blocks with
model_channels * channel_mult[level] channels; every output is kept as a skip. Decoder: at the
lowest resolution two blocks (the first with attention), elsewhere an upsampling block; then
num_res_blocks + 1 blocks that each concatenate one skip (attention in the last of them where the
resolution is in ``attn_resolutions``). Output: GroupNorm + SiLU + zero-initialised 3x3 conv, so the
raw network outputs zeros at initialisation.

Residual block (cf. EDM's UNetBlock):
    h = conv3x3(resample(groupnorm_silu(x)))
    h = conv3x3_zero(dropout(groupnorm_silu(h, scale, shift)))       (scale, shift) = W emb
    x = (h + skip(resample(x))) / sqrt(2)             skip = 1x1 conv where the shape changes
    [attention: x = (x + proj_zero(attention(qkv(GroupNorm(x))))) / sqrt(2)]
Resampling as DDPM++ (resample filter [1, 1]): 2x2 average pooling down, nearest-neighbour up.

Departures from DDPM++, on purpose: the noise embedding enters as a per-channel scale and shift
after the second GroupNorm (ADM's "adaptive scale", EDM's ``adaptive_scale=True``) rather than as a
bias before it, so that GroupNorm, modulation and SiLU are one fused kernel
(``kernels.groupnorm_silu``); zero initialisation is exact zeros rather than EDM's 1e-5 scale;
GroupNorm uses min(32, C / 4) groups (rounded down to a divisor of C). NCSN++ is obtained with
``embedding='fourier'`` (its progressive input/output paths and FIR resampling are not implemented).

Config fields (``generative.models.default_config('unet')`` gives these defaults, sized for 8x8
  digits):
  model_channels (64): base channel count.
  channel_mult ((1, 2)): channels per level as multiples of model_channels; level l has resolution H
    / 2^l.
  num_res_blocks (2): residual blocks per encoder level (decoder levels have one more).
  attn_resolutions ((4,)): resolutions (feature-map height) with self-attention; each must be one
    the network reaches for the input given.
  num_heads (1): attention heads (DDPM++ uses one).
  dropout (0.1): dropout rate in the residual blocks, active only with train=True.
  embedding ('positional'): 'positional' (DDPM++, EDM) or 'fourier' (NCSN++) features of c_noise.
  num_classes (0): 0 = unconditional; else labels in 0 .. num_classes (num_classes = "no label").
  dtype ('float32'): computation dtype ('bfloat16' for mixed precision); parameters stay float32.
  impl ('auto'): implementation of the attention and GroupNorm+SiLU cores ('xla', 'pallas' or
    'auto', which picks from measured results: kernels/ops.py). Every choice computes the same
    function.

CIFAR-10 DDPM++ at paper scale (EDM's cifar10 config, 56M parameters): ``ddpmpp_cifar10_config()``
below, model_channels 128, channel_mult (2, 2, 2), num_res_blocks 4, attn_resolutions (16,), dropout
0.1 (EDM trains CIFAR-10 with 0.13)."""

import math

import chex
import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from generative.models.embeddings import ConditioningEmbedding, check_embedding_fields
from kernels import attention, groupnorm_silu

IMPLS = ("xla", "pallas", "auto")
SKIP_SCALE = 1 / math.sqrt(2)
_conv_init = nn.initializers.xavier_uniform()


def num_groups(channels):
    """GroupNorm groups: the largest divisor of ``channels`` not above min(32, channels // 4)."""
    groups = max(1, min(32, channels // 4))
    while channels % groups:
        groups -= 1
    return groups


def resample(x, direction):
    """2x2 average pooling ('down'), nearest-neighbour doubling ('up') or identity (None), NHWC."""
    if direction == "down":
        b, h, w, c = x.shape
        return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    if direction == "up":
        return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
    return x


class GroupNormSiLU(nn.Module):
    """silu((GroupNorm(x) gamma + beta) (1 + scale) + shift) by ``kernels.groupnorm_silu``."""

    impl: str = "auto"

    @nn.compact
    def __call__(self, x, scale=None, shift=None):
        channels = x.shape[-1]
        gamma = self.param("scale", nn.initializers.ones, (channels,))
        beta = self.param("bias", nn.initializers.zeros, (channels,))
        return groupnorm_silu(
            x,
            gamma,
            beta,
            num_groups=num_groups(channels),
            scale=scale,
            shift=shift,
            impl=self.impl,
        )


class SelfAttention(nn.Module):
    """Multi-head self-attention over the pixels of an NHWC map, residual, rescaled by 1/sqrt(2)."""

    num_heads: int
    impl: str = "auto"
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        if c % self.num_heads:
            raise ValueError(f"channels {c} at resolution {h} are not divisible by num_heads")
        normed = nn.GroupNorm(num_groups(c), epsilon=1e-6, dtype=self.dtype)(x)
        qkv = nn.Dense(3 * c, dtype=self.dtype, kernel_init=_conv_init, name="qkv")(normed)
        q, k, v = jnp.split(qkv.reshape(b, h * w, self.num_heads, 3 * c // self.num_heads), 3, -1)
        a = attention(q, k, v, impl=self.impl).reshape(b, h, w, c)
        a = nn.Dense(c, dtype=self.dtype, kernel_init=nn.initializers.zeros, name="proj")(a)
        return (x + a) * SKIP_SCALE


class ResBlock(nn.Module):
    """DDPM++ residual block with noise-embedding modulation, optional resampling and attention."""

    out_channels: int
    resample: str | None = None  # None, 'down' or 'up'
    use_attention: bool = False
    num_heads: int = 1
    dropout: float = 0.0
    impl: str = "auto"
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x, emb, train):
        conv = dict(dtype=self.dtype, kernel_init=_conv_init)
        h = GroupNormSiLU(self.impl, name="norm0")(x)
        h = nn.Conv(self.out_channels, (3, 3), name="conv0", **conv)(resample(h, self.resample))
        scale, shift = jnp.split(nn.Dense(2 * self.out_channels, name="affine", **conv)(emb), 2, -1)
        h = GroupNormSiLU(self.impl, name="norm1")(h, scale, shift)
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = nn.Conv(
            self.out_channels,
            (3, 3),
            dtype=self.dtype,
            kernel_init=nn.initializers.zeros,
            name="conv1",
        )(h)
        skip = resample(x, self.resample)
        if self.resample is not None or x.shape[-1] != self.out_channels:
            skip = nn.Conv(self.out_channels, (1, 1), name="skip", **conv)(skip)
        x = (h + skip) * SKIP_SCALE
        if self.use_attention:
            x = SelfAttention(self.num_heads, self.impl, self.dtype, name="attention")(x)
        return x


class UNet(nn.Module):
    """apply(variables, x_in [B, H, W, C], c_noise [B], labels=None, train=False) -> like x_in."""

    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (4,)
    num_heads: int = 1
    dropout: float = 0.1
    embedding: str = "positional"
    num_classes: int = 0
    dtype: str = "float32"
    impl: str = "auto"

    def __post_init__(self):
        self.channel_mult = tuple(self.channel_mult)
        self.attn_resolutions = tuple(self.attn_resolutions)
        if self.model_channels < 1 or not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(
                "need model_channels >= 1 and a non-empty channel_mult of positive ints, got "
                f"{self.model_channels} and {self.channel_mult}"
            )
        if self.num_res_blocks < 1 or self.num_heads < 1:
            raise ValueError(
                f"need num_res_blocks, num_heads >= 1, got {self.num_res_blocks}, {self.num_heads}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.impl not in IMPLS:
            raise ValueError(f"impl must be one of {IMPLS}, got {self.impl!r}")
        check_embedding_fields(self.embedding, self.model_channels, self.num_classes)
        super().__post_init__()

    def _check_input(self, x_in):
        chex.assert_rank(x_in, 4)
        height, width = x_in.shape[1:3]
        factor = 2 ** (len(self.channel_mult) - 1)
        if height % factor or width % factor:
            raise ValueError(
                f"image size {height}x{width} must be divisible by 2^(len(channel_mult) - 1) = "
                f"{factor}"
            )
        reached = [height >> level for level in range(len(self.channel_mult))]
        missing = [r for r in self.attn_resolutions if r not in reached]
        if missing:
            raise ValueError(
                f"attn_resolutions {missing} are not reached by a {height}x{width} input; the "
                f"resolutions are {reached}"
            )

    @nn.compact
    def __call__(self, x_in, c_noise, labels=None, train=False):
        self._check_input(x_in)
        chex.assert_shape(c_noise, (x_in.shape[0],))
        noise_channels = self.model_channels * (2 if self.embedding == "fourier" else 1)
        emb = ConditioningEmbedding(
            self.embedding, noise_channels, 4 * self.model_channels, self.num_classes, self.dtype
        )(c_noise, labels)
        block = dict(
            num_heads=self.num_heads, dropout=self.dropout, impl=self.impl, dtype=self.dtype
        )

        x = nn.Conv(self.model_channels, (3, 3), dtype=self.dtype, kernel_init=_conv_init)(x_in)
        skips = [x]
        for level, mult in enumerate(self.channel_mult):
            res = x_in.shape[1] >> level
            if level > 0:
                x = ResBlock(x.shape[-1], "down", name=f"enc{res}_down", **block)(x, emb, train)
                skips.append(x)
            for i in range(self.num_res_blocks):
                x = ResBlock(
                    self.model_channels * mult,
                    use_attention=res in self.attn_resolutions,
                    name=f"enc{res}_block{i}",
                    **block,
                )(x, emb, train)
                skips.append(x)

        for level, mult in reversed(list(enumerate(self.channel_mult))):
            res = x_in.shape[1] >> level
            if level == len(self.channel_mult) - 1:
                x = ResBlock(x.shape[-1], use_attention=True, name=f"dec{res}_in0", **block)(
                    x, emb, train
                )
                x = ResBlock(x.shape[-1], name=f"dec{res}_in1", **block)(x, emb, train)
            else:
                x = ResBlock(x.shape[-1], "up", name=f"dec{res}_up", **block)(x, emb, train)
            for i in range(self.num_res_blocks + 1):
                x = jnp.concatenate([x, skips.pop()], axis=-1)
                x = ResBlock(
                    self.model_channels * mult,
                    use_attention=i == self.num_res_blocks and res in self.attn_resolutions,
                    name=f"dec{res}_block{i}",
                    **block,
                )(x, emb, train)

        x = GroupNormSiLU(self.impl, name="out_norm")(x)
        out = nn.Conv(
            x_in.shape[-1],
            (3, 3),
            dtype=self.dtype,
            kernel_init=nn.initializers.zeros,
            name="out_conv",
        )(x)
        return out.astype(x_in.dtype)


def ddpmpp_cifar10_config(num_classes=0):
    """DDPM++ at paper scale for 32x32 CIFAR-10 (EDM's network; documented, not run in CI)."""
    return ml_collections.ConfigDict(
        dict(
            name="unet",
            model_channels=128,
            channel_mult=(2, 2, 2),
            num_res_blocks=4,
            attn_resolutions=(16,),
            num_heads=1,
            dropout=0.1,
            embedding="positional",
            num_classes=num_classes,
            dtype="float32",
            impl="auto",
        )
    )
