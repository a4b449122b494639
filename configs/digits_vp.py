"""score_sde's VP SDE (Song et al. 2021) on the 8x8 digits: continuous-time denoising score matching
with the score_sde weighting, EDM's VP preconditioning (Table 1), sampled with Heun on the VP noise
levels (EDM's deterministic sampler for VP-trained networks). Network, optimiser and EMA as
digits_edm.py. Fields: base.py.
"""

import ml_collections

from configs.digits_edm import get_config as digits_edm_config


def get_config():
    config = digits_edm_config()
    config.process = ml_collections.ConfigDict(
        {"name": "vp", "beta_min": 0.1, "beta_max": 20.0, "eps": 1e-3}
    )
    config.task.precond = ml_collections.ConfigDict({"name": "vp", "M": 1000})
    config.task.loss = ml_collections.ConfigDict(
        {"name": "dsm", "weighting": "score_sde", "eps": 1e-5}
    )
    config.sample.schedule = "vp"
    config.sample.schedule_options = {}
    return config
