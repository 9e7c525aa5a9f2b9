"""Parity with flax.linen's cells (an independent implementation) under converted weights.

flax stores each gate as its own Dense (``{'ii': {'kernel'}, 'hi': {'kernel', 'bias'}, ...}``);
rnnlab fuses them along the output axis in the gate order i, f, g, o (LSTM) or r, z, n (GRU).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab

B, T, I, H = 3, 50, 4, 6
TOL = dict(rtol=1e-5, atol=1e-5)


def _random_flax_params(module, xs, seed):
  # flax's default biases are zero: randomise every leaf so each bias is exercised.
  params = module.init(jax.random.key(seed), xs)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape), l.dtype), params)


def from_flax_simple(p):
  p = p["params"]["cell"]
  return rnnlab.ElmanParams(w_ih=p["i"]["kernel"], w_hh=p["h"]["kernel"], b=p["i"]["bias"])


def from_flax_lstm(p):
  p = p["params"]["cell"]
  return rnnlab.LSTMParams(
    w_ih=jnp.concatenate([p[f"i{g}"]["kernel"] for g in "ifgo"], axis=1),
    w_hh=jnp.concatenate([p[f"h{g}"]["kernel"] for g in "ifgo"], axis=1),
    b=jnp.concatenate([p[f"h{g}"]["bias"] for g in "ifgo"]),
  )


def from_flax_gru(p):
  p = p["params"]["cell"]
  zeros = jnp.zeros((H,), p["hn"]["bias"].dtype)
  return rnnlab.GRUParams(
    w_ih=jnp.concatenate([p[f"i{g}"]["kernel"] for g in "rzn"], axis=1),
    w_hh=jnp.concatenate([p[f"h{g}"]["kernel"] for g in "rzn"], axis=1),
    b_ih=jnp.concatenate([p[f"i{g}"]["bias"] for g in "rzn"]),
    # flax folds b_hr and b_hz into the input biases and keeps b_hn.
    b_hh=jnp.concatenate([zeros, zeros, p["hn"]["bias"]]),
  )


def carry_from_flax(carry):
  # flax's LSTM carry is (c, h); rnnlab's is LSTMCarry(h, c).
  return rnnlab.LSTMCarry(h=carry[1], c=carry[0]) if isinstance(carry, tuple) else carry


CASES = {
  "simple": (nn.SimpleCell, rnnlab.elman(H), from_flax_simple),
  "lstm": (nn.LSTMCell, rnnlab.lstm(H), from_flax_lstm),
  "optimized_lstm": (nn.OptimizedLSTMCell, rnnlab.lstm(H), from_flax_lstm),
  "gru": (nn.GRUCell, rnnlab.gru(H), from_flax_gru),
}
XS = jnp.asarray(np.random.default_rng(1).standard_normal((B, T, I)), jnp.float32)
LENGTHS = jnp.array([T, 17, 1])


def assert_close(a, b):
  for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(la), np.asarray(lb), **TOL)


def run_both(name, *, reverse=False, lengths=None):
  flax_cell, cell, convert = CASES[name]
  module = nn.RNN(flax_cell(H), return_carry=True, reverse=reverse, keep_order=True)
  flax_params = _random_flax_params(module, XS, seed=len(name))
  params = convert(flax_params)

  def flax_run(p, xs):
    return module.apply(p, xs, seq_lengths=lengths)

  def ours_run(p, xs):
    ys, carry = rnnlab.unroll(cell, p, xs, lengths=lengths, reverse=reverse)
    return carry, ys

  return flax_run, flax_params, ours_run, params


@pytest.mark.parametrize("name", CASES)
def test_outputs_and_final_carry_match_flax(name):
  flax_run, flax_params, ours_run, params = run_both(name)
  flax_carry, flax_ys = jax.jit(flax_run)(flax_params, XS)
  carry, ys = jax.jit(ours_run)(params, XS)
  assert ys.shape == (B, T, H)
  assert_close(ys, flax_ys)
  assert_close(carry, carry_from_flax(flax_carry))


@pytest.mark.parametrize("name", CASES)
def test_input_gradients_match_flax(name):
  flax_run, flax_params, ours_run, params = run_both(name)
  flax_grad = jax.jit(jax.grad(lambda x: jnp.sum(flax_run(flax_params, x)[1] ** 2)))(XS)
  grad = jax.jit(jax.grad(lambda x: jnp.sum(ours_run(params, x)[1] ** 2)))(XS)
  assert float(jnp.abs(grad).max()) > 0
  assert_close(grad, flax_grad)


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_and_reverse_match_flax(name, reverse):
  flax_run, flax_params, ours_run, params = run_both(name, reverse=reverse, lengths=LENGTHS)
  flax_carry, flax_ys = jax.jit(flax_run)(flax_params, XS)
  carry, ys = jax.jit(ours_run)(params, XS)
  valid = (jnp.arange(T) < LENGTHS[:, None])[..., None]
  # flax leaves its own values past the lengths; rnnlab zeroes them.
  assert_close(jnp.where(valid, ys, 0), jnp.where(valid, flax_ys, 0))
  assert float(jnp.abs(jnp.where(valid, 0, ys)).max()) == 0.0
  assert_close(carry, carry_from_flax(flax_carry))
