"""Improved consistency training (Song and Dhariwal 2023) on the 8-Gaussian toy: configs/toy_ct.py
with the 'ict' task (no EMA target: stop_gradient of the online network; pseudo-Huber distance,
1 / (t_{i+1} - t_i) weighting).

config.task fields of 'ict' besides toy_ct.py's precond, rho, distance and weighting:
  s0, s1          the curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1 levels at step k,
                  K' = floor(K / (log2(s1 / s0) + 1)), K = training.num_steps.
  p_mean, p_std   the discrete log-normal over the level pairs (-1.1 and 2.0 in iCT).
"""

import ml_collections

from configs import toy_ct


def get_config():
    config = toy_ct.get_config()
    config.task = ml_collections.ConfigDict(
        {
            "name": "ict",
            "precond": {"name": "consistency"},
            "s0": 10,
            "s1": 1280,
            "rho": 7.0,
            "p_mean": -1.1,
            "p_std": 2.0,
            "distance": "pseudo_huber",
            "weighting": "ict",
        }
    )
    return config
