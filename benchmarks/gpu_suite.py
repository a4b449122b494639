"""The GPU suite: the project's speed numbers and their goals, in one run of at most 8 minutes.

Sections (each one markdown table, the goals as pass/miss columns beside the numbers):

* ceilings: bf16 matmul TFLOP/s (8192^3) and copy GB/s (x + 1 on 1 GiB, read + write), measured
  here (benchmarks/kernels.py's measure_ceilings).
* attention: bf16, non-causal, B x H x T x D with B T = 16k tokens, H D = 2048, T = 256 ... 16k,
  D = 64, 128; forward and forward + backward TFLOP/s (4 B H T^2 D FLOPs, backward 3.5x) of the
  Pallas flash kernel against jax.nn.dot_product_attention(implementation='xla' / 'cudnn')
  (kernels.py's bench_attention). Goals, T >= 2048: flash forward time <= 1.25x cuDNN's, and
  flash forward >= 2x faster than XLA.
* norms: the fused adaLN-Zero and GroupNorm+SiLU cores in GB/s of compulsory traffic and in % of
  the measured copy bandwidth (kernels.py's bench_norms). Goal: the Pallas cores >= 70% of copy.
* train_step: the main job's (configs/digits_edm.py, UNet) and the DiT's (configs/digits_dit.py)
  whole jitted train step (loss, gradient, Adam, EMA; generative.training.step.make_train_step)
  on one device, on one fixed batch of the task's data stream (the host pipeline is not timed).
  FLOPs per step = the compiled step's cost_analysis()['flops'] (XLA's count: ops inside custom
  calls, e.g. Pallas or cuDNN kernels, count 0; the configs' impl 'auto' runs XLA). Time per step
  = median over rounds of (time of K steps) / K, after K warm-up steps. MFU = FLOPs per step /
  time per step / the measured bf16 matmul ceiling, and against the datasheet's dense bf16 peak
  where DATASHEET_BF16_TFLOPS knows the device (the models compute in float32: bf16 is an upper
  bound they cannot reach).
* sampler: generative.samplers.heun against k-diffusion's sample_heun, batch 64, the main job's
  18 Karras levels (35 denoiser calls), the same EDM-preconditioned MLP (mlp_denoiser: one
  definition, identical weights in JAX and PyTorch) on the same device; the JAX sampler jitted,
  k-diffusion under torch.no_grad with a CUDA synchronize per call. Goal: heun >= 3x faster.

Timing: every contender is compiled and run once first; rounds then run each contender once in
turn (A B A B ...): times are medians over rounds, ratios the median of the per-round ratios
(kernels.py's race and time_rounds). Compilation counts against --budget_s: each section gets a
share of what is left (SECTIONS' weights; time a section leaves unused passes on) and starts no
new case after its share is spent (attention runs the goals' cases, T >= 2048, first); what it
skipped is noted beside its table.

Run on a bare GPU machine (it brings the wheels and the package, then runs this script):

    OUT=/tmp/gpu_suite bash benchmarks/gpu_suite.sh [--rounds 10] [--budget_s 480]

The machine needs jax (CUDA), flax, optax, chex, absl, pyyaml, scikit-learn, pillow, networkx and
tqdm; ml_collections (for the configs), and for the sampler section torch with k-diffusion's
sampling module and its needs, travel as wheels in benchmarks/wheels (git-ignored), collected on a
machine with a package index by

    pip download --no-deps -d benchmarks/wheels ml-collections==1.1.0 k-diffusion==0.1.1.post1 \\
        torchsde==0.2.6 trampoline==0.1.2

(4 pure-Python wheels, 180 KiB). A missing module stops the run in one line naming it and its
section (exit status 2); for the sampler section a missing torch, k_diffusion, torchdiffeq,
torchsde, trampoline or scipy skips that section with a note instead.

    python -m benchmarks.gpu_suite [--out DIR] [--dry_run] [--rounds N] [--budget_s 480]

writes DIR/gpu_suite.json (every row, the device, jax version, date and command) and
DIR/gpu_suite.md (the tables), and prints the markdown. --dry_run (automatic on CPU) runs every
section at tiny shapes with 1 round: Pallas in its interpreter, cuDNN skipped off-GPU, k-diffusion
on CPU torch; it only shows that the harness works (tests/test_gpu_suite.py runs it).
"""

import argparse
import dataclasses
import datetime
import importlib
import importlib.util
import json
import math
import os
import shlex
import sys
import time
from collections.abc import Callable

try:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from benchmarks import kdiffusion
    from benchmarks import kernels as bench
except ModuleNotFoundError as error:  # the harness itself: the same one line as check_dependencies
    print(f"gpu_suite: missing {error.name} (needed for every section)", file=sys.stderr)
    raise SystemExit(2) from None

INSTALL = "pip install --no-deps benchmarks/wheels/*.whl"
# Modules each section imports beyond jax, numpy and tqdm (imported above): a missing one stops
# the run; a missing OPTIONAL one skips its section.
REQUIRED = {
    "train_step": (
        "flax",
        "optax",
        "chex",
        "absl",
        "ml_collections",
        "yaml",
        "sklearn",
        "PIL",
        "networkx",
    ),
}
OPTIONAL = {"sampler": ("torch", "k_diffusion", "torchdiffeq", "torchsde", "trampoline", "scipy")}

FLASH_VS_CUDNN = 1.25  # goal: flash forward time <= 1.25 x cuDNN's
FLASH_VS_XLA = 2.0  # goal: flash forward >= 2x faster than XLA
NORM_OF_COPY = 0.70  # goal: fused cores >= 70% of the copy bandwidth
HEUN_VS_KDIFFUSION = 3.0  # goal: heun >= 3x faster than k-diffusion's sample_heun
# Dense bf16 tensor-core peak, TFLOP/s: NVIDIA's H100 whitepaper (SXM5: 989.4, 1978.9 with
# sparsity) and H200 datasheet (1,979 with sparsity) give the same figure.
DATASHEET_BF16_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H200": 989.4}
TRAIN_CONFIGS = ("digits_edm", "digits_dit")
SIGMA_DATA = 0.5


@dataclasses.dataclass(frozen=True)
class Preset:
    """The shapes of one run: the issue's (FULL) or tiny ones that only exercise the harness."""

    quick: bool  # kernels.py's --quick shapes for the ceilings and the norms
    seq_lens: tuple[int, ...]
    head_dims: tuple[int, ...]
    tokens: int  # B T of every attention case
    hidden: int  # H D of every attention case
    goal_min_t: int  # the attention goals apply from this T on
    model_overrides: dict  # config name -> config.model fields
    train_batch: int | None  # None: the config's training.batch_size
    steps_per_round: int  # K of the train-step timing
    sampler_batch: int = 64
    sampler_dim: int = 64  # the digits' 8 x 8
    sampler_width: int = 256
    sampler_layers: int = 4  # linear layers of the MLP (SiLU between them)
    sampler_levels: int = 18


FULL = Preset(
    quick=False,
    seq_lens=bench.SEQ_LENS,
    head_dims=bench.HEAD_DIMS,
    tokens=16384,
    hidden=2048,
    goal_min_t=2048,
    model_overrides={},
    train_batch=None,
    steps_per_round=20,
)
DRY = Preset(
    quick=True,
    seq_lens=(64,),
    head_dims=(32,),
    tokens=64,
    hidden=64,
    goal_min_t=64,
    model_overrides={
        "digits_edm": {"channel_mult": (1,), "model_channels": 16},
        "digits_dit": {"depth": 1, "hidden_size": 32},
    },
    train_batch=8,
    steps_per_round=2,
)


@dataclasses.dataclass
class Context:
    """What a section reads: the preset, rounds, the measured ceilings and its deadline."""

    preset: Preset
    rounds: int
    ceilings: dict
    deadline: float = math.inf

    def out_of_time(self) -> bool:
        return time.perf_counter() > self.deadline


def check_dependencies(required: dict, optional: dict) -> dict[str, str]:
    """Exits with status 2 and one line on the first missing required module; returns {section:
    why it is skipped} for the optional sections that miss a module."""
    for section, modules in required.items():
        for module in modules:
            if importlib.util.find_spec(module) is None:
                print(
                    f"gpu_suite: missing {module} (needed for {section}); {INSTALL}",
                    file=sys.stderr,
                )
                raise SystemExit(2)
    skipped = {}
    for section, modules in optional.items():
        missing = [module for module in modules if importlib.util.find_spec(module) is None]
        if missing:
            skipped[section] = f"missing {', '.join(missing)}; {INSTALL}"
    return skipped


def _verdict(ok: bool) -> str:
    return "pass" if ok else "miss"


SHARE_SPENT = "the section's share of the time budget is spent"


def _skipped_note(cases: list, why: str) -> str:
    return f"not run ({why}): " + ", ".join(cases)


# ------------------------------------------------------------------------------------- attention


def attention_goals(rows: list[dict], min_t: int) -> list[dict]:
    """Adds goal_cudnn and goal_xla to the Pallas rows with T >= min_t ('n/a' where the contender
    did not run; '' on other rows): t(cudnn) / t(pallas) >= 1 / FLASH_VS_CUDNN and t(xla) /
    t(pallas) >= FLASH_VS_XLA, forward, from the rows' per-round ratios."""
    by_case = {(row["T"], row["D"], row["impl"]): row for row in rows}
    for row in rows:
        row["goal_cudnn"] = row["goal_xla"] = ""
        if row["impl"] != "pallas" or row["T"] < min_t:
            continue
        for goal, impl, target in (
            ("goal_cudnn", "cudnn", 1 / FLASH_VS_CUDNN),
            ("goal_xla", "xla", FLASH_VS_XLA),
        ):
            other = by_case.get((row["T"], row["D"], impl))
            row[goal] = "n/a" if other is None else _verdict(other["vs_pallas_fwd"] >= target)
    return rows


def run_attention(ctx: Context) -> dict:
    preset, backend = ctx.preset, jax.default_backend()
    impls, notes = ("pallas", "xla", "cudnn"), []
    if backend != "gpu":
        impls = ("pallas", "xla")
        notes.append(f"cudnn skipped: it needs a CUDA GPU (backend is {backend!r})")
    cases = [(t, d) for d in preset.head_dims for t in preset.seq_lens]
    cases.sort(key=lambda case: case[0] < preset.goal_min_t)  # the goals' cases first
    rows = []
    for index, (t, d) in enumerate(cases):
        if ctx.out_of_time():
            left = [f"T={t} D={d}" for t, d in cases[index:]]
            notes.append(_skipped_note(left, SHARE_SPENT))
            break
        rows += bench.bench_attention(
            (t,), (d,), ctx.rounds, impls, tokens=preset.tokens, hidden=preset.hidden
        )
    rows.sort(key=lambda row: (row["D"], row["T"]))  # the table's order (stable: impls stay)
    return {"rows": attention_goals(rows, preset.goal_min_t), "notes": notes}


# ----------------------------------------------------------------------------------------- norms


def run_norms(ctx: Context) -> dict:
    rows = bench.bench_norms(ctx.preset.quick, ctx.rounds, ctx.ceilings["copy_gbs"])
    for row in rows:
        pallas = row["impl"] == "pallas"
        row["goal_copy"] = _verdict(row["pct_copy"] >= 100 * NORM_OF_COPY) if pallas else ""
    return {"rows": rows, "notes": []}


# ------------------------------------------------------------------------------------ train step


def compiled_flops(compiled) -> float:
    """XLA's FLOP count of a compiled computation (cost_analysis() is a dict, or a list of one
    dict per computation in older jax); NaN when it reports none."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    return float((analysis or {}).get("flops", math.nan))


def train_step_row(name: str, ctx: Context) -> dict:
    """One config's train step: built and compiled once, then timed (module docstring)."""
    from generative.training import step as step_lib
    from generative.training.optim import make_optimizer
    from generative.training.task import create_task

    preset = ctx.preset
    config = importlib.import_module(f"configs.{name}").get_config()
    config.model.update(preset.model_overrides.get(name, {}))
    batch_size = preset.train_batch or config.training.batch_size
    config.training.batch_size = batch_size
    mesh = step_lib.make_mesh(jax.local_devices()[:1])
    task = create_task(config)
    optimizers = {
        group: make_optimizer(config.optim, config.training.num_steps) for group in task.trainable
    }
    state = step_lib.init_state(task, optimizers, jax.random.key(config.seed), mesh)
    params = sum(leaf.size for leaf in jax.tree.leaves(state.params))
    batch = step_lib.put_batch(next(task.train_batches(0, batch_size, 0, 1)), mesh)
    key = jax.random.key(1)
    start = time.perf_counter()
    train_step = step_lib.make_train_step(task, optimizers, config, mesh)
    compiled = train_step.lower(state, batch, key).compile()
    compile_s = time.perf_counter() - start
    flops = compiled_flops(compiled)

    steps, carry = preset.steps_per_round, [state]

    def run_steps():  # the state is donated: each step consumes the last one's
        for _ in range(steps):
            carry[0], _ = compiled(carry[0], batch, key)
        return carry[0]

    jax.block_until_ready(run_steps())  # warm-up
    step_s = bench.time_rounds({name: run_steps}, (), ctx.rounds)[0][name] / steps
    tflops = flops / step_s / 1e12
    peak = DATASHEET_BF16_TFLOPS.get(jax.devices()[0].device_kind, math.nan)
    return {
        "config": name,
        "model": config.model.name,
        "dtype": config.model.get("dtype", "float32"),
        "batch": batch_size,
        "params_m": params / 1e6,
        "gflop_per_step": flops / 1e9,
        "compile_s": compile_s,
        "step_ms": step_s * 1e3,
        "steps_per_s": 1 / step_s,
        "examples_per_s": batch_size / step_s,
        "tflops": tflops,
        "mfu_measured_pct": 100 * tflops / ctx.ceilings["matmul_tflops"],
        "mfu_datasheet_pct": 100 * tflops / peak,
    }


def run_train_step(ctx: Context) -> dict:
    ceilings = ctx.ceilings
    device = jax.devices()[0].device_kind
    peak = DATASHEET_BF16_TFLOPS.get(device)
    datasheet = f"{peak} TFLOP/s dense bf16" if peak else f"none known for {device!r}"
    notes = [
        f"MFU (measured): against the measured bf16 matmul ceiling, "
        f"{ceilings['matmul_tflops']:.4g} TFLOP/s ({ceilings['matmul_n']}^3); "
        f"MFU (datasheet): against the datasheet peak, {datasheet}"
    ]
    rows = []
    for index, name in enumerate(TRAIN_CONFIGS):
        if ctx.out_of_time():
            left = list(TRAIN_CONFIGS[index:])
            notes.append(_skipped_note(left, SHARE_SPENT))
            break
        rows.append(train_step_row(name, ctx))
    return {"rows": rows, "notes": notes}


# --------------------------------------------------------------------------------------- sampler


def mlp_weights(preset: Preset, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """float32 (W, b) of the MLP [x, c_noise] (dim + 1) -> width -> ... -> dim, LeCun-normal."""
    rng = np.random.default_rng(seed)
    sizes = [preset.sampler_dim + 1] + [preset.sampler_width] * (preset.sampler_layers - 1)
    sizes.append(preset.sampler_dim)
    return [
        (
            (rng.standard_normal((n_in, n_out)) / math.sqrt(n_in)).astype(np.float32),
            (0.1 * rng.standard_normal(n_out)).astype(np.float32),
        )
        for n_in, n_out in zip(sizes[:-1], sizes[1:])
    ]


def mlp_denoiser(weights, *, concat: Callable, log: Callable, silu: Callable):
    """EDM's preconditioned denoiser D(x, sigma) = c_skip x + c_out F([c_in x, c_noise]) with
    c_skip = sd^2 / (sigma^2 + sd^2), c_out = sigma sd / r, c_in = 1 / r, r = sqrt(sigma^2 + sd^2),
    c_noise = ln(sigma) / 4 (sd = SIGMA_DATA) and F the MLP of `weights` (SiLU between layers);
    written once for both frameworks, which supply concat (along axis 1), log and silu."""

    def denoise(x, sigma):
        s = sigma[:, None]
        root = (s**2 + SIGMA_DATA**2) ** 0.5
        h = concat([x / root, log(s) / 4])
        for index, (w, b) in enumerate(weights):
            h = h @ w + b
            if index < len(weights) - 1:
                h = silu(h)
        return SIGMA_DATA**2 / root**2 * x + s * SIGMA_DATA / root * h

    return denoise


def run_sampler(ctx: Context) -> dict:
    import torch

    from generative import samplers, schedules

    preset = ctx.preset
    k_sampling = kdiffusion.load_sampling()
    weights = mlp_weights(preset)
    sigmas = schedules.karras_sigmas(preset.sampler_levels, 0.002, 80.0)
    shape = (preset.sampler_batch, preset.sampler_dim)
    x = sigmas[0] * jax.random.normal(jax.random.key(0), shape, jnp.float32)

    jax_weights = [(jnp.asarray(w), jnp.asarray(b)) for w, b in weights]
    jax_denoise = mlp_denoiser(
        jax_weights, concat=lambda xs: jnp.concatenate(xs, 1), log=jnp.log, silu=jax.nn.silu
    )
    jax_heun = jax.jit(lambda x, sigmas: samplers.heun(jax_denoise, x, sigmas))
    jax_heun = jax_heun.lower(x, sigmas).compile()

    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch_weights = [
        (torch.from_numpy(w).to(device), torch.from_numpy(b).to(device)) for w, b in weights
    ]
    torch_denoise = mlp_denoiser(
        torch_weights,
        concat=lambda xs: torch.cat(xs, 1),
        log=torch.log,
        silu=torch.nn.functional.silu,
    )
    x_torch = torch.from_numpy(np.array(x)).to(device)
    sigmas_torch = torch.from_numpy(np.array(sigmas)).to(device)

    def run_kdiffusion():
        with torch.no_grad():
            out = k_sampling.sample_heun(torch_denoise, x_torch, sigmas_torch, disable=True)
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    ours, theirs = np.asarray(jax_heun(x, sigmas)), run_kdiffusion().cpu().numpy()  # warm-up
    contenders = {"heun": lambda: jax_heun(x, sigmas), "sample_heun": run_kdiffusion}
    times, ratios = bench.time_rounds(contenders, (), ctx.rounds)
    speedup = ratios["sample_heun"]
    row = {
        "batch": preset.sampler_batch,
        "dim": preset.sampler_dim,
        "width": preset.sampler_width,
        "layers": preset.sampler_layers,
        "levels": preset.sampler_levels,
        "calls": 2 * preset.sampler_levels - 1,
        "torch_device": device,
        "jax_ms": times["heun"] * 1e3,
        "kdiffusion_ms": times["sample_heun"] * 1e3,
        "speedup": speedup,
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "max_abs": float(np.abs(theirs).max()),
        "goal_speedup": _verdict(speedup >= HEUN_VS_KDIFFUSION),
    }
    return {"rows": [row], "notes": []}


# -------------------------------------------------------------------------------------- sections


@dataclasses.dataclass(frozen=True)
class Section:
    """A section: its share weight of the time budget, what runs it, its table and the line
    above the table (formatted with the preset's fields)."""

    name: str
    weight: float
    run: Callable[[Context], dict]
    columns: tuple
    about: str
    goals: tuple = ()  # (row field, what it checks) of the pass/miss columns


SECTIONS = (
    Section(
        "attention",
        4,
        run_attention,
        bench.ATTENTION_COLUMNS
        + (("fwd <= 1.25x cuDNN", "{goal_cudnn}"), ("fwd >= 2x faster than XLA", "{goal_xla}")),
        "bf16, non-causal, B T = {tokens} tokens, H D = {hidden}; t/t(pallas): median per-round "
        "time ratio (> 1: pallas faster). Goals on the pallas rows with T >= {goal_min_t}.",
        (
            ("goal_cudnn", "flash forward time <= 1.25x cuDNN's, T >= {goal_min_t}"),
            ("goal_xla", "flash forward >= 2x faster than XLA, T >= {goal_min_t}"),
        ),
    ),
    Section(
        "norms",
        1,
        run_norms,
        bench.NORM_COLUMNS + (("pallas >= 70% of copy", "{goal_copy}"),),
        "GB/s of compulsory traffic (adaLN: read h, y, write h', out; GroupNorm: read x, write "
        "out) and % of the measured copy bandwidth.",
        (("goal_copy", "fused core >= 70% of the copy bandwidth"),),
    ),
    Section(
        "train_step",
        2,
        run_train_step,
        (
            ("config", "{config}"),
            ("model", "{model}"),
            ("dtype", "{dtype}"),
            ("batch", "{batch}"),
            ("params M", "{params_m:.2f}"),
            ("GFLOP/step", "{gflop_per_step:.2f}"),
            ("compile s", "{compile_s:.1f}"),
            ("step ms", "{step_ms:.3f}"),
            ("steps/s", "{steps_per_s:.1f}"),
            ("examples/s", "{examples_per_s:.0f}"),
            ("TFLOP/s", "{tflops:.3f}"),
            ("MFU % (measured)", "{mfu_measured_pct:.2f}"),
            ("MFU % (datasheet)", "{mfu_datasheet_pct:.2f}"),
        ),
        "The whole jitted train step on one device, one fixed batch; FLOPs from the compiled "
        "step's cost analysis; step time = median over rounds of K = {steps_per_round} steps / K.",
    ),
    Section(
        "sampler",
        1,
        run_sampler,
        (
            ("batch", "{batch}"),
            ("MLP", "{dim} -> {width} ({layers} layers)"),
            ("levels (calls)", "{levels} ({calls})"),
            ("torch on", "{torch_device}"),
            ("heun ms", "{jax_ms:.3f}"),
            ("k-diffusion ms", "{kdiffusion_ms:.3f}"),
            ("t(k-diffusion)/t(heun)", "{speedup:.2f}"),
            ("max abs diff (max abs)", "{max_abs_diff:.2e} ({max_abs:.3g})"),
            ("heun >= 3x faster", "{goal_speedup}"),
        ),
        "generative.samplers.heun (jitted) against k-diffusion's sample_heun (torch.no_grad), "
        "the same EDM-preconditioned MLP and Karras levels; median of per-pair time ratios.",
        (("goal_speedup", "heun >= 3x faster than k-diffusion's sample_heun"),),
    ),
)


def goal_rows(sections: dict, preset: Preset) -> list[dict]:
    """Per goal column: how many rows it was checked on ('pass' or 'miss') and how many passed."""
    rows = []
    for section in SECTIONS:
        for field, what in section.goals:
            verdicts = [row.get(field) for row in sections[section.name]["rows"]]
            checked = [v for v in verdicts if v in ("pass", "miss")]
            rows.append(
                {
                    "section": section.name,
                    "goal": what.format(**dataclasses.asdict(preset)),
                    "checked": len(checked),
                    "passed": checked.count("pass"),
                }
            )
    return rows


GOAL_COLUMNS = (
    ("section", "{section}"),
    ("goal", "{goal}"),
    ("cases", "{checked}"),
    ("passed", "{passed}"),
)


def run_sections(ctx: Context, end: float, skipped: dict) -> dict:
    """Each section in turn, with the deadline now + (time left) x its weight / the weights left."""
    results = {}
    for index, section in enumerate(SECTIONS):
        if section.name in skipped:
            results[section.name] = {"rows": [], "notes": [], "skipped": skipped[section.name]}
            continue
        now = time.perf_counter()
        if now >= end:
            results[section.name] = {"rows": [], "notes": [], "skipped": "time budget spent"}
            continue
        weights = sum(s.weight for s in SECTIONS[index:] if s.name not in skipped)
        ctx.deadline = now + (end - now) * section.weight / weights
        results[section.name] = section.run(ctx)
        results[section.name]["seconds"] = time.perf_counter() - now
        print(
            f"gpu_suite: {section.name} done in {results[section.name]['seconds']:.1f} s",
            flush=True,
        )
    return results


def markdown(report: dict, preset: Preset) -> str:
    fields = dataclasses.asdict(preset)
    lines = [
        "# gpu_suite",
        "",
        f"{report['date']}, {report['device']} ({report['backend']}), jax {report['jax_version']}"
        f", {report['rounds']} rounds, {report['elapsed_s']:.0f} s: `{report['command']}`",
        "",
        "## ceilings",
        "",
        bench.ceilings_table(report["ceilings"]),
    ]
    for section in SECTIONS:
        result = report["sections"][section.name]
        lines += ["", f"## {section.name}", "", section.about.format(**fields), ""]
        if "skipped" in result:
            lines.append(f"skipped: {result['skipped']}")
            continue
        lines.append(bench.markdown_table(section.columns, result["rows"]))
        lines += [f"\n- {note}" for note in result["notes"]]
    lines += ["", "## goals", "", bench.markdown_table(GOAL_COLUMNS, report["goals"])]
    return "\n".join(lines) + "\n"


def _jsonable(value):
    """NaN and infinities -> None (strict JSON has no such numbers)."""
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="/tmp/gpu_suite", help="folder for the JSON and markdown")
    parser.add_argument("--dry_run", action="store_true", help="tiny shapes (default on CPU)")
    parser.add_argument("--rounds", type=int, default=None, help="default 10, dry run 1")
    parser.add_argument("--budget_s", type=float, default=480.0, help="seconds, compiles included")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    skipped = check_dependencies(REQUIRED, OPTIONAL)
    start = time.perf_counter()
    backend = jax.default_backend()
    dry_run = args.dry_run or backend == "cpu"
    preset = DRY if dry_run else FULL
    rounds = args.rounds or (1 if dry_run else 10)
    device = jax.devices()[0].device_kind
    print(f"gpu_suite: {device} ({backend}), dry_run={dry_run}, {rounds} rounds", flush=True)
    for section, why in skipped.items():
        print(f"gpu_suite: {section} skipped: {why}", flush=True)
    ctx = Context(preset, rounds, bench.measure_ceilings(preset.quick, rounds))
    sections = run_sections(ctx, start + args.budget_s, skipped)
    report = {
        "device": device,
        "backend": backend,
        "jax_version": jax.__version__,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", "-m", "benchmarks.gpu_suite", *argv]),
        "dry_run": dry_run,
        "rounds": rounds,
        "budget_s": args.budget_s,
        "elapsed_s": time.perf_counter() - start,
        "ceilings": ctx.ceilings,
        "sections": sections,
        "goals": goal_rows(sections, preset),
    }
    text = markdown(report, preset)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "gpu_suite.json"), "w") as f:
        json.dump(_jsonable(report), f, indent=1)
    with open(os.path.join(args.out, "gpu_suite.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
