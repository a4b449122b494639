"""DiGress on SPECTRE SBM graphs (2-5 blocks of 20-40 nodes, 128/32/40 split), scored as DiGress.

Gaussian-TV kernels on degree, clustering, orbit and spectrum, plus V.U.N. with the block-model
test. Fields are documented in generative/graphs/experiment.py (default_config). `data.max_nodes`
80 keeps the graphs of at most 80 nodes (2-3 blocks) so the run fits a CPU; set it to 0 (the full
data, up to 200 nodes) and widen the model (8 layers, 256/64/64) on an accelerator.
"""

from generative.graphs.experiment import default_config


def get_config():
    config = default_config()
    config.method = "digress"
    config.data.name = "sbm"
    config.data.max_nodes = 80
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
    config.train.batch_size = 8
    config.train.learning_rate = 5e-4
    config.train.log_every = 50
    config.eval.num_samples = 40
    config.eval.batch_size = 20
    config.eval.kernel = "gaussian_tv"
    config.eval.descriptors = ("degree", "clustering", "orbit", "spectral")
    config.eval.validity = "sbm"
    return config
