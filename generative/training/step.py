"""The jit-compiled train step of any task, data-parallel over a mesh of all devices.

Parameters, EMAs and optimiser states are replicated; the batch is split along its first axis over
the mesh axis 'data'. The step is written for the whole global batch and XLA inserts the gradient
all-reduce, so the same code runs on 1 CPU, on 8 forced host devices and on a TPU pod slice.

One step runs the task's phases in order (generative.training.task): each phase differentiates its
loss with respect to its own group only and applies that group's optimiser, `repeats` times; then
every EMA of every group advances once. With training.accum_steps k the batch is cut into k
micro-batches (example i goes to micro-batch i mod k, so each is still spread over all devices)
whose mean gradients are averaged; memory scales with B / k.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from generative.training.ema import ema_decay, ema_update
from generative.training.state import TrainState

DATA_AXIS = "data"


def make_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis 'data' over `devices` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(devices, (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def accumulated_value_and_grad(value_and_grad, accum_steps: int, *, unroll: bool | None = None):
    """value_and_grad(params, batch, key) -> ((loss, metrics), grads), averaged over
    `accum_steps` = k micro-batches of one batch: micro-batch j holds examples j, j + k, j + 2k, ...
    and uses the key split(key, k)[j].

    unroll (default: on the CPU backend) traces the k micro-batches one after another instead of
    in a lax.scan. XLA:CPU puts convolutions into the layout its fast kernels need only in the
    entry computation, so the backward convolutions of a scan body compiled to naive loop nests
    and the accumulated step ran ~15x slower than the plain one (benchmarks/RESULTS.md, "Gradient
    accumulation"). Unrolled, micro-batch j + 1 reads the parameters through a data dependency on
    the gradients summed so far (`params + 0 * all_finite(grads)`, exactly params), so its forward
    pass cannot start before j's backward pass ends and peak activations stay one micro-batch's
    (B / k), as with the scan. Elsewhere the scan is kept (one compiled body; compile time does not
    grow with k).
    """
    if accum_steps == 1:
        return value_and_grad
    k = accum_steps
    if unroll is None:
        unroll = jax.default_backend() == "cpu"

    def split(x):  # [B, ...] -> [k, B / k, ...]; row j = examples j, j + k, j + 2k, ...
        return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)

    def after(params, total):
        """params, computable only once `total` is (a bool times 0 is 0 even for non-finite
        gradients, and XLA does not fold float x * 0)."""
        grads = [g for g in jax.tree.leaves(total[1]) if jnp.issubdtype(g.dtype, jnp.inexact)]
        finite = jnp.all(jnp.stack([jnp.isfinite(g).all() for g in grads]))
        zero = finite.astype(jnp.float32) * 0
        return jax.tree.map(lambda p: p + zero.astype(p.dtype), params)

    def accumulated(params, batch, key):
        keys = jax.random.split(key, k)
        micro = jax.tree.map(split, batch)
        total = value_and_grad(params, jax.tree.map(lambda x: x[0], micro), keys[0])
        if unroll:
            for j in range(1, k):
                micro_j = jax.tree.map(lambda x, j=j: x[j], micro)
                out = value_and_grad(after(params, total), micro_j, keys[j])
                total = jax.tree.map(jnp.add, total, out)
        else:

            def body(carry, inputs):
                return jax.tree.map(jnp.add, carry, value_and_grad(params, *inputs)), None

            rest = jax.tree.map(lambda x: x[1:], micro)
            total, _ = jax.lax.scan(body, total, (rest, keys[1:]))
        return jax.tree.map(lambda x: x / k, total)

    return accumulated


def _metric_names(phases) -> list[str]:
    """Metric prefix per phase: none for a one-phase task, '<group>.' otherwise."""
    if len(phases) == 1:
        return [""]
    return [f"{phase.group}." for phase in phases]


def make_train_step(task, optimizers: dict, config: ml_collections.ConfigDict, mesh: Mesh):
    """train_step(state, batch, key) -> (state, metrics), jitted with explicit shardings on `mesh`.

    Metrics are replicated scalars: each phase's loss and task metrics, grad_norm (before clipping)
    and update_norm, with optimisers wrapped in optax.apply_if_finite also skipped_updates (in all)
    and skipped_in_a_row (all prefixed '<group>.' when the task has several phases), and each
    EMA's decay ('ema_decay' for a single EMA, '<group>.<name>.decay' otherwise). The input state
    is donated.
    """
    phases = task.phases()
    rules = task.emas()
    batch_size = config.training.batch_size
    prefixes = _metric_names(phases)
    single_ema = sum(len(r) for r in rules.values()) == 1

    def phase_update(phase, params, opt_state, frozen, batch, key):
        group = phase.group

        def group_loss(group_params, batch, key):
            return phase.loss_fn({**params, group: group_params}, frozen, batch, key)

        value_and_grad = accumulated_value_and_grad(
            jax.value_and_grad(group_loss, has_aux=True), config.training.accum_steps
        )
        for repeat in range(phase.repeats):
            (loss, metrics), grads = value_and_grad(
                params[group], batch, jax.random.fold_in(key, repeat)
            )
            updates, opt_state = optimizers[group].update(grads, opt_state, params[group])
            params = {**params, group: optax.apply_updates(params[group], updates)}
        metrics = dict(
            metrics,
            loss=loss,
            grad_norm=optax.tree.norm(grads),
            update_norm=optax.tree.norm(updates),
        )
        if isinstance(opt_state, optax.ApplyIfFiniteState):  # training.on_nonfinite = 'skip'
            metrics.update(
                skipped_updates=opt_state.total_notfinite,
                skipped_in_a_row=opt_state.notfinite_count,
            )
        return params, opt_state, metrics

    def train_step(state: TrainState, batch, key):
        params, opt_states, metrics = state.params, dict(state.opt_state), {}
        frozen = state.frozen_view()
        for index, (phase, prefix) in enumerate(zip(phases, prefixes, strict=True)):
            params, opt_states[phase.group], phase_metrics = phase_update(
                phase,
                params,
                opt_states[phase.group],
                frozen,
                batch,
                jax.random.fold_in(key, index),
            )
            metrics.update({prefix + name: value for name, value in phase_metrics.items()})
        ema = {}
        for group, group_rules in rules.items():
            ema[group] = {}
            for name, rule in group_rules.items():
                decay = ema_decay(rule, state.step, batch_size)
                ema[group][name] = ema_update(state.ema[group][name], params[group], decay)
                metrics["ema_decay" if single_ema else f"{group}.{name}.decay"] = decay
        new_state = state.replace(step=state.step + 1, params=params, ema=ema, opt_state=opt_states)
        return new_state, metrics

    rep, data = replicated(mesh), batch_sharded(mesh)
    return jax.jit(
        train_step,
        in_shardings=(rep, data, rep),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )


def _create_state(task, optimizers: dict):
    example = task.example_batch()
    return lambda key: TrainState.create(task.init(key, example), optimizers, task.emas())


def init_state(task, optimizers: dict, key, mesh: Mesh) -> TrainState:
    """The initial TrainState (task.init on its example batch), placed replicated on `mesh`."""
    return jax.jit(_create_state(task, optimizers), out_shardings=replicated(mesh))(key)


def abstract_state(task, optimizers: dict, mesh: Mesh) -> TrainState:
    """The TrainState's shapes, dtypes and (replicated) shardings, computed without running init:
    the target of a restore."""
    shapes = jax.eval_shape(_create_state(task, optimizers), jax.random.PRNGKey(0))
    sharding = replicated(mesh)
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), shapes)


def put_batch(batch, mesh: Mesh):
    """This process's share of the global batch -> global arrays sharded over 'data'."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
