"""Noise processes in one form: x_t = s(t) (x0 + sigma(t) n).

Every process is a small frozen dataclass registered as a pytree (so it can be passed through
``jax.jit``) and gives the same methods, so code elsewhere never dispatches on the process type:

  sigma(t), sigma_inv(sigma), scale(t) = s(t), marginal_std(t) = s(t) sigma(t),
  t_min, t_max (sampling time range), sigma_max, gaussian (is the perturbation kernel Gaussian),
  perturb(key, x0, sigma) -> x0 + noise drawn exactly from the kernel at level sigma (unscaled),
  prior_sample(key, shape) -> a draw at t_max in process coordinates (the data part neglected),
  and for the SDEs (VP, SubVP, VE, EDM): drift(x, t) = f(t) x and diffusion(t) = g(t) of
  dx = f(t) x dt + g(t) dw, with d/dt Var = 2 f Var + g^2 for Var = marginal_std^2.

Arrays carry the batch on axis 0 (one example is x0[i], with N = prod(x0.shape[1:]) dimensions); a
sigma or t is a scalar or one value per example, shape [B].

References:
  Song et al. 2021, "Score-Based Generative Modeling through SDEs" (VP, sub-VP, VE).
  Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative Models" (EDM).
  Xu et al. 2023, "PFGM++: Unlocking the Potential of Physics-Inspired Generative Models".
  Liu et al. 2023 (rectified flow); Lipman et al. 2023 (flow matching).
"""

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from generative.schedules import concrete


def _as_float(t) -> jax.Array:
    """t as an array, keeping a floating dtype (bfloat16 stays bfloat16) and making ints float."""
    t = jnp.asarray(t)
    return t if jnp.issubdtype(t.dtype, jnp.inexact) else t.astype(float)


def per_example(value, x: jax.Array) -> jax.Array:
    """Reshape a scalar or [B] ``value`` to broadcast against x [B, ...] (one value per example)."""
    value = jnp.asarray(value)
    if value.ndim == 0:
        return value
    if value.ndim == 1 and x.ndim >= 1 and value.shape[0] == x.shape[0]:
        return value.reshape((-1,) + (1,) * (x.ndim - 1))
    raise ValueError(
        f"sigma / t must be a scalar or have shape [B] = {x.shape[:1]} (batch of x), "
        f"got {value.shape}"
    )


def _check_batched(x0: jax.Array, name: str = "x0") -> None:
    """ValueError unless ``x0`` has a batch axis: shape [B, ...]."""
    if jnp.ndim(x0) < 1:
        raise ValueError(f"{name} must have shape [B, ...] (batch first), got {jnp.shape(x0)}")


def _check_positive(**values) -> None:
    """ValueError for a concrete value that is not > 0; tracers pass through."""
    for name, value in values.items():
        known = concrete(value)
        if known is not None and not np.all(known > 0):
            raise ValueError(f"{name} must be > 0, got {value!r}")


def _check_less(lo_name, lo, hi_name, hi) -> None:
    lo_value, hi_value = concrete(lo), concrete(hi)
    if lo_value is not None and hi_value is not None and not np.all(lo_value < hi_value):
        raise ValueError(f"{lo_name} must be < {hi_name}, got {lo_name}={lo!r}, {hi_name}={hi!r}")


def _pytree(cls=None, *, meta_fields=()):
    """Frozen dataclass whose fields are pytree leaves except ``meta_fields`` (static).

    Unflattening skips ``__post_init__``: its checks are for the user's constants, while jax also
    rebuilds processes from tracers, gradients and placeholders.
    """

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        data = [n for n in names if n not in meta_fields]
        meta = [n for n in names if n in meta_fields]

        def flatten_with_keys(process):
            leaves = [(jax.tree_util.GetAttrKey(n), getattr(process, n)) for n in data]
            return leaves, tuple(getattr(process, n) for n in meta)

        def unflatten(meta_values, leaves):
            process = object.__new__(cls)
            for name, value in zip(meta + data, (*meta_values, *leaves), strict=True):
                object.__setattr__(process, name, value)
            return process

        jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten)
        return cls

    return wrap if cls is None else wrap(cls)


class _GaussianKernel:
    """Shared methods of the processes whose perturbation kernel is N(0, sigma^2 I)."""

    gaussian = True

    def marginal_std(self, t):
        """Standard deviation of the noise in x_t: s(t) sigma(t)."""
        return self.scale(t) * self.sigma(t)

    def marginal_prob(self, x0: jax.Array, t):
        """Mean s(t) x0 and standard deviation s(t) sigma(t) of x_t given x0 (score_sde's name)."""
        return per_example(self.scale(t), x0) * x0, self.marginal_std(t)

    def perturb(self, key: jax.Array, x0: jax.Array, sigma) -> jax.Array:
        """x0 + sigma n, n ~ N(0, I): an exact draw from the kernel at level sigma (unscaled)."""
        _check_batched(x0)
        noise = jax.random.normal(key, x0.shape, x0.dtype)
        return x0 + per_example(sigma, x0) * noise

    def prior_sample(self, key: jax.Array, shape) -> jax.Array:
        """N(0, marginal_std(t_max)^2 I) in process coordinates."""
        return self.marginal_std(self.t_max) * jax.random.normal(key, shape)


class _VPFamily(_GaussianKernel):
    """The linear schedule of VP and sub-VP: beta(t) = beta_min + t (beta_max - beta_min)."""

    @property
    def beta_d(self):
        return self.beta_max - self.beta_min

    def beta(self, t):
        return self.beta_min + t * self.beta_d

    def log_mean_coeff(self, t):
        """l(t) = -1/4 t^2 beta_d - 1/2 t beta_min; the marginal mean is e^l x0."""
        return -0.25 * t**2 * self.beta_d - 0.5 * t * self.beta_min

    def scale(self, t):
        return jnp.exp(self.log_mean_coeff(t))

    def drift(self, x: jax.Array, t) -> jax.Array:
        """f(t) x = -1/2 beta(t) x."""
        return -0.5 * per_example(self.beta(t), x) * x

    @property
    def t_min(self):
        return self.eps

    @property
    def t_max(self):
        return 1.0

    @property
    def sigma_max(self):
        return self.sigma(self.t_max)

    def _t_from_log_mean_coeff(self, minus_l):
        """Solve 1/4 beta_d t^2 + 1/2 beta_min t = -l for t >= 0."""
        return (
            jnp.sqrt(self.beta_min**2 + 4 * self.beta_d * minus_l) - self.beta_min
        ) / self.beta_d

    def __post_init__(self):
        _check_positive(beta_min=self.beta_min, eps=self.eps)
        _check_less("beta_min", self.beta_min, "beta_max", self.beta_max)


@_pytree
class VP(_VPFamily):
    """Variance-preserving SDE dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw (Song et al. 2021).

    Marginal N(e^l x0, (1 - e^{2l}) I); in EDM form s = e^l and sigma = sqrt(e^{-2l} - 1)
    = sqrt(e^{1/2 beta_d t^2 + beta_min t} - 1). ``eps`` is the sampling cut-off t_min.
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: float = 1e-3

    def sigma(self, t):
        return jnp.sqrt(jnp.expm1(-2 * self.log_mean_coeff(t)))

    def marginal_std(self, t):
        return jnp.sqrt(-jnp.expm1(2 * self.log_mean_coeff(t)))

    def sigma_inv(self, sigma):
        """t = (sqrt(beta_min^2 + 2 beta_d ln(1 + sigma^2)) - beta_min) / beta_d (EDM Table 1)."""
        return self._t_from_log_mean_coeff(0.5 * jnp.log1p(sigma**2))

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t))


@_pytree
class SubVP(_VPFamily):
    """sub-VP SDE: dx = -1/2 beta x dt + sqrt(beta (1 - e^{-2 beta_min t - beta_d t^2})) dw.

    Marginal N(e^l x0, (1 - e^{2l})^2 I) (std without a square root, Song et al. 2021 eq. 29), so
    s = e^l and sigma = (1 - e^{2l}) e^{-l} = 2 sinh(-l).
    """

    beta_min: float = 0.1
    beta_max: float = 20.0
    eps: float = 1e-3

    def sigma(self, t):
        return 2 * jnp.sinh(-self.log_mean_coeff(t))

    def marginal_std(self, t):
        return -jnp.expm1(2 * self.log_mean_coeff(t))

    def sigma_inv(self, sigma):
        """-l = asinh(sigma / 2), then solve for t."""
        return self._t_from_log_mean_coeff(jnp.arcsinh(0.5 * sigma))

    def diffusion(self, t):
        return jnp.sqrt(self.beta(t) * -jnp.expm1(4 * self.log_mean_coeff(t)))


@_pytree
class VE(_GaussianKernel):
    """Variance-exploding SDE: sigma(t) = sigma_min (sigma_max/sigma_min)^t, s = 1, t in [eps, 1];
    dx = sigma(t) sqrt(2 ln(sigma_max/sigma_min)) dw (Song et al. 2021)."""

    sigma_min: float = 0.01
    sigma_max: float = 50.0
    eps: float = 1e-5

    def __post_init__(self):
        _check_positive(sigma_min=self.sigma_min, eps=self.eps)
        _check_less("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    @property
    def _log_ratio(self):
        return jnp.log(self.sigma_max / self.sigma_min)

    def sigma(self, t):
        return self.sigma_min * jnp.exp(t * self._log_ratio)

    def sigma_inv(self, sigma):
        return jnp.log(sigma / self.sigma_min) / self._log_ratio

    def scale(self, t):
        return jnp.ones_like(_as_float(t))

    def marginal_std(self, t):
        return self.sigma(t)

    def drift(self, x, t):
        return jnp.zeros_like(x)

    def diffusion(self, t):
        return self.sigma(t) * jnp.sqrt(2 * self._log_ratio)

    @property
    def t_min(self):
        return self.eps

    @property
    def t_max(self):
        return 1.0


class _EDMTime:
    """sigma(t) = t, s(t) = 1, t in [sigma_min, sigma_max] (Karras et al. 2022)."""

    def sigma(self, t):
        return _as_float(t)

    def sigma_inv(self, sigma):
        return _as_float(sigma)

    def scale(self, t):
        return jnp.ones_like(_as_float(t))

    @property
    def t_min(self):
        return self.sigma_min

    @property
    def t_max(self):
        return self.sigma_max


@_pytree
class EDM(_EDMTime, _GaussianKernel):
    """EDM's process: x = x0 + t n, the SDE dx = sqrt(2 t) dw (f = 0, g^2 = d sigma^2/dt = 2t)."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def __post_init__(self):
        _check_positive(sigma_min=self.sigma_min, sigma_data=self.sigma_data)
        _check_less("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    def drift(self, x, t):
        return jnp.zeros_like(x)

    def diffusion(self, t):
        return jnp.sqrt(2 * _as_float(t))


@functools.partial(_pytree, meta_fields=("D",))
class PFGMpp(_EDMTime):
    """PFGM++ with D augmentation dimensions (Xu et al. 2023), in EDM's time sigma(t) = t, s = 1.

    The perturbation kernel on N-dimensional data is p_r(x | y) ∝ (|x - y|^2 + r^2)^(-(N + D)/2)
    with r = sigma sqrt(D). Its exact draw is a multivariate Student-t with D degrees of freedom and
    scale sigma:

      x - y = sigma z / sqrt(chi2_D / D),  z ~ N(0, I_N),  chi2_D = 2 Gamma(D/2) (one per example),

    so |x - y|^2 / r^2 = chi2_N / chi2_D ~ BetaPrime(N/2, D/2), E|x - y|^2 = N sigma^2 D / (D - 2).
    D = inf is EDM's Gaussian kernel. D is static (a Python float); the other fields are leaves.
    """

    D: float = 128.0
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5

    def __post_init__(self):
        D = concrete(self.D)
        if D is None or D.shape != () or not np.issubdtype(D.dtype, np.number) or not D > 0:
            raise ValueError(
                "D (PFGM++ augmentation dimension) must be a concrete number > 0 or inf (it is "
                f"static), got {self.D!r}"
            )
        object.__setattr__(self, "D", float(D))  # hashable, as a static field must be
        _check_positive(sigma_min=self.sigma_min, sigma_data=self.sigma_data)
        _check_less("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    @property
    def gaussian(self) -> bool:
        return math.isinf(self.D)

    def marginal_std(self, t):
        """The kernel's scale sigma(t) (its standard deviation is sigma sqrt(D/(D-2)) for D > 2)."""
        return self.sigma(t)

    def perturb(self, key: jax.Array, x0: jax.Array, sigma) -> jax.Array:
        """x0 + sigma z / sqrt(chi2_D / D), one chi2_D per example (row of x0); exact, in-graph."""
        _check_batched(x0)
        key_z, key_chi2 = jax.random.split(key)
        z = jax.random.normal(key_z, x0.shape, x0.dtype)
        if self.gaussian:
            return x0 + per_example(sigma, x0) * z
        # log(chi2_D / D) = log Gamma(D/2) + log(2/D), drawn in log space: small D cannot underflow.
        log_gamma = jax.random.loggamma(key_chi2, 0.5 * self.D, (x0.shape[0],), x0.dtype)
        inv_scale = jnp.exp(-0.5 * (log_gamma + math.log(2.0 / self.D)))
        return x0 + per_example(sigma, x0) * per_example(inv_scale, x0) * z

    def prior_sample(self, key: jax.Array, shape) -> jax.Array:
        """The kernel's draw around 0 at r_max = sigma_max sqrt(D) (PFGM++'s prior)."""
        return self.perturb(key, jnp.zeros(shape), self.sigma_max)


@_pytree
class Flow(_GaussianKernel):
    """Rectified flow / linear interpolant x_t = (1 - t) x0 + t n (Liu et al.; Lipman et al. 2023).

    In EDM form s = 1 - t, sigma = t / (1 - t), t = sigma / (1 + sigma); marginal_std = t. The
    sampling range is [sigma_inv(sigma_min), sigma_inv(sigma_max)]; sigma_max = inf gives t_max = 1
    and the exact prior N(0, I). Defaults match EDM's noise range so the same sigma grids apply.
    """

    sigma_min: float = 0.002
    sigma_max: float = 80.0

    def __post_init__(self):
        _check_positive(sigma_min=self.sigma_min)
        _check_less("sigma_min", self.sigma_min, "sigma_max", self.sigma_max)

    def sigma(self, t):
        return t / (1 - t)

    def sigma_inv(self, sigma):
        sigma = _as_float(sigma)
        return jnp.where(jnp.isinf(sigma), 1.0, sigma / (1 + sigma))

    def scale(self, t):
        return 1 - _as_float(t)

    def marginal_std(self, t):
        return _as_float(t)

    @property
    def t_min(self):
        return self.sigma_inv(self.sigma_min)

    @property
    def t_max(self):
        return self.sigma_inv(self.sigma_max)


def score_from_denoiser(process, denoise: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """The score in process coordinates from an EDM-convention denoiser D(x, sigma) (unscaled).

      score(x, t) = (s D(x / s, sigma) - x) / (s sigma)^2,  s = s(t), sigma = sigma(t).

    For PFGM++ with finite D this is the Gaussian-kernel formula applied to its denoiser, which is
    what EDM's samplers integrate there (PFGM++ sec. 4), not the score of the heavy-tailed marginal.
    """

    def score(x: jax.Array, t, **cond) -> jax.Array:
        s = per_example(process.scale(t), x)
        std = per_example(process.marginal_std(t), x)
        return (s * denoise(x / s, process.sigma(t), **cond) - x) / std**2

    return score


PROCESSES = {"vp": VP, "subvp": SubVP, "ve": VE, "edm": EDM, "pfgmpp": PFGMpp, "flow": Flow}


def get_process(name: str, **kwargs):
    """Build the process called ``name`` (one of PROCESSES) with its fields as keyword arguments."""
    if name not in PROCESSES:
        raise ValueError(f"unknown process name {name!r}; known: {sorted(PROCESSES)}")
    fields = {field.name for field in dataclasses.fields(PROCESSES[name])}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(
            f"process {name!r} has no field(s) {unknown}; its fields: {sorted(fields)}"
        )
    return PROCESSES[name](**kwargs)


def process_from_config(process_config):
    """The process of ``config.process``: its ``name`` and its constants as the other fields."""
    fields = dict(process_config)
    if "name" not in fields:
        raise ValueError(f"config.process needs a name, one of {sorted(PROCESSES)}")
    name = fields.pop("name")
    if name == "pfgmpp" and "D" in fields:
        fields["D"] = float(fields["D"])
    return get_process(name, **fields)


def process_name_of(process) -> str:
    """The PROCESSES key of a process instance."""
    for name, cls in PROCESSES.items():
        if type(process) is cls:
            return name
    raise ValueError(f"not a process of generative.processes: {process!r}")
