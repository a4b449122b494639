"""Flax Linen denoisers: MLP (low-dimensional data), UNet (DDPM++/NCSN++) and DiT (adaLN-Zero).

Every model is a raw network in EDM's sense, called as

    model.apply(variables, x_in, c_noise, labels=None, train=False, rngs={'dropout': key})

returning an array like x_in,

with c_noise float [B] (the preconditioning's noise input) and labels int32 [B] or None; label value
num_classes means "no label" (the classifier-free guidance null class) and labels=None on a
conditional model means "no label" for the whole batch. num_classes=0 makes the model unconditional
(labels must be None).

Models are built from an ml_collections ConfigDict with ``name`` in {'mlp', 'unet', 'dit'} plus
every field the model's module docstring lists; start from ``default_config(name)`` and override:

    config = default_config('unet'); config.num_classes = 10; model = create_model(config)
"""

import dataclasses

import ml_collections

from generative.models.dit import DiT
from generative.models.mlp import MLP
from generative.models.unet import UNet, ddpmpp_cifar10_config

MODELS = {"mlp": MLP, "unet": UNet, "dit": DiT}


def _fields(module_class):
    """The configurable fields of a model class with their defaults (not Flax's parent, name)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(module_class)
        if f.name not in ("parent", "name") and f.init
    }


def _model_class(name):
    if name not in MODELS:
        raise ValueError(f"unknown model name {name!r}; known models: {sorted(MODELS)}")
    return MODELS[name]


def default_config(name):
    """A complete ConfigDict for model ``name`` with the module's defaults (sized for digits)."""
    return ml_collections.ConfigDict(dict(name=name, **_fields(_model_class(name))))


def create_model(model_config):
    """Build the Flax module described by ``model_config`` (see the module docstring).

    Raises ValueError, before anything is traced, for an unknown name, a missing or unknown field,
    or an invalid value.
    """
    if "name" not in model_config:
        raise ValueError(f"model config has no 'name' field; expected one of {sorted(MODELS)}")
    name = model_config.name
    fields = _fields(_model_class(name))
    given = {key: value for key, value in model_config.items() if key != "name"}
    missing = sorted(set(fields) - set(given))
    unknown = sorted(set(given) - set(fields))
    if missing or unknown:
        raise ValueError(
            f"model config for {name!r}: missing fields {missing}, unknown fields {unknown}; "
            f"expected exactly {sorted(fields)} "
            f"(start from generative.models.default_config({name!r}))"
        )
    return MODELS[name](**given)


__all__ = [
    "DiT",
    "MLP",
    "MODELS",
    "UNet",
    "create_model",
    "ddpmpp_cifar10_config",
    "default_config",
]
