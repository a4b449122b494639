"""Continuous PFGM++ (D = 128) diffusion on the Comm20 adjacency, sampled with the core dpmpp_2m.

configs/graph_edm_comm20.py with the PFGM++ process in place of EDM's: the loss perturbs with the
PFGM++ kernel (generative.losses 'pfgmpp') and sampling starts from the PFGM++ prior at
sigma_max. D = 128 is the heavy-tailed setting Xu et al. (2023) found most robust; D -> inf
recovers the EDM config. The CPU-sized counterpart of configs/graph_pfgmpp_grid.py. Fields are
documented in generative/graphs/experiment.py (default_config).
"""

from configs import graph_edm_comm20


def get_config():
    config = graph_edm_comm20.get_config()
    config.continuous.loss.name = "pfgmpp"
    config.continuous.loss.D = 128
    config.continuous.process.name = "pfgmpp"
    config.continuous.process.D = 128
    config.continuous.sampler = "dpmpp_2m"
    config.continuous.num_levels = 40
    return config
