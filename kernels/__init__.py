"""Pallas kernels for the attention and denoising cores, with XLA references.

Models call the dispatch functions below; each takes ``impl`` in {'xla', 'pallas', 'cudnn', 'auto'}
(cuDNN for attention only) and computes the same function whichever implementation runs. The
kernels themselves live in kernels.flash_attention, kernels.adaln and kernels.groupnorm.
"""

from kernels.flash_attention import flash_attention
from kernels.ops import IMPLS, adaln_residual, attention, groupnorm_silu

__all__ = ["IMPLS", "adaln_residual", "attention", "flash_attention", "groupnorm_silu"]
