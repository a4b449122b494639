"""Samplers against closed forms: convergence order to the adaptive ODE reference, mixture moments
of the stochastic samplers, DDIM's own formula, the 35-call count of EDM's Heun, transforms, and
input errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from generative import processes, samplers, schedules, sde_samplers
from generative.closed_form import GaussianMixture
from generative.reference_ode import probability_flow_sample

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def make_mixture(dtype=jnp.float32) -> GaussianMixture:
    """Three well-separated, correlated components in 2-D."""
    covs = [[[0.1, 0.02], [0.02, 0.05]], [[0.2, 0.0], [0.0, 0.05]], [[0.05, 0.0], [0.0, 0.1]]]
    return GaussianMixture(
        jnp.array([0.2, 0.5, 0.3], dtype),
        jnp.array([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]], dtype),
        jnp.array(covs, dtype),
    )


def prior(n, dtype=jnp.float32, seed=0):
    return SIGMA_MAX * jax.random.normal(jax.random.key(seed), (n, 2), dtype)


class Counter:
    """Counts denoiser calls at run time through a host callback (one per executed call)."""

    def __init__(self, denoise):
        self.calls = 0
        self._denoise = denoise

    def _tick(self):
        self.calls += 1

    def __call__(self, x, sigma):
        jax.debug.callback(self._tick)
        return self._denoise(x, sigma)


# --------------------------------------------------------------------------------------------------
# The reference


def test_reference_solves_the_gaussian_flow_exactly_and_counts_its_evaluations():
    """For x0 ~ N(mu, diag c) the flow is x(sigma) - mu = sqrt((c + sigma^2)/(c + sigma_max^2)) (x_T
    - mu) and the final step is D(x, sigma_min) = mu + c / (c + sigma_min^2) (x - mu)."""
    with jax.enable_x64(True):
        c, mu = jnp.array([0.3, 0.05]), jnp.array([1.0, -2.0])
        gaussian = Counter(GaussianMixture(jnp.ones(1), mu[None], jnp.diag(c)[None]).denoise)
        x = prior(3, jnp.float64)
        solve = jax.jit(
            lambda x, tol: probability_flow_sample(
                gaussian, x, SIGMA_MAX, SIGMA_MIN, rtol=tol, atol=tol
            )
        )
        x_end = mu + jnp.sqrt((c + SIGMA_MIN**2) / (c + SIGMA_MAX**2)) * (x - mu)
        exact = mu + c / (c + SIGMA_MIN**2) * (x_end - mu)
        for tol in (1e-6, 1e-10):
            gaussian.calls = 0
            x0, nfe = solve(x, tol)
            jax.effects_barrier()
            assert np.abs(x0 - exact).max() < 50 * tol
            assert int(nfe) == gaussian.calls


# --------------------------------------------------------------------------------------------------
# Deterministic samplers: order of convergence to the reference at sigma_min


@pytest.fixture(scope="module")
def convergence_setup():
    """A float64 mixture, 16 starting points and the reference solution at sigma_min (rtol
    1e-11)."""
    with jax.enable_x64(True):
        mixture = make_mixture(jnp.float64)
        x = prior(16, jnp.float64)
        solve = functools.partial(
            probability_flow_sample, rtol=1e-11, atol=1e-11, final_denoise=False
        )
        reference, _ = jax.jit(lambda x: solve(mixture.denoise, x, SIGMA_MAX, SIGMA_MIN))(x)
    return mixture, x, reference


# Expected ratio of errors when the number of levels doubles: 2^order. LMS starts with lower-order
# steps but is already close to its fourth order on these grids (measured 9.7 at 32 -> 64, 13 at 64
# -> 128). ddim (eta = 0) is the same Euler method (it is euler_ancestral:
# test_ddim_is_song_et_al_equation_12 and the k-diffusion comparison).
ORDERS = {
    "euler": (1.8, 2.3),
    "heun": (3.6, 4.8),
    "dpm_2": (3.6, 4.8),
    "dpmpp_2m": (3.6, 5.0),
    "lms": (8.0, 18.0),
}


@pytest.mark.parametrize("name", sorted(ORDERS))
def test_deterministic_sampler_converges_at_its_order(convergence_setup, name):
    """The error of x at sigma_min (the level before the shared final step into 0) against the
    adaptive reference; Karras levels with 48 and 96 steps (in the asymptotic regime: with 8 to 256
    steps the ratios settle from above or below by 32 steps)."""
    mixture, x, reference = convergence_setup
    sampler = samplers.get_sampler(name)
    with jax.enable_x64(True):
        run = jax.jit(lambda x, s: sampler(mixture.denoise, x, s, return_trajectory=True)[1][-2])
        errors = [
            float(
                jnp.abs(run(x, schedules.karras_sigmas(n, SIGMA_MIN, SIGMA_MAX)) - reference).max()
            )
            for n in (48, 96)
        ]
    low, high = ORDERS[name]
    assert low < errors[0] / errors[1] < high, errors


def test_final_step_is_the_denoiser_at_sigma_min(convergence_setup):
    """Every sampler but lms ends with x_0 = D(x(sigma_min), sigma_min) (an Euler step into 0)."""
    mixture, x, _ = convergence_setup
    with jax.enable_x64(True):
        sigmas = schedules.karras_sigmas(6, SIGMA_MIN, SIGMA_MAX)
        for name in ("heun", "dpmpp_2m"):  # the two kinds of final step
            x0, xs = samplers.get_sampler(name)(mixture.denoise, x, sigmas, return_trajectory=True)
            np.testing.assert_allclose(x0, mixture.denoise(xs[-2], SIGMA_MIN), rtol=1e-12)
            assert xs.shape == (7,) + x.shape
            np.testing.assert_array_equal(xs[0], x)
            np.testing.assert_array_equal(xs[-1], x0)


def test_lms_coefficients_integrate_polynomials_exactly():
    """c[i] integrates any polynomial of degree < k through the last k levels exactly."""
    with jax.enable_x64(True):
        sigmas = schedules.karras_sigmas(7, SIGMA_MIN, SIGMA_MAX)
        c = np.asarray(samplers.lms_coefficients(sigmas, 4))
        s = np.asarray(sigmas)
    for i in range(len(s) - 1):
        k = min(i + 1, 4)
        assert np.all(c[i, k:] == 0)
        for degree in range(k):
            nodes = s[i - np.arange(k)]
            exact = (s[i + 1] ** (degree + 1) - s[i] ** (degree + 1)) / (degree + 1)
            np.testing.assert_allclose(c[i, :k] @ nodes**degree, exact, rtol=1e-9, atol=1e-12)


def test_ddim_is_song_et_al_equation_12():
    """DDIM's update in alpha-bar coordinates (a = 1/(1 + sigma^2), y = sqrt(a) x), written out
    here, with the same eps_hat, x0_hat and noise draws."""
    with jax.enable_x64(True):
        mixture = make_mixture(jnp.float64)
        sigmas = schedules.karras_sigmas(6, SIGMA_MIN, SIGMA_MAX)
        x = prior(4, jnp.float64)
        key, eta = jax.random.key(3), 0.6
        ours = samplers.ddim(mixture.denoise, x, sigmas, key=key, eta=eta)
        s, a = np.asarray(sigmas), 1 / (1 + np.asarray(sigmas) ** 2)
        y = np.sqrt(a[0]) * np.asarray(x)
        for i in range(len(s) - 1):
            x_i = y / np.sqrt(a[i])
            x0_hat = np.asarray(mixture.denoise(jnp.asarray(x_i), s[i]))
            eps_hat = (x_i - x0_hat) / s[i]
            std = eta * np.sqrt((1 - a[i + 1]) / (1 - a[i]) * (1 - a[i] / a[i + 1]))
            z = np.asarray(samplers.sample_noise(key, i, x)) if s[i + 1] > 0 else 0.0
            y = np.sqrt(a[i + 1]) * x0_hat + np.sqrt(1 - a[i + 1] - std**2) * eps_hat + std * z
        np.testing.assert_allclose(ours, y, rtol=1e-9, atol=1e-9)


def test_heun_on_18_karras_levels_calls_the_denoiser_35_times():
    counter = Counter(make_mixture().denoise)
    sigmas = schedules.karras_sigmas(18)
    jax.jit(lambda x: samplers.heun(counter, x, sigmas))(prior(2)).block_until_ready()
    jax.effects_barrier()
    assert counter.calls == 35
    counter.calls = 0
    jax.jit(lambda x: samplers.dpmpp_2m(counter, x, sigmas))(prior(2)).block_until_ready()
    jax.effects_barrier()
    assert counter.calls == 18


# --------------------------------------------------------------------------------------------------
# Stochastic samplers: moments and mixture weights within Monte-Carlo error bars


def mixture_statistics(mixture, x):
    """Per-sample statistics whose expectations under the mixture are known exactly: x (mean), the
    three centred second moments (covariance) and the posterior responsibilities (the weights), with
    truths."""
    weights = mixture.weights / mixture.weights.sum()
    mean = weights @ mixture.means
    second = mixture.covs + jnp.einsum("ki,kj->kij", mixture.means, mixture.means)
    cov = jnp.einsum("k,kij->ij", weights, second) - jnp.outer(mean, mean)
    d = x - mean
    log_normal = jax.vmap(jax.scipy.stats.multivariate_normal.logpdf, (None, 0, 0))(
        x, mixture.means, mixture.covs
    )
    responsibilities = jax.nn.softmax(jnp.log(weights) + log_normal.T, axis=1)
    values = jnp.concatenate(
        [x, d[:, :1] ** 2, d[:, :1] * d[:, 1:], d[:, 1:] ** 2, responsibilities], axis=1
    )
    truth = jnp.concatenate([mean, jnp.stack([cov[0, 0], cov[0, 1], cov[1, 1]]), weights])
    return values, truth


def assert_matches_mixture(mixture, x, z_max=4.0):
    """Each statistic's sample mean is within z_max standard errors of its exact value (8
    statistics; P(|z| > 4) = 6e-5 each for an unbiased sampler)."""
    values, truth = mixture_statistics(mixture, x)
    z = (values.mean(0) - truth) / (values.std(0) / np.sqrt(len(x)))
    assert np.all(np.isfinite(z)) and np.abs(z).max() < z_max, np.round(z, 2)


STOCHASTIC = [
    ("euler_ancestral", 256, {}),
    ("dpmpp_2m_sde", 64, {}),
    ("dpmpp_3m_sde", 64, {}),
    ("heun", 64, {"s_churn": 40.0, "s_tmin": 0.05, "s_tmax": 50.0}),
]


@pytest.mark.parametrize("name, steps, options", STOCHASTIC, ids=[c[0] for c in STOCHASTIC])
def test_stochastic_sampler_matches_mixture_moments(name, steps, options):
    mixture = make_mixture()
    sampler = samplers.get_sampler(name)
    sigmas = schedules.karras_sigmas(steps, SIGMA_MIN, SIGMA_MAX)
    run = jax.jit(lambda x, key: sampler(mixture.denoise, x, sigmas, key=key, **options))
    x = run(prior(4000), jax.random.key(1))
    assert_matches_mixture(mixture, x)


def test_biased_sampler_is_caught_by_the_moment_check():
    """The check has power: euler_ancestral with 16 steps is visibly biased on this mixture."""
    mixture = make_mixture()
    sigmas = schedules.karras_sigmas(16, SIGMA_MIN, SIGMA_MAX)
    run = jax.jit(lambda x, key: samplers.euler_ancestral(mixture.denoise, x, sigmas, key=key))
    x = run(prior(4000), jax.random.key(1))
    with pytest.raises(AssertionError):
        assert_matches_mixture(mixture, x)


@pytest.mark.parametrize("method", ["euler_maruyama", "predictor_corrector"])
def test_reverse_sde_on_vp_matches_mixture_moments(method):
    """250 steps on the VP SDE; the result at t_min = 1e-3 is divided by s(t_min) and carries noise
    of level sigma(t_min) ~ 0.01, whose effect (variance 1e-4) is far below the error bars."""
    mixture, process = make_mixture(), processes.VP()
    sampler = getattr(sde_samplers, method)
    x = process.prior_sample(jax.random.key(0), (4000, 2))
    run = jax.jit(lambda x, key: sampler(process, mixture.denoise, x, key=key, num_steps=250))
    x = run(x, jax.random.key(1)) / process.scale(process.t_min)
    assert_matches_mixture(mixture, x)


# --------------------------------------------------------------------------------------------------
# Transforms: jit, vmap, grad, shard_map, batch-size invariance, callback


def test_jitted_sampler_compiles_once_per_shape():
    run = jax.jit(functools.partial(samplers.dpmpp_2m, make_mixture().denoise))
    x = prior(3)
    a = run(x, schedules.karras_sigmas(8))
    b = run(x, schedules.exponential_sigmas(8, SIGMA_MIN, SIGMA_MAX))  # new values, same shape
    assert run._cache_size() == 1 and np.abs(a - b).max() > 0


def test_vmap_over_keys_equals_separate_calls():
    mixture, sigmas, x = make_mixture(), schedules.karras_sigmas(8), prior(3)
    keys = jax.random.split(jax.random.key(0), 4)
    run = jax.jit(lambda key: samplers.dpmpp_2m_sde(mixture.denoise, x, sigmas, key=key))
    batched = jax.jit(jax.vmap(run))(keys)
    assert batched.shape == (4, 3, 2)
    for key, out in zip(keys, batched):
        np.testing.assert_allclose(out, run(key), rtol=1e-5, atol=1e-5)
    assert np.abs(batched[0] - batched[1]).max() > 1e-2


def test_a_sample_does_not_depend_on_its_batch():
    mixture, sigmas = make_mixture(), schedules.karras_sigmas(8)
    x, key = prior(8), jax.random.key(5)
    run = jax.jit(
        lambda x, index: samplers.dpmpp_3m_sde(
            mixture.denoise, x, sigmas, key=key, sample_index=index
        )
    )
    full = run(x, jnp.arange(8))
    np.testing.assert_allclose(run(x[5:], jnp.arange(5, 8)), full[5:], rtol=1e-5, atol=1e-5)


def test_shard_map_over_8_devices_equals_one_device():
    mixture, sigmas = make_mixture(), schedules.karras_sigmas(8)
    mesh = jax.make_mesh((8,), ("batch",))
    sharding = jax.sharding.NamedSharding(mesh, P("batch"))
    x, index = jax.device_put(prior(16), sharding), jax.device_put(jnp.arange(16), sharding)
    key = jax.random.key(2)

    def euler_ancestral(x, index):
        return samplers.euler_ancestral(mixture.denoise, x, sigmas, key=key, sample_index=index)

    def pc(x, index, axis_name=None):
        vp = processes.VP()
        return sde_samplers.predictor_corrector(
            vp, mixture.denoise, x, key=key, num_steps=4, sample_index=index, axis_name=axis_name
        )

    for fn, sharded_fn in [
        (euler_ancestral, euler_ancestral),
        (pc, functools.partial(pc, axis_name="batch")),
    ]:
        sharded = jax.jit(
            jax.shard_map(
                sharded_fn, mesh=mesh, in_specs=(P("batch"), P("batch")), out_specs=P("batch")
            )
        )(x, index)
        np.testing.assert_allclose(sharded, fn(x, index), rtol=1e-5, atol=1e-5)


def test_grad_wrt_x_T_and_denoiser_parameters_matches_finite_differences():
    with jax.enable_x64(True):
        mixture = make_mixture(jnp.float64)
        sigmas = schedules.karras_sigmas(5, SIGMA_MIN, SIGMA_MAX)
        x = (
            prior(2, jnp.float64) / 10
        )  # keep the flow map moderate so finite differences are accurate

        def loss(x, means):
            denoise = GaussianMixture(mixture.weights, means, mixture.covs).denoise
            out = samplers.heun(denoise, x, sigmas, key=jax.random.key(0), s_churn=1.0)
            return jnp.sum(out**2)

        loss = jax.jit(loss)
        jax.test_util.check_grads(loss, (x, mixture.means), order=1, modes=["rev"], eps=1e-5)
        grad_x = jax.grad(loss)(x, mixture.means)
        assert grad_x.shape == x.shape and np.all(np.isfinite(grad_x))


def test_callback_sees_every_step_in_order():
    mixture, sigmas, x = make_mixture(), schedules.karras_sigmas(5), prior(3)
    seen = []
    samplers.heun(mixture.denoise, x, sigmas, callback=lambda info: seen.append(info))
    jax.effects_barrier()
    assert [int(info["i"]) for info in seen] == list(range(5))
    np.testing.assert_allclose([info["sigma"] for info in seen], sigmas[:-1], rtol=1e-6)
    np.testing.assert_array_equal(seen[0]["x"], x)
    assert seen[0]["denoised"].shape == x.shape


def test_reverse_sde_trajectory_starts_at_x_T_and_ends_at_the_sample():
    mixture, vp = make_mixture(), processes.VP()
    x = vp.prior_sample(jax.random.key(0), (4, 2))
    out, xs = sde_samplers.euler_maruyama(
        vp, mixture.denoise, x, key=jax.random.key(1), num_steps=5, return_trajectory=True
    )
    assert xs.shape == (6, 4, 2)
    np.testing.assert_array_equal(xs[0], x)
    np.testing.assert_array_equal(xs[-1], out)


# --------------------------------------------------------------------------------------------------
# Errors


def test_bad_inputs_raise_clear_errors():
    denoise, x = make_mixture().denoise, prior(2)
    good = schedules.karras_sigmas(4)
    with pytest.raises(ValueError, match="strictly descending"):
        samplers.euler(denoise, x, jnp.array([1.0, 2.0, 0.0]))
    with pytest.raises(ValueError, match="ending in exactly 0"):
        samplers.heun(denoise, x, jnp.array([2.0, 1.0]))
    with pytest.raises(ValueError, match="1-D"):
        samplers.lms(denoise, x, good[None])
    with pytest.raises(ValueError, match="unknown sampler name 'eular'"):
        samplers.get_sampler("eular")
    with pytest.raises(ValueError, match="pass key="):
        samplers.euler_ancestral(denoise, x, good)
    with pytest.raises(ValueError, match="floating array"):
        samplers.euler(denoise, jnp.ones((2, 2), jnp.int32), good)
    with pytest.raises(ValueError, match="must return x's shape"):
        samplers.dpmpp_2m(lambda x, sigma: x[:, :1], x, good)
    with pytest.raises(ValueError, match="unknown options"):
        samplers.euler(denoise, x, good, s_churm=1.0)
    with pytest.raises(ValueError, match="sample_index"):
        samplers.euler_ancestral(
            denoise, x, good, key=jax.random.key(0), sample_index=jnp.arange(3)
        )
    with pytest.raises(ValueError, match="solver_type"):
        samplers.dpmpp_2m_sde(denoise, x, good, key=jax.random.key(0), solver_type="rk4")
    with pytest.raises(ValueError, match="SDE"):
        sde_samplers.euler_maruyama(processes.PFGMpp(D=128), denoise, x, key=jax.random.key(0))
    with pytest.raises(ValueError, match="sigma_max > sigma_min > 0"):
        probability_flow_sample(denoise, x, 0.002, 80.0)


def test_checks_report_the_first_non_finite_step():
    def broken(x, sigma):  # NaN once sigma drops below 1
        return jnp.where(sigma[:, None] < 1.0, jnp.nan, 0.0 * x)

    sigmas, x = schedules.karras_sigmas(6), prior(2)
    bad_step = int(np.argmax(np.asarray(sigmas) < 1.0))
    with pytest.raises(FloatingPointError, match=f"non-finite x at step {bad_step}"):
        samplers.euler(broken, x, sigmas, checks=True)
    with pytest.raises(Exception, match="non-finite x at step"):
        jax.block_until_ready(jax.jit(lambda x: samplers.euler(broken, x, sigmas, checks=True))(x))
