"""Recurrent cells: the vanilla (Elman) RNN, the LSTM and the GRU (plain and
layer-normalised), a diagonal linear recurrence and the LRU, as pure functions.

A cell is a :class:`Cell`, a NamedTuple of three pure functions that its factory
closes over the cell's hyper-parameters (the optax ``GradientTransformation``
pattern)::

    cell = rnnlab.lstm(hidden_size=64)
    params = cell.init(key, input_size)              # a NamedTuple of arrays; dtype= by keyword
    carry = cell.initial_carry(params, batch_shape=(32,))
    carry, y = cell.step(params, carry, x)           # x: (*batch, input_size)

``step`` has the ``lax.scan`` signature, so ``lax.scan(partial(cell.step, params),
carry, xs)`` unrolls it with no glue (:func:`rnnlab.unroll` does this, plus
lengths, reversal and batch-major layouts).

Conventions, shared by every cell here:

* weights are stored ``(in, out)`` and applied as ``x @ w``; gates are fused
  along the output axis in a fixed, documented order;
* sizes are read from the arrays' shapes, never stored;
* any number of leading batch dimensions, including none;
* all arithmetic runs in the parameters' dtype (float32, bfloat16 or float64):
  inputs are cast to it and the carry keeps it (the layer norms compute their
  mean and variance in at least float32);
* initialisation is explicit: each weight's scheme is an argument with a stated
  default (see :mod:`rnnlab.initializers`), and gains are never implicit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import initializers as inits
from rnnlab import linalg
from rnnlab._signatures import init_signature

Array = jax.Array
PyTree = Any


class CellParts(NamedTuple):
  r"""A cell's step split at its two matmuls, for the fused unroll (:mod:`rnnlab.fused`).

  With ``w, b = recurrent(params)`` and ``h = hidden(carry)``::

      carry' = update(carry, project(params, x), h @ w + b)     # b may be None
      y      = hidden(carry')

  ``project`` is the input half of every pre-activation (``x W_ih + b_ih``) and
  does not depend on the carry; ``update`` is the cell's nonlinearity and holds
  no parameters. So the fused unroll's reverse pass carries only the state
  gradient, and forms the weight gradients afterwards, each as one matmul over
  all steps (``project`` differentiated once over the whole sequence).

  Attributes:
    project: ``project(params, x (*batch, I)) -> xp (*batch, G)``.
    recurrent: ``recurrent(params) -> (w (H, G), b (G,) or None)``.
    update: ``update(carry, xp, hp) -> carry``, with ``hp = h @ w + b``.
    hidden: ``hidden(carry) -> h (*batch, H)``: what feeds ``w`` and is the output.
    additive: ``update`` reads ``xp`` and ``hp`` only through ``xp + hp`` (Elman,
      LSTM; not the reset-after GRU), so the fused unroll keeps one pre-activation
      per step for its reverse pass instead of two.
    gates: optional ``gates(carry, xp, hp) -> (gates, units)``, two dicts of
      named arrays ``(*batch, H)`` that the step computes: ``gates`` in
      ``[0, 1]`` (sigmoid gates: LSTM i, f, o; GRU r, z) and ``units`` in
      ``[-1, 1]`` (tanh units). :func:`rnnlab.diagnostics.gate_values` reads them.
      The built-in cells write their equations once, in one function that
      returns the new carry with these values (:func:`from_equations` splits it
      into ``update`` and ``gates``), so the two cannot disagree.
    blocks: names of the column blocks of ``w`` in order, one ``(H, H)`` block
      per gate (``("i", "f", "g", "o")`` for the LSTM), for per-gate spectra.
    gamma: a bound on the derivative of the recurrent nonlinearity where the
      cell is ``act(xp + hp)`` (1 for tanh, ReLU, linear), for Pascanu's bound
      ``||dh'/dh|| <= gamma * sigma_max(w)``; None where no such bound applies.
  """

  project: Callable[[PyTree, Array], Array]
  recurrent: Callable[[PyTree], tuple[Array, Array | None]]
  update: Callable[[PyTree, Array, Array], PyTree]
  hidden: Callable[[PyTree], Array]
  additive: bool = False
  gates: Callable[[PyTree, Array, Array], tuple[dict, dict]] | None = None
  blocks: tuple[str, ...] = ()
  gamma: float | None = None


class Cell(NamedTuple):
  """A recurrent cell: three pure functions closed over its hyper-parameters.

  Attributes:
    init: ``init(key, input_size, *, dtype=jnp.float32) -> params`` (the convention of
      every ``init`` in rnnlab, :mod:`rnnlab._signatures`; the old positional dtype,
      ``init(key, input_size, jnp.bfloat16)``, still works for the built-in cells).
    initial_carry: ``initial_carry(params, batch_shape=()) -> carry`` (zeros).
    step: ``step(params, carry, x) -> (carry, y)``, the ``lax.scan`` signature.
    name: a short label used in error messages and reports.
    parts: optional :class:`CellParts`, the same step split at its matmuls. The
      built-in cells have them (except the reset-before GRU and the layer-normalised
      cells, whose normalisations hold parameters between the matmuls and the update) and
      :func:`rnnlab.unroll` uses them for its fused path; a user's own cell
      needs only ``step``.
    prepare: optional ``prepare(params) -> params'``, work on the params alone that
      ``step`` would otherwise redo every step (the expRNN's matrix exponential):
      ``step(prepare(params), c, x) == step(params, c, x)``, and ``step`` (and
      ``parts``) accept both. :func:`rnnlab.unroll` calls it once, outside its loop,
      so the work and its gradient run once per unroll (``lax.scan`` does not hoist
      loop-invariant work out of its body, nor does XLA on the CPU). None: nothing to do.

  :func:`rnnlab.testing.check_cell` checks the properties every cell must have
  (causality, padding, jit, vmap, gradients, dtypes, parts that agree with the step).
  """

  init: Callable[..., PyTree]
  initial_carry: Callable[..., PyTree]
  step: Callable[..., tuple[PyTree, Array]]
  name: str = "cell"
  parts: CellParts | None = None
  prepare: Callable[[PyTree], PyTree] | None = None


def preactivations(
  parts: CellParts, params: PyTree, carry: PyTree, x: Array
) -> tuple[Array, Array]:
  """``(xp, hp)``: the input and recurrent halves of a step's pre-activations."""
  w, b = parts.recurrent(params)
  hp = parts.hidden(carry) @ w
  return parts.project(params, x), hp if b is None else hp + b


Equations = Callable[[PyTree, Array, Array], tuple[PyTree, dict, dict]]


def from_equations(equations: Equations) -> tuple[Callable, Callable]:
  """``(update, gates)`` for :class:`CellParts` from one function of the equations.

  ``equations(carry, xp, hp) -> (carry', gates, units)`` writes a cell's update
  once; ``update`` keeps the carry and ``gates`` the two dicts. The values that
  ``update`` drops are intermediates of the new carry (or dead code that XLA
  removes), so the step computes exactly what it would without them.
  """

  def update(carry: PyTree, xp: Array, hp: Array) -> PyTree:
    return equations(carry, xp, hp)[0]

  def gates(carry: PyTree, xp: Array, hp: Array) -> tuple[dict, dict]:
    _, gate_values, unit_values = equations(carry, xp, hp)
    return gate_values, unit_values

  return update, gates


def step_from_parts(parts: CellParts) -> Callable[..., tuple[PyTree, Array]]:
  """The ``step`` that ``parts`` describe (so the two can never disagree)."""

  def step(params: PyTree, carry: PyTree, x: Array) -> tuple[PyTree, Array]:
    carry = parts.update(carry, *preactivations(parts, params, carry, x))
    return carry, parts.hidden(carry)

  return step


class ElmanParams(NamedTuple):
  """Vanilla RNN parameters: ``w_ih (I, H)``, ``w_hh (H, H)``, ``b (H,)``."""

  w_ih: Array
  w_hh: Array
  b: Array


class LSTMParams(NamedTuple):
  """LSTM parameters, gates fused in the order i, f, g, o.

  ``w_ih (I, 4H)``, ``w_hh (H, 4H)``, ``b (4H,)``. PyTorch's two biases map to
  ``b = b_ih + b_hh`` (only their sum matters).
  """

  w_ih: Array
  w_hh: Array
  b: Array


class LSTMCarry(NamedTuple):
  """LSTM state: hidden ``h (*batch, H)`` and cell ``c (*batch, H)``."""

  h: Array
  c: Array


class GRUParams(NamedTuple):
  """GRU parameters, gates fused in the order r, z, n (PyTorch / cuDNN).

  ``w_ih (I, 3H)``, ``w_hh (H, 3H)``, ``b_ih (3H,)``, ``b_hh (3H,)``. The two
  biases are not redundant for the n gate, where ``b_hn`` sits inside the reset.
  """

  w_ih: Array
  w_hh: Array
  b_ih: Array
  b_hh: Array


def _linear(a: Array) -> Array:
  return a


ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
  "tanh": jnp.tanh,
  "relu": jax.nn.relu,
  "linear": _linear,
}

# sup |act'|, for Pascanu's bound (unknown for a user's callable).
_GAMMAS: dict[Callable[[Array], Array], float] = {jnp.tanh: 1.0, jax.nn.relu: 1.0, _linear: 1.0}


def _check_hidden_size(name: str, hidden_size: Any) -> int:
  if isinstance(hidden_size, bool) or not isinstance(hidden_size, int) or hidden_size < 1:
    raise ValueError(f"{name}: hidden_size must be a positive int; got {hidden_size!r}")
  return hidden_size


def _check_input_size(name: str, input_size: Any) -> int:
  if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
    raise ValueError(f"{name}.init: input_size must be a positive int; got {input_size!r}")
  return input_size


def check_dtype(name: str, dtype: Any) -> Any:
  """A floating parameter dtype that JAX can hold as asked (float64 needs x64 mode)."""
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    raise ValueError(f"{name}.init: dtype={dtype!r} is not a dtype") from None
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(
      f"{name}.init: dtype must be floating (float32, bfloat16, float64); got {dtype}"
    )
  if dtype.itemsize == 8 and not jax.config.read("jax_enable_x64"):
    raise ValueError(
      f"{name}.init: dtype={dtype} needs 64-bit JAX; enable it with "
      "jax.config.update('jax_enable_x64', True) or `with jax.enable_x64(True):`"
    )
  return dtype


def _cast_input(name: str, w_ih: Array, x: Array) -> Array:
  x = jnp.asarray(x)
  if x.ndim < 1 or x.shape[-1] != w_ih.shape[0]:
    raise ValueError(
      f"{name}.step: x has shape {tuple(x.shape)}, expected (*batch, {w_ih.shape[0]}) "
      f"to match params.w_ih of shape {tuple(w_ih.shape)}"
    )
  return x.astype(w_ih.dtype)


def params_check(name: str, params_type: type) -> Callable[[Any], None]:
  """``check(params)``: a one-line ``TypeError`` unless ``params`` is a ``params_type``.

  A check on the pytree's type, so it holds under ``jit``, ``vmap`` and ``grad``
  (their params are the same NamedTuple with traced leaves). It catches params
  made by another cell's ``init`` before they fail deep in the step.
  """

  def check(params: Any) -> None:
    if not isinstance(params, params_type):
      raise TypeError(
        f"{name}: got params of type {type(params).__name__}; the {name} cell takes "
        f"{params_type.__name__} (were they made by another cell's init?)"
      )

  return check


def _batch_shape(batch_shape: int | Sequence[int]) -> tuple[int, ...]:
  if isinstance(batch_shape, int):
    return (batch_shape,)
  return tuple(batch_shape)


def _identity(h: Array) -> Array:
  return h


def _lstm_bias(b: Array, forget_bias: float, chrono: Callable | None, key: Array) -> Array:
  """An LSTM's ``b (4H,)`` with the forget bias, or chrono's ``b_f`` and ``b_i = -b_f``, written."""
  H = b.shape[0] // 4
  if chrono is None:
    return b.at[H : 2 * H].set(forget_bias)
  b_f = chrono(key, (H,), b.dtype)
  return b.at[0:H].set(-b_f).at[H : 2 * H].set(b_f)


def _gru_biases(
  b_ih: Array, b_hh: Array, chrono: Callable | None, key: Array
) -> tuple[Array, Array]:
  """A GRU's ``(b_ih, b_hh)``, with chrono's ``b_iz`` and ``b_hz = 0`` written when asked."""
  if chrono is None:
    return b_ih, b_hh
  H = b_ih.shape[0] // 3
  return b_ih.at[H : 2 * H].set(chrono(key, (H,), b_ih.dtype)), b_hh.at[H : 2 * H].set(0)


def _lstm_hidden(carry: LSTMCarry) -> Array:
  return carry.h


def elman(
  hidden_size: int,
  activation: str | Callable[[Array], Array] = "tanh",
  *,
  recurrent_init: inits.InitSpec = "orthogonal",
  gain: float = 1.0,
  input_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
) -> Cell:
  r"""The vanilla (Elman) RNN cell.

  .. math::  h' = \mathrm{act}(x W_{ih} + h W_{hh} + b), \qquad y = h'

  Shapes: ``x (*batch, I)``, ``h (*batch, H)``, ``w_ih (I, H)``, ``w_hh (H, H)``,
  ``b (H,)``. The carry is the array ``h``.

  Args:
    hidden_size: H.
    activation: ``"tanh"`` (default), ``"relu"`` (with ``recurrent_init="identity"``
      this is the IRNN of Le et al. 2015), ``"linear"``, or any elementwise callable.
    recurrent_init: scheme for ``w_hh``: ``"orthogonal"`` (default), ``"gaussian"``,
      ``"identity"``, ``"uniform"`` (PyTorch), or a callable ``init(key, shape, dtype)``.
    gain: g, the scale of the recurrent scheme (default 1.0: orthogonal singular
      values, Gaussian spectral radius, identity diagonal all equal 1).
    input_init: scheme for ``w_ih`` (default ``"lecun_normal"``, as flax).
    bias_init: scheme for ``b`` (default ``"zeros"``).

  Returns:
    A :class:`Cell` with params :class:`ElmanParams` and carry ``h``.
  """
  name = "elman"
  hidden_size = _check_hidden_size(name, hidden_size)
  if callable(activation):
    act = activation
  elif activation in ACTIVATIONS:
    act = ACTIVATIONS[activation]
  else:
    raise ValueError(
      f"elman: activation={activation!r} is not supported; expected one of "
      f"{tuple(ACTIVATIONS)} or an elementwise callable"
    )
  rec = inits.recurrent(recurrent_init, hidden_size, gain)
  inp = inits.input_weights(input_init, hidden_size)
  bias = inits.bias(bias_init, hidden_size)
  check = params_check(name, ElmanParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> ElmanParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    k_ih, k_hh, k_b = jax.random.split(key, 3)
    return ElmanParams(
      w_ih=inp(k_ih, (input_size, hidden_size), dtype),
      w_hh=rec(k_hh, (hidden_size, hidden_size), dtype),
      b=bias(k_b, (hidden_size,), dtype),
    )

  def initial_carry(params: ElmanParams, batch_shape: int | Sequence[int] = ()) -> Array:
    check(params)
    return jnp.zeros((*_batch_shape(batch_shape), params.w_hh.shape[0]), params.w_hh.dtype)

  def project(params: ElmanParams, x: Array) -> Array:
    check(params)
    return _cast_input(name, params.w_ih, x) @ params.w_ih + params.b

  def recurrent(params: ElmanParams) -> tuple[Array, None]:
    check(params)
    return params.w_hh, None

  def equations(h: Array, xp: Array, hp: Array) -> tuple[Array, dict, dict]:
    h = act(xp + hp)
    return h, {}, ({"h": h} if act is jnp.tanh else {})

  update, gates = from_equations(equations)
  parts = CellParts(
    project,
    recurrent,
    update,
    _identity,
    additive=True,
    gates=gates,
    blocks=("h",),
    gamma=_GAMMAS.get(act),
  )
  return Cell(init, initial_carry, step_from_parts(parts), name, parts)


def lstm(
  hidden_size: int,
  forget_bias: float = 1.0,
  *,
  recurrent_init: inits.InitSpec = "orthogonal",
  gain: float = 1.0,
  input_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
  chrono_t_max: float | None = None,
) -> Cell:
  r"""The LSTM cell with a forget gate (Hochreiter & Schmidhuber 1997; Gers 2000).

  .. math::
     [a_i, a_f, a_g, a_o] &= x W_{ih} + h W_{hh} + b \\
     i = \sigma(a_i),\ f &= \sigma(a_f),\ g = \tanh(a_g),\ o = \sigma(a_o) \\
     c' = f \odot c + i \odot g, &\qquad h' = o \odot \tanh(c'), \qquad y = h'

  Shapes: ``w_ih (I, 4H)``, ``w_hh (H, 4H)``, ``b (4H,)``, gate order i, f, g, o
  (PyTorch, cuDNN, Keras). The carry is :class:`LSTMCarry` ``(h, c)``.

  Args:
    hidden_size: H.
    forget_bias: initial value of the forget slice of ``b`` (default 1.0,
      Jozefowicz et al. 2015: ``sigmoid(1) = 0.73``, a memory of about 3.7
      steps). It is written into ``b`` at init, never added at call time, so
      imported weights run unchanged.
    recurrent_init: scheme for each gate's ``(H, H)`` block of ``w_hh``
      (default ``"orthogonal"``; see :func:`elman`).
    gain: g, the scale of the recurrent scheme (default 1.0).
    input_init: scheme for each gate's block of ``w_ih`` (default ``"lecun_normal"``).
    bias_init: scheme for ``b`` before the forget bias is written (default ``"zeros"``).
    chrono_t_max: if given, chrono initialisation (Tallec & Ollivier 2018):
      forget bias ``b_f ~ log U[1, t_max - 1]`` and input bias ``b_i = -b_f``,
      replacing ``forget_bias``.

  Returns:
    A :class:`Cell` with params :class:`LSTMParams` and carry :class:`LSTMCarry`.
  """
  name = "lstm"
  hidden_size = _check_hidden_size(name, hidden_size)
  rec = inits.recurrent(recurrent_init, hidden_size, gain)
  inp = inits.input_weights(input_init, hidden_size)
  bias = inits.bias(bias_init, hidden_size)
  chrono = None if chrono_t_max is None else inits.chrono(chrono_t_max)
  H = hidden_size
  check = params_check(name, LSTMParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> LSTMParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    k_ih, k_hh, k_b, k_chrono = jax.random.split(key, 4)
    return LSTMParams(
      w_ih=inits.per_gate(inp, k_ih, input_size, H, 4, dtype),
      w_hh=inits.per_gate(rec, k_hh, H, H, 4, dtype),
      b=_lstm_bias(bias(k_b, (4 * H,), dtype), forget_bias, chrono, k_chrono),
    )

  def initial_carry(params: LSTMParams, batch_shape: int | Sequence[int] = ()) -> LSTMCarry:
    check(params)
    zeros = jnp.zeros((*_batch_shape(batch_shape), params.w_hh.shape[0]), params.w_hh.dtype)
    return LSTMCarry(h=zeros, c=zeros)

  def project(params: LSTMParams, x: Array) -> Array:
    check(params)
    return _cast_input(name, params.w_ih, x) @ params.w_ih + params.b

  def recurrent(params: LSTMParams) -> tuple[Array, None]:
    check(params)
    return params.w_hh, None

  def equations(carry: LSTMCarry, xp: Array, hp: Array) -> tuple[LSTMCarry, dict, dict]:
    a_i, a_f, a_g, a_o = jnp.split(xp + hp, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
    c = f * carry.c + i * g
    tanh_c = jnp.tanh(c)
    return LSTMCarry(h=o * tanh_c, c=c), {"i": i, "f": f, "o": o}, {"g": g, "tanh_c": tanh_c}

  update, gates = from_equations(equations)
  parts = CellParts(
    project,
    recurrent,
    update,
    _lstm_hidden,
    additive=True,
    gates=gates,
    blocks=("i", "f", "g", "o"),
  )
  return Cell(init, initial_carry, step_from_parts(parts), name, parts)


def gru(
  hidden_size: int,
  reset_after: bool = True,
  *,
  recurrent_init: inits.InitSpec = "orthogonal",
  gain: float = 1.0,
  input_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
  chrono_t_max: float | None = None,
) -> Cell:
  r"""The GRU cell (Cho et al. 2014) with PyTorch / cuDNN equations.

  .. math::
     r &= \sigma(x W_{ir} + b_{ir} + h W_{hr} + b_{hr}) \\
     z &= \sigma(x W_{iz} + b_{iz} + h W_{hz} + b_{hz}) \\
     n &= \tanh(x W_{in} + b_{in} + r \odot (h W_{hn} + b_{hn}))
        \quad\text{(reset after, default)} \\
     n &= \tanh(x W_{in} + b_{in} + (r \odot h) W_{hn} + b_{hn})
        \quad\text{(reset before: haiku, Keras reset_after=False)} \\
     h' &= (1 - z) \odot n + z \odot h, \qquad y = h'

  Shapes: ``w_ih (I, 3H)``, ``w_hh (H, 3H)``, ``b_ih (3H,)``, ``b_hh (3H,)``, gate
  order r, z, n. The carry is the array ``h``. Note that z *keeps* the old
  state: ``z -> 1`` is the GRU's long-memory regime.

  Args:
    hidden_size: H.
    reset_after: True (default) applies the reset to the recurrent product, as
      PyTorch, cuDNN and flax.linen; False applies it to ``h`` before the matmul.
      The two are different functions of the same parameters.
    recurrent_init: scheme for each gate's ``(H, H)`` block of ``w_hh``
      (default ``"orthogonal"``; see :func:`elman`).
    gain: g, the scale of the recurrent scheme (default 1.0).
    input_init: scheme for each gate's block of ``w_ih`` (default ``"lecun_normal"``).
    bias_init: scheme for ``b_ih`` and ``b_hh`` (default ``"zeros"``).
    chrono_t_max: if given, chrono initialisation of the update gate: ``b_iz ~
      log U[1, t_max - 1]`` (positive, since z keeps the state here) and
      ``b_hz = 0``.

  Returns:
    A :class:`Cell` with params :class:`GRUParams` and carry ``h``.
  """
  name = "gru"
  hidden_size = _check_hidden_size(name, hidden_size)
  rec = inits.recurrent(recurrent_init, hidden_size, gain)
  inp = inits.input_weights(input_init, hidden_size)
  bias = inits.bias(bias_init, hidden_size)
  chrono = None if chrono_t_max is None else inits.chrono(chrono_t_max)
  H = hidden_size
  check = params_check(name, GRUParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> GRUParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    k_ih, k_hh, k_bi, k_bh, k_chrono = jax.random.split(key, 5)
    b_ih, b_hh = _gru_biases(
      bias(k_bi, (3 * H,), dtype), bias(k_bh, (3 * H,), dtype), chrono, k_chrono
    )
    return GRUParams(
      w_ih=inits.per_gate(inp, k_ih, input_size, H, 3, dtype),
      w_hh=inits.per_gate(rec, k_hh, H, H, 3, dtype),
      b_ih=b_ih,
      b_hh=b_hh,
    )

  def initial_carry(params: GRUParams, batch_shape: int | Sequence[int] = ()) -> Array:
    check(params)
    return jnp.zeros((*_batch_shape(batch_shape), params.w_hh.shape[0]), params.w_hh.dtype)

  def project(params: GRUParams, x: Array) -> Array:
    check(params)
    return _cast_input(name, params.w_ih, x) @ params.w_ih + params.b_ih

  def recurrent(params: GRUParams) -> tuple[Array, Array]:
    check(params)
    return params.w_hh, params.b_hh

  def equations(h: Array, xp: Array, hp: Array) -> tuple[Array, dict, dict]:
    # Reset after: the reset gate scales the recurrent product h W_hn + b_hn.
    gi_r, gi_z, gi_n = jnp.split(xp, 3, axis=-1)
    gh_r, gh_z, gh_n = jnp.split(hp, 3, axis=-1)
    r = jax.nn.sigmoid(gi_r + gh_r)
    z = jax.nn.sigmoid(gi_z + gh_z)
    n = jnp.tanh(gi_n + r * gh_n)
    return (1 - z) * n + z * h, {"r": r, "z": z}, {"n": n}

  def step_reset_before(params: GRUParams, h: Array, x: Array) -> tuple[Array, Array]:
    # The reset gate scales h before the n-gate matmul: no single recurrent product to split.
    gi_r, gi_z, gi_n = jnp.split(project(params, x), 3, axis=-1)
    b_hr, b_hz, b_hn = jnp.split(params.b_hh, 3)
    w_hrz, w_hn = params.w_hh[:, : 2 * H], params.w_hh[:, 2 * H :]
    gh_r, gh_z = jnp.split(h @ w_hrz, 2, axis=-1)
    r = jax.nn.sigmoid(gi_r + gh_r + b_hr)
    z = jax.nn.sigmoid(gi_z + gh_z + b_hz)
    n = jnp.tanh(gi_n + (r * h) @ w_hn + b_hn)
    h = (1 - z) * n + z * h
    return h, h

  if not reset_after:
    return Cell(init, initial_carry, step_reset_before, name)
  update, gates = from_equations(equations)
  parts = CellParts(project, recurrent, update, _identity, gates=gates, blocks=("r", "z", "n"))
  return Cell(init, initial_carry, step_from_parts(parts), name, parts)


# ----------------------------------------------------------------------------- layer norm

LAYER_NORM_EPS = 1e-5  # ryankiros/layer-norm's epsilon (Ba, Kiros & Hinton's code)


def _normalize(a: Array, eps: float, blocks: Sequence[int] = ()) -> Array:
  r"""``(a - mu) / sqrt(sigma^2 + eps)`` over the last axis, each block on its own statistics.

  ``blocks`` are the sizes of consecutive slices of the last axis normalised
  separately (default: the whole axis as one). The statistics are computed in at
  least float32 (bfloat16 params would otherwise lose the variance; flax's
  ``LayerNorm`` does the same) and the result is cast back to ``a``'s dtype.
  """
  dtype = a.dtype
  a = a.astype(jnp.promote_types(dtype, jnp.float32))
  pieces = jnp.split(a, np.cumsum(blocks[:-1]).tolist(), axis=-1) if blocks else [a]
  out = []
  for piece in pieces:
    centred = piece - jnp.mean(piece, axis=-1, keepdims=True)
    variance = jnp.mean(jnp.square(centred), axis=-1, keepdims=True)
    out.append(centred * jax.lax.rsqrt(variance + eps))
  return (out[0] if len(out) == 1 else jnp.concatenate(out, axis=-1)).astype(dtype)


def _check_eps(name: str, eps: Any) -> float:
  if isinstance(eps, bool) or not isinstance(eps, int | float) or not eps > 0:
    raise ValueError(f"{name}: eps must be a number > 0; got {eps!r}")
  return float(eps)


class LayerNormLSTMParams(NamedTuple):
  """Layer-normalised LSTM parameters (:func:`layer_norm_lstm`), gates in the order i, f, g, o.

  ``w_ih (I, 4H)``, ``w_hh (H, 4H)``, ``b (4H,)``; the layer norms' gains
  ``scale_ih (4H,)`` (of ``x W_ih``), ``scale_hh (4H,)`` (of ``h W_hh``),
  ``scale_c (H,)`` and bias ``bias_c (H,)`` (of the cell state).
  """

  w_ih: Array
  w_hh: Array
  b: Array
  scale_ih: Array
  scale_hh: Array
  scale_c: Array
  bias_c: Array


class LayerNormGRUParams(NamedTuple):
  """Layer-normalised GRU parameters (:func:`layer_norm_gru`), gates in the order r, z, n.

  ``w_ih (I, 3H)``, ``w_hh (H, 3H)``; the layer norms' gains ``scale_ih (3H,)``,
  ``scale_hh (3H,)`` and biases ``b_ih (3H,)``, ``b_hh (3H,)``.
  """

  w_ih: Array
  w_hh: Array
  b_ih: Array
  b_hh: Array
  scale_ih: Array
  scale_hh: Array


def layer_norm_lstm(
  hidden_size: int,
  forget_bias: float = 1.0,
  *,
  recurrent_init: inits.InitSpec = "orthogonal",
  gain: float = 1.0,
  input_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
  chrono_t_max: float | None = None,
  eps: float = LAYER_NORM_EPS,
) -> Cell:
  r"""The layer-normalised LSTM of Ba, Kiros & Hinton 2016 ("Layer Normalization", sec. 3.1).

  .. math::
     \mathrm{LN}(a; \alpha, \beta) &= \alpha \odot \frac{a - \mu(a)}{\sqrt{\sigma^2(a)
        + \epsilon}} + \beta, \quad \mu, \sigma^2 \text{ over the units of } a \\
     [a_i, a_f, a_g, a_o] &= \mathrm{LN}(x W_{ih}; s_{ih}, 0)
        + \mathrm{LN}(h W_{hh}; s_{hh}, 0) + b \\
     i = \sigma(a_i),\ f &= \sigma(a_f),\ g = \tanh(a_g),\ o = \sigma(a_o) \\
     c' = f \odot c + i \odot g, &\qquad
        h' = o \odot \tanh(\mathrm{LN}(c'; s_c, \beta_c)), \qquad y = h'

  As the paper's equations and its authors' code (``lnlstm_layer`` in
  github.com/ryankiros/layer-norm, ``layers.py``): each projection is normalised
  over all ``4H`` pre-activations at once (one mean and variance, not one per
  gate), ``epsilon = 1e-5`` under the square root, and the carried ``c'`` is the
  un-normalised cell state (the norm feeds only the output). The paper gives each
  projection's norm its own bias as well as ``b``; the three only ever enter as
  their sum, so here they are one parameter, ``b`` (as :func:`lstm` keeps PyTorch's
  ``b_ih + b_hh`` as one ``b``). Gains start at 1, ``beta_c`` at 0.

  Shapes: ``w_ih (I, 4H)``, ``w_hh (H, 4H)``, ``b``, ``scale_ih``, ``scale_hh (4H,)``,
  ``scale_c``, ``bias_c (H,)``; gate order i, f, g, o. The carry is
  :class:`LSTMCarry` ``(h, c)``. The norms' statistics are computed in at least
  float32. No :class:`CellParts` (so no fused path and no gate diagnostics): the
  norms hold parameters between the two matmuls and the update, which
  ``CellParts.update`` may not.

  Args:
    hidden_size: H.
    forget_bias: initial value of the forget slice of ``b`` (default 1.0, as :func:`lstm`).
    recurrent_init, gain, input_init, bias_init, chrono_t_max: as :func:`lstm`
      (``w_hh`` and ``w_ih`` per gate block; ``b`` and its forget and input slices).
    eps: epsilon, added to the variance (default 1e-5).

  Returns:
    A :class:`Cell` with params :class:`LayerNormLSTMParams` and carry :class:`LSTMCarry`.
  """
  name = "layer_norm_lstm"
  hidden_size = _check_hidden_size(name, hidden_size)
  eps = _check_eps(name, eps)
  # The weights and biases are the plain LSTM's, drawn by its init from the same key.
  plain = lstm(
    hidden_size,
    forget_bias,
    recurrent_init=recurrent_init,
    gain=gain,
    input_init=input_init,
    bias_init=bias_init,
    chrono_t_max=chrono_t_max,
  )
  H = hidden_size
  check = params_check(name, LayerNormLSTMParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> LayerNormLSTMParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    return LayerNormLSTMParams(
      *plain.init(key, input_size, dtype=dtype),
      scale_ih=jnp.ones((4 * H,), dtype),
      scale_hh=jnp.ones((4 * H,), dtype),
      scale_c=jnp.ones((H,), dtype),
      bias_c=jnp.zeros((H,), dtype),
    )

  def initial_carry(
    params: LayerNormLSTMParams, batch_shape: int | Sequence[int] = ()
  ) -> LSTMCarry:
    check(params)
    zeros = jnp.zeros((*_batch_shape(batch_shape), params.w_hh.shape[0]), params.w_hh.dtype)
    return LSTMCarry(h=zeros, c=zeros)

  def step(params: LayerNormLSTMParams, carry: LSTMCarry, x: Array) -> tuple[LSTMCarry, Array]:
    check(params)
    x = _cast_input(name, params.w_ih, x)
    a = (
      _normalize(x @ params.w_ih, eps) * params.scale_ih
      + _normalize(carry.h @ params.w_hh, eps) * params.scale_hh
      + params.b
    )
    a_i, a_f, a_g, a_o = jnp.split(a, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(a_i), jax.nn.sigmoid(a_f), jnp.tanh(a_g), jax.nn.sigmoid(a_o)
    c = f * carry.c + i * g
    h = o * jnp.tanh(_normalize(c, eps) * params.scale_c + params.bias_c)
    return LSTMCarry(h=h, c=c), h

  return Cell(init, initial_carry, step, name)


def layer_norm_gru(
  hidden_size: int,
  *,
  recurrent_init: inits.InitSpec = "orthogonal",
  gain: float = 1.0,
  input_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
  chrono_t_max: float | None = None,
  eps: float = LAYER_NORM_EPS,
) -> Cell:
  r"""A layer-normalised GRU, placed as in Ba, Kiros & Hinton's own code (reset after).

  The paper writes only the LSTM's equations; its authors' GRU (``lngru_layer`` in
  github.com/ryankiros/layer-norm, ``layers.py``, used for the paper's GRU
  experiments) normalises the input and the recurrent projection separately, the
  ``r, z`` block (``2H`` units) and the candidate's ``n`` block (``H``) each on
  its own statistics, and applies the reset to the normalised recurrent term:

  .. math::
     [u_r, u_z] &= \mathrm{LN}(x W_{i,rz}), \quad u_n = \mathrm{LN}(x W_{in}),
        \quad \text{each } \odot s_{ih} + b_{ih} \\
     [v_r, v_z] &= \mathrm{LN}(h W_{h,rz}), \quad v_n = \mathrm{LN}(h W_{hn}),
        \quad \text{each } \odot s_{hh} + b_{hh} \\
     r = \sigma(u_r + v_r), \quad z &= \sigma(u_z + v_z), \quad
        n = \tanh(u_n + r \odot v_n) \\
     h' &= (1 - z) \odot n + z \odot h, \qquad y = h'

  with ``LN(a) = (a - mu(a)) / sqrt(sigma^2(a) + eps)`` (:func:`layer_norm_lstm`).
  As in :func:`gru` (reset after), ``b_hn`` sits inside the reset, and z keeps the
  old state. Gains start at 1.

  Shapes: ``w_ih (I, 3H)``, ``w_hh (H, 3H)``, ``b_ih``, ``b_hh``, ``scale_ih``,
  ``scale_hh (3H,)``, gate order r, z, n. The carry is the array ``h``. The
  norms' statistics are computed in at least float32. No :class:`CellParts`
  (see :func:`layer_norm_lstm`).

  Args:
    hidden_size: H.
    recurrent_init, gain, input_init, bias_init, chrono_t_max: as :func:`gru`.
    eps: epsilon, added to the variance (default 1e-5).

  Returns:
    A :class:`Cell` with params :class:`LayerNormGRUParams` and carry ``h``.
  """
  name = "layer_norm_gru"
  hidden_size = _check_hidden_size(name, hidden_size)
  eps = _check_eps(name, eps)
  # The weights and biases are the plain GRU's, drawn by its init from the same key.
  plain = gru(
    hidden_size,
    recurrent_init=recurrent_init,
    gain=gain,
    input_init=input_init,
    bias_init=bias_init,
    chrono_t_max=chrono_t_max,
  )
  H = hidden_size
  check = params_check(name, LayerNormGRUParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> LayerNormGRUParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    return LayerNormGRUParams(
      *plain.init(key, input_size, dtype=dtype),
      scale_ih=jnp.ones((3 * H,), dtype),
      scale_hh=jnp.ones((3 * H,), dtype),
    )

  def initial_carry(params: LayerNormGRUParams, batch_shape: int | Sequence[int] = ()) -> Array:
    check(params)
    return jnp.zeros((*_batch_shape(batch_shape), params.w_hh.shape[0]), params.w_hh.dtype)

  def step(params: LayerNormGRUParams, h: Array, x: Array) -> tuple[Array, Array]:
    check(params)
    x = _cast_input(name, params.w_ih, x)
    blocks = (2 * H, H)  # r and z together, n alone
    u = _normalize(x @ params.w_ih, eps, blocks) * params.scale_ih + params.b_ih
    v = _normalize(h @ params.w_hh, eps, blocks) * params.scale_hh + params.b_hh
    u_r, u_z, u_n = jnp.split(u, 3, axis=-1)
    v_r, v_z, v_n = jnp.split(v, 3, axis=-1)
    r, z = jax.nn.sigmoid(u_r + v_r), jax.nn.sigmoid(u_z + v_z)
    n = jnp.tanh(u_n + r * v_n)
    h = (1 - z) * n + z * h
    return h, h

  return Cell(init, initial_carry, step, name)


class DiagonalParams(NamedTuple):
  """Diagonal linear recurrence parameters: ``lam (H,)``, ``w_ih (I, H)``, ``b (H,)``."""

  lam: Array
  w_ih: Array
  b: Array


def diagonal(
  hidden_size: int,
  radius: tuple[float, float] = (0.9, 0.999),
  *,
  input_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
) -> Cell:
  r"""A real diagonal linear recurrence (the building block of LRU/S4-style models).

  .. math::  h' = \lambda \odot h + x W_{ih} + b, \qquad y = h'

  Its state Jacobian is ``diag(lambda)`` at every step: gradients through time
  fall exactly as ``lambda ** lag``, while the sensitivity of the state to
  ``lambda`` itself grows as ``lambda -> 1`` (the curse of memory, Zucchet &
  Orvieto 2024; see :func:`rnnlab.diagnostics.parameter_sensitivity`).

  Args:
    hidden_size: H.
    radius: ``lambda`` is drawn uniformly from ``[radius[0], radius[1])``
      (default ``(0.9, 0.999)``: long memories, as LRU's ring initialisation).
    input_init: scheme for ``w_ih`` (default ``"lecun_normal"``).
    bias_init: scheme for ``b`` (default ``"zeros"``).

  Returns:
    A :class:`Cell` with params :class:`DiagonalParams` and carry ``h``.
  """
  name = "diagonal"
  hidden_size = _check_hidden_size(name, hidden_size)
  low, high = radius
  if not -1 <= low <= high <= 1:
    raise ValueError(f"diagonal: radius must satisfy -1 <= low <= high <= 1; got {radius!r}")
  inp = inits.input_weights(input_init, hidden_size)
  bias = inits.bias(bias_init, hidden_size)
  check = params_check(name, DiagonalParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> DiagonalParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    k_lam, k_ih, k_b = jax.random.split(key, 3)
    return DiagonalParams(
      lam=jax.random.uniform(k_lam, (hidden_size,), dtype, low, high),
      w_ih=inp(k_ih, (input_size, hidden_size), dtype),
      b=bias(k_b, (hidden_size,), dtype),
    )

  def initial_carry(params: DiagonalParams, batch_shape: int | Sequence[int] = ()) -> Array:
    check(params)
    return jnp.zeros((*_batch_shape(batch_shape), params.lam.shape[0]), params.lam.dtype)

  def project(params: DiagonalParams, x: Array) -> Array:
    check(params)
    return _cast_input(name, params.w_ih, x) @ params.w_ih + params.b

  def step(params: DiagonalParams, h: Array, x: Array) -> tuple[Array, Array]:
    check(params)
    h = params.lam * h + project(params, x)
    return h, h

  def recurrent(params: DiagonalParams) -> tuple[Array, None]:
    check(params)
    # The same map as a matrix, for the diagnostics (the step never forms it).
    return jnp.diag(params.lam), None

  def update(h: Array, xp: Array, hp: Array) -> Array:
    return xp + hp

  # Not `additive`, so `impl="auto"` keeps the O(H) step instead of a dense matmul.
  parts = CellParts(project, recurrent, update, _identity, blocks=("h",), gamma=1.0)
  return Cell(init, initial_carry, step, name, parts)


class ExpRNNParams(NamedTuple):
  """expRNN parameters (:func:`exprnn`): ``w_ih (I, H)``, ``a (H, H)``, ``b (H,)``.

  Only ``a``'s strict upper triangle is used: ``W = expm(S)``, ``S = triu(a, 1) - triu(a, 1)^T``.
  """

  w_ih: Array
  a: Array
  b: Array


class ExpRNNWeights(NamedTuple):
  """expRNN parameters with ``W`` formed (:func:`exprnn`'s ``prepare``): ``w_ih``, ``w (H, H)``, ``b``."""

  w_ih: Array
  w: Array
  b: Array


EXPRNN_ACTIVATIONS = ("modrelu", "tanh", "linear")
EXPRNN_INITS = ("henaff", "cayley", "identity")


def modrelu(z: Array, b: Array) -> Array:
  """modReLU (Arjovsky, Shah & Bengio 2016) on real units: ``sign(z) * relu(|z| + b)``."""
  return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + b)


def skew(a: Array) -> Array:
  """``S = triu(a, 1) - triu(a, 1)^T``: the skew-symmetric matrix of ``a``'s strict upper triangle."""
  upper = jnp.triu(a, 1)
  return upper - jnp.swapaxes(upper, -1, -2)


def _skew_blocks(angles: Array, size: int) -> Array:
  """``(size, size)`` with ``angles[k]`` at ``(2k, 2k+1)``, zero elsewhere (the upper triangle of
  the authors' ``create_diag_``: ``W = expm(S)`` is a block-diagonal of 2x2 rotations by ``-angles``)."""
  rows = 2 * jnp.arange(angles.shape[0])
  return jnp.zeros((size, size), angles.dtype).at[rows, rows + 1].set(angles)


def henaff_init(key: Array, shape: tuple, dtype: Any = jnp.float32) -> Array:
  """Henaff, Szlam & LeCun 2016's init of ``a``: ``H // 2`` 2x2 blocks, angles ``U[-pi, pi]``."""
  size = shape[0]
  angles = jax.random.uniform(key, (size // 2,), jnp.float32, -np.pi, np.pi)
  return _skew_blocks(angles, size).astype(dtype)


def cayley_init(key: Array, shape: tuple, dtype: Any = jnp.float32) -> Array:
  """Helfrich et al. 2018's init of ``a`` (scoRNN): blocks ``-sqrt((1 - cos u) / (1 + cos u))``,
  ``u ~ U[0, pi/2]`` (i.e. ``-tan(u / 2)`` in ``[-1, 0]``)."""
  size = shape[0]
  u = jax.random.uniform(key, (size // 2,), jnp.float32, 0.0, np.pi / 2)
  angles = -jnp.sqrt((1 - jnp.cos(u)) / (1 + jnp.cos(u)))
  return _skew_blocks(angles, size).astype(dtype)


def he_normal(key: Array, shape: tuple, dtype: Any = jnp.float32) -> Array:
  """``N(0, 2 / fan_in)``, fan-in ``shape[0]`` (PyTorch's ``kaiming_normal_(nonlinearity="relu")``)."""
  sample = jax.random.normal(key, shape, jnp.promote_types(dtype, jnp.float32))
  return (sample * np.sqrt(2.0 / shape[0])).astype(dtype)


def exprnn(
  hidden_size: int,
  activation: str = "modrelu",
  *,
  recurrent_init: str | Callable[..., Array] = "henaff",
  input_init: inits.InitSpec = "he_normal",
  bias_init: inits.InitSpec | float = 0.01,
) -> Cell:
  r"""The exponential RNN (expRNN) of Lezcano-Casado & Martinez-Rubio 2019: W stays orthogonal.

  .. math::
     S = \mathrm{triu}(A, 1) - \mathrm{triu}(A, 1)^\top, \qquad W = e^{S} \in SO(H) \\
     h' = \mathrm{modReLU}(x W_{ih} + h W;\ b), \qquad
        \mathrm{modReLU}(z; b) = \mathrm{sign}(z) \odot \mathrm{relu}(|z| + b),
        \qquad y = h'

  ``A`` is a free parameter; ``W = expm(S)`` is orthogonal for every ``A`` (``S`` is
  skew-symmetric), so training moves ``A`` and ``W`` never leaves the orthogonal
  group (to float rounding: the exponential is recomputed from ``A``, errors do not
  accumulate). As the authors' code (github.com/Lezcano/expRNN, ``orthogonal.py``,
  ``exprnn.py``, ``initialization.py``): only ``A``'s strict upper triangle is used
  (their ``A.triu(diagonal=1)``; its other entries get zero gradients), ``W`` is
  applied on the right, ``h W`` (their ``hidden.matmul(B)``), the input weights have
  no bias and are He-normal (their ``kaiming_normal_(nonlinearity="relu")``,
  ``N(0, 2 / I)``), the modReLU bias is ``U(-0.01, 0.01)``, and ``A`` starts from
  Henaff's init (their default for the copy task): ``H // 2`` 2x2 blocks
  ``[[0, t], [-t, 0]]`` down the diagonal, ``t ~ U[-pi, pi]``, so ``W`` is a
  block-diagonal of rotations whose eigenvalues ``e^{+-i t}`` spread over the circle
  (Henaff, Szlam & LeCun 2016); ``recurrent_init="cayley"`` gives their other one,
  ``t = -sqrt((1 - cos u) / (1 + cos u))``, ``u ~ U[0, pi/2]`` (Helfrich et al. 2018).

  ``activation="tanh"`` gives ``h' = tanh(x W_ih + h W + b)`` and ``"linear"``
  ``h' = x W_ih + h W + b``, whose state Jacobian is ``W^T``: every
  ``||dh_T/dh_t||`` is exactly 1. The modReLU's bias sits inside its nonlinearity,
  which :class:`CellParts` ``update`` may not hold, so the modReLU cell has no parts
  (no fused path, gate and spectrum diagnostics); the tanh and linear ones have
  Elman-like parts (``recurrent`` returns ``(W, None)``).

  ``W`` depends on ``A`` alone; ``lax.scan`` would recompute it (and its gradient)
  every step, so the cell's ``prepare`` (:class:`Cell`) forms it once and
  :func:`rnnlab.unroll` scans with the result, :class:`ExpRNNWeights` (T=200, H=64,
  B=32, forward and backward on 2 CPU cores: 53 ms per step recomputed, 8 ms formed
  once). ``step`` accepts both param types. The exponential is
  :func:`rnnlab.linalg.expm` (matmuls only, no LAPACK), in at least float32.

  Shapes: ``x (*batch, I)``, ``h (*batch, H)``, ``w_ih (I, H)``, ``a (H, H)``,
  ``b (H,)``. The carry is the array ``h``.

  Args:
    hidden_size: H.
    activation: ``"modrelu"`` (default), ``"tanh"`` or ``"linear"``.
    recurrent_init: the init of ``a``: ``"henaff"`` (default), ``"cayley"``,
      ``"identity"`` (``A = 0``, ``W = I``), or a callable ``init(key, (H, H), dtype)``.
    input_init: scheme for ``w_ih``: ``"he_normal"`` (default, the authors') or any of
      :mod:`rnnlab.initializers`' input schemes or a callable.
    bias_init: a number ``c`` (default 0.01: ``b ~ U(-c, c)``, the authors' modReLU
      bias) or a bias scheme of :mod:`rnnlab.initializers` (``"zeros"``, ``"uniform"``).

  Returns:
    A :class:`Cell` with params :class:`ExpRNNParams` and carry ``h``.

  References:
    Lezcano-Casado & Martinez-Rubio 2019, "Cheap Orthogonal Constraints in Neural
    Networks: A Simple Parametrization of the Orthogonal and Unitary Group" (ICML);
    Arjovsky, Shah & Bengio 2016 (modReLU); Henaff, Szlam & LeCun 2016 (the init).
  """
  name = "exprnn"
  hidden_size = _check_hidden_size(name, hidden_size)
  if activation not in EXPRNN_ACTIVATIONS:
    raise ValueError(
      f"exprnn: activation={activation!r} is not supported; expected one of {EXPRNN_ACTIVATIONS}"
    )
  if callable(recurrent_init):
    rec = recurrent_init
  elif recurrent_init in EXPRNN_INITS:
    rec = {"henaff": henaff_init, "cayley": cayley_init, "identity": inits.zeros}[recurrent_init]
  else:
    raise ValueError(
      f"exprnn: recurrent_init={recurrent_init!r} is not supported; expected one of "
      f"{EXPRNN_INITS} or a callable init(key, shape, dtype) of A"
    )
  inp = he_normal if input_init == "he_normal" else inits.input_weights(input_init, hidden_size)
  if isinstance(bias_init, int | float) and not isinstance(bias_init, bool):
    if not bias_init >= 0:
      raise ValueError(f"exprnn: bias_init={bias_init!r}; a number must be >= 0")
    bias = inits.uniform(float(bias_init))
  else:
    bias = inits.bias(bias_init, hidden_size)
  check_params = params_check(name, ExpRNNParams)

  def check(params: Any) -> None:
    if not isinstance(params, ExpRNNWeights):
      check_params(params)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> ExpRNNParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    k_ih, k_a, k_b = jax.random.split(key, 3)
    return ExpRNNParams(
      w_ih=inp(k_ih, (input_size, hidden_size), dtype),
      a=rec(k_a, (hidden_size, hidden_size), dtype),
      b=bias(k_b, (hidden_size,), dtype),
    )

  def initial_carry(params: ExpRNNParams, batch_shape: int | Sequence[int] = ()) -> Array:
    check(params)
    return jnp.zeros((*_batch_shape(batch_shape), params.b.shape[0]), params.b.dtype)

  def recurrent_matrix(params: ExpRNNParams | ExpRNNWeights) -> Array:
    if isinstance(params, ExpRNNWeights):
      return params.w
    # expm in at least float32 (bfloat16 would lose orthogonality), then back.
    s = skew(params.a.astype(jnp.promote_types(params.a.dtype, jnp.float32)))
    return linalg.expm(s).astype(params.a.dtype)

  def prepare(params: ExpRNNParams | ExpRNNWeights) -> ExpRNNWeights:
    check(params)
    return ExpRNNWeights(params.w_ih, recurrent_matrix(params), params.b)

  if activation == "modrelu":

    def step(params: ExpRNNParams, h: Array, x: Array) -> tuple[Array, Array]:
      check(params)
      z = _cast_input(name, params.w_ih, x) @ params.w_ih + h @ recurrent_matrix(params)
      h = modrelu(z, params.b)
      return h, h

    return Cell(init, initial_carry, step, name, prepare=prepare)

  act = ACTIVATIONS[activation]

  def project(params: ExpRNNParams, x: Array) -> Array:
    check(params)
    return _cast_input(name, params.w_ih, x) @ params.w_ih + params.b

  def recurrent(params: ExpRNNParams) -> tuple[Array, None]:
    check(params)
    return recurrent_matrix(params), None

  def equations(h: Array, xp: Array, hp: Array) -> tuple[Array, dict, dict]:
    h = act(xp + hp)
    return h, {}, ({"h": h} if act is jnp.tanh else {})

  update, gates = from_equations(equations)
  parts = CellParts(
    project, recurrent, update, _identity, additive=True, gates=gates, blocks=("h",), gamma=1.0
  )
  return Cell(init, initial_carry, step_from_parts(parts), name, parts, prepare)


class LRUParams(NamedTuple):
  """LRU parameters (:func:`lru`), the names of Orvieto et al.'s code, weights stored ``(in, out)``.

  ``nu_log``, ``theta_log``, ``gamma_log (N,)``: ``lambda = exp(-exp(nu_log) + i
  exp(theta_log))`` and the input normalisation ``gamma = exp(gamma_log)``;
  ``b_re``, ``b_im (I, N)``: the complex input map B; ``c_re``, ``c_im (N, H)``:
  the complex output map C; ``d``: the skip D, ``(H,)`` (elementwise, the paper's)
  when ``I == H``, else ``(I, H)``; ``w_glu (H, 2H)``, ``b_glu (2H,)``: the GLU
  readout's two dense maps fused in the order (value, gate), or None for
  ``readout="none"``.
  """

  nu_log: Array
  theta_log: Array
  gamma_log: Array
  b_re: Array
  b_im: Array
  c_re: Array
  c_im: Array
  d: Array
  w_glu: Array | None
  b_glu: Array | None


class LRUCarry(NamedTuple):
  """LRU state: the complex ``h = re + i im``, as two real arrays ``(*batch, N)``."""

  re: Array
  im: Array


LRU_READOUTS = ("glu", "none")


def _check_ring(r_min: Any, r_max: Any, max_phase: Any) -> tuple[float, float, float]:
  def number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float) and np.isfinite(value)

  if not (number(r_min) and number(r_max) and 0 <= r_min <= r_max <= 1):
    raise ValueError(
      f"lru: r_min={r_min!r}, r_max={r_max!r} are invalid; expected 0 <= r_min <= r_max <= 1"
    )
  if not (number(max_phase) and max_phase > 0):
    raise ValueError(f"lru: max_phase={max_phase!r} is invalid; expected a number > 0")
  return float(r_min), float(r_max), float(max_phase)


def _lru_lambda(params: LRUParams) -> tuple[Array, Array, Array]:
  """``(Re lambda, Im lambda, gamma)``, formed in at least float32, in the params' dtype."""
  dtype = params.nu_log.dtype
  wide = jnp.promote_types(dtype, jnp.float32)
  modulus = jnp.exp(-jnp.exp(params.nu_log.astype(wide)))
  phase = jnp.exp(params.theta_log.astype(wide))
  gamma = jnp.exp(params.gamma_log.astype(wide))
  return (
    (modulus * jnp.cos(phase)).astype(dtype),
    (modulus * jnp.sin(phase)).astype(dtype),
    gamma.astype(dtype),
  )


def lru(
  hidden_size: int,
  *,
  state_size: int | None = None,
  r_min: float = 0.0,
  r_max: float = 1.0,
  max_phase: float = 6.28,
  readout: str = "glu",
) -> Cell:
  r"""The Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural
  Networks for Long Sequences"), with its per-step GLU readout.

  .. math::
     \lambda &= \exp(-\exp(\nu) + i \exp(\theta)), \qquad \gamma = \exp(\gamma_{\log}) \\
     h' &= \lambda \odot h + \gamma \odot (x B), \qquad h \in \mathbb{C}^N \\
     z &= \mathrm{Re}(h' C) + D x \\
     y &= (g W_v + b_v) \odot \sigma(g W_g + b_g), \quad g = \mathrm{GELU}(z)
        \quad\text{(readout="glu", default)}; \qquad y = z \quad\text{(readout="none")}

  As the paper's appendix A code and NicolasZucchet/minimal-LRU (``lru/model.py``),
  whose parameter names :class:`LRUParams` keeps: the ring initialisation draws
  ``|lambda|^2 ~ U[r_min^2, r_max^2]`` (``|lambda|`` uniform over the ring's area) and
  the phase ``~ U[0, max_phase]``, stored as ``nu_log = log(-log|lambda|)`` and
  ``theta_log = log(phase)`` (the exponential parametrisation keeps ``|lambda| < 1``
  for any ``nu_log``); ``gamma_log`` starts at ``log sqrt(1 - |lambda|^2)`` and is
  then trained freely, as theirs; ``B = B_re + i B_im`` with both parts
  ``N(0, 1 / (2 I))`` (so ``E|(x B)_n|^2 = 1`` for white unit-variance x),
  ``C = C_re + i C_im`` with both ``N(0, 1 / N)``, ``D ~ N(0, 1)``. With
  ``gamma = sqrt(1 - |lambda|^2)`` a white unit-variance input gives each state unit
  the stationary variance ``E|h_n|^2 = ||B_{:, n}||^2`` whatever ``|lambda_n|`` (about
  1 at init): the normalisation that lets ``|lambda| -> 1`` without blowing up the state.

  The readout is the paper's block (its Fig. 1; ``SequenceLayer`` in minimal-LRU):
  GELU, then a GLU, two dense ``(H, H)`` maps (flax ``Dense`` defaults: LeCun-normal
  weights, zero biases). It sits in the cell because the recurrence is linear: an LRU
  alone under :mod:`rnnlab.train`'s dense readout would be a linear model, so
  ``config.model.cell = "lru"`` gets the nonlinearity the paper needs by default.
  What wraps the block is not in the cell: the residual ``x + y`` is
  :func:`rnnlab.layers.stacked`'s ``residual=True`` (where widths match), dropout its
  ``dropout``; the reference's layer (or batch) norm has no counterpart here. The
  paper's layer maps ``H -> H`` with ``D`` elementwise; here ``I`` may differ from
  ``H`` (the first layer reads the task's inputs, with no encoder before it): ``D``
  is then a dense ``(I, H)`` map, ``N(0, 1 / I)`` (the same output variance).

  The step is sequential (``lax.scan`` through :func:`rnnlab.unroll`); the
  recurrence is linear and diagonal, so a parallel ``jax.lax.associative_scan`` over
  ``(lambda, gamma x B)`` pairs computes the same states in ``O(log T)`` depth (the
  reference does); rnnlab's unroll, diagnostics and training need only the step.

  The carry is :class:`LRUCarry`, the real and imaginary parts of ``h`` as two real
  arrays of the params' dtype (the step is written in real arithmetic): every
  rnnlab tool that flattens the carry to a real vector (the diagnostics, padding,
  checkpoints) sees ``2N`` real units, and ``dc_T/dc_t`` is block diagonal with the
  ``2 x 2`` blocks ``|lambda_n|^{T-t}`` times a rotation, so its singular values are
  ``|lambda_n|^{T-t}``, each twice. ``lambda`` and ``gamma`` are formed in at least
  float32 (in bfloat16, ``|lambda|`` has steps of ``2^-8`` near 1). No
  :class:`CellParts`: the output is not a function of the carry alone.

  Shapes: ``x (*batch, I)``, ``h (*batch, N)`` complex, ``y (*batch, H)``.

  Args:
    hidden_size: H, the output width (``y``'s size).
    state_size: N, complex state units (default H; the carry holds ``2N`` reals).
    r_min, r_max: the ring of ``|lambda|`` at init (defaults 0 and 1, the reference's;
      the paper's long-range tasks use e.g. ``r_min=0.9, r_max=0.999``). Draws are
      kept inside ``(0, 1)`` so that every parameter is finite.
    max_phase: the phases' range at init (default 6.28, the reference's ``2 pi``;
      the paper uses ``pi / 10`` on PathX).
    readout: ``"glu"`` (default) or ``"none"`` (``y = Re(h' C) + D x``, the LRU alone).

  Returns:
    A :class:`Cell` with params :class:`LRUParams` and carry :class:`LRUCarry`.
  """
  name = "lru"
  hidden_size = _check_hidden_size(name, hidden_size)
  if state_size is None:
    state_size = hidden_size
  elif isinstance(state_size, bool) or not isinstance(state_size, int) or state_size < 1:
    raise ValueError(f"lru: state_size must be None or a positive int; got {state_size!r}")
  r_min, r_max, max_phase = _check_ring(r_min, r_max, max_phase)
  if readout not in LRU_READOUTS:
    raise ValueError(f"lru: readout={readout!r} is not supported; expected one of {LRU_READOUTS}")
  H, N = hidden_size, state_size
  check = params_check(name, LRUParams)

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> LRUParams:
    input_size = _check_input_size(name, input_size)
    dtype = check_dtype(name, dtype)
    wide = jnp.promote_types(dtype, jnp.float32)
    k_nu, k_theta, k_bre, k_bim, k_cre, k_cim, k_d, k_glu = jax.random.split(key, 8)
    tiny, eps = jnp.finfo(wide).tiny, jnp.finfo(wide).eps
    u = jax.random.uniform(k_nu, (N,), wide)
    radius_sq = jnp.clip(u * (r_max**2 - r_min**2) + r_min**2, tiny, 1 - eps)
    nu_log = jnp.log(-0.5 * jnp.log(radius_sq))
    phase = jnp.maximum(max_phase * jax.random.uniform(k_theta, (N,), wide), tiny)
    gamma_log = 0.5 * jnp.log(1 - radius_sq)  # log sqrt(1 - |lambda|^2)

    def normal(k, shape, scale):
      return (jax.random.normal(k, shape, wide) * scale).astype(dtype)

    if input_size == H:
      d = normal(k_d, (H,), 1.0)
    else:
      d = normal(k_d, (input_size, H), 1 / np.sqrt(input_size))
    w_glu = b_glu = None
    if readout == "glu":
      w_glu = jax.nn.initializers.lecun_normal()(k_glu, (H, 2 * H), wide).astype(dtype)
      b_glu = jnp.zeros((2 * H,), dtype)
    return LRUParams(
      nu_log=nu_log.astype(dtype),
      theta_log=jnp.log(phase).astype(dtype),
      gamma_log=gamma_log.astype(dtype),
      b_re=normal(k_bre, (input_size, N), 1 / np.sqrt(2 * input_size)),
      b_im=normal(k_bim, (input_size, N), 1 / np.sqrt(2 * input_size)),
      c_re=normal(k_cre, (N, H), 1 / np.sqrt(N)),
      c_im=normal(k_cim, (N, H), 1 / np.sqrt(N)),
      d=d,
      w_glu=w_glu,
      b_glu=b_glu,
    )

  def initial_carry(params: LRUParams, batch_shape: int | Sequence[int] = ()) -> LRUCarry:
    check(params)
    zeros = jnp.zeros((*_batch_shape(batch_shape), params.nu_log.shape[0]), params.nu_log.dtype)
    return LRUCarry(re=zeros, im=zeros)

  def step(params: LRUParams, carry: LRUCarry, x: Array) -> tuple[LRUCarry, Array]:
    check(params)
    if (params.w_glu is None) != (readout == "none"):
      raise ValueError(
        f"lru.step: params have w_glu={'None' if params.w_glu is None else 'an array'}, "
        f"but this cell's readout is {readout!r} (were they made with another readout?)"
      )
    x = _cast_input(name, params.b_re, x)
    lam_re, lam_im, gamma = _lru_lambda(params)
    u_re, u_im = (x @ params.b_re) * gamma, (x @ params.b_im) * gamma
    re = lam_re * carry.re - lam_im * carry.im + u_re
    im = lam_re * carry.im + lam_im * carry.re + u_im
    skip = x * params.d if params.d.ndim == 1 else x @ params.d
    z = re @ params.c_re - im @ params.c_im + skip
    if readout == "none":
      return LRUCarry(re, im), z
    value, gate = jnp.split(jax.nn.gelu(z) @ params.w_glu + params.b_glu, 2, axis=-1)
    return LRUCarry(re, im), value * jax.nn.sigmoid(gate)

  return Cell(init, initial_carry, step, name)


class StackedCarry(NamedTuple):
  """Carries of a :func:`stack` of cells, one per layer, bottom first."""

  layers: tuple


def stack(cells: Sequence[Cell], *, residual: bool = False) -> Cell:
  r"""Several cells applied in sequence at each time step, as one :class:`Cell`.

  ``y^0 = x``, ``(c^l, y^l) = step_l(c^l, y^{l-1})``; with ``residual`` every
  layer after the first adds its input: ``y^l = step_l(...) + y^{l-1}``. The
  output is the top layer's. Use it where a multi-layer cell must advance one
  step at a time (generation, decoders); :func:`rnnlab.layers.stacked` runs whole
  sequences layer by layer and admits bidirectional layers.

  Params and carry are tuples with one entry per layer (a :class:`StackedCarry`).
  """
  cells = tuple(cells)
  if not cells or not all(isinstance(c, Cell) for c in cells):
    raise ValueError(f"stack: expected a non-empty sequence of Cells; got {cells!r}")
  name = "stack(" + ",".join(c.name for c in cells) + ")"

  @init_signature(name)
  def init(key: Array, input_size: int, *, dtype: Any = jnp.float32) -> tuple:
    params = []
    size = input_size
    for l, (cell, k) in enumerate(zip(cells, jax.random.split(key, len(cells)), strict=True)):
      p = cell.init(k, size, dtype=dtype)
      out = output_size(cell, p, size, dtype)
      if residual and l > 0 and out != size:
        raise ValueError(
          f"stack: residual=True needs layer {l} ({cell.name}) to keep the width; "
          f"its input has {size} features and its output {out}"
        )
      params.append(p)
      size = out
    return tuple(params)

  def initial_carry(params: tuple, batch_shape: int | Sequence[int] = ()) -> StackedCarry:
    return StackedCarry(
      tuple(c.initial_carry(p, batch_shape) for c, p in zip(cells, params, strict=True))
    )

  def step(params: tuple, carry: StackedCarry, x: Array) -> tuple[StackedCarry, Array]:
    new = []
    for l, (cell, p, c) in enumerate(zip(cells, params, carry.layers, strict=True)):
      c, y = cell.step(p, c, x)
      x = y + x if residual and l > 0 else y
      new.append(c)
    return StackedCarry(tuple(new)), x

  prepare = None
  if any(c.prepare is not None for c in cells):

    def prepare(params: tuple) -> tuple:
      return tuple(
        p if c.prepare is None else c.prepare(p) for c, p in zip(cells, params, strict=True)
      )

  return Cell(init, initial_carry, step, name, prepare=prepare)


def output_size(cell: Cell, params: PyTree, input_size: int, dtype: Any = jnp.float32) -> int:
  """The last dimension of ``cell``'s output, found by tracing one step (no compute)."""
  carry = cell.initial_carry(params, ())
  x = jax.ShapeDtypeStruct((input_size,), dtype)
  _, y = jax.eval_shape(cell.step, params, carry, x)
  return int(y.shape[-1])


__all__ = [
  "ACTIVATIONS",
  "Cell",
  "CellParts",
  "DiagonalParams",
  "EXPRNN_ACTIVATIONS",
  "EXPRNN_INITS",
  "ElmanParams",
  "Equations",
  "ExpRNNParams",
  "ExpRNNWeights",
  "GRUParams",
  "LAYER_NORM_EPS",
  "LRUCarry",
  "LRUParams",
  "LRU_READOUTS",
  "LSTMCarry",
  "LSTMParams",
  "LayerNormGRUParams",
  "LayerNormLSTMParams",
  "StackedCarry",
  "cayley_init",
  "check_dtype",
  "diagonal",
  "elman",
  "exprnn",
  "from_equations",
  "gru",
  "he_normal",
  "henaff_init",
  "layer_norm_gru",
  "layer_norm_lstm",
  "lru",
  "lstm",
  "modrelu",
  "output_size",
  "params_check",
  "preactivations",
  "skew",
  "stack",
  "step_from_parts",
]
