"""generative: pure-functional JAX processes, losses and samplers, Flax models, graph diffusion."""

__version__ = "0.1.0"
