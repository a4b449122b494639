"""Benchmark the Pallas kernels against XLA (and cuDNN) and against the device's own ceilings.

Prints three tables:
  1. ceilings measured here: bf16 matmul rate (TFLOP/s) and copy bandwidth (GB/s, read + write);
  2. attention, bf16, non-causal, B x H x T x D with B * T = 16k tokens and H * D = 2048:
     TFLOP/s forward (4 B H T^2 D FLOPs) and forward + backward (3.5x that: the backward has 5
     matmuls to the forward's 2) for impl 'pallas', 'xla' and, on GPUs, 'cudnn';
  3. fused adaLN-Zero and GroupNorm+SiLU against their XLA references in GB/s of compulsory
     traffic (adaLN: read h, y, write h', out; GroupNorm: read x, write out), and as a fraction
     of the copy bandwidth.

Timing: every contender is compiled first; then rounds run each contender once in turn
(A B C A B C ...); the column t/t(pallas) is the median over rounds of the per-round time ratio
(above 1: pallas is faster). Times are medians of the rounds.

The functions return rows (dicts) and markdown_table prints them; benchmarks/gpu_suite.py runs the
same functions and adds the issue's goals beside the numbers.

On CPU (no accelerator) it runs a tiny smoke version: Pallas runs in the interpreter there, so the
CPU numbers say nothing about kernel speed; they only show the harness works.

Usage: python benchmarks/kernels.py [--rounds 10] [--quick]   (or python -m benchmarks.kernels)
"""

import argparse
import functools
import os
import statistics
import sys
import time

# Run as a script, this file's folder comes first on sys.path and its name shadows the package.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
sys.path.insert(0, os.path.dirname(_HERE))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from tqdm import tqdm  # noqa: E402

from kernels import adaln_residual, attention, groupnorm_silu  # noqa: E402

SEQ_LENS = (256, 512, 1024, 2048, 4096, 8192, 16384)  # the attention table's T ...
HEAD_DIMS = (64, 128)  # ... and D


def _timed(fn, args):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - start


def time_rounds(fns, args, rounds):
    """{name: ready-to-run fn}, each called as fn(*args) once per round in turn (A B C A B C ...):
    median time per name and median per-round ratio t(name) / t(first name)."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(_timed(fn, args))
    first = next(iter(fns), None)
    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {
        name: statistics.median(a / b for a, b in zip(t, times[first])) for name, t in times.items()
    }
    return medians, ratios


def race(contenders, args, rounds):
    """{name: fn}: each compiled and run once, then time_rounds (median time per contender and
    median per-round ratio t(other) / t(first))."""
    compiled = {}
    for name, fn in contenders.items():
        try:
            compiled[name] = jax.jit(fn).lower(*args).compile()
            _timed(compiled[name], args)
        except Exception as error:  # noqa: BLE001 - report OOM / unsupported and go on
            print(f"  {name}: unavailable ({type(error).__name__}: {str(error)[:80]})")
    return time_rounds(compiled, args, rounds)


def markdown_table(columns, rows):
    """A markdown table: columns are (header, template) pairs, each cell template.format(**row)."""
    lines = ["| " + " | ".join(header for header, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(t.format(**row) for _, t in columns) + " |" for row in rows]
    return "\n".join(lines)


def measure_ceilings(quick, rounds):
    """{matmul_n, matmul_tflops, copy_mib, copy_gbs}: an n^3 bf16 matmul (2 n^3 FLOPs) and a
    float32 x + 1 (read + write: 2 x.nbytes)."""
    n = 512 if quick else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.bfloat16)
    t_mm = race({"matmul": lambda a: a @ a}, (a,), rounds)[0]["matmul"]
    size = (1 << 20) if quick else (1 << 28)  # elements of float32: 4 MiB / 1 GiB
    x = jax.random.normal(jax.random.key(1), (size,), jnp.float32)
    t_copy = race({"copy": lambda x: x + 1}, (x,), rounds)[0]["copy"]
    return {
        "matmul_n": n,
        "matmul_tflops": 2 * n**3 / t_mm / 1e12,
        "copy_mib": x.nbytes >> 20,
        "copy_gbs": 2 * x.nbytes / t_copy / 1e9,
    }


def ceilings_table(ceilings):
    rows = [
        {
            "ceiling": f"bf16 matmul {ceilings['matmul_n']}^3",
            "value": f"{ceilings['matmul_tflops']:.3g} TFLOP/s",
        },
        {
            "ceiling": f"copy (x + 1, {ceilings['copy_mib']} MiB, read + write)",
            "value": f"{ceilings['copy_gbs']:.1f} GB/s",
        },
    ]
    return markdown_table((("ceiling", "{ceiling}"), ("value", "{value}")), rows)


ATTENTION_COLUMNS = (
    ("T", "{T}"),
    ("D", "{D}"),
    ("B x H", "{B} x {H}"),
    ("impl", "{impl}"),
    ("fwd ms", "{fwd_ms:.3f}"),
    ("fwd TFLOP/s", "{fwd_tflops:.2f}"),
    ("fwd+bwd ms", "{fwd_bwd_ms:.3f}"),
    ("fwd+bwd TFLOP/s", "{fwd_bwd_tflops:.2f}"),
    ("t/t(pallas) fwd", "{vs_pallas_fwd:.2f}"),
    ("t/t(pallas) fwd+bwd", "{vs_pallas_fwd_bwd:.2f}"),
)


def bench_attention(seq_lens, head_dims, rounds, impls, tokens=16384, hidden=2048):
    """One row (ATTENTION_COLUMNS' fields) per (T, D, impl) that compiled."""
    rows = []
    for t, d in tqdm([(t, d) for d in head_dims for t in seq_lens], desc="attention"):
        batch, heads = max(1, tokens // t), max(1, hidden // d)
        keys = jax.random.split(jax.random.key(t + d), 4)
        q, k, v, g = (jax.random.normal(kk, (batch, t, heads, d), jnp.bfloat16) for kk in keys)
        fwd = {impl: functools.partial(attention, impl=impl) for impl in impls}

        def loss(fn, q, k, v, g):
            return jnp.sum(fn(q, k, v).astype(jnp.float32) * g)

        train = {
            impl: jax.grad(functools.partial(loss, fn), argnums=(0, 1, 2))
            for impl, fn in fwd.items()
        }
        flops = 4 * batch * heads * t * t * d
        t_fwd, r_fwd = race(fwd, (q, k, v), rounds)
        t_train, r_train = race(train, (q, k, v, g), rounds)
        for impl in t_fwd:
            tt = t_train.get(impl, float("nan"))
            rows.append(
                {
                    "T": t,
                    "D": d,
                    "B": batch,
                    "H": heads,
                    "impl": impl,
                    "fwd_ms": t_fwd[impl] * 1e3,
                    "fwd_tflops": flops / t_fwd[impl] / 1e12,
                    "fwd_bwd_ms": tt * 1e3,
                    "fwd_bwd_tflops": 3.5 * flops / tt / 1e12,
                    "vs_pallas_fwd": r_fwd[impl],
                    "vs_pallas_fwd_bwd": r_train.get(impl, float("nan")),
                }
            )
    return rows


NORM_COLUMNS = (
    ("core", "{core}"),
    ("shape", "{shape}"),
    ("dtype", "{dtype}"),
    ("impl", "{impl}"),
    ("ms", "{ms:.3f}"),
    ("GB/s", "{gbs:.1f}"),
    ("% of copy", "{pct_copy:.0f}"),
    ("t/t(pallas)", "{vs_pallas:.2f}"),
)


def _norm_rows(core, shape, dtype, nbytes, race_result, copy_gbs):
    times, ratios = race_result
    return [
        {
            "core": core,
            "shape": "x".join(map(str, shape)),
            "dtype": jnp.dtype(dtype).name,
            "impl": impl,
            "ms": t * 1e3,
            "gbs": nbytes / t / 1e9,
            "pct_copy": 100 * nbytes / t / 1e9 / copy_gbs,
            "vs_pallas": ratios[impl],
        }
        for impl, t in times.items()
    ]


def bench_norms(quick, rounds, copy_gbs):
    """One row (NORM_COLUMNS' fields) per (core, dtype, impl) that compiled."""
    rows = []
    batch = 2 if quick else 64
    keys = jax.random.split(jax.random.key(2), 5)
    for dtype in (jnp.bfloat16, jnp.float32):
        tokens, channels = (16, 64) if quick else (256, 1152)  # DiT-XL/2 at 256^2
        h, y = (jax.random.normal(k, (batch, tokens, channels), dtype) for k in keys[:2])
        mods = [jax.random.normal(k, (batch, channels), dtype) for k in keys[2:]]
        contenders = {
            impl: functools.partial(adaln_residual, impl=impl) for impl in ("pallas", "xla")
        }
        result = race(contenders, (h, y, *mods), rounds)
        rows += _norm_rows("adaLN-Zero", h.shape, dtype, 4 * h.nbytes, result, copy_gbs)
        side, channels = (4, 32) if quick else (32, 256)
        x = jax.random.normal(keys[0], (batch, side, side, channels), dtype)
        gamma, beta = jnp.ones(channels, dtype), jnp.zeros(channels, dtype)
        scale, shift = mods[0][:, :channels], mods[1][:, :channels]
        contenders = {
            impl: functools.partial(groupnorm_silu, num_groups=32, impl=impl)
            for impl in ("pallas", "xla")
        }

        def call(fn, x, gamma, beta, scale, shift):
            return fn(x, gamma, beta, scale=scale, shift=shift)

        contenders = {impl: functools.partial(call, fn) for impl, fn in contenders.items()}
        result = race(contenders, (x, gamma, beta, scale, shift), rounds)
        rows += _norm_rows("GroupNorm+SiLU", x.shape, dtype, 2 * x.nbytes, result, copy_gbs)
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (default on CPU)")
    args = parser.parse_args()
    backend = jax.default_backend()
    quick = args.quick or backend == "cpu"
    print(f"device: {jax.devices()[0].device_kind} ({backend}); quick={quick}")
    ceilings = measure_ceilings(quick, args.rounds)
    print("\n" + ceilings_table(ceilings))
    impls = ("pallas", "xla", "cudnn") if backend == "gpu" else ("pallas", "xla")
    if quick:
        rows = bench_attention((64, 128), (32,), args.rounds, impls, tokens=128, hidden=64)
    else:
        rows = bench_attention(SEQ_LENS, HEAD_DIMS, args.rounds, impls)
    print("\n" + markdown_table(ATTENTION_COLUMNS, rows))
    norms = bench_norms(quick, args.rounds, ceilings["copy_gbs"])
    print("\n" + markdown_table(NORM_COLUMNS, norms))


if __name__ == "__main__":
    main()
