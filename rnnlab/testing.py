r"""Property checks for any :class:`~rnnlab.cells.Cell`, to call from your own test suite.

::

    from rnnlab import testing

    def test_my_cell():
      testing.check_cell(my_cell(hidden_size=8), input_size=3)

Each check runs the cell on seeded random shapes (:func:`random_shapes`: a batch
shape of 0 to 2 dimensions, 2 to 6 steps), compares what must be equal, and raises
:class:`CellCheckError` (an ``AssertionError``) with one line naming the property,
the cell, the shapes and the seed when a property fails. An exception raised by the
cell itself while a check runs becomes that one line too, chained to the original.

==========================  ===========================================================
check                       property
==========================  ===========================================================
:func:`check_loop`          ``unroll`` equals a Python loop over ``step`` from a random
                            carry: outputs (finite) and final carry
:func:`check_causality`     ``d y_t / d x_s`` is exactly 0 for ``s > t`` (and not 0
                            everywhere for ``s <= t``)
:func:`check_padding`       with ``lengths`` (0, ``T`` and between): outputs past a
                            length are 0; outputs and final carry equal the loop on the
                            sequences cut at their lengths; gradients are finite and 0
                            for the padding; large or NaN padding changes nothing
:func:`check_jit`           ``jax.jit`` of ``step`` and of ``unroll`` equals running
                            them op by op (``jax.disable_jit``)
:func:`check_vmap`          ``jax.vmap`` of an unbatched unroll and the batched unroll
                            both equal per-sequence loops over ``step`` (with lengths)
:func:`check_dtypes`        params cast to each dtype (float32, bfloat16): ``init``,
                            ``initial_carry``, ``step`` and ``unroll`` keep it (inputs
                            are float32), and a low-precision unroll stays near float32
:func:`check_grads`         ``jax.test_util.check_grads`` of the step (reverse mode,
                            float64) with respect to params, carry and input
:func:`check_fused`         for a cell with :class:`~rnnlab.cells.CellParts`: the parts
                            give the step's carry and output; ``impl="fused"`` equals
                            ``impl="scan"`` in outputs, final carry and gradients (with
                            lengths); gates in ``[0, 1]``, units in ``[-1, 1]``
==========================  ===========================================================

:func:`check_cell` runs them all in this order (``check_fused`` only where the cell
has parts) and returns the names of those it ran.

Shapes are seeded random draws rather than a ``hypothesis`` search: every new shape
is an XLA compilation (a tenth of a second to a second on a CPU), which is nearly
the whole cost of these checks, so a handful of shapes is what a test suite can pay
for, where shrinking a failure would compile dozens more; the failure message names
the seed and shapes, which reproduce it exactly; and the checks need nothing beyond
rnnlab's own dependencies. Each check compiles its programs once per cell and shape
(at LLVM's level 0 on the CPU), shared with the other checks, and runs with float32
matmuls at full precision (``jax.default_matmul_precision("highest")``, a context
local to the call): what is compared to 1e-5 must not be TF32 rounding on a GPU.

Causality holds for the values by construction (``unroll`` is one ``lax.scan``
over ``step``, which sees one input at a time); what :func:`check_causality` guards
is the derivative, which a custom VJP in the step can route backwards in time. (A
``CellParts.project`` that mixes the leading axis does the same on the fused path,
which differentiates it once over the whole sequence: :func:`check_fused` finds it.)

``check_grads`` enables 64-bit types inside its own ``with jax.enable_x64(True)``
block (a context local to the calling thread), never with
``jax.config.update``, so the process's setting is left as it was.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.test_util import check_grads as _jax_check_grads

from rnnlab.cells import Cell, preactivations, step_from_parts
from rnnlab.scan import unroll

Array = jax.Array
PyTree = Any


class CellCheckError(AssertionError):
  """A property of a cell failed; the message is one line (property, cell, shapes, seed)."""


class Shapes(NamedTuple):
  """The shapes of one check: ``xs`` is ``(*batch_shape, num_steps, input_size)``."""

  batch_shape: tuple[int, ...]
  num_steps: int


def random_shapes(seed: int, count: int = 2) -> list[Shapes]:
  """``count`` seeded random :class:`Shapes`: batch ranks 0, 1, 2 in a seeded order, T in 2..6.

  Every batch with a dimension has at least 2 sequences (so lengths and ``vmap``
  have something to tell apart); sizes stay tiny, since each shape is a compilation.
  """
  rng = np.random.default_rng([seed, 17])
  ranks = [int(r) for r in rng.permutation(3)]
  shapes = []
  for i in range(count):
    rank = ranks[i] if i < 3 else int(rng.integers(0, 3))
    batch = tuple(int(d) for d in rng.integers(1, 4, size=rank))
    if rank:
      batch = (*batch[:-1], int(rng.integers(2, 4)))
    shapes.append(Shapes(batch, int(rng.integers(2, 7))))
  return shapes


# --------------------------------------------------------------------------- shared compiled code


def _unroll(cell, params, xs, carry, lengths, *, reverse, impl):
  return unroll(cell, params, xs, carry, lengths=lengths, reverse=reverse, impl=impl)


def _step(cell, params, carry, x):
  return cell.step(params, carry, x)


def _is_float(leaf: Any) -> bool:
  return jnp.issubdtype(jnp.result_type(leaf), jnp.floating)


def _weighted_loss(cell, impl, reverse, params, xs, carry, lengths, weights):
  """``sum(w_y * ys) + sum(w_c * sin(final carry))`` over the floating leaves, and the unroll."""
  ys, final = unroll(cell, params, xs, carry, lengths=lengths, reverse=reverse, impl=impl)
  w_ys, w_carry = weights
  total = jnp.zeros((), jnp.float32)
  for w, leaf in zip(w_ys, _float_leaves(ys), strict=True):
    total = total + jnp.sum(w * leaf.astype(jnp.float32))
  for w, leaf in zip(w_carry, _float_leaves(final), strict=True):
    total = total + jnp.sum(w * jnp.sin(leaf.astype(jnp.float32)))
  return total, (ys, final)


def _jacobian(cell, params, xs, carry):
  """``d ys / d xs`` for every floating leaf of ``ys``: leaves ``(*ys_shape, *xs_shape)``."""

  def outputs(xs):
    return _float_leaves(unroll(cell, params, xs, carry, impl="scan")[0])

  return jax.jacrev(outputs)(xs)


def _vmapped_unroll(cell, params, xs_BxTxI, carry_B, lengths_B):
  one = partial(_unroll, cell, params, reverse=False, impl="scan")
  return jax.vmap(one)(xs_BxTxI, carry_B, lengths_B)


def _parts_step(cell, params, carry, x):
  """One step as ``cell.parts`` describe it, and its gate values (None without ``gates``)."""
  parts = cell.parts
  gate_values = None
  if parts.gates is not None:
    gate_values = parts.gates(carry, *preactivations(parts, params, carry, x))
  return step_from_parts(parts)(params, carry, x), gate_values


def _jit(fn: Callable, **kwargs: Any) -> Callable:
  """``jax.jit(fn)``, at LLVM's optimisation level 0 on the CPU (chosen at the first call).

  The checks' programs are tiny and run a few times, so compiling them is nearly
  all their cost; level 0 halves it (measured: 0.5-0.7 s against 1.0-1.3 s for an
  LSTM's loss and gradient), and its numbers agree with the default level's to float
  rounding, well inside the checks' tolerances. ``compiler_options`` is refused on a
  jit nested in another trace, so this is only for the checks' outermost calls.
  """
  jitted = []

  def call(*args, **kw):
    if not jitted:
      fast = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
      jitted.append(jax.jit(fn, compiler_options=fast, **kwargs))
    return jitted[0](*args, **kw)

  return call


# One compilation per (cell, shapes, options), shared by every check and every call.
_UNROLL = _jit(_unroll, static_argnums=0, static_argnames=("reverse", "impl"))
_STEP = _jit(_step, static_argnums=0)
_VALUE_AND_GRAD = _jit(
  jax.value_and_grad(_weighted_loss, argnums=(3, 4, 5), has_aux=True, allow_int=True),
  static_argnums=(0, 1, 2),
)
_JACOBIAN = _jit(_jacobian, static_argnums=0)
_VMAPPED_UNROLL = _jit(_vmapped_unroll, static_argnums=0)
_PARTS_STEP = _jit(_parts_step, static_argnums=0)


# --------------------------------------------------------------------------- a case and its data


def _float_leaves(tree: PyTree) -> list[Array]:
  return [leaf for leaf in jax.tree.leaves(tree) if _is_float(leaf)]


def _cast(tree: PyTree, dtype: Any) -> PyTree:
  """The floating leaves of concrete ``tree`` cast to ``dtype`` (on the host: no compilation)."""
  dtype = jnp.dtype(dtype)
  return jax.tree.map(
    lambda l: jnp.asarray(np.asarray(l).astype(dtype)) if _is_float(l) else l, tree
  )


class _Case(NamedTuple):
  """One cell, its params and one draw of shapes; every array a check needs comes from here."""

  cell: Cell
  params: PyTree
  input_size: int
  shapes: Shapes
  seed: int

  @property
  def batch_shape(self) -> tuple[int, ...]:
    return self.shapes.batch_shape

  @property
  def num_steps(self) -> int:
    return self.shapes.num_steps

  def describe(self, batch_shape: tuple[int, ...] | None = None) -> str:
    batch_shape = self.batch_shape if batch_shape is None else batch_shape
    xs = (*batch_shape, self.num_steps, self.input_size)
    dtypes = sorted({jnp.dtype(jnp.result_type(l)).name for l in _float_leaves(self.params)})
    return (
      f"cell {self.cell.name!r} on xs {xs} (batch_shape={batch_shape}, T={self.num_steps}, "
      f"input_size={self.input_size}; params {'/'.join(dtypes) or 'without floats'}; "
      f"seed={self.seed})"
    )

  def rng(self, salt: int) -> np.random.Generator:
    return np.random.default_rng([self.seed, salt, self.num_steps, len(self.batch_shape)])

  def xs(self, salt: int = 0, batch_shape: tuple[int, ...] | None = None) -> Array:
    batch_shape = self.batch_shape if batch_shape is None else batch_shape
    shape = (*batch_shape, self.num_steps, self.input_size)
    return jnp.asarray(self.rng(salt).standard_normal(shape).astype(np.float32))

  def carry(
    self, salt: int = 1, batch_shape: tuple[int, ...] | None = None, params: PyTree = None
  ) -> PyTree:
    """The initial carry plus N(0, 0.5^2) on its floating leaves (a zero carry hides bugs)."""
    batch_shape = self.batch_shape if batch_shape is None else batch_shape
    params = self.params if params is None else params
    carry = self.cell.initial_carry(params, batch_shape)
    rng = self.rng(salt)

    def perturb(leaf):
      if not _is_float(leaf):
        return leaf
      leaf = np.asarray(leaf)
      noise = 0.5 * rng.standard_normal(leaf.shape)
      return jnp.asarray((leaf.astype(np.float64) + noise).astype(leaf.dtype))

    return jax.tree.map(perturb, carry)

  def lengths(self, salt: int = 2, batch_shape: tuple[int, ...] | None = None) -> Array:
    """Lengths in ``[0, T]``: the first sequence stops inside ``(0, T)``, the second at 0,
    the third at ``T`` (as far as the batch goes), the others anywhere."""
    batch_shape = self.batch_shape if batch_shape is None else batch_shape
    rng, T = self.rng(salt), self.num_steps
    lengths = rng.integers(0, T + 1, size=math.prod(batch_shape))
    edges = [int(rng.integers(1, T)), 0, T]  # T >= 2: some padding, some real steps
    lengths[: len(edges)] = edges[: lengths.size]
    return jnp.asarray(lengths.reshape(batch_shape).astype(np.int32))

  def weights(self, ys: PyTree, carry: PyTree, salt: int = 3):
    """Distinct float32 weights for each floating leaf of ``ys`` and of ``carry``."""
    rng = self.rng(salt)
    draw = lambda leaf: jnp.asarray(rng.uniform(-1, 1, np.shape(leaf)).astype(np.float32))  # noqa: E731
    return [draw(l) for l in _float_leaves(ys)], [draw(l) for l in _float_leaves(carry)]


# --------------------------------------------------------------------------- failures


def _fail(prop: str, case: _Case, detail: str, batch_shape: tuple[int, ...] | None = None):
  message = f"{prop} failed for {case.describe(batch_shape)}: {detail}"
  raise CellCheckError(" ".join(message.split()))


@contextlib.contextmanager
def _running(prop: str, case: _Case, what: str, batch_shape: tuple[int, ...] | None = None):
  """Turns an exception raised by the cell into this check's one-line failure."""
  try:
    yield
  except CellCheckError:
    raise
  except Exception as e:  # noqa: BLE001  (any error of the user's cell is a failed property)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    message = f"{prop} failed for {case.describe(batch_shape)}: {what} raised {type(e).__name__}"
    raise CellCheckError(" ".join(f"{message}: {first}".split())) from e


def _assert_close(
  prop: str,
  case: _Case,
  what: str,
  got: PyTree,
  want: PyTree,
  *,
  rtol: float,
  atol: float,
  exact: bool = False,
  batch_shape: tuple[int, ...] | None = None,
) -> None:
  """Fails with the first differing leaf and index (NaN equals NaN; float0 leaves skipped)."""
  got_paths, got_def = jax.tree_util.tree_flatten_with_path(got)
  want_paths, want_def = jax.tree_util.tree_flatten_with_path(want)
  if got_def != want_def:
    _fail(prop, case, f"{what}: structure {got_def} where {want_def} was expected", batch_shape)
  for (path, g), (_, w) in zip(got_paths, want_paths, strict=True):
    name = what + jax.tree_util.keystr(path)
    g, w = np.asarray(g), np.asarray(w)
    if g.dtype == jax.dtypes.float0:
      continue
    if g.shape != w.shape:
      _fail(prop, case, f"{name} has shape {g.shape} where {w.shape} was expected", batch_shape)
    g64, w64 = g.astype(np.float64), w.astype(np.float64)
    both_nan = np.isnan(g64) & np.isnan(w64)
    if exact:
      bad = ~((g64 == w64) | both_nan)
    else:
      bad = ~(np.isclose(g64, w64, rtol=rtol, atol=atol) | both_nan)
    if bad.any():
      index = tuple(int(i) for i in np.argwhere(bad)[0])
      diff = np.abs(g64 - w64)
      worst = np.nanmax(np.where(bad, diff, np.nan)) if np.isfinite(diff[bad]).any() else np.nan
      tol = "exactly" if exact else f"rtol={rtol:g}, atol={atol:g}"
      _fail(
        prop,
        case,
        f"{name} differs at index {index}: {g64[index]:.7g} vs {w64[index]:.7g} "
        f"({int(bad.sum())} of {bad.size} elements, max |diff| {worst:.3g}; {tol})",
        batch_shape,
      )


def _assert_finite(prop: str, case: _Case, what: str, tree: PyTree) -> None:
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    leaf = np.asarray(leaf)
    if leaf.dtype == jax.dtypes.float0 or not jnp.issubdtype(leaf.dtype, jnp.inexact):
      continue
    bad = ~np.isfinite(leaf.astype(np.float64))
    if bad.any():
      index = tuple(int(i) for i in np.argwhere(bad)[0])
      name = what + jax.tree_util.keystr(path)
      _fail(prop, case, f"{name} is {leaf[index]} at index {index} ({int(bad.sum())} non-finite)")


# --------------------------------------------------------------------------- references


def _first_step(xs: Array) -> Array:
  """``xs[..., 0, :]``, sliced on the host (an eager slice would be a compilation)."""
  return jnp.asarray(np.asarray(xs)[..., 0, :])


def _time_major(tree: PyTree, batch_ndim: int) -> PyTree:
  return jax.tree.map(lambda l: np.moveaxis(np.asarray(l), batch_ndim, 0), tree)


def _loop(cell, params, xs, carry, *, reverse=False, lengths=None):
  """The reference: a Python loop over the jitted ``step``; ``ys`` time-major.

  With ``lengths`` each sequence keeps its carry and outputs zeros from its
  length on (NumPy selects, so the step may see any padding).
  """
  batch_ndim = np.ndim(xs) - 2
  xs_T = np.moveaxis(np.asarray(xs), batch_ndim, 0)
  order = range(xs_T.shape[0] - 1, -1, -1) if reverse else range(xs_T.shape[0])
  ys = {}
  for t in order:
    new_carry, y = _STEP(cell, params, carry, xs_T[t])
    if lengths is not None:
      valid = np.asarray(t < np.asarray(lengths))

      def keep(new, old, valid=valid):
        mask = valid.reshape(valid.shape + (1,) * (np.ndim(new) - valid.ndim))
        return np.where(mask, np.asarray(new), np.asarray(old))

      new_carry = jax.tree.map(keep, new_carry, carry)
      y = jax.tree.map(lambda v, keep=keep: keep(v, np.zeros_like(v)), y)
    carry, ys[t] = new_carry, y
  stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *[ys[t] for t in sorted(ys)])
  return stacked, carry


# --------------------------------------------------------------------------- the checks


def _check_loop(case: _Case, rtol: float, atol: float) -> None:
  prop = "unroll == Python loop over step"
  cell, params, nb = case.cell, case.params, len(case.batch_shape)
  xs, carry = case.xs(), case.carry()
  with _running(prop, case, "the unroll"):
    ys, final = _UNROLL(cell, params, xs, carry, None, reverse=False, impl="scan")
  with _running(prop, case, "the loop over step"):
    want_ys, want_final = _loop(cell, params, xs, carry)
  _assert_finite(prop, case, "the unroll's (ys, final carry)", (ys, final))
  _assert_close(prop, case, "ys", _time_major(ys, nb), want_ys, rtol=rtol, atol=atol)
  _assert_close(prop, case, "final carry", final, want_final, rtol=rtol, atol=atol)


def _check_causality(case: _Case) -> None:
  prop = "causality"
  cell, params = case.cell, case.params
  xs, carry = case.xs(), case.carry()
  T, num = case.num_steps, math.prod(case.batch_shape)
  with _running(prop, case, "jax.jacrev of the unroll"):
    jacobians = _JACOBIAN(cell, params, xs, carry)
  reached = False
  for k, J in enumerate(jacobians):
    J = np.asarray(J, np.float64)
    # (*batch, T, *F, *batch, T, I) -> (B, T, F, B, T, I); keep each sequence's own block.
    features = J.size // (num * T * num * T * case.input_size)
    J = J.reshape(num, T, features, num, T, case.input_size)
    own = J[np.arange(num), :, :, np.arange(num)]  # (B, T, F, T, I)
    dependence = np.abs(own).max(axis=(0, 2, 4))  # (t, s)
    future = np.triu(dependence, k=1)
    if future.any():
      t, s = (int(i) for i in np.argwhere(future)[0])
      _fail(
        prop,
        case,
        f"output leaf {k} at t={t} depends on the input at s={s} > t "
        f"(max |d y_t / d x_s| = {future[t, s]:.3g}; it must be exactly 0)",
      )
    reached = reached or bool(np.tril(dependence).any())
  if not reached:
    _fail(prop, case, "no output depends on any input (every d y_t / d x_s is 0)")


def _check_padding(case: _Case, rtol: float, atol: float) -> None:
  prop = "padding"
  cell, params, nb = case.cell, case.params, len(case.batch_shape)
  xs, carry, lengths = case.xs(), case.carry(), case.lengths()
  T = case.num_steps
  pad = (np.arange(T) >= np.asarray(lengths)[..., None])[..., None]  # (*batch, T, 1)
  with _running(prop, case, "the unroll with lengths"):
    ys_shape, carry_shape = jax.eval_shape(
      partial(_unroll, cell, reverse=False, impl="scan"), params, xs, carry, lengths
    )
  weights = case.weights(ys_shape, carry_shape)
  runs = {}
  rng = case.rng(4)
  for filling in ("random", "large", "nan"):
    garbage = {
      "random": rng.standard_normal(xs.shape),
      "large": 1e4 * rng.standard_normal(xs.shape),
      "nan": np.full(xs.shape, np.nan),
    }[filling]
    xs_padded = jnp.asarray(np.where(pad, garbage.astype(xs.dtype), np.asarray(xs)))
    with _running(prop, case, f"the gradient of a loss of the unroll ({filling} padding)"):
      (_, (ys, final)), grads = _VALUE_AND_GRAD(
        cell, "scan", False, params, xs_padded, carry, lengths, weights
      )
    runs[filling] = (xs_padded, ys, final, grads)
  xs_padded, ys, final, grads = runs["random"]
  for path, leaf in jax.tree_util.tree_flatten_with_path(ys)[0]:
    leaf = np.asarray(leaf, np.float64)
    past = pad[..., 0].reshape(pad.shape[:-1] + (1,) * (leaf.ndim - nb - 1))
    if np.any(np.where(past, leaf, 0.0) != 0):
      _fail(prop, case, f"ys{jax.tree_util.keystr(path)} is not 0 past a sequence's length")
  _assert_finite(prop, case, "(ys, final carry)", (ys, final))
  _assert_finite(prop, case, "the gradient (params, xs, carry)", grads)
  grad_xs = np.asarray(grads[1], np.float64)
  if np.any(np.where(pad, grad_xs, 0.0) != 0):
    index = tuple(int(i) for i in np.argwhere(np.where(pad, grad_xs, 0.0) != 0)[0])
    _fail(prop, case, f"the gradient reaching the padding is not 0 (xs{list(index)})")
  # The sequences cut at their lengths: the loop over step, carries frozen past each length.
  with _running(prop, case, "the loop over step"):
    want_ys, want_final = _loop(cell, params, xs_padded, carry, lengths=lengths)
  _assert_close(
    prop, case, "ys (vs the sequences cut at their lengths)", _time_major(ys, nb), want_ys,
    rtol=rtol, atol=atol,
  )  # fmt: skip
  _assert_close(
    prop, case, "final carry (vs the sequences cut at their lengths)", final, want_final,
    rtol=rtol, atol=atol,
  )  # fmt: skip
  for filling in ("large", "nan"):
    _, ys_b, final_b, grads_b = runs[filling]
    what = f"with {filling} padding instead of random, "
    _assert_close(prop, case, what + "ys", ys_b, ys, rtol=0, atol=0, exact=True)
    _assert_close(prop, case, what + "final carry", final_b, final, rtol=0, atol=0, exact=True)
    names = ("the gradient w.r.t. params", "the gradient w.r.t. xs", "the gradient w.r.t. carry")
    for name, g_b, g in zip(names, grads_b, grads, strict=True):
      _assert_close(prop, case, what + name, g_b, g, rtol=rtol, atol=atol)


def _check_jit(case: _Case, rtol: float, atol: float) -> None:
  prop = "jit == no-jit"
  cell, params = case.cell, case.params
  xs, carry = case.xs(), case.carry()
  x = _first_step(xs)
  with _running(prop, case, "jax.jit(step)"):
    jitted = _STEP(cell, params, carry, x)
  with _running(prop, case, "step op by op (jax.disable_jit)"), jax.disable_jit():
    eager = cell.step(params, carry, x)
  _assert_close(prop, case, "step (carry, y)", jitted, eager, rtol=rtol, atol=atol)
  with _running(prop, case, "jax.jit(unroll)"):
    jitted = _UNROLL(cell, params, xs, carry, None, reverse=False, impl="scan")
  with _running(prop, case, "unroll op by op (jax.disable_jit)"), jax.disable_jit():
    eager = unroll(cell, params, xs, carry, impl="scan")
  _assert_close(prop, case, "unroll (ys, carry)", jitted, eager, rtol=rtol, atol=atol)


def _check_vmap(case: _Case, rtol: float, atol: float) -> None:
  prop = "vmap == loop"
  cell, params = case.cell, case.params
  batch_shape = case.batch_shape or (2,)  # something to map over
  num = math.prod(batch_shape)
  xs, carry = case.xs(5, batch_shape), case.carry(6, batch_shape)
  lengths = case.lengths(7, batch_shape)

  def flat(tree):
    return jax.tree.map(
      lambda l: np.asarray(l).reshape(num, *np.shape(l)[len(batch_shape) :]), tree
    )

  xs_B, carry_B, lengths_B = flat(xs), flat(carry), flat(lengths)
  per_sequence = []
  with _running(prop, case, "the loop over step for one sequence", batch_shape):
    for b in range(num):
      one = jax.tree.map(lambda l, b=b: l[b], (xs_B, carry_B, lengths_B))
      per_sequence.append(_loop(cell, params, one[0], one[1], lengths=one[2]))
  want = jax.tree.map(lambda *leaves: np.stack(leaves), *per_sequence)
  with _running(prop, case, "jax.vmap of the unbatched unroll", batch_shape):
    mapped = _VMAPPED_UNROLL(cell, params, xs_B, carry_B, lengths_B)
  with _running(prop, case, "the batched unroll", batch_shape):
    # The padding check's compiled function (same shapes): its auxiliary output is the unroll.
    shapes = jax.eval_shape(
      partial(_unroll, cell, reverse=False, impl="scan"), params, xs, carry, lengths
    )
    weights = case.weights(*shapes)
    (_, batched), _ = _VALUE_AND_GRAD(cell, "scan", False, params, xs, carry, lengths, weights)
    batched = flat(batched)
  what = "jax.vmap of the unbatched unroll (ys, carry) vs a loop over sequences"
  _assert_close(prop, case, what, mapped, want, rtol=rtol, atol=atol, batch_shape=batch_shape)
  what = "the batched unroll (ys, carry) vs a loop over sequences"
  _assert_close(prop, case, what, batched, want, rtol=rtol, atol=atol, batch_shape=batch_shape)


def _split_floats(tree: PyTree) -> tuple[list[Array], Callable[[list[Array]], PyTree]]:
  """The floating leaves of ``tree`` and the function that puts new ones back."""
  leaves, treedef = jax.tree.flatten(tree)
  is_float = [_is_float(leaf) for leaf in leaves]

  def rebuild(floats: list[Array]) -> PyTree:
    it = iter(floats)
    return treedef.unflatten([next(it) if f else l for l, f in zip(leaves, is_float, strict=True)])

  return [l for l, f in zip(leaves, is_float, strict=True) if f], rebuild


def _check_grads(case: _Case, order: int, dtype: Any) -> None:
  prop = "check_grads"
  cell, name = case.cell, jnp.dtype(dtype).name
  with jax.enable_x64(True) if jnp.dtype(dtype).itemsize == 8 else contextlib.nullcontext():
    params = _cast(case.params, dtype)
    carry = _cast(case.carry(8, params=params), dtype)
    x = _cast(_first_step(case.xs(9)), dtype)
    with _running(prop, case, f"step in {name}"):
      new_carry, y = jax.eval_shape(cell.step, params, carry, x)
    got = _dtype_names((new_carry, y))
    if got not in ([], [name]):
      _fail(
        prop,
        case,
        f"with {name} params the step returns {got} values: gradients cannot be checked "
        "at this precision (cast x to the params' dtype)",
      )
    p_floats, p_rebuild = _split_floats(params)
    c_floats, c_rebuild = _split_floats(carry)
    # One flat vector in and out: check_grads's own arithmetic then runs on one array,
    # not leaf by leaf (each new leaf shape would be another small compilation).
    vec, unravel = ravel_pytree((p_floats, c_floats, x))

    @jax.jit
    def step(vec):
      p, c, x = unravel(vec)
      return ravel_pytree(_float_leaves(cell.step(p_rebuild(p), c_rebuild(c), x)))[0]

    try:
      _jax_check_grads(step, (vec,), order=order, modes=["rev"])
    except AssertionError as e:
      lines = [line.strip() for line in str(e).splitlines() if line.strip()]
      keep = [line for line in lines if line.startswith(("Max ", "Mismatched"))] or lines[:1]
      _fail(
        prop,
        case,
        f"the step's reverse-mode derivatives (order {order}) differ from finite "
        f"differences in {name}: " + "; ".join(keep),
      )
    except Exception as e:  # noqa: BLE001
      with _running(prop, case, f"jax.test_util.check_grads of the step in {name}"):
        raise e


def _check_fused(case: _Case, rtol: float, atol: float) -> None:
  prop = "fused == scan"
  cell, params, parts = case.cell, case.params, case.cell.parts
  if parts is None:
    raise ValueError(f"check_fused: {cell.name} has no CellParts (cell.parts is None)")
  xs, carry, lengths = case.xs(12), case.carry(13), case.lengths(14)
  x = _first_step(xs)
  with _running(prop, case, "the step that the CellParts describe"):
    from_parts, gate_values = _PARTS_STEP(cell, params, carry, x)
  with _running(prop, case, "step"):
    direct = _STEP(cell, params, carry, x)
  what = "one step: the CellParts' (carry, y) vs step's"
  _assert_close(prop, case, what, from_parts, direct, rtol=rtol, atol=atol)
  with _running(prop, case, "CellParts.recurrent"):
    w, _ = parts.recurrent(params)
  if parts.blocks and np.shape(w)[-1] % len(parts.blocks):
    _fail(
      prop,
      case,
      f"CellParts.blocks {parts.blocks} do not split the {np.shape(w)[-1]} columns of the "
      "recurrent weight evenly",
    )
  if gate_values is not None:
    gates, units = gate_values
    for kind, values, (low, high) in (("gate", gates, (0, 1)), ("unit", units, (-1, 1))):
      for name, v in values.items():
        v = np.asarray(v, np.float64)
        if not np.all((v >= low) & (v <= high)):
          _fail(
            prop,
            case,
            f"CellParts.gates: {kind} {name!r} has values outside [{low}, {high}] "
            f"(min {np.nanmin(v):.3g}, max {np.nanmax(v):.3g})",
          )
  with _running(prop, case, "the unroll with lengths"):
    ys_shape, carry_shape = jax.eval_shape(
      partial(_unroll, cell, reverse=False, impl="scan"), params, xs, carry, lengths
    )
  weights = case.weights(ys_shape, carry_shape, salt=15)
  results = {}
  for impl in ("scan", "fused"):
    with _running(prop, case, f"the gradient of a loss of the unroll (impl={impl!r})"):
      (_, outputs), grads = _VALUE_AND_GRAD(cell, impl, False, params, xs, carry, lengths, weights)
    results[impl] = (outputs, grads)
  names = ("(ys, final carry)", "the gradient (params, xs, carry)")
  for name, got, want in zip(names, results["fused"], results["scan"], strict=True):
    what = f"with lengths: impl='fused' {name}"
    _assert_close(prop, case, what, got, want, rtol=rtol, atol=atol)


def _dtype_names(tree: PyTree) -> list[str]:
  return sorted({jnp.dtype(jnp.result_type(l)).name for l in _float_leaves(tree)})


def _check_dtypes(case: _Case, dtypes: Sequence[Any], low_precision_tol: float) -> None:
  prop = "dtype"
  cell = case.cell
  key = jax.random.key(case.seed)
  xs = case.xs(16)  # float32: the cell casts its inputs to the params' dtype
  for dtype in dtypes:
    dtype = jnp.dtype(dtype)
    wide = dtype.itemsize == 8
    with jax.enable_x64(True) if wide else contextlib.nullcontext():
      expect = [dtype.name]
      with _running(prop, case, f"init(key, {case.input_size}, dtype={dtype.name})"):
        made = jax.eval_shape(lambda: cell.init(key, case.input_size, dtype=dtype))  # noqa: B023
      if _dtype_names(made) not in ([], expect):
        _fail(prop, case, f"init(..., dtype={dtype.name}) makes {_dtype_names(made)} params")
      params = _cast(case.params, dtype)
      with _running(prop, case, f"initial_carry for {dtype.name} params"):
        zeros = cell.initial_carry(params, case.batch_shape)
      if _dtype_names(zeros) not in ([], expect):
        _fail(
          prop,
          case,
          f"initial_carry gives {_dtype_names(zeros)} leaves for {dtype.name} params",
        )
      carry = _cast(case.carry(17, params=params), dtype)
      with _running(prop, case, f"step with {dtype.name} params and float32 x"):
        new_carry, y = jax.eval_shape(cell.step, params, carry, _first_step(xs))
      if _dtype_names(new_carry) not in ([], expect) or _dtype_names(y) not in ([], expect):
        _fail(
          prop,
          case,
          f"with {dtype.name} params and float32 x the step returns a carry of "
          f"{_dtype_names(new_carry)} and y of {_dtype_names(y)} (all arithmetic should run "
          "in the params' dtype: cast x to it)",
        )
      with _running(prop, case, f"the unroll with {dtype.name} params"):
        ys, final = _UNROLL(cell, params, xs, carry, None, reverse=False, impl="scan")
      if _dtype_names(ys) not in ([], expect) or _dtype_names(final) not in ([], expect):
        _fail(
          prop,
          case,
          f"with {dtype.name} params the unroll returns ys of {_dtype_names(ys)} and a "
          f"carry of {_dtype_names(final)}",
        )
      if dtype.itemsize >= 4:
        continue
      # Low precision: near the float32 unroll of the same (rounded) params and carry.
      p32, c32 = _cast(params, jnp.float32), _cast(carry, jnp.float32)
      want = _UNROLL(cell, p32, xs, c32, None, reverse=False, impl="scan")
    scale = max([1.0] + [float(np.max(np.abs(np.asarray(l)))) for l in _float_leaves(want)])
    what = f"the {dtype.name} unroll (ys, carry) vs float32"
    _assert_close(
      prop, case, what, (ys, final), want, rtol=low_precision_tol, atol=low_precision_tol * scale
    )


# --------------------------------------------------------------------------- public API

CHECKS = ("loop", "causality", "padding", "jit", "vmap", "dtypes", "grads", "fused")


def _cases(
  cell: Cell,
  input_size: int,
  params: PyTree | None,
  shapes: Iterable[Shapes | tuple] | None,
  seed: int,
) -> list[_Case]:
  if not isinstance(cell, Cell):
    raise TypeError(f"rnnlab.testing: cell must be an rnnlab Cell; got {type(cell).__name__}")
  if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
    raise ValueError(f"rnnlab.testing: input_size must be a positive int; got {input_size!r}")
  if params is None:
    params = cell.init(jax.random.key(seed), input_size)
  shapes = random_shapes(seed) if shapes is None else shapes
  cases = []
  for s in shapes:
    batch_shape, num_steps = s
    batch_shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    if num_steps < 2:
      raise ValueError(f"rnnlab.testing: shapes need T >= 2 (padding needs room); got {s!r}")
    cases.append(_Case(cell, params, input_size, Shapes(batch_shape, int(num_steps)), seed))
  return cases


def _each(cases: list[_Case], check: Callable[[_Case], Any]) -> None:
  """Runs ``check`` on every case with float32 matmuls at full precision.

  The checks compare two computations of one function (scan and loop, fused and
  scan, jit and op by op) to 1e-5; on a GPU or TPU the default precision rounds
  float32 matmul inputs (to TF32 or bfloat16), which would drown that in noise.
  """
  with jax.default_matmul_precision("highest"):
    for case in cases:
      check(case)


def check_loop(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  rtol: float = 1e-5,
  atol: float = 1e-5,
) -> None:
  """``unroll`` from a random carry equals a Python loop over ``step``; its values are finite.

  Arguments as :func:`check_cell`.
  """
  _each(_cases(cell, input_size, params, shapes, seed), lambda case: _check_loop(case, rtol, atol))


def check_causality(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
) -> None:
  """``d y_t / d x_s`` is exactly 0 for every ``s > t`` (each sequence's own inputs).

  From ``jax.jacrev`` of the unroll. Some output must depend on some input at or
  before its step, else the check would say nothing. Arguments as :func:`check_cell`.
  """
  _each(_cases(cell, input_size, params, shapes, seed), _check_causality)


def check_padding(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  rtol: float = 1e-5,
  atol: float = 1e-5,
) -> None:
  """With random ``lengths``, padding beyond them changes nothing.

  Outputs past a length are exactly 0; outputs and final carry equal the loop over
  ``step`` on the sequences cut at their lengths; the padding's gradient is exactly
  0; every gradient is finite; large or NaN padding gives the same outputs, carry
  and gradients as random padding. (``unroll`` feeds zeros to the step at padded
  steps and discards the result: a step that is not finite at ``x = 0`` turns it
  into NaN gradients.) Arguments as :func:`check_cell`.
  """
  _each(
    _cases(cell, input_size, params, shapes, seed), lambda case: _check_padding(case, rtol, atol)
  )


def check_jit(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  rtol: float = 1e-5,
  atol: float = 1e-5,
) -> None:
  """``jax.jit`` of ``step`` and of ``unroll`` equals running them op by op.

  Catches a step that is not a pure function of its arguments (Python state or
  host randomness, frozen at trace time under ``jit``) or that cannot be traced.
  Arguments as :func:`check_cell`.
  """
  _each(_cases(cell, input_size, params, shapes, seed), lambda case: _check_jit(case, rtol, atol))


def check_vmap(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  rtol: float = 1e-5,
  atol: float = 1e-5,
) -> None:
  """``vmap`` of the unbatched unroll, and the batched unroll, equal per-sequence unrolls.

  With random lengths. The batched unroll catches a step that mixes the sequences
  of a batch (a reduction over a batch axis); ``vmap`` one that cannot be mapped.
  An unbatched shape is checked with a batch of 2. Arguments as :func:`check_cell`.
  """
  _each(_cases(cell, input_size, params, shapes, seed), lambda case: _check_vmap(case, rtol, atol))


def check_grads(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  order: int = 1,
  dtype: Any = "float64",
) -> None:
  """``jax.test_util.check_grads`` (reverse mode) of the step and of a loss of the unroll.

  In ``dtype`` (float64 by default, inside ``with jax.enable_x64(True)``): params,
  carry and inputs are cast to it, with respect to all of which (their floating
  leaves) the gradients are checked. ``order`` applies to the step (2 checks second
  derivatives too; keep 1 for cells with kinks, such as ReLU); the loss of the
  unroll with lengths is checked to first order. A custom VJP with a wrong rule
  fails here. Arguments as :func:`check_cell`.
  """
  _each(
    _cases(cell, input_size, params, shapes, seed), lambda case: _check_grads(case, order, dtype)
  )


def check_fused(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  rtol: float = 2e-5,
  atol: float = 2e-5,
) -> None:
  """The cell's :class:`~rnnlab.cells.CellParts` agree with its step, the fused path with the scan.

  One step of the parts (:func:`rnnlab.cells.step_from_parts`) gives ``step``'s
  carry and output; ``unroll(impl="fused")`` gives ``impl="scan"``'s outputs,
  final carry and gradients (params, inputs, initial carry), with lengths, in both
  directions; ``gates`` returns gates in ``[0, 1]`` and units in ``[-1, 1]``;
  ``blocks`` split the recurrent weight's columns evenly. A ``ValueError`` for a
  cell without parts. Arguments as :func:`check_cell`.
  """
  _each(_cases(cell, input_size, params, shapes, seed), lambda case: _check_fused(case, rtol, atol))


def check_dtypes(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  dtypes: Sequence[Any] = ("float32", "bfloat16"),
  low_precision_tol: float = 5e-2,
) -> None:
  """Each of ``dtypes`` is kept by ``init``, ``initial_carry``, ``step`` and ``unroll``.

  The params are cast to each dtype and the inputs stay float32 (the cell casts
  them). A dtype narrower than float32 must also stay within ``low_precision_tol``
  (relative, and absolute times the largest float32 value) of the float32 unroll of
  the same rounded params and carry. float64 may be listed: it runs inside
  ``with jax.enable_x64(True)``. Arguments as :func:`check_cell`.
  """
  _each(
    _cases(cell, input_size, params, shapes, seed),
    lambda case: _check_dtypes(case, dtypes, low_precision_tol),
  )


def check_cell(
  cell: Cell,
  input_size: int,
  *,
  params: PyTree | None = None,
  shapes: Iterable[Shapes | tuple] | None = None,
  seed: int = 0,
  skip: Sequence[str] = (),
  rtol: float = 1e-5,
  atol: float = 1e-5,
  grad_order: int = 1,
  grad_dtype: Any = "float64",
  dtypes: Sequence[Any] = ("float32", "bfloat16"),
) -> tuple[str, ...]:
  """Runs every check of this module on ``cell``, shape by shape; returns the names run.

  The first failure raises :class:`CellCheckError`, an ``AssertionError`` with one
  line naming the property, the cell, the shapes and the seed.

  Args:
    cell: any :class:`~rnnlab.cells.Cell`.
    input_size: I, the feature size of its inputs.
    params: the params to check with (default ``cell.init(jax.random.key(seed),
      input_size)``); random params exercise more terms than an init with zero
      biases.
    shapes: :class:`Shapes` (or ``(batch_shape, T)`` pairs, ``T >= 2``) to check
      at; default ``random_shapes(seed)``, two draws.
    seed: seeds the default params, the shapes and every random input.
    skip: names from :data:`CHECKS` to leave out; ``"fused"`` is left out anyway
      for a cell without parts.
    rtol, atol: float32 comparisons (the fused path gets twice these).
    grad_order, grad_dtype: ``order`` and ``dtype`` of :func:`check_grads`.
    dtypes: those of :func:`check_dtypes`.

  Returns:
    The names of the checks that ran, in order.
  """
  unknown = sorted(set(skip) - set(CHECKS))
  if unknown:
    raise ValueError(f"check_cell: unknown checks in skip: {unknown}; expected names from {CHECKS}")
  names = tuple(n for n in CHECKS if n not in skip and (n != "fused" or cell.parts is not None))
  runners = {
    "loop": lambda case: _check_loop(case, rtol, atol),
    "causality": _check_causality,
    "padding": lambda case: _check_padding(case, rtol, atol),
    "jit": lambda case: _check_jit(case, rtol, atol),
    "vmap": lambda case: _check_vmap(case, rtol, atol),
    "grads": lambda case: _check_grads(case, grad_order, grad_dtype),
    "fused": lambda case: _check_fused(case, 2 * rtol, 2 * atol),
    "dtypes": lambda case: _check_dtypes(case, dtypes, 5e-2),
  }

  def every_check(case: _Case) -> None:
    for name in names:
      runners[name](case)

  _each(_cases(cell, input_size, params, shapes, seed), every_check)
  return names


__all__ = [
  "CHECKS",
  "CellCheckError",
  "Shapes",
  "check_causality",
  "check_cell",
  "check_dtypes",
  "check_fused",
  "check_grads",
  "check_jit",
  "check_loop",
  "check_padding",
  "check_vmap",
  "random_shapes",
]
