r"""Gradient-flow diagnostics: why long dependencies are hard, measured exactly.

Every function here is pure and composes with ``jit`` and ``vmap``. Notation:
the carry (the whole state: ``h``, or ``(h, c)`` for the LSTM) after step ``t``
is ``c_t``, ``t = 1..T``, with ``c_0`` the initial carry, and
``J_t = dc_t / dc_{t-1}`` is the step's Jacobian. With weights stored
``(in, out)`` (``h' = act(x W_ih + h W_hh + b)``) the Elman step has
``J_t = diag(act'(a_t)) W_hh^T``.

1. :func:`value_and_state_grads`, :func:`state_grads`: ``dL/dc_t`` for every
   ``t`` and every unroll inside any loss, from one backward pass (zero probes
   added to the states inside the scan, as SCIENCE.md item 1), with
   :func:`step_norms` for ``||dL/dh_t||``.
2. :func:`jacobian_norms`: ``||dc_T/dc_t||`` (spectral, Frobenius, the whole
   singular spectrum) at every lag ``T - t``, exactly for small states and by
   power iteration with ``jvp``/``vjp`` for large ones; :func:`decay_rate` and
   :func:`memory_horizon` summarise them.
3. :func:`recurrent_spectra`: spectral radius and largest singular value of each
   gate block of the recurrent weights, with Pascanu's bound ``gamma * sigma_max``.
4. :func:`lyapunov_spectrum`: the QR method on the driven dynamics.
5. :func:`gate_values`, :func:`gate_statistics`: gate means and distributions
   over time and the fraction of saturated tanh units.
6. :func:`global_norm`, :func:`clip_fired`, :func:`all_finite`,
   :func:`training_stats`: per-step training statistics (used by
   :mod:`rnnlab.train`).
7. :func:`parameter_sensitivity`, :func:`curse_of_memory_closed_form`: the
   sensitivity of the state to the recurrent parameters over time (Zucchet &
   Orvieto 2024).

Logarithms are natural; decay rates are per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from rnnlab import linalg
from rnnlab import probes as probes_lib
from rnnlab import scan as scan_lib
from rnnlab.cells import Cell, preactivations

Array = jax.Array
PyTree = Any

# --------------------------------------------------------------------------
# 1. dL/dc_t for every t, from one backward pass.
# --------------------------------------------------------------------------


KeyPath = tuple  # a key path of jax.tree_util, e.g. (GetAttrKey('encoder'), SequenceKey(0))


class _ProbeSpec(NamedTuple):
  name: str  # "reverse_lstm", ...: the unroll's cell name, reverse_ for a reverse unroll
  probes: PyTree  # ShapeDtypeStructs like the carry with a leading time axis
  batch_ndim: int  # batch dimensions in front of each carry leaf
  where: KeyPath | None  # where its params sit in the differentiated arguments, if they do


class _Tap:
  """Records (first trace) or feeds (second trace) the probes of each unroll.

  Recording, it also finds where each unroll's params sit in the differentiated
  arguments: their leaves are the very tracers that the trace made of those
  arguments when a model hands its params down unchanged.
  """

  def __init__(self, feed: Sequence[PyTree] | None = None, specs: Sequence[_ProbeSpec] = ()):
    self.specs: list[_ProbeSpec] = []
    self.feed, self.expected = feed, specs
    self.paths: dict[int, KeyPath] = {}
    self.order: list[KeyPath] = []

  def index(self, traced_args: PyTree) -> None:
    """Remembers the key path of every leaf of the (traced) differentiated arguments."""
    with_paths, _ = jax.tree_util.tree_flatten_with_path(traced_args)
    self.order = [tuple(path) for path, _ in with_paths]
    self.paths = {id(leaf): path for path, (_, leaf) in zip(self.order, with_paths, strict=True)}

  def locate(self, params: PyTree) -> KeyPath | None:
    """The key path of the subtree that ``params`` is, or None if it is not one."""
    paths = [self.paths.get(id(leaf)) for leaf in jax.tree.leaves(params)]
    if not paths or any(p is None for p in paths):
      return None
    prefix = paths[0]
    for p in paths[1:]:
      n = 0
      while n < min(len(prefix), len(p)) and prefix[n] == p[n]:
        n += 1
      prefix = prefix[:n]
    under = [p for p in self.order if p[: len(prefix)] == prefix]
    return prefix if under == paths else None

  def __call__(self, unroll: probes_lib.Unroll) -> PyTree:
    index = len(self.specs)
    name = ("reverse_" if unroll.reverse else "") + unroll.cell.name
    shapes = jax.tree.map(
      lambda c: jax.ShapeDtypeStruct((unroll.num_steps, *c.shape), c.dtype), unroll.carry
    )
    where = self.locate(unroll.params) if self.feed is None else None
    self.specs.append(_ProbeSpec(name, shapes, unroll.batch_ndim, where))
    if self.feed is None:
      return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    if index >= len(self.expected) or _structure(shapes) != _structure(self.expected[index].probes):
      raise ValueError(
        "state_grads: the loss ran a different sequence of unrolls on its second trace "
        f"(unroll {index}, {name}); it must be a pure function of its arguments"
      )
    return self.feed[index]


def _structure(tree: PyTree):
  return jax.tree.structure(tree), [(s.shape, s.dtype) for s in jax.tree.leaves(tree)]


def _placements(specs: Sequence[_ProbeSpec], num_args: int | None) -> dict[KeyPath, list[int]]:
  """``{key path: [unroll index, ...]}``, or a one-line error for an unroll with no place."""
  args = "argument" if num_args is None else f"{num_args} differentiated arguments"
  placed: dict[KeyPath, list[int]] = {}
  for i, spec in enumerate(specs):
    if spec.where is None:
      raise ValueError(
        f"state_grads: unroll {i} ({spec.name}) ran with params that are not a subtree of the "
        f"differentiated {args} (closed over, or computed, cast or vmapped inside the loss); "
        "pass them to the loss as they are, or use by_call=True for a tuple in call order"
      )
    placed.setdefault(spec.where, []).append(i)
  for a in placed:
    for b in placed:
      if a != b and b[: len(a)] == a:
        raise ValueError(
          f"state_grads: unroll {placed[b][0]} ({specs[placed[b][0]].name}) ran with params "
          f"inside those of unroll {placed[a][0]} ({specs[placed[a][0]].name}); the two "
          "cannot both take their params' place (use by_call=True)"
        )
  return placed


def _arrange(tree: PyTree, placed: dict[KeyPath, PyTree]) -> PyTree:
  """``tree`` with the subtree at each key path of ``placed`` replaced by its value, and
  every subtree that holds none of them by None."""

  def walk(node, path):
    if path in placed:
      return placed[path]
    if not any(p[: len(path)] == path for p in placed):
      return None
    # Flatten one level: every node below this one counts as a leaf.
    children, treedef = jax.tree_util.tree_flatten_with_path(node, is_leaf=lambda x: x is not node)
    return treedef.unflatten([walk(child, path + tuple(key)) for key, child in children])

  return walk(tree, ())


def _batch_first(grads: PyTree, batch_ndim: int) -> PyTree:
  return jax.tree.map(lambda g: jnp.moveaxis(g, 0, batch_ndim), grads)


def value_and_state_grads(
  loss_fn: Callable[..., Any],
  argnums: int | Sequence[int] = 0,
  *,
  has_aux: bool = False,
  time_major: bool = True,
  by_call: bool = False,
) -> Callable[..., tuple[Any, PyTree, PyTree]]:
  r"""Like ``jax.value_and_grad``, plus ``dL/dc_t`` for every step of every unroll.

  ``loss_fn`` is any scalar function of its arguments that runs
  :func:`rnnlab.unroll` (directly or through the layers and models: each
  :func:`~rnnlab.layers.rnn`, each direction of a bidirectional layer and each
  layer of a stack is one unroll). While it is traced a zero probe ``d_t``
  shaped like the carry is added after every valid step of every unroll,
  ``c_t = step(c_{t-1}, x_t) + d_t``, and the one backward pass of
  ``jax.grad`` gives ``dL/dd_t = dL/dc_t`` together with the parameter
  gradients. The cost is one backward pass that also writes out the state
  gradients (``python -m experiments.benchmark --suite=diagnostics`` measures it
  against ``jax.value_and_grad``). The unrolls are found through a
  :func:`rnnlab.probes.tap` scope while the loss is traced.

  The state gradients are organised like the model, as ``grads`` are: the
  differentiated argument's pytree with each cell's params (what an unroll ran
  with) replaced by that unroll's ``dL/dc_t``, a pytree like its carry with a
  time axis, and every subtree without a cell (readout, embedding) by None. For
  ``params`` of ``stacked([bidirectional(lstm(H)), gru(H)])`` inside
  :func:`rnnlab.models.many_to_one`, ``state_grads`` is::

      ModelParams(
          embed=None,
          encoder=(
              BidirectionalParams(forward=LSTMCarry(h, c), backward=LSTMCarry(h, c)),  # layer 0
              h,                                                                       # layer 1
          ),
          readout=None,
      )

  so ``state_grads.encoder[0].forward.h`` is the first layer's forward
  ``dL/dh_t`` and ``grads.encoder[0].forward`` the same direction's parameter
  gradients. Each leaf is ``(T, *batch, H)`` (``time_major=True``, the default)
  or ``(*batch, T, H)`` like batch-first inputs (``time_major=False``), in every
  layout the unroll itself used. Params that several unrolls ran with get a
  tuple of their state gradients in call order. ``jax.tree.map`` and
  :func:`step_norms` apply to the whole tree.

  Args:
    loss_fn: ``loss_fn(*args) -> scalar`` (or ``(scalar, aux)`` with
      ``has_aux``). Pass the plain Python function, not a ``jax.jit`` of it (a
      cached trace would bypass the probes); jit the returned function instead.
      Hand each cell its params as they are in the arguments: params closed
      over, or computed (cast, reparametrised, mapped by the loss's own
      ``vmap``) inside the loss have no place in the tree, and are an error
      unless ``by_call``.
    argnums: which positional arguments to differentiate, as ``jax.grad``.
    has_aux: as ``jax.value_and_grad``.
    time_major: ``True`` (default): the time axis first in every leaf,
      ``(T, *batch, ...)``; ``False``: after the batch axes, ``(*batch, T, ...)``.
    by_call: return a tuple with one entry per unroll in the order the loss ran
      them instead, for any loss (wherever the params come from).

  Returns:
    ``f(*args) -> (value, grads, state_grads)``: ``value`` and ``grads`` as
    ``jax.value_and_grad(loss_fn, argnums, has_aux)`` gives them, and
    ``state_grads`` as above. Steps past a sequence's length get zero.

  An unroll that ``loss_fn`` runs inside its own ``vmap`` or ``lax.scan``
  receives one probe for all the mapped members or iterations, so its state
  gradient is their sum.
  """
  single = isinstance(argnums, int)
  argnums_t = (argnums,) if single else tuple(argnums)

  def select(args):
    return args[argnums_t[0]] if single else tuple(args[i] for i in argnums_t)

  def wrapped(*args):
    recorder = _Tap()

    def record(*traced):
      recorder.index(select(traced))
      return loss_fn(*traced)

    # `record` is a fresh function on every call: eval_shape caches traces by function.
    with probes_lib.tap(recorder):
      jax.eval_shape(record, *args)
    specs = recorder.specs
    if not specs:
      raise ValueError(
        "state_grads: loss_fn ran no rnnlab unroll while traced, so there is no state to "
        "probe (pass the plain function, not a jax.jit of it)"
      )
    placed = None if by_call else _placements(specs, None if single else len(argnums_t))
    zeros = [jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), s.probes) for s in specs]

    def probed(diff_args, probes):
      full = list(args)
      for i, a in zip(argnums_t, diff_args, strict=True):
        full[i] = a
      with probes_lib.tap(_Tap(probes, specs)) as tap:
        out = loss_fn(*full)
      if len(tap.specs) != len(specs):
        raise ValueError(
          f"state_grads: the loss ran {len(tap.specs)} unrolls on its second trace and "
          f"{len(specs)} on its first; it must be a pure function of its arguments"
        )
      return out

    diff_args = tuple(args[i] for i in argnums_t)
    value, (grads, probe_grads) = jax.value_and_grad(probed, argnums=(0, 1), has_aux=has_aux)(
      diff_args, zeros
    )
    grads = grads[0] if single else grads
    if not time_major:
      probe_grads = [_batch_first(g, s.batch_ndim) for g, s in zip(probe_grads, specs, strict=True)]
    if placed is None:
      return value, grads, tuple(probe_grads)
    by_place = {
      path: probe_grads[calls[0]] if len(calls) == 1 else tuple(probe_grads[i] for i in calls)
      for path, calls in placed.items()
    }
    return value, grads, _arrange(select(args), by_place)

  return wrapped


def state_grads(
  loss_fn: Callable[..., Any],
  *,
  has_aux: bool = False,
  time_major: bool = True,
  by_call: bool = False,
) -> Callable[..., PyTree]:
  """``f(*args) -> state_grads`` of :func:`value_and_state_grads` (``argnums=0``) alone.

  The state gradients are organised like ``args[0]`` (the params): each cell's
  params replaced by ``dL/dc_t`` of the unroll that ran them, ``(T, *batch, ...)``
  per leaf, or ``(*batch, T, ...)`` with ``time_major=False``.
  """
  fn = value_and_state_grads(loss_fn, 0, has_aux=has_aux, time_major=time_major, by_call=by_call)
  return lambda *args: fn(*args)[2]


def step_norms(state_grads: PyTree) -> PyTree:
  """``||dL/dc_t||`` over the feature (last) axis of every leaf, the tree kept.

  Each leaf ``(T, *batch, H)`` gives ``(T, *batch)`` (``(*batch, T, H)`` gives
  ``(*batch, T)``); None leaves stay None.

  For the LSTM the ``h`` and ``c`` leaves give ``||dL/dh_t||`` and ``||dL/dc_t||``.
  Scaled before squaring, so vanishing gradients keep their value down to
  float32's smallest numbers (``jnp.linalg.norm`` squares entries of ``1e-20``
  to zero).
  """
  return jax.tree.map(partial(norm, axis=-1), state_grads)


def norm(x: Array, axis: int | None = None) -> Array:
  """The 2-norm of ``x`` (over ``axis``, or all of it) without under- or overflow."""
  x = jnp.asarray(x)
  top = jnp.max(jnp.abs(x), axis=axis, keepdims=True)
  safe = jnp.where(top > 0, top, 1).astype(x.dtype)
  scaled = jnp.linalg.norm(x / safe, axis=axis, keepdims=True)
  out = jnp.where(top > 0, top * scaled, 0)
  return jnp.squeeze(out, axis=axis) if axis is not None else out.reshape(())


# --------------------------------------------------------------------------
# 2. Jacobian products ||dc_T / dc_t|| at every lag.
# --------------------------------------------------------------------------


class JacobianNorms(NamedTuple):
  r"""Norms of ``dc_T / dc_t`` against the lag ``T - t`` (lag 0 first).

  Logarithms, so that products of thousands of Jacobians neither under- nor
  overflow. With batch dimensions in ``xs`` every field gets them in front.

  Attributes:
    lags: ``(L,)`` the lags ``T - t``.
    log_spectral: ``(L,)`` ``log ||dc_T/dc_t||_2`` (``log sigma_max``).
    log_frobenius: ``(L,)`` ``log ||dc_T/dc_t||_F`` (NaN from the power method).
    log_singular_values: ``(L, n)`` every ``log sigma_i`` in descending order
      (exact method), or ``(L, 0)`` (power method).
  """

  lags: Array
  log_spectral: Array
  log_frobenius: Array
  log_singular_values: Array


JACOBIAN_METHODS = ("exact", "power")
JACOBIAN_STATES = ("carry", "hidden")


def _as_time_major(name: str, xs: Array, time_major: bool) -> Array:
  xs = jnp.asarray(xs)
  if xs.ndim < 2:
    layout = "(T, *batch, I)" if time_major else "(*batch, T, I)"
    raise ValueError(f"{name}: xs must have shape {layout}; got shape {tuple(xs.shape)}")
  return xs if time_major else jnp.moveaxis(xs, -2, 0)


def _per_sequence(name, cell, params, xs, carry, time_major, fn):
  """Applies ``fn(xs (T, I), carry0) -> pytree`` to every sequence; batch dims in front."""
  if not isinstance(cell, Cell):
    raise TypeError(f"{name}: cell must be an rnnlab Cell; got {type(cell).__name__}")
  xs = _as_time_major(name, xs, time_major)
  batch_shape = tuple(xs.shape[1:-1])
  if carry is None:
    carry = cell.initial_carry(params, batch_shape)
  x_spec = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
  scan_lib.check_carry(cell, params, carry, x_spec, name)
  size = math.prod(batch_shape)
  xs_flat = xs.reshape(xs.shape[0], size, xs.shape[-1])
  carry_flat = jax.tree.map(lambda c: c.reshape(size, *c.shape[len(batch_shape) :]), carry)
  out = jax.vmap(fn, in_axes=(1, 0))(xs_flat, carry_flat)
  return jax.tree.map(lambda o: o.reshape(*batch_shape, *o.shape[1:]), out)


def _flat_step(cell: Cell, params: PyTree, carry0: PyTree):
  """``step(c_vec, x) -> c_vec`` on the carry flattened to one vector, and that flattening."""
  vec0, unravel = ravel_pytree(carry0)
  if cell.prepare is not None:
    params = cell.prepare(params)  # once, not once per step (the expRNN's W = expm(S))

  def step(c_vec, x):
    new, _ = cell.step(params, unravel(c_vec), x)
    return ravel_pytree(new)[0].astype(vec0.dtype)

  return vec0, step


def _trajectory(step, vec0, xs):
  """``c_0 .. c_{T-1}`` (the carry before each step), ``(T, n)``, and ``c_T``."""

  def body(c, x):
    return step(c, x), c

  last, before = jax.lax.scan(body, vec0, xs)
  return before, last


def _linalg_dtype(dtype) -> Any:
  """float32 at least: the linear algebra (svd, qr, eig) has no bfloat16 kernels."""
  return jnp.promote_types(dtype, jnp.float32)


def _jacobian_exact(step, vec0, xs, index):
  before, _ = _trajectory(step, vec0, xs)
  n, dtype = vec0.shape[0], _linalg_dtype(vec0.dtype)

  def block_svd(prod):
    return linalg.svdvals(prod[index][:, index])

  def body(state, inputs):
    # P = dc_T/dc_t, kept as P * exp(log_scale) with ||P||_F = 1.
    prod, log_scale = state
    c_prev, x = inputs
    s = block_svd(prod)
    out = (jnp.log(s) + log_scale, jnp.log(jnp.linalg.norm(s)) + log_scale)
    prod = prod @ jax.jacfwd(step)(c_prev, x).astype(dtype)  # dc_T/dc_{t-1} = dc_T/dc_t J_t
    norm = jnp.linalg.norm(prod)
    safe = jnp.where(norm > 0, norm, 1.0)
    return (prod / safe, log_scale + jnp.where(norm > 0, jnp.log(safe), -jnp.inf)), out

  eye = jnp.eye(n, dtype=dtype) / jnp.sqrt(jnp.asarray(n, dtype))
  init = (eye, 0.5 * jnp.log(jnp.asarray(n, dtype)))
  (prod, log_scale), (log_sv, log_fro) = jax.lax.scan(body, init, (before, xs), reverse=True)
  # The reverse scan stacks lag T-t at index t-1; flip to lag order and append lag T.
  s = block_svd(prod)
  log_sv = jnp.concatenate([log_sv[::-1], (jnp.log(s) + log_scale)[None]])
  log_fro = jnp.concatenate([log_fro[::-1], (jnp.log(jnp.linalg.norm(s)) + log_scale)[None]])
  return log_sv[:, 0], log_fro, log_sv


def _jacobian_power(step, vec0, xs, lags, num_iters, key, index):
  num_steps, n = xs.shape[0], vec0.shape[0]

  def final(probes):  # probes (T+1, n): probes[t] is added to c_t, t = 0..T
    def body(c, inputs):
      x, d = inputs
      return step(c, x) + d, None

    c, _ = jax.lax.scan(body, vec0 + probes[0], (xs, probes[1:]))
    return c

  zeros = jnp.zeros((num_steps + 1, n), vec0.dtype)
  _, jvp = jax.linearize(final, zeros)
  vjp = jax.linear_transpose(jvp, zeros)
  times = num_steps - lags

  def forward(t, v):  # (dc_T/dc_t) v, on the selected block
    return jvp(zeros.at[t, index].set(v))[index]

  def backward(t, u):  # (dc_T/dc_t)^T u
    return vjp(jnp.zeros((n,), vec0.dtype).at[index].set(u))[0][t, index]

  def log_norm_and_unit(v):
    # Scale by max |v| first: squaring entries of 1e-20 would underflow.
    top = jnp.max(jnp.abs(v))
    safe = jnp.where(top > 0, top, 1.0)
    norm = jnp.linalg.norm(v / safe)
    return jnp.log(top) + jnp.log(norm), v / safe / jnp.where(norm > 0, norm, 1.0)

  def iterate(t, v):
    def body(v, _):
      return log_norm_and_unit(backward(t, forward(t, v)))[1], None

    v, _ = jax.lax.scan(body, log_norm_and_unit(v)[1], None, length=num_iters)
    return log_norm_and_unit(forward(t, v))[0]

  v0 = jax.random.normal(key, (lags.shape[0], index.shape[0]), vec0.dtype)
  return jax.vmap(iterate)(times, v0)


def jacobian_norms(
  cell: Cell,
  params: PyTree,
  xs: Array,
  carry: PyTree | None = None,
  *,
  method: str = "exact",
  lags: Sequence[int] | Array | None = None,
  num_iters: int = 30,
  key: Array | None = None,
  state: str = "carry",
  time_major: bool = False,
) -> JacobianNorms:
  r"""``||dc_T/dc_t||`` for the lags ``T - t`` along the trajectory that ``xs`` drives.

  ``dc_T/dc_t = J_T J_{T-1} ... J_{t+1}``: how a change in the state at step
  ``t`` reaches the final state. ``state="carry"`` (default) takes the whole
  carry (``n = H``, or ``2H`` for the LSTM's ``(h, c)``); ``state="hidden"``
  the block ``dh_T/dh_t`` of the same product (for the LSTM: how ``h_t`` reaches
  ``h_T`` through both paths, with ``c_t`` held; equal to the carry for Elman
  and GRU).

  ``method="exact"`` (small ``n``): every ``J_t`` by ``jacfwd``, the product
  accumulated backwards from ``T`` with its scale kept in log space, and the
  full singular spectrum at every lag ``0..T``; ``O(T n^3)`` time, ``O(T n + n^2)``
  memory. ``method="power"`` (large ``n``): matrix-free, ``num_iters`` steps of
  power iteration on ``M^T M`` for each requested lag, each a ``jvp`` and a
  ``vjp`` of the map from a probe on ``c_t`` to ``c_T`` (linearised once):
  ``O(num_iters * T * n^2)`` per lag, and ``sigma_max`` only. Its products are
  not rescaled: below float32's range (about ``1e-38``) they read ``-inf``.

  Args:
    cell, params: the cell and its parameters (any cell, including stacks).
    xs: ``(*batch, T, I)`` (or ``(T, *batch, I)`` with ``time_major``); each
      sequence gets its own norms.
    carry: initial carry (default zeros).
    method: ``"exact"`` or ``"power"``.
    lags: the lags to report (``0 <= lag <= T``); default all of ``0..T``.
    num_iters: power iterations per lag (power method).
    key: PRNG key for the power method's start vectors (default ``key(0)``).
    state: ``"carry"`` or ``"hidden"`` (cells with :class:`~rnnlab.cells.CellParts`).
    time_major: layout of ``xs``.
  """
  if state not in JACOBIAN_STATES:
    raise ValueError(f"jacobian_norms: state={state!r}; expected one of {JACOBIAN_STATES}")
  if state == "hidden" and getattr(cell, "parts", None) is None:
    raise ValueError(
      f"jacobian_norms: state='hidden' needs a cell with CellParts to find h; {cell.name} has "
      "none (use state='carry')"
    )
  if method not in JACOBIAN_METHODS:
    raise ValueError(f"jacobian_norms: method={method!r}; expected one of {JACOBIAN_METHODS}")
  num_steps = _as_time_major("jacobian_norms", xs, time_major).shape[0]
  all_lags = np.arange(num_steps + 1)
  if lags is None:
    lags_np = all_lags
  else:
    lags_np = np.asarray(lags)
    if lags_np.ndim != 1 or not np.issubdtype(lags_np.dtype, np.integer):
      raise ValueError(f"jacobian_norms: lags must be a 1-D sequence of ints; got {lags!r}")
    bad = (lags_np < 0) | (lags_np > num_steps)
    if bad.any():
      raise ValueError(f"jacobian_norms: lag {int(lags_np[bad][0])} is outside [0, T={num_steps}]")
  if isinstance(num_iters, bool) or not isinstance(num_iters, int) or num_iters < 1:
    raise ValueError(f"jacobian_norms: num_iters must be a positive int; got {num_iters!r}")
  key = jax.random.key(0) if key is None else key

  def one(xs_TxI, carry0):
    vec0, step = _flat_step(cell, params, carry0)
    index = np.arange(vec0.shape[0])
    if state == "hidden":
      index = _hidden_index(cell, carry0)
    if method == "exact":
      log_spec, log_fro, log_sv = _jacobian_exact(step, vec0, xs_TxI, index)
      index = jnp.asarray(lags_np)
      return log_spec[index], log_fro[index], log_sv[index]
    log_spec = _jacobian_power(step, vec0, xs_TxI, jnp.asarray(lags_np), num_iters, key, index)
    nan = jnp.full_like(log_spec, jnp.nan)
    return log_spec, nan, jnp.zeros((lags_np.shape[0], 0), vec0.dtype)

  log_spec, log_fro, log_sv = _per_sequence(
    "jacobian_norms", cell, params, xs, carry, time_major, one
  )
  batch_shape = log_spec.shape[:-1]
  lags_arr = jnp.broadcast_to(jnp.asarray(lags_np), (*batch_shape, lags_np.shape[0]))
  return JacobianNorms(lags_arr, log_spec, log_fro, log_sv)


def _hidden_index(cell: Cell, carry: PyTree) -> np.ndarray:
  """Where ``parts.hidden(carry)`` sits in ``ravel_pytree(carry)`` (it must be a carry leaf)."""
  leaves, h = jax.tree.leaves(carry), cell.parts.hidden(carry)
  offset = 0
  for leaf in leaves:
    if leaf is h:
      return np.arange(offset, offset + leaf.size)
    offset += leaf.size
  raise ValueError(
    f"jacobian_norms: state='hidden' needs {cell.name}'s parts.hidden to return a leaf of "
    "the carry (use state='carry')"
  )


def decay_rate(log_norms: Array, lags: Array) -> Array:
  r"""Least-squares slope of ``log norm`` against lag, per step (over the last axis).

  Non-finite entries (an underflow to zero reads ``-inf``) are left out. For
  ``||dc_T/dc_t|| = g^{T-t}`` it is ``log g``; negative means vanishing, and
  ``-log(2) / rate`` is the number of steps over which the norm halves.
  """
  log_norms = jnp.asarray(log_norms)
  lags = jnp.broadcast_to(jnp.asarray(lags, log_norms.dtype), log_norms.shape)
  keep = jnp.isfinite(log_norms)
  count = jnp.sum(keep, axis=-1)
  mean = lambda a: jnp.sum(jnp.where(keep, a, 0), axis=-1) / count  # noqa: E731
  mean_lag, mean_log = mean(lags), mean(log_norms)
  dl = lags - mean_lag[..., None]
  cov = jnp.sum(jnp.where(keep, dl * (log_norms - mean_log[..., None]), 0), axis=-1)
  var = jnp.sum(jnp.where(keep, dl**2, 0), axis=-1)
  return cov / var


def memory_horizon(log_norms: Array, lags: Array, fraction: float = 0.01) -> Array:
  """The largest lag whose norm is at least ``fraction`` of the norm at the smallest lag.

  ``log_norms`` and ``lags`` as :class:`JacobianNorms` holds them (or per-step
  gradient norms ordered by lag), lags ascending along the last axis. A horizon
  equal to the largest lag means the norm never fell that far in the window.
  """
  if not 0 < fraction <= 1:
    raise ValueError(f"memory_horizon: fraction must lie in (0, 1]; got {fraction!r}")
  log_norms = jnp.asarray(log_norms)
  lags = jnp.broadcast_to(jnp.asarray(lags), log_norms.shape)
  above = log_norms >= log_norms[..., :1] + math.log(fraction)
  return jnp.max(jnp.where(above, lags, lags[..., :1]), axis=-1)


# --------------------------------------------------------------------------
# 3. Spectra of the recurrent weights.
# --------------------------------------------------------------------------


def _eigvals(w: Array) -> Array:
  if jax.default_backend() == "cpu":
    return linalg.eigvals(w)
  # Non-symmetric eig runs on the host elsewhere.
  dtype = jnp.result_type(w.dtype, jnp.complex64)
  shape = jax.ShapeDtypeStruct(w.shape[:-1], dtype)
  return jax.pure_callback(
    lambda a: np.linalg.eigvals(a).astype(dtype), shape, w, vmap_method="sequential"
  )


def recurrent_spectra(cell: Cell, params: PyTree) -> dict[str, Any]:
  r"""Spectral radius and largest singular value of each gate block of ``W_hh``.

  Returns ``{"spectral_radius": {block: r}, "sigma_max": {block: s},
  "pascanu_bound": b}``, one ``(H, H)`` block per gate (``"h"`` for Elman,
  ``i, f, g, o`` for the LSTM, ``r, z, n`` for the GRU). For a cell
  ``h' = act(x W_ih + h W_hh + b)`` with ``|act'| <= gamma`` (Elman), Pascanu
  et al. 2013 bound every step's Jacobian by ``||J_t|| <= gamma * sigma_max``:
  ``b < 1`` is sufficient for vanishing gradients and ``b > 1`` necessary for
  exploding. ``pascanu_bound`` is NaN where no such bound holds (LSTM, GRU, a
  user's activation).
  """
  if not isinstance(cell, Cell):
    raise TypeError(f"recurrent_spectra: cell must be an rnnlab Cell; got {type(cell).__name__}")
  parts = cell.parts
  if parts is None or not parts.blocks:
    raise ValueError(
      f"recurrent_spectra: {cell.name} has no CellParts with named gate blocks; the "
      "built-in elman, lstm, gru (reset_after=True) and diagonal cells have them"
    )
  w, _ = parts.recurrent(params)
  w = w.astype(_linalg_dtype(w.dtype))
  blocks = jnp.split(w, len(parts.blocks), axis=-1)
  radius = {n: jnp.max(jnp.abs(_eigvals(b))) for n, b in zip(parts.blocks, blocks, strict=True)}
  sigma = {n: jnp.max(linalg.svdvals(b)) for n, b in zip(parts.blocks, blocks, strict=True)}
  bound = jnp.asarray(jnp.nan, w.dtype)
  if parts.gamma is not None and len(parts.blocks) == 1:
    bound = parts.gamma * sigma[parts.blocks[0]]
  return {"spectral_radius": radius, "sigma_max": sigma, "pascanu_bound": bound}


# --------------------------------------------------------------------------
# 4. Lyapunov spectrum.
# --------------------------------------------------------------------------


def lyapunov_spectrum(
  cell: Cell,
  params: PyTree,
  xs: Array,
  carry: PyTree | None = None,
  *,
  num_exponents: int,
  transient: int = 0,
  key: Array | None = None,
  time_major: bool = False,
) -> Array:
  r"""The ``k`` largest Lyapunov exponents of the dynamics that ``xs`` drives.

  The QR method: ``Q_0`` a random orthonormal ``(n, k)`` frame, then at each
  step ``Q_t R_t = J_t Q_{t-1}`` (``k`` ``jvp``\ s of the step, no Jacobian is
  formed), and ``lambda_i = mean_t log |R_t[i, i]|`` over the steps after
  ``transient``. ``lambda_1 < 0``: perturbations, and gradients, shrink like
  ``exp(lambda_1 * lag)``; ``> 0``: they grow. Per step, descending, shape
  ``(*batch, k)``.

  Args:
    cell, params, xs, carry, time_major: as :func:`jacobian_norms`.
    num_exponents: k, at most the state size n.
    transient: the first steps left out of the mean while the frame aligns.
    key: PRNG key for ``Q_0`` (default ``key(0)``).
  """
  num_steps = _as_time_major("lyapunov_spectrum", xs, time_major).shape[0]
  if (
    isinstance(transient, bool) or not isinstance(transient, int) or not 0 <= transient < num_steps
  ):
    raise ValueError(
      f"lyapunov_spectrum: transient must be an int in [0, T={num_steps}); got {transient!r}"
    )
  key = jax.random.key(0) if key is None else key

  def one(xs_TxI, carry0):
    vec0, step = _flat_step(cell, params, carry0)
    n = vec0.shape[0]
    if isinstance(num_exponents, bool) or not isinstance(num_exponents, int):
      raise ValueError(f"lyapunov_spectrum: num_exponents must be an int; got {num_exponents!r}")
    if not 1 <= num_exponents <= n:
      raise ValueError(
        f"lyapunov_spectrum: num_exponents={num_exponents} must lie in [1, n={n}] (the state size)"
      )
    dtype = _linalg_dtype(vec0.dtype)
    q0, _ = linalg.qr(jax.random.normal(key, (n, num_exponents), dtype))

    def body(state, inputs):
      c, q, total = state
      x, t = inputs
      c_next, lin = jax.linearize(lambda c: step(c, x), c)
      pushed = jax.vmap(lin, in_axes=1, out_axes=1)(q.astype(vec0.dtype)).astype(dtype)
      q, r = linalg.qr(pushed)
      logs = jnp.log(jnp.abs(jnp.diagonal(r)))
      return (c_next, q, total + jnp.where(t >= transient, logs, 0)), None

    init = (vec0, q0, jnp.zeros((num_exponents,), dtype))
    (_, _, total), _ = jax.lax.scan(body, init, (xs_TxI, jnp.arange(num_steps)))
    return -jnp.sort(-total / (num_steps - transient))

  return _per_sequence("lyapunov_spectrum", cell, params, xs, carry, time_major, one)


# --------------------------------------------------------------------------
# 5. Gates and saturation.
# --------------------------------------------------------------------------


def gate_values(
  cell: Cell, params: PyTree, xs: Array, carry: PyTree | None = None, *, time_major: bool = False
) -> tuple[dict[str, Array], dict[str, Array]]:
  """Every gate and tanh unit at every step: ``(gates, units)``, each ``(T, *batch, H)``.

  ``gates`` are in ``[0, 1]`` (LSTM ``i, f, o``; GRU ``r, z``), ``units`` in
  ``[-1, 1]`` (tanh Elman ``h``; LSTM ``g`` and ``tanh_c``; GRU ``n``). Time
  comes first in every layout.
  """
  if not isinstance(cell, Cell):
    raise TypeError(f"gate_values: cell must be an rnnlab Cell; got {type(cell).__name__}")
  parts = cell.parts
  if parts is None or parts.gates is None:
    raise ValueError(
      f"gate_values: {cell.name} does not expose its gates (CellParts.gates); the built-in "
      "elman, lstm and gru (reset_after=True) cells do"
    )
  xs = _as_time_major("gate_values", xs, time_major)
  if carry is None:
    carry = cell.initial_carry(params, tuple(xs.shape[1:-1]))
  x_spec = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
  scan_lib.check_carry(cell, params, carry, x_spec, "gate_values")

  def body(c, x):
    xp, hp = preactivations(parts, params, c, x)
    return parts.update(c, xp, hp), parts.gates(c, xp, hp)

  _, values = jax.lax.scan(body, carry, xs)
  return values


def gate_statistics(
  cell: Cell,
  params: PyTree,
  xs: Array,
  carry: PyTree | None = None,
  *,
  lengths: Array | None = None,
  bins: int = 20,
  saturation: float = 0.01,
  time_major: bool = False,
) -> dict[str, dict[str, dict[str, Array]]]:
  """Per-step mean, distribution and saturation of every gate and tanh unit.

  Returns ``{"gates": {name: stats}, "units": {name: stats}}`` where ``stats``
  holds, for each step ``t`` over the batch and the ``H`` units: ``mean (T,)``;
  ``hist (T, bins)``, the fraction of values in each of ``bins`` equal bins over
  the range (``[0, 1]`` for gates, ``[-1, 1]`` for units); and ``saturated
  (T,)``, the fraction within ``saturation`` of either end of the range (for a
  tanh unit ``|h| > 1 - saturation``; 0.99 by default, as SCIENCE.md). Steps
  past a sequence's ``lengths`` are left out (NaN where none is valid). The
  time averages over valid steps are in ``stats["mean_over_time"]`` and
  ``stats["saturated_over_time"]``.
  """
  if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
    raise ValueError(f"gate_statistics: bins must be a positive int; got {bins!r}")
  if not 0 < saturation < 0.5:
    raise ValueError(f"gate_statistics: saturation must lie in (0, 0.5); got {saturation!r}")
  gates, units = gate_values(cell, params, xs, carry, time_major=time_major)
  leaves = jax.tree.leaves((gates, units))
  if not leaves:
    return {"gates": {}, "units": {}}
  num_steps, batch_shape = leaves[0].shape[0], leaves[0].shape[1:-1]
  if lengths is None:
    valid = jnp.ones((num_steps, *batch_shape), bool)
  else:
    lengths = scan_lib.check_lengths(lengths, tuple(batch_shape), num_steps)
    steps = jnp.arange(num_steps).reshape((num_steps,) + (1,) * len(batch_shape))
    valid = steps < lengths

  def stats(v, low, high):
    weight = jnp.broadcast_to(valid[..., None], v.shape).reshape(num_steps, -1).astype(v.dtype)
    flat = v.reshape(num_steps, -1)
    count = jnp.sum(weight, axis=-1)
    denom = jnp.where(count > 0, count, jnp.nan)
    sat = (flat < low + saturation) | (flat > high - saturation)
    index = jnp.clip(((flat - low) / (high - low) * bins).astype(jnp.int32), 0, bins - 1)
    hist = jnp.sum(jax.nn.one_hot(index, bins, dtype=v.dtype) * weight[..., None], axis=1)
    mean = jnp.sum(flat * weight, axis=-1) / denom
    saturated = jnp.sum(sat * weight, axis=-1) / denom
    total = jnp.sum(count)
    return {
      "mean": mean,
      "hist": hist / denom[:, None],
      "saturated": saturated,
      "mean_over_time": jnp.sum(flat * weight) / total,
      "saturated_over_time": jnp.sum(sat * weight) / total,
    }

  return {
    "gates": {k: stats(v, 0.0, 1.0) for k, v in gates.items()},
    "units": {k: stats(v, -1.0, 1.0) for k, v in units.items()},
  }


# --------------------------------------------------------------------------
# 6. Training-time statistics.
# --------------------------------------------------------------------------

# optax >= 0.2.6 names it optax.tree.norm and deprecates optax.global_norm.
_tree_norm = getattr(getattr(optax, "tree", None), "norm", None) or optax.global_norm


def global_norm(tree: PyTree) -> Array:
  """``sqrt(sum of squares)`` over every leaf of ``tree`` (the clipping norm)."""
  return _tree_norm(tree)


def clip_fired(grad_norm: Array, max_norm: Array) -> Array:
  """Whether global-norm clipping at ``max_norm`` rescales a gradient of ``grad_norm``.

  ``max_norm <= 0`` means no clipping (never fires), as
  :func:`rnnlab.train.clip_by_global_norm`.
  """
  return (max_norm > 0) & (grad_norm > max_norm)


def all_finite(tree: PyTree) -> Array:
  """True when no leaf of ``tree`` holds a NaN or an infinity."""
  leaves = [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]
  return jnp.stack(leaves).all() if leaves else jnp.asarray(True)


def training_stats(grads: PyTree, max_norm: Array = 0.0) -> dict[str, Array]:
  """``grad_norm``, ``clipped`` and ``nonfinite`` for one step's gradient."""
  norm = global_norm(grads)
  return {
    "grad_norm": norm,
    "clipped": clip_fired(norm, max_norm),
    "nonfinite": ~all_finite(grads),
  }


# --------------------------------------------------------------------------
# 7. Curse of memory: sensitivity of the state to the recurrent parameters.
# --------------------------------------------------------------------------


def parameter_sensitivity(
  cell: Cell,
  params: PyTree,
  xs: Array,
  carry: PyTree | None = None,
  *,
  wrt: str | None = None,
  time_major: bool = False,
) -> Array:
  r"""``||dc_t / dtheta||_F^2`` at every step ``t``, by forward-mode differentiation.

  ``theta`` is the params field named ``wrt`` (e.g. ``"lam"`` of
  :func:`rnnlab.cells.diagonal`, ``"w_hh"`` of a linear Elman cell), or every
  parameter when None. One forward pass carries a tangent per entry of
  ``theta``, so keep ``theta`` small. For ``h_{t+1} = lam h_t + x_t`` with white
  input the stationary mean of the result is
  :func:`curse_of_memory_closed_form`: it diverges as ``lam -> 1`` although
  ``dh_t/dh_k = lam^{t-k}`` stays below 1 (Zucchet & Orvieto 2024).

  Returns:
    ``(*batch, T)``: the squared sensitivity of each sequence's state after each step.
  """
  if wrt is not None and wrt not in getattr(params, "_fields", ()):
    fields = getattr(params, "_fields", ())
    raise ValueError(
      f"parameter_sensitivity: wrt={wrt!r} is not a field of the params; expected one of "
      f"{fields} or None"
    )
  theta = params if wrt is None else getattr(params, wrt)
  theta_vec, unravel = ravel_pytree(theta)

  def one(xs_TxI, carry0):
    def states(vec):
      p = unravel(vec) if wrt is None else params._replace(**{wrt: unravel(vec)})
      step = lambda c, x: (cell.step(p, c, x)[0],) * 2  # noqa: E731
      _, cs = jax.lax.scan(step, carry0, xs_TxI)
      leaves = [c.reshape(xs_TxI.shape[0], -1) for c in jax.tree.leaves(cs)]
      return jnp.concatenate(leaves, axis=1)

    jac = jax.jacfwd(states)(theta_vec)  # (T, n, P)
    return jnp.sum(jac**2, axis=(1, 2))

  return _per_sequence("parameter_sensitivity", cell, params, xs, carry, time_major, one)


def curse_of_memory_closed_form(lam: Array) -> Array:
  r"""``E[(dh/dlam)^2] = (1 + lam^2) / (1 - lam^2)^3`` for ``h_{t+1} = lam h_t + x_t``.

  The stationary limit for white input of unit variance (Zucchet & Orvieto
  2024), ``|lam| < 1``.
  """
  q = jnp.square(jnp.asarray(lam))
  return (1 + q) / (1 - q) ** 3


__all__ = [
  "JACOBIAN_METHODS",
  "JACOBIAN_STATES",
  "JacobianNorms",
  "all_finite",
  "clip_fired",
  "curse_of_memory_closed_form",
  "decay_rate",
  "gate_statistics",
  "gate_values",
  "global_norm",
  "jacobian_norms",
  "lyapunov_spectrum",
  "memory_horizon",
  "norm",
  "parameter_sensitivity",
  "recurrent_spectra",
  "state_grads",
  "step_norms",
  "training_stats",
  "value_and_state_grads",
]
