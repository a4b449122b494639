"""Sampler accuracy versus NFE against the adaptive probability-flow reference (float64).

Settings: a 2-D and a 64-D Gaussian mixture with the exact EDM denoiser, and PFGM++ with D = 128 and
2048 using the exact optimal denoiser of a finite point set (``closed_form.pfgmpp_point_denoiser``;
256 points drawn from the same mixture) started from PFGM++'s heavy-tailed prior at sigma_max = 80.
All samplers use Karras levels (sigma_min 0.002, rho 7); heun and dpm_2 get n = (NFE + 1) // 2
levels (2n - 1 calls), the others n = NFE.

Deterministic samplers: RMSE per coordinate of the final sample against the reference solution
(Tsit5, rtol = atol = 1e-9) from the same x_T. Stochastic samplers (euler_ancestral, dpmpp_2m_sde,
dpmpp_3m_sde) follow other paths, so for them the error is distributional: the distance between
their sample mean and covariance and the reference samples' (sqrt(|dm|^2 + |dC|_F^2), per
coordinate), with its Monte-Carlo floor (the same distance between the reference's two halves,
divided by sqrt 2).

    python -m benchmarks.sampler_accuracy [--batch 512]
"""

import argparse
import math
import time

import jax
import jax.numpy as jnp

from generative import processes, samplers, schedules
from generative.closed_form import GaussianMixture, pfgmpp_point_denoiser
from generative.reference_ode import probability_flow_sample

NFES = (5, 10, 20, 50, 100)
DETERMINISTIC = ("euler", "heun", "dpm_2", "lms", "dpmpp_2m", "ddim")
STOCHASTIC = ("euler_ancestral", "dpmpp_2m_sde", "dpmpp_3m_sde")
SIGMA_MIN, SIGMA_MAX = 0.002, 80.0


def mixture(dim: int, key) -> GaussianMixture:
    """Four components: random means (scale 1), random covariances (eigenvalues 0.02 to 0.2)."""
    k_mean, k_rot, k_eig = jax.random.split(key, 3)
    means = jax.random.normal(k_mean, (4, dim))
    rotations, _ = jnp.linalg.qr(jax.random.normal(k_rot, (4, dim, dim)))
    eigenvalues = jax.random.uniform(k_eig, (4, dim), minval=0.02, maxval=0.2)
    covs = jnp.einsum("kij,kj,klj->kil", rotations, eigenvalues, rotations)
    return GaussianMixture(jnp.array([0.1, 0.2, 0.3, 0.4]), means, covs)


def levels(name: str, nfe: int) -> int:
    return (nfe + 1) // 2 if name in ("heun", "dpm_2") else nfe


def moment_distance(x, y) -> float:
    dm = jnp.mean(x, 0) - jnp.mean(y, 0)
    dc = jnp.cov(x.T) - jnp.cov(y.T)
    return float(jnp.sqrt((jnp.sum(dm**2) + jnp.sum(dc**2)) / x.shape[1]))


def run_setting(title, denoise, x_T, key):
    """Print one table: a row per sampler, a column per NFE."""
    start = time.perf_counter()
    reference, ref_nfe = jax.jit(
        lambda x: probability_flow_sample(denoise, x, SIGMA_MAX, SIGMA_MIN, rtol=1e-9, atol=1e-9)
    )(x_T)
    half = x_T.shape[0] // 2
    floor = moment_distance(reference[:half], reference[half:]) / math.sqrt(2)
    print(f"\n{title} (reference: {int(ref_nfe)} NFE; stochastic-sampler MC floor {floor:.1e})")
    print(f"{'sampler':16s}" + "".join(f"{'NFE ' + str(n):>10s}" for n in NFES))
    for name in DETERMINISTIC + STOCHASTIC:
        sampler = samplers.get_sampler(name)
        row = []
        for nfe in NFES:
            sigmas = schedules.karras_sigmas(levels(name, nfe), SIGMA_MIN, SIGMA_MAX)
            x0 = jax.jit(lambda x, s, k, f=sampler: f(denoise, x, s, key=k))(x_T, sigmas, key)
            if name in STOCHASTIC:
                row.append(moment_distance(x0, reference))
            else:
                row.append(float(jnp.sqrt(jnp.mean((x0 - reference) ** 2))))
        print(f"{name:16s}" + "".join(f"{e:10.1e}" for e in row), flush=True)
    print(f"({time.perf_counter() - start:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512, help="samples per setting")
    parser.add_argument("--points", type=int, default=256, help="PFGM++ point-set size")
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)  # a script: float64 throughout
    key = jax.random.key(0)
    for dim in (2, 64):
        k_mix, k_points, k_prior, k_noise = jax.random.split(jax.random.fold_in(key, dim), 4)
        data = mixture(dim, k_mix)
        x_T = SIGMA_MAX * jax.random.normal(k_prior, (args.batch, dim))
        run_setting(f"EDM, {dim}-D mixture", data.denoise, x_T, k_noise)
        points = data.sample(k_points, args.points)
        for D in (128, 2048):
            prior = processes.PFGMpp(D=D, sigma_max=SIGMA_MAX).prior_sample(k_prior, x_T.shape)
            denoise = pfgmpp_point_denoiser(points, D)
            run_setting(f"PFGM++ D={D}, {dim}-D, {args.points} points", denoise, prior, k_noise)


if __name__ == "__main__":
    main()
