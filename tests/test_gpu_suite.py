"""benchmarks/gpu_suite.py: its dry run (tiny shapes on CPU, every section) writes both reports,
and a missing module stops it in one line."""

import importlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTIONS = ("attention", "norms", "train_step", "sampler")


def test_dry_run_writes_every_section(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device, not 8
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_suite", "--dry_run", "--out", str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    text = (tmp_path / "gpu_suite.md").read_text()
    assert report["dry_run"] and report["device"] and report["jax_version"] and report["command"]
    torch_missing = importlib.util.find_spec("torch") is None
    for name in SECTIONS:
        section = report["sections"][name]
        if name == "sampler" and torch_missing:
            assert "torch" in section["skipped"]
            continue
        assert "skipped" not in section and section["rows"], (name, section)
        assert f"## {name}" in text
    assert report["ceilings"]["copy_gbs"] > 0
    assert {row["impl"] for row in report["sections"]["attention"]["rows"]} == {"pallas", "xla"}
    assert [row["config"] for row in report["sections"]["train_step"]["rows"]] == [
        "digits_edm",
        "digits_dit",
    ]
    assert all(row["gflop_per_step"] > 0 for row in report["sections"]["train_step"]["rows"])
    for header in ("| T | D | B x H |", "| core | shape |", "| config | model |", "| section |"):
        assert header in text
    assert text in out.stdout


def test_missing_module_fails_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.syspath_prepend(REPO)
    suite = importlib.import_module("benchmarks.gpu_suite")
    monkeypatch.setitem(suite.REQUIRED, "train_step", ("no_such_module_xyz",))
    with pytest.raises(SystemExit) as exit_info:
        suite.main(["--dry_run", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "gpu_suite: missing no_such_module_xyz (needed for train_step); "
        "pip install --no-deps benchmarks/wheels/*.whl\n"
    )
    assert not list(tmp_path.iterdir())
    monkeypatch.setitem(suite.REQUIRED, "train_step", ())
    monkeypatch.setitem(suite.OPTIONAL, "sampler", ("no_such_module_xyz",))
    assert (
        "missing no_such_module_xyz"
        in suite.check_dependencies(suite.REQUIRED, suite.OPTIONAL)["sampler"]
    )
