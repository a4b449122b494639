"""Lowering-only checks: the compiled (non-interpreted) kernels lower for CUDA and TPU on this host.

``jax.jit(f).trace(...).lower(lowering_platforms=...)`` runs the Pallas Triton and Mosaic TPU
lowerings (jaxpr -> Triton / Mosaic MLIR, including the block-shape rules: powers of two for
Triton, last two block dims divisible by 8 and 128 or equal to the array dims for TPU) without a
device, so a rule violation fails here rather than on a user's GPU or TPU pod. What it cannot
catch: failures in the later device compilation (Triton -> PTX, Mosaic layout passes) and
resource limits (shared memory, VMEM).
"""

import functools

import jax
import jax.numpy as jnp
import pytest
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu

from kernels.adaln import adaln_residual_pallas
from kernels.flash_attention import flash_attention
from kernels.groupnorm import groupnorm_silu_pallas

PLATFORMS = [("gpu", "cuda"), ("tpu", "tpu")]
S = jax.ShapeDtypeStruct


def _lower(fn, args, lowering_platform):
    jax.jit(fn).trace(*args).lower(lowering_platforms=(lowering_platform,))


def _value_grad_jvp(fn, *primals):
    out, linear = jax.linearize(fn, *primals)
    cotangent = jax.tree.map(jnp.ones_like, out)
    return out, jax.linear_transpose(linear, *primals)(cotangent), linear(*primals)


@pytest.mark.parametrize("platform,lowering_platform", PLATFORMS)
@pytest.mark.parametrize(
    "dtype,q_len,kv_len,head_dim",
    [(jnp.bfloat16, 300, 300, 64), (jnp.float32, 100, 77, 96), (jnp.bfloat16, 1000, 1000, 256)],
)
def test_flash_attention_lowers(platform, lowering_platform, dtype, q_len, kv_len, head_dim):
    """Default blocks, odd lengths, key mask and causal: forward, JVP and backward kernels."""

    def attention(q, k, v, key_mask):
        kernel = functools.partial(
            flash_attention,
            key_mask=key_mask,
            causal=True,
            platform=platform,
            interpret=False,
        )
        return _value_grad_jvp(kernel, q, k, v)

    args = (
        S((2, q_len, 4, head_dim), dtype),
        S((2, kv_len, 4, head_dim), dtype),
        S((2, kv_len, 4, head_dim), dtype),
        S((2, kv_len), jnp.bool_),
    )
    _lower(attention, args, lowering_platform)


@pytest.mark.parametrize("platform,lowering_platform", PLATFORMS)
@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_fused_norms_lower(platform, lowering_platform, dtype):
    """DiT-S (C = 384, 256 tokens) and a 28 x 28 x 96 UNet map: channels not powers of two."""
    adaln = functools.partial(adaln_residual_pallas, platform=platform, interpret=False)
    _lower(
        functools.partial(_value_grad_jvp, adaln),
        [S((2, 256, 384), dtype)] * 2 + [S((2, 384), dtype)] * 3,
        lowering_platform,
    )

    def groupnorm(x, gamma, beta, scale, shift):
        return groupnorm_silu_pallas(
            x,
            gamma,
            beta,
            num_groups=32,
            scale=scale,
            shift=shift,
            platform=platform,
            interpret=False,
        )

    _lower(
        functools.partial(_value_grad_jvp, groupnorm),
        [S((2, 28, 28, 96), dtype), S((96,), dtype), S((96,), dtype)] + [S((2, 96), dtype)] * 2,
        lowering_platform,
    )


@pytest.mark.parametrize("platform,lowering_platform", PLATFORMS)
def test_kernels_lower_with_x64_on(platform, lowering_platform):
    """jax_enable_x64 on, float32 inputs: every kernel's index arithmetic lowers as int32."""
    with jax.enable_x64(True):
        test_flash_attention_lowers(platform, lowering_platform, jnp.float32, 100, 77, 96)
        test_fused_norms_lower(platform, lowering_platform, jnp.float32)


def test_tpu_lowering_rejects_bad_block_shapes():
    """These checks can fail: a (4, 100) block of a (64, 200) array breaks the TPU tiling rule."""

    def copy_kernel(x_ref, o_ref):
        o_ref[...] = x_ref[...]

    def copy(x):
        spec = pl.BlockSpec((4, 100), lambda i, j: (i, j))
        return pl.pallas_call(
            copy_kernel,
            grid=(16, 2),
            in_specs=[spec],
            out_specs=spec,
            out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
            compiler_params=pltpu.CompilerParams(),
        )(x)

    with pytest.raises(ValueError, match="divisible by 8 and 128"):
        _lower(copy, [S((64, 200), jnp.float32)], "tpu")
