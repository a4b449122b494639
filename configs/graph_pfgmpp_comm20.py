"""Continuous PFGM++ (D = 128) diffusion on the Comm20 adjacency, sampled with the core dpmpp_2m.

The CPU-sized counterpart of configs/graph_pfgmpp_grid.py, and the same setting as
configs/graph_edm_comm20.py apart from the process: the loss perturbs with the PFGM++ kernel
(generative.losses 'pfgmpp') and sampling starts from the PFGM++ prior at sigma_max. D = 128 is
the heavy-tailed setting Xu et al. (2023) found most robust; D -> inf recovers the EDM config.
Fields are documented in generative/graphs/experiment.py (default_config).
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("continuous", "comm20")
    config.continuous.loss.name = "pfgmpp"
    config.continuous.loss.D = 128
    config.continuous.precondition = "edm"
    config.continuous.process.name = "pfgmpp"
    config.continuous.process.D = 128
    config.continuous.sampler = "dpmpp_2m"
    config.continuous.num_levels = 40
    config.train.time_limit_minutes = 25.0
    config.train.batch_size = 32
    config.eval.num_samples = 64
    return config
