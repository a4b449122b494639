"""score_sde's VE SDE (Song et al. 2021) on the 8x8 digits: continuous-time denoising score matching
with the score_sde weighting on sigma in [0.01, 50], EDM's VE preconditioning (Table 1), sampled
with Heun on geometrically spaced levels (EDM's deterministic sampler for VE-trained networks).
Network, optimiser and EMA as digits_edm.py. Fields: base.py.
"""

import ml_collections

from configs.digits_edm import get_config as digits_edm_config


def get_config():
    config = digits_edm_config()
    config.process = ml_collections.ConfigDict({"name": "ve", "sigma_min": 0.01, "sigma_max": 50.0})
    config.task.precond = ml_collections.ConfigDict({"name": "ve"})
    config.task.loss = ml_collections.ConfigDict(
        {"name": "dsm", "weighting": "score_sde", "eps": 1e-5}
    )
    config.sample.schedule = "exponential"
    config.sample.schedule_options = {}
    return config
