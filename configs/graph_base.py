"""Shared starting point of the CPU-sized graph configs (fields: generative/graphs/experiment.py).

cpu_config(method, data_name) is default_config() with the small graph transformer every CPU run
uses (4 layers; node/edge/global widths 32/16/16; FFN widths 64/32/32), Adam at 5e-4 and the
GDSS-style Gaussian-EMD evaluation on degree, clustering and orbits. Configs override what differs.
"""

from generative.graphs.experiment import default_config


def cpu_config(method: str, data_name: str):
    config = default_config()
    config.method = method
    config.data.name = data_name
    config.model.num_layers = 4
    config.model.hidden_nodes = 32
    config.model.hidden_edges = 16
    config.model.hidden_globals = 16
    config.model.ffn_nodes = 64
    config.model.ffn_edges = 32
    config.model.ffn_globals = 32
    config.train.steps = 20000
    config.train.learning_rate = 5e-4
    config.train.log_every = 100
    config.eval.kernel = "gaussian_emd"
    config.eval.descriptors = ("degree", "clustering", "orbit")
    return config
