"""Continuous PFGM++ (D = 2048) diffusion on the grid adjacency, sampled with the core dpmpp_2m.

Grid graphs have 100-361 nodes, i.e. up to 65k node pairs per graph: an accelerator run. The
PFGM++ loss draws its perturbation from the PFGM++ kernel (generative.losses 'pfgmpp') and the
sampler starts from the PFGM++ prior at sigma_max; EDM's preconditioning and sampler are reused
unchanged (Xu et al. 2023). Fields are documented in generative/graphs/experiment.py.
"""

from generative.graphs.experiment import default_config


def get_config():
    config = default_config()
    config.method = "continuous"
    config.data.name = "grid"
    config.model.num_layers = 4
    config.model.hidden_nodes = 64
    config.model.hidden_edges = 16
    config.model.hidden_globals = 32
    config.continuous.loss.name = "pfgmpp"
    config.continuous.loss.D = 2048
    config.continuous.precondition = "edm"
    config.continuous.process.name = "pfgmpp"
    config.continuous.process.D = 2048
    config.continuous.sampler = "dpmpp_2m"
    config.continuous.num_levels = 40
    config.train.steps = 50000
    config.train.batch_size = 8
    config.train.learning_rate = 2e-4
    config.eval.batch_size = 8
    config.eval.kernel = "gaussian_emd"
    config.eval.descriptors = ("degree", "clustering", "orbit")
    return config
