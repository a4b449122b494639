"""The command-line tools end to end (subprocesses, tiny overrides), the main digits config, the
digit metrics and every shipped config's sanity."""

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from generative.data import digits
from generative.training import evaluation, loop
from generative.training.config_checks import check_config
from generative.training.task import create_task

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
TINY_RUN = [
    "--config.training.batch_size=16",
    "--config.training.num_steps=3",
    "--config.training.log_every=1",
    "--config.training.sample_every=3",
    "--config.training.checkpoint_every=3",
    "--config.training.num_grid_samples=16",
    "--config.training.eval_every=3",
    "--config.eval.num_samples=64",
    "--config.eval.steps=3",
    "--config.sample.steps=3",
    "--config.model.width=32",
    "--config.model.num_blocks=1",
    "--config.training.tensorboard=False",
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
    create_task(config)  # model, process, loss, preconditioning, schedule options


@pytest.mark.slow
def test_train_sample_evaluate_cli(tmp_path):
    workdir = str(tmp_path / "run")
    run_module(
        "experiments.train", "--config", "configs/toy_edm.py", "--workdir", workdir, *TINY_RUN
    )
    assert os.path.getsize(os.path.join(workdir, "samples_0000003.png")) > 0
    records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3]
    (evaluation,) = [r for r in records if r["kind"] == "eval"]
    assert {"swd", "swd_floor", "mmd", "mmd_floor"} <= set(evaluation)
    assert os.path.isdir(os.path.join(workdir, "checkpoints", "3"))

    out = str(tmp_path / "grid.png")
    run_module(
        "experiments.sample",
        *("--workdir", workdir, "--sampler", "euler", "--steps", "3", "--num", "5", "--out", out),
    )
    assert os.path.getsize(out) > 0
    result = run_module("experiments.evaluate", "--workdir", workdir, "--num", "64", "--steps", "3")
    assert json.loads(result.stdout)["step"] == 3


@pytest.mark.slow
def test_main_digits_config_trains_and_writes_a_sample_grid(tmp_path):
    """configs/digits_edm.py end to end in-process, with a tiny one-level UNet and 2 steps."""
    config = load_config("digits_edm")
    config.model.update(model_channels=8, channel_mult=(1,))
    config.training.update(
        batch_size=16, num_steps=2, sample_every=0, eval_every=-1, num_grid_samples=4
    )
    config.sample.steps = 2
    loop.train(config, str(tmp_path))
    image = np.asarray(Image.open(tmp_path / "samples_0000002.png"))
    assert image.shape == (4 * (2 * 9 + 1), 4 * (2 * 9 + 1))  # 2x2 grid of 8x8 digits, 4x enlarged
    assert os.path.isdir(tmp_path / "checkpoints" / "2")


def test_digit_metrics_of_the_test_split_itself():
    """The test split scored as if it were samples: Fréchet distance 0 (same features), the
    classifier's confident share and histogram close to the true label shares."""
    images, labels = digits.load_split("test")
    metrics = evaluation.digit_metrics(images)
    assert abs(metrics["fd"]) < 1e-4 * metrics["fd_floor"]  # sqrtm rounding only
    assert metrics["fd_floor"] > 0
    assert metrics["confident"] > 0.8
    true_shares = np.bincount(labels, minlength=10) / len(labels)
    np.testing.assert_allclose(metrics["class_histogram"], true_shares, atol=0.03)
    assert metrics["precision"] == 1.0 and metrics["coverage"] == 1.0


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
