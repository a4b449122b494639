"""Dispatch for the attention and denoising cores: one function per core, the same math per impl.

``impl`` is one of 'xla' (the reference, plain jax.numpy / jax.nn), 'pallas' (kernels in this
package), 'cudnn' (attention only: ``jax.nn.dot_product_attention(implementation='cudnn')``) or
'auto', which looks up ``AUTO_TABLE``: rows of measured results, each naming the backend, core,
input dtype and smallest size (attention: key length; norms: elements per sample) from which its
implementation was measured to be faster, with the date, the device and the benchmark that showed
it. The first matching row wins; every case without one runs 'xla' (nothing measured says a kernel
is faster there). 'auto' chooses only between 'xla' and 'pallas', which support value, gradient
and ``jax.jvp`` alike: cuDNN's attention is a ``custom_vjp``, so forward mode (consistency
training) fails through it, and it runs only where asked for. The table is empty until a GPU or
TPU run of benchmarks/kernels.py fills it (benchmarks/RESULTS.md, "## Kernels"); GroupNorm also
runs XLA above ``groupnorm.MAX_SAMPLE_ELEMENTS`` elements per sample, whatever the table says.

Choices that cannot run fall back with a warning naming the reason: 'cudnn' off CUDA GPUs, for
float32 inputs or for head dims above 128 goes to 'pallas' on GPU and 'xla' elsewhere; 'pallas'
on CPU runs in the Pallas interpreter (correct, slow) with a warning.
"""

import dataclasses
import math
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
CORES = ("attention", "adaln", "groupnorm")
AUTO_CHOICES = ("xla", "pallas")


@dataclasses.dataclass(frozen=True)
class Measured:
    """One row of AUTO_TABLE: `impl` for `core` on `backend` with `dtype` inputs of at least
    `min_size` (attention: key length; adaln, groupnorm: elements per sample), as measured on
    `device` on `date` (YYYY-MM-DD) by `source` (the benchmark and its RESULTS.md section)."""

    backend: str
    core: str
    dtype: str
    min_size: int
    impl: str
    date: str
    device: str
    source: str

    def __post_init__(self):
        if self.core not in CORES:
            raise ValueError(f"Measured.core must be one of {CORES}, got {self.core!r}")
        if self.impl not in AUTO_CHOICES:
            raise ValueError(f"Measured.impl must be one of {AUTO_CHOICES}, got {self.impl!r}")
        if not (self.device and self.source and len(self.date) == 10 and self.date[4] == "-"):
            raise ValueError(f"Measured rows need a YYYY-MM-DD date, a device and a source: {self}")

    def matches(self, backend: str, core: str, dtype, size: int) -> bool:
        return (self.backend, self.core, self.dtype) == (
            backend, core, jnp.dtype(dtype).name
        ) and size >= self.min_size  # fmt: skip


# Nothing measured on a GPU or TPU yet (no device was lent to the sessions that wrote the kernels):
# 'auto' is 'xla' everywhere until benchmarks/kernels.py's numbers add rows here.
AUTO_TABLE: tuple[Measured, ...] = ()


def auto_impl(core: str, dtype, size: int, backend: str | None = None) -> str:
    """'auto' for `core` on `backend` (default: jax.default_backend()): the implementation of the
    first AUTO_TABLE row that matches, else 'xla'."""
    backend = backend or jax.default_backend()
    for row in AUTO_TABLE:
        if row.matches(backend, core, dtype, size):
            return row.impl
    return "xla"


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


def _attention_impl(impl, dtype, head_dim, kv_len):
    """Resolve 'auto' and unavailable choices for attention to 'xla', 'pallas' or 'cudnn'."""
    _check_impl(impl, IMPLS)
    backend = jax.default_backend()
    if impl == "auto":
        return auto_impl("attention", dtype, kv_len, backend)
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


def _norm_impl(impl, core, x, fits=True):
    _check_impl(impl, ("xla", "pallas", "auto"))
    backend = jax.default_backend()
    if impl == "auto":
        size = math.prod(x.shape[1:])
        return auto_impl(core, x.dtype, size, backend) if fits else "xla"
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
    impl = _attention_impl(impl, q.dtype, q.shape[-1], k.shape[1])
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
    if _norm_impl(impl, "adaln", h) == "pallas":
        return adaln_residual_pallas(h, y, gate, shift, scale, eps=eps)
    return adaln_reference(h, y, gate, shift, scale, eps=eps)


def groupnorm_silu(x, gamma, beta, *, num_groups, scale=None, shift=None, eps=1e-6, impl="auto"):
    """silu(GroupNorm(x) * gamma + beta, then * (1 + scale) + shift) over NHWC x.

    gamma, beta: [channels]; scale, shift: optional [batch, channels] from the noise embedding.
    """
    check_groupnorm_args(x, gamma, beta, num_groups, scale, shift)
    fits = x.shape[1] * x.shape[2] * x.shape[3] <= MAX_SAMPLE_ELEMENTS
    kwargs = dict(num_groups=num_groups, scale=scale, shift=shift, eps=eps)
    if _norm_impl(impl, "groupnorm", x, fits) == "pallas":
        return groupnorm_silu_pallas(x, gamma, beta, **kwargs)
    return groupnorm_silu_reference(x, gamma, beta, **kwargs)
