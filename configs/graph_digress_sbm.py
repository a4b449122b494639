"""DiGress on SPECTRE SBM graphs (2-5 blocks of 20-40 nodes, 128/32/40 split), scored as DiGress.

Gaussian-TV kernels on degree, clustering, orbit and spectrum, plus V.U.N. with the block-model
test. Shared settings: configs/graph_base.py. `data.max_nodes`
80 keeps the graphs of at most 80 nodes (2-3 blocks) so the run fits a CPU; set it to 0 (the full
data, up to 200 nodes) and widen the model (8 layers, 256/64/64) on an accelerator.
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("digress", "sbm")
    config.data.max_nodes = 80
    config.task.num_steps = 100  # DiGress: 1000; 100 keeps CPU sampling to minutes
    config.task.vlb_samples = 4
    config.training.time_limit_minutes = 20.0
    config.training.batch_size = 8
    config.training.log_every = 50
    config.eval.num_samples = 40
    config.eval.batch_size = 20
    config.eval.kernel = "gaussian_tv"
    config.eval.descriptors = ("degree", "clustering", "orbit", "spectral")
    config.eval.evaluators = ("graph_mmd", "graph_vun", "digress_nll")
    config.eval.validity = "sbm"
    return config
