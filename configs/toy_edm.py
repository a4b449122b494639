"""EDM on a 2-D toy set (two moons by default; `--config.data.name=checkerboard` etc.) with the
residual MLP.

Trains in about a minute on a CPU; evaluated with the sliced Wasserstein distance and MMD against a
fresh draw (generative.training.evaluation). Fields: base.py.
"""

from configs.base import base_config


def get_config():
    config = base_config("moons", "mlp")
    config.optim.lr = 1e-3
    config.training.batch_size = 256
    config.training.num_steps = 3000
    config.training.sample_every = 1000
    config.training.checkpoint_every = 1000
    config.training.eval_every = 1000
    config.eval.num_samples = 2000
    return config
