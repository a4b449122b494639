"""The command-line tools end to end (subprocesses, tiny overrides) and every shipped config's
sanity."""

import glob
import importlib
import json
import os
import subprocess
import sys

import pytest

from generative.losses import make_loss
from generative.models import create_model
from generative.training.config_checks import check_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIFFUSION_CONFIGS = [
    "toy_edm",
    "toy_pfgmpp",
    "digits_edm",
    "digits_pfgmpp",
    "digits_vp",
    "digits_ve",
    "digits_dit",
    "cifar10_ddpmpp",
]
TINY_UNET = [
    "--config.model.model_channels=8",
    "--config.training.batch_size=16",
    "--config.training.num_steps=3",
    "--config.training.log_every=1",
    "--config.training.sample_every=3",
    "--config.training.checkpoint_every=3",
    "--config.training.num_grid_samples=4",
    "--config.training.eval_every=3",
    "--config.eval.num_samples=32",
    "--config.eval.steps=3",
    "--config.sample.steps=3",
    "--config.tensorboard=False",
]


def run_module(module, *args):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def load_config(name):
    return importlib.import_module(f"configs.{name}").get_config()


@pytest.mark.parametrize("name", DIFFUSION_CONFIGS)
def test_config_is_complete_and_builds(name):
    config = load_config(name)
    check_config(config, num_devices=1)
    create_model(config.model)
    make_loss(config)


def test_train_sample_evaluate_cli_on_digits(tmp_path):
    workdir = str(tmp_path / "run")
    run_module(
        "experiments.train", "--config", "configs/digits_edm.py", "--workdir", workdir, *TINY_UNET
    )
    assert os.path.exists(os.path.join(workdir, "samples_0000003.png"))
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    (evaluation,) = [r for r in records if r["kind"] == "eval"]
    assert {"fd", "fd_floor", "confident", "class_histogram", "precision"} <= set(evaluation)
    assert glob.glob(os.path.join(workdir, "checkpoints", "3"))

    out = str(tmp_path / "grid.png")
    run_module(
        "experiments.sample",
        "--workdir",
        workdir,
        "--sampler",
        "euler",
        "--steps",
        "3",
        "--num",
        "5",
        "--out",
        out,
    )
    assert os.path.getsize(out) > 0
    result = run_module("experiments.evaluate", "--workdir", workdir, "--num", "32", "--steps", "3")
    assert json.loads(result.stdout)["step"] == 3


def test_train_cli_rejects_a_bad_override_before_compiling(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "experiments.train",
            "--config",
            "configs/digits_edm.py",
            "--workdir",
            str(tmp_path),
            "--config.training.batch_size=15",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "divisible by the number of devices" in result.stderr
