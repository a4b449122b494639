"""Noise-level schedules against their closed forms, and check_sigmas' errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generative import schedules
from generative.processes import VP


def _assert_valid(sigmas, n):
    sigmas = np.asarray(sigmas)
    assert sigmas.shape == (n + 1,)
    assert sigmas[-1] == 0
    assert np.all(np.diff(sigmas) < 0)
    schedules.check_sigmas(sigmas)


def test_karras_closed_form():
    n, lo, hi, rho = 18, 0.002, 80.0, 7.0
    sigmas = schedules.karras_sigmas(n, lo, hi, rho)
    _assert_valid(sigmas, n)
    np.testing.assert_allclose(sigmas[0], hi, rtol=1e-5)
    np.testing.assert_allclose(sigmas[n - 1], lo, rtol=1e-4)
    # sigma^(1/rho) is linear in the index (EDM eq. 5)
    root = np.asarray(sigmas[:-1], np.float64) ** (1 / rho)
    np.testing.assert_allclose(np.diff(root, 2), 0.0, atol=1e-5)
    np.testing.assert_allclose(schedules.karras_sigmas(1, lo, hi), [hi, 0.0], rtol=1e-5)


def test_exponential_and_polyexponential_closed_form():
    n, lo, hi = 10, 0.01, 10.0
    exp_sigmas = schedules.exponential_sigmas(n, lo, hi)
    _assert_valid(exp_sigmas, n)
    np.testing.assert_allclose(np.diff(np.log(exp_sigmas[:-1]), 2), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(exp_sigmas)[[0, n - 1]], [hi, lo], rtol=1e-5)
    np.testing.assert_allclose(schedules.polyexponential_sigmas(n, lo, hi, rho=1.0), exp_sigmas)
    poly = schedules.polyexponential_sigmas(n, lo, hi, rho=2.0)
    _assert_valid(poly, n)
    frac = (np.log(poly[:-1]) - np.log(lo)) / (np.log(hi) - np.log(lo))
    np.testing.assert_allclose(frac, (1 - np.arange(n) / (n - 1)) ** 2, atol=1e-5)


def test_vp_sigmas_match_vp_process():
    n, eps = 8, 1e-3
    sigmas = schedules.vp_sigmas(n, beta_d=19.9, beta_min=0.1, eps_s=eps)
    _assert_valid(sigmas, n)
    t = np.linspace(1.0, eps, n)
    np.testing.assert_allclose(sigmas[:-1], VP(beta_min=0.1, beta_max=20.0).sigma(t), rtol=1e-5)
    np.testing.assert_allclose(sigmas[:-1] ** 2 + 1, np.exp(0.5 * 19.9 * t**2 + 0.1 * t), rtol=1e-5)


def test_schedules_under_jit():
    sigmas = jax.jit(schedules.karras_sigmas, static_argnums=0)(5, 0.01, jnp.float32(20.0))
    np.testing.assert_allclose(sigmas, schedules.karras_sigmas(5, 0.01, 20.0), rtol=1e-6)
    jax.jit(schedules.check_sigmas)(sigmas)  # traced: shape checked, values skipped


@pytest.mark.parametrize(
    "bad, match",
    [
        (
            np.array([3.0, 1.0, 2.0, 0.0]),
            "strictly descending from sigma_max and ending in exactly 0",
        ),
        (np.array([3.0, 2.0, 1.0]), "got last entry 1.0"),
        (np.array([0.0, 1.0, 2.0]), "got them ascending.*reverse them"),
        (np.array([3.0, 3.0, 0.0]), "descending"),
        (np.ones((2, 3)), "1-D"),
        (np.array([0.0]), "at least 2"),
        (np.array([np.inf, 1.0, 0.0]), "finite"),
    ],
)
def test_check_sigmas_rejects(bad, match):
    with pytest.raises(ValueError, match=match):
        schedules.check_sigmas(bad)


def test_bad_arguments_name_themselves():
    with pytest.raises(ValueError, match="sigma_min"):
        schedules.karras_sigmas(5, 0.0, 80.0)
    with pytest.raises(ValueError, match="sigma_max"):
        schedules.exponential_sigmas(5, 1.0, 0.5)
    with pytest.raises(ValueError, match="n must be"):
        schedules.karras_sigmas(0)
    with pytest.raises(ValueError, match="eps_s"):
        schedules.vp_sigmas(5, eps_s=0.0)
    with pytest.raises(ValueError, match="known: .*karras"):
        schedules.get_schedule("cosine")
    assert schedules.get_schedule("karras") is schedules.karras_sigmas
    assert schedules.get_schedule("vp_sigmas") is schedules.vp_sigmas
