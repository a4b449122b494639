"""PFGM++ (Xu et al. 2023) with D = 128 on the 8x8 digits: digits_edm.py with the PFGM++ kernel in
training and as the sampling prior. Fields: base.py.
"""

import ml_collections

from configs.digits_edm import get_config as digits_edm_config


def get_config():
    config = digits_edm_config()
    config.process = ml_collections.ConfigDict(
        {"name": "pfgmpp", "D": 128.0, "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0}
    )
    config.task.loss.name = "pfgmpp"
    config.task.precond.name = "pfgmpp"
    return config
