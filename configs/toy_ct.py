"""Consistency training (Song et al. 2023) on the 8-Gaussian 2-D toy: configs/toy_edm.py's network,
budget and evaluators, with config.task replaced (generative/consistency/tasks.py).

config.task fields of 'ct' (also read by toy_ict.py and toy_cd.py where they apply):
  precond.name    'consistency': f(x, t) = c_skip x + c_out F with f(x, eps) = x, eps = sigma_min.
  num_levels      N fixed Karras levels eps = t_0 < ... < t_{N-1} = sigma_max (ct, cd).
  rho             the Karras exponent of those levels.
  distance        'l2' (|a - b|^2, CM) or 'pseudo_huber' (iCT).
  weighting       'uniform' (CM) or 'ict' (1 / (t_{i+1} - t_i)).
  target_decay    the fixed decay of the EMA 'target' f^- (mu = 0.95 in CM; ct, cd).
Sampling (sampler 'consistency'):
  sample.consistency_levels  the levels after sigma_max of multistep sampling, descending in
                  (sigma_min, sigma_max); sample.steps / eval.steps k uses the first k of
                  (sigma_max, *consistency_levels): 1 = one step.
"""

import ml_collections

from configs import toy_edm


def get_config():
    config = toy_edm.get_config()
    config.data.name = "eight_gaussians"
    config.task = ml_collections.ConfigDict(
        {
            "name": "ct",
            "precond": {"name": "consistency"},
            "num_levels": 18,
            "rho": 7.0,
            "distance": "l2",
            "weighting": "uniform",
            "target_decay": 0.95,
        }
    )
    config.sample.sampler = config.eval.sampler = "consistency"
    config.sample.steps = config.eval.steps = 1
    config.sample.consistency_levels = (0.8, 0.3)
    return config
