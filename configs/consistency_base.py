"""The consistency methods' config.task sections, one per method, shared by
configs/toy_consistency.py and configs/digits_consistency.py (a method is one config argument:
`--config configs/toy_consistency.py:ict`). Tasks: generative/consistency/tasks.py.

Fields of config.task, by method:
  precond.name    'consistency' (ct, ict, cd, ect): f(x, t) = c_skip x + c_out F with f(x, eps) =
                  x, eps = process.sigma_min; 'trigflow' (sct, scd): f(x_t, t) = cos(t) x_t -
                  sin(t) sd F(x_t / sd, t), TrigFlow time t = arctan(sigma / sd).
  num_levels      (ct, cd) N fixed Karras levels eps = t_0 < ... < t_{N-1} = sigma_max.
  rho             (ct, ict, cd) the Karras exponent of the levels.
  s0, s1          (ict) the curriculum N(k) = min(s0 2^floor(k / K'), s1) + 1 levels at step k,
                  K' = floor(K / (log2(s1 / s0) + 1)), K = training.num_steps.
  p_mean, p_std   (ict, ect, sct, scd) the log-normal of the noise levels: over iCT's level pairs,
                  of ECT's t, of sCM's sd tan(t) (iCT and ECT: -1.1, 2.0; sCT: -1.0, 1.4; sCD:
                  -0.8, 1.6).
  distance        'l2' (|a - b|^2, CM) or 'pseudo_huber' (iCT, ECT).
  weighting       'uniform' (CM) or 'ict' (1 / (t_{i+1} - t_i); ECT: 1 / (t - r)).
  target_decay    (ct, cd) the fixed decay of the EMA 'target' f^- (mu = 0.95 in CM).
  teacher         (cd, scd) the workdir of a trained unconditional 'diffusion' run on the same
                  data (EMA weights, its own network and preconditioning), restored into the
                  frozen group 'teacher' whenever this run is built. ECT starts from such a run
                  through training.init_from instead (same network, precond 'edm').
  solver          (cd) the teacher's one PF-ODE step from t_{i+1} to t_i: 'heun' or 'euler'.
  gap_ratio, gap_k, gap_b, stage_steps   (ect) the level gap r = t (1 - n(t) / q^(a+1)), n(t) =
                  1 + k sigmoid(-b t), q = gap_ratio, stage a = floor(step / stage_steps), r
                  clamped to [sigma_min, t] (locuslab/ect: q^(stage+1), so the first stage is
                  denoising, r = sigma_min, only where n(t) >= q; q 2, k 8, b 1, 8 stages).
  tangent_c       (sct, scd) tangent normalisation g / (|g| + c).
  tangent_warmup_steps  (sct, scd) the tangent warm-up r = min(1, step / H).
  logvar_channels (sct, scd) Fourier features of the adaptive weighting's log-variance head.
Sampling (sampler 'consistency'):
  sample.consistency_levels  the levels after the first of multistep sampling, descending, in the
                  task's time: sigma in (sigma_min, sigma_max) from sigma_max (ct, ict, cd, ect),
                  TrigFlow t in (0, pi/2) from pi/2 (sct, scd: sCM's two-step t_mid = 1.1);
                  sample.steps / eval.steps k uses the first k levels: 1 = one step.
"""

import ml_collections

METHODS = ("ct", "ict", "cd", "ect", "sct", "scd")

_CT = {
    "precond": {"name": "consistency"},
    "num_levels": 18,
    "rho": 7.0,
    "distance": "l2",
    "weighting": "uniform",
    "target_decay": 0.95,
}
_ICT = {
    "precond": {"name": "consistency"},
    "s0": 10,
    "s1": 1280,
    "rho": 7.0,
    "p_mean": -1.1,
    "p_std": 2.0,
    "distance": "pseudo_huber",
    "weighting": "ict",
}
_ECT = {
    "precond": {"name": "consistency"},
    "p_mean": -1.1,
    "p_std": 2.0,
    "gap_ratio": 2.0,
    "gap_k": 8.0,
    "gap_b": 1.0,
    "stage_steps": 0,  # set from training.num_steps by with_method
    "distance": "pseudo_huber",
    "weighting": "ict",
}
_SCT = {
    "precond": {"name": "trigflow"},
    "p_mean": -1.0,
    "p_std": 1.4,
    "tangent_c": 0.1,
    "tangent_warmup_steps": 0,  # set from training.num_steps by with_method
    "logvar_channels": 64,
}
SECTIONS = {
    "ct": _CT,
    "ict": _ICT,
    "cd": {**_CT, "teacher": "", "solver": "heun"},
    "ect": _ECT,
    "sct": _SCT,
    "scd": {**_SCT, "p_mean": -0.8, "p_std": 1.6, "teacher": ""},
}
SAMPLE_LEVELS = {"ct": (0.8, 0.3), "sct": (1.1,)}  # EDM sigma / TrigFlow t after the first


def with_method(config, method: str, *, teacher: str) -> ml_collections.ConfigDict:
    """`config` (a diffusion config of the teacher's data and network) with method's task section,
    the teacher workdir where the method has one (ECT: training.init_from) and sampler
    'consistency' in one step."""
    if method not in METHODS:
        raise ValueError(f"consistency config argument must be one of {METHODS}, got {method!r}")
    config.task = ml_collections.ConfigDict({"name": method, **SECTIONS[method]})
    if "teacher" in config.task:
        config.task.teacher = teacher
    if method == "ect":
        config.training.init_from = teacher
        config.training.init_from_ema = True
        config.task.stage_steps = max(1, config.training.num_steps // 8)
    if method in ("sct", "scd"):
        config.task.tangent_warmup_steps = max(1, config.training.num_steps // 10)
    config.sample.sampler = config.eval.sampler = "consistency"
    config.sample.steps = config.eval.steps = 1
    trig = method in ("sct", "scd")
    config.sample.consistency_levels = SAMPLE_LEVELS["sct" if trig else "ct"]
    return config
