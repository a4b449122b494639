"""PFGM++ (Xu et al. 2023) with D = 128 on a 2-D toy set: the heavy-tailed perturbation kernel in
training and as the sampling prior; EDM's preconditioning, weighting and Heun sampler unchanged
(with r = sigma sqrt(D)). Fields: base.py.
"""

from configs.toy_edm import get_config as toy_edm_config


def get_config():
    config = toy_edm_config()
    config.loss.name = "pfgmpp"
    config.loss.D = 128.0
    return config
