"""Closed-form Gaussian mixtures and the PFGM++ point denoiser: identities and Monte Carlo."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generative.closed_form import GaussianMixture, pfgmpp_point_denoiser, pfgmpp_point_log_prob
from generative.processes import PFGMpp, get_process


def _mixture(dtype=jnp.float32):
    weights = jnp.array([0.3, 0.7], dtype)
    means = jnp.array([[-1.0, 0.5], [1.5, -0.5]], dtype)
    covs = jnp.array([[[0.5, 0.2], [0.2, 0.3]], [[0.2, -0.05], [-0.05, 0.4]]], dtype)
    return GaussianMixture(weights, means, covs)


def test_denoiser_is_tweedie_of_autodiff_log_prob():
    with jax.enable_x64(True):
        gm = _mixture(jnp.float64)
        x = jax.random.normal(jax.random.key(0), (6, 2), jnp.float64) * 2
        sigma = jnp.linspace(0.05, 3.0, 6)
        grad_log_p = jax.vmap(jax.grad(lambda xi, si: gm.log_prob(xi, si)))(x, sigma)
        np.testing.assert_allclose(gm.score(x, sigma), grad_log_p, rtol=1e-10, atol=1e-12)
        tweedie = x + sigma[:, None] ** 2 * grad_log_p
        np.testing.assert_allclose(gm.denoise(x, sigma), tweedie, rtol=1e-10, atol=1e-12)
        # log_prob integrates to 1 (grid quadrature at sigma = 0.7)
        grid = jnp.linspace(-8.0, 8.0, 321)
        pts = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
        mass = jnp.sum(jnp.exp(gm.log_prob(pts, 0.7))) * (grid[1] - grid[0]) ** 2
        np.testing.assert_allclose(mass, 1.0, atol=1e-6)


def test_denoiser_equals_monte_carlo_posterior_mean():
    """E[x0 | x] by self-normalised importance sampling from the prior, within 5 standard errors."""
    with jax.enable_x64(True):
        gm = _mixture(jnp.float64)
        x0 = gm.sample(jax.random.key(1), 400_000)
        for x, sigma in [(jnp.array([0.3, 0.1]), 0.8), (jnp.array([-1.0, 1.0]), 0.4)]:
            log_w = -jnp.sum((x - x0) ** 2, -1) / (2 * sigma**2)
            w = jax.nn.softmax(log_w)
            mc_mean = w @ x0
            std_err = jnp.sqrt(jnp.sum(w[:, None] ** 2 * (x0 - mc_mean) ** 2, 0))
            exact = gm.denoise(x[None], sigma)[0]
            assert np.all(np.abs(exact - mc_mean) < 5 * std_err + 1e-6), (exact, mc_mean, std_err)


def test_sample_moments():
    gm = _mixture()
    n = 200_000
    x = gm.sample(jax.random.key(2), n)
    w = gm.weights / gm.weights.sum()
    mean = w @ gm.means
    second = jnp.einsum("k,kij->ij", w, gm.covs + jnp.einsum("ki,kj->kij", gm.means, gm.means))
    cov = second - jnp.outer(mean, mean)
    assert np.all(np.abs(x.mean(0) - mean) < 5 * np.sqrt(np.diag(cov) / n))
    # sample covariance: std error of each entry <= sqrt(E x_i^2 x_j^2 / n), bounded by 4th moments
    xc = x - x.mean(0)
    err = np.sqrt(np.mean((xc[:, :, None] * xc[:, None, :]) ** 2, 0) / n)
    assert np.all(np.abs(xc.T @ xc / n - cov) < 5 * err)


@pytest.mark.parametrize("name", ["vp", "subvp", "ve", "edm", "flow"])
def test_process_marginal_is_scaled_noisy_mixture(name):
    """log p_t(x) = log p_sigma(x / s) - N log s, since x_t = s (x0 + sigma n)."""
    process = get_process(name)
    gm = _mixture()
    t = 0.5 * (process.t_min + process.t_max) if name != "edm" else 1.3
    s, sigma = process.scale(t), process.sigma(t)
    x = jax.random.normal(jax.random.key(3), (5, 2))
    marginal = gm.marginal(process, jnp.asarray(t))
    np.testing.assert_allclose(
        marginal.log_prob(x), gm.log_prob(x / s, sigma) - 2 * jnp.log(s), rtol=1e-4, atol=1e-4
    )
    np.testing.assert_allclose(marginal.score(x), gm.score(x / s, sigma) / s, rtol=1e-3, atol=1e-4)


def test_mixture_is_a_pytree_under_jit_vmap():
    gm = _mixture()
    x = jnp.ones((3, 2))
    out = jax.jit(lambda g, x: g.denoise(x, 0.5))(gm, x)
    np.testing.assert_allclose(out, gm.denoise(x, 0.5), rtol=1e-6)
    per_sigma = jax.vmap(lambda s: gm.denoise(x, s))(jnp.array([0.1, 1.0]))
    np.testing.assert_allclose(per_sigma[1], gm.denoise(x, 1.0), rtol=1e-6)


def test_point_denoiser_gaussian_limit():
    points = jax.random.normal(jax.random.key(4), (7, 3))
    x = 1.5 * jax.random.normal(jax.random.key(5), (5, 3))
    sigma = jnp.array([0.3, 0.6, 1.0, 2.0, 5.0])
    gaussian = pfgmpp_point_denoiser(points, math.inf)(x, sigma)
    # D = inf is the exact Gaussian-kernel denoiser: a mixture of point masses (zero covariances)
    atoms = GaussianMixture(jnp.ones(7), points, jnp.zeros((7, 3, 3)))
    np.testing.assert_allclose(gaussian, atoms.denoise(x, sigma), rtol=1e-5, atol=1e-5)
    errors = [
        float(jnp.max(jnp.abs(pfgmpp_point_denoiser(points, d)(x, sigma) - gaussian)))
        for d in (8.0, 128.0, 2048.0, 1e6)
    ]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4 and errors[0] > 1e-2, errors


def test_point_denoiser_is_optimal_under_pfgmpp_kernel():
    """The optimal denoiser's residual y - D(x) is orthogonal to every function of x (Monte Carlo),
    with D = 4 heavy tails; the Gaussian-kernel denoiser fails the same test, so it has power."""
    points = jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]])
    n, sigma, d = 20_000, 1.0, 4.0
    key_y, key_x = jax.random.split(jax.random.key(6))
    y = points[jax.random.randint(key_y, (n,), 0, 3)]
    x = PFGMpp(D=d).perturb(key_x, y, sigma)
    features = jnp.concatenate([jnp.ones((n, 1)), jnp.tanh(x), jnp.tanh(x[:, :1] * x[:, 1:])], 1)

    def z_scores(denoise):
        prod = (y - denoise(x, sigma))[:, :, None] * features[:, None, :]  # [n, 2, F]
        return jnp.abs(prod.mean(0)) / (prod.std(0) / math.sqrt(n))

    assert jnp.max(z_scores(pfgmpp_point_denoiser(points, d))) < 5
    assert jnp.max(z_scores(pfgmpp_point_denoiser(points, math.inf))) > 10


def test_point_log_prob_normalised_and_gaussian_limit():
    points = jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]])
    grid = jnp.linspace(-60.0, 60.0, 1201)  # heavy tails: mass beyond |x| = 60 is ~1e-4 at D = 4
    pts = jnp.stack(jnp.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    for d in (4.0, 128.0, math.inf):
        mass = (
            jnp.sum(jnp.exp(pfgmpp_point_log_prob(points, d)(pts, 0.8))) * (grid[1] - grid[0]) ** 2
        )
        np.testing.assert_allclose(mass, 1.0, atol=1e-3)
    atoms = GaussianMixture(jnp.ones(3), points, jnp.zeros((3, 2, 2)))
    x = jax.random.normal(jax.random.key(9), (5, 2))
    sigma = jnp.array([0.3, 0.6, 1.0, 2.0, 5.0])
    gaussian = atoms.log_prob(x, sigma)
    np.testing.assert_allclose(
        pfgmpp_point_log_prob(points, math.inf)(x, sigma), gaussian, atol=1e-5
    )
    errors = [
        float(jnp.max(jnp.abs(pfgmpp_point_log_prob(points, d)(x, sigma) - gaussian)))
        for d in (8.0, 1e3, 1e6)
    ]
    # the gap shrinks like 1/D
    assert errors[1] < errors[0] / 10 and errors[2] < errors[1] / 300, errors


def test_bad_inputs():
    gm = _mixture()
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture(jnp.ones(3), gm.means, gm.covs)
    with pytest.raises(ValueError, match="covs"):
        GaussianMixture(gm.weights, gm.means, jnp.ones((2, 3, 3)))
    with pytest.raises(ValueError, match="sigma"):
        gm.denoise(jnp.ones((4, 2)), jnp.ones(3))
    with pytest.raises(ValueError, match="D"):
        pfgmpp_point_denoiser(gm.means, 0.0)
    with pytest.raises(ValueError, match="x must have shape"):
        pfgmpp_point_denoiser(gm.means, 4.0)(jnp.ones((4, 3)), 1.0)
    with pytest.raises(ValueError, match="Gaussian"):
        gm.marginal(PFGMpp(D=16.0), jnp.asarray(1.0))
    with pytest.raises(ValueError, match="x must have shape"):
        gm.denoise(jnp.ones((4, 3)), 1.0)
