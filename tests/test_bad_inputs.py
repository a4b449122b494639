"""Bad inputs a new user tries raise one-line ValueErrors naming the argument, before compiling."""

import contextlib

import jax
import jax.numpy as jnp
import networkx as nx
import numpy as np
import pytest

from generative import losses, samplers, schedules, sde_samplers
from generative.graphs import batching, conditioning, mmd, orbits, validity
from generative.processes import EDM, VE, VP, Flow, PFGMpp

KEY = jax.random.key(0)


def zero_denoiser(x, sigma):
    return x * 0


@contextlib.contextmanager
def one_line_error(match):
    with pytest.raises(ValueError, match=match) as info:
        yield
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------------------------- schedules


@pytest.mark.parametrize("rho", [0.0, -1.0, np.float32(0), jnp.asarray(-7.0)])
def test_schedule_rho_not_positive(rho):
    with one_line_error("rho must be > 0"):
        schedules.karras_sigmas(10, rho=rho)
    with one_line_error("rho must be > 0"):
        schedules.polyexponential_sigmas(10, rho=rho)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: schedules.karras_sigmas(10, sigma_min=np.float32(0)), "sigma_min must be > 0"),
        (lambda: schedules.karras_sigmas(10, jnp.float32(90.0)), "sigma_max must be > sigma_min"),
        (lambda: schedules.vp_sigmas(10, beta_d=np.float32(-1)), "beta_d must be > 0"),
        (lambda: schedules.vp_sigmas(10, beta_min=-0.1), "beta_min must be >= 0"),
        (lambda: schedules.vp_sigmas(10, eps_s=jnp.float32(1.5)), r"eps_s must be in \(0, 1\)"),
    ],
)
def test_schedule_ranges(make, match):
    with one_line_error(match):
        make()


# ------------------------------------------------------------------------------------- processes


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: VE(sigma_min=np.float32(50), sigma_max=np.float32(1)), "sigma_min must be < sig"),
        (lambda: VE(sigma_min=jnp.float32(0)), "sigma_min must be > 0"),
        (lambda: VP(beta_min=np.float64(-0.1)), "beta_min must be > 0"),
        (lambda: VP(beta_min=jnp.asarray(30.0)), "beta_min must be < beta_max"),
        (lambda: EDM(sigma_data=np.array(0.0)), "sigma_data must be > 0"),
        (lambda: Flow(sigma_min=jnp.float32(-1)), "sigma_min must be > 0"),
        (lambda: PFGMpp(D=jnp.float32(-1)), r"D \(PFGM\+\+ augmentation dimension\) must be"),
        (lambda: PFGMpp(D=np.float32(0)), r"D \(PFGM\+\+ augmentation dimension\) must be"),
    ],
)
def test_process_constants_as_numpy_and_jax_scalars(make, match):
    with one_line_error(match):
        make()


def test_processes_still_trace():
    sigma = jax.jit(lambda s: VE(sigma_min=s, sigma_max=80.0).sigma(0.5))(0.01)
    np.testing.assert_allclose(sigma, VE(sigma_min=0.01, sigma_max=80.0).sigma(0.5), rtol=1e-6)
    batched = jax.vmap(lambda s: EDM(sigma_min=s).t_min)(jnp.array([0.01, 0.02]))
    np.testing.assert_allclose(batched, [0.01, 0.02])
    # The gradient is a VE of cotangents (eps = 0, sigma_min < 0): rebuilt without the checks.
    grad = jax.grad(lambda p: -p.sigma(0.5))(VE())
    assert float(grad.eps) == 0.0 and float(grad.sigma_min) < 0
    process = PFGMpp(D=jnp.float32(32.0))  # a concrete D is stored as a float, static under jit
    assert type(process.D) is float
    assert float(jax.jit(lambda p: p.sigma(0.5))(process)) == 0.5


# ---------------------------------------------------------------------------------------- losses


@pytest.mark.parametrize(
    "eps, match", [(0.0, "eps must be > 0"), (-1e-5, "eps must be > 0"), (1.0, "eps must be < the")]
)
def test_dsm_loss_eps(eps, match):
    with one_line_error(match):
        losses.dsm_loss(zero_denoiser, KEY, jnp.ones((2, 3)), process=VP(), eps=eps)


@pytest.mark.parametrize(
    "eps, match",
    [
        (0.0, "eps must be > 0"),
        (np.float32(-1e-3), "eps must be > 0"),
        (0.5, r"eps must be < 0\.5"),
    ],
)
def test_flow_matching_loss_eps(eps, match):
    with one_line_error(match):
        losses.flow_matching_loss(zero_denoiser, KEY, jnp.ones((2, 3)), eps=eps)


# ---------------------------------------------------------------------------------------- graphs

SIMPLE = [nx.path_graph(3), nx.cycle_graph(4), nx.star_graph(3)]
MULTI = nx.MultiGraph([(0, 1), (0, 1), (1, 2)])


@pytest.mark.parametrize(
    "entry, name",
    [
        (lambda graphs: batching.graphs_to_dense(graphs, max_nodes=8), "graphs"),
        (lambda graphs: batching.make_buckets(graphs, batch_size=2), "graphs"),
        (lambda graphs: mmd.graph_mmd(graphs, SIMPLE, descriptors=["degree"]), "generated"),
        (lambda graphs: validity.vun(SIMPLE, graphs), "train"),
        (conditioning.graph_statistics, "graphs"),
    ],
)
def test_multigraph_rejected(entry, name):
    with one_line_error(
        rf"^{name}\[3\] is a networkx MultiGraph; pass simple nx.Graph objects \(nx.Graph\(g\) "
        "merges parallel edges\\)$"
    ):
        entry(SIMPLE + [MULTI])


def test_directed_graphs_rejected():
    with one_line_error("g is a networkx MultiGraph"):
        orbits.orbit_counts(MULTI)
    directed = nx.DiGraph([(0, 1), (1, 2)])
    with one_line_error(r"generated\[0\] is a networkx DiGraph; pass undirected"):
        mmd.graph_mmd([directed], SIMPLE)
    with one_line_error(r"graphs\[0\] is a networkx MultiDiGraph; pass simple"):
        batching.graphs_to_dense([nx.MultiDiGraph(directed)], 4)


# ---------------------------------------------------------------------------- sigmas in x's dtype


@pytest.mark.parametrize("name", ["dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_log_sigma_collapse_in_bfloat16(name):
    # 200 Karras levels stay distinct in bfloat16, but 75.5 and 73.5 (and one more pair) share
    # log sigma = 4.3125 there: the step h is 0 and h_last / h turns the whole sample into NaN.
    x = jnp.ones((2, 3), jnp.bfloat16)
    with one_line_error(rf"{name}: sigmas: 2 of 200 steps collapse to equal log\(sigma\) in bf"):
        samplers.get_sampler(name)(zero_denoiser, x, schedules.karras_sigmas(200), key=KEY)


def test_sigma_collapse_in_bfloat16():
    x = jnp.ones((2, 3), jnp.bfloat16)
    with one_line_error(r"euler: sigmas: 13 of 1000 steps collapse to equal sigma in bfloat16"):
        samplers.euler(zero_denoiser, x, schedules.karras_sigmas(1000))


def test_sigma_overflow_in_float16():
    x = jnp.ones((2, 3), jnp.float16)
    with one_line_error(r"heun: sigmas: 1 of 11 levels overflow in float16 \(x's dtype\)"):
        samplers.heun(zero_denoiser, x, schedules.karras_sigmas(10, sigma_max=1e5))
    with one_line_error(r"euler_ancestral: sigmas: 31 of 200 steps overflow float16 \(x's"):
        samplers.euler_ancestral(zero_denoiser, x, schedules.karras_sigmas(200), key=KEY)


def test_sde_time_grid_collapse_in_bfloat16():
    x = jnp.ones((2, 3), jnp.bfloat16)
    with one_line_error(r"euler_maruyama: num_steps: 495 of 1000 steps collapse to equal t in"):
        sde_samplers.euler_maruyama(VP(), zero_denoiser, x, key=KEY)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_valid_sigmas_pass_in_float32_and_bfloat16(dtype):
    x = jnp.ones((2, 3), dtype)
    sigmas = schedules.karras_sigmas(18)
    for name, sampler in samplers.SAMPLERS.items():  # traced, not compiled: the checks still run
        out = jax.eval_shape(lambda x: sampler(zero_denoiser, x, sigmas, key=KEY), x)
        assert out.dtype == dtype, name
    assert bool(jnp.all(jnp.isfinite(samplers.dpmpp_2m(zero_denoiser, x, sigmas))))
    sde = lambda x: sde_samplers.euler_maruyama(VP(), zero_denoiser, x, key=KEY, num_steps=50)  # noqa: E731
    assert jax.eval_shape(sde, x).dtype == dtype


@pytest.mark.parametrize(
    "process, sampler",
    [(EDM(), sde_samplers.euler_maruyama), (VE(), sde_samplers.predictor_corrector)],
)
def test_sde_samplers_keep_a_bfloat16_x_in_bfloat16(process, sampler):
    """The processes' time functions keep t's floating dtype (they used to promote bfloat16 t to
    float32, and the scan's carry changed dtype)."""
    x = jnp.ones((2, 3), jnp.bfloat16)
    out = jax.eval_shape(lambda x: sampler(process, zero_denoiser, x, key=KEY, num_steps=50), x)
    assert out.dtype == jnp.bfloat16
