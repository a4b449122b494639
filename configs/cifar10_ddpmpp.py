"""CIFAR-10 at paper scale: EDM's DDPM++ (56M parameters) with the EDM loss, as in Karras et al.
2022, Table 7 ('cifar10' config: batch 512, 200M training images, lr 1e-3 warmed up over 10M images,
EMA half-life 500k images with ramp-up ratio 0.05, dropout 0.13, horizontal flips; Heun with 18
levels, 35 NFE; FID 1.97 uncond.).

Documented, not run in CI: it needs an accelerator (about 2 days on 8 V100s in EDM), and the tfds
'cifar10' data prepared in ~/tensorflow_datasets (or data.data_dir). On a TPU pod or multi-GPU host
the same command scales: the batch is split over all devices of all hosts (training.batch_size is
global). For mixed precision add `--config.model.dtype=bfloat16`. Fields: base.py.
"""

from configs.base import base_config
from generative.models import ddpmpp_cifar10_config

BATCH = 512


def get_config():
    config = base_config("tfds", "unet")
    config.data.tfds_name = "cifar10"
    config.data.random_flip = True
    config.model = ddpmpp_cifar10_config()
    config.model.dropout = 0.13
    config.optim.lr = 1e-3
    config.optim.warmup_steps = 10_000_000 // BATCH
    config.ema.halflife_images = 500_000
    config.ema.rampup_ratio = 0.05
    config.training.batch_size = BATCH
    config.training.num_steps = 200_000_000 // BATCH
    config.training.log_every = 100
    config.training.sample_every = 10_000
    config.training.eval_every = 0
    config.training.checkpoint_every = 10_000
    config.training.num_grid_samples = 64
    config.eval.num_samples = 50_000
    return config
