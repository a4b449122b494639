"""Conditional DiGress on the multi-domain mixture (LGGM-style): condition on the domain, the
average degree and the clustering coefficient with classifier-free guidance.

Reports requested versus achieved statistics for guided (w = 1), plain conditional (w = 0) and
unconditional sampling from the same model. `data.max_nodes` 40 keeps the small graphs (all of
Comm20 and the small lobsters) so that the run fits a CPU; set it to 0 on an accelerator to train
on every domain. Shared settings: configs/graph_base.py. Guidance w = 2 is the old "w = 1" of
(1 + w) D_c - w D_null; generative.guidance uses D_null + w (D_c - D_null).
"""

from configs.graph_base import cpu_config


def get_config():
    config = cpu_config("digress", "mixture")
    config.data.max_nodes = 40
    config.task.condition = True
    config.training.cond_dropout = 0.1
    config.sample.guidance = 2.0
    config.task.num_steps = 100  # CPU-sized (three sampling passes); DiGress uses 500-1000
    config.training.time_limit_minutes = 15.0
    config.training.batch_size = 16
    config.eval.num_samples = 32
    config.eval.batch_size = 32
    config.eval.evaluators = ("graph_conditional", "graph_mmd")
    return config
