"""Sequence layers built from cells: one direction, bidirectional, stacked; plus
the two feed-forward pieces every sequence model needs (embedding, dense readout),
and variational dropout.

A :class:`Layer` maps whole sequences to sequences::

    layer = rnnlab.stacked([rnnlab.bidirectional(rnnlab.gru(64)), rnnlab.lstm(64)])
    params = layer.init(key, input_size)                      # dtype=jnp.float32 by keyword
    ys, carry = layer.apply(params, xs, lengths=lengths)     # xs (*batch, T, I)
    last = layer.last(ys, lengths)                            # (*batch, F)

``last`` reads each sequence's final state out of ``ys``: position
``lengths - 1`` for a forward direction, position 0 for a backward one. Layers
are batch-major (``(*batch, T, F)``); use :func:`rnnlab.unroll` directly for a
time-major layout.

Dropout (Gal & Ghahramani 2016, "A Theoretically Grounded Application of Dropout
in Recurrent Neural Networks") is variational: one mask per sequence and unit,
drawn once per forward pass and shared by every time step, with inverted
scaling (kept units are divided by ``1 - rate``). Rates are fixed when a layer
is built (``stacked(..., dropout=)`` between layers, ``rnn(...,
recurrent_dropout=)`` on the state fed back); ``apply(..., key=key)`` draws the
masks from ``key`` (training), and without a key (the default) a layer is
exactly its deterministic self (evaluation). Rates of 0 draw nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnlab import initializers as inits
from rnnlab._signatures import init_signature
from rnnlab.cells import Cell
from rnnlab.scan import check_lengths, unroll

Array = jax.Array
PyTree = Any


class Layer(NamedTuple):
  """A sequence-to-sequence layer: pure functions closed over its structure.

  Attributes:
    init: ``init(key, input_size, *, dtype=jnp.float32) -> params`` (a :func:`rnn`
      layer's is its cell's).
    initial_carry: ``initial_carry(params, batch_shape=()) -> carry``.
    apply: ``apply(params, xs, carry=None, *, lengths=None, key=None) -> (ys, carry)``
      with ``xs (*batch, T, I)`` and ``ys (*batch, T, F)``, zero past ``lengths``;
      ``key`` (a PRNG key) turns the layer's dropout on, ``None`` is evaluation.
    last: ``last(ys, lengths=None) -> (*batch, F)``, each sequence's final state.
    name: a short label for errors and reports.
  """

  init: Callable[..., PyTree]
  initial_carry: Callable[..., PyTree]
  apply: Callable[..., tuple[Array, PyTree]]
  last: Callable[..., Array]
  name: str = "layer"


def gather_last(ys: Array, lengths: Array | None = None) -> Array:
  """``ys[..., lengths - 1, :]``: each sequence's output at its last valid step.

  A sequence of length 0 gives zeros. Traced lengths outside ``[0, T]`` (inside
  ``jit``, where they cannot be checked) are clamped to it, as :func:`rnnlab.unroll`
  clamps them: a length above ``T`` reads step ``T - 1``, a negative one gives zeros.
  """
  if lengths is None:
    return ys[..., -1, :]
  lengths = check_lengths(lengths, tuple(ys.shape[:-2]), ys.shape[-2])
  index = jnp.clip(lengths - 1, 0, ys.shape[-2] - 1)[..., None, None]
  last = jnp.take_along_axis(ys, index, axis=-2)[..., 0, :]
  return jnp.where((lengths > 0)[..., None], last, jnp.zeros_like(last))


def check_rate(where: str, rate: Any) -> float | Array:
  """A dropout rate in ``[0, 1)`` as a float, or a one-line ``ValueError`` naming it.

  A scalar float JAX array is a rate too (a swept hyper-parameter): a concrete one
  is checked and kept as an array, a traced one (inside ``jit`` or ``vmap``) is kept
  unchecked, its caller having checked the concrete values. An array rate always
  draws its masks, even where it is 0 (which keeps every unit: the same numbers).
  """
  if isinstance(rate, jax.Array) and rate.ndim == 0 and jnp.issubdtype(rate.dtype, jnp.floating):
    if isinstance(rate, jax.core.Tracer) or 0 <= float(rate) < 1:
      return rate
  elif not isinstance(rate, bool) and isinstance(rate, int | float) and 0 <= rate < 1:
    return float(rate)
  raise ValueError(f"{where} must be a number in [0, 1) (the chance to drop); got {rate!r}")


def dropout_off(rate: float | Array) -> bool:
  """True iff ``rate`` is a Python number equal to 0 (an array rate is always applied)."""
  return not isinstance(rate, jax.Array) and rate == 0


def _keep_mask(key: Array, shape: tuple[int, ...], rate: float) -> Array:
  """Booleans of ``shape``, True with probability ``1 - rate``."""
  return jax.random.bernoulli(key, 1.0 - rate, shape)


def _drop(x: Array, keep: Array, rate: float) -> Array:
  """``x * keep / (1 - rate)``; dropped units are exactly 0 (so are their gradients).

  The scaling runs in at least float32: a bfloat16 ``1 / (1 - rate)`` would bias
  every kept unit the same way (0.16 % at rate 0.4), a float32 product rounds each alone.
  """
  wide = jnp.promote_types(x.dtype, jnp.float32)
  scaled = (x.astype(wide) * jnp.asarray(1.0 / (1.0 - rate), wide)).astype(x.dtype)
  return jnp.where(keep, scaled, jnp.zeros_like(x))


def variational_dropout(key: Array | None, xs: Array, rate: float) -> Array:
  r"""Dropout with one mask per sequence and unit, shared by every step (Gal & Ghahramani 2016).

  .. math::  y_{b,t,f} = x_{b,t,f}\, m_{b,f} / (1 - p), \qquad m_{b,f} \sim \mathrm{B}(1 - p)

  for ``xs (*batch, T, F)``: the mask has shape ``(*batch, F)``, is drawn once
  from ``key`` and broadcast over the time axis, so it does not depend on ``T``
  (the same key masks every window of a sequence alike). Inverted scaling makes
  the expectation over masks exactly ``xs``. ``key=None`` or ``rate=0`` returns
  ``xs`` unchanged (no draw); an array ``rate`` (see :func:`check_rate`) always draws.

  Args:
    key: a PRNG key, or None (evaluation: no dropout).
    xs: ``(*batch, T, F)``.
    rate: p, the chance that a unit is dropped, in ``[0, 1)`` (a float or a scalar array).
  """
  rate = check_rate("variational_dropout: rate", rate)
  if key is None or dropout_off(rate):
    return xs
  xs = jnp.asarray(xs)
  if xs.ndim < 2:
    raise ValueError(
      f"variational_dropout: xs must have shape (*batch, T, F); got {tuple(xs.shape)}"
    )
  keep = _keep_mask(key, (*xs.shape[:-2], xs.shape[-1]), rate)
  return _drop(xs, keep[..., None, :], rate)


def _recurrent_dropout_cell(cell: Cell, keep: Array, rate: float) -> Cell:
  """``cell`` with its hidden state masked where it feeds ``w_hh``: ``(h * m / (1 - p)) W_hh``.

  The mask ``keep (*batch, H)`` is the same at every step. Only the recurrent
  product sees it (the LSTM's ``c``, the GRU's ``z * h`` are untouched), as in
  Gal & Ghahramani's equations.
  """
  parts = cell.parts

  def step(params, carry, x):
    w, b = parts.recurrent(params)
    hp = _drop(parts.hidden(carry), keep, rate) @ w
    carry = parts.update(carry, parts.project(params, x), hp if b is None else hp + b)
    return carry, parts.hidden(carry)

  # A per-sequence mask cannot be folded into one w_hh, so this cell has no fused path.
  return cell._replace(step=step, parts=None)


def _first(ys: Array, lengths: Array | None = None) -> Array:
  # A backward pass ends at position 0; past-length zeros need no special case.
  return ys[..., 0, :]


def _check_xs(name: str, xs: Array) -> Array:
  xs = jnp.asarray(xs)
  if xs.ndim < 2:
    raise ValueError(f"{name}.apply: xs must have shape (*batch, T, I); got {tuple(xs.shape)}")
  return xs


def as_layer(cell_or_layer: Cell | Layer) -> Layer:
  """A :class:`Layer` as is, or a :class:`Cell` wrapped by :func:`rnn`."""
  if isinstance(cell_or_layer, Layer):
    return cell_or_layer
  if isinstance(cell_or_layer, Cell):
    return rnn(cell_or_layer)
  raise TypeError(f"expected an rnnlab Cell or Layer; got {type(cell_or_layer).__name__}")


def rnn(
  cell: Cell,
  *,
  reverse: bool = False,
  unroll_steps: int | bool = 1,
  impl: str = "auto",
  remat_chunk: int | None = None,
  recurrent_dropout: float = 0.0,
) -> Layer:
  r"""One direction of ``cell`` over whole sequences (:func:`rnnlab.unroll`).

  ``impl`` and ``remat_chunk`` choose the unroll's path and gradient
  checkpointing, as in :func:`rnnlab.unroll`; neither changes the numbers.

  ``recurrent_dropout`` (default 0) is Gal & Ghahramani's mask on the state fed
  back: with a key, ``h_{t-1}`` enters the recurrent product as
  ``(h_{t-1} \odot m / (1 - p)) W_hh``, one mask ``m (*batch, H)`` for the whole
  sequence and for every gate; the rest of the update (the LSTM's ``c``, the
  GRU's ``z * h``) sees the unmasked state. It needs a cell with
  :class:`~rnnlab.cells.CellParts` (which name that product), and a masked
  unroll takes the plain scan path.
  """
  if not isinstance(cell, Cell):
    raise TypeError(f"rnn: expected an rnnlab Cell; got {type(cell).__name__}")
  recurrent_dropout = check_rate("rnn: recurrent_dropout", recurrent_dropout)
  if not dropout_off(recurrent_dropout) and cell.parts is None:
    if isinstance(recurrent_dropout, jax.core.Tracer):  # it could be 0: needs the value
      raise jax.errors.ConcretizationTypeError(
        recurrent_dropout, f"rnn: recurrent_dropout on {cell.name}, a cell without CellParts"
      )
    raise ValueError(
      f"rnn: recurrent_dropout needs a cell with CellParts (the recurrent product to mask); "
      f"{cell.name} has none"
    )
  name = ("reverse_" if reverse else "") + cell.name

  def apply(params, xs, carry=None, *, lengths=None, key=None):
    xs = _check_xs(name, xs)
    run_cell, run_impl = cell, impl
    if key is not None and not dropout_off(recurrent_dropout):
      w, _ = cell.parts.recurrent(params)
      keep = _keep_mask(key, (*xs.shape[:-2], w.shape[0]), recurrent_dropout)
      run_cell, run_impl = _recurrent_dropout_cell(cell, keep, recurrent_dropout), "scan"
    return unroll(
      run_cell,
      params,
      xs,
      carry,
      lengths=lengths,
      reverse=reverse,
      unroll=unroll_steps,
      impl=run_impl,
      remat_chunk=remat_chunk,
    )

  last = _first if reverse else gather_last
  return Layer(cell.init, cell.initial_carry, apply, last, name)


class BidirectionalParams(NamedTuple):
  """Parameters of a :func:`bidirectional` layer."""

  forward: PyTree
  backward: PyTree


class BidirectionalCarry(NamedTuple):
  """Carries of a :func:`bidirectional` layer."""

  forward: PyTree
  backward: PyTree


MERGES = ("concat", "sum")


def bidirectional(
  forward: Cell,
  backward: Cell | None = None,
  *,
  merge: str = "concat",
  impl: str = "auto",
  remat_chunk: int | None = None,
  recurrent_dropout: float = 0.0,
) -> Layer:
  """A forward and a backward pass over each sequence, merged per step.

  ``y_t = [y^f_t, y^b_t]`` (``merge="concat"``, as PyTorch) or ``y^f_t + y^b_t``
  (``"sum"``), where the backward pass reads each sequence from its own last
  valid step back to its first (:func:`rnnlab.unroll` with ``reverse=True``).

  Args:
    forward: the forward cell.
    backward: the backward cell; default a second cell like ``forward`` (own params).
    merge: ``"concat"`` or ``"sum"``; both need the two outputs of equal size.
    impl, remat_chunk, recurrent_dropout: passed to :func:`rnn` for both directions
      (with a key, each direction draws its own mask).
  """
  backward = forward if backward is None else backward
  if merge not in MERGES:
    raise ValueError(f"bidirectional: merge={merge!r}; expected one of {MERGES}")
  options = dict(impl=impl, remat_chunk=remat_chunk, recurrent_dropout=recurrent_dropout)
  fw = rnn(forward, **options)
  bw = rnn(backward, reverse=True, **options)
  name = f"bidirectional({forward.name},{backward.name})"

  @init_signature(name)
  def init(key, input_size, *, dtype=jnp.float32):
    k_f, k_b = jax.random.split(key)
    params = BidirectionalParams(
      fw.init(k_f, input_size, dtype=dtype), bw.init(k_b, input_size, dtype=dtype)
    )
    f_size = output_size(fw, params.forward, input_size, dtype)
    b_size = output_size(bw, params.backward, input_size, dtype)
    if f_size != b_size:
      raise ValueError(
        f"{name}: the two directions must give outputs of equal size; got {f_size} and {b_size}"
      )
    return params

  def initial_carry(params, batch_shape=()):
    return BidirectionalCarry(
      fw.initial_carry(params.forward, batch_shape), bw.initial_carry(params.backward, batch_shape)
    )

  def apply(params, xs, carry=None, *, lengths=None, key=None):
    carry = BidirectionalCarry(None, None) if carry is None else carry
    k_f, k_b = (None, None) if key is None else jax.random.split(key)
    ys_f, c_f = fw.apply(params.forward, xs, carry.forward, lengths=lengths, key=k_f)
    ys_b, c_b = bw.apply(params.backward, xs, carry.backward, lengths=lengths, key=k_b)
    ys = jnp.concatenate([ys_f, ys_b], axis=-1) if merge == "concat" else ys_f + ys_b
    return ys, BidirectionalCarry(c_f, c_b)

  def last(ys, lengths=None):
    if merge != "concat":
      raise ValueError(
        f"{name}: the final state of each direction cannot be read from summed outputs; "
        "use merge='concat' for a many-to-one readout"
      )
    ys_f, ys_b = jnp.split(ys, 2, axis=-1)
    return jnp.concatenate([gather_last(ys_f, lengths), _first(ys_b, lengths)], axis=-1)

  return Layer(init, initial_carry, apply, last, name)


def stacked(
  layers: Sequence[Cell | Layer], *, residual: bool = False, dropout: float = 0.0
) -> Layer:
  r"""Layers applied one after another over whole sequences.

  ``ys^0 = xs``, ``ys^l = layer_l(ys^{l-1})``; with ``residual`` every layer
  after the first adds its input, ``ys^l = layer_l(ys^{l-1}) + ys^{l-1}``, and
  must keep the width. Cells are wrapped by :func:`rnn`. Params and carry are
  tuples with one entry per layer, bottom first.

  ``dropout`` (default 0) is variational dropout between the layers: with a key,
  every layer after the first reads ``D_l(ys^{l-1})``
  (:func:`variational_dropout`, its own mask per layer); a residual connection
  adds the undropped ``ys^{l-1}``. The first layer's inputs and the last layer's
  outputs are the model's to drop (``input_dropout``, ``output_dropout`` in
  :mod:`rnnlab.models`). The key is split between the layers, so each layer's
  own dropout (:func:`rnn`'s ``recurrent_dropout``) draws its own masks too.
  """
  layers = tuple(as_layer(l) for l in layers)
  if not layers:
    raise ValueError("stacked: expected at least one layer")
  dropout = check_rate("stacked: dropout", dropout)
  name = "stacked(" + ",".join(l.name for l in layers) + ")"

  @init_signature(name)
  def init(key, input_size, *, dtype=jnp.float32):
    params, size = [], input_size
    for index, (layer, k) in enumerate(
      zip(layers, jax.random.split(key, len(layers)), strict=True)
    ):
      p = layer.init(k, size, dtype=dtype)
      out = output_size(layer, p, size, dtype)
      if residual and index > 0 and out != size:
        raise ValueError(
          f"{name}: residual=True needs layer {index} ({layer.name}) to keep the width; "
          f"its input has {size} features and its output {out}"
        )
      params.append(p)
      size = out
    return tuple(params)

  def initial_carry(params, batch_shape=()):
    return tuple(l.initial_carry(p, batch_shape) for l, p in zip(layers, params, strict=True))

  def apply(params, xs, carry=None, *, lengths=None, key=None):
    carry = (None,) * len(layers) if carry is None else carry
    keys = None if key is None else jax.random.split(key, (len(layers), 2))
    new_carry = []
    for index, (layer, p, c) in enumerate(zip(layers, params, carry, strict=True)):
      inputs, options = xs, {}
      if keys is not None:
        # With a key every layer gets its own (a Layer's apply takes key=).
        options["key"] = keys[index, 0]
        if index > 0:
          inputs = variational_dropout(keys[index, 1], xs, dropout)
      ys, c = layer.apply(p, inputs, c, lengths=lengths, **options)
      xs = ys + xs if residual and index > 0 else ys
      new_carry.append(c)
    return xs, tuple(new_carry)

  return Layer(init, initial_carry, apply, layers[-1].last, name)


def output_size(layer: Layer, params: PyTree, input_size: int, dtype: Any = jnp.float32) -> int:
  """The feature size of ``layer``'s outputs, found by tracing (no compute)."""
  xs = jax.ShapeDtypeStruct((1, input_size), dtype)
  ys, _ = jax.eval_shape(lambda p, x: layer.apply(p, x), params, xs)
  return int(ys.shape[-1])


class DenseParams(NamedTuple):
  """``w (I, O)``, ``b (O,)``."""

  w: Array
  b: Array


class Dense(NamedTuple):
  """An affine map ``y = x @ w + b`` (readouts, bridges).

  Attributes:
    init: ``init(key, input_size, *, dtype=jnp.float32) -> DenseParams``.
    apply: ``apply(params, x) -> x @ w + b``.
  """

  init: Callable[..., DenseParams]
  apply: Callable[[DenseParams, Array], Array]


def dense(
  features: int,
  *,
  kernel_init: inits.InitSpec = "lecun_normal",
  bias_init: inits.InitSpec = "zeros",
) -> Dense:
  """An affine readout ``y = x @ w + b`` with ``w (I, features)``.

  Args:
    features: O, the output size.
    kernel_init: ``"lecun_normal"`` (default, flax), ``"glorot_uniform"``,
      ``"uniform"`` (PyTorch's ``nn.Linear``: bound ``1/sqrt(I)``), ``"zeros"``, or a callable.
    bias_init: ``"zeros"`` (default), ``"uniform"`` (bound ``1/sqrt(I)``) or a callable.
  """
  if isinstance(features, bool) or not isinstance(features, int) or features < 1:
    raise ValueError(f"dense: features must be a positive int; got {features!r}")

  @init_signature("dense", f" (features={features} is the layer's own)")
  def init(key, input_size, *, dtype=jnp.float32):
    if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
      raise ValueError(f"dense.init: input_size must be a positive int; got {input_size!r}")
    k_w, k_b = jax.random.split(key)
    # The PyTorch-style bounds of a linear layer use its fan-in.
    w = inits.input_weights(kernel_init, input_size)(k_w, (input_size, features), dtype)
    b = inits.bias(bias_init, input_size)(k_b, (features,), dtype)
    return DenseParams(w, b)

  def apply(params, x):
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != params.w.shape[0]:
      raise ValueError(
        f"dense.apply: x has shape {tuple(x.shape)}; expected (..., {params.w.shape[0]})"
      )
    return x.astype(params.w.dtype) @ params.w + params.b

  return Dense(init, apply)


class EmbeddingParams(NamedTuple):
  """``table (V, E)``."""

  table: Array


class Embedding(NamedTuple):
  """A lookup table for integer tokens: ``apply(params, tokens) = table[tokens]``.

  Attributes:
    init: ``init(key, *, dtype=jnp.float32) -> EmbeddingParams`` (the sizes are the
      embedding's own).
    apply: ``apply(params, tokens) -> (*tokens.shape, features)``.
  """

  init: Callable[..., EmbeddingParams]
  apply: Callable[[EmbeddingParams, Array], Array]


def embedding(vocab_size: int, features: int) -> Embedding:
  """Integer tokens in ``[0, vocab_size)`` to vectors of size ``features``.

  The table is initialised ``N(0, 1 / features)`` (flax's ``nn.Embed``). Tokens
  are range-checked whenever they are concrete (outside ``jit``).
  """
  for label, value in (("vocab_size", vocab_size), ("features", features)):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"embedding: {label} must be a positive int; got {value!r}")

  @init_signature("embedding", f" (vocab_size={vocab_size}, features={features} are its own)")
  def init(key, *, dtype=jnp.float32):
    table = jax.random.normal(key, (vocab_size, features), jnp.promote_types(dtype, jnp.float32))
    return EmbeddingParams((table / features**0.5).astype(dtype))

  def apply(params, tokens):
    tokens = jnp.asarray(tokens)
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
      raise ValueError(f"embedding: tokens must be integers; got dtype {tokens.dtype}")
    if not isinstance(tokens, jax.core.Tracer) and tokens.size:
      values = np.asarray(tokens)
      low, high = int(values.min()), int(values.max())
      if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"embedding: token {bad} is outside the vocabulary [0, {vocab_size})")
    return jnp.take(params.table, tokens, axis=0)

  return Embedding(init, apply)


__all__ = [
  "BidirectionalCarry",
  "BidirectionalParams",
  "Dense",
  "DenseParams",
  "Embedding",
  "EmbeddingParams",
  "Layer",
  "MERGES",
  "as_layer",
  "bidirectional",
  "check_rate",
  "dense",
  "dropout_off",
  "embedding",
  "gather_last",
  "output_size",
  "rnn",
  "stacked",
  "variational_dropout",
]
