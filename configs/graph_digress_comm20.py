"""DiGress on Comm20 (community-small), scored with the GDSS Gaussian-EMD kernels.

Fields are documented in generative/graphs/experiment.py (default_config). CPU-sized: a 4-layer,
32-wide transformer trained for at most 25 minutes on a 2-core CPU (DiGress itself uses 8 layers,
256 wide, and hours on a GPU); raise the widths and drop the time limit on an accelerator.
"""

from generative.graphs.experiment import default_config


def get_config():
    config = default_config()
    config.method = "digress"
    config.data.name = "comm20"
    config.model.num_layers = 4
    config.model.hidden_nodes = 32
    config.model.hidden_edges = 16
    config.model.hidden_globals = 16
    config.model.ffn_nodes = 64
    config.model.ffn_edges = 32
    config.model.ffn_globals = 32
    config.digress.num_steps = 500
    config.train.steps = 20000
    config.train.time_limit_minutes = 25.0
    config.train.batch_size = 32
    config.train.learning_rate = 5e-4
    config.train.log_every = 100
    config.eval.num_samples = 64
    config.eval.kernel = "gaussian_emd"
    config.eval.descriptors = ("degree", "clustering", "orbit")
    return config
