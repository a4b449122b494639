"""Consistency models on scikit-learn's digits, one method per config argument (ct, ict, cd, ect,
sct, scd; fields: configs/consistency_base.py), on the main job's UNet and budget
(configs/digits_edm.py). The teacher of cd and scd, and ECT's initialisation, is the main job:

  python -m experiments.train --config configs/digits_edm.py --workdir workdirs/digits_edm
  python -m experiments.train --config configs/digits_consistency.py:ect \
      --workdir workdirs/digits_ect
"""

from configs import digits_edm
from configs.consistency_base import with_method


def get_config(method: str = "ict"):
    config = digits_edm.get_config()
    # iCT and ECT at a fifth of the teacher's rate, as on the toy: ECT's 2-step Frechet ratio
    # 14.6 -> 4.40 (benchmarks/RESULTS.md); iCT's follows the toy, unmeasured here.
    if method in ("ict", "ect"):
        config.optim.lr /= 5
    return with_method(config, method, teacher="workdirs/digits_edm")
