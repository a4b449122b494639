"""Pallas kernels for the attention and denoising cores, with XLA references.

Models call the dispatch functions below; each takes ``impl`` in {'xla', 'pallas', 'cudnn', 'auto'}
(cuDNN for attention only) and computes the same function whichever implementation runs.
"""

from kernels.ops import adaln_residual, attention, groupnorm_silu

__all__ = ["adaln_residual", "attention", "groupnorm_silu"]
