"""DiGress on SPECTRE planar graphs (64 nodes, 128/32/40 split), scored as DiGress does.

GRAN/DiGress Gaussian-TV kernels on degree, clustering, orbit and spectrum, plus V.U.N. with the
planarity test. Shared settings: configs/graph_base.py. The
widths are DiGress's smaller CPU-feasible cousin; on an accelerator use num_layers 8,
hidden_nodes 256, hidden_edges 64, hidden_globals 64 and train without a time limit.
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("digress", "planar")
    config.task.num_steps = 100  # DiGress: 1000; 100 keeps CPU sampling to minutes
    config.task.vlb_samples = 4
    config.training.time_limit_minutes = 20.0
    config.training.batch_size = 16
    config.training.log_every = 50
    config.eval.num_samples = 40
    config.eval.batch_size = 20
    config.eval.kernel = "gaussian_tv"
    config.eval.descriptors = ("degree", "clustering", "orbit", "spectral")
    config.eval.evaluators = ("graph_mmd", "graph_vun", "digress_nll")
    config.eval.validity = "planar"
    return config
