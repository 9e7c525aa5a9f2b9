"""Recurrent cells: the vanilla (Elman) RNN, the LSTM and the GRU (plain and
layer-normalised), and a diagonal linear recurrence, as pure functions.

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

  :func:`rnnlab.testing.check_cell` checks the properties every cell must have
  (causality, padding, jit, vmap, gradients, dtypes, parts that agree with the step).
  """

  init: Callable[..., PyTree]
  initial_carry: Callable[..., PyTree]
  step: Callable[..., tuple[PyTree, Array]]
  name: str = "cell"
  parts: CellParts | None = None


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

  return Cell(init, initial_carry, step, name)


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
  "ElmanParams",
  "Equations",
  "GRUParams",
  "LAYER_NORM_EPS",
  "LSTMCarry",
  "LSTMParams",
  "LayerNormGRUParams",
  "LayerNormLSTMParams",
  "StackedCarry",
  "check_dtype",
  "diagonal",
  "elman",
  "from_equations",
  "gru",
  "layer_norm_gru",
  "layer_norm_lstm",
  "lstm",
  "output_size",
  "params_check",
  "preactivations",
  "stack",
  "step_from_parts",
]
