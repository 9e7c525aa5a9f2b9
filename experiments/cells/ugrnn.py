r"""The update-gate RNN (UGRNN) of Collins et al. 2017, a cell of one's own for the runner.

A GRU without the reset gate::

    g  = sigmoid(x W_ig + h W_hg + b_g)        (the update gate)
    c  = tanh(x W_ic + h W_hc + b_c)           (the candidate)
    h' = g * h + (1 - g) * c

Written from scratch as a plain :class:`rnnlab.Cell` (no ``CellParts``: the
runner measures its Lyapunov exponent, and records the diagnostics that need
parts as n/a). ``config.model.cell = "experiments.cells.ugrnn:ugrnn"`` puts it in
any experiment; the runner calls ``ugrnn(hidden_size, **options)`` with the
``config.model`` options this signature names (``recurrent_init``, ``gain``,
``input_init``), so the sweep's init scheme and gain apply to it as to the
built-in cells.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

import rnnlab
from rnnlab import initializers


class UGRNNParams(NamedTuple):
  w_ih: jax.Array  # (I, 2H), column blocks g, c
  w_hh: jax.Array  # (H, 2H)
  b: jax.Array  # (2H,)


def ugrnn(
  hidden_size: int,
  recurrent_init: str = "orthogonal",
  gain: float = 1.0,
  input_init: str = "lecun_normal",
  gate_bias: float = 1.0,
) -> rnnlab.Cell:
  """A UGRNN of ``hidden_size`` units; ``gate_bias`` starts g = sigmoid(1) = 0.73 (keep h)."""
  H = hidden_size
  w_hh_init = initializers.recurrent(recurrent_init, H, gain)
  w_ih_init = initializers.input_weights(input_init, H)

  def init(key, input_size, *, dtype=jnp.float32):
    k_ih, k_hh = jax.random.split(key)
    return UGRNNParams(
      w_ih=initializers.per_gate(w_ih_init, k_ih, input_size, H, 2, dtype),
      w_hh=initializers.per_gate(w_hh_init, k_hh, H, H, 2, dtype),  # each block its own draw
      b=jnp.zeros(2 * H, dtype).at[:H].set(gate_bias),
    )

  def initial_carry(params, batch_shape=()):
    return jnp.zeros((*batch_shape, params.w_hh.shape[0]), params.w_hh.dtype)

  def step(params, h, x):
    a = x.astype(params.w_ih.dtype) @ params.w_ih + h @ params.w_hh + params.b
    a_g, a_c = jnp.split(a, 2, axis=-1)
    g, c = jax.nn.sigmoid(a_g), jnp.tanh(a_c)
    h = g * h + (1 - g) * c
    return h, h  # (new carry, output)

  return rnnlab.Cell(init, initial_carry, step, "ugrnn")
