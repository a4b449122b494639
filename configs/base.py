"""Shared defaults of the diffusion experiment configs; every field is documented here, once.

A config file's get_config() starts from base_config(data_name, model_name) and overrides what
differs. On the command line any field can be overridden, e.g. `--config.optim.lr=2e-4
--config.training.num_steps=10`.

experiment        'diffusion' (experiments/train.py runs generative.training.loop.train; 'graph'
                  configs go to generative.graphs.experiment.run instead).
seed              root of every random stream: parameters, data order, noise, samples.
tensorboard       write TensorBoard summaries too (needs the optional `tensorboard` package).
data.*            generative.data.create_dataset's config: name in moons, swiss_roll,
                  eight_gaussians, checkerboard, digits, tfds (+ tfds_name, random_flip, data_dir).
model.*           generative.models.default_config(name) fields (MLP / UNet / DiT; see their
                  docstrings).
precond.kind      preconditioning of the raw network (generative.preconditioning): edm, vp, ve,
                  iddpm, pfgmpp; the other precond fields (e.g. sigma_data) are passed to it.
loss.*            generative.losses.make_loss's config: name in edm, pfgmpp, dsm, flow_matching +
                  its fields.
optim.name        'adam' or 'adamw'.
optim.lr          peak learning rate, reached after optim.warmup_steps (linear warm-up).
optim.b1, b2, eps Adam's moment decays and epsilon.
optim.weight_decay  AdamW's decoupled weight decay (ignored by 'adam').
optim.decay       after warm-up: 'constant' (EDM) or 'cosine' (to 0 at training.num_steps).
optim.grad_clip   global-norm gradient clipping threshold; 0 turns clipping off.
ema.kind          'halflife' (EDM: half-life in images with ramp-up) or 'fixed' (constant decay).
ema.decay         the fixed decay (ema.kind 'fixed').
ema.halflife_images  the EMA's half-life in training images (ema.kind 'halflife').
ema.rampup_ratio  half-life <= rampup_ratio * images seen so far; 0 disables the ramp-up.
training.batch_size   global batch (all devices and hosts); divisible by accum_steps * device count.
training.num_steps    optimiser steps.
training.accum_steps  micro-batches per step (gradient accumulation; 1 = none).
training.label_dropout  probability of replacing a label by the null class (classifier-free
                        guidance).
training.log_every    steps between JSON-lines / TensorBoard records of the train metrics (with
                      steps_per_sec and images_per_sec over the steps since the last record).
training.sample_every steps between PNG grids of EMA samples (samples_<step>.png in the workdir).
training.eval_every   steps between evaluations (eval.*) logged as kind 'eval'.
training.checkpoint_every  steps between orbax checkpoints (also on SIGTERM).
                      For these four periods: > 0 also at the last step, 0 only at the last step,
                      < 0 never.
training.keep_checkpoints  checkpoints kept (the newest ones).
training.num_grid_samples  samples in each PNG grid.
sample.sampler    core sampler (generative.samplers.get_sampler) for the PNG grids and
                  experiments/sample.py.
sample.steps      number of noise levels.
sample.schedule   noise-level schedule (generative.schedules.get_schedule): karras, exponential, ...
sample.schedule_options  keyword arguments of that schedule (sigma_min, sigma_max, rho for karras).
sample.guidance   classifier-free guidance weight w (1 = plain conditional sampling).
eval.num_samples  samples scored by each evaluation (generative.training.evaluation).
eval.sampler, eval.steps  sampler and number of levels used for those samples.
"""

import ml_collections

from generative.models import default_config


def base_config(data_name: str, model_name: str) -> ml_collections.ConfigDict:
    """EDM on `data_name` with the default `model_name` network; small budgets, to be overridden."""
    config = ml_collections.ConfigDict()
    config.experiment = "diffusion"
    config.seed = 0
    config.tensorboard = True
    config.data = ml_collections.ConfigDict({"name": data_name})
    config.model = default_config(model_name)
    config.precond = ml_collections.ConfigDict({"kind": "edm", "sigma_data": 0.5})
    config.loss = ml_collections.ConfigDict(
        {"name": "edm", "p_mean": -1.2, "p_std": 1.2, "sigma_data": 0.5}
    )
    config.optim = ml_collections.ConfigDict(
        {
            "name": "adam",
            "lr": 1e-3,
            "b1": 0.9,
            "b2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
            "warmup_steps": 200,
            "decay": "constant",
            "grad_clip": 0.0,
        }
    )
    config.ema = ml_collections.ConfigDict(
        {"kind": "halflife", "decay": 0.999, "halflife_images": 20_000.0, "rampup_ratio": 0.05}
    )
    config.training = ml_collections.ConfigDict(
        {
            "batch_size": 128,
            "num_steps": 2000,
            "accum_steps": 1,
            "label_dropout": 0.0,
            "log_every": 50,
            "sample_every": 500,
            "eval_every": 0,
            "checkpoint_every": 500,
            "keep_checkpoints": 3,
            "num_grid_samples": 64,
        }
    )
    config.sample = ml_collections.ConfigDict(
        {
            "sampler": "heun",
            "steps": 18,
            "schedule": "karras",
            "schedule_options": {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0},
            "guidance": 1.0,
        }
    )
    config.eval = ml_collections.ConfigDict({"num_samples": 1000, "sampler": "heun", "steps": 18})
    return config
