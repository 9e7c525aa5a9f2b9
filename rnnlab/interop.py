"""Exact weight conversion to and from PyTorch, flax (linen, nnx) and Keras; flax modules.

Every converter works on plain arrays (NumPy, JAX, or anything ``np.asarray`` reads,
including CPU ``torch.Tensor``s), so nothing here imports torch, Keras or TensorFlow.
The conventions on each side, and how they map onto rnnlab's (weights ``(in, out)``
applied as ``x @ w``; LSTM gates i, f, g, o with one bias ``b``; GRU gates r, z, n with
``b_ih`` and ``b_hh``, see :mod:`rnnlab.cells`):

* PyTorch ``nn.RNN`` (tanh, relu), ``nn.LSTM``, ``nn.GRU`` and their cells:
  ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh (G*H,)``, gates
  i f g o (LSTM) and r z n (GRU), rnnlab's orders. ``w_ih = weight_ih.T``,
  ``w_hh = weight_hh.T``; Elman and LSTM ``b = bias_ih + bias_hh``; GRU ``b_ih = bias_ih``,
  ``b_hh = bias_hh``. Layers ``_l{k}``, the backward direction ``_l{k}_reverse``.
* flax.linen ``SimpleCell``: ``i{kernel, bias}``, ``h{kernel}`` -> ``w_ih, b, w_hh``.
  ``LSTMCell`` and ``OptimizedLSTMCell`` (one tree): ``i{i,f,g,o}{kernel}``,
  ``h{i,f,g,o}{kernel, bias}`` -> kernels concatenated, ``b = [h*.bias]``. ``GRUCell``:
  ``i{r,z,n}{kernel, bias}``, ``h{r,z}{kernel}``, ``hn{kernel, bias}`` -> ``b_ih =
  [i*.bias]``, ``b_hh = [0, 0, hn.bias]``. The LSTM carry is ``(c, h)`` there.
* flax.nnx cells (:func:`from_nnx`, :func:`to_nnx`, :func:`load_nnx`): ``SimpleCell``
  ``dense_i{kernel, bias}``, ``dense_h{kernel}``; ``LSTMCell`` as linen's with ``if_``;
  ``OptimizedLSTMCell`` fused ``dense_i{kernel}``, ``dense_h{kernel, bias}``; ``GRUCell``
  fused ``dense_i{kernel, bias}``, ``dense_h{kernel}`` and no hidden bias at all.
* Keras ``SimpleRNN``, ``LSTM``, ``GRU``: ``kernel (I, G*H)``, ``recurrent_kernel (H,
  G*H)``, ``bias`` (already ``(in, out)``). LSTM gates i f c o (rnnlab's order); GRU
  gates z r h, reordered to r z n; ``bias (2, 3H)`` (``reset_after=True``: rows
  ``b_ih``, ``b_hh``) or ``(3H,)`` (``reset_after=False``: ``b_ih``, with ``b_hh = 0``).

Where an exact inverse does not exist:

* rnnlab's LSTM (and Elman cell) keeps one bias, the only thing the function depends
  on. Export to PyTorch writes it all into ``bias_ih`` and zeros into ``bias_hh``, so
  rnnlab -> torch -> rnnlab is bitwise exact, while torch -> rnnlab -> torch keeps the
  sum ``bias_ih + bias_hh`` (the same function) but not the split.
* flax.linen's ``GRUCell`` has no ``b_hr``, ``b_hz``: export folds them into the input
  biases (``ir.bias = b_ir + b_hr``, ``iz.bias = b_iz + b_hz``), the same function since
  r and z see only the sum. flax -> rnnlab -> flax is exact; rnnlab -> flax -> rnnlab
  is exact when ``b_hr = b_hz = 0`` and otherwise keeps the sums. ``b_hn`` sits inside
  the reset and maps one to one (``hn.bias``).
* flax.nnx's ``GRUCell`` has no ``b_hn``: import sets ``b_hh = 0``; export folds ``b_hr``,
  ``b_hz`` into ``dense_i.bias`` and refuses a non-zero ``b_hn``, which it cannot hold.
* Keras's ``GRU(reset_after=False)`` keeps one bias: export writes ``b_ih + b_hh`` (the
  same function: with the reset before the matmul every bias adds linearly), import
  sets ``b_hh = 0``.
* PyTorch, linen and Keras ``reset_after=True`` GRUs reset after the recurrent matmul.
  Parameters of an rnnlab ``gru(reset_after=False)`` cell carry no mark of that, so
  exporting them to PyTorch or linen gives a different function; only Keras has both.
* ``bias=False`` (PyTorch) and ``use_bias=False`` (Keras) map to zero biases; exporting
  with no bias refuses non-zero biases rather than dropping them. Gradients are another
  matter: ``to_torch(grads, bias=False, grads=True)`` drops the zero biases' gradients
  (the module has no such parameters) and writes ``dL/db`` to both ``bias_ih`` and
  ``bias_hh`` with biases.
* PyTorch's ``proj_size > 0`` LSTM (``weight_hr_l{k}``) has no rnnlab cell and is refused.

The modules :class:`RNN` (flax.linen) and :class:`NNXRNN` (flax.nnx) wrap any rnnlab
:class:`~rnnlab.cells.Cell` or :class:`~rnnlab.layers.Layer` and the unroll, so rnnlab
cells drop into flax models and train with flax's tooling; their params are the cell's
own NamedTuples, so the converters above apply to them unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rnnlab import cells as cells_lib
from rnnlab import layers as layers_lib
from rnnlab.cells import Cell, ElmanParams, GRUParams, LSTMCarry, LSTMParams
from rnnlab.layers import BidirectionalCarry, BidirectionalParams, Layer
from rnnlab.scan import unroll

Array = jax.Array
PyTree = Any

# ---- shared helpers ---------------------------------------------------------------------------

_GATES = {ElmanParams: 1, LSTMParams: 4, GRUParams: 3}


def _numpy(value: Any, where: str) -> np.ndarray:
  """A NumPy copy of an array-like; CPU torch tensors are read without importing torch."""
  if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch.Tensor
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":  # NumPy has no bfloat16: widen exactly.
      value = value.float()
    value = value.numpy()
  try:
    out = np.asarray(value)
  except Exception as e:
    raise ValueError(f"{where}: cannot read {type(value).__name__} as an array ({e})") from None
  if not (np.issubdtype(out.dtype, np.floating) or out.dtype.name == "bfloat16"):
    raise ValueError(f"{where}: expected a floating array; got dtype {out.dtype}")
  return out


def _kind_text(kind: Any) -> str:
  """``kind='lstm'``, or what a kind that is no string is, in a few words (never an array's
  repr, which spans lines)."""
  if kind is None or isinstance(kind, (str, int, float)):
    return f"kind={kind!r}"
  shape = getattr(kind, "shape", None)
  shape_text = "" if shape is None else f" of shape {tuple(shape)}"
  return f"kind has type {type(kind).__name__}{shape_text}"


def _jax(value: np.ndarray, dtype: Any) -> Array:
  return jnp.asarray(value) if dtype is None else jnp.asarray(value, dtype)


Shape = tuple[int | str, ...]  # a str is a size nothing else fixes yet ("I", "4*H")


def _fits(shape: tuple[int, ...], expected: Shape) -> bool:
  """Whether ``shape`` is ``expected``; a str entry stands for any size."""
  return len(shape) == len(expected) and all(
    isinstance(e, str) or e == s for s, e in zip(shape, expected, strict=True)
  )


def _shape_text(shape: Shape) -> str:
  sizes = [str(s) for s in shape]
  return f"({sizes[0]},)" if len(sizes) == 1 else f"({', '.join(sizes)})"


def _shape_error(
  fn: str, where: str, found: tuple[int, ...], expected: Shape, *, layout: str = "", hint: str = ""
) -> ValueError:
  """One line: ``where``, the shape found and the shape expected.

  The sizes ``expected`` leaves open are read from ``found`` where it has as many
  axes, from its transpose where that fits (and the line says so). ``layout`` names
  the peer's convention (``"nn.GRU's (3*H, I) with H = 4"``); ``hint`` ends the line.
  """
  found = tuple(int(s) for s in found)
  partly_known = any(isinstance(e, int) for e in expected)
  transposed = len(found) == 2 and partly_known and _fits(found[::-1], expected)
  if transposed:
    expected = found[::-1]
  elif partly_known and len(found) == len(expected):
    expected = tuple(f if isinstance(e, str) else e for f, e in zip(found, expected, strict=True))
  if layout and not any(isinstance(e, int) for e in expected):
    message = f"{fn}: {where} has shape {found}; expected {layout}"  # it writes the shape
  else:
    message = f"{fn}: {where} has shape {found}; expected {_shape_text(expected)}"
    message += f", {layout}" if layout else ""
  if transposed:
    message += " (is it transposed?)"
  return ValueError(message + hint)


def _check_shape(fn: str, where: str, value: np.ndarray, expected: Shape, layout: str = "") -> None:
  if not _fits(tuple(value.shape), expected):
    raise _shape_error(fn, where, value.shape, expected, layout=layout)


def _params_info(fn: str, params: Any, where: str = "params") -> tuple[type, int, int]:
  """Checks a cell's params and returns ``(type, input_size, hidden_size)``."""
  kind = type(params)
  if kind not in _GATES:
    raise ValueError(
      f"{fn}: {where} is a {kind.__name__}; expected ElmanParams, LSTMParams or GRUParams"
    )
  gates = _GATES[kind]
  w_hh = np.shape(params.w_hh)
  if len(w_hh) != 2 or w_hh[1] != gates * w_hh[0]:
    raise ValueError(
      f"{fn}: {where}.w_hh has shape {w_hh}; expected (H, {gates}*H) for {kind.__name__}"
    )
  hidden = w_hh[0]
  w_ih = np.shape(params.w_ih)
  if len(w_ih) != 2 or w_ih[1] != gates * hidden:
    raise ValueError(f"{fn}: {where}.w_ih has shape {w_ih}; expected (I, {gates * hidden})")
  for field in kind._fields[2:]:
    _check_shape(fn, f"{where}.{field}", np.asarray(getattr(params, field)), (gates * hidden,))
  return kind, w_ih[0], hidden


def _bias_sum(params: Any) -> np.ndarray:
  """The one bias that every bias of ``params`` adds up to (Elman and LSTM have one)."""
  if isinstance(params, GRUParams):
    return np.asarray(params.b_ih) + np.asarray(params.b_hh)
  return np.asarray(params.b)


def _refuse_bias(fn: str, where: str, params: Any, remedy: str = "export with biases") -> None:
  for field in type(params)._fields[2:]:
    value = np.asarray(getattr(params, field))
    if np.any(value != 0):
      raise ValueError(
        f"{fn}: {where}.{field} is not zero (max |b| = {float(np.abs(value).max()):.3g}); "
        f"a layer without biases cannot hold it ({remedy})"
      )


# ---- PyTorch ----------------------------------------------------------------------------------

TORCH_KINDS = ("rnn_tanh", "rnn_relu", "lstm", "gru")
_TORCH_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_TORCH_NAMES = {"rnn_tanh": "nn.RNN", "rnn_relu": "nn.RNN", "lstm": "nn.LSTM", "gru": "nn.GRU"}


def _check_torch_kind(fn: str, kind: Any) -> str:
  if not isinstance(kind, str) or kind not in _TORCH_GATES:
    raise ValueError(f"{fn}: {_kind_text(kind)}; expected one of {TORCH_KINDS}")
  return kind


def torch_cell(kind: str, hidden_size: int) -> Cell:
  """The rnnlab cell that computes what PyTorch's cell of ``kind`` computes.

  ``"rnn_tanh"`` / ``"rnn_relu"``: :func:`rnnlab.elman` with that activation
  (``nn.RNN(nonlinearity=...)``); ``"lstm"``: :func:`rnnlab.lstm`; ``"gru"``:
  :func:`rnnlab.gru` with ``reset_after=True``.
  """
  kind = _check_torch_kind("torch_cell", kind)
  if kind == "lstm":
    return cells_lib.lstm(hidden_size)
  if kind == "gru":
    return cells_lib.gru(hidden_size, reset_after=True)
  return cells_lib.elman(hidden_size, "tanh" if kind == "rnn_tanh" else "relu")


def torch_layer(
  kind: str, hidden_size: int, *, num_layers: int = 1, bidirectional: bool = False
) -> Layer:
  """The rnnlab layer equal to ``nn.RNN/LSTM/GRU(..., batch_first=True)``.

  (For ``batch_first=False`` inputs, move the time axis: ``jnp.moveaxis(xs, 0, -2)``.)

  ``rnnlab.stacked([layer] * num_layers)`` with ``layer`` the :func:`torch_cell`, or
  :func:`rnnlab.bidirectional` of it (outputs concatenated forward then backward, as
  PyTorch). Its params are what :func:`from_torch` returns for a module's state dict:
  a tuple with one entry per layer, each the cell's params or a
  :class:`~rnnlab.layers.BidirectionalParams`.
  """
  if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
    raise ValueError(f"torch_layer: num_layers must be a positive int; got {num_layers!r}")
  cell = torch_cell(kind, hidden_size)
  layer = layers_lib.bidirectional(cell) if bidirectional else layers_lib.rnn(cell)
  return layers_lib.stacked([layer] * num_layers)


def _torch_cell_params(
  read: Any, kind: str, suffix: str, input_size: int, hidden_size: int, bias: bool, dtype: Any
) -> Any:
  """One direction of one layer: reads ``weight_ih{suffix}`` etc. and transposes."""
  rows = _TORCH_GATES[kind] * hidden_size
  w_ih = read(f"weight_ih{suffix}", (rows, input_size))
  w_hh = read(f"weight_hh{suffix}", (rows, hidden_size))
  if bias:
    b_ih, b_hh = read(f"bias_ih{suffix}", (rows,)), read(f"bias_hh{suffix}", (rows,))
  else:
    b_ih = b_hh = np.zeros((rows,), w_hh.dtype)
  w_ih, w_hh = _jax(w_ih.T, dtype), _jax(w_hh.T, dtype)
  if kind == "gru":
    return GRUParams(w_ih, w_hh, _jax(b_ih, dtype), _jax(b_hh, dtype))
  # Add in the target dtype's arithmetic, as the sum happens on the torch side.
  b = _jax(b_ih, dtype) + _jax(b_hh, dtype)
  return (LSTMParams if kind == "lstm" else ElmanParams)(w_ih, w_hh, b)


def _gate_rows(gates: int) -> str:
  return f"{gates}*H" if gates > 1 else "H"


def _hidden_size(
  fn: str,
  where: str,
  shape: tuple[int, ...],
  kind: str,
  gates_of: Mapping[str, int],
  names: Mapping[str, str],
  *,
  gates_first: bool,
) -> int:
  """H from a recurrent weight, or one line on what is wrong with it.

  The weight is ``(G*H, H)`` (``gates_first``: PyTorch) or ``(H, G*H)`` (Keras, flax.nnx)
  for the ``G = gates_of[kind]`` gates of ``kind``. The kind is questioned only when the
  shape is another kind's.
  """
  gates = gates_of[kind]

  def sizes(g):
    return (_gate_rows(g), "H") if gates_first else ("H", _gate_rows(g))

  def layout(g, hidden=None):
    return _shape_text(sizes(g)) + ("" if hidden is None else f" with H = {hidden}")

  if len(shape) != 2:
    raise _shape_error(fn, where, shape, sizes(gates), layout=f"{names[kind]}'s {layout(gates)}")
  gated, square = shape if gates_first else shape[::-1]
  if gated == gates * square:
    return square
  # H: a transposed matrix's, else the size of the axis that should be H.
  hidden = gated if square == gates * gated else square
  expected = (gates * hidden, hidden) if gates_first else (hidden, gates * hidden)
  hint = ""
  others = [k for k, g in gates_of.items() if g != gates and gated == g * square]
  if others:
    kinds = " or ".join(f"kind={k!r}" for k in others)
    hint = (
      f"; {tuple(shape)} is {names[others[0]]}'s {layout(gates_of[others[0]], square)}: "
      f"is kind={kind!r} right ({kinds}?)"
    )
  layout_text = f"{names[kind]}'s {layout(gates, hidden)}"
  raise _shape_error(fn, where, shape, expected, layout=layout_text, hint=hint)


def from_torch(
  state_dict: Mapping[str, Any], kind: str, *, prefix: str = "", dtype: Any = None
) -> PyTree:
  """rnnlab params from a PyTorch recurrent module's or cell's ``state_dict()``.

  A cell's dict (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``: ``nn.RNNCell``,
  ``nn.LSTMCell``, ``nn.GRUCell``) gives the cell's params, for :func:`torch_cell`. A
  module's dict (``weight_ih_l{k}{_reverse}``, ...: ``nn.RNN``, ``nn.LSTM``,
  ``nn.GRU``) gives a tuple with one entry per layer (``BidirectionalParams(forward,
  backward)`` for a bidirectional module), for :func:`torch_layer`. The number of
  layers, the direction, the sizes and ``bias`` are read from the keys and shapes.

  Weights are transposed to ``(in, out)``; gate orders agree. Elman and LSTM biases
  become ``b = bias_ih + bias_hh``; GRU biases map one to one; ``bias=False`` gives
  zero biases.

  Args:
    state_dict: the module's ``state_dict()`` or any mapping of those keys to arrays
      (NumPy arrays; CPU tensors are read without importing torch).
    kind: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"`` (PyTorch's mode:
      the nonlinearity of ``nn.RNN`` is not in its state dict).
    prefix: read only keys starting with it (a submodule of a larger model, e.g.
      ``"encoder.rnn."``); the rest are ignored.
    dtype: the params' dtype; default the arrays' own (as JAX holds it).

  Returns:
    The cell's params, or a tuple of per-layer params.

  Raises:
    ValueError: for a missing or unexpected key, a wrong shape (naming the key and
      the shape expected), or a ``proj_size > 0`` LSTM.
  """
  fn = "from_torch"
  kind = _check_torch_kind(fn, kind)
  if not isinstance(state_dict, Mapping):
    raise ValueError(f"{fn}: expected a mapping of keys to arrays; got {type(state_dict).__name__}")
  entries = {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}
  if not entries:
    raise ValueError(f"{fn}: no keys start with prefix={prefix!r}; got {sorted(state_dict)}")
  if any(k.startswith("weight_hr_l") for k in entries):
    raise ValueError(
      f"{fn}: key '{prefix}weight_hr_l0' means an nn.LSTM with proj_size > 0; rnnlab's "
      "LSTM has no projection (proj_size=0 is supported)"
    )
  used = set()
  gates, name = _TORCH_GATES[kind], _TORCH_NAMES[kind]
  rows_text = _gate_rows(gates)
  sizes = {}  # "H" once known

  def layout(key):
    shape = (rows_text,) if key.startswith("bias") else (rows_text, "H" if "_hh" in key else "I")
    hidden = f" with H = {sizes['H']}" if "H" in sizes else ""
    return f"{name}'s {_shape_text(shape)}{hidden}"

  def read(key, shape):
    if key not in entries:
      nested = sorted(k[: -len(key)] for k in state_dict if k.endswith("." + prefix + key))
      hint = f" (pass prefix={nested[0] + prefix!r}?)" if nested else ""
      raise ValueError(
        f"{fn}: missing key '{prefix}{key}' (expected shape {_shape_text(shape)}) for a "
        f"{kind} state dict{hint}; found {sorted(prefix + k for k in entries)}"
      )
    value = _numpy(entries[key], f"{fn}: key '{prefix}{key}'")
    _check_shape(fn, f"key '{prefix}{key}'", value, shape, layout(key))
    used.add(key)
    return value

  is_cell = "weight_hh" in entries or "weight_ih" in entries
  suffix = "" if is_cell else "_l0"
  w_hh = read(f"weight_hh{suffix}", (rows_text, "H"))
  where = f"key '{prefix}weight_hh{suffix}'"
  hidden = _hidden_size(fn, where, w_hh.shape, kind, _TORCH_GATES, _TORCH_NAMES, gates_first=True)
  sizes["H"] = hidden
  input_size = read(f"weight_ih{suffix}", (gates * hidden, "I")).shape[1]
  if is_cell:
    bias = "bias_ih" in entries or "bias_hh" in entries
    params = _torch_cell_params(read, kind, "", input_size, hidden, bias, dtype)
  else:
    bias = "bias_ih_l0" in entries or "bias_hh_l0" in entries
    num_layers = 1
    while f"weight_ih_l{num_layers}" in entries or f"weight_hh_l{num_layers}" in entries:
      num_layers += 1
    bidirectional = any(k.endswith("_reverse") for k in entries)
    suffixes = ("", "_reverse") if bidirectional else ("",)
    params = []
    for index in range(num_layers):
      directions = [
        _torch_cell_params(read, kind, f"_l{index}{s}", input_size, hidden, bias, dtype)
        for s in suffixes
      ]
      params.append(BidirectionalParams(*directions) if bidirectional else directions[0])
      input_size = hidden * len(suffixes)
    params = tuple(params)
  unexpected = sorted(set(entries) - used)
  if unexpected:
    raise ValueError(
      f"{fn}: unexpected key '{prefix}{unexpected[0]}' in a {kind} state dict "
      f"({'cell' if is_cell else 'module'} of hidden size {hidden}, bias={bias})"
    )
  return params


def _torch_layers(fn: str, params: Any) -> tuple[list[list[Any]], bool]:
  """Per-layer lists of directions from a module's params; ``(layers, is_cell)``."""
  if type(params) in _GATES:
    return [[params]], True
  if isinstance(params, BidirectionalParams):
    params = (params,)
  if not isinstance(params, (tuple, list)) or not params:
    raise ValueError(
      f"{fn}: expected a cell's params, a BidirectionalParams or a tuple of per-layer "
      f"params (what from_torch returns); got {type(params).__name__}"
    )
  out = []
  for index, layer in enumerate(params):
    if isinstance(layer, BidirectionalParams):
      out.append([layer.forward, layer.backward])
    elif type(layer) in _GATES:
      out.append([layer])
    else:
      raise ValueError(
        f"{fn}: params[{index}] is a {type(layer).__name__}; expected a cell's params or "
        "a BidirectionalParams"
      )
  if len({len(l) for l in out}) != 1:
    raise ValueError(f"{fn}: every layer must have the same number of directions for PyTorch")
  return out, False


def to_torch(
  params: PyTree,
  *,
  bias: bool = True,
  prefix: str = "",
  as_tensors: bool = False,
  grads: bool = False,
) -> dict[str, Any]:
  """A PyTorch ``state_dict`` from rnnlab params (the inverse of :func:`from_torch`).

  A cell's params give a cell's keys (``weight_ih``, ...); a tuple of per-layer params
  (or one :class:`~rnnlab.layers.BidirectionalParams`) gives a module's keys
  (``weight_ih_l{k}{_reverse}``, ...), in PyTorch's order. Pass ``(params,)`` to
  export one cell's params as a one-layer ``nn.RNN/LSTM/GRU``. The kind follows the
  params' type; ``nn.RNN``'s nonlinearity is the caller's to set.

  Elman and LSTM params have one bias ``b``: it is written to ``bias_ih`` and zeros to
  ``bias_hh`` (only the sum matters), so torch -> rnnlab -> torch keeps the sum, not
  the split. GRU params must be those of a ``reset_after=True`` cell.

  Gradients (``grads=True``, a tree like ``params`` from ``jax.grad``) export as
  PyTorch's ``.grad`` of each parameter: ``b = bias_ih + bias_hh``, so ``dL/db`` is
  written to both; with ``bias=False`` the bias gradients are dropped (the module has
  no bias parameters; in rnnlab they are zeros that still get a gradient).

  Args:
    params: a cell's params or per-layer params, as :func:`from_torch` returns, or
      their gradients (``grads=True``).
    bias: False for a module built with ``bias=False``: no bias keys are written, and
      non-zero biases are refused (bias gradients are dropped with ``grads=True``).
    prefix: prepended to every key.
    as_tensors: return ``torch.Tensor`` objects (imports torch) instead of NumPy arrays.
    grads: ``params`` holds gradients with respect to params, to compare with (or
      load into) a PyTorch module's ``param.grad``.

  Returns:
    A dict of the state dict's keys to arrays, ready for ``load_state_dict``.
  """
  fn = "to_torch"
  layers, is_cell = _torch_layers(fn, params)
  out: dict[str, Any] = {}
  kind0, hidden0 = None, None
  for index, directions in enumerate(layers):
    for direction, cell_params in enumerate(directions):
      suffix = "" if is_cell else f"_l{index}" + ("_reverse" if direction else "")
      where = "params" if is_cell else f"params[{index}]" + (".backward" if direction else "")
      kind, _, hidden = _params_info(fn, cell_params, where)
      if kind0 is not None and (kind, hidden) != (kind0, hidden0):
        raise ValueError(
          f"{fn}: {where} is a {kind.__name__} of hidden size {hidden}; PyTorch needs every "
          f"layer alike ({kind0.__name__}, hidden size {hidden0})"
        )
      kind0, hidden0 = kind, hidden
      out[f"weight_ih{suffix}"] = np.array(cell_params.w_ih).T.copy()
      out[f"weight_hh{suffix}"] = np.array(cell_params.w_hh).T.copy()
      if not bias:
        if not grads:
          _refuse_bias(fn, where, cell_params, "export with biases; grads=True for gradients")
        continue
      if isinstance(cell_params, GRUParams):
        out[f"bias_ih{suffix}"] = np.array(cell_params.b_ih)
        out[f"bias_hh{suffix}"] = np.array(cell_params.b_hh)
      else:
        out[f"bias_ih{suffix}"] = np.array(cell_params.b)
        # The sum's gradient reaches both addends; a value goes all into bias_ih.
        b_hh = np.array(cell_params.b) if grads else np.zeros_like(out[f"bias_ih{suffix}"])
        out[f"bias_hh{suffix}"] = b_hh
  if as_tensors:
    import torch  # the optional extra, only on request

    def tensor(a):
      if a.dtype.name == "bfloat16":
        return torch.from_numpy(a.astype(np.float32)).to(torch.bfloat16)
      return torch.from_numpy(a)

    return {prefix + k: tensor(v) for k, v in out.items()}
  return {prefix + k: v for k, v in out.items()}


def _is_array(value: Any) -> bool:
  """NumPy and JAX arrays, torch tensors, anything NumPy reads through ``__array__``."""
  return isinstance(value, (np.ndarray, jax.Array)) or hasattr(value, "__array__")


def carry_from_torch(
  hx: Any, kind: Any = None, *, num_layers: int | None = None, bidirectional: bool = False
) -> PyTree:
  """An rnnlab carry from PyTorch's ``hx`` (an initial state to pass to rnnlab).

  The call forms (NumPy arrays, JAX arrays or CPU torch tensors)::

    carry_from_torch(h_0, num_layers=L)            # nn.RNN, nn.GRU: h_0 (L * D, *batch, H)
    carry_from_torch((h_0, c_0), num_layers=L)     # nn.LSTM: hx as PyTorch takes it
    carry_from_torch(h_0, c_0, num_layers=L)       # the same, as two arguments
    carry_from_torch(h)                            # nn.RNNCell, nn.GRUCell: h (*batch, H)
    carry_from_torch((h, c))                       # nn.LSTMCell (or h, c)
    carry_from_torch(hx, "lstm", num_layers=L)     # any of these with the kind checked

  Args:
    hx: ``h_0`` (``h`` for a cell), or an LSTM's pair ``(h_0, c_0)``.
    kind: as :func:`from_torch`, checked against ``hx`` (an LSTM's is a pair, every
      other kind's one array); None reads it from ``hx``, the only thing a carry
      depends on. An array here is ``c_0``: ``carry_from_torch(h_0, c_0)`` is
      ``carry_from_torch((h_0, c_0), "lstm")``.
    num_layers: the module's; None for a cell's ``hx``.
    bidirectional: whether the module is (D = 2).

  Returns:
    The carry of :func:`torch_cell` (cell) or :func:`torch_layer` (module): JAX arrays
    (JAX arrays given are kept, so it can sit inside ``jit``).

  Raises:
    ValueError: one line naming what does not fit (a pair for a kind other than
      ``"lstm"``, ``c`` and ``h`` of different shapes, a leading axis other than
      ``num_layers * D``).
  """
  fn = "carry_from_torch"
  if kind is not None and not isinstance(kind, str):
    if not _is_array(kind):
      raise ValueError(
        f"{fn}: {_kind_text(kind)}; expected one of {TORCH_KINDS}, None, or c_0 (an array)"
      )
    if isinstance(hx, (tuple, list)):
      raise ValueError(f"{fn}: c_0 is given twice: hx is already a pair; pass hx or h_0, c_0")
    hx, kind = (hx, kind), "lstm"
  pair = isinstance(hx, (tuple, list))
  if kind is not None:
    kind = _check_torch_kind(fn, kind)
    if kind == "lstm" and not pair:
      raise ValueError(f"{fn}: an LSTM's hx is the pair (h, c); got {type(hx).__name__}")
    if kind != "lstm" and pair:
      raise ValueError(
        f"{fn}: a {kind}'s hx is one array h; got a {type(hx).__name__} of {len(hx)} "
        "(an LSTM's (h, c)? pass kind='lstm')"
      )
  if pair and len(hx) != 2:
    raise ValueError(f"{fn}: an LSTM's hx is the pair (h, c); got {len(hx)} items")

  def array(value, name):
    return value if isinstance(value, jax.Array) else jnp.asarray(_numpy(value, f"{fn}: {name}"))

  h, c = (array(hx[0], "h"), array(hx[1], "c")) if pair else (array(hx, "h"), None)
  if c is not None and c.shape != h.shape:
    raise ValueError(f"{fn}: c has shape {tuple(c.shape)}; expected h's {tuple(h.shape)}")
  if h.ndim < 1:
    raise ValueError(f"{fn}: h has shape {tuple(h.shape)}; expected (*batch, H)")

  def make(index):
    if c is None:
      return h if index is None else h[index]
    return LSTMCarry(h=h, c=c) if index is None else LSTMCarry(h=h[index], c=c[index])

  if num_layers is None:
    return make(None)
  if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
    raise ValueError(f"{fn}: num_layers={num_layers!r}; expected a positive int (None for a cell)")
  directions = 2 if bidirectional else 1
  if h.ndim < 2 or h.shape[0] != num_layers * directions:
    raise ValueError(
      f"{fn}: h has shape {tuple(h.shape)}; expected (num_layers * D = "
      f"{num_layers * directions}, *batch, H)"
    )
  if bidirectional:
    return tuple(BidirectionalCarry(make(2 * l), make(2 * l + 1)) for l in range(num_layers))
  return tuple(make(l) for l in range(num_layers))


def carry_to_torch(carry: PyTree) -> Array | tuple[Array, Array]:
  """PyTorch's ``h_n`` (or ``(h_n, c_n)``) from the carry of a :func:`torch_layer`.

  A module's carry (a tuple of per-layer carries) stacks to ``(num_layers * D, *batch,
  H)``, layer-major with the forward direction first, as PyTorch; a cell's carry
  comes back as ``h`` or ``(h, c)``. JAX arrays, so it can sit inside ``jit``/``grad``.
  """

  def pair(c):
    return (c.h, c.c) if isinstance(c, LSTMCarry) else (c, None)

  if isinstance(carry, BidirectionalCarry):
    carry = (carry,)
  if not isinstance(carry, tuple) or isinstance(carry, LSTMCarry):
    h, c = pair(carry)
    return h if c is None else (h, c)
  flat = []
  for layer in carry:
    flat.extend(
      [layer.forward, layer.backward] if isinstance(layer, BidirectionalCarry) else [layer]
    )
  pairs = [pair(c) for c in flat]
  h = jnp.stack([p[0] for p in pairs])
  if pairs[0][1] is None:
    return h
  return h, jnp.stack([p[1] for p in pairs])


# ---- flax.linen -------------------------------------------------------------------------------

FLAX_KINDS = ("simple", "lstm", "optimized_lstm", "gru")
_FLAX_KEYS = {
  "simple": {"i": ("kernel", "bias"), "h": ("kernel",)},
  "lstm": {
    **{f"i{g}": ("kernel",) for g in "ifgo"},
    **{f"h{g}": ("kernel", "bias") for g in "ifgo"},
  },
  "gru": {
    **{f"i{g}": ("kernel", "bias") for g in "rzn"},
    "hr": ("kernel",),
    "hz": ("kernel",),
    "hn": ("kernel", "bias"),
  },
}


def flax_cell(kind: str, hidden_size: int, *, activation: Any = "tanh") -> Cell:
  """The rnnlab cell that computes what flax's (linen or nnx) cell of ``kind`` computes.

  ``"simple"`` (``SimpleCell`` with ``residual=False``): :func:`rnnlab.elman` with
  ``activation`` (flax's ``activation_fn``, default tanh); ``"lstm"`` and
  ``"optimized_lstm"``: :func:`rnnlab.lstm`; ``"gru"``: :func:`rnnlab.gru` with
  ``reset_after=True``. The gated cells assume flax's default sigmoid and tanh.
  """
  if not isinstance(kind, str) or kind not in FLAX_KINDS:
    raise ValueError(f"flax_cell: {_kind_text(kind)}; expected one of {FLAX_KINDS}")
  if kind == "simple":
    return cells_lib.elman(hidden_size, activation)
  if kind == "gru":
    return cells_lib.gru(hidden_size, reset_after=True)
  return cells_lib.lstm(hidden_size)


def _flax_cell_tree(fn: str, params: Any) -> Mapping:
  """The cell's own param dict out of ``variables``, ``{'params': ...}`` or nn.RNN's."""
  if not isinstance(params, Mapping):
    raise ValueError(f"{fn}: expected flax params (a dict); got {type(params).__name__}")
  if "params" in params:
    params = params["params"]
  if set(params) == {"cell"}:
    params = params["cell"]
  return params


def _flax_kind(fn: str, tree: Mapping) -> str:
  keys = set(tree)
  for kind, expected in _FLAX_KEYS.items():
    if keys == set(expected):
      return kind
  # Name the closest layout and what it lacks or has in excess.
  kind = max(_FLAX_KEYS, key=lambda k: len(keys & set(_FLAX_KEYS[k])))
  missing = sorted(set(_FLAX_KEYS[kind]) - keys)
  extra = sorted(keys - set(_FLAX_KEYS[kind]))
  raise ValueError(
    f"{fn}: the keys {sorted(keys)} match no flax.linen cell; closest is {kind} "
    f"(missing {missing}, unexpected {extra})"
  )


def from_flax(params: Mapping, *, dtype: Any = None) -> ElmanParams | LSTMParams | GRUParams:
  """rnnlab params from a flax.linen ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``
  or ``GRUCell``'s params (the cell is recognised by its keys).

  ``SimpleCell``: ``w_ih = i.kernel``, ``w_hh = h.kernel``, ``b = i.bias``. LSTM:
  kernels concatenated in the order i, f, g, o; ``b`` from the hidden Denses' biases
  (flax's input Denses have none). ``GRUCell``: kernels in the order r, z, n, ``b_ih =
  [ir, iz, in].bias`` and ``b_hh = [0, 0, hn.bias]`` (flax has no ``b_hr``, ``b_hz``).
  Carries differ too: see :func:`carry_from_flax`.

  Args:
    params: the cell's params; ``{'params': ...}`` variables and an ``nn.RNN``'s
      ``{'params': {'cell': ...}}`` are unwrapped.
    dtype: the params' dtype; default the arrays' own.

  Raises:
    ValueError: for keys of no known cell, or a missing or wrongly shaped leaf
      (naming it and the shape expected).
  """
  fn = "from_flax"
  tree = _flax_cell_tree(fn, params)
  kind = _flax_kind(fn, tree)

  def leaf(name, key):
    node = tree[name]
    if not isinstance(node, Mapping) or key not in node:
      raise ValueError(f"{fn}: missing params['{name}']['{key}'] of a flax {kind} cell")
    return _numpy(node[key], f"{fn}: params['{name}']['{key}']")

  hidden_name = {"simple": "h", "lstm": "hi", "gru": "hn"}[kind]
  hidden_kernel = leaf(hidden_name, "kernel")
  _check_shape(fn, f"params['{hidden_name}']['kernel']", hidden_kernel, ("H", "H"))
  hidden = hidden_kernel.shape[1]
  input_name = {"simple": "i", "lstm": "ii", "gru": "ir"}[kind]
  input_kernel = leaf(input_name, "kernel")
  layout = f"flax's (in, out) = (I, H) with H = {hidden}"
  _check_shape(fn, f"params['{input_name}']['kernel']", input_kernel, ("I", hidden), layout)
  input_size = input_kernel.shape[0]

  def read(name, key):
    value = leaf(name, key)
    size = input_size if name.startswith("i") else hidden
    where = f"params['{name}']['{key}']"
    if key == "kernel":
      _check_shape(fn, where, value, (size, hidden), "flax's (in, out)")
    else:
      _check_shape(fn, where, value, (hidden,))
    return _jax(value, dtype)

  if kind == "simple":
    return ElmanParams(read("i", "kernel"), read("h", "kernel"), read("i", "bias"))
  if kind == "lstm":
    return LSTMParams(
      jnp.concatenate([read(f"i{g}", "kernel") for g in "ifgo"], axis=1),
      jnp.concatenate([read(f"h{g}", "kernel") for g in "ifgo"], axis=1),
      jnp.concatenate([read(f"h{g}", "bias") for g in "ifgo"]),
    )
  b_hn = read("hn", "bias")
  zeros = jnp.zeros_like(b_hn)
  return GRUParams(
    jnp.concatenate([read(f"i{g}", "kernel") for g in "rzn"], axis=1),
    jnp.concatenate([read(f"h{g}", "kernel") for g in "rzn"], axis=1),
    jnp.concatenate([read(f"i{g}", "bias") for g in "rzn"]),
    jnp.concatenate([zeros, zeros, b_hn]),
  )


def to_flax(params: ElmanParams | LSTMParams | GRUParams) -> dict[str, dict[str, Array]]:
  """flax.linen cell params from rnnlab params (the inverse of :func:`from_flax`).

  ``ElmanParams`` give a ``SimpleCell``'s tree, ``LSTMParams`` an ``LSTMCell``'s (and
  ``OptimizedLSTMCell``'s: the same tree), ``GRUParams`` a ``GRUCell``'s. Wrap it as
  ``{'params': tree}`` for the cell, ``{'params': {'cell': tree}}`` for ``nn.RNN``.

  GRU: flax has no ``b_hr``, ``b_hz``, so they are added to ``ir.bias`` and
  ``iz.bias`` (the same function; the split is not kept). The params must be those of
  a ``reset_after=True`` GRU, the only kind flax.linen has.
  """
  fn = "to_flax"
  kind, _, hidden = _params_info(fn, params)
  w_ih, w_hh = jnp.asarray(params.w_ih), jnp.asarray(params.w_hh)

  def split(a):
    return jnp.split(jnp.asarray(a), _GATES[kind], axis=-1)

  if kind is ElmanParams:
    return {"i": {"kernel": w_ih, "bias": jnp.asarray(params.b)}, "h": {"kernel": w_hh}}
  if kind is LSTMParams:
    tree = {f"i{g}": {"kernel": k} for g, k in zip("ifgo", split(w_ih), strict=True)}
    for g, k, b in zip("ifgo", split(w_hh), split(params.b), strict=True):
      tree[f"h{g}"] = {"kernel": k, "bias": b}
    return tree
  b_ir, b_iz, b_in = split(params.b_ih)
  b_hr, b_hz, b_hn = split(params.b_hh)
  i_biases = {"r": b_ir + b_hr, "z": b_iz + b_hz, "n": b_in}
  tree = {
    f"i{g}": {"kernel": k, "bias": i_biases[g]} for g, k in zip("rzn", split(w_ih), strict=True)
  }
  k_hr, k_hz, k_hn = split(w_hh)
  tree.update(hr={"kernel": k_hr}, hz={"kernel": k_hz}, hn={"kernel": k_hn, "bias": b_hn})
  return tree


def carry_from_flax(carry: Any) -> Any:
  """flax.linen's LSTM carry is ``(c, h)``; rnnlab's is ``LSTMCarry(h, c)``. Others: ``h``."""
  if isinstance(carry, LSTMCarry):
    return carry
  if isinstance(carry, (tuple, list)):
    if len(carry) != 2:
      raise ValueError(f"carry_from_flax: an LSTM carry is the pair (c, h); got {len(carry)} items")
    c, h = carry
    return LSTMCarry(h=h, c=c)
  return carry


def carry_to_flax(carry: Any) -> Any:
  """The inverse of :func:`carry_from_flax`: ``LSTMCarry(h, c)`` to ``(c, h)``."""
  if isinstance(carry, LSTMCarry):
    return (carry.c, carry.h)
  return carry


# ---- flax.nnx ---------------------------------------------------------------------------------

NNX_KINDS = ("simple", "lstm", "optimized_lstm", "gru")
_NNX_LSTM_KEYS = ("ii", "if_", "ig", "io", "hi", "hf", "hg", "ho")


def _nnx_tree(fn: str, cell: Any) -> tuple[dict, str | None]:
  """The cell's params as a pure dict, and the cell's class name when a Module is given."""
  if isinstance(cell, nnx.Module):
    return nnx.state(cell, nnx.Param).to_pure_dict(), type(cell).__name__
  if isinstance(cell, nnx.State):
    return cell.to_pure_dict(), None
  if isinstance(cell, Mapping):
    return dict(cell), None
  raise ValueError(
    f"{fn}: expected an nnx cell, its nnx.State or a pure dict; got {type(cell).__name__}"
  )


def from_nnx(cell: Any, *, dtype: Any = None) -> ElmanParams | LSTMParams | GRUParams:
  """rnnlab params from a flax.nnx ``SimpleCell``, ``LSTMCell``, ``OptimizedLSTMCell``
  or ``GRUCell`` (the module, ``nnx.state(cell, nnx.Param)`` or its pure dict).

  ``SimpleCell``: ``dense_i{kernel, bias}``, ``dense_h{kernel}``. ``LSTMCell``: as
  linen's, with ``if_`` for the forget gate. ``OptimizedLSTMCell``: fused
  ``dense_i{kernel (I, 4H)}``, ``dense_h{kernel (H, 4H), bias}``, gates i, f, g, o.
  ``GRUCell``: fused ``dense_i{kernel (I, 3H), bias}``, ``dense_h{kernel (H, 3H)}``
  with no bias at all, so ``b_ih = dense_i.bias`` and ``b_hh = 0`` (nnx's GRU has no
  ``b_hn``, the bias inside the reset that PyTorch and linen have).
  """
  fn = "from_nnx"
  tree, _ = _nnx_tree(fn, cell)

  def leaf(name, key, shape=None):
    node = tree.get(name)
    if not isinstance(node, Mapping) or key not in node:
      raise ValueError(f"{fn}: missing params['{name}']['{key}'] (keys: {sorted(tree)})")
    value = _numpy(node[key], f"{fn}: params['{name}']['{key}']")
    if shape is not None:
      _check_shape(fn, f"params['{name}']['{key}']", value, shape)
    return value

  if set(tree) == set(_NNX_LSTM_KEYS):
    linen = {("if" if k == "if_" else k): v for k, v in tree.items()}
    return from_flax(linen, dtype=dtype)
  if set(tree) != {"dense_i", "dense_h"}:
    raise ValueError(
      f"{fn}: the keys {sorted(tree)} match no flax.nnx cell; expected {{dense_i, dense_h}} "
      f"or {sorted(_NNX_LSTM_KEYS)}"
    )
  w_hh = leaf("dense_h", "kernel")
  shape = tuple(w_hh.shape)
  where = "params['dense_h']['kernel']"
  cells = "G = 1 (SimpleCell), 3 (GRUCell) or 4 (OptimizedLSTMCell)"
  ratio = shape[1] // shape[0] if len(shape) == 2 and min(shape) > 0 else 0
  if ratio not in (1, 3, 4) or shape[1] != ratio * shape[0]:
    back = shape[0] // shape[1] if len(shape) == 2 and min(shape) > 0 else 0
    if back in (1, 3, 4) and shape[0] == back * shape[1]:  # fits once transposed
      raise _shape_error(fn, where, shape, (shape[1], shape[0]), layout=f"(H, G*H) with {cells}")
    raise _shape_error(fn, where, shape, ("H", "G*H"), layout=f"(H, G*H) with {cells}")
  hidden, gates = shape[0], ratio
  w_ih = leaf("dense_i", "kernel")
  layout = f"flax's (in, out) = (I, {_gate_rows(gates)}) with H = {hidden}"
  _check_shape(fn, "params['dense_i']['kernel']", w_ih, ("I", gates * hidden), layout)
  biased = "dense_h" if gates == 4 else "dense_i"
  b = leaf(biased, "bias", (gates * hidden,))
  unexpected = sorted(
    f"{n}.{k}" for n in tree for k in tree[n] if (n, k) != (biased, "bias") and k != "kernel"
  )
  if unexpected:
    raise ValueError(f"{fn}: unexpected param {unexpected[0]} for a {gates}-gate nnx cell")
  w_ih, w_hh, b = _jax(w_ih, dtype), _jax(w_hh, dtype), _jax(b, dtype)
  if gates == 1:
    return ElmanParams(w_ih, w_hh, b)
  if gates == 4:
    return LSTMParams(w_ih, w_hh, b)
  return GRUParams(w_ih, w_hh, b, jnp.zeros_like(b))


def to_nnx(params: ElmanParams | LSTMParams | GRUParams, kind: str | None = None) -> dict:
  """A flax.nnx cell's params (a pure dict) from rnnlab params; :func:`load_nnx` puts
  them into a cell.

  Args:
    params: a cell's params.
    kind: the nnx cell: ``"simple"``, ``"lstm"``, ``"optimized_lstm"`` or ``"gru"``;
      default from the params' type (``LSTMParams`` give ``LSTMCell``'s layout).

  Raises:
    ValueError: for GRU params with a non-zero ``b_hn``, which nnx's ``GRUCell``
      cannot hold (:func:`to_flax` for linen's ``GRUCell`` can). ``b_hr``, ``b_hz`` are
      folded into ``dense_i.bias`` (the same function).
  """
  fn = "to_nnx"
  ptype, _, hidden = _params_info(fn, params)
  default = {ElmanParams: "simple", LSTMParams: "lstm", GRUParams: "gru"}[ptype]
  kind = default if kind is None else kind
  allowed = ("lstm", "optimized_lstm") if ptype is LSTMParams else (default,)
  if not isinstance(kind, str) or kind not in allowed:
    raise ValueError(
      f"{fn}: {_kind_text(kind)} does not fit {ptype.__name__}; expected one of {allowed}"
    )
  w_ih, w_hh = jnp.asarray(params.w_ih), jnp.asarray(params.w_hh)
  if kind == "simple":
    return {"dense_i": {"kernel": w_ih, "bias": jnp.asarray(params.b)}, "dense_h": {"kernel": w_hh}}
  if kind == "lstm":
    tree = to_flax(params)
    return {("if_" if k == "if" else k): v for k, v in tree.items()}
  if kind == "optimized_lstm":
    return {"dense_i": {"kernel": w_ih}, "dense_h": {"kernel": w_hh, "bias": jnp.asarray(params.b)}}
  b_hh = jnp.asarray(params.b_hh)
  b_hn = np.asarray(b_hh[2 * hidden :])
  if np.any(b_hn != 0):
    raise ValueError(
      f"{fn}: params.b_hh[2H:] (b_hn, max |b| = {float(np.abs(b_hn).max()):.3g}) is not zero; "
      "nnx's GRUCell has no bias inside the reset (use to_flax for linen's GRUCell)"
    )
  b_ih = jnp.asarray(params.b_ih) + b_hh.at[2 * hidden :].set(0)
  return {"dense_i": {"kernel": w_ih, "bias": b_ih}, "dense_h": {"kernel": w_hh}}


_NNX_CLASS_KINDS = {
  "SimpleCell": "simple",
  "LSTMCell": "lstm",
  "OptimizedLSTMCell": "optimized_lstm",
  "GRUCell": "gru",
}


def load_nnx(cell: nnx.Module, params: ElmanParams | LSTMParams | GRUParams) -> None:
  """Writes rnnlab params into a flax.nnx cell in place (see :func:`to_nnx`)."""
  fn = "load_nnx"
  _, name = _nnx_tree(fn, cell)
  if name not in _NNX_CLASS_KINDS:
    raise ValueError(
      f"{fn}: expected an nnx SimpleCell, LSTMCell, OptimizedLSTMCell or GRUCell; got {name}"
    )
  state = nnx.state(cell, nnx.Param)
  new = to_nnx(params, _NNX_CLASS_KINDS[name])
  old = state.to_pure_dict()
  for path, value in jax.tree_util.tree_leaves_with_path(old):
    target = new
    for entry in path:
      target = target[entry.key]
    if target.shape != value.shape:
      where = "".join(f"['{e.key}']" for e in path)
      raise ValueError(
        f"{fn}: params{where} would get shape {target.shape}; the cell has {value.shape}"
      )
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda n, o: n.astype(o.dtype), new, old))
  nnx.update(cell, state)


# ---- Keras ------------------------------------------------------------------------------------

KERAS_KINDS = ("simple_rnn", "lstm", "gru")
_KERAS_GATES = {"simple_rnn": 1, "lstm": 4, "gru": 3}
_KERAS_NAMES = {"simple_rnn": "a Keras SimpleRNN", "lstm": "a Keras LSTM", "gru": "a Keras GRU"}
_KERAS_WEIGHTS = ("kernel", "recurrent_kernel", "bias")


def _check_keras_kind(fn: str, kind: Any) -> str:
  if not isinstance(kind, str) or kind not in _KERAS_GATES:
    raise ValueError(f"{fn}: {_kind_text(kind)}; expected one of {KERAS_KINDS}")
  return kind


def keras_cell(
  kind: str, hidden_size: int, *, reset_after: bool = True, activation: Any = "tanh"
) -> Cell:
  """The rnnlab cell equal to Keras's ``SimpleRNN``, ``LSTM`` or ``GRU``.

  ``activation`` is the ``SimpleRNN``'s (``"tanh"``, ``"relu"``, ...); the gated layers
  assume Keras's defaults, tanh and a sigmoid ``recurrent_activation``.
  """
  kind = _check_keras_kind("keras_cell", kind)
  if kind == "simple_rnn":
    return cells_lib.elman(hidden_size, activation)
  if kind == "lstm":
    return cells_lib.lstm(hidden_size)
  return cells_lib.gru(hidden_size, reset_after=reset_after)


def _zrh_to_rzn(a: np.ndarray) -> np.ndarray:
  z, r, h = np.split(a, 3, axis=-1)
  return np.concatenate([r, z, h], axis=-1)


def _rzn_to_zrh(a: np.ndarray) -> np.ndarray:
  r, z, n = np.split(a, 3, axis=-1)
  return np.concatenate([z, r, n], axis=-1)


def from_keras(
  weights: Sequence[Any] | Mapping[str, Any],
  kind: str,
  *,
  reset_after: bool = True,
  dtype: Any = None,
) -> ElmanParams | LSTMParams | GRUParams:
  """rnnlab params from a Keras ``SimpleRNN``, ``LSTM`` or ``GRU`` layer's weights.

  Keras stores ``kernel (I, G*H)``, ``recurrent_kernel (H, G*H)`` and ``bias`` already
  ``(in, out)``. LSTM gates i, f, c, o are rnnlab's order. GRU gates z, r, h are
  reordered to r, z, n (z keeps the state on both sides, so no sign flips); with
  ``reset_after=True`` the bias is ``(2, 3H)``: row 0 the input bias ``b_ih``, row 1
  the recurrent ``b_hh``; with ``reset_after=False`` it is ``(3H,)`` and ``b_hh = 0``.
  No bias (``use_bias=False``) gives zeros. Use the params with :func:`keras_cell`
  (the same ``reset_after``).

  Args:
    weights: ``layer.get_weights()`` (``[kernel, recurrent_kernel]`` plus ``bias``
      if the layer has one), or a dict with those names.
    kind: ``"simple_rnn"``, ``"lstm"`` or ``"gru"``.
    reset_after: the GRU's ``reset_after`` (Keras's default True).
    dtype: the params' dtype; default the arrays' own.
  """
  fn = "from_keras"
  kind = _check_keras_kind(fn, kind)
  if isinstance(weights, Mapping):
    unknown = sorted(set(weights) - set(_KERAS_WEIGHTS))
    if unknown:
      raise ValueError(f"{fn}: unexpected key {unknown[0]!r}; expected {_KERAS_WEIGHTS}")
    for name in _KERAS_WEIGHTS[:2]:
      if name not in weights:
        raise ValueError(f"{fn}: missing key {name!r}; expected {_KERAS_WEIGHTS}")
    named = dict(weights)
  else:
    weights = list(weights)
    if len(weights) not in (2, 3):
      raise ValueError(
        f"{fn}: expected [kernel, recurrent_kernel] or [kernel, recurrent_kernel, bias]; "
        f"got {len(weights)} arrays"
      )
    named = dict(zip(_KERAS_WEIGHTS, weights, strict=False))
  gates = _KERAS_GATES[kind]
  recurrent = _numpy(named["recurrent_kernel"], f"{fn}: recurrent_kernel")
  hidden = _hidden_size(
    fn, "recurrent_kernel", recurrent.shape, kind, _KERAS_GATES, _KERAS_NAMES, gates_first=False
  )
  kernel = _numpy(named["kernel"], f"{fn}: kernel")
  layout = f"Keras's (I, {_gate_rows(gates)}) with H = {hidden}"
  _check_shape(fn, "kernel", kernel, ("I", gates * hidden), layout)
  two_biases = kind == "gru" and reset_after
  bias_shape = (2, gates * hidden) if two_biases else (gates * hidden,)
  if named.get("bias") is None:
    bias = np.zeros(bias_shape, recurrent.dtype)
  else:
    bias = _numpy(named["bias"], f"{fn}: bias")
    if kind == "gru" and tuple(bias.shape) != bias_shape:
      other = (gates * hidden,) if two_biases else (2, gates * hidden)
      if tuple(bias.shape) == other:
        raise ValueError(
          f"{fn}: bias has shape {tuple(bias.shape)}, that of a GRU with "
          f"reset_after={not reset_after}; pass reset_after={not reset_after}"
        )
    _check_shape(fn, "bias", bias, bias_shape)
  if kind == "simple_rnn":
    return ElmanParams(_jax(kernel, dtype), _jax(recurrent, dtype), _jax(bias, dtype))
  if kind == "lstm":
    return LSTMParams(_jax(kernel, dtype), _jax(recurrent, dtype), _jax(bias, dtype))
  b_ih, b_hh = (bias[0], bias[1]) if two_biases else (bias, np.zeros_like(bias))
  return GRUParams(
    *(_jax(_zrh_to_rzn(a), dtype) for a in (kernel, recurrent, b_ih, b_hh)),
  )


def to_keras(
  params: ElmanParams | LSTMParams | GRUParams, *, reset_after: bool = True, use_bias: bool = True
) -> list[np.ndarray]:
  """Keras weights ``[kernel, recurrent_kernel, bias]`` from rnnlab params, for
  ``layer.set_weights`` (the inverse of :func:`from_keras`).

  The layer follows the params' type (``SimpleRNN``, ``LSTM``, ``GRU``). A GRU with
  ``reset_after=False`` has one bias: ``b_ih + b_hh`` is written (exact for the params
  of an rnnlab ``gru(reset_after=False)``, where both biases add linearly).

  Args:
    params: a cell's params.
    reset_after: the GRU layer's ``reset_after``; it must match the rnnlab cell's.
    use_bias: False for a layer built with ``use_bias=False``: no bias is written, and
      non-zero biases are refused.
  """
  fn = "to_keras"
  kind, _, _ = _params_info(fn, params)
  kernel, recurrent = np.array(params.w_ih), np.array(params.w_hh)
  if not use_bias:
    _refuse_bias(fn, "params", params)
  if kind is GRUParams:
    kernel, recurrent = _rzn_to_zrh(kernel), _rzn_to_zrh(recurrent)
    if reset_after:
      bias = np.stack([_rzn_to_zrh(np.array(params.b_ih)), _rzn_to_zrh(np.array(params.b_hh))])
    else:
      bias = _rzn_to_zrh(_bias_sum(params))
  else:
    bias = np.array(params.b)
  return [kernel, recurrent, bias] if use_bias else [kernel, recurrent]


# ---- flax modules -----------------------------------------------------------------------------


def _run(
  where: str, model: Cell | Layer, params: PyTree, xs: Array, carry: Any, lengths: Any, **kw
):
  if isinstance(model, Cell):
    return unroll(model, params, xs, carry, lengths=lengths, **kw)
  if any(kw.values()):
    raise ValueError(f"{where}: reverse and time_major apply to a Cell; a Layer sets its own")
  return model.apply(params, xs, carry, lengths=lengths)


def _check_model(where: str, model: Any) -> None:
  if not isinstance(model, (Cell, Layer)):
    raise ValueError(f"{where}: cell must be an rnnlab Cell or Layer; got {type(model).__name__}")


class RNN(nn.Module):
  """A flax.linen module running an rnnlab cell (or layer) over sequences.

  The cell's params are one flax param, ``'cell'``, holding the cell's own NamedTuple
  (so :func:`to_torch`, :func:`to_flax` and friends apply to it), initialised by
  ``cell.init(key, xs.shape[-1], dtype=param_dtype)``::

    model = RNN(rnnlab.lstm(64))
    variables = model.init(key, xs)                 # {'params': {'cell': LSTMParams}}
    ys = model.apply(variables, xs)                 # xs (*batch, T, I) -> (*batch, T, H)

  Attributes:
    cell: an rnnlab :class:`~rnnlab.cells.Cell` (run by :func:`rnnlab.unroll`) or
      :class:`~rnnlab.layers.Layer` (run by its ``apply``).
    return_carry: return ``(carry, ys)`` (flax's ``nn.RNN`` order) instead of ``ys``.
    reverse: for a Cell, run each sequence backward (outputs stay aligned).
    time_major: for a Cell, ``xs`` is ``(T, *batch, I)``.
    param_dtype: the params' dtype at init.
  """

  cell: Cell | Layer
  return_carry: bool = False
  reverse: bool = False
  time_major: bool = False
  param_dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, xs: Array, carry: PyTree = None, *, lengths: Array | None = None):
    """Args: ``xs``; optional initial ``carry`` (default zeros); optional ``lengths``."""
    _check_model("RNN", self.cell)
    xs = jnp.asarray(xs)
    if xs.ndim < 2:
      raise ValueError(f"RNN: xs must have shape (*batch, T, I); got {tuple(xs.shape)}")
    params = self.param(
      "cell", lambda key: self.cell.init(key, xs.shape[-1], dtype=self.param_dtype)
    )
    ys, carry = _run(
      "RNN", self.cell, params, xs, carry, lengths, reverse=self.reverse, time_major=self.time_major
    )
    return (carry, ys) if self.return_carry else ys


class NNXRNN(nnx.Module):
  """A flax.nnx module running an rnnlab cell (or layer) over sequences.

  Each leaf of the cell's params is an ``nnx.Param`` inside the cell's NamedTuple
  (``module.params``), so ``nnx.Optimizer`` and ``nnx.grad`` see them; :meth:`cell_params`
  returns the plain NamedTuple for the converters::

    model = NNXRNN(rnnlab.gru(64), input_size=8, rngs=nnx.Rngs(0))
    ys, carry = model(xs)

  Args:
    cell: an rnnlab Cell or Layer.
    input_size: I.
    rngs: ``nnx.Rngs``; the ``params`` stream initialises the cell.
    param_dtype: the params' dtype.
    params: optional params to start from instead (e.g. from :func:`from_torch`).
  """

  def __init__(
    self,
    cell: Cell | Layer,
    input_size: int,
    *,
    rngs: nnx.Rngs,
    param_dtype: Any = jnp.float32,
    params: PyTree | None = None,
  ):
    _check_model("NNXRNN", cell)
    self.cell = cell
    if params is None:
      params = cell.init(rngs.params(), input_size, dtype=param_dtype)
    self.params = nnx.data(jax.tree.map(nnx.Param, params))

  def cell_params(self) -> PyTree:
    """The cell's params as plain arrays in the cell's own NamedTuples."""
    return jax.tree.map(
      lambda v: v[...], self.params, is_leaf=lambda v: isinstance(v, nnx.Variable)
    )

  def __call__(
    self,
    xs: Array,
    carry: PyTree = None,
    *,
    lengths: Array | None = None,
    reverse: bool = False,
  ) -> tuple[Array, PyTree]:
    """``(ys, carry)`` as :func:`rnnlab.unroll` (or the Layer's ``apply``)."""
    return _run("NNXRNN", self.cell, self.cell_params(), xs, carry, lengths, reverse=reverse)


__all__ = [
  "FLAX_KINDS",
  "KERAS_KINDS",
  "NNXRNN",
  "NNX_KINDS",
  "RNN",
  "TORCH_KINDS",
  "carry_from_flax",
  "carry_from_torch",
  "carry_to_flax",
  "carry_to_torch",
  "flax_cell",
  "from_flax",
  "from_keras",
  "from_nnx",
  "from_torch",
  "keras_cell",
  "load_nnx",
  "to_flax",
  "to_keras",
  "to_nnx",
  "to_torch",
  "torch_cell",
  "torch_layer",
]
