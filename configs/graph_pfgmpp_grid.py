"""Continuous PFGM++ (D = 2048) diffusion on the grid adjacency, sampled with the core dpmpp_2m.

Grid graphs have 100-361 nodes, i.e. up to 65k node pairs per graph: an accelerator run. The
PFGM++ loss draws its perturbation from the PFGM++ kernel (generative.losses 'pfgmpp') and the
sampler starts from the PFGM++ prior at sigma_max; EDM's preconditioning and sampler are reused
unchanged (Xu et al. 2023). Fields: configs/base.py.
"""

from configs.graph_base import graph_config


def get_config():
    config = graph_config("graph_diffusion", "grid")
    config.model.update(num_layers=4, hidden_nodes=64, hidden_edges=16, hidden_globals=32)
    config.process.name = "pfgmpp"
    config.process.D = 2048.0
    config.task.loss.name = "pfgmpp"
    config.sample.sampler = config.eval.sampler = "dpmpp_2m"
    config.sample.steps = config.eval.steps = 40
    config.training.num_steps = 50000
    config.training.batch_size = 8
    config.eval.batch_size = 8
    return config
