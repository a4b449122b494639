"""Shared starting point of the graph configs (every field: configs/base.py).

graph_config(task_name, data_name) is base_config with the graph transformer as the model, the
graph data fields, and the graph evaluation (MMD^2 against the test split); cpu_config adds the
small transformer every CPU run uses (4 layers; node/edge/global widths 32/16/16; FFN widths
64/32/32), AdamW at 5e-4 with gradient clipping at 1 (DiGress: 2e-4, weight decay 1e-12) and a
fixed 0.999 EMA. Configs override what differs.
"""

import ml_collections

from configs.base import base_config


def graph_config(task_name: str, data_name: str) -> ml_collections.ConfigDict:
    config = base_config(data_name, "mlp")
    config.data = ml_collections.ConfigDict({"name": data_name, "max_nodes": 0, "seed": 0})
    config.model = ml_collections.ConfigDict(
        {
            "num_layers": 4,
            "hidden_nodes": 64,
            "hidden_edges": 32,
            "hidden_globals": 32,
            "num_heads": 4,
            "ffn_nodes": 128,
            "ffn_edges": 64,
            "ffn_globals": 64,
            "structural_features": True,  # DiGress: cycles / spectrum / components of z_t as inputs
        }
    )
    config.task = ml_collections.ConfigDict(
        {"name": task_name, "condition": False, "degree_scale": 10.0}
    )
    if task_name == "digress":
        config.task.update(num_steps=500, transition="marginal", edge_weight=5.0, vlb_samples=16)
    else:
        config.task.precond = {"name": "edm"}
        config.task.loss = {"name": "edm", "p_mean": -1.2, "p_std": 1.2}
        config.sample.steps = 32
    config.optim.update(name="adamw", lr=2e-4, weight_decay=1e-12, warmup_steps=0, grad_clip=1.0)
    config.ema = ml_collections.ConfigDict({"kind": "fixed", "decay": 0.999})
    config.training.update(
        batch_size=32,
        num_steps=2000,
        log_every=50,
        sample_every=0,
        eval_every=0,
        checkpoint_every=1000,
        num_grid_samples=16,
    )
    config.eval = ml_collections.ConfigDict(
        {
            "num_samples": 0,
            "sampler": config.sample.sampler,
            "steps": config.sample.steps,
            "batch_size": 64,
            "evaluators": ("graph_mmd",) + (("digress_nll",) if task_name == "digress" else ()),
            "kernel": "gaussian_emd",
            "descriptors": ("degree", "clustering", "orbit"),
            "validity": "",
        }
    )
    return config


def cpu_config(task_name: str, data_name: str) -> ml_collections.ConfigDict:
    config = graph_config(task_name, data_name)
    config.model.update(
        num_layers=4,
        hidden_nodes=32,
        hidden_edges=16,
        hidden_globals=16,
        ffn_nodes=64,
        ffn_edges=32,
        ffn_globals=32,
    )
    config.optim.lr = 5e-4
    config.training.num_steps = 20000
    config.training.log_every = 100
    return config
