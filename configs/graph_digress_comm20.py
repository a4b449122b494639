"""DiGress on Comm20 (community-small), scored with the GDSS Gaussian-EMD kernels.

Shared settings: configs/graph_base.py. CPU-sized: a 4-layer,
32-wide transformer trained for at most 25 minutes on a 2-core CPU (DiGress itself uses 8 layers,
256 wide, and hours on a GPU); raise the widths and drop the time limit on an accelerator.
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("digress", "comm20")
    config.task.num_steps = 500
    config.training.time_limit_minutes = 25.0
    config.training.batch_size = 32
    config.eval.num_samples = 64
    return config
