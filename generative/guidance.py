"""Classifier-free guidance (Ho & Salimans 2022) as transforms from denoisers to a denoiser, and the
condition dropout that trains the unconditional model.

One convention everywhere (images, graphs, discrete and continuous):

    D_w(x, sigma) = D(x, sigma | null) + w (D(x, sigma | c) - D(x, sigma | null)),

so w = 1 is plain conditional sampling, w = 0 unconditional and w > 1 guided. For categorical
x-predictions (DiGress) the same mixture acts on log-probabilities,

    log p_w(x0 | z_t) = log p(x0 | z_t, null) + w (log p(x0 | z_t, c) - log p(x0 | z_t, null)),

renormalised by the softmax that follows. The conditional and unconditional calls share one network
evaluation on a doubled batch. `cond` and `null` are keyword arguments of the denoiser (pytrees with
the batch on axis 0, e.g. {'labels': labels} and {'labels': full_like(labels, num_classes)}).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp


def _twice(tree):
    return jax.tree.map(lambda a: jnp.concatenate([a, a]), tree)


def _halves(tree, batch: int):
    return jax.tree.map(lambda a: a[:batch], tree), jax.tree.map(lambda a: a[batch:], tree)


def _paired_call(fn, args, cond: dict, null: dict, batch: int):
    """fn(*args, **cond) and fn(*args, **null) from one call on the doubled batch."""
    both = jax.tree.map(lambda c, n: jnp.concatenate([c, n]), cond, null)
    return _halves(fn(*_twice(args), **both), batch)


def _check_weight(w) -> None:
    if isinstance(w, int | float) and w < 0:
        raise ValueError(f"guidance weight w must be >= 0 (1 = conditional), got {w}")


def classifier_free(denoise: Callable, w, *, cond: dict, null: dict) -> Callable:
    """denoise(x, sigma, **cond) -> guided(x, sigma) = D_null + w (D_cond - D_null).

    w = 1 and w = 0 (as Python numbers) call the network once, on the conditional or the null
    input; any other w (also a traced one) evaluates both halves of a doubled batch.
    """
    _check_weight(w)
    if isinstance(w, int | float) and w == 1:
        return lambda x, sigma: denoise(x, sigma, **cond)
    if isinstance(w, int | float) and w == 0:
        return lambda x, sigma: denoise(x, sigma, **null)

    def guided(x, sigma):
        sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
        conditional, unconditional = _paired_call(denoise, (x, sigma), cond, null, x.shape[0])
        return unconditional + w * (conditional - unconditional)

    return guided


def classifier_free_logits(logits_fn: Callable, w, *, cond: dict, null: dict) -> Callable:
    """logits_fn(*args, **cond) -> tuple of logits becomes guided(*args) -> tuple of guided
    log-probabilities (module docstring); every positional argument carries the batch on axis 0."""
    _check_weight(w)
    if isinstance(w, int | float) and w == 1:
        return lambda *args: logits_fn(*args, **cond)
    if isinstance(w, int | float) and w == 0:
        return lambda *args: logits_fn(*args, **null)

    def guided(*args):
        batch = jax.tree.leaves(args)[0].shape[0]
        conditional, unconditional = _paired_call(logits_fn, args, cond, null, batch)
        return jax.tree.map(
            lambda c, u: (
                jax.nn.log_softmax(u) + w * (jax.nn.log_softmax(c) - jax.nn.log_softmax(u))
            ),
            conditional,
            unconditional,
        )

    return guided


def drop_condition(key, cond, null, rate: float):
    """Each example's condition (every leaf of the pytree `cond`, batch on axis 0) is replaced by
    the null condition `null` (same structure and shapes) with probability `rate`."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"condition dropout rate must be in [0, 1), got {rate}")
    if rate == 0:
        return cond
    batch = jax.tree.leaves(cond)[0].shape[0]
    dropped = jax.random.uniform(key, (batch,)) < rate

    def choose(c, n):
        mask = dropped.reshape((batch,) + (1,) * (c.ndim - 1))
        return jnp.where(mask, n, c)

    return jax.tree.map(choose, cond, null)
