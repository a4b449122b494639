"""Adaptive probability-flow ODE solve (diffrax): the accuracy reference for the samplers.

The ODE is EDM's eq. 3 with s = 1, sigma(t) = t, integrated in u = log sigma, where it is smooth and
not stiff for sigma -> 0:

  dx/du = sigma dx/dsigma = x - D(x, sigma),  sigma = e^u,

from sigma_max down to sigma_min with Tsit5 and a PID step-size controller on the max-norm of the
scaled error over the whole batch (so every sample meets rtol/atol). The result at sigma 0 is then
the same final step that every sampler in ``generative.samplers`` takes from its last level,
x_0 = D(x(sigma_min), sigma_min) (an Euler step into sigma = 0); ``final_denoise=False`` gives
x(sigma_min) itself.
"""

import chex
import diffrax
import jax
import jax.numpy as jnp

# Tsit5 has seven stages with first-same-as-last: one evaluation to start, then six per attempted
# step. (diffrax re-evaluates the first stage after a rejected *first* step; the tiny first step
# below is accepted in practice, which the tests check against a counter.)
_EVALS_PER_STEP = 6
_FIRST_STEP_FRACTION = 1e-4


def _max_norm(error) -> jax.Array:
    return jnp.max(jnp.abs(error))


def probability_flow_sample(
    denoise,
    x: jax.Array,
    sigma_max,
    sigma_min,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-6,
    max_steps: int = 65536,
    final_denoise: bool = True,
) -> tuple[jax.Array, jax.Array]:
    """Solve the probability-flow ODE from x at sigma_max down to sigma_min (then into sigma 0).

    Args:
      denoise: denoise(x, sigma) -> E[x0 | x], called with x [B, *event] and sigma [B].
      x: [B, *event] at noise level sigma_max.
      sigma_max, sigma_min: start and end noise levels, sigma_max > sigma_min > 0.
      rtol, atol: the controller's relative and absolute tolerances.
      max_steps: diffrax's step limit (exceeding it is an error).
      final_denoise: if True return D(x(sigma_min), sigma_min), the sample at sigma 0; else
      x(sigma_min).

    Returns:
      (x, nfe): the solution and the number of denoiser evaluations it took, int32 scalar.
    """
    x = jnp.asarray(x)
    chex.assert_rank(x, {1, 2, 3, 4, 5})
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x must be a floating array [B, *event], got {x.dtype}")
    if isinstance(sigma_max, (int, float)) and isinstance(sigma_min, (int, float)):
        if not sigma_max > sigma_min > 0:
            raise ValueError(
                f"need sigma_max > sigma_min > 0, got sigma_max={sigma_max}, sigma_min={sigma_min}"
            )

    def call(x, sigma):
        return denoise(x, jnp.broadcast_to(sigma, x.shape[:1]).astype(x.dtype)).astype(x.dtype)

    def vector_field(u, x, args):
        return x - call(x, jnp.exp(u))

    u_start = jnp.log(jnp.asarray(sigma_max, x.dtype))
    u_end = jnp.log(jnp.asarray(sigma_min, x.dtype))
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field),
        diffrax.Tsit5(),
        t0=u_start,
        t1=u_end,
        dt0=(u_end - u_start) * _FIRST_STEP_FRACTION,
        y0=x,
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol, norm=_max_norm),
        max_steps=max_steps,
        saveat=diffrax.SaveAt(t1=True),
    )
    x_end = solution.ys[-1]
    nfe = 1 + _EVALS_PER_STEP * solution.stats["num_steps"]
    if final_denoise:
        return call(x_end, jnp.asarray(sigma_min, x.dtype)), nfe + 1
    return x_end, nfe
