"""The train state: everything a resumed run needs, as one pytree, organised by parameter group."""

import flax.struct
import jax
import jax.numpy as jnp


class TrainState(flax.struct.PyTreeNode):
    """step: optimiser steps taken (int32 scalar); params: {group: float32 parameters} of the
    trainable groups; frozen: {group: parameters} of the frozen ones (never differentiated, kept so
    a checkpoint is self-contained); ema: {group: {name: moving average}}; opt_state: {group: optax
    state}.

    Randomness is not stored: step k draws its key as jax.random.fold_in(root_key, k), so a resumed
    run repeats the uninterrupted one exactly.
    """

    step: jax.Array
    params: dict
    frozen: dict
    ema: dict
    opt_state: dict

    @classmethod
    def create(cls, groups: dict, optimizers: dict, emas: dict) -> "TrainState":
        """A fresh state at step 0: the groups with an optimiser are trainable, the rest frozen;
        every EMA of emas[group] starts at the group's initial parameters."""
        params = {name: p for name, p in groups.items() if name in optimizers}
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            frozen={name: p for name, p in groups.items() if name not in optimizers},
            ema={
                group: {name: jax.tree.map(jnp.copy, params[group]) for name in rules}
                for group, rules in emas.items()
            },
            opt_state={name: optimizers[name].init(p) for name, p in params.items()},
        )

    def frozen_view(self) -> dict:
        """What a loss reads without differentiating: frozen groups, EMAs as '<group>.<name>',
        and the optimiser step as 'step'."""
        view = dict(self.frozen)
        for group, averages in self.ema.items():
            for name, average in averages.items():
                view[f"{group}.{name}"] = average
        view["step"] = self.step
        return view

    def sampling_params(self) -> dict:
        """The weights to sample from: each trainable group's 'ema' (or the raw parameters when it
        has none) and the frozen groups."""
        out = dict(self.frozen)
        for group, params in self.params.items():
            out[group] = self.ema.get(group, {}).get("ema", params)
        return out
