"""The consistency tasks 'ct', 'ict' and 'cd' on the one trainer: tiny in-process runs of
configs/toy_consistency.py:ct, :ict and :cd (MLP width 16, batch 8, a few steps) with finite losses,
the EMA target's fixed decay, iCT's curriculum, a frozen teacher restored from a diffusion run,
one- and multi-step samples, and the bad inputs rejected before anything compiles."""

import importlib
import math
import os

import jax
import numpy as np
import pytest

from configs import toy_consistency
from configs.consistency_base import METHODS
from generative.consistency.losses import ict_levels, ict_num_levels
from generative.training import checkpoint, loop
from generative.training.task import create_task
from generative.training.workdir import write_config
from generative.training.writers import read_metrics


def tiny(name, num_steps=3, **task_fields):
    """configs/<name>.py (toy_<method>: configs/toy_consistency.py:<method>) with a width-16 MLP,
    batch 8 and `num_steps` steps, logged every step,
    checkpointed at the end, no pictures or evaluations."""
    if name.removeprefix("toy_") in METHODS:
        config = toy_consistency.get_config(name.removeprefix("toy_"))
    else:
        config = importlib.import_module(f"configs.{name}").get_config()
    config.model.update(width=16, num_blocks=1)
    config.training.update(
        batch_size=8, num_steps=num_steps, log_every=1, checkpoint_every=0, sample_every=-1,
        eval_every=-1, num_grid_samples=4,
    )  # fmt: skip
    config.eval.update(num_samples=8, batch_size=8)
    config.task.update(task_fields)
    return config


def train_losses(config, workdir):
    loop.train(config, str(workdir))
    return [r["loss"] for r in read_metrics(str(workdir)) if r["kind"] == "train"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A toy_edm diffusion run on the 8 Gaussians, trained for 2 steps."""
    workdir = tmp_path_factory.mktemp("teacher")
    config = tiny("toy_edm", num_steps=2)
    config.data.name = "eight_gaussians"
    loop.train(config, str(workdir))
    return str(workdir)


def test_ct_trains_and_its_target_ema_has_the_fixed_decay(tmp_path):
    config = tiny("toy_ct", num_levels=6)
    config.training.update(checkpoint_every=1, keep_checkpoints=3)
    workdir = str(tmp_path / "ct")
    initial = jax.device_get(loop.Run(config, workdir).initial_state().params["net"])
    losses = train_losses(config, workdir)
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    records = [r for r in read_metrics(workdir) if r["kind"] == "train"]
    assert {r["num_levels"] for r in records} == {6}
    assert all(r["net.target.decay"] == pytest.approx(0.95) for r in records)

    # target <- 0.95 target + 0.05 params after every step, from target = the initial params
    saved = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"))
    target = initial
    for step in (1, 2, 3):
        state = jax.device_get(saved.restore(step=step))
        target = jax.tree.map(lambda t, p: 0.95 * t + 0.05 * p, target, state["params"]["net"])
        jax.tree.map(
            lambda e, t: np.testing.assert_allclose(t, e, rtol=1e-5, atol=1e-7),
            target,
            state["ema"]["net"]["target"],
        )
    saved.close()


def test_ict_curriculum_and_training(tmp_path):
    config = tiny("toy_ict", num_steps=6, s0=2, s1=8)
    task = create_task(config)
    for step in (0, 6):
        n = int(ict_num_levels(step, 6, s0=2, s1=8))
        assert int(task.num_levels(step)) == n
        levels, probabilities, count = jax.device_get(jax.jit(task.levels)(step))
        assert int(count) == n
        np.testing.assert_allclose(levels[:n], ict_levels(n), rtol=1e-6)
        assert np.count_nonzero(probabilities) == n - 1
        assert float(probabilities.sum()) == pytest.approx(1.0, abs=1e-6)
    assert (int(task.num_levels(0)), int(task.num_levels(6))) == (3, 9)

    losses = train_losses(config, tmp_path / "ict")
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    logged = [r["num_levels"] for r in read_metrics(str(tmp_path / "ict")) if r["kind"] == "train"]
    assert logged == [int(ict_num_levels(k, 6, s0=2, s1=8)) for k in range(6)]


def test_cd_restores_a_frozen_teacher_and_samples(teacher, tmp_path):
    config = tiny("toy_cd", num_levels=6, teacher=teacher)
    losses = train_losses(config, tmp_path / "cd")
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)

    run = checkpoint.load_run(str(tmp_path / "cd"))
    restored = jax.device_get(checkpoint.load_run(teacher).params["net"])
    frozen = jax.device_get(run.state.frozen["teacher"])
    jax.tree.map(np.testing.assert_array_equal, frozen, restored)
    assert set(run.state.params) == {"net"}  # the teacher is never trained

    key = jax.random.key(1)
    one = run.task.sample(run.params, key, 5, steps=1)
    three = run.task.sample(run.params, key, 5, steps=3)
    for samples in (one, three):
        assert samples.shape == (5, 2) and np.all(np.isfinite(samples))
    assert not np.allclose(one, three)
    with pytest.raises(ValueError, match="samples in 1 to 3 steps"):
        run.task.sample(run.params, key, 5, steps=4)
    with pytest.raises(ValueError, match="sampler 'consistency'"):
        run.task.sample(run.params, key, 5, sampler="heun")


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("toy_cd", {"task.teacher": ""}, "config.task.teacher is empty"),
        ("toy_cd", {"task.teacher": "/nonexistent/teacher"}, "is not a directory"),
        ("toy_ct", {"process.sigma_min": 80.0}, "sigma_min must be < sigma_max"),
        ("toy_ict", {"process.name": "vp"}, "config.process.name must be 'edm'"),
        ("toy_ct", {"sample.consistency_levels": (0.3, 0.8)}, "must descend strictly"),
        ("toy_ct", {"eval.sampler": "heun"}, "eval.sampler must be 'consistency'"),
    ],
)
def test_bad_inputs_fail_before_compiling(name, change, message, tmp_path):
    config = tiny(name)
    for field, value in change.items():
        section, key = field.split(".")
        config[section][key] = value
    with pytest.raises(ValueError, match=message):
        loop.Run(config, str(tmp_path))


def test_cd_teacher_without_a_checkpoint(tmp_path):
    empty = tmp_path / "no_checkpoint"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no config.json"):
        loop.Run(tiny("toy_cd", teacher=str(empty)), str(tmp_path / "run"))
    write_config(str(empty), tiny("toy_edm"))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        loop.Run(tiny("toy_cd", teacher=str(empty)), str(tmp_path / "run"))
