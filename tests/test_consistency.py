"""Consistency models against closed forms: the exact boundary, TrigFlow <-> EDM with the Gaussian
denoiser, CT and CD at exact consistency functions, iCT's curriculum and level distribution,
multistep sampling of Gaussian data, transforms, and input errors."""

import contextlib
import functools
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import norm

from generative import preconditioning, samplers, schedules
from generative.consistency import losses, parametrization, sampling
from generative.preconditioning import precondition, process_options
from generative.processes import EDM, VP

SD, EPS, T = 0.5, 0.002, 80.0


def raw_net(x_in, c_noise):
    """A nonlinear stand-in for a network, far from 0 everywhere."""
    return 5 * jnp.tanh(3 * x_in + c_noise.reshape((-1,) + (1,) * (x_in.ndim - 1))) + 1


def gaussian_denoiser(s):
    """E[x0 | x0 + sigma n] for x0 ~ N(0, s^2 I): s^2 / (s^2 + sigma^2) x."""
    return lambda x, sigma: (s**2 / (s**2 + sigma**2))[:, None] * x


def gaussian_consistency(s, eps=EPS):
    """The PF-ODE dx/dsigma = sigma x / (s^2 + sigma^2) of N(0, s^2) data keeps x / sqrt(s^2 +
    sigma^2) fixed, so f*(x, t) = x sqrt(s^2 + eps^2) / sqrt(s^2 + t^2)."""
    return lambda x, t: (jnp.sqrt((s**2 + eps**2) / (s**2 + t**2)))[:, None] * x


@contextlib.contextmanager
def one_line_error(match):
    with pytest.raises(ValueError, match=match) as info:
        yield
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------
# Parametrisation


def test_every_parametrisation_is_exactly_the_identity_at_the_boundary():
    for dtype, eps in itertools.product((jnp.float32, jnp.float64), (0.002, 0.5)):
        with jax.enable_x64(dtype == jnp.float64):
            process = EDM(sigma_min=eps)
            x = jax.random.normal(jax.random.key(0), (5, 3), dtype)
            functions = {
                "raw": parametrization.consistency_function(raw_net, process),
                "denoiser": parametrization.consistency_from_denoiser(
                    precondition(raw_net, "edm", sigma_data=SD), process
                ),
                "trigflow": parametrization.trigflow_function(raw_net, sigma_data=SD),
            }
            for name, f in functions.items():
                boundary = 0.0 if name == "trigflow" else eps
                for t in (boundary, jnp.full((5,), boundary, dtype)):
                    out = f(x, t)
                    assert out.dtype == dtype
                    np.testing.assert_array_equal(out, x, err_msg=f"{name} {dtype} {eps}")
                assert np.abs(f(x, 1.0) - x).max() > 0.1  # the network matters elsewhere


def test_coefficients_are_the_formulas_continuous_and_exact_at_eps():
    """c_skip(eps) = 1, c_out(eps) = 0 exactly; over [eps, T] on a grid of step h the largest
    change is below 2 h (|c'| <= 9 / (8 sqrt 3 sd) = 1.30 for c_skip, <= 1 + eps T / sd^2 for
    c_out); 1e-12 above eps both are within 2e-12 of their boundary values."""
    with jax.enable_x64(True):
        coefficients = functools.partial(
            preconditioning.consistency_coefficients, sigma_data=SD, eps=EPS
        )
        c_skip, c_out, c_in, c_noise = coefficients(jnp.asarray(EPS))
        assert float(c_skip) == 1.0 and float(c_out) == 0.0
        for h in (1e-3, 1e-4):
            t = jnp.arange(EPS, T, h)
            c_skip, c_out, c_in, c_noise = coefficients(t)
            np.testing.assert_allclose(c_skip, SD**2 / ((t - EPS) ** 2 + SD**2), rtol=1e-14)
            np.testing.assert_allclose(c_out, SD * (t - EPS) / jnp.sqrt(SD**2 + t**2), rtol=1e-14)
            np.testing.assert_allclose(c_in, 1 / jnp.sqrt(t**2 + SD**2), rtol=1e-14)
            np.testing.assert_allclose(c_noise, jnp.log(t) / 4, rtol=1e-14)
            assert np.abs(np.diff(c_skip)).max() < 2 * h
            assert np.abs(np.diff(c_out)).max() < 2 * h
        c_skip, c_out, _, _ = coefficients(jnp.asarray(EPS + 1e-12))
        assert abs(1 - float(c_skip)) < 2e-12 and abs(float(c_out)) < 2e-12


def test_consistency_function_uses_the_process_constants_and_matches_the_denoiser_route():
    """consistency_from_denoiser(precondition(F, 'edm')) is consistency_function(F): the same raw
    network with the boundary coefficients; eps = 0 is EDM's preconditioning."""
    process = EDM(sigma_min=0.01, sigma_data=0.3)
    assert process_options("consistency", process) == {"sigma_data": 0.3, "eps": 0.01}
    with jax.enable_x64(True):
        x = jax.random.normal(jax.random.key(1), (6, 4), jnp.float64)
        t = jnp.geomspace(0.02, 80.0, 6)
        f = parametrization.consistency_function(raw_net, process)
        c_skip, c_out, c_in, c_noise = preconditioning.consistency_coefficients(
            t, sigma_data=0.3, eps=0.01
        )
        expected = c_skip[:, None] * x + c_out[:, None] * raw_net(c_in[:, None] * x, c_noise)
        np.testing.assert_allclose(f(x, t), expected, rtol=1e-14)
        via_denoiser = parametrization.consistency_from_denoiser(
            precondition(raw_net, "edm", sigma_data=0.3), process
        )
        np.testing.assert_allclose(via_denoiser(x, t), f(x, t), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(
            precondition(raw_net, "consistency", sigma_data=0.3, eps=0.0)(x, t),
            precondition(raw_net, "edm", sigma_data=0.3)(x, t),
            rtol=1e-14,
        )


def test_trigflow_velocity_of_the_converted_gaussian_denoiser_is_the_analytic_one():
    """N(0, s^2 I) data, z ~ N(0, sd^2 I): E[x0 | x_t] = cos s^2 / V x_t, E[z | x_t] = sin sd^2 / V
    x_t with V = cos^2 s^2 + sin^2 sd^2, so dx_t/dt = sin cos (sd^2 - s^2) / V x_t (= d ln sqrt V
    / dt x_t along the ODE)."""
    s = 0.8
    with jax.enable_x64(True):
        t = jnp.linspace(0.01, 1.56, 64)
        x_t = jax.random.normal(jax.random.key(2), (64, 3), jnp.float64)
        trig = parametrization.trigflow_denoiser_from_edm(gaussian_denoiser(s), sigma_data=SD)
        velocity = parametrization.trigflow_velocity(trig)(x_t, t)
        cos, sin = jnp.cos(t), jnp.sin(t)
        analytic = (sin * cos * (SD**2 - s**2) / (cos**2 * s**2 + sin**2 * SD**2))[:, None] * x_t
        np.testing.assert_allclose(velocity, analytic, rtol=1e-11, atol=1e-13)


def test_edm_and_trigflow_conversions_invert_each_other():
    """The EDM denoiser converted to TrigFlow and back is the original to 1e-10 over sigma in
    [0.002, 80]; a core sampler runs the converted exact TrigFlow denoiser of Gaussian data
    (cos s^2 / V x_t) and gives what it gives on the EDM one."""
    s = 0.8
    with jax.enable_x64(True):
        sigma = jnp.geomspace(EPS, T, 64)
        x = jax.random.normal(jax.random.key(3), (64, 3), jnp.float64) * (1 + sigma[:, None])
        x_t, t = parametrization.edm_to_trigflow(x, sigma, sigma_data=SD)
        x_back, sigma_back = parametrization.trigflow_to_edm(x_t, t, sigma_data=SD)
        np.testing.assert_allclose(x_back, x, rtol=1e-12)
        np.testing.assert_allclose(sigma_back, sigma, rtol=1e-12)
        edm = gaussian_denoiser(s)
        back = parametrization.edm_denoiser_from_trigflow(
            parametrization.trigflow_denoiser_from_edm(edm, sigma_data=SD), sigma_data=SD
        )
        assert np.abs(back(x, sigma) - edm(x, sigma)).max() < 1e-10

        def trig_exact(x_t, t):
            cos, sin = jnp.cos(t), jnp.sin(t)
            return (cos * s**2 / (cos**2 * s**2 + sin**2 * SD**2))[:, None] * x_t

        converted = parametrization.edm_denoiser_from_trigflow(trig_exact, sigma_data=SD)
        assert np.abs(converted(x, sigma) - edm(x, sigma)).max() < 1e-10
        sigmas = schedules.karras_sigmas(18, EPS, T)
        x_T = T * jax.random.normal(jax.random.key(4), (16, 3), jnp.float64)
        np.testing.assert_allclose(
            samplers.heun(converted, x_T, sigmas), samplers.heun(edm, x_T, sigmas), atol=1e-10
        )


def test_trigflow_network_is_edm_preconditioning_with_c_out_negated():
    """D(x, sigma) = sd^2/q^2 x - sigma sd/q F(x/q, arctan(sigma/sd)) and dx_t/dt = sd F."""
    with jax.enable_x64(True):
        sigma = jnp.geomspace(0.01, 50.0, 8)
        x = jax.random.normal(jax.random.key(5), (8, 3), jnp.float64)
        f = parametrization.trigflow_function(raw_net, sigma_data=SD)
        q = jnp.sqrt(sigma**2 + SD**2)[:, None]
        out = raw_net(x / q, jnp.arctan(sigma / SD))
        expected = SD**2 / q**2 * x - sigma[:, None] * SD / q * out
        denoise = parametrization.edm_denoiser_from_trigflow(f, sigma_data=SD)
        np.testing.assert_allclose(denoise(x, sigma), expected, rtol=1e-12, atol=1e-12)
        t = jnp.linspace(0.1, 1.5, 8)
        np.testing.assert_allclose(
            parametrization.trigflow_velocity(f)(x, t),
            SD * raw_net(x / SD, t),
            rtol=1e-10,
            atol=1e-10,
        )


# --------------------------------------------------------------------------------------------------
# CT and CD losses


def test_ct_loss_is_zero_at_the_exact_consistency_function_of_point_data():
    """For x0 = m the PF-ODE is x(sigma) = m + (x - m) sigma / t, so f*(x, t) = m + (x - m) eps / t,
    and f*(m + t_{i+1} z, t_{i+1}) = m + eps z = f*(m + t_i z, t_i): CT's loss is 0. (For N(0, s^2)
    data with s > 0 a single CT sample is O(t_{i+1} - t_i) away even at the exact function: its
    target is right only in expectation, see the next test.)"""
    with jax.enable_x64(True):
        m = jnp.array([0.3, -1.2, 2.0])
        x0 = jnp.tile(m, (512, 1))
        levels = losses.ict_levels(41)
        indices = jnp.arange(512) % 40

        def exact(x, t):
            return m + (x - m) * (EPS / t)[:, None]

        @functools.partial(jax.jit, static_argnums=(0, 1))
        def ct(online, distance, key):
            return losses.ct_loss(online, exact, x0, key, levels, indices, distance=distance)

        for distance in (losses.squared_l2, losses.pseudo_huber):
            assert float(ct(exact, distance, jax.random.key(6)).max()) < 1e-15
            assert float(ct(identity, distance, jax.random.key(6)).mean()) > 1.0
        eager = losses.ct_loss(identity, exact, x0, jax.random.key(6), levels, indices)
        np.testing.assert_allclose(ct(identity, losses.pseudo_huber, jax.random.key(6)), eager)


def test_ct_target_is_the_euler_teacher_step_in_expectation():
    """E[x0 + t_i z | x0 + t_{i+1} z] is the Euler step of the exact PF-ODE (Song et al. 2023,
    Theorem 2), so with f* linear the CT and CD(euler, exact teacher) gradients of the squared-l2
    loss agree in expectation: for f_a = (1 + a) f*, the mean of the per-example difference of
    dL/da at a = 0 is within 5 standard errors of 0 over 20,000 draws (measured 0.08 at 100,000); a
    target drawn with an independent z instead is over 20 standard errors off (measured 108 at
    100,000)."""
    s, n = 0.5, 20_000
    with jax.enable_x64(True):
        key_x0, key_z, key_i = jax.random.split(jax.random.key(7), 3)
        x0 = s * jax.random.normal(key_x0, (n, 1), jnp.float64)
        levels = losses.ict_levels(11)
        indices = losses.sample_level_indices(
            key_i, losses.lognormal_level_probabilities(levels), n
        )
        exact = gaussian_consistency(s)
        options = dict(distance=losses.squared_l2, weighting="uniform")

        def per_example_grad(loss_fn):
            def loss(a):
                online = lambda x, t: (1 + a) * exact(x, t)  # noqa: E731
                return loss_fn(online, exact)

            return jax.jit(jax.jacfwd(loss))(0.0)

        g_ct = per_example_grad(
            lambda on, tg: losses.ct_loss(on, tg, x0, key_z, levels, indices, **options)
        )
        g_cd = per_example_grad(
            lambda on, tg: losses.cd_loss(
                on, tg, gaussian_denoiser(s), x0, key_z, levels, indices, solver="euler", **options
            )
        )
        diff = np.asarray(g_ct - g_cd)
        assert abs(diff.mean()) < 5 * diff.std() / math.sqrt(n)
        # the control: CT with a fresh z' for the target
        t, t_next = levels[indices][:, None], levels[indices + 1][:, None]
        z = jax.random.normal(key_z, x0.shape, x0.dtype)
        z_fresh = jax.random.normal(jax.random.key(8), x0.shape, x0.dtype)
        x_next = x0 + t_next * z
        online = exact(x_next, t_next[:, 0])
        g_fresh = 2 * (online - exact(x0 + t * z_fresh, t[:, 0])) * online
        control = np.asarray(g_fresh[:, 0] - g_cd)
        assert abs(control.mean()) > 20 * control.std() / math.sqrt(n)


def heun_closed_form(s, t_next, t):
    """Heun on dx/dsigma = a(sigma) x, a = sigma / (s^2 + sigma^2), from t_next to t: x_hat = x (1 +
    h/2 (a(t_next) + a(t) (1 + h a(t_next)))), h = t - t_next; the exact factor is sqrt((s^2 +
    t^2) / (s^2 + t_next^2))."""
    a = lambda sigma: sigma / (s**2 + sigma**2)  # noqa: E731
    h = t - t_next
    heun = 1 + h / 2 * (a(t_next) + a(t) * (1 + h * a(t_next)))
    return heun, jnp.sqrt((s**2 + t**2) / (s**2 + t_next**2))


def test_heun_error_bound_is_third_order_in_the_level_gap():
    """Doubling the levels (81 -> 161) divides the largest relative Heun error by about 2^3."""
    with jax.enable_x64(True):
        errors = []
        for n in (81, 161):
            levels = losses.ict_levels(n)
            heun, exact_factor = heun_closed_form(0.5, levels[1:], levels[:-1])
            errors.append(float(jnp.max(jnp.abs(heun / exact_factor - 1))))
    assert 6 < errors[0] / errors[1] < 10, errors


@pytest.mark.parametrize("num_levels", [11, 81])
def test_cd_loss_at_the_exact_gaussian_consistency_function_is_the_heun_error(num_levels):
    """With the exact Gaussian denoiser as teacher and f* as online and target, CD(heun, squared
    l2, uniform) is c(t_i)^2 x^2 (heun - exact)^2 per example (c(t) = f*'s factor): 0 up to the
    Heun step's closed-form error, which bounds it; pseudo-Huber with iCT's weight is below
    w c |x| |heun - exact| (pseudo-Huber <= |a - b|). Euler, and a wrong f (s doubled), are far
    above."""
    s, n = 0.5, 4096
    with jax.enable_x64(True):
        x0 = s * jax.random.normal(jax.random.key(9), (n, 1), jnp.float64)
        levels = losses.ict_levels(num_levels)
        indices = jnp.arange(n) % (num_levels - 1)
        key = jax.random.key(10)
        exact, teacher = gaussian_consistency(s), gaussian_denoiser(s)
        t, t_next = levels[indices], levels[indices + 1]
        x = (x0 + t_next[:, None] * jax.random.normal(key, x0.shape, x0.dtype))[:, 0]
        heun, exact_factor = heun_closed_form(s, t_next, t)
        c = jnp.sqrt((s**2 + EPS**2) / (s**2 + t**2))
        bound = c * jnp.abs(x) * jnp.abs(heun - exact_factor)

        def cd(online, target, solver="heun", **options):
            return jax.jit(
                lambda: losses.cd_loss(
                    online, target, teacher, x0, key, levels, indices, solver=solver, **options
                )
            )()

        l2 = cd(exact, exact, distance=losses.squared_l2, weighting="uniform")
        np.testing.assert_allclose(l2, bound**2, rtol=1e-6, atol=1e-20)
        huber = cd(exact, exact)
        assert np.all(huber <= losses.level_gap_weight(levels, indices) * bound * (1 + 1e-9))
        relative = float(jnp.max(jnp.abs(heun / exact_factor - 1)))
        assert relative < (0.1 if num_levels == 11 else 2e-4), relative  # 0.096, 1.9e-4
        euler = cd(exact, exact, solver="euler")
        wrong = cd(gaussian_consistency(2 * s), gaussian_consistency(2 * s))
        assert float(euler.mean()) > (3 if num_levels == 11 else 30) * float(huber.mean())
        assert float(wrong.mean()) > (5 if num_levels == 11 else 100) * float(huber.mean())


# --------------------------------------------------------------------------------------------------
# iCT's curriculum and levels


def test_ict_curriculum_at_the_start_middle_and_end_of_training():
    """N(k) = min(s0 2^floor(k/K'), s1) + 1 with K' = floor(K / (log2(s1/s0) + 1)); the paper's
    K = 400,000, s0 = 10, s1 = 1280 gives K' = 50,000 and 11, 21, ..., 1281 levels; also under jit
    and for a K that log2(s1/s0) + 1 does not divide."""
    for total, s0, s1 in ((400_000, 10, 1280), (1000, 10, 1280), (7_777, 4, 100)):
        k_prime = math.floor(total / (math.log2(s1 / s0) + 1))
        run = jax.jit(functools.partial(losses.ict_num_levels, total_steps=total, s0=s0, s1=s1))
        for k in (0, 1, k_prime - 1, k_prime, total // 2, total - k_prime, total - 1, total):
            expected = min(s0 * 2 ** (k // k_prime), s1) + 1
            assert int(losses.ict_num_levels(k, total, s0=s0, s1=s1)) == expected
            assert int(run(jnp.asarray(k))) == expected
    assert [int(losses.ict_num_levels(k, 400_000)) for k in (0, 50_000, 200_000, 399_999)] == [
        11,
        21,
        161,
        1281,
    ]


def test_ict_levels_are_karras_levels_from_eps_to_t():
    with jax.enable_x64(True):
        levels = losses.ict_levels(11)
        i = np.arange(11)
        expected = (EPS ** (1 / 7) + i / 10 * (T ** (1 / 7) - EPS ** (1 / 7))) ** 7
        np.testing.assert_allclose(levels, expected, rtol=1e-12)
        assert float(levels[0]) == EPS and float(levels[-1]) == T


@pytest.mark.parametrize("num_levels", [11, 1281])
def test_level_probabilities_are_the_discretised_lognormal(num_levels):
    """p_i = (Phi((ln t_{i+1} - P_mean) / P_std) - Phi((ln t_i - P_mean) / P_std)) / mass of [eps,
    T] (the erf differences, normalised); their mean log level sits below 0 (P_mean = -1.1)."""
    with jax.enable_x64(True):
        levels = losses.ict_levels(num_levels)
        p = losses.lognormal_level_probabilities(levels)
        assert p.shape == (num_levels - 1,)
        np.testing.assert_allclose(float(p.sum()), 1.0, rtol=1e-12)
        cdf = norm.cdf((np.log(np.asarray(levels)) + 1.1) / 2.0)
        np.testing.assert_allclose(p, np.diff(cdf) / (cdf[-1] - cdf[0]), rtol=1e-9)
        midpoints = np.log(np.asarray(levels[:-1] * levels[1:])) / 2
        assert -1.6 < float(np.sum(np.asarray(p) * midpoints)) < -0.6
        flipped = losses.lognormal_level_probabilities(levels, p_mean=1.1)
        assert float(np.sum(np.asarray(flipped) * midpoints)) > 0.6


def test_sampled_level_indices_follow_the_probabilities():
    """100,000 draws over 10 pairs: every count within 5 standard errors sqrt(n p (1 - p))."""
    n = 100_000
    p = np.asarray(losses.lognormal_level_probabilities(losses.ict_levels(11)), np.float64)
    draw = jax.jit(losses.sample_level_indices, static_argnums=2)
    indices = draw(jax.random.key(11), jnp.asarray(p), n)
    assert indices.shape == (n,) and jnp.issubdtype(indices.dtype, jnp.integer)
    counts = np.bincount(np.asarray(indices), minlength=10)
    assert counts.shape == (10,)
    assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p))), (counts, n * p)


# --------------------------------------------------------------------------------------------------
# Sampling


def predicted_variance(s, levels, eps=EPS):
    """Variance after multistep with f* from x_T = T z: f* maps N(0, v) at t to N(0, v (s^2 +
    eps^2) / (s^2 + t^2)); renoising adds tau^2 - eps^2."""
    v = levels[0] ** 2 * (s**2 + eps**2) / (s**2 + levels[0] ** 2)
    for tau in levels[1:]:
        v = (v + tau**2 - eps**2) * (s**2 + eps**2) / (s**2 + tau**2)
    return v


def test_multistep_with_the_exact_function_has_the_data_variance():
    """N(0, 0.5^2 I) data in 2-D, 50,000 samples, 1, 2 and 4 levels: the sample variance is within
    5 standard errors (v sqrt(2 / 100,000), 0.45%) of the closed-form variance, which is s^2 +
    eps^2 up to the prior's missing s^2 / T^2 = 4e-5."""
    s, n = 0.5, 50_000
    exact = gaussian_consistency(s)
    run = jax.jit(functools.partial(sampling.multistep, exact, eps=EPS))
    for levels in ((80.0,), (80.0, 2.0), (80.0, 5.0, 0.8, 0.1)):
        x_T = levels[0] * jax.random.normal(jax.random.key(12), (n, 2))
        key = jax.random.key(13) if len(levels) > 1 else None
        x = run(x_T, jnp.asarray(levels), key=key)
        v = predicted_variance(s, levels)
        assert abs(v / (s**2 + EPS**2) - 1) < 1e-4
        assert abs(float(jnp.var(x)) - v) < 5 * v * math.sqrt(2 / (2 * n)), levels
    one = sampling.one_step(exact, x_T, 80.0, eps=EPS)
    np.testing.assert_array_equal(one, exact(x_T, jnp.full((n,), 80.0)))


def test_trigflow_two_step_with_the_exact_function_has_the_data_variance():
    """f*(x_t, t) = x_t s / sqrt(cos^2 s^2 + sin^2 sd^2) (the ODE keeps x_t / sqrt(V) fixed); from
    x = sd z at pi/2 the prior is exact, so each step returns variance s^2 = 0.64."""
    s, n = 0.8, 50_000

    def exact(x_t, t):
        return (s / jnp.sqrt(jnp.cos(t) ** 2 * s**2 + jnp.sin(t) ** 2 * SD**2))[:, None] * x_t

    x = SD * jax.random.normal(jax.random.key(14), (n, 2))
    run = jax.jit(functools.partial(sampling.trigflow_multistep, exact, sigma_data=SD))
    out = run(x, jnp.asarray(sampling.SCM_TWO_STEPS), key=jax.random.key(15))
    assert abs(float(jnp.var(out)) - s**2) < 5 * s**2 * math.sqrt(2 / (2 * n))


def test_samples_do_not_depend_on_the_batch_and_work_under_jit_and_vmap():
    """The first 4 samples of a batch of 8 are a batch of 4, the last 4 too with their
    sample_index (EDM and TrigFlow); jit equals eager and vmap over keys equals separate calls
    (EDM; TrigFlow runs the same scan)."""
    f = parametrization.consistency_function(raw_net, EDM())
    trig = parametrization.trigflow_function(raw_net, sigma_data=SD)
    x_T = 80 * jax.random.normal(jax.random.key(16), (8, 3))
    key = jax.random.key(17)
    for run, x in (  # EDM last: the jit and vmap checks below use it
        (
            functools.partial(sampling.trigflow_multistep, trig, times=jnp.array([1.5, 1.1])),
            x_T / 160,
        ),
        (functools.partial(sampling.multistep, f, levels=jnp.array([80.0, 3.0, 0.5])), x_T),
    ):
        jitted = jax.jit(lambda x, key, index: run(x, key=key, sample_index=index))  # noqa: B023
        full = jitted(x, key, jnp.arange(8))
        np.testing.assert_allclose(jitted(x[:4], key, jnp.arange(4)), full[:4], rtol=1e-6)
        np.testing.assert_allclose(jitted(x[4:], key, jnp.arange(4, 8)), full[4:], rtol=1e-6)
    np.testing.assert_allclose(run(x, key=key), full, rtol=1e-5, atol=1e-6)
    keys = jax.random.split(key, 3)
    batched = jax.vmap(lambda key: jitted(x, key, jnp.arange(8)))(keys)
    for k, out in zip(keys, batched):
        np.testing.assert_allclose(out, jitted(x, k, jnp.arange(8)), rtol=1e-5, atol=1e-6)
    assert np.abs(batched[0] - batched[1]).max() > 1e-2


def test_multistep_is_one_scan_whatever_the_number_of_levels():
    """f is traced the same number of times (shape check, first level, scan body) for 3 and 12
    levels, and new level values of the same length reuse the compiled function."""
    traces = []

    def make_f():
        def f(x, t):
            traces.append(1)
            return gaussian_consistency(0.5)(x, t)

        return f

    x_T = 80 * jax.random.normal(jax.random.key(18), (4, 2))
    counts = []
    for n in (3, 12):
        traces.clear()
        f = make_f()
        jax.jit(lambda x, levels: sampling.multistep(f, x, levels, key=jax.random.key(0)))(  # noqa: B023
            x_T, jnp.geomspace(80.0, 0.01, n)
        )
        counts.append(len(traces))
    assert counts == [3, 3], counts
    f = make_f()
    run = jax.jit(functools.partial(sampling.multistep, f, key=jax.random.key(0)))
    run(x_T, jnp.geomspace(80.0, 0.01, 5))
    run(x_T, jnp.geomspace(80.0, 0.1, 5))
    assert run._cache_size() == 1


# --------------------------------------------------------------------------------------------------
# Bad inputs


def identity(x, t):
    return x


X = jnp.ones((4, 2))
LEVELS = losses.ict_levels(11)
INDICES = jnp.zeros((4,), jnp.int32)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sampling.one_step(identity, X, 0.002, eps=0.002), "eps must be < sigma_max"),
        (lambda: losses.ict_levels(11, eps=80.0, sigma_max=80.0), "eps must be < sigma_max"),
        (lambda: losses.ict_levels(11, eps=0.0), "eps must be > 0"),
        (lambda: losses.ict_levels(1), "n must be an int >= 2"),
        (
            lambda: sampling.multistep(identity, X, [1.0, 2.0], key=jax.random.key(0)),
            "strictly descending",
        ),
        (
            lambda: sampling.multistep(identity, X, [80.0, 0.001], key=jax.random.key(0)),
            "every level must be > eps=0.002",
        ),
        (lambda: sampling.multistep(identity, X, [80.0, 1.0]), "pass key="),
        (lambda: sampling.multistep(identity, X, [[80.0]]), "1-D array"),
        (lambda: sampling.multistep(identity, X, [np.inf, 1.0], key=jax.random.key(0)), "finite"),
        (
            lambda: sampling.multistep(
                identity, X, [80.0, 1.0], key=jax.random.key(0), sample_index=jnp.arange(3)
            ),
            "sample_index must be int",
        ),
        (lambda: sampling.multistep(lambda x, t: x[:, :1], X, [80.0]), "must return x's shape"),
        (
            lambda: sampling.trigflow_multistep(identity, X, [1.6, 1.1], key=jax.random.key(0)),
            "every level must be <= 1.57",
        ),
        (
            lambda: sampling.trigflow_multistep(identity, X, [1.5, 0.0], key=jax.random.key(0)),
            "every level must be > 0",
        ),
        (lambda: losses.ict_num_levels(0, 5), r"total_steps must be >= log2\(s1/s0\) \+ 1 = 8"),
        (lambda: losses.ict_num_levels(0, 1000, s0=20, s1=10), "1 <= s0 <= s1"),
        (lambda: losses.ict_num_levels(-1, 1000), "step must be >= 0"),
        (
            lambda: losses.ct_loss(identity, identity, X, jax.random.key(0), LEVELS, INDICES + 10),
            r"indices must be in \[0, 9\]",
        ),
        (
            lambda: losses.ct_loss(identity, identity, X, jax.random.key(0), LEVELS, INDICES * 1.0),
            "indices must be int",
        ),
        (
            lambda: losses.ct_loss(identity, identity, X, jax.random.key(0), LEVELS[::-1], INDICES),
            "strictly ascending",
        ),
        (
            lambda: losses.ct_loss(
                identity, identity, X, jax.random.key(0), LEVELS, INDICES, weighting="snr"
            ),
            "weighting must be one of",
        ),
        (
            lambda: losses.ct_loss(identity, identity, X[:, 0], jax.random.key(0), LEVELS, INDICES),
            "x0 must have shape",
        ),
        (
            lambda: losses.cd_loss(
                identity, identity, identity, X, jax.random.key(0), LEVELS, INDICES, solver="rk4"
            ),
            "solver must be one of",
        ),
        (lambda: losses.pseudo_huber(X, X[:, :1]), "one shape"),
        (lambda: parametrization.consistency_function(raw_net, VP()), "written for EDM"),
        (lambda: EDM(sigma_min=80.0, sigma_max=80.0), "sigma_min must be < sigma_max"),
    ],
)
def test_bad_inputs_give_one_line_errors(call, match):
    with one_line_error(match):
        call()
