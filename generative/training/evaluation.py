"""Sample-quality metrics of a trained model, chosen by the data set.

* digits: in the feature space of the project's own digit classifier
  (generative.metrics.digit_classifier): the Fréchet distance of the samples to the test split
  ('fd'), next to the same distance between the real train and test splits ('fd_floor', what a
  perfect model would score up to sample size) and their ratio; precision, recall, density and
  coverage (k = 5) against the test split; the share of samples the classifier labels with
  confidence > 0.9 ('confident'); the class histogram.
* 2-D sets: the sliced Wasserstein distance and the RBF-kernel MMD^2 (bandwidths 0.1, 0.3, 1) to a
  fresh test draw of the same size, and the same two between train and test draws (the floors).
  Sets with known mode centres (MODE_CENTRES: eight_gaussians) add the share of samples within
  MODE_RADIUS of a centre ('within_0.4') and the smallest mode's share as a multiple of the fair
  share 1/K ('smallest_mode_share'; generative.metrics.lowdim.mode_shares), with the train draw's
  values as floors.
Other data sets (tfds) have no evaluator here; use generative.metrics.frechet with Inception-v3
weights.

Evaluators are registered by name (EVALUATORS; config.eval.evaluators picks them): each is a
function of the samples and an EvalContext returning a dict of metrics.
"""

import dataclasses
import functools
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np

from generative.data import create_dataset, digits, synthetic
from generative.metrics import digit_classifier, frechet, lowdim
from generative.metrics.prdc import prdc

CONFIDENCE = 0.9
MMD_BANDWIDTHS = (0.1, 0.3, 1.0)
# Data sets with known mode centres, and the radius of "on a mode": the 8 Gaussians have std 0.1 on
# a circle of radius 1.41 (neighbouring centres 1.08 apart), so 0.4 = 4 std holds 1 - e^-8 =
# 99.97% of the data and the disks do not overlap.
MODE_CENTRES = {"eight_gaussians": synthetic.eight_gaussians_centers}
MODE_RADIUS = 0.4


CLASSIFIER_CACHE = os.environ.get(
    "GENERATIVE_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "generative")
)


@functools.cache
def _classifier(seed: int = 0):
    """The digit classifier, trained once per machine and cached in $GENERATIVE_CACHE (default
    ~/.cache/generative) so every evaluation scores in the same feature space."""
    return digit_classifier.train_digit_classifier(seed, cache_dir=CLASSIFIER_CACHE)


def digit_metrics(samples: np.ndarray, classifier_seed: int = 0) -> dict:
    """Classifier-feature metrics of digit samples [M, 8, 8, 1] in [-1, 1] (see the module
    docstring)."""
    apply_fn, params = _classifier(classifier_seed)
    test_images, _ = digits.load_split("test")
    train_images, _ = digits.load_split("train")
    fake_features, fake_logits = map(np.asarray, apply_fn(params, np.clip(samples, -1.0, 1.0)))
    test_features = np.asarray(apply_fn(params, test_images)[0])
    train_features = np.asarray(apply_fn(params, train_images)[0])
    fd = frechet.fid(test_features, fake_features)
    fd_floor = frechet.fid(test_features, train_features)
    probabilities = np.asarray(jax.nn.softmax(fake_logits, axis=-1))
    histogram = np.bincount(probabilities.argmax(-1), minlength=digits.NUM_CLASSES) / len(samples)
    coverage = {k: float(v) for k, v in prdc(test_features, fake_features, k=5).items()}
    return dict(
        fd=fd,
        fd_floor=fd_floor,
        fd_ratio=fd / fd_floor,
        confident=float(np.mean(probabilities.max(-1) > CONFIDENCE)),
        class_histogram=histogram.tolist(),
        class_share_min=float(histogram.min()),
        class_share_max=float(histogram.max()),
        **coverage,
    )


def point_metrics(data_config, samples: np.ndarray, key, seed: int = 0) -> dict:
    """SWD and MMD^2 of 2-D samples [M, 2] against a test draw of M points, with train-vs-test
    floors; mode shares where the data set has known centres (see the module docstring)."""
    num = len(samples)
    test = next(create_dataset(data_config, split="test", batch_size=num, seed=seed))["x"]
    train = next(create_dataset(data_config, split="train", batch_size=num, seed=seed + 1))["x"]
    finite = np.all(np.isfinite(samples), axis=1)
    samples = np.where(finite[:, None], samples, 0.0)
    metrics = dict(
        swd=float(lowdim.sliced_wasserstein(samples, test, key)),
        swd_floor=float(lowdim.sliced_wasserstein(train, test, key)),
        mmd=float(lowdim.mmd(samples, test, MMD_BANDWIDTHS)),
        mmd_floor=float(lowdim.mmd(train, test, MMD_BANDWIDTHS)),
        finite=float(finite.mean()),
    )
    if data_config.name in MODE_CENTRES:
        centres = MODE_CENTRES[data_config.name]()
        name = f"within_{MODE_RADIUS:g}"
        off = np.where(finite[:, None], samples, np.nan)  # non-finite samples: on no mode
        for suffix, points in (("", off), ("_floor", train)):
            within, shares = lowdim.mode_shares(points, centres, MODE_RADIUS)
            metrics[name + suffix] = float(within)
            metrics["smallest_mode_share" + suffix] = float(lowdim.smallest_share_ratio(shares))
    return metrics


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an evaluator may read besides the samples: the run's config, its task, the weights
    the samples came from and a key for its own randomness."""

    config: ml_collections.ConfigDict
    task: Any
    params: Any
    key: Any


def _digits(samples, context: EvalContext) -> dict:
    return digit_metrics(samples)


def _points(samples, context: EvalContext) -> dict:
    return point_metrics(context.config.data, samples, context.key, context.config.seed)


# name -> evaluator(samples, context) -> {metric: value}; graph evaluators are added by
# generative.graphs.tasks when a graph task is built.
EVALUATORS: dict[str, Callable[[Any, EvalContext], dict]] = {"digits": _digits, "points": _points}

# Targets quoted in the end-of-run table (the main job's quality goal).
TARGETS = {"fd_ratio": "<= 3", "confident": ">= 0.9"}


def register_evaluator(name: str, evaluator: Callable[[Any, EvalContext], dict]) -> None:
    EVALUATORS[name] = evaluator


def check_evaluators(names) -> None:
    unknown = sorted(set(names) - set(EVALUATORS))
    if unknown:
        raise ValueError(
            f"eval.evaluators: unknown evaluator(s) {unknown}; known: {sorted(EVALUATORS)}"
        )


def evaluate(names, samples, context: EvalContext, progress=None) -> dict:
    """The metrics of every evaluator in `names` on `samples`, merged (names must not clash)."""
    check_evaluators(names)
    metrics = {}
    for name in names:
        metrics.update(EVALUATORS[name](samples, context))
        if progress is not None:
            progress(1)
    return metrics


def metrics_table(metrics: dict) -> str:
    """A small table of scalar metrics: name, value, and the floor ('<name>_floor') or target
    where known."""
    rows = []
    for name, value in metrics.items():
        if name.endswith("_floor") or np.ndim(value) != 0 or isinstance(value, str):
            continue
        value = float(value)
        reference = metrics.get(f"{name}_floor", TARGETS.get(name, ""))
        if isinstance(reference, float):
            reference = f"floor {reference:.4g}"
        rows.append((name, f"{value:.4g}", str(reference)))
    if not rows:
        return "(no metrics)"
    widths = [
        max(len(r[i]) for r in rows + [("metric", "value", "floor / target")]) for i in range(3)
    ]
    lines = [("metric", "value", "floor / target")] + rows
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in lines)
