"""Continuous PFGM++ (D = 128) diffusion on the Comm20 adjacency, sampled with the core dpmpp_2m.

configs/graph_edm_comm20.py with the PFGM++ process in place of EDM's: the loss perturbs with the
PFGM++ kernel (generative.losses 'pfgmpp') and sampling starts from the PFGM++ prior at
sigma_max, both reading D from config.process. D = 128 is the heavy-tailed setting Xu et al.
(2023) found most robust; D -> inf recovers the EDM config. The CPU-sized counterpart of
configs/graph_pfgmpp_grid.py. Fields: configs/base.py.
"""

from configs import graph_edm_comm20


def get_config():
    config = graph_edm_comm20.get_config()
    config.process.name = "pfgmpp"
    config.process.D = 128.0
    config.task.loss.name = "pfgmpp"
    config.sample.sampler = config.eval.sampler = "dpmpp_2m"
    config.sample.steps = config.eval.steps = 40
    return config
