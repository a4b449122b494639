"""Dispatch for the attention and denoising cores: one function per core, the same math per impl.

``impl`` is one of 'xla' (the reference, plain jax.numpy / jax.nn), 'pallas' (kernels in this
package), 'cudnn' (attention only: ``jax.nn.dot_product_attention(implementation='cudnn')``) or
'auto', which picks per backend (and, once measured, dtype) from ``AUTO_TABLE``:

    backend  core             dtype  choice  why
    cpu      all              all    xla     Pallas runs only in the (slow) interpreter on CPU
    gpu      attention        all    pallas  XLA materialises T x T; cuDNN (below) has no JVP
    gpu      adaln, groupnorm all    pallas  one pass over memory instead of several
    tpu      all              all    pallas  (cuDNN does not exist there)

The GPU and TPU rows are the intended choices and are NOT measured: no GPU or TPU was available
when this was written (see benchmarks/RESULTS.md, "## Kernels"); benchmarks/kernels.py measures
them. cuDNN is likely faster for bf16 value and gradient, but its attention is a ``custom_vjp``,
so ``jax.jvp`` through it (consistency training) fails; 'auto' keeps the kernel that supports
every mode until measurements say the difference is worth a mode-dependent choice. GroupNorm
falls back to XLA above ``groupnorm.MAX_SAMPLE_ELEMENTS`` elements per sample.

Choices that cannot run fall back with a warning naming the reason: 'cudnn' off CUDA GPUs, for
float32 inputs or for head dims above 128 goes to 'pallas' on GPU and 'xla' elsewhere; 'pallas'
on CPU runs in the Pallas interpreter (correct, slow) with a warning.
"""

import warnings

import jax
import jax.numpy as jnp

from kernels.adaln import adaln_reference, adaln_residual_pallas, check_adaln_args
from kernels.flash_attention import check_attention_args, flash_attention
from kernels.groupnorm import (
    MAX_SAMPLE_ELEMENTS,
    check_groupnorm_args,
    groupnorm_silu_pallas,
    groupnorm_silu_reference,
)

IMPLS = ("xla", "pallas", "cudnn", "auto")
AUTO_TABLE = {"cpu": "xla", "gpu": "pallas", "tpu": "pallas"}  # backend -> impl, every core
_CUDNN_DTYPES = (jnp.bfloat16, jnp.float16)
_CUDNN_MAX_HEAD_DIM = 128


def _check_impl(impl, allowed):
    if impl not in allowed:
        raise ValueError(f"impl must be one of {allowed}, got {impl!r}")


def _warn_pallas_on_cpu():
    warnings.warn(
        "impl='pallas' on CPU runs the Pallas interpreter: correct but slow; use impl='xla' or "
        "'auto' for speed",
        stacklevel=3,
    )


def _attention_impl(impl, dtype, head_dim):
    """Resolve 'auto' and unavailable choices for attention to 'xla', 'pallas' or 'cudnn'."""
    _check_impl(impl, IMPLS)
    backend = jax.default_backend()
    if impl == "auto":
        return AUTO_TABLE.get(backend, "xla")
    if impl == "cudnn":
        reason = None
        if backend != "gpu":
            reason = f"cuDNN needs a CUDA GPU (backend is {backend!r})"
        elif dtype not in _CUDNN_DTYPES:
            reason = f"cuDNN flash attention supports bfloat16/float16, not {jnp.dtype(dtype).name}"
        elif head_dim > _CUDNN_MAX_HEAD_DIM:
            reason = f"cuDNN flash attention here supports head_dim <= 128, not {head_dim}"
        if reason is not None:
            fallback = "pallas" if backend == "gpu" else "xla"
            warnings.warn(f"impl='cudnn' unavailable: {reason}; using '{fallback}'", stacklevel=3)
            return fallback
    if impl == "pallas" and backend == "cpu":
        _warn_pallas_on_cpu()
    return impl


def _norm_impl(impl, fits=True):
    _check_impl(impl, ("xla", "pallas", "auto"))
    backend = jax.default_backend()
    if impl == "auto":
        return AUTO_TABLE.get(backend, "xla") if fits else "xla"
    if impl == "pallas" and backend == "cpu":
        _warn_pallas_on_cpu()
    return impl


def attention(q, k, v, *, key_mask=None, causal=False, scale=None, impl="auto"):
    """softmax(q k^T * scale + mask) v over [batch, length, heads, head_dim] arrays.

    key_mask: optional bool [batch, kv_length], True where a key is real; every query must see at
    least one real key (otherwise the implementations disagree on the meaningless result).
    causal: query i attends to keys j <= i. scale: default 1 / sqrt(head_dim).
    impl='cudnn' supports value and reverse mode only (no jax.jvp).
    """
    check_attention_args(q, k, v, key_mask)
    impl = _attention_impl(impl, q.dtype, q.shape[-1])
    if impl == "pallas":
        return flash_attention(q, k, v, key_mask=key_mask, causal=causal, scale=scale)
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return jax.nn.dot_product_attention(
        q, k, v, mask=mask, is_causal=causal, scale=scale, implementation=impl
    )


def adaln_residual(h, y, gate, shift, scale, *, eps=1e-6, impl="auto"):
    """adaLN-Zero step: h' = h + gate * y; out = LayerNorm(h') (1 + scale) + shift.

    h, y: [batch, length, channels]; gate, shift, scale: [batch, channels]. Returns (h', out).
    """
    check_adaln_args(h, y, gate, shift, scale)
    if _norm_impl(impl) == "pallas":
        return adaln_residual_pallas(h, y, gate, shift, scale, eps=eps)
    return adaln_reference(h, y, gate, shift, scale, eps=eps)


def groupnorm_silu(x, gamma, beta, *, num_groups, scale=None, shift=None, eps=1e-6, impl="auto"):
    """silu(GroupNorm(x) * gamma + beta, then * (1 + scale) + shift) over NHWC x.

    gamma, beta: [channels]; scale, shift: optional [batch, channels] from the noise embedding.
    """
    check_groupnorm_args(x, gamma, beta, num_groups, scale, shift)
    fits = x.shape[1] * x.shape[2] * x.shape[3] <= MAX_SAMPLE_ELEMENTS
    kwargs = dict(num_groups=num_groups, scale=scale, shift=shift, eps=eps)
    if _norm_impl(impl, fits) == "pallas":
        return groupnorm_silu_pallas(x, gamma, beta, **kwargs)
    return groupnorm_silu_reference(x, gamma, beta, **kwargs)
