r"""Demo: how much gradient reaches step t from a loss at the last step, per cell.

Unrolls a vanilla (tanh) RNN, an LSTM and a GRU at initialisation on the same
random input and prints ``||dL/dh_t||`` against the lag ``T - 1 - t``, where
``L = mean_b <h_{T-1}, v>`` for a fixed random unit readout ``v``. All ``T``
norms come from one backward pass (:func:`rnnlab.diagnostics.state_grads`: a
zero probe ``d_t`` is added to each state inside the scan, ``h_t <- h_t + d_t``,
and ``dL/dd_t = dL/dh_t``).

    python -m experiments.demo --T=200 --hidden=64 --gain=1.0
"""

from __future__ import annotations

import logging
import math
import time

import jax
import jax.numpy as jnp
from absl import app, flags

import rnnlab
from rnnlab import diagnostics

_T = flags.DEFINE_integer("T", 200, "Sequence length (time steps).", lower_bound=2)
_HIDDEN = flags.DEFINE_integer("hidden", 64, "Hidden size H of every cell.", lower_bound=1)
_INPUT = flags.DEFINE_integer("input_size", 8, "Input features per step.", lower_bound=1)
_BATCH = flags.DEFINE_integer("batch", 16, "Sequences per batch.", lower_bound=1)
_GAIN = flags.DEFINE_float("gain", 1.0, "Gain g of the orthogonal recurrent init.", lower_bound=0)
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed (the same seed prints the same numbers).")

CELLS = {"elman": rnnlab.elman, "lstm": rnnlab.lstm, "gru": rnnlab.gru}


def hidden_state(carry):
  """The hidden state ``h`` of a built-in cell's carry."""
  return carry.h if isinstance(carry, rnnlab.LSTMCarry) else carry


def hidden_grad_norms(cell: rnnlab.Cell, params, xs_BxTxI: jax.Array, readout_H: jax.Array):
  """``||dL/dh_t||`` for t = 0..T-1 (mean over the batch), from one backward pass."""
  batch = xs_BxTxI.shape[0]

  def loss(params, xs):
    _, carry = rnnlab.unroll(cell, params, xs)
    return jnp.mean(hidden_state(carry) @ readout_H)

  # Organised like the params: the cell's own params give its carry, time first.
  grads = diagnostics.state_grads(loss)(params, xs_BxTxI)
  # Per-sequence gradient norms (time first), scaled back from the batch mean.
  return jnp.mean(diagnostics.step_norms(hidden_state(grads)) * batch, axis=-1)


def main(argv):
  del argv
  # The backend probe's INFO lines (no TPU here, ...) are noise in a demo.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  num_steps, hidden = _T.value, _HIDDEN.value
  key = jax.random.key(_SEED.value)
  k_x, k_v, k_p = jax.random.split(key, 3)
  xs = jax.random.normal(k_x, (_BATCH.value, num_steps, _INPUT.value))
  readout = jax.random.normal(k_v, (hidden,))
  readout = readout / jnp.linalg.norm(readout)

  print(
    f"||dL/dh_t|| against lag T-1-t at initialisation "
    f"(T={num_steps}, H={hidden}, batch={_BATCH.value}, orthogonal gain={_GAIN.value}, "
    f"seed={_SEED.value}; L = mean <h_T, v>, |v| = 1)"
  )
  norms = {}
  start = time.perf_counter()
  for name, factory in CELLS.items():
    cell = factory(hidden, gain=_GAIN.value)
    params = cell.init(k_p, _INPUT.value)
    norms[name] = jax.jit(hidden_grad_norms, static_argnums=0)(cell, params, xs, readout)
  lags = sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, num_steps - 1})
  lags = [lag for lag in lags if lag < num_steps]
  print(f"{'lag':>6} " + " ".join(f"{name:>12}" for name in CELLS))
  for lag in lags:
    row = " ".join(f"{float(norms[name][num_steps - 1 - lag]):12.3e}" for name in CELLS)
    print(f"{lag:>6} {row}")
  print("fitted decay per step (slope of log||dL/dh_t|| against lag, over norms > 1e-30):")
  for name in CELLS:
    by_lag = norms[name][::-1]
    # Norms near float32's smallest normal (1e-38) have lost their precision: leave them out.
    log_by_lag = jnp.where(by_lag > 1e-30, jnp.log(by_lag), -jnp.inf)
    rate = float(diagnostics.decay_rate(log_by_lag, jnp.arange(num_steps)))
    halving = f"halves every {math.log(2) / -rate:.1f} steps" if rate < 0 else "does not decay"
    print(f"  {name:>6}: {rate:+.4f} per step (the gradient {halving})")
  print(f"({time.perf_counter() - start:.1f} s including compilation)")


if __name__ == "__main__":
  app.run(main)
