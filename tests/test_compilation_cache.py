"""The launchers' persistent compilation cache: a second run of the same config loads its train
step instead of compiling it and the log says which; 'off' turns the cache off."""

import os
import re
import subprocess
import sys

import pytest

from generative.training import compilation_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = [
    "--config",
    "configs/toy_edm.py",
    "--config.model.width=16",
    "--config.model.num_blocks=1",
    "--config.training.num_steps=2",
    "--config.training.log_every=1",
    "--config.training.sample_every=-1",
    "--config.training.eval_every=-1",
    "--config.training.checkpoint_every=2",
]
FIRST_STEP = re.compile(r"first train step ([\d.]+) s .*?; (.*)")


def _first_step(workdir, cache):
    env = dict(os.environ, GENERATIVE_COMPILATION_CACHE=cache, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    result = subprocess.run(
        [sys.executable, "-m", "experiments.train", *TINY, "--workdir", str(workdir)],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    seconds, summary = FIRST_STEP.search(result.stderr).groups()
    return float(seconds), summary


@pytest.mark.slow
def test_second_run_loads_the_train_step_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first_s, first = _first_step(tmp_path / "a", str(cache))
    assert re.fullmatch(
        rf"compilation cache {re.escape(str(cache))}: 0 loaded, [1-9]\d* compiled", first
    )
    assert os.listdir(cache)  # executables written
    second_s, second = _first_step(tmp_path / "b", str(cache))  # a fresh run of the same config
    assert re.fullmatch(r"compilation cache .*: [1-9]\d* loaded, 0 compiled", second), second
    assert second_s < first_s


def test_directory_choice(monkeypatch, tmp_path):
    monkeypatch.delenv(compilation_cache.ENV, raising=False)
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache.default_dir() == str(tmp_path / "xdg" / "generative" / "jax")
    for value in ("off", "0", "", "OFF"):
        monkeypatch.setenv(compilation_cache.ENV, value)
        assert compilation_cache.enable() is None
