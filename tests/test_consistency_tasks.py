"""The consistency tasks 'ct', 'ict' and 'cd' on the one trainer: tiny in-process runs of
configs/toy_consistency.py:ct, :ict and :cd (MLP width 16, batch 8, a few steps) with finite losses,
the EMA target's fixed decay, iCT's curriculum, a frozen teacher restored from a diffusion run,
one- and multi-step samples, and the bad inputs rejected before anything compiles."""

import functools
import importlib
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_consistency, digits_edm, toy_consistency
from configs.consistency_base import METHODS
from generative.consistency import tasks
from generative.consistency.losses import ict_levels, ict_num_levels
from generative.consistency.parametrization import trigflow_to_edm
from generative.training import checkpoint, loop
from generative.training.task import create_task
from generative.training.workdir import read_config, write_config
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


def test_ect_starts_from_the_teacher_and_trains(teacher, tmp_path):
    config = tiny("toy_ect", num_steps=4, stage_steps=2)
    config.training.init_from = teacher
    workdir = str(tmp_path / "ect")
    initial = jax.device_get(loop.Run(config, workdir).initial_state())
    source = jax.device_get(checkpoint.load_run(teacher).state)
    # training.init_from_ema (set by the ect config): the online 'net' and the sampling EMA both
    # from the run's EMA (the same network: the 'consistency' preconditioning of its F)
    assert config.training.init_from_ema
    teacher_ema = source.ema["net"]["ema"]
    jax.tree.map(np.testing.assert_array_equal, initial.params["net"], teacher_ema)
    jax.tree.map(np.testing.assert_array_equal, initial.ema["net"]["ema"], teacher_ema)
    differs = jax.tree.map(lambda a, b: not np.array_equal(a, b), source.params["net"], teacher_ema)
    assert any(jax.tree.leaves(differs))  # the run's online weights are not its EMA
    assert set(initial.ema["net"]) == {"ema"}  # no EMA target

    loop.train(config, workdir)
    records = [r for r in read_metrics(workdir) if r["kind"] == "train"]
    assert len(records) == 4 and all(math.isfinite(r["loss"]) for r in records)
    assert [r["stage"] for r in records] == [0, 0, 1, 1]
    gaps = [r["relative_gap"] for r in records]
    assert all(0 < g < 1 for g in gaps) and np.mean(gaps[2:]) < np.mean(gaps[:2])

    run = checkpoint.load_run(workdir)
    samples = run.task.sample(run.params, jax.random.key(1), 5, steps=2)
    assert samples.shape == (5, 2) and np.all(np.isfinite(samples))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"training.init_from": ""}, "config.training.init_from is empty: ECT starts from"),
        ({"training.init_from": "/nonexistent/run"}, "is not a directory"),
        ({"model.width": 32}, r"another network \(model.width: 16 there, 32 here\)"),
        ({"data.name": "moons"}, "was trained on 'eight_gaussians'"),
        ({"task.gap_ratio": 1.0}, "config.task.gap_ratio must be > 1"),
        ({"task.stage_steps": 0}, "config.task.stage_steps must be an int >= 1"),
        ({"task.stage_steps": 1, "training.num_steps": 40}, "below float32 resolution"),
        ({"task.precond.name": "edm"}, "needs config.task.precond.name='consistency'"),
    ],
)
def test_bad_ect_configs_fail_before_compiling(teacher, change, message, tmp_path):
    config = tiny("toy_ect", num_steps=4, stage_steps=2)
    config.training.init_from = teacher
    for field, value in change.items():
        *path, key = field.split(".")
        node = config
        for name in path:
            node = node[name]
        node[key] = value
    with pytest.raises(ValueError, match=message) as info:
        loop.Run(config, str(tmp_path / "run"))
    assert "\n" not in str(info.value)


def test_ect_init_run_without_a_config(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = tiny("toy_ect", num_steps=4, stage_steps=2)
    config.training.init_from = str(empty)
    with pytest.raises(ValueError, match="init_from: .* holds no config.json"):
        loop.Run(config, str(tmp_path / "run"))


def test_sct_trains_with_the_tangent_warmup_and_samples_in_two_steps(tmp_path):
    config = tiny("toy_sct", num_steps=4, tangent_warmup_steps=2, logvar_channels=8)
    workdir = str(tmp_path / "sct")
    losses = train_losses(config, workdir)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    records = [r for r in read_metrics(workdir) if r["kind"] == "train"]
    assert [r["tangent_warmup"] for r in records] == [0.0, 0.5, 1.0, 1.0]

    run = checkpoint.load_run(workdir)
    assert set(run.state.params["net"]) == {"network", "logvar"}  # trained together
    key = jax.random.key(1)
    one = run.task.sample(run.params, key, 6, steps=1)
    two = run.task.sample(run.params, key, 6, steps=2)
    assert one.shape == two.shape == (6, 2) and np.all(np.isfinite(two))
    assert not np.allclose(one, two)
    # One step is f(sd z, pi/2) = -sd F(z, pi/2), and the EDM-coordinate denoiser agrees with
    # the TrigFlow function where both are defined (t < pi/2).
    f = run.task.consistency_function(run.params)
    x_t = jax.random.normal(jax.random.key(2), (6, 2))
    t = jnp.full((6,), 1.2)
    x, sigma = trigflow_to_edm(x_t, t, sigma_data=0.5)
    np.testing.assert_allclose(run.task.denoiser(run.params)(x, sigma), f(x_t, t), rtol=2e-5,
                               atol=1e-6)  # fmt: skip


def test_scd_uses_the_teachers_velocity(teacher, tmp_path):
    config = tiny("toy_scd", num_steps=2, teacher=teacher, logvar_channels=8)
    task = create_task(config)
    losses = train_losses(config, tmp_path / "scd")
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    run = checkpoint.load_run(str(tmp_path / "scd"))
    restored = jax.device_get(checkpoint.load_run(teacher).params["net"])
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(run.state.frozen["teacher"]),
                 restored)  # fmt: skip
    # The velocity is the teacher's: (cos(t) x_t - D(x_t / cos t, sd tan t)) / sin(t).
    teacher_run = checkpoint.load_run(teacher)
    denoise = teacher_run.task.denoiser(teacher_run.params)
    x_t = jax.random.normal(jax.random.key(3), (4, 2))
    t = jnp.array([0.1, 0.5, 1.0, 1.5])
    c = t[:, None]
    want = (jnp.cos(c) * x_t - denoise(x_t / jnp.cos(c), 0.5 * jnp.tan(t))) / jnp.sin(c)
    got = task.velocity({"teacher": run.state.frozen["teacher"]})(x_t, t)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name, change, message",
    [
        ("toy_sct", {"model": dict(name="dit", impl="cudnn")}, "cuDNN attention has no forward"),
        ("toy_sct", {"task.tangent_c": 0.0}, "config.task.tangent_c must be > 0"),
        ("toy_sct", {"task.tangent_warmup_steps": -1}, "tangent_warmup_steps must be an int"),
        ("toy_sct", {"task.precond": {"name": "edm"}}, "precond.name='trigflow'"),
        ("toy_sct", {"sample.consistency_levels": (1.6,)}, r"inside \(0, pi/2\)"),
        ("toy_scd", {"task.teacher": ""}, "config.task.teacher is empty"),
    ],
)
def test_bad_scm_configs_fail_before_compiling(name, change, message, tmp_path):
    config = tiny(name)
    for field, value in change.items():
        if "." in field:
            section, key = field.split(".")
            config[section][key] = value
        else:
            config[field].update(value)
    with pytest.raises(ValueError, match=message) as info:
        loop.Run(config, str(tmp_path))
    assert "\n" not in str(info.value)


def test_ect_accepts_a_teacher_that_ran_its_cores_with_another_impl(tmp_path):
    """model.impl chooses how the cores run, not the parameters: a main job trained with 'xla'
    initialises ECT under the default 'auto'; another width is refused."""
    teacher_config = digits_edm.get_config()
    teacher_config.model.impl = "xla"
    write_config(str(tmp_path), teacher_config)
    teacher_config = read_config(str(tmp_path))  # as a run's config.json reads back
    config = digits_consistency.get_config("ect")
    assert config.model.impl == "auto"
    check = functools.partial(
        tasks.check_diffusion_run, "training.init_from", "run", same_network=True
    )
    check(teacher_config, config)
    config.model.model_channels = 64
    with pytest.raises(ValueError, match="model.model_channels: 32 there, 64 here"):
        check(teacher_config, config)
