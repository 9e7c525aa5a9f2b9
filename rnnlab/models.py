"""The four RNN types as pure functions over pytree params.

=================  ============================================  =========================
type               what it maps                                  here
=================  ============================================  =========================
many-to-one        a sequence to one output (classification)     :func:`many_to_one`
many-to-many       a sequence to one output per step (tagging)   :func:`many_to_many`
one-to-many        a start (token, carry) to a sequence          :func:`one_to_many`
encoder-decoder    a sequence to a sequence of another length    :func:`encoder_decoder`
=================  ============================================  =========================

Inputs are float features ``(*batch, T, I)``, or integer tokens ``(*batch, T)``
when an ``embed_size`` is given; in both cases ``init(key, input_size)`` takes
the input size, which for tokens is the vocabulary size (one-hot and embedded
inputs then share a signature). Every ``init`` takes the key, then the sizes the
model does not know (none for :func:`one_to_many`, which knows its vocabulary),
then keyword-only ``dtype=``; the old ``init(key, ..., dtype)`` still works.

Dropout: every model takes ``input_dropout`` (on the inputs, embedded ones for
tokens) and ``output_dropout`` (on the recurrent outputs before the readout),
both variational (:func:`rnnlab.layers.variational_dropout`: one mask per
sequence and unit for all steps, inverted scaling) and 0 by default; between
stacked layers and on the recurrent state they are the encoder layer's
(``rnnlab.stacked(..., dropout=)``, ``rnnlab.rnn(cell, recurrent_dropout=)``).
``apply(..., key=key)`` draws the masks from ``key`` (training); without a key
(the default) the model is exactly the deterministic one (evaluation), and
``generate`` and ``greedy_decode`` never drop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnlab._signatures import init_signature
from rnnlab.cells import Cell
from rnnlab.cells import output_size as cell_output_size
from rnnlab.layers import (
  DenseParams,
  EmbeddingParams,
  Layer,
  as_layer,
  check_rate,
  dense,
  embedding,
  output_size,
  variational_dropout,
)
from rnnlab.scan import check_lengths, unroll

Array = jax.Array
PyTree = Any


class ModelParams(NamedTuple):
  """Params of a many-to-one or many-to-many model."""

  embed: EmbeddingParams | None
  encoder: PyTree
  readout: DenseParams


class SequenceModel(NamedTuple):
  """``init(key, input_size, *, dtype=float32) -> params``;
  ``apply(params, inputs, *, lengths=None, key=None)`` (``key``: dropout on)."""

  init: Callable[..., ModelParams]
  apply: Callable[..., Array]


def _check_rates(where: str, input_dropout: Any, output_dropout: Any) -> tuple[float, float]:
  return (
    check_rate(f"{where}: input_dropout", input_dropout),
    check_rate(f"{where}: output_dropout", output_dropout),
  )


def _split3(key: Array | None) -> tuple[Array | None, Array | None, Array | None]:
  """Keys for the input mask, the recurrent layers and the output mask (Nones without a key)."""
  return (None, None, None) if key is None else tuple(jax.random.split(key, 3))


def _layer_key(key: Array | None) -> dict:
  """``{"key": key}`` for a layer's apply, nothing without a key (a user's Layer may take none)."""
  return {} if key is None else {"key": key}


def _input_encoder(
  where: str,
  encoder: Cell | Layer,
  output_features: int,
  embed_size: int | None,
  input_dropout: float,
  output_dropout: float,
):
  layer = as_layer(encoder)
  readout = dense(output_features)
  size = "the vocabulary size" if embed_size is not None else "the input features"
  input_dropout, output_dropout = _check_rates(where, input_dropout, output_dropout)

  @init_signature(where, f" (input_size: {size})")
  def init(key, input_size, *, dtype=jnp.float32):
    k_e, k_l, k_r = jax.random.split(key, 3)
    embed = None
    if embed_size is not None:
      embed = embedding(input_size, embed_size).init(k_e, dtype=dtype)
      input_size = embed_size
    layer_params = layer.init(k_l, input_size, dtype=dtype)
    features = output_size(layer, layer_params, input_size, dtype)
    return ModelParams(embed, layer_params, readout.init(k_r, features, dtype=dtype))

  def encode(params, inputs, lengths, key):
    k_in, k_layer, k_out = _split3(key)
    if embed_size is not None:
      vocab_size = params.embed.table.shape[0]
      inputs = embedding(vocab_size, embed_size).apply(params.embed, inputs)
    inputs = variational_dropout(k_in, inputs, input_dropout)
    ys, _ = layer.apply(params.encoder, inputs, lengths=lengths, **_layer_key(k_layer))
    return variational_dropout(k_out, ys, output_dropout)

  return layer, readout, init, encode


def many_to_one(
  encoder: Cell | Layer,
  output_features: int,
  *,
  embed_size: int | None = None,
  input_dropout: float = 0.0,
  output_dropout: float = 0.0,
) -> SequenceModel:
  """Sequence classification/regression: a readout of each sequence's last valid state.

  ``out = readout(encoder.last(ys, lengths))``, shape ``(*batch, output_features)``.
  For a bidirectional encoder the last state is the forward pass at
  ``lengths - 1`` and the backward pass at 0. ``input_dropout`` and
  ``output_dropout`` (the last state's units) apply with ``apply(..., key=key)``
  (module docstring).
  """
  layer, readout, init, encode = _input_encoder(
    "many_to_one", encoder, output_features, embed_size, input_dropout, output_dropout
  )

  def apply(params, inputs, *, lengths=None, key=None):
    ys = encode(params, inputs, lengths, key)
    return readout.apply(params.readout, layer.last(ys, lengths))

  return SequenceModel(init, apply)


def many_to_many(
  encoder: Cell | Layer,
  output_features: int,
  *,
  embed_size: int | None = None,
  input_dropout: float = 0.0,
  output_dropout: float = 0.0,
) -> SequenceModel:
  """Per-step readout (tagging, per-step regression), zero past ``lengths``.

  ``out[..., t, :] = readout(ys[..., t, :])``, shape ``(*batch, T, output_features)``.
  ``input_dropout`` and ``output_dropout`` apply with ``apply(..., key=key)``
  (module docstring).
  """
  _, readout, init, encode = _input_encoder(
    "many_to_many", encoder, output_features, embed_size, input_dropout, output_dropout
  )

  def apply(params, inputs, *, lengths=None, key=None):
    ys = encode(params, inputs, lengths, key)
    out = readout.apply(params.readout, ys)
    if lengths is None:
      return out
    valid = jnp.arange(out.shape[-2]) < jnp.asarray(lengths)[..., None]
    return jnp.where(valid[..., None], out, jnp.zeros_like(out))

  return SequenceModel(init, apply)


def sample(key: Array, logits: Array, temperature: float = 1.0) -> Array:
  """A token from ``softmax(logits / temperature)``; ``temperature=0`` is greedy (argmax)."""
  if temperature < 0:
    raise ValueError(f"temperature must be >= 0 (0 is greedy); got {temperature}")
  if temperature == 0:
    return jnp.argmax(logits, axis=-1)
  return jax.random.categorical(key, logits.astype(jnp.float32) / temperature, axis=-1)


class GeneratorParams(NamedTuple):
  """Params of a :func:`one_to_many` model."""

  embed: EmbeddingParams
  cell: PyTree
  readout: DenseParams


class Generator(NamedTuple):
  """Autoregressive token model: teacher-forced ``apply`` and sampled ``generate``.

  Attributes:
    init: ``init(key, *, dtype=float32) -> GeneratorParams`` (no sizes: the vocabulary
      and embedding sizes are the model's own).
    apply: ``apply(params, tokens, carry=None, *, lengths=None, key=None) -> (logits,
      carry)``, ``logits[..., t, :]`` scoring token ``t + 1`` (``key``: dropout on).
    generate: ``generate(params, key, prompt, num_steps, *, temperature=1.0,
      carry=None) -> tokens (*batch, num_steps)``, one ``lax.scan``.
  """

  init: Callable[..., GeneratorParams]
  apply: Callable[..., tuple[Array, PyTree]]
  generate: Callable[..., Array]


def one_to_many(
  cell: Cell,
  vocab_size: int,
  embed_size: int,
  *,
  input_dropout: float = 0.0,
  output_dropout: float = 0.0,
) -> Generator:
  """One-to-many: from a start (a prompt, and optionally a conditioning carry) to a sequence.

  ``x_t = embed(token_t)``, ``(c_t, y_t) = step(c_{t-1}, x_t)``,
  ``token_{t+1} ~ softmax(readout(y_t) / temperature)``. Use
  :func:`rnnlab.cells.stack` for a multi-layer generator; pass ``carry`` to
  condition the sequence on anything mapped into the cell's state (a
  one-to-many model in the strict sense: one vector in, a sequence out).
  ``input_dropout`` (the embedded tokens) and ``output_dropout`` (the cell's
  outputs) apply in the teacher-forced ``apply`` with a key; ``generate`` never drops.
  """
  embed = embedding(vocab_size, embed_size)
  readout = dense(vocab_size)
  input_dropout, output_dropout = _check_rates("one_to_many", input_dropout, output_dropout)

  @init_signature(
    "one_to_many", f" (vocab_size={vocab_size} and embed_size={embed_size} are the model's own)"
  )
  def init(key, *, dtype=jnp.float32):
    k_e, k_c, k_r = jax.random.split(key, 3)
    cell_params = cell.init(k_c, embed_size, dtype=dtype)
    features = cell_output_size(cell, cell_params, embed_size, dtype)
    readout_params = readout.init(k_r, features, dtype=dtype)
    return GeneratorParams(embed.init(k_e, dtype=dtype), cell_params, readout_params)

  def apply(params, tokens, carry=None, *, lengths=None, key=None):
    k_in, _, k_out = _split3(key)
    xs = variational_dropout(k_in, embed.apply(params.embed, tokens), input_dropout)
    ys, carry = unroll(cell, params.cell, xs, carry, lengths=lengths)
    ys = variational_dropout(k_out, ys, output_dropout)
    return readout.apply(params.readout, ys), carry

  def generate(params, key, prompt, num_steps, *, temperature=1.0, carry=None):
    prompt = jnp.asarray(prompt)
    if prompt.ndim < 1 or prompt.shape[-1] < 1:
      raise ValueError(
        f"generate: prompt must be tokens (*batch, P) with P >= 1; got {prompt.shape}"
      )
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
      raise ValueError(f"generate: num_steps must be a positive int; got {num_steps!r}")
    logits, carry = apply(params, prompt, carry)

    def next_token(state, step_key):
      carry, logits = state
      token = sample(step_key, logits, temperature)
      carry, y = cell.step(params.cell, carry, embed.apply(params.embed, token))
      return (carry, readout.apply(params.readout, y)), token

    keys = jax.random.split(key, num_steps)
    _, tokens = jax.lax.scan(next_token, (carry, logits[..., -1, :]), keys)
    return jnp.moveaxis(tokens, 0, -1)

  return Generator(init, apply, generate)


class Seq2SeqParams(NamedTuple):
  """Params of an :func:`encoder_decoder` model."""

  source_embed: EmbeddingParams | None
  encoder: PyTree
  bridge: tuple
  target_embed: EmbeddingParams
  decoder: PyTree
  readout: DenseParams


class EncoderDecoder(NamedTuple):
  """Sequence to sequence.

  Attributes:
    init: ``init(key, source_size, *, dtype=float32)`` (source_size: features, or
      the source vocabulary when ``source_embed_size`` is set).
    encode: ``encode(params, source, *, source_lengths=None, key=None) -> decoder carry``.
    apply: ``apply(params, source, target_in, *, source_lengths=None,
      target_lengths=None, key=None) -> logits (*batch, T_target, V)``, teacher forcing:
      ``target_in = shift_right(targets, start_token)``; ``key``: dropout on.
    greedy_decode: ``greedy_decode(params, source, num_steps, *, start_token,
      source_lengths=None) -> tokens (*batch, num_steps)``.
  """

  init: Callable[..., Seq2SeqParams]
  encode: Callable[..., PyTree]
  apply: Callable[..., Array]
  greedy_decode: Callable[..., Array]


def shift_right(targets: Array, start_token: int) -> Array:
  """Decoder inputs for teacher forcing: ``[start, y_0, ..., y_{T-2}]``."""
  targets = jnp.asarray(targets)
  start = jnp.full((*targets.shape[:-1], 1), start_token, targets.dtype)
  return jnp.concatenate([start, targets[..., :-1]], axis=-1)


def encoder_decoder(
  encoder: Cell | Layer,
  decoder: Cell,
  target_vocab_size: int,
  *,
  target_embed_size: int,
  source_embed_size: int | None = None,
  input_dropout: float = 0.0,
  output_dropout: float = 0.0,
) -> EncoderDecoder:
  r"""An RNN encoder-decoder (Cho et al. 2014; Sutskever et al. 2014).

  The encoder reads the source; its last valid state ``s`` (both directions for
  a bidirectional encoder) sets every leaf of the decoder's initial carry
  through a learned bridge, ``c_0 = tanh(s W + b)`` (one affine map per leaf, so
  any encoder fits any decoder). The decoder is trained with teacher forcing and
  decoded greedily, each step inside one ``lax.scan``.

  With a key, ``input_dropout`` masks the (embedded) source and the embedded
  target inputs (each its own mask) and ``output_dropout`` the decoder's
  outputs before the readout; the encoder layer draws its own dropout from the
  key too. ``greedy_decode`` never drops.
  """
  layer = as_layer(encoder)
  input_dropout, output_dropout = _check_rates("encoder_decoder", input_dropout, output_dropout)
  target_embed = embedding(target_vocab_size, target_embed_size)
  readout = dense(target_vocab_size)

  source = "the source vocabulary" if source_embed_size is not None else "the source features"

  @init_signature("encoder_decoder", f" (source_size: {source})")
  def init(key, source_size, *, dtype=jnp.float32):
    k_se, k_enc, k_bridge, k_te, k_dec, k_r = jax.random.split(key, 6)
    source_embed = None
    if source_embed_size is not None:
      source_embed = embedding(source_size, source_embed_size).init(k_se, dtype=dtype)
      source_size = source_embed_size
    enc_params = layer.init(k_enc, source_size, dtype=dtype)
    context = output_size(layer, enc_params, source_size, dtype)
    dec_params = decoder.init(k_dec, target_embed_size, dtype=dtype)
    leaves = jax.tree.leaves(jax.eval_shape(decoder.initial_carry, dec_params, ()))
    if any(leaf.ndim != 1 for leaf in leaves):
      raise ValueError(
        f"encoder_decoder: the bridge needs decoder carry leaves of shape (H,) per example; "
        f"{decoder.name} has {[tuple(leaf.shape) for leaf in leaves]}"
      )
    bridge = tuple(
      dense(leaf.shape[0]).init(k, context, dtype=dtype)
      for leaf, k in zip(leaves, jax.random.split(k_bridge, len(leaves)), strict=True)
    )
    features = cell_output_size(decoder, dec_params, target_embed_size, dtype)
    return Seq2SeqParams(
      source_embed,
      enc_params,
      bridge,
      target_embed.init(k_te, dtype=dtype),
      dec_params,
      readout.init(k_r, features, dtype=dtype),
    )

  def encode(params, source, *, source_lengths=None, key=None):
    k_in, k_layer, _ = _split3(key)
    if params.source_embed is not None:
      vocab_size, features = params.source_embed.table.shape
      source = embedding(vocab_size, features).apply(params.source_embed, source)
    source = variational_dropout(k_in, source, input_dropout)
    ys, _ = layer.apply(params.encoder, source, lengths=source_lengths, **_layer_key(k_layer))
    summary = layer.last(ys, source_lengths)
    template = decoder.initial_carry(params.decoder, summary.shape[:-1])
    treedef = jax.tree.structure(template)
    states = [jnp.tanh(summary @ p.w + p.b) for p in params.bridge]
    return jax.tree.unflatten(treedef, states)

  def apply(params, source, target_in, *, source_lengths=None, target_lengths=None, key=None):
    k_encode, k_in, k_out = _split3(key)
    carry = encode(params, source, source_lengths=source_lengths, key=k_encode)
    xs = variational_dropout(
      k_in, target_embed.apply(params.target_embed, target_in), input_dropout
    )
    if target_lengths is not None:
      target_lengths = check_lengths(target_lengths, tuple(xs.shape[:-2]), xs.shape[-2])
    ys, _ = unroll(decoder, params.decoder, xs, carry, lengths=target_lengths)
    ys = variational_dropout(k_out, ys, output_dropout)
    return readout.apply(params.readout, ys)

  def greedy_decode(params, source, num_steps, *, start_token, source_lengths=None):
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
      raise ValueError(f"greedy_decode: num_steps must be a positive int; got {num_steps!r}")
    carry = encode(params, source, source_lengths=source_lengths)
    batch_shape = jax.tree.leaves(carry)[0].shape[:-1]
    start = jnp.full(batch_shape, start_token, jnp.int32)

    def next_token(state, _):
      carry, token = state
      x = target_embed.apply(params.target_embed, token)
      carry, y = decoder.step(params.decoder, carry, x)
      token = jnp.argmax(readout.apply(params.readout, y), axis=-1).astype(jnp.int32)
      return (carry, token), token

    _, tokens = jax.lax.scan(next_token, (carry, start), None, length=num_steps)
    return jnp.moveaxis(tokens, 0, -1)

  return EncoderDecoder(init, encode, apply, greedy_decode)


__all__ = [
  "EncoderDecoder",
  "Generator",
  "GeneratorParams",
  "ModelParams",
  "Seq2SeqParams",
  "SequenceModel",
  "encoder_decoder",
  "many_to_many",
  "many_to_one",
  "one_to_many",
  "sample",
  "shift_right",
]
