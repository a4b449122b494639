"""The train state: everything a resumed run needs, as one pytree."""

import flax.struct
import jax
import optax


class TrainState(flax.struct.PyTreeNode):
    """step: optimiser steps taken (int32 scalar); params: float32 network parameters; ema_params:
    their exponential moving average (what we sample from); opt_state: the optax state.

    Randomness is not stored: step k draws its key as jax.random.fold_in(root_key, k), so a resumed
    run repeats the uninterrupted one exactly.
    """

    step: jax.Array
    params: flax.core.FrozenDict | dict
    ema_params: flax.core.FrozenDict | dict
    opt_state: optax.OptState

    @classmethod
    def create(cls, params, optimizer: optax.GradientTransformation) -> "TrainState":
        """A fresh state at step 0 whose EMA starts at the initial parameters."""
        return cls(
            step=jax.numpy.zeros((), jax.numpy.int32),
            params=params,
            ema_params=jax.tree.map(lambda p: p.copy(), params),
            opt_state=optimizer.init(params),
        )
