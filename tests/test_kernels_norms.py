"""Fused adaLN-Zero and GroupNorm+SiLU kernels (Pallas interpreter) against their XLA references.

Values (kernel), gradients with respect to every input and parameter, and JVPs (the custom JVP
rule, which is the reference's) are compared in float32 to ~1e-5 relative and in bfloat16 to
~2e-2 (against the float32 reference on the same rounded inputs). The interpreter fills outputs
and out-of-bounds block reads with NaN, so NaN-free results show that every element is written
and that padded lanes/rows are masked out of the statistics.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels
from kernels.adaln import adaln_reference, adaln_residual_pallas
from kernels.groupnorm import groupnorm_silu_pallas, groupnorm_silu_reference

_jit = functools.partial(
    jax.jit,
    compiler_options={
        "xla_backend_optimization_level": 0,
        "xla_llvm_disable_expensive_passes": True,
    },
)


def _random_like(key, shapes, offset=0.5, spread=2.0):
    """Fresh non-zero normal draws with a non-zero mean, so centring matters."""
    keys = jax.random.split(key, len(shapes))
    return tuple(offset + spread * jax.random.normal(k, s) for k, s in zip(keys, shapes))


def _value_grad_jvp(fn, primals, tangents, cotangents):
    out, linear = jax.linearize(fn, *primals)
    return out, jax.linear_transpose(linear, *primals)(cotangents), linear(*tangents)


def _compare(kernel, reference, primals, tangents, dtype):
    cast = functools.partial(jax.tree.map, lambda x: x.astype(dtype))
    f32 = functools.partial(jax.tree.map, lambda x: x.astype(jnp.float32))
    primals, tangents = cast(primals), cast(tangents)
    out_shape = jax.eval_shape(kernel, *primals)
    leaves, treedef = jax.tree.flatten(out_shape)
    keys = jax.random.split(jax.random.key(99), len(leaves))
    cotangents = treedef.unflatten(
        [jax.random.normal(k, s.shape, s.dtype) for k, s in zip(keys, leaves)]
    )

    def value_and_derivatives(fn, primals, tangents, cotangents):
        # Without differentiation the kernel runs; under jax.linearize the custom JVP rule does.
        return fn(*primals), _value_grad_jvp(fn, primals, tangents, cotangents)

    got = _jit(functools.partial(value_and_derivatives, kernel))(primals, tangents, cotangents)
    want = _jit(functools.partial(value_and_derivatives, reference))(
        f32(primals), f32(tangents), f32(cotangents)
    )
    rtol = 1e-5 if dtype == jnp.float32 else 2e-2
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert np.isfinite(a).all(), "NaN in a kernel result: an element was not written"
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * np.abs(b).max())


@pytest.mark.parametrize(
    "platform,dtype,batch,length,channels,block_rows",
    [
        ("gpu", jnp.float32, 2, 37, 48, 16),  # ragged last row block, channels padded to 64 lanes
        ("tpu", jnp.float32, 2, 20, 40, 8),
        ("gpu", jnp.bfloat16, 1, 9, 64, None),
    ],
)
def test_adaln_matches_reference(platform, dtype, batch, length, channels, block_rows):
    shapes = [(batch, length, channels)] * 2 + [(batch, channels)] * 3
    primals = _random_like(jax.random.key(length), shapes)
    tangents = _random_like(jax.random.key(length + 1), shapes)
    kernel = functools.partial(adaln_residual_pallas, platform=platform, block_rows=block_rows)
    _compare(kernel, adaln_reference, primals, tangents, dtype)


@pytest.mark.parametrize(
    "platform,dtype,batch,height,width,channels,groups,modulated",
    [
        ("gpu", jnp.float32, 2, 5, 7, 32, 8, True),  # 35 pixels padded to 64 rows
        ("tpu", jnp.float32, 1, 4, 4, 24, 3, False),  # no scale/shift
        ("gpu", jnp.bfloat16, 2, 4, 4, 64, 32, True),
    ],
)
def test_groupnorm_silu_matches_reference(
    platform, dtype, batch, height, width, channels, groups, modulated
):
    shapes = [(batch, height, width, channels), (channels,), (channels,)]
    shapes += [(batch, channels)] * 2 * modulated
    primals = _random_like(jax.random.key(channels), shapes)
    tangents = _random_like(jax.random.key(channels + 1), shapes)

    def kernel(x, gamma, beta, *modulation):
        scale, shift = modulation or (None, None)
        return groupnorm_silu_pallas(
            x, gamma, beta, num_groups=groups, scale=scale, shift=shift, platform=platform
        )

    def reference(x, gamma, beta, *modulation):
        scale, shift = modulation or (None, None)
        return groupnorm_silu_reference(x, gamma, beta, num_groups=groups, scale=scale, shift=shift)

    _compare(kernel, reference, primals, tangents, dtype)


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_both_cores_under_x64(platform):
    """jax_enable_x64 on, float32 inputs: the kernels' index arithmetic stays int32."""
    with jax.enable_x64(True):
        shapes = [(2, 37, 48)] * 2 + [(2, 48)] * 3
        primals = _random_like(jax.random.key(1), shapes)
        tangents = _random_like(jax.random.key(2), shapes)
        adaln = functools.partial(adaln_residual_pallas, platform=platform, block_rows=16)
        _compare(adaln, adaln_reference, primals, tangents, jnp.float32)
        shapes = [(2, 5, 7, 32), (32,), (32,), (2, 32), (2, 32)]
        primals = _random_like(jax.random.key(3), shapes)
        tangents = _random_like(jax.random.key(4), shapes)

        def groupnorm(fn, x, gamma, beta, scale, shift):
            return fn(x, gamma, beta, num_groups=8, scale=scale, shift=shift)

        kernel = functools.partial(
            groupnorm, functools.partial(groupnorm_silu_pallas, platform=platform)
        )
        reference = functools.partial(groupnorm, groupnorm_silu_reference)
        _compare(kernel, reference, primals, tangents, jnp.float32)


def test_vmap_over_an_extra_axis():
    h, y, gate, shift, scale = _random_like(
        jax.random.key(7), [(3, 2, 8, 32)] * 2 + [(3, 2, 32)] * 3
    )
    got = _jit(jax.vmap(adaln_residual_pallas))(h, y, gate, shift, scale)
    want = _jit(jax.vmap(adaln_reference))(h, y, gate, shift, scale)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    x, gamma, beta = _random_like(jax.random.key(8), [(3, 2, 4, 4, 16), (3, 16), (3, 16)])
    gn = functools.partial(groupnorm_silu_pallas, num_groups=4)
    got = _jit(jax.vmap(gn))(x, gamma, beta)
    want = _jit(jax.vmap(functools.partial(groupnorm_silu_reference, num_groups=4)))(x, gamma, beta)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dispatch_and_errors():
    h, y, gate, shift, scale = _random_like(jax.random.key(9), [(2, 8, 32)] * 2 + [(2, 32)] * 3)
    want = _jit(adaln_reference)(h, y, gate, shift, scale)
    adaln = _jit(kernels.adaln_residual, static_argnames="impl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = adaln(h, y, gate, shift, scale, impl="auto")
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    with pytest.warns(UserWarning, match="interpreter"):
        got = adaln(h, y, gate, shift, scale, impl="pallas")
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="impl must be one of"):
        kernels.adaln_residual(h, y, gate, shift, scale, impl="cudnn")
    with pytest.raises(ValueError, match="gate must be"):
        adaln_residual_pallas(h, y, gate[:, :8], shift, scale)
    with pytest.raises(ValueError, match="shift must be"):
        kernels.adaln_residual(h, y, gate, shift[:1], scale, impl="xla")
    x = jnp.ones((2, 4, 4, 12))
    with pytest.raises(ValueError, match="num_groups must divide"):
        kernels.groupnorm_silu(x, jnp.ones(12), jnp.zeros(12), num_groups=5)
    with pytest.raises(ValueError, match="num_groups must divide"):
        groupnorm_silu_pallas(x, jnp.ones(12), jnp.zeros(12), num_groups=5)
    with pytest.raises(ValueError, match="scale must be"):
        groupnorm_silu_pallas(x, jnp.ones(12), jnp.zeros(12), num_groups=3, scale=jnp.ones(12))
    with pytest.raises(ValueError, match="impl must be one of"):
        kernels.groupnorm_silu(x, jnp.ones(12), jnp.zeros(12), num_groups=3, impl="fast")
