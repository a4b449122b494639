"""Parameter counts and CPU speed of the default models (generative.models.default_config).

    python -m benchmarks.models [--batch 128] [--repeats 5]

For each model: parameters, compile time, and the median wall time of a jit-compiled forward pass
(train=False) and of a forward+backward pass (train=True, dropout on) over ``repeats`` runs.
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from generative.models import create_model, default_config

CASES = (("mlp", (2,)), ("unet", (8, 8, 1)), ("dit", (8, 8, 1)))


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name, sample_shape, batch, repeats):
    model = create_model(default_config(name))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, *sample_shape)), jnp.float32)
    c_noise = jnp.asarray(rng.standard_normal(batch), jnp.float32)
    params = jax.jit(model.init)(jax.random.key(0), x, c_noise)["params"]
    count = sum(p.size for p in jax.tree.leaves(params))

    forward = jax.jit(lambda p: model.apply({"params": p}, x, c_noise))

    def loss(p):
        rngs = {"dropout": jax.random.key(1)}
        out = model.apply({"params": p}, x, c_noise, train=True, rngs=rngs)
        return jnp.mean((out - x) ** 2)

    backward = jax.jit(jax.grad(loss))
    start = time.perf_counter()
    jax.block_until_ready((forward(params), backward(params)))
    compile_s = time.perf_counter() - start
    fwd = median_seconds(lambda: forward(params), repeats)
    bwd = median_seconds(lambda: backward(params), repeats)
    return count, compile_s, fwd, bwd


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"batch {args.batch}, {jax.devices()[0].platform}, median of {args.repeats} runs")
    print(f"{'model':6} {'params':>10} {'compile s':>10} {'fwd ms':>9} {'fwd+bwd ms':>11}")
    for name, shape in CASES:
        count, compile_s, fwd, bwd = measure(name, shape, args.batch, args.repeats)
        print(f"{name:6} {count:10,d} {compile_s:10.1f} {1e3 * fwd:9.1f} {1e3 * bwd:11.1f}")


if __name__ == "__main__":
    main()
