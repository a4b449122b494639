"""THE MAIN JOB: EDM (Karras et al. 2022) on scikit-learn's 8x8 digits with a small DDPM++-style
UNet, sized to train in about 10 minutes on a 2-core CPU (see benchmarks/RESULTS.md for its quality
and speed).

    python -m experiments.train --config configs/digits_edm.py --workdir workdirs/digits_edm

Unconditional; the EMA (half-life 20k images, ramped up) is sampled with Heun on 18 Karras levels.
Fields: base.py.
"""

from configs.base import base_config


def get_config():
    config = base_config("digits", "unet")
    config.model.model_channels = 32
    config.model.channel_mult = (1, 2)
    config.model.num_res_blocks = 1
    config.model.attn_resolutions = ()
    config.model.dropout = 0.0
    config.optim.lr = 2e-3
    config.optim.warmup_steps = 200
    config.training.batch_size = 128
    config.training.num_steps = 2000
    config.training.sample_every = 500
    config.training.checkpoint_every = 500
    config.training.eval_every = 0
    return config
