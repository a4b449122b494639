"""Consistency models (Song et al. 2023; Song and Dhariwal 2023; Lu and Song 2024) in pure JAX.

``parametrization``: boundary-respecting consistency functions from a raw network or a denoiser, and
TrigFlow with its conversion to and from EDM coordinates. ``sampling``: one-step and multistep
consistency sampling. ``losses``: CT and CD losses and iCT's distance, curriculum and level
distribution.
"""
