"""Metrics against closed forms, brute force and hand-made point sets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from generative.data import digits, synthetic
from generative.metrics import (
    digit_classifier,
    fid,
    frechet_distance,
    inception_score,
    kid,
    mmd,
    prdc,
    sliced_wasserstein,
    wasserstein_1d,
)
from generative.metrics.lowdim import mode_shares, smallest_share_ratio
from generative.training import evaluation

# ---------------------------------------------------------------------------------- low-dim


def test_wasserstein_1d_matches_scipy_and_the_shift_closed_form():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=37), rng.exponential(size=23)  # unequal sizes
    np.testing.assert_allclose(
        wasserstein_1d(jnp.asarray(u), jnp.asarray(v), p=1),
        scipy.stats.wasserstein_distance(u, v),
        rtol=1e-5,
    )
    # A shifted copy: every quantile moves by delta, so W_p = |delta| for every p.
    for p in (1.0, 2.0):
        np.testing.assert_allclose(
            wasserstein_1d(jnp.asarray(u), jnp.asarray(u + 0.7), p), 0.7, rtol=1e-5
        )


def test_sliced_wasserstein_zero_for_same_sample_and_closed_form_for_a_shift():
    x = jax.random.normal(jax.random.key(0), (200, 3))
    key = jax.random.key(1)
    assert float(sliced_wasserstein(x, x, key)) == 0.0
    # y = x + delta: the projected samples shift by theta . delta, so
    # SW_2^2 = E (theta . delta)^2 = |delta|^2 / d; (theta . delta)^2 / |delta|^2 ~ Beta(1/2, 1).
    num_projections, d = 2000, 3
    beta_std = np.sqrt(scipy.stats.beta(0.5, (d - 1) / 2).var())
    previous = 0.0
    for size in (0.5, 1.0, 2.0):
        delta = size * jnp.array([1.0, -1.0, 0.5]) / 1.5
        estimate = float(sliced_wasserstein(x, x + delta, key, num_projections) ** 2)
        exact = float(delta @ delta) / d
        assert abs(estimate - exact) < 5 * exact * d * beta_std / np.sqrt(num_projections)
        assert estimate > previous
        previous = estimate


def test_sliced_wasserstein_between_gaussians_tracks_the_mean_shift():
    # 1-D N(0, 1) versus N(delta, 1): W_2 = |delta| exactly; d = 1 has a single direction +-1.
    for delta in (0.0, 0.5, 2.0):
        x = jax.random.normal(jax.random.key(2), (4000, 1))
        y = jax.random.normal(jax.random.key(3), (3000, 1)) + delta
        estimate = float(sliced_wasserstein(x, y, jax.random.key(4), 8))
        assert abs(estimate - delta) < 0.06  # empirical W_2 of n ~ 3000 normals: ~ 0.02


def _gaussian_mmd2(delta_sq, d, s, bandwidth):
    """MMD^2 between N(0, s^2 I_d) and N(delta, s^2 I_d) under exp(-|a - b|^2 / (2 bw^2))."""
    total = bandwidth**2 + 2 * s**2
    return 2 * (bandwidth**2 / total) ** (d / 2) * (1 - np.exp(-delta_sq / (2 * total)))


def test_mmd_zero_for_same_sample_and_matches_the_gaussian_closed_form():
    x = jax.random.normal(jax.random.key(0), (300, 2))
    assert abs(float(mmd(x, x, [0.5, 1.0], unbiased=False))) < 1e-6
    bandwidths = (0.5, 2.0)
    for delta in (0.0, 0.5, 1.0):
        shift = jnp.array([delta, 0.0])
        estimates = []
        for r in range(6):
            kx, ky = jax.random.split(jax.random.key(10 + r))
            x = jax.random.normal(kx, (600, 2))
            y = jax.random.normal(ky, (600, 2)) + shift
            estimates.append(float(mmd(x, y, bandwidths)))
        exact = sum(_gaussian_mmd2(delta**2, 2, 1.0, b) for b in bandwidths)
        error_bar = 5 * np.std(estimates, ddof=1) / np.sqrt(len(estimates)) + 1e-6
        assert abs(np.mean(estimates) - exact) < error_bar, (delta, estimates, exact)


def test_mode_shares_at_the_centres_and_of_one_mode_only():
    centres = jnp.asarray(synthetic.eight_gaussians_centers())
    within, shares = mode_shares(jnp.tile(centres, (5, 1)), centres, 0.4)  # 5 samples per centre
    assert float(within) == 1.0
    np.testing.assert_allclose(shares, np.full(8, 1 / 8))
    assert float(smallest_share_ratio(shares)) == pytest.approx(1.0)
    # All samples near mode 3 (inside the radius): within 1, the other modes empty.
    near = centres[3] + 0.1 * jax.random.normal(jax.random.key(0), (200, 2)).clip(-1, 1)
    within, shares = mode_shares(near, centres, 0.4)
    assert float(within) == 1.0 and float(shares[3]) == 1.0
    assert float(smallest_share_ratio(shares)) == 0.0
    # Off every mode (the origin is 1.41 from each centre) and non-finite samples count nowhere.
    off = jnp.array([[0.0, 0.0], [jnp.nan, 0.0], [jnp.inf, 1.0], *centres[:1]])
    within, shares = mode_shares(off, centres, 0.4)
    assert float(within) == 0.25 and float(shares[0]) == 0.25 and float(shares[1:].sum()) == 0


def test_mode_shares_within_radius_of_gaussian_blobs_is_the_rayleigh_cdf():
    """The share within r of a 2-D isotropic Gaussian of std s is 1 - exp(-r^2 / (2 s^2)); the
    blobs are far apart, so the nearest-centre assignment is exact."""
    centres = 10.0 * jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    n, s = 8000, 0.3
    for r in (0.2, 0.4, 0.6):
        exact = 1 - np.exp(-(r**2) / (2 * s**2))
        kc, kn = jax.random.split(jax.random.key(int(10 * r)))
        labels = jax.random.randint(kc, (n,), 0, 4)
        x = centres[labels] + s * jax.random.normal(kn, (n, 2))
        within, shares = mode_shares(x, centres, r)
        error_bar = 5 * np.sqrt(exact * (1 - exact) / n)  # binomial, 5 sigma
        assert abs(float(within) - exact) < error_bar, (r, float(within), exact)
        np.testing.assert_allclose(float(shares.sum()), float(within), rtol=1e-6)
        counts = np.bincount(np.asarray(labels), minlength=4)
        # Each mode's share is its label share times the Rayleigh CDF (up to the binomial noise).
        np.testing.assert_allclose(shares, counts / n * exact, atol=5 * np.sqrt(exact / 4 / n))


def test_mode_shares_bad_inputs():
    centres = jnp.zeros((3, 2))
    for samples, cs, radius in [
        (jnp.zeros(5), centres, 0.4),  # not [n, d]
        (jnp.zeros((5, 3)), centres, 0.4),  # d mismatch
        (jnp.zeros((0, 2)), centres, 0.4),  # no samples
        (jnp.zeros((5, 2)), jnp.zeros((0, 2)), 0.4),  # no centres
        (jnp.zeros((5, 2)), centres, 0.0),
        (jnp.zeros((5, 2)), centres, -1.0),
        (jnp.zeros((5, 2)), centres, float("nan")),
    ]:
        with pytest.raises(ValueError):
            mode_shares(samples, cs, radius)
    for shares in (jnp.zeros(()), jnp.zeros(0), jnp.zeros((2, 2))):
        with pytest.raises(ValueError):
            smallest_share_ratio(shares)


def test_point_metrics_mode_shares_only_for_sets_with_known_centres():
    import ml_collections

    config = ml_collections.ConfigDict({"name": "eight_gaussians"})
    real, _ = synthetic.sample("eight_gaussians", np.random.default_rng(5), 1000)
    metrics = evaluation.point_metrics(config, real, jax.random.key(0))
    assert metrics["within_0.4"] > 0.99 and metrics["within_0.4_floor"] > 0.99
    assert 0.7 < metrics["smallest_mode_share"] <= 1.0
    # One mode dropped (its samples moved onto mode 0) and a tenth non-finite.
    centres = synthetic.eight_gaussians_centers()
    nearest = np.argmin(np.linalg.norm(real[:, None] - centres[None], axis=-1), axis=1)
    dropped = np.where((nearest == 1)[:, None], real - centres[1] + centres[0], real)
    dropped[:100] = np.nan
    metrics = evaluation.point_metrics(config, dropped, jax.random.key(0))
    assert metrics["smallest_mode_share"] == 0.0 and metrics["finite"] == 0.9
    assert 0.89 < metrics["within_0.4"] <= 0.9 + 1e-6
    moons = evaluation.point_metrics(
        ml_collections.ConfigDict({"name": "moons"}), real, jax.random.key(0)
    )
    assert set(moons) == {"swd", "swd_floor", "mmd", "mmd_floor", "finite"}


# ---------------------------------------------------------------------------------- Fréchet


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    mu1, mu2 = rng.normal(size=5), rng.normal(size=5)
    # Diagonal covariances: |mu1 - mu2|^2 + sum (sqrt a - sqrt b)^2.
    exact = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    np.testing.assert_allclose(
        frechet_distance(mu1, np.diag(a), mu2, np.diag(b)), exact, rtol=1e-12
    )
    # Rank-deficient covariances (dead features): the zero directions contribute nothing.
    a0, b0 = np.append(a, 0.0), np.append(b, 0.0)
    np.testing.assert_allclose(
        frechet_distance(np.append(mu1, 0), np.diag(a0), np.append(mu2, 0), np.diag(b0)),
        exact,
        rtol=1e-10,
    )
    # General, non-commuting covariances: against scipy's general matrix square root.
    m1, m2 = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    c1, c2 = m1 @ m1.T, m2 @ m2.T
    brute = np.sum((mu1[:1] - mu2[:1]) ** 2) + np.trace(
        c1 + c2 - 2 * scipy.linalg.sqrtm(c1 @ c2).real
    )
    mean1, mean2 = np.zeros(6), np.zeros(6)
    mean1[0], mean2[0] = mu1[0], mu2[0]
    np.testing.assert_allclose(frechet_distance(mean1, c1, mean2, c2), brute, rtol=1e-8)
    # Identical statistics, ill-conditioned (condition number ~1e15) or rank-deficient: zero to
    # float64 rounding (square roots of eigenvalues would leave errors ~ sqrt(eps) |C| instead).
    mean = rng.normal(size=64)
    ill = rng.normal(size=(64, 64)) * np.logspace(-4, 2, 64)
    low_rank = rng.normal(size=(64, 50))
    for m in (ill, low_rank):
        cov = m @ m.T
        assert abs(frechet_distance(mean, cov, mean, cov)) < 1e-12 * np.trace(cov)


def test_fid_of_samples_and_bad_shapes():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4000, 3))
    y = rng.normal(size=(4000, 3)) * 2.0 + 1.0
    # N(0, I) vs N(1, 4 I) in 3-D: 3 * 1 + 3 * (2 - 1)^2 = 6, up to sampling error ~ 0.1.
    assert abs(fid(x, y) - 6.0) < 0.3
    with pytest.raises(ValueError, match="mu"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(2), np.eye(2))


def test_inception_score_extremes():
    # Uniform predictions: p(y|x) = p(y), IS = 1.
    np.testing.assert_allclose(inception_score(np.zeros((100, 7)), num_splits=4)[0], 1.0)
    # Confident predictions spread evenly over K classes: KL = log K, IS = K.
    logits = 60.0 * np.eye(5)[np.arange(100) % 5]
    mean, std = inception_score(logits, num_splits=4)
    np.testing.assert_allclose(mean, 5.0, rtol=1e-6)
    assert std < 1e-6


def test_kid_is_the_unbiased_polynomial_mmd_and_grows_with_a_shift():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    shifted = y + 0.5

    def k(a, b):
        return (a @ b.T / 4 + 1.0) ** 3

    # Subsets of all 50 points are permutations, which leave the unbiased MMD^2 unchanged.
    n = 50
    kxx, kyy, kxy = k(x, x), k(shifted, shifted), k(x, shifted)
    brute = (
        (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )
    key = jax.random.key(0)
    got = kid(jnp.asarray(x), jnp.asarray(shifted), key, num_subsets=3, subset_size=50)
    np.testing.assert_allclose(got, brute, rtol=1e-4)
    same = kid(jnp.asarray(x), jnp.asarray(y), key, num_subsets=3, subset_size=50)
    assert float(same) < 0.5 * float(got)


# ------------------------------------------------------------------------------------- PRDC


def test_prdc_on_points_on_a_line():
    # Real 0..9 on a line, k = 1: every real radius is 1. Fake 0.5 lies strictly inside the balls
    # of 0 and 1; fake 100 lies in none. Fake radii are 99.5, so every real point is recalled.
    real = jnp.stack([jnp.arange(10.0), jnp.zeros(10)], 1)
    fake = jnp.array([[0.5, 0.0], [100.0, 0.0]])
    got = prdc(real, fake, k=1)
    np.testing.assert_allclose(
        [got["precision"], got["recall"], got["density"], got["coverage"]], [0.5, 1, 1, 0.2]
    )


def test_prdc_on_a_square():
    # Real: unit-square corners (k = 1 radii 1). Fakes near the centre lie in all four balls:
    # precision 1, density 8 / 2 = 4, coverage 1; their own radii (0.1) reach no corner: recall 0.
    real = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    fake = jnp.array([[0.5, 0.5], [0.5, 0.6]])
    got = prdc(real, fake, k=1)
    np.testing.assert_allclose(
        [got["precision"], got["recall"], got["density"], got["coverage"]], [1, 0, 4, 1]
    )
    with pytest.raises(ValueError, match="k must be"):
        prdc(real, fake, k=2)


# --------------------------------------------------------------------------- digit classifier


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    cache_dir = str(tmp_path_factory.mktemp("classifier"))
    _, params = digit_classifier.train_digit_classifier(0, cache_dir=cache_dir)
    return cache_dir, params


def test_digit_classifier_accuracy_cache_and_features(classifier):
    cache_dir, params = classifier
    assert digit_classifier.accuracy(params, "test") > 0.97  # 0.986 measured with seed 0
    _, cached = digit_classifier.train_digit_classifier(0, cache_dir=cache_dir)
    jax.tree.map(np.testing.assert_array_equal, params, cached)
    train, _ = digits.load_split("train")
    test, _ = digits.load_split("test")
    train_features = np.asarray(digit_classifier.digit_features(params, train))
    test_features = np.asarray(digit_classifier.digit_features(params, test))
    assert test_features.shape == (359, digit_classifier.FEATURE_DIM)
    # Real test digits mostly get confident labels (0.95 measured), so the share of confident
    # samples is a meaningful quality measure.
    probabilities = jax.nn.softmax(digit_classifier.digit_logits(params, test))
    assert probabilities.shape == (359, 10) and np.mean(probabilities.max(1) > 0.9) > 0.9
    # The train-test Fréchet floor is small next to the distance to uniform noise images.
    noise = np.random.default_rng(0).uniform(-1, 1, test.shape).astype(np.float32)
    noise_features = np.asarray(digit_classifier.digit_features(params, noise))
    assert 0 < fid(train_features, test_features) < 0.05 * fid(noise_features, test_features)
    with pytest.raises(ValueError, match="8, 8, 1"):
        digit_classifier.digit_features(params, train[:, :4])


def test_digit_classifier_is_deterministic_from_its_seed():
    _, a = digit_classifier.train_digit_classifier(3, num_steps=20)
    _, b = digit_classifier.train_digit_classifier(3, num_steps=20)
    _, c = digit_classifier.train_digit_classifier(4, num_steps=20)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a["Dense_1"]["kernel"], c["Dense_1"]["kernel"])


# -------------------------------------------------------------------------------- Inception-v3


def test_inception_forward_with_random_weights_and_save_load_round_trip(tmp_path):
    from generative.metrics import inception

    variables = inception.random_variables(0)
    params = variables["params"]
    n_params = sum(leaf.size for leaf in jax.tree.leaves(params))
    assert n_params == 23_850_960  # torchvision's Inception3 with a 1008-way fc, minus aux logits
    # Make the BatchNorm statistics non-trivial so the round trip checks every array.
    rng = np.random.default_rng(1)
    stats = jax.tree.map(
        lambda a: a + rng.uniform(0, 0.1, a.shape).astype(np.float32), variables["batch_stats"]
    )
    variables = dict(variables, batch_stats=stats)
    images = jnp.asarray(rng.uniform(-1, 1, (2, 75, 75, 1)), jnp.float32)  # smallest valid size
    out = inception.apply(variables, images, resize=False)
    assert out["pool"].shape == (2, 2048) and out["logits"].shape == (2, 1008)
    assert np.all(np.isfinite(out["pool"])) and not np.allclose(out["pool"][0], out["pool"][1])
    for name in ("weights.npz", "weights.msgpack"):
        path = str(tmp_path / name)
        inception.save_variables(path, variables)
        loaded = inception.load_variables(path)
        jax.tree.map(np.testing.assert_array_equal, variables, loaded)
    features = inception.feature_fn(loaded, resize=False)(images)
    np.testing.assert_array_equal(features, out["pool"])
    # Wrong files and inputs fail with clear messages.
    del params["fc"]
    inception.save_variables(str(tmp_path / "bad.npz"), variables | {"params": params})
    with pytest.raises(ValueError, match="missing.*fc"):
        inception.load_variables(str(tmp_path / "bad.npz"))
    with pytest.raises(ValueError, match="no Inception weights"):
        inception.load_variables(str(tmp_path / "absent.npz"))
    with pytest.raises(ValueError, match="at least 75"):
        inception.apply(loaded, images[:, :32, :32], resize=False)
