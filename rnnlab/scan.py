"""The unroll: any :class:`~rnnlab.cells.Cell` over a sequence with ``jax.lax.scan``.

One ``lax.scan`` over time, never a Python loop, so compile time does not grow
with the sequence length and the whole unroll composes with ``jit``, ``vmap``,
``grad`` and ``checkpoint``.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import fused
from rnnlab import probes as probes_lib
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


def check_carry(
  cell: Cell, params: PyTree, carry: PyTree, x: Array | jax.ShapeDtypeStruct, caller: str = "unroll"
) -> None:
  """Raises a one-line ``ValueError`` unless ``carry`` fits ``cell`` for inputs like ``x``.

  The carry must have the structure, shapes and dtypes of
  ``cell.initial_carry(params, batch_shape)`` (``batch_shape = x.shape[:-1]``),
  and one ``cell.step(params, carry, x)`` must keep them (a step that reshapes or
  recasts its carry could not be scanned). Only shapes are traced
  (``jax.eval_shape``), so it costs no compute and works on tracers.

  Args:
    cell: the cell.
    params: its parameters.
    carry: the carry to check.
    x: one step's input, an array or ``jax.ShapeDtypeStruct`` of shape ``(*batch, I)``.
    caller: the name the error message starts with.
  """
  batch_shape = tuple(x.shape[:-1])
  expected = jax.eval_shape(partial(cell.initial_carry, batch_shape=batch_shape), params)
  if _signature(carry) != _signature(expected):
    raise ValueError(
      f"{caller}: the carry {_describe(carry)} does not fit {cell.name} on xs with batch shape "
      f"{batch_shape}; expected {_describe(expected)} (pass carry=None for zeros)"
    )
  try:
    new_carry, _ = jax.eval_shape(cell.step, params, carry, x)
  except (TypeError, ValueError) as e:
    raise ValueError(
      f"{caller}: {cell.name}.step(params, carry, x) fails for the carry {_describe(carry)} "
      f"and x of shape {tuple(x.shape)} (batch shape {batch_shape}): {e}"
    ) from e
  if _signature(new_carry) != _signature(carry):
    raise ValueError(
      f"{caller}: {cell.name}.step maps the carry {_describe(carry)} to "
      f"{_describe(new_carry)}; the carry must keep its structure, shape and dtype. "
      f"Pass carry=None or cell.initial_carry(params, batch_shape={batch_shape})."
    )


def check_lengths(lengths: Any, batch_shape: tuple[int, ...], num_steps: int) -> Array:
  """Validates ``lengths`` (shape ``batch_shape``, integers in ``[0, T]``) and returns it.

  Values are checked whenever they are concrete (outside ``jit``); inside ``jit``
  only the shape and dtype can be, and a traced length outside ``[0, T]`` is not
  an error: the masks built from it (``t < lengths``) treat a length above ``T``
  as ``T`` and a negative one as 0.
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


IMPLS = ("auto", "fused", "scan", "recompute")

# Where ``impl="auto"`` takes the fused path, per backend and cell kind: ``(b_max, (h_lo,
# h_hi))`` means fused when ``B <= b_max`` at any H, or when ``h_lo <= H <= h_hi`` (``None``:
# unbounded) at any B. With :data:`RECOMPUTE_RULES`, fitted jointly by
# :func:`experiments.benchmark.fit_auto_rule` to the dense grid of ``python -m
# experiments.benchmark`` (B 16-128, T 100-1000, I 1-64, H 16-512, 26 shapes per cell; the
# simplest rules within a quarter of a per cent of the least summed log-ratio of the chosen
# path's time to the fastest path's): quiet 2-core x86 (AVX-512), jax 0.10.2, 2026-11-26,
# ``benchmarks/cpu-2026-11-26-final.md``. Within 0.7 % (Elman), 2.1 % (LSTM) and 0.9 %
# (GRU) of always taking the fastest of the three paths, geometric mean over the grid.
# Cells of one's own with additive parts follow the Elman rule; other backends keep the
# scan until measured. Under ``jax.vmap`` over members (:func:`vmapped`; the runner's
# blocks) XLA batches the fused path's per-step matmuls, and the plain scan was as fast or
# faster in 22 of 24 shapes of the benchmark's ``vmap`` suite (2 and 8 members of B=32, T
# 40-100, H 32-64): "cpu/vmapped" takes the scan.
FUSED_RULES: dict[str, dict[str, tuple[int, tuple[int, int | None] | None]]] = {
  "cpu": {
    "elman": (32, None),
    "lstm": (16, (384, None)),
    "gru": (0, None),
  },
  "cpu/vmapped": {"elman": (0, None), "lstm": (0, None), "gru": (0, None)},
}
# Where ``impl="auto"`` takes ``"recompute"`` instead of the scan (when the fused rule above
# did not pick ``"fused"``): ``(min_units, h_max)`` means recompute when ``T * B * H >=
# min_units`` and ``H <= h_max`` (``None``: unbounded). A gated cell's scan stores about a
# dozen ``(T, B, H)`` residual stacks, and past a few MiB writing and reading them back
# costs more than recomputing the gates: the threshold is in the stacks' size, ``T * B *
# H``, not ``B * H`` (LSTM B=32, H=32: the scan is as fast at T=100, recompute 1.9x faster
# at T=1000). Fitted with the fused rule above (same grid and method); with a threshold in
# ``B * H`` instead, the best rules were 3.6 % (LSTM) and 3.8 % (GRU) from the fastest path.
# The Elman cell too at H <= 128 once the stack is twice as large (off the grid: 1.5x
# flax's speed at B=96, T=250, H=80). Vmapped blocks keep the scan.
RECOMPUTE_RULES: dict[str, dict[str, tuple[int, int | None]]] = {
  "cpu": {"elman": (1_228_800, 128), "lstm": (614_400, None), "gru": (614_400, 256)},
}
TYPICAL_BATCH = 32  # the batch the rule assumes when the caller does not say
TYPICAL_STEPS = 100  # and the sequence length
_VMAPPED = contextvars.ContextVar("rnnlab_scan_vmapped", default=0)


@contextlib.contextmanager
def vmapped(members: int) -> Iterator[None]:
  """Tells ``impl="auto"`` that unrolls traced inside run under ``jax.vmap`` over ``members``.

  A vmapped unroll cannot see the vmap's size, and the paths rank differently
  there (:data:`FUSED_RULES`, ``"<backend>/vmapped"``). Enter it inside the
  function that is vmapped and traced, e.g.
  ``jax.vmap(lambda p: ...)`` whose body runs ``with vmapped(n): ...``, or around
  the ``jax.vmap(...)(...)`` call while it traces.
  """
  token = _VMAPPED.set(int(members))
  try:
    yield
  finally:
    _VMAPPED.reset(token)


def auto_impl(
  cell: Cell, params: PyTree, batch_size: int | None = None, num_steps: int | None = None
) -> str:
  """The path ``impl="auto"`` takes for ``cell``: ``"scan"``, ``"fused"`` or ``"recompute"``.

  Chosen by measurement, per backend (:data:`FUSED_RULES`, :data:`RECOMPUTE_RULES`):
  on the CPU the fused path (:mod:`rnnlab.fused`) wins for the Elman cell at
  ``B <= 32``, for the LSTM at ``B <= 16`` and at ``H >= 384``, and not reliably
  for the GRU; where it does not, the LSTM recomputes its gates in the reverse
  pass (``"recompute"``) once ``T * B * H >= 614400`` (B * H >= 6144 at T=100),
  and so does the GRU at ``H <= 256`` and the Elman cell at twice that size and
  ``H <= 128``; inside :func:`vmapped` blocks of several
  members, the scan. Cells without additive :class:`~rnnlab.cells.CellParts`
  never take the fused path.

  Args:
    cell: the cell.
    params: its parameters (only the recurrent matrix's shape is read).
    batch_size: the number of sequences per step, ``prod(batch_shape)`` (under
      ``jax.vmap``, one member's); ``None``: :data:`TYPICAL_BATCH`.
    num_steps: the steps one unrolled segment stores (T, or ``remat_chunk``);
      ``None``: :data:`TYPICAL_STEPS`.
  """
  backend = jax.default_backend()
  key = f"{backend}/vmapped" if _VMAPPED.get() > 1 else backend
  rules = FUSED_RULES.get(key)
  if cell.parts is None or rules is None:
    return "scan"
  w, _ = cell.parts.recurrent(params)
  batch = TYPICAL_BATCH if batch_size is None else batch_size
  steps = TYPICAL_STEPS if num_steps is None else num_steps
  fused_rule = rules.get(cell.name, rules["elman"]) if cell.parts.additive else None
  recompute_rule = RECOMPUTE_RULES.get(key, {}).get(cell.name)
  return rule_choice(fused_rule, recompute_rule, batch, w.shape[0], steps)


def rule_choice(
  fused_rule: tuple[int, tuple[int, int | None] | None] | None,
  recompute_rule: tuple[int, int | None] | None,
  batch: int,
  hidden: int,
  num_steps: int = TYPICAL_STEPS,
) -> str:
  """The path one cell's rules choose: ``"fused"``, ``"recompute"`` or ``"scan"``.

  ``fused_rule``: ``(b_max, (h_lo, h_hi))`` of :data:`FUSED_RULES`, or ``None``
  (never fused); ``recompute_rule``: ``(min_units, h_max)`` of
  :data:`RECOMPUTE_RULES` (units: ``num_steps * batch * hidden``), or ``None``.
  The fused rule is asked first.
  """
  if fused_rule is not None:
    b_max, h_range = fused_rule
    if batch <= b_max:
      return "fused"
    if h_range is not None:
      h_lo, h_hi = h_range
      if hidden >= h_lo and (h_hi is None or hidden <= h_hi):
        return "fused"
  if recompute_rule is not None:
    min_units, h_max = recompute_rule
    if num_steps * batch * hidden >= min_units and (h_max is None or hidden <= h_max):
      return "recompute"
  return "scan"


def _time_major_probes(probes: PyTree, carry: PyTree, num_steps: int, batch_ndim: int, time_major):
  """Checks that ``probes`` is the carry with a time axis and moves that axis to the front."""
  if jax.tree.structure(probes) != jax.tree.structure(carry):
    raise ValueError(
      f"unroll: probes {_describe(probes)} must have the structure of the carry "
      f"{_describe(carry)}, each leaf with a time axis of length {num_steps}"
    )
  axis = 0 if time_major else batch_ndim

  def check(p, c):
    p = jnp.asarray(p)
    expected = c.shape[:axis] + (num_steps,) + c.shape[axis:]
    if p.shape != expected:
      raise ValueError(
        f"unroll: a probe has shape {tuple(p.shape)}; expected {expected} "
        f"(the carry leaf {tuple(c.shape)} with the time axis of xs)"
      )
    return jnp.moveaxis(p.astype(c.dtype), axis, 0)

  return jax.tree.map(check, probes, carry)


def _gate_blocks(cell: Cell, params: PyTree) -> tuple[PyTree, Callable[[PyTree], PyTree]]:
  """``(blocks, join)``: the params with each gate-fused matrix split into its gate blocks.

  On the CPU, a scan's reverse pass accumulates the gradient of a loop-invariant
  weight once per step; for a gate-fused ``(H, G H)`` matrix XLA splits that one
  wide add over its threads every step, and the fork-join costs more than the add
  (LSTM B=64, H=128: 2 ms of adds and 4 ms of waiting per training step). Split
  into ``G`` blocks of ``H`` columns outside the loop and joined inside the step
  (``join``), the gradient accumulates per block, unsplit, as flax's per-gate
  kernels do: the same function, 5-20 % faster at large ``B x H``
  (``benchmarks/cpu-2026-11-26-recompute.md``). Only for a cell with
  :class:`~rnnlab.cells.CellParts` (``H`` from its recurrent matrix), params that
  are a NamedTuple, on the CPU, outside :func:`vmapped` blocks; otherwise the
  params as they are.
  """
  if (
    cell.parts is None
    or not _cpu_outside_vmapped()
    or not (isinstance(params, tuple) and hasattr(params, "_fields"))
  ):
    return params, lambda p: p
  hidden = cell.parts.recurrent(params)[0].shape[0]

  def split(w):
    if getattr(w, "ndim", 0) == 2 and w.shape[1] > hidden and w.shape[1] % hidden == 0:
      return tuple(jnp.split(w, w.shape[1] // hidden, axis=1))
    return (w,)

  blocks = {name: split(w) for name, w in params._asdict().items()}

  def join(blocks):
    return type(params)(
      **{n: jnp.concatenate(b, axis=1) if len(b) > 1 else b[0] for n, b in blocks.items()}
    )

  return blocks, join


def _scan_segment(cell, params, carry, xs, probes, valid, *, reverse, unroll, recompute=False):
  """The plain path: ``lax.scan`` of ``cell.step``, with the mask and probes if any.

  ``recompute``: each step under ``jax.checkpoint``, so the forward pass stores
  only the carries and the reverse pass recomputes each step's gates from them.
  The params enter the loop as gate blocks (:func:`_gate_blocks`).
  """
  blocks, join = _gate_blocks(cell, params)

  def step(blocks, carry, x):
    return cell.step(join(blocks), carry, x)

  step = jax.checkpoint(step) if recompute else step
  scan = fused.prefetch_scan if _prefetches(xs) else jax.lax.scan
  if probes is None and valid is None:
    return scan(partial(step, blocks), carry, xs, reverse=reverse, unroll=unroll)
  parts = cell.parts
  params = blocks

  def body(carry, inputs):
    x, probe, valid_t = inputs
    if valid_t is not None:
      # Zero the padding before the step: a NaN/inf there would give 0 * NaN gradients.
      x = jnp.where(_valid_mask(valid_t, x), x, jnp.zeros_like(x))
    new_carry, y = step(params, carry, x)
    if probe is not None:
      new_carry = jax.tree.map(jnp.add, new_carry, probe)
      # A cell whose output is its hidden state outputs the probed state.
      y = parts.hidden(new_carry) if parts is not None else y
    if valid_t is not None:
      # A reverse scan meets the padding first: the frozen carry stays the initial one.
      new_carry = jax.tree.map(
        lambda n, o: jnp.where(_valid_mask(valid_t, n), n, o), new_carry, carry
      )
      y = jax.tree.map(lambda v: jnp.where(_valid_mask(valid_t, v), v, jnp.zeros_like(v)), y)
    return new_carry, y

  return scan(body, carry, (xs, probes, valid), reverse=reverse, unroll=unroll)


def _prefetches(xs) -> bool:
  """Whether the scan loads each step's input one step ahead (:func:`rnnlab.fused.prefetch_scan`).

  With one input feature XLA turns ``x @ w_ih`` into a multiply and fuses the
  per-step slice of ``xs`` into the gates' fusions (twice), which then run
  several times slower: an LSTM's forward pass at B=32, T=200, I=1, H=64 took
  4.6 ms against 1.9 ms at I=2, flax's too. Loaded one step ahead, the slice is a
  plain buffer: 1.8 ms, the same values bitwise; the GRU 3.6 -> 1.4 ms (flax 1.5).
  Forward+backward is unchanged, and at I >= 2 the prefetch costs a little, so
  only at I = 1, on the CPU, outside :func:`vmapped` blocks (the runner's numbers
  stay as they were).
  """
  return xs.shape[-1] == 1 and _cpu_outside_vmapped()


def _cpu_outside_vmapped() -> bool:
  """Where the CPU-only loop rewrites apply: the CPU, not inside a :func:`vmapped` block."""
  return jax.default_backend() == "cpu" and _VMAPPED.get() <= 1


def _fused_segment(cell, params, carry, xs, probes, valid, *, reverse, unroll):
  """The fused path: :func:`rnnlab.fused.recurrence` (a custom VJP)."""
  if valid is not None:
    xs = jnp.where(_valid_mask(valid, xs), xs, jnp.zeros_like(xs))
  ys, carry = fused.recurrence(
    cell.parts, params, carry, xs, probes, valid, reverse=reverse, unroll=unroll
  )
  return carry, ys


def _chunked(segment, carry, xs, probes, valid, chunk, *, reverse):
  """Runs ``segment`` over chunks of ``chunk`` steps, each under ``jax.checkpoint``.

  The reverse pass keeps the carries at chunk boundaries and recomputes one
  chunk at a time: memory ``O(T / chunk + chunk)`` steps, ``O(sqrt T)`` for
  ``chunk ~ sqrt(T)``, for one extra forward pass. ``T`` is padded up to a
  multiple of ``chunk`` with masked steps, which change nothing.
  """
  num_steps, batch_shape = xs.shape[0], xs.shape[1:-1]
  num_chunks = -(-num_steps // chunk)
  pad = num_chunks * chunk - num_steps
  if pad:
    if valid is None:
      valid = jnp.ones((num_steps, *batch_shape), bool)
    pad_time = lambda a: jnp.concatenate([a, jnp.zeros((pad, *a.shape[1:]), a.dtype)])  # noqa: E731
    xs, valid = pad_time(xs), pad_time(valid)
    probes = None if probes is None else jax.tree.map(pad_time, probes)
  split = lambda a: a.reshape(num_chunks, chunk, *a.shape[1:])  # noqa: E731
  xs, valid = split(xs), None if valid is None else split(valid)
  probes = None if probes is None else jax.tree.map(split, probes)

  @jax.checkpoint
  def body(carry, inputs):
    return segment(carry, *inputs)

  carry, ys = jax.lax.scan(body, carry, (xs, probes, valid), reverse=reverse)
  ys = jax.tree.map(lambda y: y.reshape(num_chunks * chunk, *y.shape[2:])[:num_steps], ys)
  return carry, ys


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
  probes: PyTree | None = None,
  impl: str = "auto",
  remat_chunk: int | None = None,
) -> tuple[PyTree, PyTree]:
  r"""Runs ``cell`` over the sequences ``xs`` with one ``jax.lax.scan``.

  .. math::  (c_t, y_t) = \mathrm{step}(c_{t-1}, x_t), \quad t = 0 .. T-1

  Three paths compute the same function (equal to float rounding; a test checks
  outputs and gradients): ``"scan"`` scans ``cell.step`` (``"recompute"``: each
  step under ``jax.checkpoint``); ``"fused"`` (cells
  with :class:`~rnnlab.cells.CellParts`) runs :func:`rnnlab.fused.recurrence`,
  which projects each step's input inside the loop (one matmul over all steps
  measured slower on the CPU) and whose reverse pass carries only the state
  gradient and forms the weight gradients as one matmul after the loop.

  Args:
    cell: any :class:`Cell` (built-in or the user's own).
    params: the cell's parameters.
    xs: ``(*batch, T, I)``, or ``(T, *batch, I)`` with ``time_major``. No batch
      dimension (``(T, I)``) is fine too: ``vmap`` the unroll to batch it.
    carry: the initial carry; ``None`` means ``cell.initial_carry`` (zeros).
    lengths: optional integer array of shape ``batch``: sequence ``b`` is valid
      for ``t < lengths[b]``. Past it the carry is frozen (the returned carry is
      the one after the last valid step) and outputs are zero, so padding
      changes neither outputs nor gradients. Concrete lengths must lie in
      ``[0, T]`` (a ``ValueError`` otherwise); traced ones (inside ``jit``)
      cannot be checked and are clamped to it: a length above ``T`` runs all
      ``T`` steps, a negative one none, the same as ``T`` and 0.
    reverse: run each sequence from its own last valid step back to its first.
      Outputs stay aligned with the inputs (``ys[t]`` is the output on reading
      ``xs[t]``, as PyTorch's bidirectional layers), and the returned carry is
      the one after reading ``xs[0]``.
    time_major: whether the time axis of ``xs`` (and ``ys``) comes first.
    unroll: passed to ``lax.scan`` (steps per loop iteration).
    probes: optional pytree like the carry, each leaf with a time axis placed as
      in ``xs`` (e.g. ``(*batch, T, H)``), added to the new carry after each
      valid step: ``c_t = step(c_{t-1}, x_t) + d_t``. Pass zeros and
      differentiate with respect to them: ``dL/dd_t = dL/dc_t`` for every ``t``
      from one backward pass. For a cell with ``parts`` the output is the probed
      hidden state; a user's own cell outputs what its ``step`` returns. Without
      ``probes``, inside a :func:`rnnlab.probes.tap` scope the tap is asked for
      them (this is how :mod:`rnnlab.diagnostics` probes every unroll of a loss).
    impl: ``"auto"`` (default: :func:`auto_impl`, the path measured faster for
      this cell and size), ``"fused"``, ``"scan"`` or ``"recompute"`` (the scan
      with each step under ``jax.checkpoint``: the forward pass stores only the
      carries, and the reverse pass recomputes each step's gates; faster on the
      CPU for gated cells at large ``B x H``, where storing a dozen ``(T, B, H)``
      residual stacks dominates, and less memory everywhere).
    remat_chunk: if given, gradient checkpointing: the scan runs in chunks of
      this many steps under ``jax.checkpoint``, so the backward pass stores
      ``T / remat_chunk`` carries plus one chunk (choose about ``sqrt(T)``).

  Returns:
    ``(ys, carry)``: outputs in the layout of ``xs``, and the final carry.
  """
  if not isinstance(cell, Cell):
    raise TypeError(f"unroll: cell must be an rnnlab Cell; got {type(cell).__name__}")
  if impl not in IMPLS:
    raise ValueError(f"unroll: impl={impl!r}; expected one of {IMPLS}")
  if impl == "fused" and cell.parts is None:
    raise ValueError(
      f"unroll: impl='fused' needs a cell with CellParts; {cell.name} has none (use impl='scan')"
    )
  if remat_chunk is not None and (
    isinstance(remat_chunk, bool) or not isinstance(remat_chunk, int) or remat_chunk < 1
  ):
    raise ValueError(f"unroll: remat_chunk must be a positive int or None; got {remat_chunk!r}")
  xs = jnp.asarray(xs)
  if xs.ndim < 2:
    layout = "(T, *batch, I)" if time_major else "(*batch, T, I)"
    raise ValueError(f"unroll: xs must have shape {layout}; got shape {tuple(xs.shape)}")
  xs_TxBxI = xs if time_major else jnp.moveaxis(xs, -2, 0)
  num_steps, batch_shape = xs_TxBxI.shape[0], tuple(xs_TxBxI.shape[1:-1])
  if carry is None:
    carry = cell.initial_carry(params, batch_shape)
  check_carry(cell, params, carry, jax.ShapeDtypeStruct(xs_TxBxI.shape[1:], xs_TxBxI.dtype))
  if probes is not None:
    probes = _time_major_probes(probes, carry, num_steps, len(batch_shape), time_major)
  elif (tap := probes_lib.current()) is not None:
    report = probes_lib.Unroll(cell, params, carry, num_steps, len(batch_shape), reverse)
    probes = tap(report)
    if probes is not None:
      probes = _time_major_probes(probes, carry, num_steps, len(batch_shape), True)
  valid_TxB = None
  if lengths is not None:
    lengths = check_lengths(lengths, batch_shape, num_steps)
    steps = jnp.arange(num_steps, dtype=lengths.dtype).reshape(
      (num_steps,) + (1,) * len(batch_shape)
    )
    valid_TxB = steps < lengths

  if cell.prepare is not None:
    # The cell's work on its params alone, once here rather than once per step in the loop.
    params = cell.prepare(params)
  if impl == "auto":
    # A remat chunk stores one chunk's residuals at a time: the rule sees its length.
    steps = num_steps if remat_chunk is None else min(remat_chunk, num_steps)
    impl = auto_impl(cell, params, math.prod(batch_shape), steps)
  if impl == "fused":
    segment = partial(_fused_segment, cell, params, reverse=reverse, unroll=unroll)
  else:
    segment = partial(
      _scan_segment, cell, params, reverse=reverse, unroll=unroll, recompute=impl == "recompute"
    )
  if remat_chunk is None or remat_chunk >= num_steps:
    carry, ys_TxBxF = segment(carry, xs_TxBxI, probes, valid_TxB)
  else:
    carry, ys_TxBxF = _chunked(
      segment, carry, xs_TxBxI, probes, valid_TxB, remat_chunk, reverse=reverse
    )

  ys = ys_TxBxF if time_major else jax.tree.map(lambda y: jnp.moveaxis(y, 0, -2), ys_TxBxF)
  return ys, carry


__all__ = [
  "FUSED_RULES",
  "IMPLS",
  "RECOMPUTE_RULES",
  "TYPICAL_BATCH",
  "TYPICAL_STEPS",
  "auto_impl",
  "check_carry",
  "check_lengths",
  "rule_choice",
  "unroll",
  "vmapped",
]
