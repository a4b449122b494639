"""Training machinery: optimiser schedule, EMA, label dropout, the sharded train step, accumulation,
checkpoints, resume after a kill and config checks. Small MLPs on 2-D data, CPU, 8 forced host
devices."""

import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import toy_edm
from generative.losses import make_loss
from generative.models import create_model
from generative.training import checkpoint as checkpoint_lib
from generative.training import ema as ema_lib
from generative.training import loop, optim
from generative.training import step as step_lib
from generative.training.writers import read_metrics


def tiny_config(**training):
    """toy_edm with a small MLP and a short run; batch 16 splits over the 8 test devices."""
    config = toy_edm.get_config()
    config.tensorboard = False
    config.model.width = 32
    config.model.num_blocks = 1
    config.model.noise_channels = 16
    config.optim.warmup_steps = 2
    config.training.update(
        dict(
            batch_size=16,
            num_steps=6,
            log_every=1,
            sample_every=-1,
            eval_every=-1,
            checkpoint_every=3,
            num_grid_samples=16,
        )
    )
    config.training.update(training)
    config.eval.num_samples = 64
    config.eval.steps = 4
    config.sample.steps = 4
    return config


def fixed_batch(n=16, seed=0):
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(n, 2)).astype(np.float32) * 0.5, "label": np.zeros(n, np.int32)}


def build(config, mesh):
    model = create_model(config.model)
    loss_fn = make_loss(config)
    optimizer = optim.make_optimizer(config.optim, config.training.num_steps)
    state = step_lib.init_state(
        model, optimizer, fixed_batch(), jax.random.PRNGKey(0), mesh, config.model.num_classes
    )
    return model, loss_fn, optimizer, state


# ---------------------------------------------------------------- optimiser, EMA, label dropout


def test_warmup_is_linear_then_constant():
    config = tiny_config().optim
    config.lr, config.warmup_steps = 0.5, 4
    schedule = optim.learning_rate_schedule(config, num_steps=100)
    np.testing.assert_allclose([schedule(i) for i in range(6)], [0.125, 0.25, 0.375, 0.5, 0.5, 0.5])


def test_cosine_decay_ends_at_zero():
    config = tiny_config().optim
    config.lr, config.warmup_steps, config.decay = 1.0, 0, "cosine"
    schedule = optim.learning_rate_schedule(config, num_steps=10)
    np.testing.assert_allclose([schedule(0), schedule(5), schedule(10)], [1.0, 0.5, 0.0], atol=1e-6)


def test_gradient_clipping_is_applied_before_adam():
    config = tiny_config().optim
    config.update(lr=1.0, warmup_steps=0, grad_clip=1.0, eps=1e3)
    optimizer = optim.make_optimizer(config, 10)
    grads = {"w": jnp.full((4,), 10.0)}  # global norm 20, clipped to 1: entries 0.5
    updates, _ = optimizer.update(grads, optimizer.init(grads))
    # Adam's first step is -lr g / (|g| + eps) (bias corrections cancel), g the clipped gradient.
    np.testing.assert_allclose(updates["w"], -0.5 / (0.5 + 1e3), rtol=1e-5)
    with pytest.raises(ValueError, match="optim.name"):
        config.name = "sgd"
        optim.make_optimizer(config, 10)


def test_halflife_ema_decay_matches_edm_formula():
    config = tiny_config().ema
    config.halflife_images, config.rampup_ratio = 1000.0, 0.05
    batch = 10
    for step in (0, 10, 5000):
        images = (step + 1) * batch
        halflife = min(1000.0, images * 0.05)
        expected = 0.5 ** (batch / halflife)
        np.testing.assert_allclose(ema_lib.ema_decay(config, step, batch), expected, rtol=1e-6)
    # After `halflife` images at a fixed half-life, the old average's weight is exactly 1/2.
    config.rampup_ratio = 0.0
    decay = ema_lib.ema_decay(config, 0, batch)
    np.testing.assert_allclose(decay ** (1000 / batch), 0.5, rtol=1e-5)


def test_ema_update_is_a_convex_combination():
    ema = {"a": jnp.array([0.0, 4.0])}
    params = {"a": jnp.array([1.0, 0.0])}
    out = ema_lib.ema_update(ema, params, 0.75)
    np.testing.assert_allclose(out["a"], [0.25, 3.0])


def test_label_dropout_rate():
    labels = jnp.zeros((20_000,), jnp.int32)
    dropped = step_lib.drop_labels(jax.random.PRNGKey(0), labels, 0.1, num_classes=10)
    share = float(jnp.mean(dropped == 10))
    # Binomial(20000, 0.1): standard deviation 0.0021; allow 5 sigma.
    assert abs(share - 0.1) < 5 * np.sqrt(0.1 * 0.9 / 20_000)
    assert set(np.unique(dropped).tolist()) == {0, 10}
    assert step_lib.drop_labels(jax.random.PRNGKey(0), labels, 0.0, 10) is labels


# ---------------------------------------------------------------- the train step


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    """With the batch and the step key held fixed, the loss is a deterministic function of the
    parameters, and a few optimiser steps must lower it."""
    config = tiny_config(num_steps=15)
    config.optim.lr = 1e-2
    mesh = step_lib.make_mesh()
    model, loss_fn, optimizer, state = build(config, mesh)
    batch = step_lib.put_batch(fixed_batch(), mesh)
    key = jax.random.PRNGKey(1)
    batch_loss = jax.jit(step_lib.make_batch_loss(model, loss_fn, config))
    before = batch_loss(state.params, batch, key)
    train_step = step_lib.make_train_step(model, loss_fn, optimizer, config, mesh)
    for _ in range(15):
        state, metrics = train_step(state, batch, key)
    after = batch_loss(state.params, batch, key)
    assert int(state.step) == 15
    assert after < 0.8 * before, (before, after)
    assert jax.tree.leaves(state.params)[0].dtype == jnp.float32


def test_eight_devices_and_one_device_agree():
    assert jax.device_count() == 8, "tests/conftest.py forces 8 host devices"
    config = tiny_config()
    config.model.dropout = 0.1  # dropout masks must not depend on the sharding either
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = step_lib.make_mesh(devices)
        model, loss_fn, _, state = build(config, mesh)
        batch = step_lib.put_batch(fixed_batch(), mesh)
        value_and_grad = jax.jit(
            jax.value_and_grad(step_lib.make_batch_loss(model, loss_fn, config)),
            in_shardings=(step_lib.replicated(mesh), step_lib.batch_sharded(mesh), None),
        )
        results.append(jax.device_get(value_and_grad(state.params, batch, jax.random.PRNGKey(3))))
    (loss1, grads1), (loss8, grads8) = results
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads8, grads1
    )


def test_gradient_accumulation_averages_micro_batch_gradients():
    config = tiny_config()
    mesh = step_lib.make_mesh()
    model, loss_fn, _, state = build(config, mesh)
    batch_loss = step_lib.make_batch_loss(model, loss_fn, config)
    batch = fixed_batch(32)
    key = jax.random.PRNGKey(5)
    loss, grads = jax.jit(step_lib.accumulated_value_and_grad(batch_loss, 2))(
        state.params, batch, key
    )
    value_and_grad = jax.jit(jax.value_and_grad(batch_loss))
    # Micro-batch j holds examples j, j + 2, j + 4, ... and uses the j-th split key.
    keys = jax.random.split(key, 2)
    parts = [
        value_and_grad(state.params, jax.tree.map(lambda x: x[j::2], batch), keys[j])
        for j in range(2)
    ]
    np.testing.assert_allclose(loss, (parts[0][0] + parts[1][0]) / 2, rtol=1e-5)
    expected = jax.tree.map(lambda a, b: (a + b) / 2, parts[0][1], parts[1][1])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads, expected
    )


def test_bfloat16_compute_keeps_float32_parameters():
    config = tiny_config()
    config.model.dtype = "bfloat16"
    mesh = step_lib.make_mesh()
    model, loss_fn, optimizer, state = build(config, mesh)
    train_step = step_lib.make_train_step(model, loss_fn, optimizer, config, mesh)
    state, metrics = train_step(state, step_lib.put_batch(fixed_batch(), mesh), jax.random.key(0))
    assert np.isfinite(metrics["loss"])
    dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.ema_params))}
    assert dtypes == {jnp.dtype(jnp.float32)}


# ---------------------------------------------------------------- checkpoints and resume


def test_checkpointer_keeps_the_newest_and_restores_exactly(tmp_path):
    mesh = step_lib.make_mesh()
    _, _, _, state = build(tiny_config(), mesh)
    checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=2)
    for step in (1, 2, 3):
        checkpointer.save(step, state.replace(step=jnp.asarray(step, jnp.int32)))
    assert checkpointer.manager.all_steps() == [2, 3]
    restored = checkpointer.restore(state)
    assert int(restored.step) == 3
    jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)
    checkpointer.close()


def _final_params(workdir):
    experiment = loop.Experiment(tiny_config(), str(workdir))
    state = experiment.restore()
    return int(state.step), jax.device_get(state.params), jax.device_get(state.ema_params)


def test_kill_and_resume_is_bitwise_identical(tmp_path, monkeypatch):
    """A run that gets SIGTERM mid-way (it checkpoints and stops), then resumed, ends exactly where
    an uninterrupted run ends: same parameters and EMA, bit for bit, and the same logged losses."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")
    overrides = dict(num_steps=12, checkpoint_every=1000)
    loop.train(tiny_config(**overrides), str(tmp_path / "straight"))

    calls = []

    def put_batch_then_sigterm(batch, mesh):  # the real signal, delivered during step 5
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        return step_lib.put_batch(batch, mesh)

    killed = str(tmp_path / "killed")
    handler_before = signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:
        patch.setattr(loop, "put_batch", put_batch_then_sigterm)
        loop.train(tiny_config(**overrides), killed)
    assert len(calls) == 5
    assert _final_params(killed)[0] == 5  # checkpointed where it stopped
    assert signal.getsignal(signal.SIGTERM) == handler_before  # the previous handler is back

    loop.train(tiny_config(**overrides), killed)  # resumes by itself
    step_a, params_a, ema_a = _final_params(tmp_path / "straight")
    step_b, params_b, ema_b = _final_params(killed)
    assert step_a == step_b == 12
    jax.tree.map(np.testing.assert_array_equal, params_a, params_b)
    jax.tree.map(np.testing.assert_array_equal, ema_a, ema_b)
    losses = [r["loss"] for r in read_metrics(killed)]
    assert losses == [r["loss"] for r in read_metrics(str(tmp_path / "straight"))]


# ---------------------------------------------------------------- bad configs


@pytest.fixture
def no_compiles(monkeypatch):
    """Fails the test if anything is jit-compiled: config errors must come first."""

    def jit(*args, **kwargs):
        raise AssertionError("jax.jit called before the config was rejected")

    monkeypatch.setattr(jax, "jit", jit)


def test_missing_field_fails_before_compile(tmp_path, no_compiles):
    config = tiny_config()
    del config.training["num_steps"]
    with pytest.raises(ValueError, match="training.num_steps"):
        loop.train(config, str(tmp_path))


def test_unknown_model_fails_before_compile(tmp_path, no_compiles):
    config = tiny_config()
    config.model.name = "transformer9000"
    with pytest.raises(ValueError, match="unknown model"):
        loop.train(config, str(tmp_path))


def test_batch_not_divisible_by_devices_fails_before_compile(tmp_path, no_compiles):
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        loop.train(tiny_config(batch_size=12), str(tmp_path))
    with pytest.raises(ValueError, match="accum_steps"):
        loop.train(tiny_config(batch_size=16, accum_steps=3), str(tmp_path))
