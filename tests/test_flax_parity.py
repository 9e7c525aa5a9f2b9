"""Parity with flax.linen's cells (an independent implementation) under converted weights.

flax keeps each gate as its own Dense (``{'ii': {'kernel'}, 'hi': {'kernel', 'bias'}, ...}``);
rnnlab fuses the gates along the output axis in the order i, f, g, o (LSTM) or r, z, n (GRU).
Both sides run whole sequences (``flax.linen.RNN`` against ``rnnlab.unroll``) at T=50 in
float32, so a wrong gate order, bias placement or carry layout shows up as a mismatch.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import interop

B, T, I, H = 3, 50, 4, 6
TOL = dict(rtol=1e-5, atol=1e-5)
XS = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, I)), jnp.float32)
# flax picks the final carry at lengths - 1, which is undefined for a length 0: keep all >= 1.
LENGTHS = jnp.array([T, 17, 1])
VALID = (jnp.arange(T) < LENGTHS[:, None])[..., None]  # (B, T, 1)


# ---- weight conversion: rnnlab.interop.from_flax (flax.linen params -> rnnlab params) ----------
# SimpleCell: w_ih = i.kernel, w_hh = h.kernel, b = i.bias. LSTMCell / OptimizedLSTMCell:
# input kernels ii..io (no bias), hidden hi..ho (with bias) -> b. GRUCell: ir, iz, in with
# bias; hr, hz without; hn with bias (inside the reset) -> b_hh = [0, 0, hn.bias].
# carry_from_flax: flax's LSTM carry is (c, h); rnnlab's is LSTMCarry(h, c).


# ---- the pairs under test --------------------------------------------------------------------

CASES = {
  "simple": (nn.SimpleCell, rnnlab.elman, interop.from_flax),
  "lstm": (nn.LSTMCell, rnnlab.lstm, interop.from_flax),
  "optimized_lstm": (nn.OptimizedLSTMCell, rnnlab.lstm, interop.from_flax),
  "gru": (nn.GRUCell, lambda h: rnnlab.gru(h, reset_after=True), interop.from_flax),
}
# (reverse, lengths): flax runs RNN(reverse=True, keep_order=True) for the reversed modes.
MODES = {
  "forward": (False, None),
  "reverse": (True, None),
  "lengths": (False, LENGTHS),
  "reverse_lengths": (True, LENGTHS),
}


@functools.cache
def setup(name):
  """The flax RNN and its params (every leaf random), and the rnnlab cell and converted params."""
  flax_cls, make_cell, convert = CASES[name]
  module = nn.RNN(flax_cls(features=H), return_carry=True)
  seed = list(CASES).index(name)
  # Only the structure of flax's params is needed (tracing, no compute): flax's default biases
  # are zero, so every leaf is drawn afresh to exercise each bias.
  flax_params = jax.eval_shape(module.init, jax.random.key(seed), XS)
  rng = np.random.default_rng(seed)
  flax_params = jax.tree.map(
    lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape), l.dtype), flax_params
  )
  params = convert(flax_params["params"]["cell"])
  return module, flax_params, make_cell(H), params


def runners(name):
  """Both sides as functions ``(params, xs, mode) -> (ys, carry)``."""
  module, flax_params, cell, params = setup(name)

  def run_flax(p, xs, mode):
    reverse, lengths = MODES[mode]
    carry, ys = module.apply(p, xs, seq_lengths=lengths, reverse=reverse, keep_order=True)
    return ys, interop.carry_from_flax(carry)

  def run_ours(p, xs, mode):
    reverse, lengths = MODES[mode]
    return rnnlab.unroll(cell, p, xs, lengths=lengths, reverse=reverse)

  return run_flax, flax_params, run_ours, params


def mask_padding(mode, ys):
  # Past the lengths flax keeps whatever its cell computed on the padding; rnnlab gives zeros.
  return jnp.where(VALID, ys, 0.0) if MODES[mode][1] is not None else ys


def assert_close(actual, expected, what):
  leaves_a, leaves_e = jax.tree.leaves(actual), jax.tree.leaves(expected)
  assert len(leaves_a) == len(leaves_e), what
  for a, e in zip(leaves_a, leaves_e, strict=True):
    assert a.shape == e.shape, (what, a.shape, e.shape)
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), **TOL, err_msg=what)


@pytest.mark.parametrize("name", CASES)
def test_outputs_and_final_carry_match_flax(name):
  run_flax, flax_params, run_ours, params = runners(name)
  # The converted params have the type, shapes and dtypes of the cell's own (traced init).
  _, _, cell, _ = setup(name)
  own = jax.eval_shape(lambda key: cell.init(key, I), jax.random.key(0))
  assert type(params) is type(own)
  assert [(l.shape, l.dtype) for l in params] == [(l.shape, l.dtype) for l in own]
  expected = jax.jit(lambda p, x: {m: run_flax(p, x, m) for m in MODES})(flax_params, XS)
  got = jax.jit(lambda p, x: {m: run_ours(p, x, m) for m in MODES})(params, XS)
  for mode in MODES:
    ys, carry = got[mode]
    flax_ys, flax_carry = expected[mode]
    assert ys.shape == (B, T, H) and ys.dtype == jnp.float32
    assert_close(mask_padding(mode, ys), mask_padding(mode, flax_ys), f"{name} {mode}: outputs")
    assert_close(carry, flax_carry, f"{name} {mode}: final carry")
  # The modes must really differ, or the reverse and lengths comparisons would prove nothing.
  fwd, rev = got["forward"][0], got["reverse"][0]
  assert float(jnp.abs(fwd - rev).max()) > 1e-2
  assert float(jnp.abs(got["lengths"][0] - got["reverse_lengths"][0]).max()) > 1e-2
  # rnnlab zeroes the outputs past each sequence's length, in both directions.
  for mode in ("lengths", "reverse_lengths"):
    assert float(jnp.abs(jnp.where(VALID, 0.0, got[mode][0])).max()) == 0.0


@pytest.mark.parametrize("name", CASES)
def test_input_gradients_match_flax(name):
  run_flax, flax_params, run_ours, params = runners(name)

  def grads(run, p):
    # Gradients of sum(outputs ** 2) over the valid steps, one per mode.
    def loss(xs, mode):
      ys, _ = run(p, xs, mode)
      return jnp.sum(mask_padding(mode, ys) ** 2)

    modes = ("forward", "reverse_lengths")
    return {mode: jax.grad(functools.partial(loss, mode=mode))(XS) for mode in modes}

  expected = jax.jit(lambda p: grads(run_flax, p))(flax_params)
  got = jax.jit(lambda p: grads(run_ours, p))(params)
  for mode, grad in got.items():
    assert float(jnp.abs(grad).max()) > 1e-3, mode
    assert_close(grad, expected[mode], f"{name} {mode}: d loss / d xs")
  # Inputs past a sequence's length cannot reach a valid output.
  assert float(jnp.abs(jnp.where(VALID, 0.0, got["reverse_lengths"])).max()) == 0.0
