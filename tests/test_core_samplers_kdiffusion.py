"""Our samplers against k-diffusion's (PyTorch) on the same denoiser, noise levels and injected
noise.

Both run in float64 on the exact denoiser of a 2-D Gaussian mixture (the JAX one, called from
PyTorch through NumPy, so the only difference is the samplers' arithmetic); the results must agree
to float rounding. k-diffusion's ``__init__`` imports torchvision and friends, so ``sampling.py`` is
loaded on its own (benchmarks/kdiffusion.py).

Needs: torch, ``k-diffusion==0.1.1.post1`` (``--no-deps``), torchdiffeq, torchsde, trampoline, all
installed by README's test command; a missing one fails the module (it does not skip), so the
cross-check cannot silently stop running.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from benchmarks import kdiffusion
from generative import samplers, schedules
from generative.closed_form import GaussianMixture

K = kdiffusion.load_sampling()


@pytest.fixture(scope="module")
def setup():
    with jax.enable_x64(True):
        mixture = GaussianMixture(
            jnp.array([0.3, 0.7]),
            jnp.array([[-1.0, 0.5], [1.0, -0.5]]),
            jnp.array([[[0.2, 0.05], [0.05, 0.1]], [[0.05, 0.0], [0.0, 0.3]]]),
        )
        sigmas = schedules.karras_sigmas(8, 0.002, 80.0)
        x = sigmas[0] * jax.random.normal(jax.random.key(0), (5, 2), jnp.float64)
    return mixture, np.asarray(sigmas), np.asarray(x)


def _torch_model(denoise):
    def model(x, sigma):
        out = denoise(jnp.asarray(x.numpy()), jnp.asarray(sigma.numpy()))
        return torch.from_numpy(np.array(out))

    return model


CASES = [
    ("euler", "sample_euler", {}),
    ("heun", "sample_heun", {}),
    ("dpm_2", "sample_dpm_2", {}),
    ("lms", "sample_lms", {}),
    ("dpmpp_2m", "sample_dpmpp_2m", {}),
    ("euler_ancestral", "sample_euler_ancestral", {}),
    ("euler_ancestral", "sample_euler_ancestral", {"eta": 0.5, "s_noise": 1.01}),
    ("ddim", "sample_euler_ancestral", {"eta": 0.7}),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {}),
    ("dpmpp_2m_sde", "sample_dpmpp_2m_sde", {"eta": 0.5, "solver_type": "heun"}),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde", {}),
    ("dpmpp_3m_sde", "sample_dpmpp_3m_sde", {"eta": 0.0}),
]
CHURN = {"s_churn": 10.0, "s_tmin": 0.05, "s_tmax": 50.0, "s_noise": 1.003}
CASES += [(name, f"sample_{name}", CHURN) for name in ("euler", "heun", "dpm_2")]


@pytest.mark.parametrize("name, k_name, options", CASES, ids=lambda c: str(c))
def test_matches_k_diffusion(setup, monkeypatch, name, k_name, options):
    mixture, sigmas, x = setup
    key = jax.random.key(7)
    with jax.enable_x64(True):
        ours = samplers.get_sampler(name)(mixture.denoise, x, sigmas, key=key, **options)

        def noise(i):
            return torch.from_numpy(np.array(samplers.sample_noise(key, i, jnp.asarray(x))))

        def noise_sampler(sigma, sigma_next):  # k-diffusion's hook: the draw for step i
            return noise(int(np.argmin(np.abs(sigmas - float(sigma)))))

        calls = iter(range(len(sigmas)))  # Algorithm 2 samplers draw torch.randn_like once per step
        monkeypatch.setattr(K.torch, "randn_like", lambda like: noise(next(calls)))
        k_sampler = getattr(K, k_name)
        k_options = dict(options)
        if "noise_sampler" in inspect.signature(k_sampler).parameters:
            k_options["noise_sampler"] = noise_sampler
        theirs = k_sampler(
            _torch_model(mixture.denoise),
            torch.from_numpy(np.array(x)),
            torch.from_numpy(np.array(sigmas)),
            disable=True,
            **k_options,
        )
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), rtol=1e-10, atol=1e-10)
    assert np.abs(np.asarray(ours) - x).max() > 1.0  # it did move
