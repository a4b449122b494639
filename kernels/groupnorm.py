"""Fused GroupNorm + per-sample scale/shift + SiLU over NHWC feature maps, in Pallas.

For a UNet residual block (DDPM++ / NCSN++ with the noise embedding applied as scale and shift):

    y = GroupNorm_G(x) * gamma + beta,   y <- y * (1 + scale_b) + shift_b,   out = silu(y)

with the group statistics in float32 over (H, W, C / G). One program holds one sample
[H * W, C]; per-channel column sums are turned into per-group sums by multiplying with the 0/1
"same group" matrix, (G_cc' = [c // (C/G) == c' // (C/G)]), reduced along each axis so the sums
stay exact float32 (no matmul, so no TF32 rounding on GPUs). The sample is read once and the
output written once.

Limitation: a whole sample lives in one block (VMEM on TPU, registers/local memory on GPU), so the
dispatch in ``kernels.ops`` uses this kernel only up to ``MAX_SAMPLE_ELEMENTS`` elements per sample.

Derivatives: a ``custom_jvp`` whose rule is the JVP of the XLA reference
``groupnorm_silu_reference``, primal included (differentiating runs XLA only, never slower than
plain XLA); JAX transposes it for reverse mode (the reference's VJP). Without differentiation
(sampling) the kernel runs.

Grid layouts: 'gpu' (Triton) rounds rows (H * W) and channels up to powers of two and masks the
extra elements out of the statistics; 'tpu' uses whole-array dims, which the tiling rules allow.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu

MAX_SAMPLE_ELEMENTS = 1 << 18  # H * W * C of one sample held in one block


def groupnorm_silu_reference(x, gamma, beta, *, num_groups, scale=None, shift=None, eps=1e-6):
    """XLA reference: silu(GroupNorm(x) * gamma + beta, then * (1 + scale) + shift), NHWC."""
    b, hh, ww, c = x.shape
    xf = x.astype(jnp.float32).reshape(b, hh * ww, num_groups, c // num_groups)
    mean = xf.mean((1, 3), keepdims=True)
    var = jnp.square(xf - mean).mean((1, 3), keepdims=True)
    y = ((xf - mean) * lax.rsqrt(var + eps)).reshape(b, hh, ww, c) * gamma + beta
    if scale is not None:
        y = y * (1 + scale[:, None, None, :])
    if shift is not None:
        y = y + shift[:, None, None, :]
    return jax.nn.silu(y).astype(x.dtype)


def _group_mean(column_sums, same_group, count):
    """[1, C'] per-channel sums -> [1, C'] mean of each channel's group (exact f32 reductions).

    count = pixels * channels per group; the second reduction adds each group sum once per
    channel of the group, hence the extra factor channels per group folded into ``count``.
    """
    group_sums = jnp.where(same_group, column_sums, 0.0).sum(axis=1, keepdims=True)  # [C', 1]
    return jnp.where(same_group, group_sums, 0.0).sum(axis=0, keepdims=True) / count


def _groupnorm_silu_kernel(
    x_ref, gamma_ref, beta_ref, scale_ref, shift_ref, o_ref, *, pixels, channels, groups, eps
):
    x = x_ref[...].astype(jnp.float32)
    rows, lanes = x.shape
    valid = (lax.broadcasted_iota(jnp.int32, x.shape, 0) < pixels) & (
        lax.broadcasted_iota(jnp.int32, x.shape, 1) < channels
    )
    per_group = channels // groups
    row_id = lax.broadcasted_iota(jnp.int32, (lanes, lanes), 0)
    col_id = lax.broadcasted_iota(jnp.int32, (lanes, lanes), 1)
    size = jnp.int32(per_group)  # lax.div needs both int32, also with jax_enable_x64 on
    same_group = (lax.div(row_id, size) == lax.div(col_id, size)) & (col_id < channels)
    count = float(pixels * per_group * per_group)
    x = jnp.where(valid, x, 0.0)
    mean = _group_mean(x.sum(axis=0, keepdims=True), same_group, count)
    centred = jnp.where(valid, x - mean, 0.0)
    var = _group_mean(jnp.square(centred).sum(axis=0, keepdims=True), same_group, count)
    # Fold normalisation, affine and per-sample modulation into one multiply-add per element.
    modulation = 1 + scale_ref[...].astype(jnp.float32)
    a = lax.rsqrt(var + eps) * gamma_ref[...].astype(jnp.float32) * modulation
    b = beta_ref[...].astype(jnp.float32) * modulation + shift_ref[...].astype(jnp.float32)
    y = centred * a + b
    o_ref[...] = (y * jax.nn.sigmoid(y)).astype(o_ref.dtype)


def _groupnorm_silu_pallas(x, gamma, beta, scale, shift, *, num_groups, eps, platform, interpret):
    batch, height, width, channels = x.shape
    pixels = height * width
    if platform == "gpu":
        rows = max(16, 1 << (pixels - 1).bit_length())
        lanes = max(16, 1 << (channels - 1).bit_length())
        params = plgpu.CompilerParams(num_warps=8, num_stages=1)
    else:
        rows, lanes = pixels, channels
        params = pltpu.CompilerParams(dimension_semantics=("parallel",))
    per_sample = pl.BlockSpec((None, 1, lanes), lambda b: (b, 0, 0))
    shared = pl.BlockSpec((1, lanes), lambda b: (0, 0))
    sample = pl.BlockSpec((None, rows, lanes), lambda b: (b, 0, 0))
    out = pl.pallas_call(
        functools.partial(
            _groupnorm_silu_kernel, pixels=pixels, channels=channels, groups=num_groups, eps=eps
        ),
        grid=(batch,),
        in_specs=[sample, shared, shared, per_sample, per_sample],
        out_specs=sample,
        out_shape=jax.ShapeDtypeStruct((batch, pixels, channels), x.dtype),
        compiler_params=None if interpret else params,
        interpret=interpret,
    )(x.reshape(batch, pixels, channels), gamma[None], beta[None], scale[:, None], shift[:, None])
    return out.reshape(x.shape)


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6, 7, 8))
def _groupnorm_silu(x, gamma, beta, scale, shift, num_groups, eps, platform, interpret):
    return _groupnorm_silu_pallas(
        x,
        gamma,
        beta,
        scale,
        shift,
        num_groups=num_groups,
        eps=eps,
        platform=platform,
        interpret=interpret,
    )


@_groupnorm_silu.defjvp
def _groupnorm_silu_jvp(num_groups, eps, platform, interpret, primals, tangents):
    del platform, interpret

    def reference(x, gamma, beta, scale, shift):
        return groupnorm_silu_reference(
            x, gamma, beta, num_groups=num_groups, scale=scale, shift=shift, eps=eps
        )

    return jax.jvp(reference, primals, tangents)


def check_groupnorm_args(x, gamma, beta, num_groups, scale=None, shift=None):
    """ValueError unless x is NHWC, G divides C, gamma/beta are [C], scale/shift None or [B, C]."""
    if x.ndim != 4:
        raise ValueError(f"x must be NHWC [B, H, W, C], got shape {x.shape}")
    batch, _, _, channels = x.shape
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(f"num_groups must divide the {channels} channels, got {num_groups}")
    for name, p in (("gamma", gamma), ("beta", beta)):
        if p.shape != (channels,):
            raise ValueError(f"{name} must be [C] = {(channels,)}, got {p.shape}")
    for name, p in (("scale", scale), ("shift", shift)):
        if p is not None and p.shape != (batch, channels):
            raise ValueError(f"{name} must be [B, C] = {(batch, channels)}, got {p.shape}")


def groupnorm_silu_pallas(
    x, gamma, beta, *, num_groups, scale=None, shift=None, eps=1e-6, platform=None, interpret=None
):
    """Fused GroupNorm + scale/shift + SiLU; same function as ``groupnorm_silu_reference``.

    Args:
      x: [B, H, W, C]; gamma, beta: [C]; scale, shift: optional [B, C] (None means 0).
      num_groups: G, dividing C.
      platform: 'gpu' (Triton blocks) or 'tpu' (Mosaic blocks); default from the backend.
      interpret: Pallas interpreter, default True on CPU.
    """
    check_groupnorm_args(x, gamma, beta, num_groups, scale, shift)
    batch, _, _, channels = x.shape
    zeros = jnp.zeros((batch, channels), x.dtype)
    scale = zeros if scale is None else scale
    shift = zeros if shift is None else shift
    backend = jax.default_backend()
    platform = platform or ("tpu" if backend == "tpu" else "gpu")
    if platform not in ("gpu", "tpu"):
        raise ValueError(f"platform must be 'gpu' or 'tpu', got {platform!r}")
    interpret = backend == "cpu" if interpret is None else bool(interpret)
    return _groupnorm_silu(
        x, gamma, beta, scale, shift, int(num_groups), float(eps), platform, interpret
    )
