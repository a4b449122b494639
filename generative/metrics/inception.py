"""Inception-v3 as a feature extractor for FID / IS / KID, with weights from a local file.

The network is the FID variant of Inception-v3 (Szegedy et al. 2016) used by TTUR's TensorFlow FID
code and pytorch-fid: average pools in Mixed_5*, Mixed_6b-e and Mixed_7b exclude padding from their
counts, Mixed_7c pools with a max, the head has 1008 classes. Module and parameter names follow
torchvision's ``Inception3`` (``Conv2d_1a_3x3``, ``Mixed_5b/branch1x1``, ...), each ``BasicConv2d``
holding ``conv`` (no bias) and ``bn`` (eps 1e-3), so converting pytorch-fid's
``pt_inception-2015-12-05`` weights is a renaming plus transposing conv kernels from OIHW to HWIO.

Nothing is downloaded: ``load_variables(path)`` reads ``{'params': ..., 'batch_stats': ...}`` from
a ``.npz`` (keys are '/'-joined paths, e.g. ``params/Mixed_5b/branch1x1/conv/kernel``) or a
``.msgpack`` (flax.serialization) written by ``save_variables`` or by the user's own converter, and
checks every name and shape against the module.

Inputs are NHWC images in [-1, 1]; grayscale is repeated to RGB and, with ``resize=True``, images
are bilinearly resized to 299 x 299. Outputs: ``pool`` [B, 2048] (pool3, the FID features) and
``logits`` [B, 1008] (for the Inception score).
"""

import functools
import os
from collections.abc import Callable

import flax.linen as nn
import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

INPUT_SIZE = 299
MIN_INPUT_SIZE = 75
FEATURE_DIM = 2048
NUM_CLASSES = 1008


class BasicConv2d(nn.Module):
    features: int
    kernel: tuple[int, int]
    strides: int = 1
    padding: tuple[int, int] = (0, 0)

    @nn.compact
    def __call__(self, x):
        (ph, pw) = self.padding
        x = nn.Conv(
            self.features,
            self.kernel,
            self.strides,
            padding=((ph, ph), (pw, pw)),
            use_bias=False,
            name="conv",
        )(x)
        x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
        return nn.relu(x)


def _avg_pool_3x3(x):
    return nn.avg_pool(x, (3, 3), padding=((1, 1), (1, 1)), count_include_pad=False)


def _max_pool_3x3(x, strides=1, padding=((1, 1), (1, 1))):
    return nn.max_pool(x, (3, 3), strides=(strides, strides), padding=padding)


class InceptionA(nn.Module):
    pool_features: int

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
        b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
        b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
        b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
        b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
        bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b5, b3, bp], -1)


class InceptionB(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
        bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
        return jnp.concatenate([b3, bd, _max_pool_3x3(x, 2, "VALID")], -1)


class InceptionC(nn.Module):
    channels_7x7: int

    @nn.compact
    def __call__(self, x):
        c7 = self.channels_7x7
        b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
        b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
        b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
        bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
        bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
        bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
        bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
        return jnp.concatenate([b1, b7, bd, bp], -1)


class InceptionD(nn.Module):
    @nn.compact
    def __call__(self, x):
        b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
        b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
        b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
        b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
        b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
        b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
        return jnp.concatenate([b3, b7, _max_pool_3x3(x, 2, "VALID")], -1)


class InceptionE(nn.Module):
    max_pool: bool  # FID variant: Mixed_7b averages (without padding), Mixed_7c takes a max

    @nn.compact
    def __call__(self, x):
        b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
        b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
        b3 = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
                BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3),
            ],
            -1,
        )
        bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
        bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
        bd = jnp.concatenate(
            [
                BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
                BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd),
            ],
            -1,
        )
        pooled = _max_pool_3x3(x) if self.max_pool else _avg_pool_3x3(x)
        bp = BasicConv2d(192, (1, 1), name="branch_pool")(pooled)
        return jnp.concatenate([b1, b3, bd, bp], -1)


class InceptionV3(nn.Module):
    """FID Inception-v3: images [B, H, W, 1 or 3] in [-1, 1] -> dict(pool [B, 2048], logits)."""

    resize: bool = True
    num_classes: int = NUM_CLASSES

    @nn.compact
    def __call__(self, images):
        x = jnp.broadcast_to(images, (*images.shape[:3], 3)) if images.shape[-1] == 1 else images
        if self.resize:
            shape = (x.shape[0], INPUT_SIZE, INPUT_SIZE, 3)
            x = jax.image.resize(x, shape, "bilinear", antialias=False)
        x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)
        x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)
        x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
        x = _max_pool_3x3(x, 2, "VALID")
        x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
        x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)
        x = _max_pool_3x3(x, 2, "VALID")
        x = InceptionA(32, name="Mixed_5b")(x)
        x = InceptionA(64, name="Mixed_5c")(x)
        x = InceptionA(64, name="Mixed_5d")(x)
        x = InceptionB(name="Mixed_6a")(x)
        for name, channels in [("6b", 128), ("6c", 160), ("6d", 160), ("6e", 192)]:
            x = InceptionC(channels, name=f"Mixed_{name}")(x)
        x = InceptionD(name="Mixed_7a")(x)
        x = InceptionE(max_pool=False, name="Mixed_7b")(x)
        x = InceptionE(max_pool=True, name="Mixed_7c")(x)
        pool = jnp.mean(x, axis=(1, 2))
        return dict(pool=pool, logits=nn.Dense(self.num_classes, name="fc")(pool))


def _check_images(images, resize: bool):
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be NHWC with 1 or 3 channels, got shape {images.shape}")
    if not resize and min(images.shape[1:3]) < MIN_INPUT_SIZE:
        raise ValueError(
            f"without resizing, images must be at least {MIN_INPUT_SIZE} x {MIN_INPUT_SIZE}, "
            f"got {images.shape[1:3]}"
        )


def _template_input():
    return jnp.zeros((1, MIN_INPUT_SIZE, MIN_INPUT_SIZE, 3))


@functools.cache
def variable_shapes(num_classes: int = NUM_CLASSES) -> dict[str, tuple[int, ...]]:
    """{'/'-joined variable path: shape} of the module, without running it."""
    model = InceptionV3(resize=False, num_classes=num_classes)
    shapes = jax.eval_shape(model.init, jax.random.key(0), _template_input())
    return {k: tuple(v.shape) for k, v in _flatten(shapes).items()}


def random_variables(seed: int, *, num_classes: int = NUM_CLASSES) -> dict:
    """Random stand-in weights (He-normal kernels, identity BatchNorm), drawn with numpy.

    For tests and as a template for weight converters; ``InceptionV3().init`` would give the same
    structure but compiles slowly on CPU.
    """
    rng = np.random.default_rng(seed)
    flat = {}
    for path, shape in variable_shapes(num_classes).items():
        leaf = path.rsplit("/", 1)[-1]
        if leaf == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            flat[path] = (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        else:  # BatchNorm scale / var are 1, bias / mean are 0
            flat[path] = np.full(shape, float(leaf in ("scale", "var")), np.float32)
    return traverse_util.unflatten_dict(flat, sep="/")


def _flatten(variables) -> dict:
    """{'params/Mixed_5b/branch1x1/conv/kernel': leaf, ...}."""
    return traverse_util.flatten_dict(flax.core.unfreeze(variables), sep="/")


def save_variables(path: str, variables) -> None:
    """Writes variables to ``path`` (.npz or .msgpack), atomically."""
    tmp = f"{path}.tmp"
    if path.endswith(".npz"):
        with open(tmp, "wb") as f:
            np.savez(f, **{k: np.asarray(v) for k, v in _flatten(variables).items()})
    elif path.endswith(".msgpack"):
        with open(tmp, "wb") as f:
            f.write(flax.serialization.msgpack_serialize(jax.device_get(variables)))
    else:
        raise ValueError(f"path must end in .npz or .msgpack, got {path!r}")
    os.replace(tmp, path)


def load_variables(path: str, *, num_classes: int = NUM_CLASSES) -> dict:
    """Reads Inception variables from ``path`` (.npz or .msgpack) and checks names and shapes."""
    if not os.path.exists(path):
        raise ValueError(f"no Inception weights at {path!r} (supply a local .npz or .msgpack file)")
    if path.endswith(".npz"):
        with np.load(path) as archive:
            flat = {k: archive[k] for k in archive.files}
    elif path.endswith(".msgpack"):
        with open(path, "rb") as f:
            flat = _flatten(flax.serialization.msgpack_restore(f.read()))
    else:
        raise ValueError(f"path must end in .npz or .msgpack, got {path!r}")
    expected = variable_shapes(num_classes)
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    wrong = sorted(k for k in set(expected) & set(flat) if tuple(flat[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise ValueError(
            f"Inception weights in {path!r} do not match the module: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, wrong shapes {[(k, flat[k].shape) for k in wrong[:5]]}"
        )
    return traverse_util.unflatten_dict({k: np.asarray(v) for k, v in flat.items()}, sep="/")


@functools.partial(jax.jit, static_argnames=("resize", "num_classes"))
def _apply(variables, images, resize, num_classes):
    return InceptionV3(resize=resize, num_classes=num_classes).apply(variables, images)


def apply(variables, images: jax.Array, *, resize: bool = True) -> dict[str, jax.Array]:
    """dict(pool [B, 2048], logits [B, num_classes]) of images NHWC in [-1, 1]."""
    _check_images(images, resize)
    num_classes = variables["params"]["fc"]["bias"].shape[0]
    return _apply(variables, jnp.asarray(images, jnp.float32), resize, num_classes)


def feature_fn(variables, *, resize: bool = True) -> Callable[[jax.Array], jax.Array]:
    """images -> pool3 features [B, 2048], for generative.metrics.frechet.extract_features."""
    return lambda images: apply(variables, images, resize=resize)["pool"]
