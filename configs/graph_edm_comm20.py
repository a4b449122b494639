"""Continuous EDM diffusion on the Comm20 adjacency (GDSS-style), sampled with the core Heun solver.

x0 = upper triangle of A minus 1/2 (generative.graphs.continuous); EDM loss, preconditioning and
Karras noise levels from the core modules, unchanged. Fields are documented in
generative/graphs/experiment.py (default_config).
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("continuous", "comm20")
    config.continuous.loss.name = "edm"
    config.continuous.precondition = "edm"
    config.continuous.process.name = "edm"
    config.continuous.sampler = "heun"
    config.continuous.num_levels = 32
    config.train.time_limit_minutes = 25.0
    config.train.batch_size = 32
    config.eval.num_samples = 64
    return config
