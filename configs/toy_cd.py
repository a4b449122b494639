"""Consistency distillation (Song et al. 2023) of an EDM teacher on the 8-Gaussian toy:
configs/toy_ct.py with the 'cd' task. Train the teacher first:

  python -m experiments.train --config configs/toy_edm.py --config.data.name=eight_gaussians \
      --workdir workdirs/toy_edm_8g

config.task fields of 'cd' besides toy_ct.py's:
  teacher         the workdir of a trained unconditional 'diffusion' run on the same data, restored
                  (EMA weights, its own network and preconditioning) into the frozen group
                  'teacher' (read whenever this run is built).
  solver          the teacher's one PF-ODE step from t_{i+1} to t_i: 'heun' or 'euler'.
"""

from configs import toy_ct


def get_config():
    config = toy_ct.get_config()
    config.task.name = "cd"
    config.task.teacher = "workdirs/toy_edm_8g"
    config.task.solver = "heun"
    return config
