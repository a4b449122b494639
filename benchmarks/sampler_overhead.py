"""Sampler overhead on CPU: the compiled samplers against the bare denoiser and an eager loop.

Denoiser: a small MLP (2 -> 256 -> 256 -> 256 -> 2 with a noise-level input, GELU, float32) on
batches of 1024 and of 16 two-dimensional points (the second makes per-step overheads visible),
18 Karras levels. For each sampler:

* overhead = (jitted sampler time) / (NFE x the denoiser's own time), the denominator measured as
  a jitted ``lax.scan`` of NFE chained denoiser calls (so both sides are one compiled loop and the
  ratio is what the sampler adds: its arithmetic and noise draws). Goal: at most 1.05.
* eager / scan = (a step-by-step Python loop of the same algorithm, calling the jitted denoiser and
  doing the update with eager jax.numpy ops) / (the jitted sampler), for euler, heun, dpmpp_2m and
  euler_ancestral.

Timings alternate the two contenders A B A B ... and quote the median of the per-pair ratios; each
timing is the least process CPU time of three back-to-back runs (wall time on a shared machine
mostly measures the other jobs; ``--wall`` uses wall time instead).

    python -m benchmarks.sampler_overhead [--pairs 11]
"""

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from generative import samplers, schedules

BATCHES, WIDTH, LEVELS = (1024, 16), 256, 18


def init_mlp(key):
    sizes = [(3, WIDTH), (WIDTH, WIDTH), (WIDTH, WIDTH), (WIDTH, 2)]
    keys = jax.random.split(key, len(sizes))
    return [(jax.random.normal(k, s) / np.sqrt(s[0]), jnp.zeros(s[1])) for k, s in zip(keys, sizes)]


def mlp_denoiser(params):
    def denoise(x, sigma):
        c_noise = jnp.broadcast_to(jnp.log(sigma) / 4, x.shape[:1])[:, None]
        h = jnp.concatenate([x / jnp.sqrt(sigma[:, None] ** 2 + 0.25), c_noise], axis=1)
        for w, b in params[:-1]:
            h = jax.nn.gelu(h @ w + b)
        w, b = params[-1]
        return x + (h @ w + b)

    return denoise


def timed(clock, fn, *args, repeats=3) -> float:
    """The least CPU time (this process, all threads) of ``repeats`` back-to-back runs: on a shared
    machine, wall time mostly measures the other jobs."""
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        jax.block_until_ready(fn(*args))
        best = min(best, clock() - start)
    return best


def median_ratio(clock, a, b, args_a, args_b, pairs) -> float:
    timed(clock, a, *args_a), timed(clock, b, *args_b)  # compile / warm up
    return statistics.median(
        timed(clock, a, *args_a) / timed(clock, b, *args_b) for _ in range(pairs)
    )


# Step-by-step eager loops of four samplers (the same updates as generative.samplers).
def eager_euler(denoise, x, sigmas, key):
    for i in range(len(sigmas) - 1):
        denoised = denoise(x, jnp.full(x.shape[:1], sigmas[i]))
        x = x + (x - denoised) / sigmas[i] * (sigmas[i + 1] - sigmas[i])
    return x


def eager_heun(denoise, x, sigmas, key):
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        d = (x - denoise(x, jnp.full(x.shape[:1], sigma))) / sigma
        if sigma_next == 0:
            x = x + d * (sigma_next - sigma)
        else:
            x_2 = x + d * (sigma_next - sigma)
            d_2 = (x_2 - denoise(x_2, jnp.full(x.shape[:1], sigma_next))) / sigma_next
            x = x + (d + d_2) / 2 * (sigma_next - sigma)
    return x


def eager_dpmpp_2m(denoise, x, sigmas, key):
    old = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, jnp.full(x.shape[:1], sigma))
        if sigma_next == 0:
            x = denoised
        else:
            h = jnp.log(sigma) - jnp.log(sigma_next)
            d = denoised
            if old is not None:
                r = (jnp.log(sigmas[i - 1]) - jnp.log(sigma)) / h
                d = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old
            x = sigma_next / sigma * x - jnp.expm1(-h) * d
        old = denoised
    return x


def eager_euler_ancestral(denoise, x, sigmas, key):
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = denoise(x, jnp.full(x.shape[:1], sigma))
        sigma_down, sigma_up = samplers.ancestral_step(sigma, sigma_next)
        x = x + (x - denoised) / sigma * (sigma_down - sigma)
        if sigma_next > 0:
            x = x + samplers.sample_noise(key, i, x) * sigma_up
    return x


EAGER = {
    "euler": eager_euler,
    "heun": eager_heun,
    "dpmpp_2m": eager_dpmpp_2m,
    "euler_ancestral": eager_euler_ancestral,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=11, help="A B pairs per comparison")
    parser.add_argument("--wall", action="store_true", help="time wall clock, not CPU time")
    args = parser.parse_args()
    clock = time.perf_counter if args.wall else time.process_time
    params = init_mlp(jax.random.key(0))
    denoise = mlp_denoiser(params)
    jitted_denoise = jax.jit(denoise)
    sigmas = schedules.karras_sigmas(LEVELS)
    key = jax.random.key(2)

    @jax.jit
    def denoiser_chain(x, sigma_per_call):  # NFE chained calls of the bare denoiser
        def body(x, sigma):
            return denoise(x, jnp.full(x.shape[:1], sigma)), None

        return lax.scan(body, x, sigma_per_call)[0]

    print(f"device: {jax.devices()[0].device_kind}, MLP width {WIDTH}, {LEVELS} levels")
    for batch in BATCHES:
        x = sigmas[0] * jax.random.normal(jax.random.key(1), (batch, 2))
        print(f"\nbatch {batch}")
        print(
            f"{'sampler':16s} {'NFE':>4s} {'sampler / (NFE x denoiser)':>27s} {'eager / scan':>13s}"
        )
        for name, sampler in samplers.SAMPLERS.items():
            nfe = 2 * LEVELS - 1 if name in ("heun", "dpm_2") else LEVELS
            run = jax.jit(lambda x, s, k, f=sampler: f(denoise, x, s, key=k))
            chain = (x, jnp.linspace(80.0, 0.1, nfe))
            sampler_args = (x, sigmas, key)
            overhead = median_ratio(clock, run, denoiser_chain, sampler_args, chain, args.pairs)
            speedup = ""
            if name in EAGER:
                eager_args = (jitted_denoise, x, list(np.asarray(sigmas)), key)
                ratio = median_ratio(clock, EAGER[name], run, eager_args, sampler_args, args.pairs)
                speedup = f"{ratio:.2f}"
            print(f"{name:16s} {nfe:4d} {overhead:27.3f} {speedup:>13s}", flush=True)


if __name__ == "__main__":
    main()
