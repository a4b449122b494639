"""Training machinery: optimiser schedule, EMA, the sharded train step, accumulation, bfloat16,
checkpoints and config checks. Small MLPs on 2-D data, CPU, 8 forced host
devices."""

import importlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import toy_edm
from generative.training import checkpoint as checkpoint_lib
from generative.training import ema as ema_lib
from generative.training import loop, optim
from generative.training import step as step_lib
from generative.training.task import create_task


def tiny_config(**training):
    """toy_edm with a small MLP and a short run; batch 16 splits over the 8 test devices."""
    config = toy_edm.get_config()
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
    return {"x": rng.normal(size=(n, 2)).astype(np.float32) * 0.5}


def build(config, mesh):
    task = create_task(config)
    optimizers = {"net": optim.make_optimizer(config.optim, config.training.num_steps)}
    state = step_lib.init_state(task, optimizers, jax.random.PRNGKey(0), mesh)
    return task, optimizers, state


def batch_loss(task):
    """(params of 'net', batch, key) -> the task's scalar loss (what the step differentiates)."""
    return lambda p, batch, key: task.loss_fn({"net": p}, {}, batch, key)[0]


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


# ---------------------------------------------------------------- the train step


def test_train_step_lowers_the_loss_on_a_fixed_batch():
    """With the batch and the step key held fixed, the loss is a deterministic function of the
    parameters, and a few optimiser steps must lower it."""
    config = tiny_config(num_steps=15)
    config.optim.lr = 1e-2
    mesh = step_lib.make_mesh()
    task, optimizers, state = build(config, mesh)
    batch = step_lib.put_batch(fixed_batch(), mesh)
    key = jax.random.PRNGKey(1)
    loss = jax.jit(batch_loss(task))
    # the step folds the phase index into the key: phase 0, repeat 0
    phase_key = jax.random.fold_in(jax.random.fold_in(key, 0), 0)
    before = loss(state.params["net"], batch, phase_key)
    train_step = step_lib.make_train_step(task, optimizers, config, mesh)
    for _ in range(15):
        state, metrics = train_step(state, batch, key)
    after = loss(state.params["net"], batch, phase_key)
    assert int(state.step) == 15
    assert after < 0.8 * before, (before, after)
    np.testing.assert_allclose(
        metrics["loss"], loss(state.params["net"], batch, phase_key), rtol=0.5
    )
    assert jax.tree.leaves(state.params)[0].dtype == jnp.float32


def test_eight_devices_and_one_device_agree():
    assert jax.device_count() == 8, "tests/conftest.py forces 8 host devices"
    config = tiny_config()
    config.model.dropout = 0.1  # dropout masks must not depend on the sharding either
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
        mesh = step_lib.make_mesh(devices)
        task, _, state = build(config, mesh)
        batch = step_lib.put_batch(fixed_batch(), mesh)
        value_and_grad = jax.jit(
            jax.value_and_grad(batch_loss(task)),
            in_shardings=(step_lib.replicated(mesh), step_lib.batch_sharded(mesh), None),
        )
        key = jax.random.PRNGKey(3)
        results.append(jax.device_get(value_and_grad(state.params["net"], batch, key)))
    (loss1, grads1), (loss8, grads8) = results
    np.testing.assert_allclose(loss8, loss1, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads8, grads1
    )


def test_gradient_accumulation_averages_micro_batch_gradients():
    config = tiny_config()
    mesh = step_lib.make_mesh()
    task, _, state = build(config, mesh)
    value_and_grad = jax.value_and_grad(batch_loss(task))
    with_aux = jax.value_and_grad(
        lambda p, b, k: (batch_loss(task)(p, b, k), {"m": 1.0}), has_aux=True
    )
    batch = fixed_batch(32)
    key = jax.random.PRNGKey(5)
    params = state.params["net"]
    accumulated = {
        unroll: jax.jit(step_lib.accumulated_value_and_grad(with_aux, 2, unroll=unroll))(
            params, batch, key
        )
        for unroll in (True, False)
    }
    (loss, aux), grads = accumulated[True]
    jax.tree.map(  # the unrolled (CPU) and the scanned (accelerator) forms agree
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        accumulated[True],
        accumulated[False],
    )
    # Micro-batch j holds examples j, j + 2, j + 4, ... and uses the j-th split key.
    keys = jax.random.split(key, 2)
    parts = [
        jax.jit(value_and_grad)(params, jax.tree.map(lambda x: x[j::2], batch), keys[j])
        for j in range(2)
    ]
    np.testing.assert_allclose(loss, (parts[0][0] + parts[1][0]) / 2, rtol=1e-5)
    np.testing.assert_allclose(aux["m"], 1.0)
    expected = jax.tree.map(lambda a, b: (a + b) / 2, parts[0][1], parts[1][1])
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7), grads, expected
    )


def test_bfloat16_compute_keeps_float32_parameters():
    """model.dtype bfloat16: the network's matmuls run in bfloat16 (seen in the train step's
    jaxpr; none in the float32 step's), while parameters and EMAs stay float32."""
    mesh = step_lib.make_mesh()
    batch = step_lib.put_batch(fixed_batch(), mesh)
    bf16_dots = {}
    for dtype in ("float32", "bfloat16"):
        config = tiny_config()
        config.model.dtype = dtype
        task, optimizers, state = build(config, mesh)
        train_step = step_lib.make_train_step(task, optimizers, config, mesh)
        jaxpr = jax.make_jaxpr(train_step)(state, batch, jax.random.key(0))
        bf16_dots[dtype] = count_bfloat16_dots(jaxpr.jaxpr)
        state, metrics = train_step(state, batch, jax.random.key(0))
        assert np.isfinite(metrics["loss"])
        dtypes = {x.dtype for x in jax.tree.leaves((state.params, state.ema))}
        assert dtypes == {jnp.dtype(jnp.float32)}
    assert bf16_dots["float32"] == 0
    assert bf16_dots["bfloat16"] > 0


def count_bfloat16_dots(jaxpr) -> int:
    """dot_general equations with bfloat16 operands in `jaxpr` and all its sub-jaxprs."""
    count = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            count += any(v.aval.dtype == jnp.bfloat16 for v in eqn.invars)
        for param in eqn.params.values():
            for sub in param if isinstance(param, list | tuple) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    count += count_bfloat16_dots(inner)
    return count


# ---------------------------------------------------------------- checkpoints


def test_checkpointer_keeps_the_newest_and_restores_exactly(tmp_path):
    mesh = step_lib.make_mesh()
    _, _, state = build(tiny_config(), mesh)
    checkpointer = checkpoint_lib.Checkpointer(str(tmp_path), max_to_keep=2)
    for step in (1, 2, 3):
        checkpointer.save(step, state.replace(step=jnp.asarray(step, jnp.int32)))
    assert checkpointer.manager.all_steps() == [2, 3]
    restored = checkpointer.restore(state)
    assert int(restored.step) == 3
    jax.tree.map(np.testing.assert_array_equal, restored.params, state.params)
    checkpointer.close()


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


def _with(config, **fields):
    config = config.copy_and_resolve_references()
    for path, value in fields.items():
        node = config
        *parents, leaf = path.split("__")
        for parent in parents:
            node = node[parent]
        node[leaf] = value
    return config


def test_inconsistent_process_precond_and_loss_fail_before_compile(tmp_path, no_compiles):
    """The process owns sigma_data, the noise range and D; the loss and preconditioning must fit
    the process."""
    config = tiny_config()
    edm_with_vp = _with(config, task__precond=ml_collections.ConfigDict({"name": "vp"}))
    flow_with_edm = _with(
        config,
        process=ml_collections.ConfigDict({"name": "flow"}),
        task__loss=ml_collections.ConfigDict({"name": "flow_matching"}),
    )
    two_sigma_data = _with(config, task__loss__sigma_data=0.3)
    pfgmpp = importlib.import_module("configs.toy_pfgmpp").get_config()
    two_d = _with(pfgmpp, task__loss__D=64.0)
    range_twice = _with(config, sample__schedule_options={"rho": 7.0, "sigma_max": 10.0})
    cases = [
        (edm_with_vp, "precond.name='vp' does not fit config.process.name='edm'"),
        (flow_with_edm, "precond.name='edm' does not fit config.process.name='flow'"),
        (two_sigma_data, "two different sigma_data"),
        (two_d, "two different D"),
        (range_twice, r"schedule_options \['sigma_max'\] belong to the process"),
    ]
    for bad, message in cases:
        with pytest.raises(ValueError, match=message):
            loop.train(bad, str(tmp_path))
