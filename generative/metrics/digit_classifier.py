"""A small CNN digit classifier, trained by the project itself, whose features score digit samples.

Trained on the digits train split (generative.data.digits) from a seed alone: initial parameters
and minibatch order come from ``jax.random.key(seed)``; AdamW with a cosine decay, ``NUM_STEPS``
jit-compiled steps of ``BATCH_SIZE`` images. Each training image is shifted by up to one pixel at
random (padding with -1, the background), so the features also behave on generated digits that are
slightly off-centre. Training is bitwise reproducible on CPU; with seed 0 it reaches 98.6% test
accuracy (359 images), and 95% of the test images get a top-class probability above 0.9. Measured:
70 s, compilation included, on a 2-core container shared with ~15 busy processes.

The features are the ``FEATURE_DIM``-d penultimate activations (after ReLU), playing the role
Inception's pool3 plays for FID; the logits give class histograms and confidences of samples.
Trained parameters are cached as ``digit_classifier_seed{seed}_steps{num_steps}_{VERSION}.msgpack``
in ``cache_dir``; bump VERSION whenever the recipe changes.
"""

import functools
import math
import os
import tempfile
from collections.abc import Callable

import chex
import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from generative.data import digits

VERSION = "v2"
FEATURE_DIM = 64
NUM_STEPS = 800
BATCH_SIZE = 128
LEARNING_RATE = 2e-3
WEIGHT_DECAY = 1e-4


class DigitClassifier(nn.Module):
    """CNN on [B, 8, 8, 1] images in [-1, 1] -> (features [B, FEATURE_DIM], logits [B, 10])."""

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(64, (3, 3), strides=2)(x))  # 4 x 4
        x = nn.relu(nn.Conv(64, (3, 3))(x))
        features = nn.relu(nn.Dense(FEATURE_DIM)(x.reshape(x.shape[0], -1)))
        return features, nn.Dense(digits.NUM_CLASSES)(features)


def _check_images(images):
    if images.ndim != 4 or images.shape[1:] != digits.SHAPE:
        raise ValueError(f"images must be [B, 8, 8, 1] in [-1, 1], got shape {images.shape}")


@jax.jit
def _apply(params, images):
    return DigitClassifier().apply({"params": params}, images)


def apply_fn(params, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(features [B, FEATURE_DIM], logits [B, 10]) of images [B, 8, 8, 1] in [-1, 1]."""
    _check_images(images)
    return _apply(params, jnp.asarray(images, jnp.float32))


def digit_features(params, images: jax.Array) -> jax.Array:
    """Penultimate-layer features [B, FEATURE_DIM]."""
    return apply_fn(params, images)[0]


def digit_logits(params, images: jax.Array) -> jax.Array:
    """Class logits [B, 10]."""
    return apply_fn(params, images)[1]


def _random_shift(key, images):
    """Shifts each image by (dy, dx) in {-1, 0, 1}^2, padding with the background value -1."""
    padded = jnp.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-1.0)
    offsets = jax.random.randint(key, (images.shape[0], 2), 0, 3)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), digits.SHAPE)

    return jax.vmap(crop)(padded, offsets)


# AdamW (optax.adamw without its learning-rate scaling): the step takes the learning rate as an
# argument, so runs of any length share one compiled step.
_OPTIMIZER = optax.chain(optax.scale_by_adam(), optax.add_decayed_weights(WEIGHT_DECAY))


def learning_rate(step: int, num_steps: int) -> float:
    """Cosine decay from LEARNING_RATE to 0 over num_steps."""
    return LEARNING_RATE * 0.5 * (1.0 + math.cos(math.pi * step / num_steps))


@functools.partial(jax.jit, donate_argnums=(0, 1))
def _train_step(params, opt_state, key, step, lr, images, labels):
    batch_key, shift_key = jax.random.split(jax.random.fold_in(key, step))
    index = jax.random.choice(batch_key, labels.shape[0], (BATCH_SIZE,), replace=False)
    x = _random_shift(shift_key, images[index])

    def loss_fn(params):
        logits = DigitClassifier().apply({"params": params}, x)[1]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels[index]).mean()

    updates, opt_state = _OPTIMIZER.update(jax.grad(loss_fn)(params), opt_state, params)
    params = jax.tree.map(lambda p, u: p - lr * u, params, updates)
    return params, opt_state


def _train(key, images, labels, num_steps):
    # A Python loop over a jitted step: inside lax.scan / fori_loop, XLA:CPU computes convolution
    # weight gradients ~65x slower than at the top level (measured with jax 0.10.2).
    init_key, order_key = jax.random.split(key)
    params = DigitClassifier().init(init_key, images[:1])["params"]
    opt_state = _OPTIMIZER.init(params)
    for step in range(num_steps):
        lr = np.float32(learning_rate(step, num_steps))
        params, opt_state = _train_step(params, opt_state, order_key, step, lr, images, labels)
    return params


def _cache_path(cache_dir: str, seed: int, num_steps: int) -> str:
    name = f"digit_classifier_seed{seed}_steps{num_steps}_{VERSION}.msgpack"
    return os.path.join(cache_dir, name)


def train_digit_classifier(
    seed: int = 0, *, cache_dir: str | None = None, num_steps: int = NUM_STEPS
) -> tuple[Callable, dict]:
    """(apply_fn, params): trains on the digits train split, or loads the cached parameters.

    ``apply_fn(params, images) -> (features, logits)``. With ``cache_dir``, the parameters are
    read from / written (atomically) to ``_cache_path(cache_dir, seed, num_steps)``.
    """
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    images, labels = digits.load_split("train")
    path = _cache_path(cache_dir, seed, num_steps) if cache_dir is not None else None
    if path is not None and os.path.exists(path):
        template = DigitClassifier().init(jax.random.key(0), images[:1])["params"]
        with open(path, "rb") as f:
            params = flax.serialization.from_bytes(template, f.read())
        return apply_fn, params
    params = _train(jax.random.key(seed), jnp.asarray(images), jnp.asarray(labels), num_steps)
    params = jax.device_get(params)
    if path is not None:
        os.makedirs(cache_dir, exist_ok=True)
        with tempfile.NamedTemporaryFile("wb", dir=cache_dir, delete=False) as f:
            f.write(flax.serialization.to_bytes(params))
        os.replace(f.name, path)
    return apply_fn, params


def accuracy(params, split: str = "test") -> float:
    """Share of the split's images classified correctly."""
    images, labels = digits.load_split(split)
    predictions = np.argmax(np.asarray(digit_logits(params, images)), axis=1)
    chex.assert_equal_shape([predictions, labels])
    return float(np.mean(predictions == labels))
