"""Flash attention (Pallas interpreter on CPU) against jax.nn.dot_product_attention.

Forward, gradients (dq, dk, dv) and JVP are compared in float32 to ~1e-5 relative and in bfloat16
to ~1e-2 (against the float32 reference on the same bf16-rounded inputs). The interpreter fills
outputs, scratch and out-of-bounds reads with NaN, so a NaN-free result shows every element was
written from real data.
"""

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import pallas as pl

import kernels
from kernels.flash_attention import flash_attention


def _reference(q, k, v, key_mask, causal):
    mask = None if key_mask is None else key_mask[:, None, None, :]
    return jax.nn.dot_product_attention(q, k, v, mask=mask, is_causal=causal)


def _inputs(key, batch, q_len, kv_len, heads, head_dim, dtype, masked):
    kq, kk, kv, kl, kt1, kt2, kt3, kc = jax.random.split(key, 8)
    q = jax.random.normal(kq, (batch, q_len, heads, head_dim))
    k = jax.random.normal(kk, (batch, kv_len, heads, head_dim))
    v = jax.random.normal(kv, (batch, kv_len, heads, head_dim))
    key_mask = None
    if masked:  # random valid prefix lengths >= 1, so every query sees a key (also when causal)
        lengths = jax.random.randint(kl, (batch,), 1, kv_len + 1)
        key_mask = jnp.arange(kv_len)[None, :] < lengths[:, None]
    tangents = tuple(jax.random.normal(t, x.shape) for t, x in zip((kt1, kt2, kt3), (q, k, v)))
    cotangent = jax.random.normal(kc, (batch, q_len, heads, head_dim))
    cast = functools.partial(jax.tree.map, lambda x: x.astype(dtype))
    return cast((q, k, v)), key_mask, cast(tangents), cotangent.astype(dtype)


def _value_grad_jvp(attention, primals, tangents, cotangent):
    """(out, VJP of cotangent, JVP of tangents) from one forward pass, as jax.grad does it."""
    out, linear = jax.linearize(attention, *primals)
    return out, jax.linear_transpose(linear, *primals)(cotangent), linear(*tangents)


# The interpreter's while loops are slow to optimise and quick to run: compile cheaply.
_jit = functools.partial(
    jax.jit,
    compiler_options={
        "xla_backend_optimization_level": 0,
        "xla_llvm_disable_expensive_passes": True,
    },
)


def _assert_close(actual, expected, rtol):
    actual = np.asarray(actual, np.float32)
    expected = np.asarray(expected, np.float32)
    assert np.isfinite(actual).all(), "NaN/inf in the kernel result: an element was not written"
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * np.abs(expected).max())


CASES = [
    # platform, dtype, batch, q_len, kv_len, heads, head_dim, causal, masked, block
    ("gpu", jnp.float32, 2, 37, 37, 2, 32, True, True, 16),  # odd length, causal + padding mask
    ("gpu", jnp.float32, 1, 20, 45, 3, 48, False, True, 16),  # Tq != Tk, head dim not 2^n
    ("tpu", jnp.float32, 2, 40, 40, 1, 64, True, True, 16),  # TPU grid layout with scratch
    ("gpu", jnp.bfloat16, 2, 33, 33, 2, 128, True, False, 16),
    ("tpu", jnp.bfloat16, 1, 24, 24, 2, 256, False, True, 16),
]


@pytest.mark.parametrize(
    "platform,dtype,batch,q_len,kv_len,heads,head_dim,causal,masked,block", CASES
)
def test_matches_reference_in_value_gradient_and_jvp(
    platform, dtype, batch, q_len, kv_len, heads, head_dim, causal, masked, block
):
    key = jax.random.key(q_len * 1000 + head_dim)
    primals, key_mask, tangents, cotangent = _inputs(
        key, batch, q_len, kv_len, heads, head_dim, dtype, masked
    )
    kernel = functools.partial(
        flash_attention,
        key_mask=key_mask,
        causal=causal,
        block_q=block,
        block_k=block,
        platform=platform,
    )
    reference = functools.partial(_reference, key_mask=key_mask, causal=causal)
    got = _jit(functools.partial(_value_grad_jvp, kernel))(primals, tangents, cotangent)
    f32 = functools.partial(jax.tree.map, lambda x: x.astype(jnp.float32))
    want = _jit(functools.partial(_value_grad_jvp, reference))(
        f32(primals), f32(tangents), f32(cotangent)
    )
    rtol = 1e-5 if dtype == jnp.float32 else 2e-2
    for name, a, b in zip(
        ("out", "dq", "dk", "dv", "jvp"), jax.tree.leaves(got), jax.tree.leaves(want)
    ):
        assert a.dtype == dtype, name
        _assert_close(a, b, rtol)


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_value_gradient_and_jvp_under_x64(platform):
    """With jax_enable_x64 on (as many scientific users run), float32 inputs, causal and masked:
    every integer index in the kernels stays int32 (Python ints would become int64 and lax.div
    refuses mixed dtypes)."""
    with jax.enable_x64(True):
        primals, key_mask, tangents, cotangent = _inputs(
            jax.random.key(7), 2, 37, 37, 1, 32, jnp.float32, True
        )
        kernel = functools.partial(
            flash_attention, key_mask=key_mask, causal=True, block_q=16, block_k=16,
            platform=platform,
        )  # fmt: skip
        reference = functools.partial(_reference, key_mask=key_mask, causal=True)
        got = _jit(functools.partial(_value_grad_jvp, kernel))(primals, tangents, cotangent)
        want = _jit(functools.partial(_value_grad_jvp, reference))(primals, tangents, cotangent)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert a.dtype == jnp.float32
            _assert_close(a, b, 1e-5)
        out = kernels.attention(*primals, key_mask=key_mask, causal=True, impl="xla")
        _assert_close(out, jax.tree.leaves(want)[0], 1e-5)


def test_interpreter_poisons_unwritten_outputs():
    """The NaN-freedom checks above can fail: an unwritten output element reads back as NaN."""

    def half_kernel(x_ref, o_ref):
        o_ref[:8, :] = x_ref[:8, :]

    x = jax.random.normal(jax.random.key(0), (16, 128))
    out = pl.pallas_call(
        half_kernel, out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype), interpret=True
    )(x)
    assert np.isnan(np.asarray(out[8:])).all() and np.isfinite(np.asarray(out[:8])).all()


def test_vmap_of_value_gradient_and_jvp():
    primals, _, tangents, cotangent = _inputs(
        jax.random.key(3), 2, 19, 19, 1, 32, jnp.float32, False
    )
    stack = functools.partial(jax.tree.map, lambda x: jnp.stack([x, 2 * x]))
    kernel = functools.partial(flash_attention, causal=True, block_q=16, block_k=16)
    reference = functools.partial(_reference, key_mask=None, causal=True)
    args = (stack(primals), tangents, stack(cotangent))
    got = _jit(jax.vmap(functools.partial(_value_grad_jvp, kernel), in_axes=(0, None, 0)))(*args)
    want = _jit(jax.vmap(functools.partial(_value_grad_jvp, reference), in_axes=(0, None, 0)))(
        *args
    )
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        _assert_close(a, b, 1e-5)


def test_reverse_over_forward_matches_reference():
    """Gradient of a function of the JVP (second order, as in consistency training losses)."""
    primals, key_mask, tangents, cotangent = _inputs(
        jax.random.key(6), 2, 19, 19, 1, 32, jnp.float32, True
    )
    kernel = functools.partial(
        flash_attention, key_mask=key_mask, causal=True, block_q=16, block_k=16
    )
    reference = functools.partial(_reference, key_mask=key_mask, causal=True)

    def grad_of_tangent(attention, primals):
        def loss(*primals):
            out, out_dot = jax.jvp(attention, primals, tangents)
            return jnp.sum(out_dot * cotangent) + jnp.sum(out * jax.lax.stop_gradient(out_dot))

        return jax.grad(loss, argnums=(0, 1, 2))(*primals)

    got = _jit(functools.partial(grad_of_tangent, kernel))(primals)
    want = _jit(functools.partial(grad_of_tangent, reference))(primals)
    for a, b in zip(got, want):
        _assert_close(a, b, 1e-5)


def test_dispatch_impls_agree_and_fall_back_with_warnings():
    (q, k, v), key_mask, _, _ = _inputs(jax.random.key(4), 2, 11, 11, 2, 32, jnp.float32, True)
    expected = _reference(q, k, v, key_mask, True)
    attention = _jit(kernels.attention, static_argnames=("causal", "impl"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for impl in ("auto", "xla"):
            out = attention(q, k, v, key_mask=key_mask, causal=True, impl=impl)
            _assert_close(out, expected, 1e-6)
    with pytest.warns(UserWarning, match="cuDNN needs a CUDA GPU"):
        out = attention(q, k, v, key_mask=key_mask, causal=True, impl="cudnn")
    _assert_close(out, expected, 1e-6)
    with pytest.warns(UserWarning, match="interpreter"):
        out = attention(q, k, v, key_mask=key_mask, causal=True, impl="pallas")
    _assert_close(out, expected, 1e-5)
    with pytest.raises(ValueError, match="impl must be one of"):
        kernels.attention(q, k, v, impl="triton")
    with pytest.raises(ValueError, match="key_mask must be"):  # checked whatever the impl
        kernels.attention(q, k, v, key_mask=key_mask[:, :5], impl="xla")


def test_auto_runs_a_kernel_only_where_a_measured_row_says_so(monkeypatch):
    from generative.models import dit, unet
    from kernels import ops

    assert unet.UNet.impl == dit.DiT.impl == "auto"  # the models' default
    for backend in ("cpu", "gpu", "tpu"):
        for core in ops.CORES:
            assert ops.auto_impl(core, jnp.bfloat16, 1 << 20, backend) == "xla"
    row = ops.Measured(
        "gpu", "attention", "bfloat16", 2048, "pallas", "2026-12-02", "test device", "a test"
    )
    monkeypatch.setattr(ops, "AUTO_TABLE", (row,))
    assert ops.auto_impl("attention", jnp.bfloat16, 4096, "gpu") == "pallas"
    for args in [
        ("attention", jnp.bfloat16, 1024, "gpu"),  # below the measured size
        ("attention", jnp.float32, 4096, "gpu"),  # another dtype
        ("attention", jnp.bfloat16, 4096, "tpu"),  # another backend
        ("adaln", jnp.bfloat16, 4096, "gpu"),  # another core
    ]:
        assert ops.auto_impl(*args) == "xla", args
    with pytest.raises(ValueError, match="Measured.impl must be one of"):
        ops.Measured("gpu", "attention", "bfloat16", 0, "cudnn", "2026-12-02", "H200", "x")
    with pytest.raises(ValueError, match="YYYY-MM-DD date, a device and a source"):
        ops.Measured("gpu", "attention", "bfloat16", 0, "pallas", "today", "H200", "x")


def test_bad_arguments_raise_clear_errors():
    q = jax.random.normal(jax.random.key(5), (1, 8, 2, 32))
    with pytest.raises(ValueError, match="must agree"):
        flash_attention(q, q[:, :, :1], q[:, :, :1])
    with pytest.raises(ValueError, match="key_mask"):
        flash_attention(q, q, q, key_mask=jnp.ones((1, 9), bool))
    with pytest.raises(ValueError, match="dtype"):
        flash_attention(q, q, q.astype(jnp.bfloat16))
    with pytest.raises(ValueError, match="power of two"):
        flash_attention(q, q, q, block_q=24)
    with pytest.raises(ValueError, match="multiple of 128"):
        flash_attention(
            jnp.ones((1, 300, 1, 64)),
            jnp.ones((1, 300, 1, 64)),
            jnp.ones((1, 300, 1, 64)),
            block_k=64,
            platform="tpu",
            interpret=False,
        )
