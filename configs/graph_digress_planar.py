"""DiGress on SPECTRE planar graphs (64 nodes, 128/32/40 split), scored as DiGress does.

GRAN/DiGress Gaussian-TV kernels on degree, clustering, orbit and spectrum, plus V.U.N. with the
planarity test. Fields are documented in generative/graphs/experiment.py (default_config). The
widths are DiGress's smaller CPU-feasible cousin; on an accelerator use num_layers 8,
hidden_nodes 256, hidden_edges 64, hidden_globals 64 and train without a time limit.
"""

from generative.graphs.experiment import default_config


def get_config():
    config = default_config()
    config.method = "digress"
    config.data.name = "planar"
    config.model.num_layers = 4
    config.model.hidden_nodes = 32
    config.model.hidden_edges = 16
    config.model.hidden_globals = 16
    config.model.ffn_nodes = 64
    config.model.ffn_edges = 32
    config.model.ffn_globals = 32
    config.digress.num_steps = 100  # DiGress: 1000; 100 keeps CPU sampling to minutes
    config.digress.vlb_samples = 4
    config.train.steps = 20000
    config.train.time_limit_minutes = 20.0
    config.train.batch_size = 16
    config.train.learning_rate = 5e-4
    config.train.log_every = 50
    config.eval.num_samples = 40
    config.eval.batch_size = 20
    config.eval.kernel = "gaussian_tv"
    config.eval.descriptors = ("degree", "clustering", "orbit", "spectral")
    config.eval.validity = "planar"
    return config
