"""The unroll: any :class:`~rnnlab.cells.Cell` over a sequence with ``jax.lax.scan``.

One ``lax.scan`` over time, never a Python loop, so compile time does not grow
with the sequence length and the whole unroll composes with ``jit``, ``vmap``,
``grad`` and ``checkpoint``.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab.cells import Cell

Array = jax.Array
PyTree = Any


def _describe(tree: PyTree) -> str:
  leaves = jax.tree.leaves(tree)
  shapes = ", ".join(f"{jnp.dtype(l.dtype).name}{list(l.shape)}" for l in leaves)
  return f"{jax.tree.structure(tree)} with leaves [{shapes}]"


def _signature(tree: PyTree):
  leaves = jax.tree.leaves(tree)
  return jax.tree.structure(tree), [(tuple(l.shape), jnp.dtype(l.dtype)) for l in leaves]


def _check_carry(cell: Cell, params: PyTree, carry: PyTree, x: Array) -> None:
  """Raises a clear error unless ``carry`` fits ``cell`` and one step keeps its signature."""
  batch_shape = tuple(x.shape[:-1])
  expected = jax.eval_shape(partial(cell.initial_carry, batch_shape=batch_shape), params)
  if _signature(carry) != _signature(expected):
    raise ValueError(
      f"unroll: the carry {_describe(carry)} does not fit {cell.name} on xs with batch shape "
      f"{batch_shape}; expected {_describe(expected)} (pass carry=None for zeros)"
    )
  try:
    new_carry, _ = jax.eval_shape(cell.step, params, carry, x)
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"unroll: {cell.name}.step(params, carry, x) fails for the carry {_describe(carry)} "
      f"and x of shape {tuple(x.shape)} (batch shape {batch_shape}): {e}"
    ) from e
  if _signature(new_carry) != _signature(carry):
    raise ValueError(
      f"unroll: {cell.name}.step maps the carry {_describe(carry)} to "
      f"{_describe(new_carry)}; the carry must keep its structure, shape and dtype. "
      f"Pass carry=None or cell.initial_carry(params, batch_shape={batch_shape})."
    )


def check_lengths(lengths: Any, batch_shape: tuple[int, ...], num_steps: int) -> Array:
  """Validates ``lengths`` (shape ``batch_shape``, integers in ``[0, T]``) and returns it.

  Values are checked whenever they are concrete (outside ``jit``); inside ``jit``
  only the shape and dtype can be.
  """
  lengths_arr = jnp.asarray(lengths)
  if lengths_arr.shape != batch_shape:
    raise ValueError(
      f"lengths has shape {tuple(lengths_arr.shape)}; expected the batch shape "
      f"{batch_shape} of xs (one length per sequence)"
    )
  if not jnp.issubdtype(lengths_arr.dtype, jnp.integer):
    raise ValueError(f"lengths must be integers; got dtype {lengths_arr.dtype}")
  if not isinstance(lengths_arr, jax.core.Tracer):
    values = np.asarray(lengths_arr)
    bad = (values < 0) | (values > num_steps)
    if bad.any():
      index = tuple(int(i) for i in np.argwhere(bad)[0])
      raise ValueError(
        f"lengths must lie in [0, T={num_steps}]; got {int(values[index])} at index {index}"
      )
  return lengths_arr


def _valid_mask(valid: Array, leaf: Array) -> Array:
  """Broadcasts a ``batch_shape`` mask against a ``(*batch_shape, ...)`` leaf."""
  return valid.reshape(valid.shape + (1,) * (leaf.ndim - valid.ndim))


def unroll(
  cell: Cell,
  params: PyTree,
  xs: Array,
  carry: PyTree | None = None,
  *,
  lengths: Array | None = None,
  reverse: bool = False,
  time_major: bool = False,
  unroll: int | bool = 1,
) -> tuple[PyTree, PyTree]:
  r"""Runs ``cell`` over the sequences ``xs`` with one ``jax.lax.scan``.

  .. math::  (c_t, y_t) = \mathrm{step}(c_{t-1}, x_t), \quad t = 0 .. T-1

  Args:
    cell: any :class:`Cell` (built-in or the user's own).
    params: the cell's parameters.
    xs: ``(*batch, T, I)``, or ``(T, *batch, I)`` with ``time_major``. No batch
      dimension (``(T, I)``) is fine too: ``vmap`` the unroll to batch it.
    carry: the initial carry; ``None`` means ``cell.initial_carry`` (zeros).
    lengths: optional integer array of shape ``batch``: sequence ``b`` is valid
      for ``t < lengths[b]``. Past it the carry is frozen (the returned carry is
      the one after the last valid step) and outputs are zero, so padding
      changes neither outputs nor gradients.
    reverse: run each sequence from its own last valid step back to its first.
      Outputs stay aligned with the inputs (``ys[t]`` is the output on reading
      ``xs[t]``, as PyTorch's bidirectional layers), and the returned carry is
      the one after reading ``xs[0]``.
    time_major: whether the time axis of ``xs`` (and ``ys``) comes first.
    unroll: passed to ``lax.scan`` (steps per loop iteration).

  Returns:
    ``(ys, carry)``: outputs in the layout of ``xs``, and the final carry.
  """
  if not isinstance(cell, Cell):
    raise TypeError(f"unroll: cell must be an rnnlab Cell; got {type(cell).__name__}")
  xs = jnp.asarray(xs)
  if xs.ndim < 2:
    layout = "(T, *batch, I)" if time_major else "(*batch, T, I)"
    raise ValueError(f"unroll: xs must have shape {layout}; got shape {tuple(xs.shape)}")
  xs_TxBxI = xs if time_major else jnp.moveaxis(xs, -2, 0)
  num_steps, batch_shape = xs_TxBxI.shape[0], tuple(xs_TxBxI.shape[1:-1])
  if carry is None:
    carry = cell.initial_carry(params, batch_shape)
  _check_carry(cell, params, carry, jax.ShapeDtypeStruct(xs_TxBxI.shape[1:], xs_TxBxI.dtype))

  if lengths is None:
    carry, ys_TxBxF = jax.lax.scan(
      partial(cell.step, params), carry, xs_TxBxI, reverse=reverse, unroll=unroll
    )
  else:
    lengths = check_lengths(lengths, batch_shape, num_steps)

    def masked_step(carry, t_and_x):
      t, x = t_and_x
      valid = t < lengths
      # Zero the padding before the step: a NaN/inf there would give 0 * NaN gradients.
      x = jnp.where(_valid_mask(valid, x), x, jnp.zeros_like(x))
      new_carry, y = cell.step(params, carry, x)
      # A reverse scan meets the padding first: the frozen carry stays the initial one.
      carry = jax.tree.map(lambda n, o: jnp.where(_valid_mask(valid, n), n, o), new_carry, carry)
      y = jax.tree.map(lambda v: jnp.where(_valid_mask(valid, v), v, jnp.zeros_like(v)), y)
      return carry, y

    steps = jnp.arange(num_steps, dtype=lengths.dtype)
    carry, ys_TxBxF = jax.lax.scan(
      masked_step, carry, (steps, xs_TxBxI), reverse=reverse, unroll=unroll
    )

  ys = ys_TxBxF if time_major else jax.tree.map(lambda y: jnp.moveaxis(y, 0, -2), ys_TxBxF)
  return ys, carry
