"""The jit-compiled train step, data-parallel over a mesh of all devices.

Parameters, EMA and optimiser state are replicated; the batch is split along its first axis over the
mesh axis 'data'. The step is written for the whole global batch and XLA inserts the gradient
all-reduce, so the same code runs on 1 CPU, on 8 forced host devices and on a TPU pod slice.

Options:
* mixed precision: with model.dtype 'bfloat16' the Flax modules compute in bfloat16 while their
  parameters, the gradients, the optimiser state and the EMA stay float32.
* label_dropout p: each label is replaced by the null class (num_classes) with probability p,
  training the unconditional model used by classifier-free guidance (Ho and Salimans 2022).
* training.accum_steps k: the batch is cut into k micro-batches (example i goes to micro-batch i mod
  k, so each micro-batch is still spread over all devices) whose mean gradients are averaged in a
  lax.scan; memory scales with B / k.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import ml_collections
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from generative.preconditioning import precondition
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


def network_denoiser(model, params, precond_config, *, train=False, dropout_key=None):
    """denoise(x, sigma, **cond) for the Flax network `model` with `params`, preconditioned as
    precond_config.kind (generative.preconditioning; the other fields are passed on)."""

    def raw_net(x_in, c_noise, **cond):
        rngs = {"dropout": dropout_key} if train and dropout_key is not None else {}
        out = model.apply({"params": params}, x_in, c_noise, train=train, rngs=rngs, **cond)
        return out.astype(jnp.float32)

    options = {k: v for k, v in precond_config.items() if k != "kind"}
    return precondition(raw_net, precond_config.kind, **options)


def drop_labels(key, labels, rate: float, num_classes: int):
    """Each label becomes the null class `num_classes` with probability `rate`."""
    if rate <= 0:
        return labels
    return jnp.where(jax.random.uniform(key, labels.shape) < rate, num_classes, labels)


def make_batch_loss(model, loss_fn, config: ml_collections.ConfigDict):
    """batch_loss(params, batch, key) -> scalar mean of loss_fn over the batch (the training
    objective)."""
    num_classes = config.model.get("num_classes", 0) or 0

    def batch_loss(params, batch, key):
        dropout_key, loss_key, label_key = jax.random.split(key, 3)
        cond = {}
        if num_classes:
            cond["labels"] = drop_labels(
                label_key, batch["label"], config.training.label_dropout, num_classes
            )
        denoise = network_denoiser(
            model, params, config.precond, train=True, dropout_key=dropout_key
        )
        per_example = loss_fn(denoise, loss_key, batch["x"], **cond)
        chex.assert_shape(per_example, (batch["x"].shape[0],))
        return per_example.mean()

    return batch_loss


def accumulated_value_and_grad(batch_loss, accum_steps: int):
    """value_and_grad of batch_loss averaged over `accum_steps` micro-batches of one batch."""
    value_and_grad = jax.value_and_grad(batch_loss)
    if accum_steps == 1:
        return value_and_grad

    def split(x):
        micro = x.reshape(x.shape[0] // accum_steps, accum_steps, *x.shape[1:])
        return jnp.swapaxes(micro, 0, 1)

    def accumulated(params, batch, key):
        micro_batches = jax.tree.map(split, batch)
        keys = jax.random.split(key, accum_steps)

        def body(carry, inputs):
            loss_sum, grad_sum = carry
            loss, grads = value_and_grad(params, *inputs)
            return (loss_sum + loss, jax.tree.map(jnp.add, grad_sum, grads)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (loss_sum, grad_sum), _ = jax.lax.scan(body, (0.0, zeros), (micro_batches, keys))
        return loss_sum / accum_steps, jax.tree.map(lambda g: g / accum_steps, grad_sum)

    return accumulated


def make_train_step(model, loss_fn, optimizer, config: ml_collections.ConfigDict, mesh: Mesh):
    """train_step(state, batch, key) -> (state, metrics), jitted with explicit shardings on `mesh`.

    `batch` is {'x': [B, ...], 'label': [B]} sharded over 'data' (see batch_sharded); metrics are
    replicated scalars: loss, grad_norm (before clipping), update_norm and the EMA decay used.
    The input state is donated.
    """
    batch_size = config.training.batch_size
    value_and_grad = accumulated_value_and_grad(
        make_batch_loss(model, loss_fn, config), config.training.accum_steps
    )

    def train_step(state: TrainState, batch, key):
        loss, grads = value_and_grad(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        decay = ema_decay(config.ema, state.step, batch_size)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            ema_params=ema_update(state.ema_params, params, decay),
            opt_state=opt_state,
        )
        metrics = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "update_norm": optax.tree.norm(updates),
            "ema_decay": decay,
        }
        return new_state, metrics

    rep, data = replicated(mesh), batch_sharded(mesh)
    return jax.jit(
        train_step,
        in_shardings=(rep, data, rep),
        out_shardings=(rep, rep),
        donate_argnums=0,
    )


def init_state(model, optimizer, example_batch, key, mesh: Mesh, num_classes: int = 0):
    """The initial TrainState (params from model.init on one example), placed replicated on
    `mesh`."""
    x = jnp.zeros((1, *example_batch["x"].shape[1:]), jnp.float32)
    cond = {"labels": jnp.zeros((1,), jnp.int32)} if num_classes else {}

    @functools.partial(jax.jit, out_shardings=replicated(mesh))
    def init(key):
        params_key, dropout_key = jax.random.split(key)
        variables = model.init(
            {"params": params_key, "dropout": dropout_key}, x, jnp.zeros((1,)), train=False, **cond
        )
        return TrainState.create(variables["params"], optimizer)

    return init(key)


def put_batch(batch, mesh: Mesh):
    """This process's share of the global batch -> global arrays sharded over 'data'."""
    sharding = batch_sharded(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
