"""Fused adaLN-Zero step of a DiT block (Peebles & Xie 2023, arXiv:2212.09748), in Pallas.

Given the residual stream h and a sub-layer output y ([B, L, C]) and the per-sample gate, shift and
scale ([B, C]) regressed from the conditioning, one pass over the rows computes

    h' = h + gate * y,    out = LayerNorm(h') * (1 + scale) + shift

(LayerNorm without affine parameters, statistics in float32) and writes both h' (the next
residual stream) and out (the next sub-layer's input). Reading h and y and writing two outputs is
4 row passes, against about 6 for the unfused XLA graph when it does not fuse the residual add and
the normalisation.

Derivatives: a ``custom_jvp`` whose rule is the JVP of the XLA reference ``adaln_reference``,
primal included, so under ``jax.jvp``/``jax.grad`` XLA computes value and tangent in its own fused
passes (differentiating is never slower than plain XLA, and never runs the kernel and XLA for the
same value); JAX transposes that tangent for reverse mode, so the backward pass is the reference's
VJP. Without differentiation (sampling) the kernel runs. A hand-written Pallas JVP/VJP would save
the re-read of h' for the statistics; not done.

Grid layouts: 'gpu' (Triton) needs power-of-two blocks, so the channel block is C rounded up to a
power of two with the extra lanes masked out of the statistics (out-of-bounds lanes are neither
read into the result nor written); 'tpu' uses the whole channel dim (legal: equal to the array
dim) and a row block that is a multiple of 8 or the whole length.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu


def adaln_reference(h, y, gate, shift, scale, *, eps=1e-6):
    """XLA reference: h' = h + gate * y; out = LayerNorm(h') (1 + scale) + shift -> (h', out)."""
    h = h + gate[:, None, :] * y
    hf = h.astype(jnp.float32)
    mean = hf.mean(-1, keepdims=True)
    var = jnp.square(hf - mean).mean(-1, keepdims=True)
    normed = (hf - mean) * lax.rsqrt(var + eps)
    out = normed * (1 + scale[:, None, :]) + shift[:, None, :]
    return h, out.astype(h.dtype)


def _adaln_kernel(
    h_ref, y_ref, gate_ref, shift_ref, scale_ref, h_out_ref, out_ref, *, channels, eps
):
    gate, y = gate_ref[...].astype(jnp.float32), y_ref[...].astype(jnp.float32)
    h = h_ref[...].astype(jnp.float32) + gate * y
    h = h.astype(h_out_ref.dtype)
    h_out_ref[...] = h
    h = h.astype(jnp.float32)
    lane_is_channel = lax.broadcasted_iota(jnp.int32, h.shape, 1) < channels
    h = jnp.where(lane_is_channel, h, 0.0)
    mean = h.sum(axis=1, keepdims=True) / channels
    centred = jnp.where(lane_is_channel, h - mean, 0.0)
    var = jnp.square(centred).sum(axis=1, keepdims=True) / channels
    normed = centred * lax.rsqrt(var + eps)
    out = normed * (1 + scale_ref[...].astype(jnp.float32)) + shift_ref[...].astype(jnp.float32)
    out_ref[...] = out.astype(out_ref.dtype)


def _adaln_pallas(h, y, gate, shift, scale, *, eps, platform, interpret, block_rows):
    batch, length, channels = h.shape
    out_dtype = jnp.result_type(h.dtype, y.dtype, gate.dtype)
    if platform == "gpu":
        lanes = max(16, 1 << (channels - 1).bit_length())
        rows = block_rows or max(1, 2048 // lanes)
        params = plgpu.CompilerParams(num_warps=4 if lanes <= 1024 else 8, num_stages=1)
    else:
        lanes = channels
        rows = block_rows or (length if length <= 256 else 256)
        params = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel"))
    if not interpret and platform == "tpu" and rows % 8 and rows != length:
        raise ValueError(f"block_rows={rows} on TPU must be a multiple of 8 or the length {length}")
    row_spec = pl.BlockSpec((None, rows, lanes), lambda b, i: (b, i, 0))
    sample_spec = pl.BlockSpec((None, 1, lanes), lambda b, i: (b, 0, 0))
    h_out, out = pl.pallas_call(
        functools.partial(_adaln_kernel, channels=channels, eps=eps),
        grid=(batch, pl.cdiv(length, rows)),
        in_specs=[row_spec, row_spec, sample_spec, sample_spec, sample_spec],
        out_specs=(row_spec, row_spec),
        out_shape=(
            jax.ShapeDtypeStruct(h.shape, out_dtype),
            jax.ShapeDtypeStruct(h.shape, out_dtype),
        ),
        compiler_params=None if interpret else params,
        interpret=interpret,
    )(h, y, gate[:, None, :], shift[:, None, :], scale[:, None, :])
    return h_out, out


@functools.partial(jax.custom_jvp, nondiff_argnums=(5, 6, 7, 8))
def _adaln(h, y, gate, shift, scale, eps, platform, interpret, block_rows):
    return _adaln_pallas(
        h,
        y,
        gate,
        shift,
        scale,
        eps=eps,
        platform=platform,
        interpret=interpret,
        block_rows=block_rows,
    )


@_adaln.defjvp
def _adaln_jvp(eps, platform, interpret, block_rows, primals, tangents):
    del platform, interpret, block_rows
    return jax.jvp(functools.partial(adaln_reference, eps=eps), primals, tangents)


def check_adaln_args(h, y, gate, shift, scale):
    """ValueError unless h, y are [B, L, C] and gate, shift, scale are [B, C]."""
    if h.ndim != 3 or y.shape != h.shape:
        raise ValueError(f"h and y must both be [B, L, C], got {h.shape} and {y.shape}")
    for name, x in (("gate", gate), ("shift", shift), ("scale", scale)):
        if x.shape != (h.shape[0], h.shape[2]):
            raise ValueError(f"{name} must be [B, C] = {(h.shape[0], h.shape[2])}, got {x.shape}")


def adaln_residual_pallas(
    h, y, gate, shift, scale, *, eps=1e-6, platform=None, interpret=None, block_rows=None
):
    """Fused adaLN-Zero step; same function as ``adaln_reference``. Returns (h', out).

    Args:
      h, y: [B, L, C]; gate, shift, scale: [B, C].
      platform: 'gpu' (Triton blocks) or 'tpu' (Mosaic blocks); default from the backend.
      interpret: Pallas interpreter, default True on CPU.
      block_rows: rows per program (default: 2048 // C' on gpu, 256 on tpu).
    """
    check_adaln_args(h, y, gate, shift, scale)
    backend = jax.default_backend()
    platform = platform or ("tpu" if backend == "tpu" else "gpu")
    if platform not in ("gpu", "tpu"):
        raise ValueError(f"platform must be 'gpu' or 'tpu', got {platform!r}")
    interpret = backend == "cpu" if interpret is None else bool(interpret)
    return _adaln(h, y, gate, shift, scale, float(eps), platform, interpret, block_rows)
