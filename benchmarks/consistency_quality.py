"""One-step and two-step quality of the consistency methods against their diffusion teacher, and
(--cost) their train-step cost over the teacher's step.

    python -m benchmarks.consistency_quality --data toy      # 8 Gaussians, 4,000 samples
    python -m benchmarks.consistency_quality --data digits --teacher workdirs/digits_edm
    python -m benchmarks.consistency_quality --data toy --cost --pairs 4 --steps 150
    # a quick end-to-end check with tiny budgets (meaningless numbers):
    python -m benchmarks.consistency_quality --data toy --methods ct,ict,cd --num_steps 50 \\
        --num 500 --workdir_root /tmp/cq

Quality mode. Trains (or resumes; train() returns at once for a complete run) the teacher in
WORKDIR_ROOT/teacher (toy: configs/toy_edm.py with data.name=eight_gaussians; digits:
configs/digits_edm.py; --teacher DIR instead loads an existing diffusion run without training it,
e.g. the main job), then each method's run in WORKDIR_ROOT/<method>
(configs/<data>_consistency.py:<method>, its teacher path, task.teacher or training.init_from as
the method's config has it, set to the teacher's workdir). --num_steps N overrides
training.num_steps of the teacher and the students (the runs then go to <name>_steps<N>, so a
quick run never collides with a full one; the methods' step-dependent fields, ECT's stage_steps and
sCM's tangent warm-up, are recomputed from N by configs.consistency_base.with_method).
--methods defaults to every method of configs.consistency_base.METHODS that is registered as a
task (generative.training.task.TASKS).

Scoring, EMA weights, with fixed keys: every model samples from the same key (seed + 1, so the
same x_T), and is scored against the same held-out draw:
* toy: generative.training.evaluation.point_metrics (test split, seed --seed): MMD^2 (RBF
  bandwidths 0.1, 0.3, 1; unbiased, so it can be slightly negative at the floor), sliced
  Wasserstein, the share of samples within 0.4 of a mode centre and the smallest mode's share as a
  multiple of the fair share 1/8; for the students at 1 and 2 steps (sampler 'consistency'), the
  teacher at 35 NFE (Heun, 18 Karras levels: 17 Heun steps and a final Euler step) and at 1 NFE
  (Euler, steps=1: the levels (sigma_max, 0), i.e. the denoiser's x0 estimate D(x_T, sigma_max),
  one call), and the data floor (a train draw against the test draw). Targets at 1 step: MMD^2 <=
  3x the teacher's at 35 NFE and <= 0.05x the teacher's at 1 NFE, >= 85% within 0.4, every mode >=
  half its fair share.
* digits: the digit classifier's Fréchet distance (generative.training.evaluation.digit_metrics)
  at 1 and 2 steps, beside the teacher at 35 NFE (and 1 NFE) and the train-vs-test floor; the
  ratio is distance / floor. Target at 2 steps: ratio <= 2x the teacher's (35 NFE).

Prints one markdown table (with the command, date and machine above it, to paste into
benchmarks/RESULTS.md) and appends one JSON object per row to WORKDIR_ROOT/results.jsonl. The
training steps/s column is the median of a run's logged windows after the first (which compiles).

Cost mode (--cost): the train-step time of each method over the plain diffusion step on the same
network (configs/toy_edm.py on the 8 Gaussians or configs/digits_edm.py), measured with
benchmarks/train_step_ab.py's machinery: fresh command-line runs of --steps steps (windows of
--log_every, the first dropped), order A B A B with A = diffusion and B = the method, --pairs
pairs; the result is the median of the per-pair ratios (diffusion steps/s) / (method steps/s),
i.e. how many diffusion steps one method step costs. Those runs use JAX_PLATFORMS=cpu (as
train_step_ab does). cd and scd need a teacher checkpoint and ECT an init_from checkpoint: the
teacher is trained first as in quality mode (its quality does not matter here).
"""

import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time

import jax
import numpy as np
from absl import app, flags

from benchmarks import train_step_ab
from configs import consistency_base
from generative.training import evaluation
from generative.training.checkpoint import load_run
from generative.training.loop import train
from generative.training.task import TASKS
from generative.training.writers import read_metrics

_DATA = flags.DEFINE_enum("data", "toy", ["toy", "digits"], "The 8 Gaussians or the digits.")
_METHODS = flags.DEFINE_string(
    "methods", "", "Comma list of methods (default: every registered one of ct,ict,cd,ect,sct,scd)."
)
_ROOT = flags.DEFINE_string(
    "workdir_root", "", "Directory of the runs (default workdirs/consistency_<data>)."
)
_TEACHER = flags.DEFINE_string(
    "teacher", "", "An existing diffusion run to use as the teacher, loaded, not trained."
)
_NUM = flags.DEFINE_integer("num", 0, "Samples per model (default: toy 4000, digits 1000).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the sampling keys and the held-out draw.")
_NUM_STEPS = flags.DEFINE_integer(
    "num_steps", 0, "Override training.num_steps of every run (quick runs; 0 = the configs')."
)
_COST = flags.DEFINE_bool(
    "cost", False, "Measure train-step time over the diffusion step instead (see --pairs, --steps)."
)

REPO = train_step_ab.REPO
CONFIG_FILES = {
    "toy": ("configs/toy_edm.py", "configs/toy_consistency.py"),
    "digits": ("configs/digits_edm.py", "configs/digits_consistency.py"),
}
TEACHER_NFE = {35: ("heun", 18), 1: ("euler", 1)}  # NFE -> (sampler, steps)
RADIUS = evaluation.MODE_RADIUS
WITHIN = f"within_{RADIUS:g}"


# ------------------------------------------------------------------------------ runs and configs


def methods() -> list[str]:
    registered = [m for m in consistency_base.METHODS if m in TASKS]
    if not _METHODS.value:
        return registered
    chosen = [m.strip() for m in _METHODS.value.split(",") if m.strip()]
    unknown = [m for m in chosen if m not in registered]
    if unknown:
        raise app.UsageError(
            f"--methods: {unknown} are not registered methods; known: {registered}"
        )
    return chosen


def root() -> str:
    return os.path.abspath(_ROOT.value or f"workdirs/consistency_{_DATA.value}")


def run_dir(name: str) -> str:
    suffix = f"_steps{_NUM_STEPS.value}" if _NUM_STEPS.value else ""
    return os.path.join(root(), name + suffix)


def _budget(config):
    if _NUM_STEPS.value:
        config.training.num_steps = _NUM_STEPS.value
        # At least a few logged windows, so the steps/s after the compiling one exist.
        config.training.log_every = max(1, min(config.training.log_every, _NUM_STEPS.value // 5))
    return config


def teacher_config():
    if _DATA.value == "toy":
        from configs import toy_edm

        config = toy_edm.get_config()
        config.data.name = "eight_gaussians"
    else:
        from configs import digits_edm

        config = digits_edm.get_config()
    return _budget(config)


def method_config(method: str, teacher: str):
    """configs/<data>_consistency.py:<method> with `teacher` as its teacher (task.teacher or
    training.init_from, where the method has one) and the budget override."""
    if _DATA.value == "toy":
        from configs import toy_consistency as module
    else:
        from configs import digits_consistency as module
    config = module.get_config(method)
    if _NUM_STEPS.value:  # again from the diffusion config, so step-dependent fields follow N
        config.training.num_steps = _NUM_STEPS.value
    return _budget(consistency_base.with_method(config, method, teacher=teacher))


def teacher_overrides(config) -> dict[str, str]:
    """The command-line items that point a method's run at the teacher."""
    items = {}
    if "teacher" in config.task:
        items["config.task.teacher"] = config.task.teacher
    if config.training.init_from:
        items["config.training.init_from"] = config.training.init_from
    return items


def ensure_teacher() -> str:
    if _TEACHER.value:
        return os.path.abspath(_TEACHER.value)
    workdir = run_dir("teacher")
    timed_train(teacher_config(), workdir)
    return workdir


def timed_train(config, workdir: str) -> float:
    start = time.perf_counter()
    print(f"== training {workdir} ({config.training.num_steps} steps)", flush=True)
    train(config, workdir)  # resumes, or returns at once when the run is complete
    return time.perf_counter() - start


def steps_per_sec(workdir: str) -> float:
    records = [r for r in read_metrics(workdir) if r.get("kind") == "train"]
    speeds = [r["steps_per_sec"] for r in records[1:] if "steps_per_sec" in r]
    return float(np.median(speeds)) if speeds else float("nan")


def header() -> str:
    devices = jax.devices()
    kind = f"{len(devices)} x {devices[0].device_kind}" if devices[0].platform != "cpu" else "CPU"
    load = f", load {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    machine = f"{os.cpu_count()}-core {platform.machine()} {platform.system()}, JAX on {kind}{load}"
    command = shlex.join(["python", "-m", "benchmarks.consistency_quality", *sys.argv[1:]])
    return f"{datetime.date.today().isoformat()}, {machine}, `{command}`"


def write_jsonl(rows: list[dict]) -> None:
    os.makedirs(root(), exist_ok=True)
    with open(os.path.join(root(), "results.jsonl"), "a") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------- quality


def score(config, samples: np.ndarray) -> dict:
    if _DATA.value == "toy":
        key = jax.random.key(_SEED.value)
        return evaluation.point_metrics(config.data, samples, key, seed=_SEED.value)
    return evaluation.digit_metrics(samples)


def model_rows(name: str, workdir: str, settings) -> list[dict]:
    """Samples and scores of the run in `workdir` at each (label, nfe, sampler, steps)."""
    run = load_run(workdir)
    rows = []
    num = _NUM.value or (4000 if _DATA.value == "toy" else 1000)
    for label, nfe, sampler, steps in settings:
        start = time.perf_counter()
        samples = run.task.sample(
            run.params, jax.random.key(_SEED.value + 1), num, sampler=sampler, steps=steps
        )
        seconds = time.perf_counter() - start
        metrics = score(run.config, samples)
        rows.append(
            dict(
                model=name,
                setting=label,
                nfe=nfe,
                num=num,
                train_steps=int(run.state.step),
                steps_per_sec=steps_per_sec(workdir),
                sample_seconds=seconds,
                workdir=workdir,
                **{k: v for k, v in metrics.items() if np.ndim(v) == 0},
            )
        )
    return rows


def toy_verdict(row, teacher35, teacher1) -> str:
    failed = []
    if not row["mmd"] <= 3 * teacher35["mmd"]:
        failed.append("mmd>3x T35")
    if not row["mmd"] <= 0.05 * teacher1["mmd"]:
        failed.append("mmd>0.05x T1")
    if not row[WITHIN] >= 0.85:
        failed.append(f"{WITHIN}<85%")
    if not row["smallest_mode_share"] >= 0.5:
        failed.append("mode<1/2 fair")
    return "PASS" if not failed else "FAIL: " + ", ".join(failed)


def toy_table(rows) -> str:
    teacher35 = next(r for r in rows if r["model"] == "teacher" and r["nfe"] == 35)
    teacher1 = next(r for r in rows if r["model"] == "teacher" and r["nfe"] == 1)
    lines = [
        "| model | sampling | NFE | MMD^2 | SWD | within 0.4 | smallest mode (x fair) | "
        "train steps/s | 1-step targets |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["model"] != "teacher" and r["nfe"] == 1:
            r["verdict"] = toy_verdict(r, teacher35, teacher1)
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['nfe']} | {r['mmd']:.2e} | {r['swd']:.4f} | "
            f"{100 * r[WITHIN]:.1f}% | {r['smallest_mode_share']:.2f} | "
            f"{r['steps_per_sec']:.1f} | {r.get('verdict', '')} |"
        )
    floor = rows[0]
    lines.append(
        f"| data floor | train vs test draw | | {floor['mmd_floor']:.2e} | "
        f"{floor['swd_floor']:.4f} | {100 * floor[WITHIN + '_floor']:.1f}% | "
        f"{floor['smallest_mode_share_floor']:.2f} | | |"
    )
    return "\n".join(lines)


def digits_table(rows) -> str:
    teacher35 = next(r for r in rows if r["model"] == "teacher" and r["nfe"] == 35)
    lines = [
        "| model | sampling | NFE | Fréchet distance | ratio to floor | confident | "
        "train steps/s | 2-step target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if r["model"] != "teacher" and r["nfe"] == 2:
            ok = r["fd_ratio"] <= 2 * teacher35["fd_ratio"]
            r["verdict"] = "PASS" if ok else "FAIL: ratio > 2x teacher's"
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['nfe']} | {r['fd']:.2f} | "
            f"{r['fd_ratio']:.2f} | {100 * r['confident']:.1f}% | {r['steps_per_sec']:.2f} | "
            f"{r.get('verdict', '')} |"
        )
    lines.append(
        f"| data floor | train vs test | | {rows[0]['fd_floor']:.2f} | 1.00 | | | (2-step "
        f"target: ratio <= {2 * teacher35['fd_ratio']:.2f}) |"
    )
    return "\n".join(lines)


def quality(chosen: list[str]) -> None:
    teacher = ensure_teacher()
    walls = {}
    for method in chosen:
        walls[method] = timed_train(method_config(method, teacher), run_dir(method))
    rows = model_rows(
        "teacher",
        teacher,
        [(f"{s}, steps={k}", nfe, s, k) for nfe, (s, k) in TEACHER_NFE.items()],
    )
    for method in chosen:
        settings = [(f"consistency, {k} step{'s' * (k > 1)}", k, "consistency", k) for k in (1, 2)]
        for row in model_rows(method, run_dir(method), settings):
            rows.append(dict(row, train_wall_this_call=walls[method]))
    table = toy_table(rows) if _DATA.value == "toy" else digits_table(rows)
    head = header()
    print(f"\n{head}\n\n{table}\n", flush=True)
    write_jsonl([dict(r, header=head, data=_DATA.value) for r in rows])


# ---------------------------------------------------------------------------------------- cost


def cost(chosen: list[str]) -> None:
    """Paired A B runs (A = diffusion, B = method) with train_step_ab's run_once."""
    flags_ = flags.FLAGS
    if flags_.pairs < 1:
        raise app.UsageError("--pairs must be >= 1")
    if flags_.steps < 2 * flags_.log_every:
        raise app.UsageError("--steps must be >= 2 x --log_every (the first window is dropped)")
    teacher = ensure_teacher()
    diffusion_file, method_file = CONFIG_FILES[_DATA.value]
    # config.tensorboard is no field (training.tensorboard is, off by default): drop the item.
    common = {"config.tensorboard": ""}
    a = {**common, "config": diffusion_file}
    if _DATA.value == "toy":
        a["config.data.name"] = "eight_gaussians"
    train_step_ab.check_tree("A", REPO)
    rows = []
    for method in chosen:
        b = {
            **common,
            "config": f"{method_file}:{method}",
            **teacher_overrides(method_config(method, teacher)),
        }
        for name, items in (("A", a), ("B", b)):
            cmd = train_step_ab.command(train_step_ab.effective_items(items), "TMPDIR")
            print(f"  {method} {name}:", shlex.join(cmd), flush=True)
        ratios = []
        for pair in range(1, flags_.pairs + 1):
            speed_a, _ = train_step_ab.run_once("A", REPO, a)
            speed_b, _ = train_step_ab.run_once("B", REPO, b)
            ratios.append(speed_a / speed_b)
            print(
                f"  {method} pair {pair}: diffusion {speed_a:.2f}, {method} {speed_b:.2f} "
                f"steps/s, time ratio {ratios[-1]:.3f}",
                flush=True,
            )
        rows.append(dict(method=method, ratios=ratios, median=statistics.median(ratios)))
    head = header()
    lines = [
        "| method | time per step / diffusion step (median) | min | max | pairs |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | **{r['median']:.2f}** | {min(r['ratios']):.2f} | "
            f"{max(r['ratios']):.2f} | {len(r['ratios'])} |"
        )
    print(
        f"\n{head}\n\n{flags_.steps} steps per run, windows of {flags_.log_every}, order A B "
        f"(A = diffusion, B = the method)\n\n" + "\n".join(lines) + "\n",
        flush=True,
    )
    write_jsonl([dict(r, kind="cost", header=head, data=_DATA.value) for r in rows])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    chosen = methods()
    if not chosen:
        raise app.UsageError("no consistency method is registered")
    if _NUM_STEPS.value < 0 or _NUM.value < 0:
        raise app.UsageError("--num_steps and --num must be >= 0")
    (cost if _COST.value else quality)(chosen)


if __name__ == "__main__":
    app.run(main)
