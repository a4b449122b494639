"""Noise processes: marginals against their formulas, SDE consistency, the exact PFGM++ kernel."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from generative.closed_form import GaussianMixture
from generative.processes import (
    EDM,
    PROCESSES,
    VE,
    VP,
    Flow,
    PFGMpp,
    SubVP,
    get_process,
    score_from_denoiser,
)

SDES = [VP(), SubVP(), VE(), EDM()]


@pytest.mark.parametrize("name", sorted(PROCESSES))
def test_sigma_inv_round_trip_and_scale(name):
    with jax.enable_x64(True):
        process = get_process(name)
        t = jnp.linspace(process.t_min, process.t_max, 7)
        np.testing.assert_allclose(process.sigma_inv(process.sigma(t)), t, rtol=1e-10)
        sigma = jnp.geomspace(1e-3, 50.0, 7)
        np.testing.assert_allclose(process.sigma(process.sigma_inv(sigma)), sigma, rtol=1e-9)
        std = process.scale(t) * process.sigma(t)
        np.testing.assert_allclose(process.marginal_std(t), std, rtol=1e-10)
        np.testing.assert_allclose(process.sigma_max, process.sigma(process.t_max), rtol=1e-12)


def test_vp_scale_is_edm_form():
    """EDM Table 1: s(t) = 1 / sqrt(1 + sigma(t)^2) for VP."""
    t = jnp.linspace(1e-3, 1.0, 9)
    np.testing.assert_allclose(VP().scale(t), 1 / jnp.sqrt(1 + VP().sigma(t) ** 2), rtol=1e-5)


def _reference_marginal(process, t):
    """(mean coefficient, std) written out from Song et al. 2021, independently of the classes."""
    if isinstance(process, (VP, SubVP)):
        log_mean = -0.25 * t**2 * (process.beta_max - process.beta_min) - 0.5 * t * process.beta_min
        var_vp = 1 - math.exp(2 * log_mean)
        return math.exp(log_mean), math.sqrt(var_vp) if isinstance(process, VP) else var_vp
    if isinstance(process, VE):
        return 1.0, process.sigma_min * (process.sigma_max / process.sigma_min) ** t
    return 1.0, t  # EDM


@pytest.mark.parametrize("process", SDES, ids=lambda p: type(p).__name__)
def test_perturbed_moments_match_marginal(process):
    """x_t = s(t) perturb(x0, sigma(t)): sample mean and std against the formulas (5 std errors)."""
    n, x0 = 100_000, jnp.array([1.5, -0.7])
    for t in (0.1, 0.6):
        coeff, std = _reference_marginal(process, t)
        x0s = jnp.broadcast_to(x0, (n, 2))
        xt = process.scale(t) * process.perturb(jax.random.key(0), x0s, process.sigma(t))
        mean_err = np.abs(xt.mean(0) - coeff * x0) / (std / math.sqrt(n))
        std_err = np.abs(xt.std(0) - std) / (std / math.sqrt(2 * n))
        assert np.all(mean_err < 5) and np.all(std_err < 5), (mean_err, std_err)


@pytest.mark.parametrize("process", SDES, ids=lambda p: type(p).__name__)
def test_sde_coefficients_match_marginal(process):
    """dx = f x dt + g dw: the mean obeys ds/dt = f s, the variance dVar/dt = 2 f Var + g^2."""
    with jax.enable_x64(True):
        var = lambda t: process.marginal_std(t) ** 2  # noqa: E731
        for t in jnp.linspace(0.05, 0.95, 5):
            f = process.drift(jnp.ones(()), t)
            np.testing.assert_allclose(jax.grad(process.scale)(t), f * process.scale(t), rtol=1e-9)
            lhs = jax.grad(var)(t)
            np.testing.assert_allclose(lhs, 2 * f * var(t) + process.diffusion(t) ** 2, rtol=1e-9)


@pytest.mark.parametrize("n_dim, D", [(8, 4.0), (3, 130.0)])
def test_pfgmpp_radius_is_beta_prime(n_dim, D):
    """|x - y|^2 / r^2 ~ BetaPrime(N/2, D/2) with r = sigma sqrt(D) (KS test)."""
    sigma = 0.7
    y = jnp.full((20_000, n_dim), 0.3)
    x = PFGMpp(D=D).perturb(jax.random.key(1), y, sigma)
    ratio = np.asarray(jnp.sum((x - y) ** 2, -1) / (sigma**2 * D), np.float64)
    assert scipy.stats.kstest(ratio, scipy.stats.betaprime(n_dim / 2, D / 2).cdf).pvalue > 1e-3
    # power: the Gaussian kernel's law (chi2_N sigma^2 / r^2) is rejected at D = 4
    if D < 10:
        assert scipy.stats.kstest(ratio * D, scipy.stats.chi2(n_dim).cdf).pvalue < 1e-6


def test_pfgmpp_second_moment():
    """E|x - y|^2 = N sigma^2 D / (D - 2), within 5 Monte-Carlo standard errors (D = 16 > 4)."""
    n_dim, D, sigma, n = 5, 16.0, 1.3, 20_000
    x = PFGMpp(D=D).perturb(jax.random.key(2), jnp.zeros((n, n_dim)), sigma)
    sq = np.asarray(jnp.sum(x**2, -1), np.float64)
    expected = n_dim * sigma**2 * D / (D - 2)
    assert abs(sq.mean() - expected) < 5 * sq.std() / math.sqrt(n), (sq.mean(), expected)


def test_pfgmpp_large_D_is_gaussian():
    n_dim, sigma = 4, 2.0
    y = jnp.zeros((20_000, n_dim))
    x = PFGMpp(D=1e7).perturb(jax.random.key(3), y, sigma)
    sq = np.asarray(jnp.sum(x**2, -1) / sigma**2, np.float64)
    assert scipy.stats.kstest(sq, scipy.stats.chi2(n_dim).cdf).pvalue > 1e-3
    # D = inf is EDM's kernel, draw for draw
    key = jax.random.key(4)
    np.testing.assert_array_equal(
        PFGMpp(D=math.inf).perturb(key, y, sigma),
        y + sigma * jax.random.normal(jax.random.split(key)[0], y.shape),
    )


def test_perturb_per_example_sigma_and_prior():
    n = 20_000  # the batch size of the other PFGM++ draws: one gamma-sampler compilation
    sigma = jnp.linspace(0.0, 3.0, n)
    for process in (EDM(), PFGMpp(D=8.0)):
        x = process.perturb(jax.random.key(5), jnp.ones((n, 2, 2, 1)), sigma)
        assert x.shape == (n, 2, 2, 1)
        np.testing.assert_array_equal(x[0], 1.0)
        # noise scales with each example's sigma: E|x - x0|^2 / sigma^2 is the same for both halves
        ratio = jnp.sum((x[1:] - 1.0) ** 2, (1, 2, 3)) / sigma[1:] ** 2
        half = (n - 1) // 2
        low, high = np.asarray(ratio[:half]), np.asarray(ratio[half:])
        se = math.sqrt(low.var() / low.size + high.var() / high.size)
        assert abs(low.mean() - high.mean()) < 5 * se
    prior = VP().prior_sample(jax.random.key(6), (50_000,))
    assert abs(float(prior.std()) - 1.0) < 0.01  # N(0, I) up to e^{2l(1)} ~ 4e-5
    prior = Flow(sigma_max=math.inf).prior_sample(jax.random.key(6), (50_000,))
    assert Flow(sigma_max=math.inf).t_max == 1.0 and abs(float(prior.std()) - 1.0) < 0.01
    prior = PFGMpp(D=16.0, sigma_max=10.0).prior_sample(jax.random.key(7), (20_000, 3))
    expected = 3 * 100.0 * 16 / 14
    assert abs(float(jnp.mean(jnp.sum(prior**2, -1))) / expected - 1) < 0.05


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "edm", "flow"])
def test_score_from_denoiser_is_marginal_score(name):
    process = get_process(name)
    gm = GaussianMixture(
        jnp.array([0.4, 0.6]),
        jnp.array([[1.0, 0.0], [-1.0, 0.5]]),
        jnp.stack([0.3 * jnp.eye(2), 0.1 * jnp.eye(2)]),
    )
    t = jnp.asarray(0.3 if name != "edm" else 0.8)
    x = jax.random.normal(jax.random.key(8), (6, 2))
    score = score_from_denoiser(process, gm.denoise)
    np.testing.assert_allclose(score(x, t), gm.marginal(process, t).score(x), rtol=2e-3, atol=1e-4)
    # per-example t, as samplers on a process use it
    per_t = score(x, jnp.full((6,), t))
    np.testing.assert_allclose(per_t, score(x, t), rtol=1e-5)


def test_processes_under_jit_vmap_grad():
    process = PFGMpp(D=32.0)
    x0 = jnp.ones((4, 3))
    keys = jax.random.split(jax.random.key(1), 5)
    batched = jax.jit(jax.vmap(lambda p, k: p.perturb(k, x0, 0.5), (None, 0)))(process, keys)
    assert batched.shape == (5, 4, 3)
    np.testing.assert_allclose(batched[1], process.perturb(keys[1], x0, 0.5), atol=1e-5)
    # reparameterised: d perturb / d sigma = (x - x0) / sigma
    x = process.perturb(jax.random.key(2), x0, 0.5)
    grad = jax.grad(lambda s: jnp.sum(process.perturb(jax.random.key(2), x0, s)))(0.5)
    np.testing.assert_allclose(grad, jnp.sum(x - x0) / 0.5, rtol=1e-5)
    # hyperparameters are leaves: one compilation serves VP(beta_max=20) and VP(beta_max=10)
    sigma = jax.jit(lambda p: p.sigma(0.5))
    assert float(sigma(VP(beta_max=10.0))) < float(sigma(VP()))


def test_bad_inputs():
    for d in (0.0, -1.0):
        with pytest.raises(ValueError, match="D .*must be"):
            PFGMpp(D=d)
    with pytest.raises(ValueError, match="unknown process name 'ddpm'; known"):
        get_process("ddpm")
    with pytest.raises(ValueError, match="sigma_min must be < sigma_max"):
        VE(sigma_min=1.0, sigma_max=0.5)
    with pytest.raises(ValueError, match="beta_min"):
        VP(beta_min=-0.1)
    with pytest.raises(ValueError, match=r"shape \[B\]"):
        EDM().perturb(jax.random.key(0), jnp.ones((4, 2)), jnp.ones(3))
    with pytest.raises(ValueError, match="x0 must have shape"):
        EDM().perturb(jax.random.key(0), jnp.ones(()), 1.0)
