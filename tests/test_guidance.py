"""Classifier-free guidance and condition dropout (generative.guidance): one convention,
D_w = D_null + w (D_cond - D_null), for denoisers and for categorical logits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from generative import guidance
from generative.closed_form import GaussianMixture


def two_class_denoiser():
    """The exact denoiser of a two-class mixture: class 0 at -1, class 1 at +1, the null class 2
    the mixture of both (what a CFG-trained network learns)."""
    cov = jnp.stack([0.05 * jnp.eye(2)] * 2)
    means = jnp.array([[-1.0, 0.0], [1.0, 0.0]])
    by_class = [
        GaussianMixture(jnp.array([1.0]), means[i : i + 1], cov[:1]).denoise for i in range(2)
    ]
    both = GaussianMixture(jnp.array([0.5, 0.5]), means, cov).denoise

    def denoise(x, sigma, labels):
        outs = jnp.stack([by_class[0](x, sigma), by_class[1](x, sigma), both(x, sigma)])
        return outs[labels, jnp.arange(x.shape[0])]

    return denoise


def test_weights_one_and_zero_are_the_conditional_and_unconditional_denoisers():
    denoise = two_class_denoiser()
    x = jax.random.normal(jax.random.key(0), (6, 2))
    sigma = jnp.full((6,), 0.7)
    labels = jnp.array([0, 1, 0, 1, 1, 0])
    null = jnp.full_like(labels, 2)
    conditional = denoise(x, sigma, labels)
    unconditional = denoise(x, sigma, null)
    assert float(jnp.abs(conditional - unconditional).max()) > 0.1  # the check can tell them apart
    guided = {
        w: guidance.classifier_free(denoise, w, cond={"labels": labels}, null={"labels": null})
        for w in (0.0, 1.0, 3.0)
    }
    np.testing.assert_allclose(guided[1.0](x, sigma), conditional, rtol=1e-6)
    np.testing.assert_allclose(guided[0.0](x, sigma), unconditional, rtol=1e-6)
    expected = unconditional + 3.0 * (conditional - unconditional)
    np.testing.assert_allclose(guided[3.0](x, sigma), expected, rtol=1e-5, atol=1e-6)
    # a traced weight takes the doubled-batch path; at 1 it must still be the conditional model
    traced = jax.jit(
        lambda x, s, w: guidance.classifier_free(
            denoise, w, cond={"labels": labels}, null={"labels": null}
        )(x, s)
    )
    np.testing.assert_allclose(traced(x, sigma, 1.0), conditional, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(traced(x, sigma, 3.0), expected, rtol=1e-5, atol=1e-6)
    # a scalar sigma is broadcast per example
    np.testing.assert_allclose(guided[3.0](x, 0.7), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="w must be >= 0"):
        guidance.classifier_free(denoise, -1.0, cond={"labels": labels}, null={"labels": null})


def test_guided_logits_mix_log_probabilities():
    def logits_fn(x, t, cond):  # the condition shifts the logits of the first category
        return (x + 3.0 * cond[:, None, :1] * jnp.array([1.0, 0.0]),)

    x = jax.random.normal(jax.random.key(1), (4, 5, 2))
    t = jnp.zeros(4)
    cond, null = jnp.ones((4, 3)), jnp.zeros((4, 3))
    log_c = jax.nn.log_softmax(logits_fn(x, t, cond)[0])
    log_u = jax.nn.log_softmax(logits_fn(x, t, null)[0])
    for w in (0.0, 1.0, 2.5):
        (out,) = guidance.classifier_free_logits(
            logits_fn, w, cond={"cond": cond}, null={"cond": null}
        )(x, t)
        expected = log_u + w * (log_c - log_u)
        np.testing.assert_allclose(
            jax.nn.log_softmax(out), jax.nn.log_softmax(expected), rtol=1e-5, atol=1e-5
        )


def test_condition_dropout_rate_and_null():
    n = 20_000
    labels = jnp.zeros((n,), jnp.int32)
    dropped = guidance.drop_condition(jax.random.key(0), labels, jnp.full_like(labels, 10), 0.1)
    share = float(jnp.mean(dropped == 10))
    # Binomial(20000, 0.1): standard deviation 0.0021; allow 5 sigma.
    assert abs(share - 0.1) < 5 * np.sqrt(0.1 * 0.9 / n)
    assert set(np.unique(dropped).tolist()) == {0, 10}
    # vectors: whole rows are dropped together
    vectors = jnp.ones((4000, 6))
    out = guidance.drop_condition(jax.random.key(1), vectors, jnp.zeros_like(vectors), 0.25)
    row_zero = np.asarray(jnp.all(out == 0, axis=1))
    assert np.all(row_zero | np.asarray(jnp.all(out == 1, axis=1)))
    assert abs(row_zero.mean() - 0.25) < 4 * np.sqrt(0.25 * 0.75 / 4000)
    assert guidance.drop_condition(jax.random.key(0), labels, labels, 0.0) is labels
    with pytest.raises(ValueError, match="dropout rate must be in"):
        guidance.drop_condition(jax.random.key(0), labels, labels, 1.0)


def test_image_task_samples_with_the_guided_denoiser(monkeypatch):
    """The diffusion task's class-conditional sampling goes through classifier_free with
    sample.guidance: w = 0 and w = 1 give the null-label and the labelled denoiser."""
    from configs import toy_edm
    from generative.training.diffusion_task import DiffusionTask

    config = toy_edm.get_config()
    config.data.name = "eight_gaussians"
    config.model.num_classes = 8
    config.model.width, config.model.num_blocks = 16, 1
    task = DiffusionTask(config)
    params = task.init(jax.random.key(0), task.example_batch())
    x = jax.random.normal(jax.random.key(1), (8, 2))
    sigma = jnp.full((8,), 1.3)
    labels = jnp.arange(8) % 8
    raw = task.denoiser(params)
    for w, expected_labels in ((1.0, labels), (0.0, jnp.full_like(labels, 8))):
        out = task.guided_denoiser(params, labels, w)(x, sigma)
        np.testing.assert_allclose(out, raw(x, sigma, labels=expected_labels), rtol=1e-5)
