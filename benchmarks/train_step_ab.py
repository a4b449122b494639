"""Train-step speed of the main job (configs/digits_edm.py) in two source trees, A against B.

A is a baseline tree (by default a git worktree at the commit before a change), B the tree under
test (by default this repository). The benchmark does not import the library: in each tree in turn
it runs the command-line job, with cwd = that tree and PYTHONPATH = that tree (so each run imports
its own `generative`, `experiments` and `configs`; checked once per tree before timing, by printing
their `__file__`), JAX_PLATFORMS=cpu, in a fresh temporary workdir:

    python -m experiments.train --config configs/digits_edm.py --workdir TMPDIR \\
        --config.training.num_steps=STEPS --config.training.log_every=LOG_EVERY \\
        --config.training.sample_every=-1 --config.training.eval_every=-1 \\
        --config.training.checkpoint_every=-1 --config.tensorboard=False

(-1 = never: no sample grids, evaluations or checkpoints, so only train steps and the metric
records are timed). It then reads TMPDIR/metrics.jsonl: each record of kind 'train' carries
`steps_per_sec` (or `steps_per_s`) over the window since the previous record; the first window
includes compilation and is dropped, and a run's speed is the median of the remaining windows
(steps/s of wall time, as the training loop measures it).

Order: A B A B ..., A first in every pair (the project's rule for speed comparisons, as in
benchmarks/sampler_overhead.py). Each pair gives one ratio B/A of steps/s; the result is the median
of the per-pair ratios (with their min and max), PASS when it is >= --target (default 0.97, i.e. B
at most 3% slower). A FAIL still exits with status 0; a run that fails exits non-zero.

    python -m benchmarks.train_step_ab [--a /tmp/ab/base] [--b .] [--pairs 4] [--steps 150]

Baseline worktree (outside the repository; it does not touch the main checkout's state):

    git worktree add --detach /tmp/ab/base COMMIT      # e.g. the commit before the change
    git worktree remove /tmp/ab/base                   # when done

Same-commit trees (--a and --b at two worktrees of one commit) give the A/A noise of this machine:
on the shared 2-core container (load 5-8) 2 pairs of 60 steps gave A/A medians 0.915 and 0.948,
i.e. a noise larger than the 3% target; use the default sizes or more pairs, on a quiet machine.
Per-tree command-line changes, e.g. when a tree renames or rejects a field, go in --a_overrides /
--b_overrides: whitespace-separated `KEY=VALUE` items (KEY as in the command line without the
leading dashes, e.g. `config.training.log_every=25`) that replace the default item with that KEY
or are added; `KEY=` (empty value) drops the default item with that KEY.
"""

import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

from absl import app, flags

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_A = flags.DEFINE_string("a", "/tmp/ab/base", "Baseline source tree (A).")
_B = flags.DEFINE_string("b", REPO, "Source tree under test (B); default: this repository.")
_PAIRS = flags.DEFINE_integer("pairs", 4, "A B pairs (each pair: one run in each tree).")
_STEPS = flags.DEFINE_integer("steps", 150, "Training steps per run.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 25, "Steps per timing window (training.log_every).")
_CONFIG = flags.DEFINE_string("config", "configs/digits_edm.py", "Config file, relative to a tree.")
_A_OVERRIDES = flags.DEFINE_string(
    "a_overrides", "", "Tree A's command-line changes: 'KEY=VALUE ...' (KEY= drops KEY)."
)
_B_OVERRIDES = flags.DEFINE_string(
    "b_overrides", "", "Tree B's command-line changes: 'KEY=VALUE ...' (KEY= drops KEY)."
)
_TARGET = flags.DEFINE_float("target", 0.97, "PASS when median(B/A steps/s) >= target.")
_TIMEOUT = flags.DEFINE_integer("timeout", 1800, "Seconds before one training run is killed.")

SPEED_FIELDS = ("steps_per_sec", "steps_per_s")
# The "never" periods: a tree that does not honour them times other work too.
NEVER = ("sample_every", "eval_every", "checkpoint_every")


def default_items() -> dict[str, str]:
    """The command-line items of every run, KEY -> VALUE (insertion order is the command order)."""
    items = {
        "config": _CONFIG.value,
        "config.training.num_steps": str(_STEPS.value),
        "config.training.log_every": str(_LOG_EVERY.value),
    }
    items.update({f"config.training.{name}": "-1" for name in NEVER})
    items["config.tensorboard"] = "False"
    return items


def parse_overrides(text: str, flag: str) -> dict[str, str]:
    overrides = {}
    for item in shlex.split(text):
        key, sep, value = item.lstrip("-").partition("=")
        if not sep or not key:
            raise app.UsageError(f"--{flag}: {item!r} is not KEY=VALUE (or KEY= to drop KEY)")
        overrides[key] = value
    return overrides


def effective_items(overrides: dict[str, str]) -> dict[str, str]:
    """The default items with `overrides` applied (an empty value drops the item)."""
    items = default_items()
    for key, value in overrides.items():
        if value:
            items[key] = value
        else:
            items.pop(key, None)
    return items


def command(items: dict[str, str], workdir: str) -> list[str]:
    args = [f"--{key}={value}" for key, value in items.items()]
    return [sys.executable, "-m", "experiments.train", *args[:1], f"--workdir={workdir}", *args[1:]]


def tree_env(tree: str) -> dict[str, str]:
    """This process's environment with PYTHONPATH = the tree only (an inherited PYTHONPATH could
    point at another checkout) and JAX on the CPU."""
    return dict(os.environ, PYTHONPATH=tree, JAX_PLATFORMS="cpu")


def check_tree(name: str, tree: str) -> None:
    """Fails unless `tree` has the config and imports its own packages (the venv's editable install
    points at one checkout; cwd and PYTHONPATH must take precedence over it)."""
    if not os.path.isfile(os.path.join(tree, _CONFIG.value)):
        raise app.UsageError(f"tree {name} = {tree} has no {_CONFIG.value}")
    packages = ("generative", "experiments", "configs")
    probe = f"import {', '.join(packages)}; print({', '.join(p + '.__file__' for p in packages)})"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=tree,
        env=tree_env(tree),
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"tree {name} = {tree}: the import check failed:\n{out.stderr[-3000:]}")
    files = out.stdout.split()
    print(f"tree {name}: {tree}")
    for package, file in zip(packages, files):
        print(f"  {package}.__file__ = {file}")
    for file in files:
        if not os.path.realpath(file).startswith(os.path.realpath(tree) + os.sep):
            raise RuntimeError(f"tree {name} = {tree} imports {file} from outside the tree")


def explain_failure(name: str, log: str, items: dict[str, str]) -> str:
    """The failed run's last output, and which command-line items its error message names."""
    lines = [line for line in log.splitlines() if line.strip()]
    message = " ".join(lines[-4:]).split("Did you mean")[0]  # the exception, not the suggestion
    named = [k for k in items if re.search(rf"\b{re.escape(k.rsplit('.', 1)[-1])}\b", message)]
    out = [f"tree {name}: the training run failed. Last lines of its output:", log[-3000:]]
    flag = f"--{name.lower()}_overrides"
    for key in named:
        field = key.rsplit(".", 1)[-1]
        never = " (-1 = never)" if field in NEVER else ""
        out.append(
            f"==> tree {name} rejects --{key}={items[key]}{never}? Its error names {field!r}. "
            f"Change it with {flag}='{key}=VALUE' or drop it with {flag}='{key}='."
        )
    if not named:
        out.append(f"==> tree {name} failed; per-tree command-line changes go in {flag}.")
    return "\n".join(out)


def run_once(name: str, tree: str, overrides: dict[str, str]) -> tuple[float, float]:
    """One training run in `tree`; returns (median steps/s after the first window, wall seconds)."""
    items = effective_items(overrides)
    with tempfile.TemporaryDirectory(prefix=f"train_step_ab_{name}_") as tmp:
        workdir = os.path.join(tmp, "workdir")
        cmd = command(items, workdir)
        start = time.perf_counter()
        with open(os.path.join(tmp, "log.txt"), "w+") as log:
            try:
                code = subprocess.run(
                    cmd,
                    cwd=tree,
                    env=tree_env(tree),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    timeout=_TIMEOUT.value,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
            wall = time.perf_counter() - start
            log.seek(0)
            text = log.read()
        if code:
            print("command:", shlex.join(cmd), file=sys.stderr)
            raise RuntimeError(explain_failure(name, f"{text}\n[exit status {code}]", items))

        # Work the "never" periods should have turned off: say so, it is timed too.
        made = sorted(
            os.path.relpath(os.path.join(root, file), workdir)
            for root, _, files in os.walk(workdir)
            for file in files
            if root != workdir or file not in ("metrics.jsonl", "config.json")
        )
        if made:
            print(
                f"WARNING tree {name} wrote {made[:5]} ({len(made)} files) although sample_every, "
                f"eval_every and checkpoint_every are -1 (never): its timing includes that work",
                flush=True,
            )
        path = os.path.join(workdir, "metrics.jsonl")
        if not os.path.exists(path):
            raise RuntimeError(
                f"tree {name}: the run wrote no metrics.jsonl ({os.listdir(workdir)})"
            )
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
    train = [r for r in records if r.get("kind") == "train"]
    if len(train) < 2:
        kinds = sorted({str(r.get("kind")) for r in records})
        raise RuntimeError(
            f"tree {name}: {len(train)} 'train' records (kinds found: {kinds}); need 2 or more "
            f"(the first window, which compiles, is dropped)"
        )
    speeds = []
    for record in train[1:]:
        field = next((f for f in SPEED_FIELDS if f in record), None)
        if field is None:
            raise RuntimeError(
                f"tree {name}: a 'train' record has none of {SPEED_FIELDS}: {sorted(record)}"
            )
        speeds.append(float(record[field]))
    return statistics.median(speeds), wall


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _PAIRS.value < 1:
        raise app.UsageError("--pairs must be >= 1")
    if _STEPS.value < 2 * _LOG_EVERY.value:
        raise app.UsageError("--steps must be >= 2 x --log_every (the first window is dropped)")
    trees = {"A": os.path.abspath(_A.value), "B": os.path.abspath(_B.value)}
    overrides = {
        "A": parse_overrides(_A_OVERRIDES.value, "a_overrides"),
        "B": parse_overrides(_B_OVERRIDES.value, "b_overrides"),
    }
    for name, tree in trees.items():
        check_tree(name, tree)
        print("  command:", shlex.join(command(effective_items(overrides[name]), "TMPDIR")))
    if os.path.realpath(trees["A"]) == os.path.realpath(trees["B"]):
        print("note: A and B are the same tree (an A/A noise check)")
    steps, every = _STEPS.value, _LOG_EVERY.value
    windows = steps // every - 1 + (steps % every > 0)
    short = f" (the last is {steps % every} steps)" if steps % every else ""
    print(
        f"{_PAIRS.value} pairs, order A B in each; {steps} steps per run, windows of {every} "
        f"steps, the median of the {windows} after the first{short}\n",
        flush=True,
    )

    rows = []
    for pair in range(1, _PAIRS.value + 1):
        speed = {}
        for name in ("A", "B"):
            speed[name], wall = run_once(name, trees[name], overrides[name])
            print(
                f"  pair {pair} {name}: {speed[name]:.3f} steps/s ({wall:.0f} s wall)", flush=True
            )
        rows.append((pair, speed["A"], speed["B"], speed["B"] / speed["A"]))

    print("\n| pair | A steps/s | B steps/s |   B/A |\n|-----:|----------:|----------:|------:|")
    for pair, a, b, ratio in rows:
        print(f"| {pair:4d} | {a:9.3f} | {b:9.3f} | {ratio:5.3f} |")
    ratios = [row[3] for row in rows]
    median = statistics.median(ratios)
    verdict = "PASS" if median >= _TARGET.value else "FAIL"
    print(
        f"\nmedian B/A = {median:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
        f"{len(ratios)} pairs): {verdict} (target >= {_TARGET.value})"
    )


if __name__ == "__main__":
    app.run(main)
