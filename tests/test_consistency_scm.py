"""sCM in TrigFlow (generative.consistency.scm): the JVP tangent against central finite differences
in float64 for an MLP and for a DiT whose attention is the Pallas kernel (interpret mode, through
its forward-mode rule), the tangent's closed form zero at the exact consistency function of
Gaussian data with the exact teacher, the normalisation, warm-up and loss weighting, the 'trigflow'
preconditioning, and the float32 time input."""

import functools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generative.consistency import parametrization, scm
from generative.models import create_model, default_config
from generative.models.embeddings import LogVarianceHead
from generative.preconditioning import precondition

SD = 0.5


def _network(name, dtype, **fields):
    config = default_config(name)
    config.update(fields, dtype=jnp.dtype(dtype).name)
    model = create_model(config)
    shape = (3, 2) if name == "mlp" else (3, 4, 4, 1)
    x = jax.random.normal(jax.random.key(1), shape, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pallas interpreter on CPU
        params = model.init(jax.random.key(0), x, jnp.ones(shape[:1], dtype))["params"]
    params = _without_zero_layers(jax.tree.map(lambda p: p.astype(dtype), params))

    def raw_net(x_in, t):
        return model.apply({"params": params}, x_in, t)

    return raw_net, shape


# name: (model, fields, dtype, difference step h, rtol). The Pallas kernel runs float32 (and
# bf16/f16) only, so the DiT's check is in float32 with a fourth-order difference (truncation
# ~h^4, round-off ~1e-7 / h); the MLP's is in float64 with a second-order one.
NETWORKS = {
    "mlp": ("mlp", dict(width=16, num_blocks=2, noise_channels=8), jnp.float64, 1e-5, 1e-7),
    "dit_pallas": (
        "dit",
        dict(patch_size=2, hidden_size=8, depth=1, num_heads=2, noise_channels=8, impl="pallas"),
        jnp.float32,
        1e-2,
        1e-4,
    ),
}


def _central_difference(fn, t, h, dtype):
    """d fn / dt: (f(t+h) - f(t-h)) / 2h in float64, the fourth-order stencil otherwise."""
    if dtype == jnp.float64:
        return (fn(t + h) - fn(t - h)) / (2 * h)
    return (-fn(t + 2 * h) + 8 * fn(t + h) - 8 * fn(t - h) + fn(t - 2 * h)) / (12 * h)


def _without_zero_layers(params):
    """Every all-zero parameter (the MLP's zero-initialised branch outputs, DiT's adaLN-Zero)
    redrawn as N(0, 0.3^2): at init they would hide the time embedding and the attention from the
    output, and the test from them."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(7), len(leaves))
    leaves = [
        0.3 * jax.random.normal(k, p.shape, p.dtype) if not np.any(np.asarray(p)) else p
        for k, p in zip(keys, leaves)
    ]
    return jax.tree.unflatten(tree, leaves)


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_tangent_is_cos_t_times_the_finite_difference_of_f_along_the_trajectory(name):
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model_name, fields, dtype, h, rtol = NETWORKS[name]
        raw_net, shape = _network(model_name, dtype, **fields)
        keys = jax.random.split(jax.random.key(2), 2)
        x0 = jax.random.normal(keys[0], shape, dtype)
        z = SD * jax.random.normal(keys[1], shape, dtype)
        t = jnp.array([0.2, 0.9, 1.4], dtype)
        f = parametrization.trigflow_function(raw_net, sigma_data=SD)

        def along(t):  # f(x_t(t), t) on the fixed trajectory x_t = cos(t) x0 + sin(t) z
            c = t.reshape(-1, *[1] * (len(shape) - 1))
            return f(jnp.cos(c) * x0 + jnp.sin(c) * z, t)

        c = t.reshape(-1, *[1] * (len(shape) - 1))
        x_t, dxt_dt = jnp.cos(c) * x0 + jnp.sin(c) * z, jnp.cos(c) * z - jnp.sin(c) * x0
        tangent = jax.jit(functools.partial(scm.scm_tangent, raw_net, sigma_data=SD))
        f_minus, g = tangent(x_t, t, dxt_dt)
        difference = _central_difference(along, t, h, dtype)
        scale = float(jnp.abs(g).max())
        np.testing.assert_allclose(g, jnp.cos(c) * difference, rtol=rtol, atol=rtol * scale)
        np.testing.assert_allclose(f_minus, raw_net(x_t / SD, t), rtol=10 * rtol)
        assert float(jnp.abs(difference).max()) > 1e-2  # f really moves along the trajectory

        # Without the warm-up term only -cos^2 (sd F - dx_t/dt) is left.
        _, g0 = tangent(x_t, t, dxt_dt, warmup=0.0)
        want = -(jnp.cos(c) ** 2) * (SD * f_minus - dxt_dt)
        np.testing.assert_allclose(g0, want, rtol=10 * rtol, atol=rtol * scale)

        if name == "dit_pallas":  # the JVP runs the kernel's own tangent, not an XLA fallback
            jaxpr = str(jax.make_jaxpr(tangent)(x_t, t, dxt_dt))
            assert "flash_attention_tangent" in jaxpr


def gaussian_trigflow(s):
    """Data N(0, s^2): the exact TrigFlow consistency function f(x_t, t) = x_t s / sqrt(cos^2 s^2
    + sin^2 sd^2) (x_t / std(x_t) is constant along the PF-ODE), its raw network F = (cos x_t -
    f) / (sin sd), and the exact EDM denoiser s^2 / (s^2 + sigma^2) x."""

    def raw_net(x_in, t):
        x_t = SD * x_in
        c = t[:, None]
        f = x_t * s / jnp.sqrt(jnp.cos(c) ** 2 * s**2 + jnp.sin(c) ** 2 * SD**2)
        return (jnp.cos(c) * x_t - f) / (jnp.sin(c) * SD)

    def denoise(x, sigma):
        return s**2 / (s**2 + sigma[:, None] ** 2) * x

    return raw_net, denoise


def test_tangent_vanishes_at_the_exact_consistency_function_with_the_exact_teacher():
    with jax.enable_x64(True):
        s = 1.3
        raw_net, denoise = gaussian_trigflow(s)
        velocity = parametrization.trigflow_velocity(
            parametrization.trigflow_denoiser_from_edm(denoise, sigma_data=SD)
        )
        x_t = jax.random.normal(jax.random.key(0), (64, 1), jnp.float64)
        t = jnp.linspace(0.05, 1.5, 64)
        _, g = scm.scm_tangent(raw_net, x_t, t, velocity(x_t, t), sigma_data=SD)
        np.testing.assert_allclose(g, 0.0, atol=1e-12)
        # A wrong network (the data std off by 10%) has a tangent far from zero.
        wrong, _ = gaussian_trigflow(1.1 * s)
        _, g_wrong = scm.scm_tangent(wrong, x_t, t, velocity(x_t, t), sigma_data=SD)
        assert float(jnp.abs(g_wrong).max()) > 1e-2


def test_normalised_tangent_has_rms_below_one_and_keeps_its_direction():
    g = jnp.stack([jnp.full((4, 4), 3.0), jnp.full((4, 4), 1e-3)])
    n = scm.normalize_tangent(g, 0.1)
    np.testing.assert_allclose(n[0], 3.0 / 3.1, rtol=1e-6)
    np.testing.assert_allclose(n[1], 1e-3 / (1e-3 + 0.1), rtol=1e-5)
    # The rms, not the norm over 16 elements: the same values in a bigger array give the same n.
    np.testing.assert_allclose(scm.normalize_tangent(jnp.full((1, 64), 3.0))[0, 0], n[0, 0, 0])


def test_tangent_warmup_ramps_from_zero_to_one():
    assert float(scm.tangent_warmup(0, 10)) == 0.0
    assert float(scm.tangent_warmup(5, 10)) == 0.5
    assert float(scm.tangent_warmup(jnp.asarray(50), 10)) == 1.0
    assert float(scm.tangent_warmup(0, 0)) == 1.0


def test_times_are_the_arctan_of_a_lognormal_sigma():
    t = scm.trigflow_times(jax.random.key(0), 200_000, p_mean=-1.0, p_std=1.4, sigma_data=SD)
    log_sigma = np.log(SD * np.tan(np.asarray(t, np.float64)))
    # mean and std of N(-1, 1.4^2) from 2e5 draws: standard errors 0.003 and 0.0022.
    assert abs(log_sigma.mean() + 1.0) < 0.015
    assert abs(log_sigma.std() - 1.4) < 0.011
    assert 0 < float(t.min()) and float(t.max()) < math.pi / 2


def test_loss_is_the_weighted_residual_plus_the_log_variance():
    """With online = target + delta the loss is w(t) / (D e^u) |delta - g|^2 + u per example."""
    with jax.enable_x64(True):
        raw_net, _ = gaussian_trigflow(0.8)
        delta = 0.3
        x0 = jax.random.normal(jax.random.key(0), (16, 3), jnp.float64)
        key = jax.random.key(1)

        def online(x_in, t):
            return raw_net(x_in, t) + delta

        def logvar(t):
            return 0.5 * t

        loss = scm.scm_loss(online, raw_net, x0, key, sigma_data=SD, logvar=logvar, warmup=0.7)
        # Rebuild it from the same draws.
        time_key, noise_key = jax.random.split(key)
        t = scm.trigflow_times(time_key, 16, p_mean=-1.0, p_std=1.4, sigma_data=SD)
        z = SD * jax.random.normal(noise_key, x0.shape, x0.dtype)
        c = t[:, None]
        x_t = jnp.cos(c) * x0 + jnp.sin(c) * z
        _, g = scm.scm_tangent(raw_net, x_t, t, jnp.cos(c) * z - jnp.sin(c) * x0,
                               sigma_data=SD, warmup=0.7)  # fmt: skip
        g = scm.normalize_tangent(g, 0.1)
        want = ((delta - g) ** 2).sum(1) / (3 * SD * jnp.tan(t) * jnp.exp(0.5 * t)) + 0.5 * t
        np.testing.assert_allclose(loss, want, rtol=1e-10)


def test_gradient_flows_only_through_the_online_network():
    """d loss / d theta = w / (D e^u) 2 (F - F^- - g) dF/dtheta: at F = F^- and g = 0 it is 0
    however the target depends on theta (the target is under stop_gradient)."""
    with jax.enable_x64(True):
        raw_net, denoise = gaussian_trigflow(1.0)
        velocity = parametrization.trigflow_velocity(
            parametrization.trigflow_denoiser_from_edm(denoise, sigma_data=SD)
        )
        x0 = jax.random.normal(jax.random.key(0), (8, 1), jnp.float64)

        def loss(a):
            net = functools.partial(lambda x, t, a: a * raw_net(x, t), a=a)
            target = functools.partial(
                lambda x, t, a: jax.lax.stop_gradient(a) * raw_net(x, t), a=a
            )
            per = scm.scm_loss(net, target, x0, jax.random.key(1), sigma_data=SD,
                               velocity=velocity)  # fmt: skip
            return per.mean()

        assert abs(float(jax.grad(loss)(1.0))) < 1e-10
        assert abs(float(jax.grad(loss)(1.2))) > 1e-3


def test_trigflow_preconditioning_is_trigflow_function_in_edm_coordinates():
    def raw_net(x_in, c):
        return jnp.sin(3 * x_in) + c[:, None] ** 2

    x = jax.random.normal(jax.random.key(0), (5, 2))
    sigma = jnp.array([0.01, 0.3, 1.0, 5.0, 60.0])
    denoise = precondition(raw_net, "trigflow", sigma_data=SD)
    x_t, t = parametrization.edm_to_trigflow(x, sigma, sigma_data=SD)
    want = parametrization.trigflow_function(raw_net, sigma_data=SD)(x_t, t)
    np.testing.assert_allclose(denoise(x, sigma), want, rtol=2e-5, atol=1e-6)
    np.testing.assert_allclose(precondition(raw_net, "trigflow")(x, jnp.zeros(5)), x)


def test_network_sees_float32_time_for_bfloat16_data():
    seen = {}

    def raw_net(x_in, t):
        seen["t"] = t.dtype
        return x_in

    x_t = jnp.ones((2, 3), jnp.bfloat16)
    out = parametrization.trigflow_function(raw_net)(x_t, jnp.array([0.3, 1.2]))
    assert seen["t"] == jnp.float32 and out.dtype == jnp.bfloat16


def test_log_variance_head_starts_at_zero_and_is_float32():
    head = LogVarianceHead(num_channels=8)
    t = jnp.array([0.1, 1.0])
    params = head.init(jax.random.key(0), t)
    out = head.apply(params, t)
    assert out.shape == (2,) and out.dtype == jnp.float32 and float(jnp.abs(out).max()) == 0.0
    with pytest.raises(ValueError, match="num_channels must be even"):
        LogVarianceHead(num_channels=3).init(jax.random.key(0), t)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: scm.normalize_tangent(jnp.ones((2, 2)), 0.0), "tangent_c must be > 0"),
        (lambda: scm.tangent_warmup(0, -1), "warmup_steps must be an int >= 0"),
        (
            lambda: scm.trigflow_times(jax.random.key(0), 2, p_mean=0.0, p_std=0.0),
            "p_std must be > 0",
        ),
        (
            lambda: scm.scm_tangent(lambda x, t: x, jnp.ones((2, 3)), 1.0, jnp.ones((2, 2))),
            "dxt_dt must have x_t's shape",
        ),
        (
            lambda: scm.scm_loss(lambda x, t: x, lambda x, t: x, jnp.ones(3), jax.random.key(0)),
            "x0 must have shape",
        ),
    ],
)
def test_bad_inputs_give_one_line_errors(call, match):
    with pytest.raises(ValueError, match=match) as error:
        call()
    assert "\n" not in str(error.value)
