"""Losses and preconditioning: EDM invariants, expected losses at exact denoisers, optimality."""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from generative import losses
from generative.closed_form import pfgmpp_point_denoiser
from generative.preconditioning import (
    edm_coefficients,
    iddpm_levels,
    precondition,
)
from generative.processes import EDM, VE, VP, Flow, PFGMpp

SD = 0.5


def _within(samples, expected, n_se=5.0):
    """Monte-Carlo mean of ``samples`` within n_se standard errors of ``expected``."""
    samples = np.asarray(samples, np.float64)
    se = samples.std() / math.sqrt(samples.size)
    assert abs(samples.mean() - expected) < n_se * se + 1e-9, (samples.mean(), expected, se)


def _gaussian_denoiser(var):
    """Exact E[x0 | x0 + sigma n = x] for x0 ~ N(0, var I)."""
    return lambda x, sigma: (
        var / (var + sigma**2) * x
        if jnp.ndim(sigma) == 0
        else ((var / (var + sigma**2))[:, None] * x)
    )


def test_edm_invariants():
    sigma = jnp.geomspace(0.002, 80.0, 13)
    c_skip, c_out, c_in, _ = edm_coefficients(sigma, sigma_data=SD)
    weight = (sigma**2 + SD**2) / (sigma * SD) ** 2
    np.testing.assert_allclose(weight * c_out**2, 1.0, rtol=1e-5)
    # effective training target (x0 - c_skip x) / c_out and network input c_in x have unit variance
    # when Var x0 = sigma_data^2 (non-Gaussian x0: uniform on [-sd sqrt3, sd sqrt3])
    n = 200_000
    key_x, key_n = jax.random.split(jax.random.key(0))
    x0 = SD * math.sqrt(3) * jax.random.uniform(key_x, (n,), minval=-1, maxval=1)
    noise = jax.random.normal(key_n, (n,))
    for s, skip, out, inp in zip(sigma[::3], c_skip[::3], c_out[::3], c_in[::3]):
        x = x0 + s * noise
        _within(((x0 - skip * x) / out) ** 2, 1.0)
        _within((inp * x) ** 2, 1.0)


def _lognormal_expectation(f, p_mean=-1.2, p_std=1.2):
    """E f(sigma) for ln sigma ~ N(p_mean, p_std^2), by Gauss-Hermite quadrature."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(80)
    return float(np.sum(weights * f(np.exp(p_mean + p_std * nodes))) / math.sqrt(2 * math.pi))


@pytest.mark.parametrize("var", [SD**2, 1.0])
def test_edm_loss_at_exact_gaussian_denoiser(var):
    """E loss = E_sigma[lambda var sigma^2 / (var + sigma^2)], exactly 1 when var = sd^2."""
    x0 = math.sqrt(var) * jax.random.normal(jax.random.key(1), (100_000, 4))
    loss = losses.edm_loss(_gaussian_denoiser(var), jax.random.key(2), x0)
    assert loss.shape == (100_000,)
    lam = lambda s: (s**2 + SD**2) / (s * SD) ** 2  # noqa: E731
    expected = _lognormal_expectation(lambda s: lam(s) * var * s**2 / (var + s**2))
    if var == SD**2:
        assert abs(expected - 1) < 1e-12
    _within(loss, expected)


def test_pfgmpp_loss_minimised_by_exact_denoiser():
    """d/d eps of the loss at D* + eps h has zero mean for the PFGM++ point-set denoiser D*
    (Monte Carlo, 5 std errors), and not for the Gaussian-kernel denoiser: the kernel matters."""
    points = jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.5]])
    n, d = 20_000, 4.0
    x0 = points[jax.random.randint(jax.random.key(3), (n,), 0, 3)]

    def directional_derivative(denoiser):
        def per_example(eps):
            perturbed = lambda x, s: denoiser(x, s) + eps * jnp.tanh(x)  # noqa: E731
            return losses.pfgmpp_loss(perturbed, jax.random.key(4), x0, D=d, p_mean=0.0, p_std=0.5)

        return jax.jit(jax.jacfwd(per_example))(0.0)

    _within(directional_derivative(pfgmpp_point_denoiser(points, d)), 0.0)
    wrong = np.asarray(directional_derivative(pfgmpp_point_denoiser(points, math.inf)))
    assert abs(wrong.mean()) > 10 * wrong.std() / math.sqrt(n)


def _uniform_expectation(f, lo, hi, n=200_001):
    with jax.enable_x64(True):
        t = np.linspace(lo, hi, n)
        values = np.asarray(f(jnp.asarray(t)), np.float64)
    return float(np.trapezoid(values, t) / (hi - lo))


@pytest.mark.parametrize("process", [VP(), VE()], ids=["vp", "ve"])
@pytest.mark.parametrize("weighting", ["score_sde", "likelihood"])
def test_dsm_loss_at_exact_gaussian_denoiser(process, weighting):
    """E loss: score_sde E_t[var / (var + sigma^2)]; likelihood
    E_t[g^2 var / (s sigma)^2 / (var + sigma^2)]."""
    var, eps = 0.7, 1e-2
    x0 = math.sqrt(var) * jax.random.normal(jax.random.key(5), (100_000, 3))
    loss = losses.dsm_loss(
        _gaussian_denoiser(var),
        jax.random.key(6),
        x0,
        process=process,
        weighting=weighting,
        eps=eps,
    )

    def integrand(t):
        sigma2 = process.sigma(t) ** 2
        if weighting == "score_sde":
            return var / (var + sigma2)
        return process.diffusion(t) ** 2 * var / (process.scale(t) ** 2 * sigma2 * (var + sigma2))

    _within(loss, _uniform_expectation(integrand, eps, 1.0))


def test_flow_matching_loss():
    var = 0.6
    x0 = math.sqrt(var) * jax.random.normal(jax.random.key(7), (100_000, 3))
    # exact denoiser: |D - x0|^2 / t^2 has mean var / (var (1 - t)^2 + t^2) per element
    loss = losses.flow_matching_loss(_gaussian_denoiser(var), jax.random.key(8), x0)
    _within(loss, _uniform_expectation(lambda t: var / (var * (1 - t) ** 2 + t**2), 0.0, 1.0))
    # a zero velocity field through the 'flow' preconditioning: |0 - (n - x0)|^2, mean 1 + var
    zero_velocity = precondition(lambda x_t, t: jnp.zeros_like(x_t), "flow")
    for t_sampling in ("uniform", "logit_normal"):
        loss = losses.flow_matching_loss(
            zero_velocity, jax.random.key(9), x0, t_sampling=t_sampling
        )
        _within(loss, 1 + var)


def test_preconditioning_table():
    sigma = jnp.array([0.01, 0.5, 3.0, 40.0])
    x = jax.random.normal(jax.random.key(10), (4, 5))
    seen = {}

    def raw(x_in, c_noise):
        seen["x_in"], seen["c_noise"] = x_in, c_noise
        return jnp.ones_like(x_in)

    def run(kind, **options):
        out = precondition(raw, kind, **options)(x, sigma)
        return out, seen["x_in"], seen["c_noise"]

    col = sigma[:, None]
    out, x_in, c_noise = run("edm", sigma_data=SD)
    q = jnp.sqrt(col**2 + SD**2)
    np.testing.assert_allclose(out, SD**2 / q**2 * x + col * SD / q, rtol=1e-5)
    np.testing.assert_allclose(x_in, x / q, rtol=1e-5)
    np.testing.assert_allclose(c_noise, jnp.log(sigma) / 4, rtol=1e-5)
    out, x_in, c_noise = run("ve")
    np.testing.assert_allclose(out, x + col, rtol=1e-5)
    np.testing.assert_allclose(c_noise, jnp.log(sigma / 2), rtol=1e-5)
    t = jnp.array([0.1, 0.4, 0.9])
    _, x_in, c_noise = precondition(raw, "vp")(x[:3], VP().sigma(t)), seen["x_in"], seen["c_noise"]
    np.testing.assert_allclose(c_noise, 999 * t, rtol=1e-4)
    np.testing.assert_allclose(x_in, x[:3] / jnp.sqrt(1 + VP().sigma(t)[:, None] ** 2), rtol=1e-5)
    u = iddpm_levels()
    assert u.shape == (1001,) and u[-1] == 0 and np.all(np.diff(u) < 0)
    j = np.array([0, 10, 500, 999])
    out, _, c_noise = precondition(raw, "iddpm")(x, jnp.asarray(u[j])), None, seen["c_noise"]
    np.testing.assert_array_equal(c_noise, 999 - j)
    np.testing.assert_allclose(out, x - jnp.asarray(u[j], jnp.float32)[:, None], rtol=1e-5)
    # flow: D = x_t - t v(x_t, t) with x_t = x / (1 + sigma), t = sigma / (1 + sigma)
    out, x_in, c_noise = run("flow")
    t = sigma / (1 + sigma)
    np.testing.assert_allclose(x_in, x / (1 + col), rtol=1e-5)
    np.testing.assert_allclose(c_noise, t, rtol=1e-6)
    np.testing.assert_allclose(out, x / (1 + col) - t[:, None], rtol=1e-5, atol=1e-6)
    # a scalar sigma is every example's sigma; pfgmpp is edm in the aligned sigma
    scalar = precondition(raw, "pfgmpp")(x, 0.5)
    np.testing.assert_allclose(scalar, precondition(raw, "edm")(x, jnp.full((4,), 0.5)))


def test_losses_under_jit_and_grad():
    """Gradient of the batch-mean loss w.r.t. a tiny linear network's parameters, under jit."""
    x0 = jax.random.normal(jax.random.key(11), (16, 3))

    def batch_loss(params, key, name):
        raw = lambda x_in, c_noise: x_in @ params["w"] + c_noise[:, None] * params["b"]  # noqa: E731
        kind = "flow" if name == "flow_matching" else "edm"
        process = {"edm": EDM(), "dsm": VP(), "flow_matching": Flow()}[name]
        loss_fn = losses.make_loss(ml_collections.ConfigDict({"name": name}), process)
        return jnp.mean(loss_fn(precondition(raw, kind), key, x0))

    params = {"w": jnp.eye(3), "b": jnp.zeros(3)}
    for name in ("edm", "dsm", "flow_matching"):  # pfgmpp: jit(jacfwd) in its own test above
        grads = jax.jit(jax.grad(batch_loss), static_argnums=2)(params, jax.random.key(12), name)
        assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads)), name
        assert float(jnp.abs(grads["w"]).sum()) > 0, name


def test_make_loss_takes_the_process_constants_and_rejects_bad_fields():
    cfg = lambda **f: ml_collections.ConfigDict(f)  # noqa: E731
    loss = losses.make_loss(cfg(name="pfgmpp", p_mean=-1.0), PFGMpp(D=64.0, sigma_data=0.7))
    assert loss.keywords == {"p_mean": -1.0, "D": 64.0, "sigma_data": 0.7}
    loss = losses.make_loss(cfg(name="dsm", weighting="likelihood"), VE(sigma_max=10.0))
    assert loss.keywords["process"] == VE(sigma_max=10.0)
    with pytest.raises(ValueError, match="name must be one of"):
        losses.make_loss(cfg(name="vlb"), EDM())
    with pytest.raises(ValueError, match=r"\[.sigma_data.\] belong to the process"):
        losses.make_loss(cfg(name="edm", sigma_data=0.3), EDM())
    with pytest.raises(ValueError, match=r"\[.D.\] belong to the process"):
        losses.make_loss(cfg(name="pfgmpp", D=4.0), PFGMpp(D=4.0))
    with pytest.raises(ValueError, match="unknown field.*p_meen"):
        losses.make_loss(cfg(name="edm", p_meen=-1.0), EDM())
    with pytest.raises(ValueError, match="'edm' loss trains under process.*'vp'"):
        losses.make_loss(cfg(name="edm"), VP())
    with pytest.raises(ValueError, match="'flow_matching' loss trains under"):
        losses.make_loss(cfg(name="flow_matching"), EDM())
    with pytest.raises(ValueError, match="weighting must be one of"):
        losses.dsm_loss(
            lambda x, s: x, jax.random.key(0), jnp.ones((2, 2)), process=VP(), weighting="x"
        )
    with pytest.raises(ValueError, match="x0 must have shape"):
        losses.edm_loss(lambda x, s: x, jax.random.key(0), jnp.ones(5))
    with pytest.raises(ValueError, match="unknown preconditioning kind"):
        precondition(lambda x, c: x, "ddpm")


def test_shape_mismatches_raise():
    x0 = jnp.ones((4, 3))
    with pytest.raises(ValueError, match="must return x0's shape"):
        losses.edm_loss(lambda x, s: x[:, :2], jax.random.key(0), x0)
    with pytest.raises(ValueError, match="raw_net must return x's shape"):
        precondition(lambda x_in, c: x_in[:, :2], "edm")(x0, 1.0)
