"""Flash attention in Pallas: forward, forward-mode (JVP) and reverse-mode kernels.

softmax(q k^T * scale + mask) v over [batch, length, heads, head_dim] arrays, computed block by
block with the online softmax of FlashAttention (Dao et al. 2022, arXiv:2205.14135): for each
block of queries, keys are visited in blocks while a running row maximum m, normaliser z and
accumulator acc (all float32) are rescaled,

    m' = max(m, rowmax(s)),  z' = e^(m - m') z + rowsum(e^(s - m')),
    acc' = e^(m - m') acc + e^(s - m') v,

and the output is acc / z with the log-sum-exp lse = m + log z saved for the derivatives.

Derivatives. JAX refuses ``jax.jvp`` of a ``custom_vjp`` function, so both modes come from one
``custom_jvp`` rule: the primal runs the forward kernel, and the tangent is a primitive
(``flash_attention_tangent``) that is linear in (dq, dk, dv). With P = softmax(S) recomputed from
lse, dS = scale (dq k^T + q dk^T) and o the primal output, its kernel evaluates

    t_i = sum_j P_ij [dv_j + dS_ij (v_j - o_i)].

The transpose of this linear map is the attention VJP, so the primitive's transpose rule runs the
two backward kernels of FlashAttention-2 (one for dq, one for dk and dv), which recompute P from
the saved lse and use delta_i = rowsum(dO_i * o_i):

    dP = dO v^T,  dS = P (dP - delta),  dq = scale dS k,  dk = scale dS^T q,  dv = P^T dO.

The custom function returns (o, lse) so that its rule can call it for the primal and stay
differentiable; the tangent of lse is sum_j P_ij dS_ij, and an lse cotangent enters the backward
as delta_i -> delta_i - dlse_i. ``jax.jvp``, ``jax.grad``/``jax.vjp``, ``jax.vmap`` and
``jax.jit`` all work, and so do second derivatives through the tangent (reverse-over-forward, as
in consistency-training losses); their part from moving q, k, v is the XLA reference's, which
materialises the T x T scores.

Two grid layouts share the kernel bodies:

* ``platform='gpu'`` (Triton backend, selected explicitly with ``plgpu.CompilerParams`` because
  the default Mosaic GPU lowering needs Hopper): grid (batch, heads, query blocks); one program
  holds its query block and loops over key blocks with ``fori_loop``. Arrays stay in the
  [B, T, H, D] layout; head dims that are not powers of two are zero-padded (Triton tiles are
  powers of two).
* ``platform='tpu'`` (Mosaic TPU): grid (batch, heads, query blocks, key blocks) with the key axis
  'arbitrary' and m, z, acc in VMEM scratch. Arrays are transposed to [B, H, T, D] so the last two
  block dims are (sequence block, full head dim), as the TPU tiling rules require (second-last
  divisible by 8, last divisible by 128 or equal to the array dim); key-mask blocks have the key
  block in the lane dim, so key blocks are multiples of 128 or the whole padded length.

Sequence lengths that are not block multiples are zero-padded; padded keys are masked out and
padded query rows are sliced off. A query row with no valid key (all masked) gives 0 here, whereas
``jax.nn.dot_product_attention`` averages v over all keys; avoid such rows.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as plgpu
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)  # finite, so masked - masked = 0, not NaN
_MIN_BLOCK = 16  # smallest tile a Triton dot accepts
_TPU_LANES = 128


@dataclasses.dataclass(frozen=True)
class _Config:
    """Static description of one attention call (hashable: it is a primitive parameter)."""

    platform: str  # 'gpu' or 'tpu': which grid layout
    interpret: bool
    causal: bool
    scale: float
    q_len: int
    kv_len: int
    head_dim: int
    block_q: int
    block_k: int

    @property
    def padded_q_len(self):
        return _round_up(self.q_len, self.block_q)

    @property
    def padded_kv_len(self):
        return _round_up(self.kv_len, self.block_k)

    @property
    def padded_head_dim(self):
        if self.platform == "gpu":
            return max(_next_power_of_2(self.head_dim), _MIN_BLOCK)
        return self.head_dim


def _round_up(n, m):
    return -(-n // m) * m


def _next_power_of_2(n):
    return 1 << (n - 1).bit_length()


def _default_block(length, platform, head_dim):
    """Power-of-two block, at most 128 (64 for head_dim > 128), no longer than the padded length.

    On TPU a block shorter than 128 is used only when it covers the whole (padded) sequence.
    Unmeasured defaults: no GPU or TPU was available when this was written.
    """
    cap = 64 if head_dim > 128 and platform == "gpu" else 128
    return min(cap, max(_MIN_BLOCK, _next_power_of_2(length)))


def _check_block(name, block, length, platform):
    """Powers of two; on TPU (compiled) key blocks are lanes of the mask: 128k or everything."""
    if block <= 0 or block & (block - 1):
        raise ValueError(f"{name} must be a positive power of two, got {block}")
    if platform == "tpu" and block % _TPU_LANES and block < length:
        raise ValueError(
            f"{name}={block} on TPU must be a multiple of {_TPU_LANES} or cover the whole "
            f"sequence (length {length})"
        )


# ----------------------------------------------------------------------------------------------
# Layout: padding, transposition and BlockSpecs for the two grid layouts.


def _to_kernel_layout(x, length, cfg):
    """[B, T, H, D] -> padded [B, T', H, D'] (gpu) or [B, H, T', D'] (tpu)."""
    pad_t = length - x.shape[1]
    pad_d = cfg.padded_head_dim - x.shape[3]
    x = jnp.pad(x, ((0, 0), (0, pad_t), (0, 0), (0, pad_d)))
    return x if cfg.platform == "gpu" else x.transpose(0, 2, 1, 3)


def _from_kernel_layout(x, length, cfg):
    if cfg.platform == "tpu":
        x = x.transpose(0, 2, 1, 3)
    return x[:, :length, :, : cfg.head_dim]


def _seq_spec(cfg, block, full_len, depth, role):
    """BlockSpec of a [B, T, H, D] (gpu) / [B, H, T, D] (tpu) array, squeezing batch and head.

    role 'outer': the sequence block is grid axis 2. role 'inner': the sequence is reduced over,
    whole in one program on gpu (the kernel loops), one block per grid axis 3 step on tpu.
    """
    if cfg.platform == "gpu":
        if role == "outer":
            return pl.BlockSpec((None, block, None, depth), lambda b, h, i: (b, i, h, 0))
        return pl.BlockSpec((None, full_len, None, depth), lambda b, h, i: (b, 0, h, 0))
    if role == "outer":
        return pl.BlockSpec((None, None, block, depth), lambda b, h, i, j: (b, h, i, 0))
    return pl.BlockSpec((None, None, block, depth), lambda b, h, i, j: (b, h, j, 0))


def _row_stat_spec(cfg, block, role):
    """BlockSpec of a per-query statistic stored as [B, H, Tq', 1] (lse, delta)."""
    if cfg.platform == "gpu":
        if role == "outer":
            return pl.BlockSpec((None, None, block, 1), lambda b, h, i: (b, h, i, 0))
        return pl.BlockSpec((None, None, cfg.padded_q_len, 1), lambda b, h, i: (b, h, 0, 0))
    if role == "outer":
        return pl.BlockSpec((None, None, block, 1), lambda b, h, i, j: (b, h, i, 0))
    return pl.BlockSpec((None, None, block, 1), lambda b, h, i, j: (b, h, j, 0))


def _key_mask_spec(cfg, role):
    """BlockSpec of the int32 key mask stored as [B, 1, Tk'] (keys in the lane dimension)."""
    if cfg.platform == "gpu":
        if role == "outer":
            return pl.BlockSpec((None, 1, cfg.block_k), lambda b, h, i: (b, 0, i))
        return pl.BlockSpec((None, 1, cfg.padded_kv_len), lambda b, h, i: (b, 0, 0))
    if role == "outer":
        return pl.BlockSpec((None, 1, cfg.block_k), lambda b, h, i, j: (b, 0, i))
    return pl.BlockSpec((None, 1, cfg.block_k), lambda b, h, i, j: (b, 0, j))


def _pallas_call(kernel, cfg, *, grid_outer, num_inner, out_shape, in_specs, out_specs, scratch):
    batch, heads, outer = grid_outer
    if cfg.platform == "gpu":
        grid = (batch, heads, outer)
        num_warps = 4 if cfg.padded_head_dim <= 64 else 8
        params = plgpu.CompilerParams(num_warps=num_warps, num_stages=2)
        scratch = ()
    else:
        grid = (batch, heads, outer, num_inner)
        params = pltpu.CompilerParams(
            dimension_semantics=("parallel", "parallel", "parallel", "arbitrary")
        )
        scratch = [pltpu.VMEM(shape, jnp.float32) for shape in scratch]
    return pl.pallas_call(
        kernel,
        grid=grid,
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        scratch_shapes=scratch,
        compiler_params=None if cfg.interpret else params,
        interpret=cfg.interpret,
    )


# ----------------------------------------------------------------------------------------------
# Kernel helpers shared by the two layouts.


def _reduce(cfg, *, lo, hi, num_inner, init, step, finish, scratch_refs):
    """Run carry = step(j, carry) for inner blocks j in [lo, hi), then finish(carry).

    gpu: a loop inside the program. tpu: one j per step of grid axis 3, carry kept in scratch.
    """
    if cfg.platform == "gpu":
        finish(lax.fori_loop(lo, hi, step, init))
        return
    j = pl.program_id(3)

    @pl.when(j == 0)
    def _init():
        for ref, value in zip(scratch_refs, init):
            ref[...] = value

    @pl.when((j >= lo) & (j < hi))
    def _step():
        carry = step(j, tuple(ref[...] for ref in scratch_refs))
        for ref, value in zip(scratch_refs, carry):
            ref[...] = value

    @pl.when(j == num_inner - 1)
    def _finish():
        finish(tuple(ref[...] for ref in scratch_refs))


def _inner_rows(ref, cfg, j, block):
    """Rows of inner block j: a slice of the whole sequence (gpu) or the block itself (tpu)."""
    if cfg.platform == "gpu":
        return ref[pl.ds(pl.multiple_of(j * block, block), block), :]
    return ref[...]


def _inner_mask(ref, cfg, j):
    if cfg.platform == "gpu":
        return ref[:, pl.ds(pl.multiple_of(j * cfg.block_k, cfg.block_k), cfg.block_k)]
    return ref[...]


def _dot(a, b, contract=(1, 1)):
    """a @ b^T (contract=(1, 1)), a @ b (contract=(1, 0)) or a^T @ b ((0, 0)) in float32."""
    dims = (((contract[0],), (contract[1],)), ((), ()))
    return lax.dot_general(a, b, dims, preferred_element_type=jnp.float32)


def _valid(cfg, q_block, k_block, key_mask):
    """[block_q, block_k] bool: key is real (mask, padding) and, if causal, not in the future."""
    valid = key_mask != 0
    if cfg.causal:
        q_pos = q_block * cfg.block_q + lax.broadcasted_iota(
            jnp.int32, (cfg.block_q, cfg.block_k), 0
        )
        k_pos = k_block * cfg.block_k + lax.broadcasted_iota(
            jnp.int32, (cfg.block_q, cfg.block_k), 1
        )
        valid = valid & (q_pos >= k_pos)
    return valid


def _probs(cfg, q, k, lse, q_block, k_block, key_mask):
    """P = exp(q k^T scale - lse), zero where masked, float32 [block_q, block_k]."""
    s = _dot(q, k) * cfg.scale
    s = jnp.where(_valid(cfg, q_block, k_block, key_mask), s, _MASK_VALUE)
    return jnp.exp(s - lse)


def _floor_div(a, b: int):
    """a // b for a block index a >= 0 (int32) and a Python int b: lax.div (no sign op on TPU) with
    b typed int32, which stays right when jax_enable_x64 makes Python ints int64."""
    return lax.div(a.astype(jnp.int32), jnp.int32(b))


def _causal_k_range(cfg, q_block, num_k):
    """Key blocks [lo, hi) that query block q_block can see."""
    if not cfg.causal:
        return 0, num_k
    last_q = (q_block + 1) * cfg.block_q - 1
    return 0, jnp.minimum(_floor_div(last_q, cfg.block_k) + 1, jnp.int32(num_k))


def _causal_q_range(cfg, k_block, num_q):
    """Query blocks [lo, hi) that see key block k_block."""
    if not cfg.causal:
        return 0, num_q
    return _floor_div(k_block * cfg.block_k, cfg.block_q), num_q


# ----------------------------------------------------------------------------------------------
# Forward kernel.


def _forward_kernel(q_ref, k_ref, v_ref, mask_ref, o_ref, lse_ref, *scratch_refs, cfg):
    i = pl.program_id(2)
    num_k = cfg.padded_kv_len // cfg.block_k
    q = q_ref[...]
    bq, depth = q.shape

    def step(j, carry):
        m, z, acc = carry
        k = _inner_rows(k_ref, cfg, j, cfg.block_k)
        v = _inner_rows(v_ref, cfg, j, cfg.block_k)
        s = _dot(q, k) * cfg.scale
        s = jnp.where(_valid(cfg, i, j, _inner_mask(mask_ref, cfg, j)), s, _MASK_VALUE)
        m_new = jnp.maximum(m, s.max(axis=1, keepdims=True))
        alpha = jnp.exp(m - m_new)
        p = jnp.exp(s - m_new)
        z = alpha * z + p.sum(axis=1, keepdims=True)
        acc = alpha * acc + _dot(p.astype(v.dtype), v, (1, 0))
        return m_new, z, acc

    def finish(carry):
        m, z, acc = carry
        o_ref[...] = (acc / z).astype(o_ref.dtype)
        lse_ref[...] = m + jnp.log(z)

    init = (
        jnp.full((bq, 1), _MASK_VALUE, jnp.float32),
        jnp.zeros((bq, 1), jnp.float32),
        jnp.zeros((bq, depth), jnp.float32),
    )
    lo, hi = _causal_k_range(cfg, i, num_k)
    _reduce(
        cfg,
        lo=lo,
        hi=hi,
        num_inner=num_k,
        init=init,
        step=step,
        finish=finish,
        scratch_refs=scratch_refs,
    )


def _forward(q, k, v, mask, cfg):
    """Kernel-layout inputs -> (o in kernel layout, lse [B, H, Tq', 1])."""
    batch, heads = q.shape[0], q.shape[2] if cfg.platform == "gpu" else q.shape[1]
    d = cfg.padded_head_dim
    nq = cfg.padded_q_len // cfg.block_q
    nk = cfg.padded_kv_len // cfg.block_k
    return _pallas_call(
        functools.partial(_forward_kernel, cfg=cfg),
        cfg,
        grid_outer=(batch, heads, nq),
        num_inner=nk,
        out_shape=(
            jax.ShapeDtypeStruct(q.shape, q.dtype),
            jax.ShapeDtypeStruct((batch, heads, cfg.padded_q_len, 1), jnp.float32),
        ),
        in_specs=[
            _seq_spec(cfg, cfg.block_q, cfg.padded_q_len, d, "outer"),
            _seq_spec(cfg, cfg.block_k, cfg.padded_kv_len, d, "inner"),
            _seq_spec(cfg, cfg.block_k, cfg.padded_kv_len, d, "inner"),
            _key_mask_spec(cfg, "inner"),
        ],
        out_specs=(
            _seq_spec(cfg, cfg.block_q, cfg.padded_q_len, d, "outer"),
            _row_stat_spec(cfg, cfg.block_q, "outer"),
        ),
        scratch=[(cfg.block_q, 1), (cfg.block_q, 1), (cfg.block_q, d)],
    )(q, k, v, mask)


# ----------------------------------------------------------------------------------------------
# Forward-mode (JVP) kernel: t_i = sum_j P_ij [dv_j + dS_ij (v_j - o_i)].


def _tangent_kernel(
    q_ref,
    k_ref,
    v_ref,
    mask_ref,
    o_ref,
    lse_ref,
    dq_ref,
    dk_ref,
    dv_ref,
    t_ref,
    t_lse_ref,
    *scratch,
    cfg,
):
    i = pl.program_id(2)
    num_k = cfg.padded_kv_len // cfg.block_k
    q, dq, lse = q_ref[...], dq_ref[...], lse_ref[...]
    bq, depth = q.shape

    def step(j, carry):
        acc, p_ds_sum = carry
        k = _inner_rows(k_ref, cfg, j, cfg.block_k)
        v = _inner_rows(v_ref, cfg, j, cfg.block_k)
        dk = _inner_rows(dk_ref, cfg, j, cfg.block_k)
        dv = _inner_rows(dv_ref, cfg, j, cfg.block_k)
        p = _probs(cfg, q, k, lse, i, j, _inner_mask(mask_ref, cfg, j))
        ds = (_dot(dq, k) + _dot(q, dk)) * cfg.scale
        p_ds = p * ds
        acc = acc + _dot(p_ds.astype(v.dtype), v, (1, 0)) + _dot(p.astype(dv.dtype), dv, (1, 0))
        return acc, p_ds_sum + p_ds.sum(axis=1, keepdims=True)

    def finish(carry):
        acc, p_ds_sum = carry
        t_ref[...] = (acc - p_ds_sum * o_ref[...].astype(jnp.float32)).astype(t_ref.dtype)
        t_lse_ref[...] = p_ds_sum  # d lse_i = sum_j P_ij dS_ij

    init = (jnp.zeros((bq, depth), jnp.float32), jnp.zeros((bq, 1), jnp.float32))
    lo, hi = _causal_k_range(cfg, i, num_k)
    _reduce(
        cfg,
        lo=lo,
        hi=hi,
        num_inner=num_k,
        init=init,
        step=step,
        finish=finish,
        scratch_refs=scratch,
    )


def _tangent(q, k, v, mask, o, lse, dq, dk, dv, cfg):
    batch, heads = q.shape[0], q.shape[2] if cfg.platform == "gpu" else q.shape[1]
    d = cfg.padded_head_dim
    nq = cfg.padded_q_len // cfg.block_q
    nk = cfg.padded_kv_len // cfg.block_k
    q_spec = _seq_spec(cfg, cfg.block_q, cfg.padded_q_len, d, "outer")
    kv_spec = _seq_spec(cfg, cfg.block_k, cfg.padded_kv_len, d, "inner")
    return _pallas_call(
        functools.partial(_tangent_kernel, cfg=cfg),
        cfg,
        grid_outer=(batch, heads, nq),
        num_inner=nk,
        out_shape=(
            jax.ShapeDtypeStruct(q.shape, o.dtype),
            jax.ShapeDtypeStruct(lse.shape, jnp.float32),
        ),
        in_specs=[
            q_spec,
            kv_spec,
            kv_spec,
            _key_mask_spec(cfg, "inner"),
            q_spec,
            _row_stat_spec(cfg, cfg.block_q, "outer"),
            q_spec,
            kv_spec,
            kv_spec,
        ],
        out_specs=(q_spec, _row_stat_spec(cfg, cfg.block_q, "outer")),
        scratch=[(cfg.block_q, d), (cfg.block_q, 1)],
    )(q, k, v, mask, o, lse, dq, dk, dv)


# ----------------------------------------------------------------------------------------------
# Reverse-mode kernels (FlashAttention-2 backward), recomputing P from lse.


def _dq_kernel(q_ref, k_ref, v_ref, mask_ref, lse_ref, delta_ref, do_ref, dq_ref, *scratch, cfg):
    i = pl.program_id(2)
    num_k = cfg.padded_kv_len // cfg.block_k
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]

    def step(j, carry):
        (dq,) = carry
        k = _inner_rows(k_ref, cfg, j, cfg.block_k)
        v = _inner_rows(v_ref, cfg, j, cfg.block_k)
        p = _probs(cfg, q, k, lse, i, j, _inner_mask(mask_ref, cfg, j))
        ds = p * (_dot(do, v) - delta)
        return (dq + _dot(ds.astype(k.dtype), k, (1, 0)),)

    def finish(carry):
        dq_ref[...] = (carry[0] * cfg.scale).astype(dq_ref.dtype)

    lo, hi = _causal_k_range(cfg, i, num_k)
    _reduce(
        cfg,
        lo=lo,
        hi=hi,
        num_inner=num_k,
        init=(jnp.zeros(q.shape, jnp.float32),),
        step=step,
        finish=finish,
        scratch_refs=scratch,
    )


def _dkv_kernel(
    q_ref, k_ref, v_ref, mask_ref, lse_ref, delta_ref, do_ref, dk_ref, dv_ref, *scratch, cfg
):
    j = pl.program_id(2)
    num_q = cfg.padded_q_len // cfg.block_q
    k, v, key_mask = k_ref[...], v_ref[...], mask_ref[...]

    def step(i, carry):
        dk, dv = carry
        q = _inner_rows(q_ref, cfg, i, cfg.block_q)
        do = _inner_rows(do_ref, cfg, i, cfg.block_q)
        lse = _inner_rows(lse_ref, cfg, i, cfg.block_q)
        delta = _inner_rows(delta_ref, cfg, i, cfg.block_q)
        p = _probs(cfg, q, k, lse, i, j, key_mask)
        dv = dv + _dot(p.astype(do.dtype), do, (0, 0))
        ds = p * (_dot(do, v) - delta)
        return dk + _dot(ds.astype(q.dtype), q, (0, 0)), dv

    def finish(carry):
        dk, dv = carry
        dk_ref[...] = (dk * cfg.scale).astype(dk_ref.dtype)
        dv_ref[...] = dv.astype(dv_ref.dtype)

    lo, hi = _causal_q_range(cfg, j, num_q)
    init = (jnp.zeros(k.shape, jnp.float32), jnp.zeros(v.shape, jnp.float32))
    _reduce(
        cfg,
        lo=lo,
        hi=hi,
        num_inner=num_q,
        init=init,
        step=step,
        finish=finish,
        scratch_refs=scratch,
    )


def _backward(q, k, v, mask, lse, delta, do, cfg):
    batch, heads = q.shape[0], q.shape[2] if cfg.platform == "gpu" else q.shape[1]
    d = cfg.padded_head_dim
    nq = cfg.padded_q_len // cfg.block_q
    nk = cfg.padded_kv_len // cfg.block_k
    q_outer = _seq_spec(cfg, cfg.block_q, cfg.padded_q_len, d, "outer")
    kv_inner = _seq_spec(cfg, cfg.block_k, cfg.padded_kv_len, d, "inner")
    dq = _pallas_call(
        functools.partial(_dq_kernel, cfg=cfg),
        cfg,
        grid_outer=(batch, heads, nq),
        num_inner=nk,
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
        in_specs=[
            q_outer,
            kv_inner,
            kv_inner,
            _key_mask_spec(cfg, "inner"),
            _row_stat_spec(cfg, cfg.block_q, "outer"),
            _row_stat_spec(cfg, cfg.block_q, "outer"),
            q_outer,
        ],
        out_specs=q_outer,
        scratch=[(cfg.block_q, d)],
    )(q, k, v, mask, lse, delta, do)
    q_inner = _seq_spec(cfg, cfg.block_q, cfg.padded_q_len, d, "inner")
    kv_outer = _seq_spec(cfg, cfg.block_k, cfg.padded_kv_len, d, "outer")
    dk, dv = _pallas_call(
        functools.partial(_dkv_kernel, cfg=cfg),
        cfg,
        grid_outer=(batch, heads, nk),
        num_inner=nq,
        out_shape=(
            jax.ShapeDtypeStruct(k.shape, k.dtype),
            jax.ShapeDtypeStruct(v.shape, v.dtype),
        ),
        in_specs=[
            q_inner,
            kv_outer,
            kv_outer,
            _key_mask_spec(cfg, "outer"),
            _row_stat_spec(cfg, cfg.block_q, "inner"),
            _row_stat_spec(cfg, cfg.block_q, "inner"),
            q_inner,
        ],
        out_specs=(kv_outer, kv_outer),
        scratch=[(cfg.block_k, d), (cfg.block_k, d)],
    )(q, k, v, mask, lse, delta, do)
    return dq, dk, dv


# ----------------------------------------------------------------------------------------------
# Public-layout wrappers, the tangent primitive and the custom_jvp rule.


def _kernel_mask(mask, cfg):
    """int32 [B, 1, Tk'] with 0 for masked and padded keys."""
    mask = jnp.pad(mask.astype(jnp.int32), ((0, 0), (0, cfg.padded_kv_len - cfg.kv_len)))
    return mask[:, None, :]


def _forward_public(q, k, v, mask, cfg):
    """Public [B, T, H, D] arrays -> (o [B, Tq, H, D], lse [B, H, Tq', 1])."""
    o, lse = _forward(
        _to_kernel_layout(q, cfg.padded_q_len, cfg),
        _to_kernel_layout(k, cfg.padded_kv_len, cfg),
        _to_kernel_layout(v, cfg.padded_kv_len, cfg),
        _kernel_mask(mask, cfg),
        cfg,
    )
    return _from_kernel_layout(o, cfg.q_len, cfg), lse


def _tangent_impl(q, k, v, mask, o, lse, dq, dk, dv, *, cfg):
    qs = [_to_kernel_layout(x, cfg.padded_q_len, cfg) for x in (q, o, dq)]
    ks = [_to_kernel_layout(x, cfg.padded_kv_len, cfg) for x in (k, v, dk, dv)]
    t, t_lse = _tangent(
        qs[0], ks[0], ks[1], _kernel_mask(mask, cfg), qs[1], lse, qs[2], ks[2], ks[3], cfg
    )
    return _from_kernel_layout(t, cfg.q_len, cfg), t_lse


def _vjp_public(q, k, v, mask, o, lse, do, dlse, cfg):
    """Attention VJP (dq, dk, dv) for cotangents do of o and dlse of lse (or None).

    d lse_i / d s_ij = P_ij, so the lse cotangent enters as delta_i -> delta_i - dlse_i.
    """
    delta = jnp.einsum("bthd,bthd->bht", o.astype(jnp.float32), do.astype(jnp.float32))
    delta = jnp.pad(delta, ((0, 0), (0, 0), (0, cfg.padded_q_len - cfg.q_len)))[..., None]
    if dlse is not None:  # padded query rows carry no lse cotangent
        real_row = jnp.arange(cfg.padded_q_len)[:, None] < cfg.q_len
        delta = delta - jnp.where(real_row, dlse, 0.0)
    dq, dk, dv = _backward(
        _to_kernel_layout(q, cfg.padded_q_len, cfg),
        _to_kernel_layout(k, cfg.padded_kv_len, cfg),
        _to_kernel_layout(v, cfg.padded_kv_len, cfg),
        _kernel_mask(mask, cfg),
        lse,
        delta,
        _to_kernel_layout(do, cfg.padded_q_len, cfg),
        cfg,
    )
    return (
        _from_kernel_layout(dq, cfg.q_len, cfg),
        _from_kernel_layout(dk, cfg.kv_len, cfg),
        _from_kernel_layout(dv, cfg.kv_len, cfg),
    )


def _instantiate(tangent, primal):
    return jnp.zeros(primal.shape, primal.dtype) if type(tangent) is ad.Zero else tangent


_tangent_p = Primitive("flash_attention_tangent")
_tangent_p.multiple_results = True
_tangent_p.def_impl(_tangent_impl)
_tangent_p.def_abstract_eval(
    lambda q, k, v, mask, o, lse, *tangents, cfg: (
        jax.core.ShapedArray(o.shape, o.dtype),
        jax.core.ShapedArray(lse.shape, lse.dtype),
    )
)
mlir.register_lowering(_tangent_p, mlir.lower_fun(_tangent_impl, multiple_results=True))


def _tangent_transpose(cts, q, k, v, mask, o, lse, dq, dk, dv, *, cfg):
    """The tangent is linear in (dq, dk, dv); its transpose is the attention VJP."""
    for name, x in (("q", q), ("k", k), ("v", v), ("o", o), ("lse", lse)):
        if ad.is_undefined_primal(x):
            raise NotImplementedError(f"flash attention tangent is not linear in {name}")
    t_bar, t_lse_bar = cts
    if type(t_bar) is ad.Zero:
        t_bar = jnp.zeros(t_bar.aval.shape, t_bar.aval.dtype)
    t_lse_bar = None if type(t_lse_bar) is ad.Zero else t_lse_bar
    dq_bar, dk_bar, dv_bar = _vjp_public(q, k, v, mask, o, lse, t_bar, t_lse_bar, cfg)
    cts = []
    for tangent, ct in ((dq, dq_bar), (dk, dk_bar), (dv, dv_bar)):
        cts.append(ct.astype(tangent.aval.dtype) if ad.is_undefined_primal(tangent) else None)
    return [None] * 6 + cts


ad.primitive_transposes[_tangent_p] = _tangent_transpose


def _reference(q, k, v, mask, cfg):
    """(o, lse) in XLA with the kernels' masking (lse padded with zeros to [B, H, Tq', 1])."""
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32)) * cfg.scale
    valid = (mask != 0)[:, None, None, :]
    if cfg.causal:
        valid = valid & jnp.tril(jnp.ones((cfg.q_len, cfg.kv_len), jnp.bool_))
    s = jnp.where(valid, s, _MASK_VALUE)
    lse = jax.nn.logsumexp(s, axis=-1)
    o = jnp.einsum("bhqk,bkhd->bqhd", jnp.exp(s - lse[..., None]), v.astype(jnp.float32))
    lse = jnp.pad(lse, ((0, 0), (0, 0), (0, cfg.padded_q_len - cfg.q_len)))[..., None]
    return o.astype(q.dtype), lse


def _tangent_jvp(primals, tangents, *, cfg):
    """JVP of the tangent (second order): exact, but the part from moving q, k, v is the XLA
    reference's (materialising T x T scores); o and lse are functions of q, k, v, so their own
    tangents are implied by those of q, k, v and not read."""
    q, k, v, mask, o, lse, dq, dk, dv = primals
    q_dot, k_dot, v_dot, _, _, _, dq_dot, dk_dot, dv_dot = tangents
    outs = _tangent_p.bind(*primals, cfg=cfg)
    out_dots = [jnp.zeros(x.shape, x.dtype) for x in outs]
    if any(type(t) is not ad.Zero for t in (dq_dot, dk_dot, dv_dot)):
        linear = _tangent_p.bind(
            q,
            k,
            v,
            mask,
            o,
            lse,
            *map(_instantiate, (dq_dot, dk_dot, dv_dot), (dq, dk, dv)),
            cfg=cfg,
        )
        out_dots = [a + b for a, b in zip(out_dots, linear)]
    if any(type(t) is not ad.Zero for t in (q_dot, k_dot, v_dot)):

        def first_order(q, k, v):
            reference = functools.partial(_reference, mask=mask, cfg=cfg)
            return jax.jvp(reference, (q, k, v), (dq, dk, dv))[1]

        qkv_dots = tuple(map(_instantiate, (q_dot, k_dot, v_dot), (q, k, v)))
        second = jax.jvp(first_order, (q, k, v), qkv_dots)[1]
        out_dots = [a + b.astype(a.dtype) for a, b in zip(out_dots, second)]
    return outs, out_dots


ad.primitive_jvps[_tangent_p] = _tangent_jvp


def _tangent_batch(args, dims, *, cfg):
    """vmap: fold the mapped axis into the batch axis of every operand."""
    size = next(x.shape[d] for x, d in zip(args, dims) if d is not None)
    merged = []
    for x, d in zip(args, dims):
        if d is None:  # operand not mapped
            x = jnp.broadcast_to(x, (size, *x.shape))
        else:
            x = jnp.moveaxis(x, d, 0)
        merged.append(x.reshape(size * x.shape[1], *x.shape[2:]))
    outs = _tangent_p.bind(*merged, cfg=cfg)
    return [x.reshape(size, -1, *x.shape[1:]) for x in outs], [0, 0]


batching.primitive_batchers[_tangent_p] = _tangent_batch


@functools.partial(jax.custom_jvp, nondiff_argnums=(4,))
def _attention(q, k, v, mask, cfg):
    """(o, lse): attention output [B, Tq, H, D] and log-sum-exp [B, H, Tq', 1] (kernel layout)."""
    return _forward_public(q, k, v, mask, cfg)


@_attention.defjvp
def _attention_jvp(cfg, primals, tangents):
    q, k, v, mask = primals
    o, lse = _attention(q, k, v, mask, cfg)  # differentiable again: higher orders work
    dq, dk, dv = (_instantiate(t, x) for t, x in zip(tangents[:3], (q, k, v)))
    return (o, lse), tuple(_tangent_p.bind(q, k, v, mask, o, lse, dq, dk, dv, cfg=cfg))


def check_attention_args(q, k, v, key_mask):
    """ValueError unless q [B, Tq, H, D], k and v [B, Tk, H, D] and key_mask None or [B, Tk]."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"q, k, v must be [B, T, H, D], got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2:] != k.shape[2:]:
        raise ValueError(
            f"q [B, Tq, H, D], k and v [B, Tk, H, D] must agree, got {q.shape}, {k.shape}, "
            f"{v.shape}"
        )
    expected = (k.shape[0], k.shape[1])
    if key_mask is not None and key_mask.shape != expected:
        raise ValueError(f"key_mask must be [B, Tk] = {expected}, got {key_mask.shape}")


def flash_attention(
    q,
    k,
    v,
    *,
    key_mask=None,
    causal=False,
    scale=None,
    block_q=None,
    block_k=None,
    platform=None,
    interpret=None,
):
    """Flash attention over [batch, length, heads, head_dim] arrays; see the module docstring.

    Args:
      q: [B, Tq, H, D]; k: [B, Tk, H, D]; v: [B, Tk, H, D], one dtype: float32, bfloat16 (tested)
        or float16.
      key_mask: optional bool [B, Tk], True where a key is real.
      causal: query i attends to keys j <= i (top-left aligned, as jax.nn.dot_product_attention).
      scale: logit scale, default 1 / sqrt(D).
      block_q, block_k: powers of two (default: see ``_default_block``).
      platform: 'gpu' (Triton layout) or 'tpu' (Mosaic layout); default from the default backend,
        with the gpu layout on CPU.
      interpret: run in the Pallas interpreter; default True on CPU.
    """
    check_attention_args(q, k, v, key_mask)
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (
        jnp.float32,
        jnp.bfloat16,
        jnp.float16,
    ):
        raise ValueError(
            f"q, k, v must share one dtype, float32, bfloat16 or float16, got {q.dtype}, "
            f"{k.dtype}, {v.dtype}"
        )
    batch, q_len, _, head_dim = q.shape
    kv_len = k.shape[1]
    if key_mask is None:
        key_mask = jnp.ones((batch, kv_len), jnp.bool_)
    backend = jax.default_backend()
    if platform is None:
        platform = "tpu" if backend == "tpu" else "gpu"
    if platform not in ("gpu", "tpu"):
        raise ValueError(f"platform must be 'gpu' or 'tpu', got {platform!r}")
    if interpret is None:
        interpret = backend == "cpu"
    block_q = block_q or _default_block(q_len, platform, head_dim)
    block_k = block_k or _default_block(kv_len, platform, head_dim)
    _check_block("block_q", block_q, q_len, "gpu")  # query blocks are sublanes: any power of 2
    _check_block("block_k", block_k, kv_len, "gpu" if interpret else platform)
    cfg = _Config(
        platform=platform,
        interpret=bool(interpret),
        causal=bool(causal),
        scale=float(1.0 / math.sqrt(head_dim) if scale is None else scale),
        q_len=q_len,
        kv_len=kv_len,
        head_dim=head_dim,
        block_q=block_q,
        block_k=block_k,
    )
    return _attention(q, k, v, key_mask, cfg)[0]
