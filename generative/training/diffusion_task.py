"""The diffusion task: a Flax network preconditioned into a denoiser and trained with a core loss
under config.process, on images or low-dimensional points (generative.data).

With model.num_classes > 0 the network is class-conditional: training replaces labels by the null
class `num_classes` at rate training.cond_dropout, and sampling cycles the labels through the
classes with classifier-free guidance weight sample.guidance (generative.guidance).
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from generative import guidance
from generative.data import create_dataset, dataset_info
from generative.losses import make_loss
from generative.models import create_model
from generative.preconditioning import precondition, process_options
from generative.processes import process_from_config
from generative.training import sampling
from generative.training.config_checks import check_diffusion_fields
from generative.training.task import Phase, TaskBase
from generative.training.visualize import save_png


def network_fn(model, params, *, train=False, dropout_key=None):
    """raw_net(x_in, c_noise, **cond): the Flax network `model` with `params`, float32 out."""

    def raw_net(x_in, c_noise, **cond):
        rngs = {"dropout": dropout_key} if train and dropout_key is not None else {}
        out = model.apply({"params": params}, x_in, c_noise, train=train, rngs=rngs, **cond)
        return out.astype(jnp.float32)

    return raw_net


def network_denoiser(
    model, params, precond_name, precond_options, *, train=False, dropout_key=None
):
    """denoise(x, sigma, **cond) for the Flax network `model` with `params`, preconditioned as
    `precond_name` (generative.preconditioning) with `precond_options`."""
    raw_net = network_fn(model, params, train=train, dropout_key=dropout_key)
    return precondition(raw_net, precond_name, **precond_options)


class DiffusionTask(TaskBase):
    """One trainable group 'net'; phases: the denoising loss; samples: numpy [num, *shape]."""

    trainable = ("net",)

    def __init__(self, config):
        super().__init__(config)
        self.check_fields(config)
        self.info = dataset_info(config.data)
        self.num_classes = config.model.get("num_classes", 0) or 0
        if self.num_classes and self.num_classes != self.info["num_classes"]:
            raise ValueError(
                f"model.num_classes={self.num_classes} but the data set has "
                f"{self.info['num_classes']} classes"
            )
        self.model = create_model(config.model)
        self.process = process_from_config(config.process)
        self.loss = self.make_loss()
        precond = dict(config.task.precond)
        self.precond_name = precond.pop("name")
        self.precond_options = {**precond, **process_options(self.precond_name, self.process)}
        precondition(lambda x, c: x, self.precond_name, **self.precond_options)  # checks options
        self._samplers = {}

    def check_fields(self, config):
        """Rejects a config whose process, preconditioning, loss or samplers disagree."""
        check_diffusion_fields(config)

    def make_loss(self):
        """The per-example loss(denoise, key, x0, **cond) of config.task.loss."""
        return make_loss(self.config.task.loss, self.process)

    # ------------------------------------------------------------------ training

    def example_batch(self):
        batch = {"x": np.zeros((1, *self.info["shape"]), np.float32)}
        if self.num_classes:
            batch["label"] = np.zeros((1,), np.int32)
        return batch

    def train_batches(self, start_step, batch_size, process_index, process_count):
        return create_dataset(
            self.config.data,
            split="train",
            batch_size=batch_size,
            seed=self.config.seed,
            process_index=process_index,
            process_count=process_count,
            start_step=start_step,
        )

    def init(self, key, example_batch):
        params_key, dropout_key = jax.random.split(key)
        cond = {"labels": jnp.asarray(example_batch["label"])} if self.num_classes else {}
        variables = self.model.init(
            {"params": params_key, "dropout": dropout_key},
            jnp.asarray(example_batch["x"]),
            jnp.zeros((1,)),
            train=False,
            **cond,
        )
        return {"net": variables["params"]}

    def denoiser(self, params, *, train=False, dropout_key=None):
        """denoise(x, sigma, **cond) of the group 'net' in `params`."""
        return network_denoiser(
            self.model,
            params["net"],
            self.precond_name,
            self.precond_options,
            train=train,
            dropout_key=dropout_key,
        )

    def null_labels(self, labels):
        return jnp.full_like(labels, self.num_classes)

    def loss_fn(self, params, frozen, batch, key):
        """Batch mean of the configured loss; labels dropped to the null class for CFG."""
        del frozen
        dropout_key, loss_key, cond_key = jax.random.split(key, 3)
        cond = {}
        if self.num_classes:
            labels = batch["label"]
            cond["labels"] = guidance.drop_condition(
                cond_key, labels, self.null_labels(labels), self.config.training.cond_dropout
            )
        denoise = self.denoiser(params, train=True, dropout_key=dropout_key)
        per_example = self.loss(denoise, loss_key, batch["x"], **cond)
        chex.assert_shape(per_example, (batch["x"].shape[0],))
        return per_example.mean(), {}

    def phases(self):
        return [Phase("net", self.loss_fn)]

    # ------------------------------------------------------------------ sampling

    def guided_denoiser(self, params, labels, w):
        """The denoiser conditioned on `labels` (None: unconditional model) with guidance w."""
        denoise = self.denoiser(params)
        if labels is None:
            return denoise
        return guidance.classifier_free(
            denoise, w, cond={"labels": labels}, null={"labels": self.null_labels(labels)}
        )

    def sampler_fn(self, sampler, steps, w, size):
        """The jitted run(params, key, labels) -> `size` samples of make_sampler, cached."""
        cache_key = (sampler, steps, w, size)
        if cache_key not in self._samplers:
            self._samplers[cache_key] = jax.jit(self.make_sampler(sampler, steps, w, size))
        return self._samplers[cache_key]

    def make_sampler(self, sampler, steps, w, size):
        """run(params, key, labels): `size` samples of the core `sampler` with `steps` levels."""
        sigmas = None
        if sampler not in sampling.SDE_SAMPLERS:
            sigmas = sampling.noise_levels(self.process, self.config.sample, steps)

        def run(params, key, labels):
            return sampling.sample_denoiser(
                self.guided_denoiser(params, labels, w),
                self.process,
                key,
                (size, *self.info["shape"]),
                sampler=sampler,
                sigmas=sigmas,
                steps=steps,
            )

        return run

    def sample(self, params, key, num, *, sampler=None, steps=None, guidance_weight=None,
               batch_size=None, progress=None):  # fmt: skip
        """numpy [num, *shape] samples, `batch_size` (default eval.batch_size) per jitted call;
        chunk c uses key fold_in(key, c * batch_size). Class-conditional models cycle the labels
        0, 1, ..., num_classes - 1."""
        config = self.config
        sampler = sampler or config.sample.sampler
        steps = steps or config.sample.steps
        w = config.sample.guidance if guidance_weight is None else guidance_weight
        batch_size = batch_size or config.eval.batch_size
        out = []
        for start in range(0, num, batch_size):
            size = min(batch_size, num - start)
            labels = None
            if self.num_classes:
                labels = jnp.arange(start, start + size, dtype=jnp.int32) % self.num_classes
            run = self.sampler_fn(sampler, steps, w, size)
            out.append(np.asarray(run(params, jax.random.fold_in(key, start), labels)))
            if progress is not None:
                progress(size)
        return np.concatenate(out)

    def save_samples(self, path, samples):
        save_png(path, samples)
