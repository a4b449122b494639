"""Tests for generative.models: shapes, zero init, conditioning, dropout, impl, grad, configs."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels
from generative.models import create_model, ddpmpp_cifar10_config, default_config
from generative.models.dit import patchify, sincos_position_embedding, unpatchify
from generative.models.embeddings import fourier_embedding, positional_embedding

NUM_CLASSES = 3

# Small versions of the three models (fields not given keep their defaults).
SMALL = {
    "mlp": dict(width=32, num_blocks=2, noise_channels=16),
    "unet": dict(model_channels=16, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)),
    "dit": dict(hidden_size=32, depth=2, num_heads=2, noise_channels=32),
}
# A one-level UNet (attention and GroupNorm included, no resampling) halves the compile time; the
# tests where the function itself matters less than compiling it use it.
ONE_LEVEL = {"mlp": {}, "unet": dict(channel_mult=(1,), attn_resolutions=(8,)), "dit": {}}
SHAPES = {"mlp": (4, 2), "unet": (4, 8, 8, 1), "dit": (4, 8, 8, 1)}


def small_model(name, **overrides):
    config = default_config(name)
    config.update(SMALL[name])
    config.update(overrides)
    return create_model(config)


def inputs(shape, num_classes=NUM_CLASSES):
    rng = np.random.default_rng(0)  # numpy draws: no random-number kernels to compile
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    c_noise = jnp.asarray(rng.standard_normal(shape[0]), jnp.float32)
    labels = jnp.asarray(rng.integers(0, num_classes, shape[0]), jnp.int32) if num_classes else None
    return x, c_noise, labels


def init(model, x, c_noise, labels=None):
    """The model's own initialisation (an 'rbg' key compiles much faster on CPU than threefry)."""
    return jax.jit(model.init)(jax.random.key(1, impl="rbg"), x, c_noise, labels)


def random_variables(model, x, c_noise, labels=None, scale=0.2):
    """Variables of the model's structure filled with normal noise, so that no zero-initialised
    layer hides anything (numpy draws: nothing to compile)."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, c_noise, labels)
    rng = np.random.default_rng(0)
    return jax.tree.map(
        lambda s: jnp.asarray(scale * rng.standard_normal(s.shape), s.dtype), shapes
    )


# tests/ has no __init__.py, so other test files cannot import this as tests.test_models; with
# pytest's default (prepend) import mode `from test_models import jaxpr_equations` works.
def jaxpr_equations(jaxpr):
    """Every equation of a (closed) jaxpr, recursing into the sub-jaxprs in the equations' params
    (pjit, custom_jvp/custom_vjp calls, scan, while, cond branches, remat, ...)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)  # ClosedJaxpr -> Jaxpr
    for eqn in jaxpr.eqns:
        yield eqn
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if hasattr(getattr(sub, "jaxpr", sub), "eqns"):
                    yield from jaxpr_equations(sub)


MATMULS = ("dot_general", "conv_general_dilated")


def matmul_operand_dtypes(fn, *args):
    """The operand dtypes of every matrix multiplication and convolution in fn's jaxpr."""
    return [
        tuple(v.aval.dtype for v in eqn.invars)
        for eqn in jaxpr_equations(jax.make_jaxpr(fn)(*args))
        if eqn.primitive.name in MATMULS
    ]


def test_jaxpr_equations_sees_nested_jaxprs():
    """The walker finds a bfloat16 dot inside each kind of sub-jaxpr (the models have none now)."""
    a = jnp.ones((2, 2), jnp.bfloat16)
    dot = functools.partial(jnp.dot, a)
    jvp = jax.custom_jvp(lambda x: dot(x))
    jvp.defjvp(lambda p, t: (jvp(*p), t[0]))
    vjp = jax.custom_vjp(lambda x: dot(x))
    vjp.defvjp(lambda x: (dot(x), None), lambda r, g: (g,))
    nested = {
        "pjit": jax.jit(dot),
        "custom_jvp": jvp,
        "custom_vjp": vjp,
        "scan": lambda x: jax.lax.scan(lambda c, _: (dot(c), None), x, None, length=2)[0],
        "cond": lambda x: jax.lax.cond(x.sum() > 0, dot, lambda y: y, x),
        "remat": jax.checkpoint(dot),
    }
    for name, fn in nested.items():
        jaxpr = jax.make_jaxpr(fn)(a)
        assert not any(e.primitive.name in MATMULS for e in jaxpr.jaxpr.eqns), name
        assert matmul_operand_dtypes(fn, a) == [(jnp.bfloat16, jnp.bfloat16)], name


@pytest.mark.parametrize(
    "name, shape, overrides",
    [
        ("mlp", (3, 2), {}),
        ("unet", (2, 8, 8, 1), {}),
        ("unet", (2, 16, 16, 3), dict(attn_resolutions=(8,), embedding="fourier", num_heads=2)),
        ("dit", (2, 8, 8, 1), dict(patch_size=2)),
        ("dit", (2, 8, 12, 3), dict(patch_size=4, embedding="fourier")),
    ],
)
def test_output_shape_dtype_and_finite(name, shape, overrides):
    model = small_model(name, **overrides)
    x, c_noise, _ = inputs(shape)
    out = jax.jit(model.apply)(random_variables(model, x, c_noise), x, c_noise)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert np.all(np.isfinite(out))


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_bfloat16_compute_keeps_float32_params_and_output(name):
    model = small_model(name, dtype="bfloat16", **ONE_LEVEL[name])
    x, c_noise, _ = inputs(SHAPES[name])
    shapes = jax.eval_shape(model.init, jax.random.key(0), x, c_noise)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(shapes))
    variables = random_variables(model, x, c_noise)
    out32 = small_model(name, **ONE_LEVEL[name]).apply(variables, x, c_noise)
    out16 = jax.jit(model.apply)(variables, x, c_noise)  # one compile instead of many bf16 ops
    assert out16.dtype == jnp.float32
    # ... and the compute is bfloat16: every matmul and convolution takes bfloat16 operands (dtypes
    # alone are passed by a model that ignores dtype), which the float32 model's never do.
    ops16 = matmul_operand_dtypes(model.apply, variables, x, c_noise)
    assert ops16 and all(d == (jnp.bfloat16, jnp.bfloat16) for d in ops16), ops16
    ops32 = matmul_operand_dtypes(small_model(name, **ONE_LEVEL[name]).apply, variables, x, c_noise)
    assert len(ops32) == len(ops16) and not any(jnp.bfloat16 in d for d in ops32), ops32
    np.testing.assert_allclose(out16, out32, atol=0.05 * float(jnp.abs(out32).max()))


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_zero_output_at_init(name):
    """adaLN-Zero (DiT) and the zero-initialised output conv (UNet) give exactly zero raw output."""
    model = small_model(name, num_classes=NUM_CLASSES, **ONE_LEVEL[name])
    x, c_noise, labels = inputs(SHAPES[name])
    variables = init(model, x, c_noise, labels)
    out = model.apply(variables, 3.0 * x, c_noise + 1.0, labels)
    assert np.array_equal(np.asarray(out), np.zeros(x.shape, np.float32))
    # ... and not because the network is dead: a random network's output is not zero.
    assert (
        float(
            jnp.abs(
                model.apply(random_variables(model, x, c_noise, labels), x, c_noise, labels)
            ).min()
        )
        > 0
    )


@pytest.mark.parametrize("name", ["mlp", "unet", "dit"])
def test_class_conditioning_and_null_label(name):
    model = small_model(name, num_classes=NUM_CLASSES)
    x, c_noise, _ = inputs(SHAPES[name])
    batch = x.shape[0]
    variables = random_variables(model, x, c_noise, jnp.zeros(batch, jnp.int32))
    apply = model.apply
    outs = [
        apply(variables, x, c_noise, jnp.full(batch, k, jnp.int32)) for k in range(NUM_CLASSES + 1)
    ]
    for k in range(NUM_CLASSES + 1):  # every label, the null label included, gives its own function
        for j in range(k):
            assert float(jnp.abs(outs[k] - outs[j]).max()) > 1e-3
    # labels=None means "no label" for the whole batch.
    np.testing.assert_allclose(
        apply(variables, x, c_noise), outs[NUM_CLASSES], rtol=1e-5, atol=1e-6
    )
    # Examples are independent: mixing labels within a batch picks rows from the per-label outputs.
    mixed = jnp.arange(batch) % (NUM_CLASSES + 1)
    expected = jnp.stack([outs[int(k)][i] for i, k in enumerate(mixed)])
    np.testing.assert_allclose(apply(variables, x, c_noise, mixed), expected, rtol=1e-4, atol=1e-5)


def test_noise_level_changes_output():
    model = small_model("mlp")
    x, c_noise, _ = inputs(SHAPES["mlp"])
    variables = random_variables(model, x, c_noise)
    assert (
        float(
            jnp.abs(model.apply(variables, x, c_noise) - model.apply(variables, x, -c_noise)).min()
        )
        > 0
    )


@pytest.mark.parametrize("name", ["mlp", "unet", "dit"])
def test_dropout_only_in_training_and_deterministic_given_key(name):
    model = small_model(name, dropout=0.3)
    x, c_noise, _ = inputs(SHAPES[name])
    variables = random_variables(model, x, c_noise)

    def apply(train, key):
        return model.apply(variables, x, c_noise, train=train, rngs={"dropout": key})

    k1, k2 = jax.random.key(1, impl="rbg"), jax.random.key(2, impl="rbg")
    np.testing.assert_array_equal(apply(False, k1), apply(False, k2))
    np.testing.assert_array_equal(apply(False, k1), model.apply(variables, x, c_noise))
    np.testing.assert_array_equal(apply(True, k1), apply(True, k1))
    assert float(jnp.abs(apply(True, k1) - apply(True, k2)).max()) > 1e-3
    assert float(jnp.abs(apply(True, k1) - apply(False, k1)).max()) > 1e-3


def reference_attention(q, k, v):
    """softmax(q k^T / sqrt(D)) v over [B, T, H, D], written out with einsum."""
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    return jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)


def pallas_available():
    q = jnp.ones((1, 16, 1, 32))
    try:
        kernels.attention(q, q, q, impl="pallas")
    except (NotImplementedError, ValueError, RuntimeError):
        return False
    return True


def test_attention_dispatch_matches_einsum_reference():
    q, k, v = jnp.asarray(np.random.default_rng(3).standard_normal((3, 2, 16, 4, 32)), jnp.float32)
    np.testing.assert_allclose(
        kernels.attention(q, k, v, impl="xla"), reference_attention(q, k, v), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_impl_switch_computes_the_same_function(name):
    if not pallas_available():
        pytest.skip("kernels has no 'pallas' implementation on this backend yet")
    x, c_noise, _ = inputs(SHAPES[name])
    xla_model = small_model(name, impl="xla", **ONE_LEVEL[name])
    pallas_model = small_model(name, impl="pallas", **ONE_LEVEL[name])
    variables = random_variables(xla_model, x, c_noise)
    np.testing.assert_allclose(
        jax.jit(pallas_model.apply)(variables, x, c_noise),
        jax.jit(xla_model.apply)(variables, x, c_noise),
        rtol=1e-4,
        atol=1e-4,
    )


@pytest.mark.parametrize("name", ["unet", "dit"])
def test_attention_layout_heads_over_pixels(name, monkeypatch):
    """The models hand attention [batch, tokens, heads, head_dim] arrays: with the einsum reference
    swapped in the output is unchanged; with one attending over the wrong axis it changes."""
    module = __import__(f"generative.models.{name}", fromlist=["attention"])
    x, c_noise, _ = inputs(SHAPES[name])
    model = small_model(name, num_heads=2)
    variables = random_variables(model, x, c_noise)
    expected = model.apply(variables, x, c_noise)
    monkeypatch.setattr(module, "attention", lambda q, k, v, impl: reference_attention(q, k, v))
    np.testing.assert_allclose(model.apply(variables, x, c_noise), expected, rtol=1e-4, atol=1e-5)
    swapped = lambda q, k, v, impl: reference_attention(  # noqa: E731
        *(a.swapaxes(1, 2) for a in (q, k, v))
    ).swapaxes(1, 2)
    monkeypatch.setattr(module, "attention", swapped)
    assert float(jnp.abs(model.apply(variables, x, c_noise) - expected).max()) > 1e-3


@pytest.mark.parametrize("name", ["mlp", "unet", "dit"])
def test_jit_grad_descends(name):
    """A small step along minus the gradient (jit-compiled, with dropout) lowers the loss."""
    model = small_model(name, num_classes=NUM_CLASSES, dropout=0.1, **ONE_LEVEL[name])
    x, c_noise, labels = inputs(SHAPES[name])
    params = random_variables(model, x, c_noise, labels)["params"]
    target = jnp.asarray(np.random.default_rng(7).standard_normal(x.shape), jnp.float32)

    def loss(params):
        out = model.apply(
            {"params": params},
            x,
            c_noise,
            labels,
            train=True,
            rngs={"dropout": jax.random.key(0, impl="rbg")},
        )
        return jnp.mean((out - target) ** 2)

    value_and_grad = jax.jit(jax.value_and_grad(loss))
    value, grads = value_and_grad(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    norm2 = sum(jnp.sum(g**2) for g in jax.tree.leaves(grads))
    assert float(norm2) > 0
    stepped = jax.tree.map(lambda p, g: p - 1e-2 * g / jnp.sqrt(norm2), params, grads)
    assert float(value_and_grad(stepped)[0]) < float(value)


def test_patchify_roundtrip_and_order():
    x = jnp.arange(2 * 4 * 6 * 3, dtype=jnp.float32).reshape(2, 4, 6, 3)
    tokens = patchify(x, 2)
    assert tokens.shape == (2, 6, 12)
    np.testing.assert_array_equal(
        tokens[0, 1], x[0, 0:2, 2:4].reshape(-1)
    )  # second patch, row-major
    np.testing.assert_array_equal(unpatchify(tokens, 2, 4, 6), x)


def test_embeddings():
    c = jnp.array([0.0, 0.5, -1.3])
    pos = positional_embedding(c, 8)
    freqs = 1e-4 ** (np.arange(4) / 3)  # endpoint=True: first 1, last 1/max_positions
    expected = np.concatenate([np.cos(np.outer(c, freqs)), np.sin(np.outer(c, freqs))], axis=1)
    np.testing.assert_allclose(pos, expected, rtol=1e-6, atol=1e-6)
    four = fourier_embedding(c, 256)
    assert four.shape == (3, 256)
    np.testing.assert_allclose(jnp.sum(four**2, axis=1), 128.0, rtol=1e-5)  # cos^2 + sin^2 = 1
    np.testing.assert_array_equal(four, fourier_embedding(c, 256))  # constant frequencies
    # E[cos(2 pi c w)] = exp(-2 pi^2 c^2 scale^2) for w ~ N(0, scale^2): 0.603 at c = 0.01 and
    # scale = 16; the mean of 2048 features has standard deviation 0.01 here.
    mean_cos = float(fourier_embedding(jnp.array([0.01]), 4096)[0, :2048].mean())
    assert abs(mean_cos - math.exp(-2 * math.pi**2 * 0.01**2 * 16**2)) < 0.05
    pe = sincos_position_embedding(2, 3, 8)
    assert pe.shape == (6, 8)
    assert len({tuple(row) for row in np.round(pe, 6)}) == 6  # every position distinct


def test_unconditional_model_rejects_labels():
    model = small_model("mlp")
    x, c_noise, labels = inputs(SHAPES["mlp"])
    variables = random_variables(model, x, c_noise)
    with pytest.raises(ValueError, match="unconditional"):
        model.apply(variables, x, c_noise, labels)


def test_config_errors():
    with pytest.raises(ValueError, match=r"known models: \['dit', 'mlp', 'unet'\]"):
        default_config("resnet")
    config = default_config("unet")
    config.name = "transformer"
    with pytest.raises(ValueError, match="unknown model name 'transformer'"):
        create_model(config)
    config = default_config("unet")
    del config["num_res_blocks"]
    with pytest.raises(ValueError, match=r"missing fields \['num_res_blocks'\]"):
        create_model(config)
    config = default_config("dit")
    config.hiden_size = 64
    with pytest.raises(ValueError, match=r"unknown fields \['hiden_size'\]"):
        create_model(config)
    for name, field, value, message in [
        ("unet", "embedding", "learned", "embedding must be one of"),
        ("unet", "impl", "cuda", "impl must be one of"),
        ("unet", "channel_mult", (), "channel_mult"),
        ("mlp", "dropout", 1.0, "dropout must be in"),
        ("dit", "num_heads", 3, "multiple of 4 and of num_heads"),
        ("dit", "num_classes", -1, "num_classes must be >= 0"),
    ]:
        config = default_config(name)
        config[field] = value
        with pytest.raises(ValueError, match=message):
            create_model(config)


def test_input_errors():
    unet = small_model("unet", attn_resolutions=(16,))
    x, c_noise, _ = inputs((2, 8, 8, 1))
    with pytest.raises(ValueError, match=r"attn_resolutions \[16\] are not reached"):
        unet.init(jax.random.key(0), x, c_noise)
    with pytest.raises(ValueError, match="divisible by"):
        small_model("unet", channel_mult=(1, 2, 2, 2)).init(
            jax.random.key(0), x[:, :4, :6], c_noise
        )
    with pytest.raises(ValueError, match="not a multiple of patch_size"):
        small_model("dit", patch_size=3).init(jax.random.key(0), x, c_noise)


def test_paper_scale_ddpmpp_matches_edm_parameter_count():
    """EDM (Table 7) reports 55.73M parameters for DDPM++ on CIFAR-10. Ours has the same layout but
    a scale-and-shift affine (2 C outputs per block, not C): half of those weights are extra."""
    model = create_model(ddpmpp_cifar10_config(num_classes=10))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)), jnp.zeros(1))
    leaves = jax.tree_util.tree_leaves_with_path(shapes)
    count = sum(math.prod(leaf.shape) for _, leaf in leaves)
    affine = sum(
        math.prod(leaf.shape) for path, leaf in leaves if "affine" in jax.tree_util.keystr(path)
    )
    assert abs((count - affine / 2) / 1e6 - 55.73) < 0.01
