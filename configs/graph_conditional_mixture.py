"""Conditional DiGress on the multi-domain mixture (LGGM-style): condition on the domain, the
average degree and the clustering coefficient with classifier-free guidance.

Reports requested versus achieved statistics for guided (w = 1), plain conditional (w = 0) and
unconditional sampling from the same model. `data.max_nodes` 40 keeps the small graphs (all of
Comm20 and the small lobsters) so that the run fits a CPU; set it to 0 on an accelerator to train
on every domain. Shared settings: configs/graph_base.py.
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("digress", "mixture")
    config.data.max_nodes = 40
    config.condition.enabled = True
    config.condition.drop_prob = 0.1
    config.condition.guidance = 1.0
    config.digress.num_steps = 100  # CPU-sized (three sampling passes); DiGress uses 500-1000
    config.train.time_limit_minutes = 15.0
    config.train.batch_size = 16
    config.eval.num_samples = 32
    config.eval.batch_size = 32
    return config
