"""Continuous EDM diffusion on the Comm20 adjacency (GDSS-style), sampled with the core Heun solver.

x0 = upper triangle of A minus 1/2 (generative.graphs.continuous); EDM loss, preconditioning and
Karras noise levels from the core modules, unchanged. Fields are documented in
generative/graphs/experiment.py (default_config).
"""

from generative.graphs.experiment import default_config


def get_config():
    config = default_config()
    config.method = "continuous"
    config.data.name = "comm20"
    config.model.num_layers = 4
    config.model.hidden_nodes = 32
    config.model.hidden_edges = 16
    config.model.hidden_globals = 16
    config.model.ffn_nodes = 64
    config.model.ffn_edges = 32
    config.model.ffn_globals = 32
    config.continuous.loss.name = "edm"
    config.continuous.precondition = "edm"
    config.continuous.process.name = "edm"
    config.continuous.sampler = "heun"
    config.continuous.num_levels = 32
    config.train.steps = 20000
    config.train.time_limit_minutes = 25.0
    config.train.batch_size = 32
    config.train.learning_rate = 5e-4
    config.train.log_every = 100
    config.eval.num_samples = 64
    config.eval.kernel = "gaussian_emd"
    config.eval.descriptors = ("degree", "clustering", "orbit")
    return config
