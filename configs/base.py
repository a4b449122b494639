"""The one config schema of every run; every field is documented here, once.

Every config file's get_config() starts from base_config(...) (directly, or through
configs/graph_base.py) and overrides what differs. On the command line any field can be overridden,
e.g. `--config.optim.lr=2e-4 --config.training.num_steps=10`; an unknown field fails in one line.

seed              root of every random stream: parameters, data order, noise, samples.
data.*            the data set: for images and points generative.data.create_dataset's config (name
                  in moons, swiss_roll, eight_gaussians, checkerboard, digits, tfds + tfds_name,
                  random_flip, data_dir); for graphs generative.graphs.datasets (name in comm20,
                  grid, sbm, planar, lobster, tree, mixture; max_nodes: pad to this many nodes, 0 =
                  the largest graph, larger graphs are dropped).
model.*           the network: generative.models.default_config(name) (MLP / UNet / DiT) for
                  images and points; the graph transformer's widths for graphs.
process.*         the noise process and the one owner of its constants (generative.processes):
                  name in edm, pfgmpp, vp, subvp, ve, flow; sigma_data (edm, pfgmpp), sigma_min and
                  sigma_max (the training and sampling range), D (pfgmpp), beta_min, beta_max, eps
                  (vp). Preconditioning, loss, noise levels and the prior all read it.
task.name         the method (generative.training.task.TASKS): 'diffusion' (images, points),
                  'digress' (discrete graph diffusion), 'graph_diffusion' (continuous adjacency
                  diffusion), 'ct', 'ict', 'cd', 'ect', 'sct', 'scd' (consistency models; their
                  task.* fields and sample.consistency_levels: configs/consistency_base.py).
                  The other task.* fields belong to the method:
task.precond.*    (diffusion, graph_diffusion) preconditioning: name in edm, pfgmpp, vp, iddpm, ve,
                  flow (generative.preconditioning) + its own options (M for vp/iddpm).
task.loss.*       (diffusion, graph_diffusion) generative.losses.make_loss: name in edm, pfgmpp,
                  dsm, flow_matching + its options (p_mean, p_std, weighting, eps, reduce, ...).
task.num_steps, task.transition, task.edge_weight, task.vlb_samples   (digress) see
                  generative/graphs/tasks.py.
task.condition, task.degree_scale   (graphs) condition on domain, average degree and clustering.
optim.name        'adam' or 'adamw' (one optimiser per trainable parameter group).
optim.lr          peak learning rate, reached after optim.warmup_steps (linear warm-up).
optim.b1, b2, eps Adam's moment decays and epsilon.
optim.weight_decay  AdamW's decoupled weight decay (ignored by 'adam').
optim.decay       after warm-up: 'constant' (EDM) or 'cosine' (to 0 at training.num_steps).
optim.grad_clip   global-norm gradient clipping threshold; 0 turns clipping off.
ema.kind          'halflife' (EDM: half-life in images with ramp-up) or 'fixed' (constant decay):
                  the sampling EMA of every trainable group (generative.training.ema).
ema.decay         the fixed decay (ema.kind 'fixed').
ema.halflife_images  the EMA's half-life in training images (ema.kind 'halflife').
ema.rampup_ratio  half-life <= rampup_ratio * images seen so far; 0 disables the ramp-up.
training.batch_size   global batch (all devices and hosts); divisible by accum_steps * device count.
training.num_steps    optimiser steps.
training.accum_steps  micro-batches per step (gradient accumulation; 1 = none).
training.cond_dropout probability of replacing an example's condition (class label, graph
                      condition) by the null condition: trains the unconditional model that
                      classifier-free guidance needs (generative.guidance).
training.log_every    steps between JSON-lines / TensorBoard records of the train metrics (with
                      steps_per_sec and examples_per_sec over the steps since the last record).
training.sample_every steps between PNG pictures of EMA samples (samples_<step>.png).
training.eval_every   steps between evaluations (eval.*) logged as kind 'eval'.
training.checkpoint_every  steps between orbax checkpoints (also on SIGTERM and Ctrl-C).
                      For these four periods: > 0 also at the last step, 0 only at the last step,
                      < 0 never.
training.keep_checkpoints  checkpoints kept (the newest ones).
training.num_grid_samples  samples in each PNG picture.
training.time_limit_minutes  stop training (checkpoint, then the final evaluation) after this wall
                      time; 0 = no limit.
training.init_from    '' or the workdir of another run: its parameter groups of the same name and
                      shapes initialise this run (fine-tuning); the others stay fresh.
training.init_from_ema  initialise those groups (and their EMAs) from the other run's sampling
                      EMA 'ema' instead of its online weights (ECT starts from the EMA).
training.tensorboard  also write TensorBoard summaries (needs `pip install tensorflow tensorboard`;
                      off by default, metrics.jsonl and curves.png are always written).
training.on_nonfinite 'stop': a NaN/inf loss or gradient norm at a logged step, or a non-finite
                      state at a checkpoint, stops the run (exit 1) and keeps the last good
                      checkpoint; 'skip': updates with a non-finite gradient are skipped (counted as
                      skipped_updates) until max_nonfinite_in_a_row in a row stop the run.
training.max_nonfinite_in_a_row  see on_nonfinite='skip'.
sample.sampler    core sampler (generative.samplers, or euler_maruyama / predictor_corrector) for
                  the PNG pictures and experiments/sample.py.
sample.steps      number of noise levels (SDE samplers: steps).
sample.schedule   noise-level schedule (generative.schedules.get_schedule): karras, exponential,
                  vp, ... over the process's range.
sample.schedule_options  the schedule's own keyword arguments (rho for karras); the range comes
                  from config.process.
sample.guidance   classifier-free guidance weight w of D_null + w (D_cond - D_null): 1 = plain
                  conditional, 0 = unconditional, > 1 guided.
eval.num_samples  samples scored by each evaluation (0 for graphs: as many as the test set has).
eval.sampler, eval.steps  sampler and number of levels used for those samples.
eval.batch_size   samples per sampler call.
eval.evaluators   names in generative.training.evaluation.EVALUATORS: digits, points, graph_mmd,
                  graph_vun, digress_nll, graph_conditional.
eval.kernel, eval.descriptors, eval.validity   (graphs) MMD kernel ('gaussian_emd' of
                  GraphRNN/GDSS, 'gaussian_tv' of GRAN/DiGress), descriptors, and '' / 'planar' /
                  'sbm' for V.U.N.
"""

import ml_collections

from generative.models import default_config

DEFAULT_EVALUATORS = {"digits": ("digits",), "tfds": ()}


def base_config(data_name: str, model_name: str) -> ml_collections.ConfigDict:
    """EDM on `data_name` with the default `model_name` network; small budgets, to be overridden."""
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.data = ml_collections.ConfigDict({"name": data_name})
    config.model = default_config(model_name)
    config.process = ml_collections.ConfigDict(
        {"name": "edm", "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}
    )
    config.task = ml_collections.ConfigDict(
        {
            "name": "diffusion",
            "precond": {"name": "edm"},
            "loss": {"name": "edm", "p_mean": -1.2, "p_std": 1.2},
        }
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
            "cond_dropout": 0.0,
            "log_every": 50,
            "sample_every": 500,
            "eval_every": 0,
            "checkpoint_every": 500,
            "keep_checkpoints": 3,
            "num_grid_samples": 64,
            "time_limit_minutes": 0.0,
            "init_from": "",
            "init_from_ema": False,
            "tensorboard": False,
            "on_nonfinite": "stop",
            "max_nonfinite_in_a_row": 100,
        }
    )
    config.sample = ml_collections.ConfigDict(
        {
            "sampler": "heun",
            "steps": 18,
            "schedule": "karras",
            "schedule_options": {"rho": 7.0},
            "guidance": 1.0,
        }
    )
    config.eval = ml_collections.ConfigDict(
        {
            "num_samples": 1000,
            "sampler": "heun",
            "steps": 18,
            "batch_size": 250,
            "evaluators": DEFAULT_EVALUATORS.get(data_name, ("points",)),
        }
    )
    return config
