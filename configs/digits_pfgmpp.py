"""PFGM++ (Xu et al. 2023) with D = 128 on the 8x8 digits: digits_edm.py with the PFGM++ kernel in
training and as the sampling prior. Fields: base.py.
"""

from configs.digits_edm import get_config as digits_edm_config


def get_config():
    config = digits_edm_config()
    config.loss.name = "pfgmpp"
    config.loss.D = 128.0
    return config
