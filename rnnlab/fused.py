r"""The fused recurrence: a scan whose reverse pass carries only the state gradient.

For a cell with :class:`~rnnlab.cells.CellParts` the step is

.. math::
   xp_t = \mathrm{project}(x_t),\quad hp_t = h_{t-1} W + b,\quad
   c_t = \mathrm{update}(c_{t-1}, xp_t, hp_t) + d_t,\quad y_t = \mathrm{hidden}(c_t)

where ``d_t`` is an optional probe (zero in value; its gradient is ``dL/dc_t``).
Differentiating the scan with ``jax.grad`` does three matmuls a step in the
reverse loop (the state gradient, the input gradient and a rank-B update of
``dW``). The custom VJP here keeps the loop to what cannot wait, the state
gradient

.. math::
   \bar{hp}_t = \bar{c}_t\,\partial c_t/\partial hp_t, \qquad
   \bar{c}_{t-1} = \bar{c}_t\,\partial c_t/\partial c_{t-1} + \bar{hp}_t W^\top,

and forms everything else after the loop as large matmuls over all ``T * B``
rows: ``dW = sum_t h_{t-1}^T hp-bar_t``, and the input projection's gradients
(``dW_ih``, ``db`` and ``dx``) from ``xp-bar`` by differentiating ``project`` once
over the whole sequence. The forward pass keeps the carry before each step and
the pre-activations (one array a step for an ``additive`` cell, two otherwise),
so the reverse pass recomputes only the elementwise update.

Masking (``valid``) and probes follow :func:`rnnlab.unroll`'s semantics exactly:
``c_t = where(valid_t, update(...) + d_t, c_{t-1})``, ``y_t = where(valid_t,
hidden(c_t), 0)``.

Two facts about XLA on the CPU shaped the code (``experiments/benchmark.py``
measures both paths): the input projection stays inside the forward loop,
because one skinny ``(T*B, I) @ (I, G)`` matmul and its ``(T, B, G)`` result cost
more than ``T`` tiny ones for small ``I``; and the reverse loop reads its
residuals one step ahead (:func:`prefetch_scan`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnlab.cells import CellParts

Array = jax.Array
PyTree = Any


def _where(valid: Array | None, new: PyTree, old: PyTree) -> PyTree:
  if valid is None:
    return new
  return jax.tree.map(lambda n, o: jnp.where(_expand(valid, n), n, o), new, old)


def _expand(valid: Array, leaf: Array) -> Array:
  return valid.reshape(valid.shape + (1,) * (leaf.ndim - valid.ndim))


def _add(a: PyTree, b: PyTree | None) -> PyTree:
  return a if b is None else jax.tree.map(jnp.add, a, b)


def _flat_matmul_t(a_TxBxH: Array, b_TxBxG: Array) -> Array:
  """``sum over all leading axes of a^T b``: one matmul with a long contraction."""
  a = a_TxBxH.reshape(-1, a_TxBxH.shape[-1])
  b = b_TxBxG.reshape(-1, b_TxBxG.shape[-1])
  out = jnp.matmul(a.T, b, preferred_element_type=jnp.promote_types(a.dtype, jnp.float32))
  return out.astype(a_TxBxH.dtype)


def prefetch_scan(f, init, xs, *, reverse=False, unroll=1):
  """``lax.scan(f, init, xs)``, with each step's slice of ``xs`` loaded one step ahead.

  XLA on the CPU fuses a scan's per-step ``dynamic-slice`` of ``xs`` into the
  elementwise fusions that read it, and such fusions run several times slower
  than the same code on a plain buffer (measured: LSTM update 37 us versus 13 us
  per step at B=32, H=64). Loading the next slice into the carry instead keeps
  the slice a copy of its own, and the step reads a plain buffer. Same values,
  same order of operations.
  """
  leaves = jax.tree.leaves(xs)
  num_steps = leaves[0].shape[0] if leaves else 0
  if num_steps == 0:
    return jax.lax.scan(f, init, xs, reverse=reverse, unroll=unroll)
  first = num_steps - 1 if reverse else 0

  def load(t):
    return jax.tree.map(lambda a: jax.lax.dynamic_index_in_dim(a, t, 0, keepdims=False), xs)

  def body(state, t):
    carry, x_t = state
    carry, y = f(carry, x_t)
    following = jnp.clip(t - 1 if reverse else t + 1, 0, num_steps - 1)
    return (carry, load(following)), y

  (carry, _), ys = jax.lax.scan(
    body, (init, load(first)), jnp.arange(num_steps), reverse=reverse, unroll=unroll
  )
  return carry, ys


def recurrence(
  parts: CellParts,
  params: PyTree,
  carry: PyTree,
  xs_TxBxI: Array,
  probes: PyTree | None = None,
  valid_TxB: Array | None = None,
  *,
  reverse: bool = False,
  unroll: int | bool = 1,
) -> tuple[Array, PyTree]:
  """Runs the cell that ``parts`` describe over a time-major ``xs``.

  Args:
    parts: the cell's :class:`~rnnlab.cells.CellParts`.
    params: the cell's parameters.
    carry: the initial carry, leaves ``(*batch, ...)``.
    xs_TxBxI: the inputs, ``(T, *batch, I)``.
    probes: ``None`` or a pytree like the carry with a leading time axis, added to
      each new carry (the gradient with respect to a probe is ``dL/dc_t``).
    valid_TxB: ``None`` or a boolean ``(T, *batch)`` mask; invalid steps keep the
      carry and output zeros (their inputs must already be zero).
    reverse: scan from the last step to the first.
    unroll: passed to ``lax.scan``.

  Returns:
    ``(ys (T, *batch, H), final carry)``, equal to scanning ``step_from_parts(parts)``.
  """
  project, update, hidden, additive = parts.project, parts.update, parts.hidden, parts.additive
  probes_given = probes is not None

  def pre_activations(params, c, x_t):
    w, b = parts.recurrent(params)
    hp = hidden(c) @ w
    return project(params, x_t), (hp if b is None else hp + b)

  def forward_step(c, xp, hp, probe_t, valid_t):
    new = _where(valid_t, _add(update(c, xp, hp), probe_t), c)
    y = hidden(new)
    return new, (y if valid_t is None else jnp.where(_expand(valid_t, y), y, 0))

  @jax.custom_vjp
  def run(params, carry, xs, probes, valid):
    def body(c, inputs):
      x_t, probe_t, valid_t = inputs
      return forward_step(c, *pre_activations(params, c, x_t), probe_t, valid_t)

    carry, ys = jax.lax.scan(body, carry, (xs, probes, valid), reverse=reverse, unroll=unroll)
    return ys, carry

  def run_fwd(params, carry, xs, probes, valid):
    def body(c, inputs):
      x_t, probe_t, valid_t = inputs
      xp, hp = pre_activations(params, c, x_t)
      new, y = forward_step(c, xp, hp, probe_t, valid_t)
      return new, (y, c, xp + hp if additive else (xp, hp))

    final, (ys, carries_before, pre) = jax.lax.scan(
      body, carry, (xs, probes, valid), reverse=reverse, unroll=unroll
    )
    return (ys, final), (params, carries_before, pre, xs, valid)

  def run_bwd(residuals, cotangents):
    params, carries_before, pre, xs, valid = residuals
    dys, dfinal = cotangents
    w, b = parts.recurrent(params)
    w_t = w.T

    def body(dc, inputs):
      c, pre_t, dy_t, valid_t = inputs
      if additive:
        new, pullback = jax.vjp(lambda c, a: update(c, a, jnp.zeros_like(a)), c, pre_t)
      else:
        new, pullback = jax.vjp(update, c, *pre_t)
      # y_t = hidden(c_t): the output's cotangent joins the carry's (masked steps pass dc on).
      _, hidden_pullback = jax.vjp(hidden, new)
      (d_hidden,) = hidden_pullback(dy_t)
      d_new = _add(dc, d_hidden)
      if valid_t is not None:
        d_new = jax.tree.map(lambda d: jnp.where(_expand(valid_t, d), d, 0), d_new)
      dc_prev, *d_pre = pullback(d_new)
      dhp_t = d_pre[-1]
      # hp = hidden(c) @ w: route dhp W^T into the hidden state of the previous carry.
      _, hidden_prev_pullback = jax.vjp(hidden, c)
      (d_via_w,) = hidden_prev_pullback(dhp_t @ w_t)
      dc_prev = _add(dc_prev, d_via_w)
      if valid_t is not None:
        dc_prev = jax.tree.map(lambda d_p, d: jnp.where(_expand(valid_t, d), d_p, d), dc_prev, dc)
      return dc_prev, (tuple(d_pre), d_new if probes_given else None)

    d_carry0, (d_pre, dprobes) = prefetch_scan(
      body, dfinal, (carries_before, pre, dys, valid), reverse=not reverse, unroll=unroll
    )
    dxp, dhp = d_pre[0], d_pre[-1]
    dw = _flat_matmul_t(hidden(carries_before), dhp)
    db = None
    if b is not None:
      wide = jnp.promote_types(b.dtype, jnp.float32)
      db = jnp.sum(dhp.reshape(-1, dhp.shape[-1]), axis=0, dtype=wide).astype(b.dtype)
    _, recurrent_pullback = jax.vjp(parts.recurrent, params)
    (d_params,) = recurrent_pullback((dw, db))
    _, project_pullback = jax.vjp(project, params, xs)
    d_params_in, dxs = project_pullback(dxp)
    d_params = jax.tree.map(jnp.add, d_params, d_params_in)
    return d_params, d_carry0, dxs, dprobes, None

  run.defvjp(run_fwd, run_bwd)
  return run(params, carry, xs_TxBxI, probes, valid_TxB)


__all__ = [
  "prefetch_scan",
  "recurrence",
]
