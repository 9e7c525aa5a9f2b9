"""Tests for rnnlab.layers: one direction, bidirectional, stacked, last-state readout,
dense and embedding, each against a composition written by hand from rnnlab.unroll."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import gather_last

B, T, I, H = 3, 7, 4, 5
XS = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, I)), jnp.float32)
LENGTHS = jnp.array([7, 3, 0])
KEY = jax.random.key(0)


def close(a, b, tol=1e-5):
  for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(
      np.asarray(la, np.float32), np.asarray(lb, np.float32), rtol=tol, atol=tol
    )


def flip_valid(xs, lengths):
  """Reverses each sequence's valid part, keeping the padding at the end (numpy)."""
  xs = np.asarray(xs).copy()
  for b, n in enumerate(np.asarray(lengths)):
    xs[b, :n] = xs[b, :n][::-1]
  return jnp.asarray(xs)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_is_forward_and_reverse_unroll(merge):
  fw, bw = rnnlab.lstm(H), rnnlab.gru(H)
  layer = rnnlab.bidirectional(fw, bw, merge=merge)
  params = layer.init(KEY, I)
  ys, carry = jax.jit(lambda p, x: layer.apply(p, x, lengths=LENGTHS))(params, XS)
  ys_f, c_f = rnnlab.unroll(fw, params.forward, XS, lengths=LENGTHS)
  ys_b, c_b = rnnlab.unroll(bw, params.backward, XS, lengths=LENGTHS, reverse=True)
  expected = jnp.concatenate([ys_f, ys_b], -1) if merge == "concat" else ys_f + ys_b
  close(ys, expected)
  close(carry, (c_f, c_b))
  assert ys.shape == (B, T, 2 * H if merge == "concat" else H)


def test_backward_half_reads_each_sequence_from_its_own_end():
  layer = rnnlab.bidirectional(rnnlab.gru(H))
  params = layer.init(KEY, I)
  ys, _ = layer.apply(params, XS, lengths=LENGTHS)
  # Reference: a forward unroll over the flipped valid part, flipped back.
  ys_ref, _ = rnnlab.unroll(
    rnnlab.gru(H), params.backward, flip_valid(XS, LENGTHS), lengths=LENGTHS
  )
  close(ys[..., H:], flip_valid(ys_ref, LENGTHS))


def test_stacked_equals_layers_by_hand_and_residual_adds_inputs():
  bi = rnnlab.bidirectional(rnnlab.gru(H))
  top = rnnlab.lstm(2 * H)
  for residual in (False, True):
    layer = rnnlab.stacked([bi, top], residual=residual)
    params = layer.init(KEY, I)
    ys, carry = layer.apply(params, XS, lengths=LENGTHS)
    h1, c1 = bi.apply(params[0], XS, lengths=LENGTHS)
    h2, c2 = rnnlab.unroll(top, params[1], h1, lengths=LENGTHS)
    close(ys, h2 + h1 if residual else h2)
    close(carry, (c1, c2))


def test_stacked_residual_width_mismatch_raises():
  layer = rnnlab.stacked([rnnlab.elman(H), rnnlab.elman(H + 1)], residual=True)
  with pytest.raises(
    ValueError, match=r"layer 1 \(elman\) to keep the width; its input has 5 .* output 6"
  ):
    layer.init(KEY, I)


def test_stacked_rejects_empty_and_non_layers():
  with pytest.raises(ValueError, match="at least one layer"):
    rnnlab.stacked([])
  with pytest.raises(TypeError, match="expected an rnnlab Cell or Layer; got str"):
    rnnlab.stacked(["lstm"])


def test_last_state_readout():
  fwd = rnnlab.rnn(rnnlab.elman(H))
  params = fwd.init(KEY, I)
  ys, carry = fwd.apply(params, XS, lengths=LENGTHS)
  last = fwd.last(ys, LENGTHS)
  close(last[:2], carry[:2])  # the final carry of an Elman cell is its last valid output
  close(last[1], ys[1, 2])
  assert float(jnp.abs(last[2]).max()) == 0.0  # length 0: zeros
  close(fwd.last(ys), ys[:, -1])

  bi = rnnlab.bidirectional(rnnlab.elman(H))
  bp = bi.init(KEY, I)
  ys, (c_f, c_b) = bi.apply(bp, XS, lengths=LENGTHS)
  last = bi.last(ys, LENGTHS)
  close(last, jnp.concatenate([gather_last(ys[..., :H], LENGTHS), ys[:, 0, H:]], -1))
  # Each direction's final state is its final carry (a zero-length sequence keeps zeros).
  close(last[:2], jnp.concatenate([c_f, c_b], -1)[:2])


def test_last_of_summed_bidirectional_raises():
  layer = rnnlab.bidirectional(rnnlab.gru(H), merge="sum")
  ys, _ = layer.apply(layer.init(KEY, I), XS)
  with pytest.raises(ValueError, match="use merge='concat'"):
    layer.last(ys)


def test_bidirectional_rejects_unknown_merge_and_unequal_sizes():
  with pytest.raises(ValueError, match=r"merge='mean'; expected one of \('concat', 'sum'\)"):
    rnnlab.bidirectional(rnnlab.gru(H), merge="mean")
  with pytest.raises(ValueError, match="outputs of equal size; got 5 and 6"):
    rnnlab.bidirectional(rnnlab.gru(H), rnnlab.gru(H + 1)).init(KEY, I)


def test_padding_changes_neither_outputs_nor_gradients_of_a_stacked_bidirectional_model():
  layer = rnnlab.stacked([rnnlab.bidirectional(rnnlab.lstm(H)), rnnlab.gru(H)])
  params = layer.init(KEY, I)
  pad = (jnp.arange(T) >= LENGTHS[:, None])[..., None]
  noisy = jnp.where(pad, 1e3 * jnp.ones_like(XS), XS)

  def loss(p, x):
    ys, _ = layer.apply(p, x, lengths=LENGTHS)
    return jnp.sum(jnp.sin(ys)), ys

  (l0, ys0), g0 = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, XS)
  (l1, ys1), g1 = jax.jit(jax.value_and_grad(loss, has_aux=True))(params, noisy)
  close(ys0, ys1)
  close(g0, g1)
  assert any(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g0))


def test_bfloat16_layers_keep_their_dtype():
  layer = rnnlab.stacked([rnnlab.bidirectional(rnnlab.lstm(H)), rnnlab.gru(H)])
  params = layer.init(KEY, I, jnp.bfloat16)
  assert {l.dtype for l in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
  ys, carry = layer.apply(params, XS, lengths=LENGTHS)
  assert ys.shape == (B, T, H) and ys.dtype == jnp.bfloat16
  assert all(l.dtype == jnp.bfloat16 for l in jax.tree.leaves(carry))


def test_rnn_layer_reverse_and_apply_errors():
  layer = rnnlab.rnn(rnnlab.elman(H), reverse=True)
  params = layer.init(KEY, I)
  ys, _ = layer.apply(params, XS)
  ref, _ = rnnlab.unroll(rnnlab.elman(H), params, XS[:, ::-1])
  close(ys, ref[:, ::-1])
  close(layer.last(ys), ys[:, 0])
  with pytest.raises(ValueError, match=r"xs must have shape \(\*batch, T, I\); got \(4,\)"):
    layer.apply(params, jnp.ones((4,)))
  with pytest.raises(TypeError, match="expected an rnnlab Cell; got function"):
    rnnlab.rnn(rnnlab.elman(H).step)


def test_dense():
  layer = rnnlab.dense(3)
  params = layer.init(KEY, I)
  assert params.w.shape == (I, 3) and params.b.shape == (3,)
  params = params._replace(b=jnp.arange(3.0))
  close(layer.apply(params, XS), np.asarray(XS) @ np.asarray(params.w) + np.arange(3.0))
  with pytest.raises(ValueError, match=r"x has shape \(2, 7\); expected \(\.\.\., 4\)"):
    layer.apply(params, jnp.ones((2, 7)))
  with pytest.raises(ValueError, match="features must be a positive int; got 0"):
    rnnlab.dense(0)


def test_embedding():
  table = rnnlab.embedding(10, 4)
  params = table.init(KEY)
  tokens = jnp.array([[0, 9, 3], [2, 2, 1]])
  out = table.apply(params, tokens)
  close(out, np.asarray(params.table)[np.asarray(tokens)])
  assert out.shape == (2, 3, 4)
  np.testing.assert_allclose(float(jnp.std(table.init(jax.random.key(1)).table)), 0.5, rtol=0.3)
  with pytest.raises(ValueError, match=r"token 10 is outside the vocabulary \[0, 10\)"):
    table.apply(params, jnp.array([1, 10]))
  with pytest.raises(ValueError, match=r"token -1 is outside the vocabulary"):
    table.apply(params, jnp.array([-1, 2]))
  with pytest.raises(ValueError, match="tokens must be integers; got dtype float32"):
    table.apply(params, jnp.array([1.0]))
