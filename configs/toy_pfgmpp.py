"""PFGM++ (Xu et al. 2023) with D = 128 on a 2-D toy set: the heavy-tailed perturbation kernel in
training and as the sampling prior; EDM's preconditioning, weighting and Heun sampler unchanged
(with r = sigma sqrt(D)). Fields: base.py.
"""

import ml_collections

from configs.toy_edm import get_config as toy_edm_config


def get_config():
    config = toy_edm_config()
    config.process = ml_collections.ConfigDict(
        {"name": "pfgmpp", "D": 128.0, "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}
    )
    config.task.loss.name = "pfgmpp"
    config.task.precond.name = "pfgmpp"
    return config
