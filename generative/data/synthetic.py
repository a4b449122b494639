"""Two-dimensional toy distributions, drawn with numpy, standardised to zero mean and unit variance.

Each set is a simple generative recipe followed by a fixed affine map whose constants are the exact
population moments of that recipe (derived below), so every coordinate has mean 0 and variance 1:

* ``moons`` (as scikit-learn's ``make_moons``): pick a moon m ~ Bernoulli(1/2) (the label) and t ~
  U[0, pi]; the upper moon is (cos t, sin t), the lower one (1 - cos t, 1/2 - sin t); add N(0,
  0.05^2 I). Mean (1/2, 1/4); variances 3/4 + 0.05^2 and 9/16 - 1/pi + 0.05^2.
* ``swiss_roll`` (the 2-D section of ``make_swiss_roll``): t ~ U[a, b], a = 3 pi/2, b = 9 pi/2, the
  point (t cos t, t sin t) + N(0, 0.5^2 I); label 0. Mean (2, 2/(3 pi)); second moments ((b^3 -
  a^3)/6 -+ 3 pi/4) / (3 pi) for the first / second coordinate.
* ``eight_gaussians``: label k ~ U{0..7}, x ~ N(R (cos k pi/4, sin k pi/4), s^2 I) with s = 0.1 and
  R = sqrt(2 (1 - s^2)), so the per-coordinate variance R^2/2 + s^2 is exactly 1.
* ``checkerboard``: uniform on the 8 black cells (i + j even) of a 4 x 4 board of unit cells on
  [-2, 2]^2, scaled by sqrt(3)/2 (each marginal is U[-2, 2], variance 4/3); label = black-cell
  index. The black cells lie along the diagonal, so the coordinates correlate: 3/16.

Moons and the swiss roll also keep their curves' correlations; only eight_gaussians has identity
covariance.
"""

import numpy as np

MOONS_NOISE = 0.05
SWISS_ROLL_NOISE = 0.5
EIGHT_GAUSSIANS_STD = 0.1
EIGHT_GAUSSIANS_RADIUS = float(np.sqrt(2.0 * (1.0 - EIGHT_GAUSSIANS_STD**2)))

_SWISS_A, _SWISS_B = 1.5 * np.pi, 4.5 * np.pi
_SWISS_MEAN = np.array([2.0, 2.0 / (3.0 * np.pi)])
_SWISS_SECOND_MOMENT = (
    (_SWISS_B**3 - _SWISS_A**3) / 6.0 + np.array([-0.75 * np.pi, 0.75 * np.pi])
) / (3.0 * np.pi) + SWISS_ROLL_NOISE**2
_MOONS_MEAN = np.array([0.5, 0.25])
_MOONS_VAR = np.array([0.75, 9.0 / 16.0 - 1.0 / np.pi]) + MOONS_NOISE**2


def _moons(rng: np.random.Generator, num: int):
    label = rng.integers(0, 2, num)
    t = rng.uniform(0.0, np.pi, num)
    upper = np.stack([np.cos(t), np.sin(t)], -1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], -1)
    x = np.where(label[:, None] == 0, upper, lower) + MOONS_NOISE * rng.standard_normal((num, 2))
    return (x - _MOONS_MEAN) / np.sqrt(_MOONS_VAR), label


def _swiss_roll(rng: np.random.Generator, num: int):
    t = rng.uniform(_SWISS_A, _SWISS_B, num)
    x = t[:, None] * np.stack([np.cos(t), np.sin(t)], -1)
    x = x + SWISS_ROLL_NOISE * rng.standard_normal((num, 2))
    return (x - _SWISS_MEAN) / np.sqrt(_SWISS_SECOND_MOMENT - _SWISS_MEAN**2), np.zeros(num, int)


def eight_gaussians_centers() -> np.ndarray:
    """The 8 mode centres [8, 2], on the circle of radius ``EIGHT_GAUSSIANS_RADIUS``."""
    angles = np.arange(8) * np.pi / 4.0
    return EIGHT_GAUSSIANS_RADIUS * np.stack([np.cos(angles), np.sin(angles)], -1)


def _eight_gaussians(rng: np.random.Generator, num: int):
    label = rng.integers(0, 8, num)
    noise = EIGHT_GAUSSIANS_STD * rng.standard_normal((num, 2))
    return eight_gaussians_centers()[label] + noise, label


def _checkerboard(rng: np.random.Generator, num: int):
    cells = np.array([(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0])
    label = rng.integers(0, len(cells), num)
    x = cells[label] - 2.0 + rng.uniform(0.0, 1.0, (num, 2))
    return x * (np.sqrt(3.0) / 2.0), label


_SAMPLERS = {
    "moons": _moons,
    "swiss_roll": _swiss_roll,
    "eight_gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
}
NUM_CLASSES = {"moons": 2, "swiss_roll": 1, "eight_gaussians": 8, "checkerboard": 8}
NAMES = tuple(_SAMPLERS)


def sample(name: str, rng: np.random.Generator, num: int) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``num`` points of the set ``name``: (x float32 [num, 2], label int32 [num])."""
    if name not in _SAMPLERS:
        raise ValueError(f"unknown synthetic data set name={name!r}; known: {NAMES}")
    if num <= 0:
        raise ValueError(f"num must be positive, got {num}")
    x, label = _SAMPLERS[name](rng, num)
    return x.astype(np.float32), label.astype(np.int32)
