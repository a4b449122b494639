"""Dispatch for the attention and denoising cores (XLA references for now)."""

import jax
import jax.numpy as jnp


def attention(q, k, v, *, key_mask=None, causal=False, scale=None, impl="auto"):
    """softmax(q k^T * scale + mask) v over [batch, length, heads, head_dim] arrays.

    key_mask: optional bool [batch, kv_length], True where a key is real.
    """
    del impl
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal, scale=scale)


def adaln_residual(h, y, gate, shift, scale, *, eps=1e-6, impl="auto"):
    """adaLN-Zero step: h' = h + gate * y; out = LayerNorm(h') (1 + scale) + shift.

    h, y: [batch, length, channels]; gate, shift, scale: [batch, channels]. Returns (h', out).
    """
    del impl
    h = h + gate[:, None, :] * y
    hf = h.astype(jnp.float32)
    mean = hf.mean(-1, keepdims=True)
    var = jnp.square(hf - mean).mean(-1, keepdims=True)
    normed = (hf - mean) * jax.lax.rsqrt(var + eps)
    out = normed * (1 + scale[:, None, :]) + shift[:, None, :]
    return h, out.astype(h.dtype)


def groupnorm_silu(x, gamma, beta, *, num_groups, scale=None, shift=None, eps=1e-6, impl="auto"):
    """silu(GroupNorm(x) * gamma + beta, then * (1 + scale) + shift) over NHWC x.

    gamma, beta: [channels]; scale, shift: optional [batch, channels] from the noise embedding.
    """
    del impl
    b, hh, ww, c = x.shape
    xf = x.astype(jnp.float32).reshape(b, hh * ww, num_groups, c // num_groups)
    mean = xf.mean((1, 3), keepdims=True)
    var = jnp.square(xf - mean).mean((1, 3), keepdims=True)
    y = ((xf - mean) * jax.lax.rsqrt(var + eps)).reshape(b, hh, ww, c) * gamma + beta
    if scale is not None:
        y = y * (1 + scale[:, None, None, :])
    if shift is not None:
        y = y + shift[:, None, None, :]
    return jax.nn.silu(y).astype(x.dtype)
