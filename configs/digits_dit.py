"""EDM on the 8x8 digits with a DiT (Peebles and Xie 2023: patchify, adaLN-Zero) instead of the
UNet.

Same loss, optimiser, EMA and sampler as digits_edm.py; the DiT's defaults (generative.models.dit)
are sized for 8x8 digits. Fields: base.py.
"""

from configs.digits_edm import get_config as digits_edm_config
from generative.models import default_config


def get_config():
    config = digits_edm_config()
    config.model = default_config("dit")
    config.optim.lr = 1e-3
    return config
