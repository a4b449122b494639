"""Continuous EDM diffusion on the Comm20 adjacency (GDSS-style), sampled with the core Heun solver.

x0 = upper triangle of A minus 1/2 (generative.graphs.continuous); EDM loss, preconditioning and
Karras noise levels (32) from the core modules, unchanged. Fields: configs/base.py.
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("graph_diffusion", "comm20")
    config.sample.sampler = config.eval.sampler = "heun"
    config.sample.steps = config.eval.steps = 32
    config.training.time_limit_minutes = 25.0
    config.training.batch_size = 32
    config.eval.num_samples = 64
    return config
