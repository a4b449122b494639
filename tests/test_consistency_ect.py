"""Easy consistency tuning (ECT, Geng et al. 2024): the shrinking gap r(t, step) against its formula
(locuslab/ect's q^(stage + 1)), the first stage's denoising target x0 + eps z, the pair loss at
exact consistency functions (zero for point data, its closed form for Gaussian data), and the bad
inputs rejected with one-line errors. The 'ect' task's runs are in test_consistency_tasks.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generative.consistency import losses, parametrization
from generative.processes import EDM

EPS, T = 0.002, 80.0


def raw_net(x_in, c_noise):
    """A nonlinear stand-in for a network, far from 0 everywhere."""
    return 5 * jnp.tanh(3 * x_in + c_noise.reshape((-1,) + (1,) * (x_in.ndim - 1))) + 1


def expected_gap(t, step, stage_steps, q=2.0, k=8.0, b=1.0):
    """r = clip(t (1 - n(t) / q^(a + 1)), eps, t), n = 1 + k sigmoid(-b t), in NumPy."""
    a = step // stage_steps
    n = 1 + k / (1 + np.exp(b * t))
    return np.clip(t * (1 - n / q ** (a + 1)), EPS, t)


# --------------------------------------------------------------------------------------------------
# The gap


def test_ect_gap_follows_the_formula_and_shrinks_by_q_per_stage():
    t = np.geomspace(EPS, T, 97).astype(np.float32)
    traced = jax.jit(lambda t, step: losses.ect_gap(t, step, stage_steps=10))
    for step in (0, 35, 79):  # start, middle (stage 3), end (stage 7) of 80 steps in 8 stages
        r = np.asarray(losses.ect_gap(jnp.asarray(t), step, stage_steps=10))
        np.testing.assert_allclose(r, expected_gap(t, step, 10), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(traced(t, step)), r)
        assert np.all((r >= EPS) & (r <= t)) and np.all(r[t > EPS] < t[t > EPS])
        assert int(losses.ect_stage(step, 10)) == step // 10
    # stage 0 is denoising (r = eps) exactly where n(t) >= q = 2, i.e. t <= ln 7
    r0 = np.asarray(losses.ect_gap(jnp.asarray(t), 0, stage_steps=10))
    np.testing.assert_array_equal(r0[t < math.log(7) - 1e-3], np.float32(EPS))
    assert np.all(r0[t > math.log(7) + 1e-3] > EPS)
    # unclamped, the gap t - r = t n(t) / q^(a + 1) shrinks by q from each stage to the next
    wide = jnp.asarray(t[t >= 1.0])
    gaps = [np.asarray(wide - losses.ect_gap(wide, 10 * a, stage_steps=10)) for a in range(1, 8)]
    for a, (gap, smaller) in enumerate(zip(gaps, gaps[1:]), start=1):
        np.testing.assert_allclose(gap / smaller, 2.0, rtol=2e-3, err_msg=f"stage {a}")
    # another q and the stage boundaries: steps 19 and 20 are stages 1 and 2
    for step, a in ((19, 1), (20, 2)):
        r = np.asarray(losses.ect_gap(wide, step, stage_steps=10, q=4.0))
        n = 1 + 8 / (1 + np.exp(np.asarray(wide)))
        np.testing.assert_allclose(r, np.asarray(wide) * (1 - n / 4.0 ** (a + 1)), rtol=1e-6)


def test_ect_times_are_the_clipped_lognormal():
    t = np.asarray(losses.ect_times(jax.random.key(0), 200_000))
    assert t.shape == (200_000,) and t.min() == pytest.approx(EPS) and t.max() == T
    inside = (t > EPS) & (t < T)
    log_t = np.log(t)
    assert np.median(log_t) == pytest.approx(-1.1, abs=0.03)
    # the clipped tails carry the log-normal's mass below eps and above T
    below = 0.5 * math.erfc(-(math.log(EPS) + 1.1) / (2.0 * math.sqrt(2)))
    assert np.mean(t <= EPS) == pytest.approx(below, abs=1e-3)
    assert np.std(log_t[inside]) < 2.0 and np.mean(inside) > 0.99


# --------------------------------------------------------------------------------------------------
# The pair loss


def test_a_first_stage_without_gap_is_the_denoising_loss_to_x0_plus_eps_z():
    """With b = 0 (n = 1 + k / 2 = 5 >= q) the whole first stage has r = eps, where the
    boundary-respecting f(x, eps) = x: the target is x0 + eps z, ECT's start."""
    f = parametrization.consistency_function(raw_net, EDM())
    x0 = jax.random.normal(jax.random.key(0), (64, 3))
    t = losses.ect_times(jax.random.key(1), 64).at[0].set(EPS)  # t clipped to eps: r = t, loss 0
    r = losses.ect_gap(t, 9, stage_steps=10, b=0.0)
    np.testing.assert_array_equal(np.asarray(r), np.float32(EPS))
    key = jax.random.key(2)
    z = jax.random.normal(key, x0.shape)
    x_r = x0 + EPS * z
    np.testing.assert_array_equal(np.asarray(f(x_r, r)), np.asarray(x_r))
    online = f(x0 + t[:, None] * z, t)
    for distance, weighting, weight in (
        (losses.pseudo_huber, "ict", jnp.where(t > r, 1 / jnp.maximum(t - r, 1e-30), 0)),
        (losses.squared_l2, "uniform", jnp.ones_like(t)),
    ):
        loss = losses.ect_loss(f, f, x0, key, t, r, distance=distance, weighting=weighting)
        np.testing.assert_allclose(loss, weight * distance(online, x_r), rtol=1e-5)
        assert float(loss[0]) == 0.0 and np.all(np.isfinite(loss))
        # the same loss is not the one to x0 itself (the boundary is at eps, not 0)
        assert not np.allclose(loss, weight * distance(online, x0), rtol=1e-5)
    # with the default b = 1 the first stage has a gap above t = ln 7: not denoising there
    r_default = losses.ect_gap(t, 9, stage_steps=10)
    assert np.any(np.asarray(r_default) > EPS)


def test_pair_loss_at_exact_consistency_functions():
    """Point data x0 = m: f*(x, t) = m + (x - m) eps / t maps x0 + t z and x0 + r z both to m +
    eps z, so the loss is 0 for every (t, r). Gaussian data N(0, s^2) (f*(x, t) = x sqrt((s^2 +
    eps^2) / (s^2 + t^2))): the two points of one z are not on one ODE path, and the mean
    squared-l2 loss is (s^2 + eps^2) 2 (1 - (s^2 + t r) / sqrt((s^2 + t^2)(s^2 + r^2))),
    O((t - r)^2), which the same-z coupling gives and an independent z does not."""
    with jax.enable_x64(True):
        m = jnp.array([0.3, -1.2, 2.0])
        x0 = jnp.tile(m, (512, 1))
        t = losses.ect_times(jax.random.key(3), 512)
        point = lambda x, t: m + (x - m) * (EPS / t)[:, None]  # noqa: E731
        identity = lambda x, t: x  # noqa: E731
        for step in (0, 20, 70):
            r = losses.ect_gap(t, step, stage_steps=10)
            for distance in (losses.squared_l2, losses.pseudo_huber):
                args = (x0, jax.random.key(4), t, r)
                assert float(losses.ect_loss(point, point, *args, distance=distance).max()) < 1e-12
                assert float(losses.ect_loss(identity, point, *args, distance=distance).mean()) > 1

        s, n = 0.5, 200_000
        x0 = s * jax.random.normal(jax.random.key(5), (n, 1), jnp.float64)
        exact = lambda x, t: jnp.sqrt((s**2 + EPS**2) / (s**2 + t**2))[:, None] * x  # noqa: E731
        options = dict(distance=losses.squared_l2, weighting="uniform")
        t_ = 1.5
        means = []
        for a in (1, 2, 3, 4):
            r_ = float(losses.ect_gap(jnp.asarray([t_]), 10 * a, stage_steps=10)[0])
            loss = losses.ect_loss(exact, exact, x0, jax.random.key(6), t_, r_, **options)
            closed = (
                2
                * (s**2 + EPS**2)
                * (1 - (s**2 + t_ * r_) / math.sqrt((s**2 + t_**2) * (s**2 + r_**2)))
            )
            loss = np.asarray(loss)
            assert abs(loss.mean() - closed) < 5 * loss.std() / math.sqrt(n), (a, closed)
            weighted = losses.ect_loss(
                exact, exact, x0, jax.random.key(6), t_, r_, distance=losses.squared_l2
            )
            np.testing.assert_allclose(weighted, loss / (t_ - r_), rtol=1e-12)
            means.append(closed)
            # the control: an independent z for x_r is O(1) away
            z = jax.random.normal(jax.random.key(7), x0.shape, x0.dtype)
            fresh = jax.random.normal(jax.random.key(6), x0.shape, x0.dtype)
            online = exact(x0 + t_ * fresh, jnp.full(n, t_))
            control = losses.squared_l2(online, exact(x0 + r_ * z, jnp.full(n, r_)))
            assert float(control.mean()) > 10 * closed
        # the gap halves per stage and the loss falls as (t - r)^2: the ratio tends to 4 from above
        ratios = [big / small for big, small in zip(means, means[1:])]
        assert ratios == sorted(ratios, reverse=True) and 4.0 < ratios[-1] < 5.0


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda x: losses.ect_loss(*x, 1.0, 2.0), "t must be >= r"),
        (lambda x: losses.ect_loss(*x, 1.0, 0.0), r"r must be > 0"),
        (lambda x: losses.ect_loss(*x, jnp.ones(3), 0.5), r"t must be a scalar or \[B\]"),
        (lambda x: losses.ect_loss(*x, 1.0, 0.5, weighting="snr"), "weighting must be one of"),
        (lambda x: losses.ect_gap(jnp.ones(4), 0, stage_steps=0), "stage_steps must be an int"),
        (lambda x: losses.ect_gap(jnp.ones(4), -1, stage_steps=5), "step must be >= 0"),
        (lambda x: losses.ect_gap(jnp.ones(4), 0, stage_steps=5, q=1.0), "q must be > 1"),
        (lambda x: losses.ect_gap(jnp.ones(4, int), 0, stage_steps=5), "t must be floating"),
        (lambda x: losses.ect_times(jax.random.key(0), 4, p_std=0.0), "p_std must be > 0"),
        (lambda x: losses.ect_times(jax.random.key(0), 0), "batch_size must be an int >= 1"),
    ],
)
def test_bad_loss_inputs_give_one_line_errors(call, match):
    identity = lambda x, t: x  # noqa: E731
    args = (identity, identity, jnp.ones((4, 2)), jax.random.key(0))
    with pytest.raises(ValueError, match=match) as info:
        call(args)
    assert "\n" not in str(info.value)
