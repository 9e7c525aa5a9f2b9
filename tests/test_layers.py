"""Tests for rnnlab.layers: one direction, bidirectional, stacked, the last-state readout,
dense and embedding, each against a composition written by hand from rnnlab.unroll and NumPy;
variational dropout by direct inspection of its masks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab.layers import gather_last

B, T, I, H = 3, 7, 4, 5
XS = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, I)), jnp.float32)
LENGTHS = jnp.array([7, 3, 0])
PAD = (jnp.arange(T) >= LENGTHS[:, None])[..., None]  # (B, T, 1): True past the lengths
KEY = jax.random.key(0)


def close(a, b, tol=1e-5):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for la, lb in zip(leaves_a, leaves_b, strict=True):
    assert la.shape == lb.shape, (la.shape, lb.shape)
    np.testing.assert_allclose(
      np.asarray(la, np.float32), np.asarray(lb, np.float32), rtol=tol, atol=tol
    )


def init_shapes(layer, dtype=jnp.float32):
  """The params ``layer.init`` would give, traced, not run (errors at init raise here too)."""
  return jax.eval_shape(lambda key: layer.init(key, I, dtype=dtype), KEY)


def random_params(layer, seed=0, scale=0.5, dtype=jnp.float32):
  """Params with the structure of ``layer.init``'s, every leaf (biases too) drawn at random.

  Eager initialisation compiles a kernel per weight shape; drawing with NumPy compiles none.
  """
  rng = np.random.default_rng(seed)
  return jax.tree.map(
    lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), dtype), init_shapes(layer)
  )


def last_by_hand(ys, lengths):
  """``ys[b, lengths[b] - 1]``, zeros for a length 0 (NumPy, one batch axis)."""
  ys, lengths = np.asarray(ys), np.asarray(lengths)
  out = np.zeros((ys.shape[0], ys.shape[-1]), ys.dtype)
  for b, n in enumerate(lengths):
    if n > 0:
      out[b] = ys[b, n - 1]
  return out


def flip_valid(xs, lengths):
  """Reverses each sequence's valid part in time, leaving the padding where it is (NumPy)."""
  xs = np.asarray(xs).copy()
  for b, n in enumerate(np.asarray(lengths)):
    xs[b, :n] = xs[b, :n][::-1]
  return jnp.asarray(xs)


# ---- bidirectional ---------------------------------------------------------------------------

BI_FW, BI_BW = rnnlab.lstm(H), rnnlab.gru(H)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_is_a_forward_and_a_reverse_unroll(merge):
  layer = rnnlab.bidirectional(BI_FW, BI_BW, merge=merge)
  params = random_params(layer, seed=1)
  assert isinstance(params, rnnlab.layers.BidirectionalParams)

  @jax.jit
  def both(params, xs):
    got = layer.apply(params, xs, lengths=LENGTHS)
    fw = rnnlab.unroll(BI_FW, params.forward, xs, lengths=LENGTHS)
    bw = rnnlab.unroll(BI_BW, params.backward, xs, lengths=LENGTHS, reverse=True)
    return got, fw, bw

  (ys, carry), (ys_f, c_f), (ys_b, c_b) = both(params, XS)
  expected = jnp.concatenate([ys_f, ys_b], -1) if merge == "concat" else ys_f + ys_b
  assert ys.shape == (B, T, 2 * H if merge == "concat" else H)
  close(ys, expected)
  close(carry, rnnlab.layers.BidirectionalCarry(c_f, c_b))
  # The two directions really differ (the reverse is no forward in disguise).
  assert float(jnp.abs(ys_f - ys_b).max()) > 1e-2


def test_backward_half_reads_each_sequence_from_its_own_end():
  cell = rnnlab.gru(H)
  layer = rnnlab.bidirectional(cell)
  params = random_params(layer, seed=2)
  ys, (_, c_b) = layer.apply(params, XS, lengths=LENGTHS)
  # Reference: a forward unroll over the flipped valid part of each sequence, flipped back.
  ref, ref_carry = rnnlab.unroll(cell, params.backward, flip_valid(XS, LENGTHS), lengths=LENGTHS)
  close(ys[..., H:], flip_valid(ref, LENGTHS))
  close(c_b, ref_carry)
  # Without lengths the backward half is a plain flip in time.
  ys, _ = layer.apply(params, XS)
  ref, _ = rnnlab.unroll(cell, params.backward, XS[:, ::-1])
  close(ys[..., H:], ref[:, ::-1])


def test_bidirectional_rejects_unknown_merge_and_unequal_sizes():
  with pytest.raises(ValueError, match=r"merge='mean'; expected one of \('concat', 'sum'\)"):
    rnnlab.bidirectional(rnnlab.gru(H), merge="mean")
  with pytest.raises(ValueError, match="outputs of equal size; got 5 and 6"):
    init_shapes(rnnlab.bidirectional(rnnlab.gru(H), rnnlab.gru(H + 1)))
  # The backward cell defaults to one like the forward cell, with params of its own.
  params = rnnlab.bidirectional(rnnlab.elman(H)).init(KEY, I)
  assert jax.tree.structure(params.forward) == jax.tree.structure(params.backward)
  assert float(jnp.abs(params.forward.w_ih - params.backward.w_ih).max()) > 0


# ---- stacked ---------------------------------------------------------------------------------


@pytest.mark.parametrize("residual", [False, True])
def test_stacked_equals_its_layers_applied_by_hand(residual):
  # Cells and Layers mixed: a bidirectional layer, a bare cell, a reverse layer.
  gru, lstm, elman = rnnlab.gru(H), rnnlab.lstm(2 * H), rnnlab.elman(2 * H)
  layer = rnnlab.stacked(
    [rnnlab.bidirectional(gru), lstm, rnnlab.rnn(elman, reverse=True)], residual=residual
  )
  params = random_params(layer, seed=3)
  assert len(params) == 3

  @jax.jit
  def both(p, xs):
    got = layer.apply(p, xs, lengths=LENGTHS)
    f1, cf = rnnlab.unroll(gru, p[0].forward, xs, lengths=LENGTHS)
    b1, cb = rnnlab.unroll(gru, p[0].backward, xs, lengths=LENGTHS, reverse=True)
    h1 = jnp.concatenate([f1, b1], -1)
    h2, c2 = rnnlab.unroll(lstm, p[1], h1, lengths=LENGTHS)
    h2 = h2 + h1 if residual else h2  # the first layer never adds (its width changes)
    h3, c3 = rnnlab.unroll(elman, p[2], h2, lengths=LENGTHS, reverse=True)
    h3 = h3 + h2 if residual else h3
    return got, (h3, ((cf, cb), c2, c3))

  (ys, carry), (ref, ref_carry) = both(params, XS)
  assert ys.shape == (B, T, 2 * H)
  close(ys, ref)
  close(carry, ref_carry)
  assert float(jnp.abs(jnp.where(PAD, ys, 0.0)).max()) == 0.0  # zero past lengths
  # The stack reads its final state like its top layer (a reverse one: position 0).
  close(layer.last(ys, LENGTHS), ys[:, 0])


def test_stacked_residual_width_mismatch_raises_at_init():
  layer = rnnlab.stacked([rnnlab.elman(H), rnnlab.elman(H + 1)], residual=True)
  with pytest.raises(
    ValueError, match=r"layer 1 \(elman\) to keep the width; its input has 5 .* output 6"
  ):
    init_shapes(layer)
  # A bidirectional concat doubles the width.
  layer = rnnlab.stacked([rnnlab.elman(H), rnnlab.bidirectional(rnnlab.elman(H))], residual=True)
  with pytest.raises(ValueError, match=r"layer 1 \(bidirectional\(elman,elman\)\) to keep"):
    init_shapes(layer)
  # Without residual the same stack is fine.
  init_shapes(rnnlab.stacked([rnnlab.elman(H), rnnlab.elman(H + 1)]))


def test_stacked_rejects_empty_and_non_layers():
  with pytest.raises(ValueError, match="at least one layer"):
    rnnlab.stacked([])
  with pytest.raises(TypeError, match="expected an rnnlab Cell or Layer; got str"):
    rnnlab.stacked(["lstm"])


# ---- last-state readout ----------------------------------------------------------------------


def test_forward_last_is_the_output_at_lengths_minus_one():
  cell = rnnlab.elman(H)
  layer = rnnlab.rnn(cell)
  params = random_params(layer, seed=4)
  ys, carry = layer.apply(params, XS, lengths=LENGTHS)
  last = layer.last(ys, LENGTHS)
  close(last, last_by_hand(ys, LENGTHS))
  assert float(jnp.abs(last[2]).max()) == 0.0  # length 0: zeros
  close(last[:2], carry[:2])  # an Elman cell's final carry is its last valid output
  close(layer.last(ys), ys[:, -1])


def test_bidirectional_last_is_forward_at_lengths_minus_one_and_backward_at_zero():
  layer = rnnlab.bidirectional(rnnlab.gru(H))
  params = random_params(layer, seed=5)
  ys, (c_f, c_b) = layer.apply(params, XS, lengths=LENGTHS)
  last = layer.last(ys, LENGTHS)
  ys_np = np.asarray(ys)
  close(last, np.concatenate([last_by_hand(ys_np[..., :H], LENGTHS), ys_np[:, 0, H:]], -1))
  # Each direction's final state is its final carry (a GRU outputs its carry).
  close(last, jnp.concatenate([c_f, c_b], -1))
  ys, _ = layer.apply(params, XS)
  close(layer.last(ys), jnp.concatenate([ys[:, -1, :H], ys[:, 0, H:]], -1))


def test_last_of_summed_bidirectional_raises():
  layer = rnnlab.bidirectional(rnnlab.gru(H), merge="sum")
  ys, _ = layer.apply(random_params(layer), XS)
  with pytest.raises(ValueError, match="cannot be read from summed outputs; use merge='concat'"):
    layer.last(ys, LENGTHS)
  stack = rnnlab.stacked([rnnlab.gru(H), layer])
  with pytest.raises(ValueError, match="use merge='concat'"):
    stack.last(ys)


def test_gather_last():
  ys = jnp.asarray(np.random.default_rng(2).standard_normal((2, 3, T, 2)), jnp.float32)
  lengths = jnp.array([[1, 7, 0], [4, 2, 7]])
  got = gather_last(ys, lengths)
  assert got.shape == (2, 3, 2)
  ys_np = np.asarray(ys)
  for i in range(2):
    close(got[i], last_by_hand(ys_np[i], lengths[i]))
  close(gather_last(ys), ys[..., -1, :])
  close(jax.jit(gather_last)(ys, lengths), got)  # traced lengths
  with pytest.raises(ValueError, match=r"lengths must lie in \[0, T=7\]; got 8"):
    gather_last(ys, lengths.at[1, 1].set(8))
  with pytest.raises(ValueError, match=r"lengths has shape \(3,\); expected the batch shape"):
    gather_last(ys, jnp.array([1, 2, 3]))


# ---- padding, dtypes, shapes -----------------------------------------------------------------


def test_padding_changes_neither_outputs_nor_gradients_of_a_stacked_bidirectional_model():
  layer = rnnlab.stacked(
    [rnnlab.bidirectional(rnnlab.lstm(H)), rnnlab.bidirectional(rnnlab.gru(H))], residual=True
  )
  params = random_params(layer, seed=6)

  @jax.jit
  def loss_and_grad(p, x):
    def loss(p):
      ys, _ = layer.apply(p, x, lengths=LENGTHS)
      return jnp.sum(jnp.sin(3.0 * ys) + ys**2), ys

    return jax.value_and_grad(loss, has_aux=True)(p)

  noisy = jnp.where(PAD, 1e3 * jnp.cos(jnp.arange(I, dtype=jnp.float32) + 1.0), XS)
  assert float(jnp.abs(noisy - XS).max()) > 100  # the padding really changed
  (l0, ys0), g0 = loss_and_grad(params, XS)
  (l1, ys1), g1 = loss_and_grad(params, noisy)
  close(ys0, ys1)
  close(l0, l1)
  close(g0, g1)
  # Not even NaN or inf in the padding reaches the outputs or the gradients.
  bad = jnp.where(PAD, jnp.array([jnp.nan, jnp.inf, -jnp.inf, jnp.nan]), XS)
  (l2, ys2), g2 = loss_and_grad(params, bad)
  close(ys0, ys2)
  close(l0, l2)
  close(g0, g2)
  assert float(jnp.abs(jnp.where(PAD, ys0, 0.0)).max()) == 0.0
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(g0))


def test_shapes_and_dtypes_of_layer_outputs():
  layers = {
    "rnn": (rnnlab.rnn(rnnlab.lstm(H)), H),
    "concat": (rnnlab.bidirectional(rnnlab.gru(H)), 2 * H),
    "sum": (rnnlab.bidirectional(rnnlab.elman(H), merge="sum"), H),
    "stacked": (rnnlab.stacked([rnnlab.bidirectional(rnnlab.lstm(H)), rnnlab.gru(H)]), H),
  }
  xs = XS.reshape(1, B, T, I)  # two batch dimensions
  lengths = LENGTHS.reshape(1, B)
  for name, (layer, features) in layers.items():
    for dtype in (jnp.float32, jnp.bfloat16):
      params = init_shapes(layer, dtype)
      assert {l.dtype for l in jax.tree.leaves(params)} == {jnp.dtype(dtype)}, name
      # Shapes and dtypes by tracing, no compute.
      ys, carry = jax.eval_shape(functools.partial(layer.apply, lengths=lengths), params, xs)
      assert ys.shape == (1, B, T, features) and ys.dtype == dtype, (name, dtype)
      expected_carry = jax.eval_shape(
        functools.partial(layer.initial_carry, batch_shape=(1, B)), params
      )
      assert jax.tree.structure(carry) == jax.tree.structure(expected_carry), name
      for leaf, want in zip(jax.tree.leaves(carry), jax.tree.leaves(expected_carry), strict=True):
        assert leaf.shape == want.shape and leaf.shape[:2] == (1, B), name
        assert leaf.dtype == want.dtype == dtype, name


def test_bfloat16_params_compute_nearly_what_float32_params_do():
  layer = rnnlab.stacked([rnnlab.bidirectional(rnnlab.lstm(H)), rnnlab.gru(H)])
  params = random_params(layer, dtype=jnp.bfloat16)
  assert {l.dtype for l in jax.tree.leaves(params)} == {jnp.dtype(jnp.bfloat16)}
  params32 = jax.tree.map(lambda l: l.astype(jnp.float32), params)
  apply = jax.jit(lambda p, x: layer.apply(p, x, lengths=LENGTHS))
  ys, carry = apply(params, XS)
  ys32, _ = apply(params32, XS)
  assert ys.dtype == jnp.bfloat16 and all(l.dtype == jnp.bfloat16 for l in jax.tree.leaves(carry))
  assert float(jnp.abs(ys32).max()) > 0.05
  np.testing.assert_allclose(np.asarray(ys, np.float32), np.asarray(ys32), atol=0.05)


def test_rnn_layer_reverse_and_errors():
  cell = rnnlab.elman(H)
  layer = rnnlab.rnn(cell, reverse=True)
  params = random_params(layer, seed=7)
  ys, _ = layer.apply(params, XS)
  ref, _ = rnnlab.unroll(cell, params, XS[:, ::-1])
  close(ys, ref[:, ::-1])
  close(layer.last(ys, LENGTHS), ys[:, 0])
  with pytest.raises(ValueError, match=r"xs must have shape \(\*batch, T, I\); got \(4,\)"):
    layer.apply(params, jnp.ones((4,)))
  with pytest.raises(TypeError, match="expected an rnnlab Cell; got function"):
    rnnlab.rnn(cell.step)


# ---- dense and embedding ---------------------------------------------------------------------


def test_dense():
  layer = rnnlab.dense(3)
  params = layer.init(KEY, I)
  assert params.w.shape == (I, 3) and params.b.shape == (3,)
  params = params._replace(b=jnp.array([0.5, -1.0, 2.0]))
  expected = np.asarray(XS) @ np.asarray(params.w) + np.array([0.5, -1.0, 2.0])
  close(layer.apply(params, XS), expected)
  p16 = jax.tree.map(lambda l: l.astype(jnp.bfloat16), params)
  assert layer.apply(p16, XS).dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"x has shape \(2, 7\); expected \(\.\.\., 4\)"):
    layer.apply(params, jnp.ones((2, 7)))
  with pytest.raises(ValueError, match="features must be a positive int; got 0"):
    rnnlab.dense(0)


def test_embedding():
  table = rnnlab.embedding(10, 4)
  params = table.init(KEY)
  assert params.table.shape == (10, 4)
  tokens = jnp.array([[0, 9, 3], [2, 2, 1]])
  out = table.apply(params, tokens)
  assert out.shape == (2, 3, 4)
  close(out, np.asarray(params.table)[np.asarray(tokens)])
  close(jax.jit(table.apply)(params, tokens), out)
  big = rnnlab.embedding(1000, 16).init(jax.random.key(1)).table
  np.testing.assert_allclose(float(jnp.std(big)), 0.25, rtol=0.05)  # N(0, 1 / features)
  assert table.init(KEY, dtype=jnp.bfloat16).table.dtype == jnp.bfloat16
  with pytest.raises(ValueError, match=r"token 10 is outside the vocabulary \[0, 10\)"):
    table.apply(params, jnp.array([1, 10]))
  with pytest.raises(ValueError, match=r"token -1 is outside the vocabulary \[0, 10\)"):
    table.apply(params, jnp.array([[-1, 2]]))
  with pytest.raises(ValueError, match="tokens must be integers; got dtype float32"):
    table.apply(params, jnp.array([1.0]))
  with pytest.raises(ValueError, match="vocab_size must be a positive int; got 0"):
    rnnlab.embedding(0, 4)


# ---- gather_last under jit -------------------------------------------------------------------


def test_gather_last_clamps_traced_lengths_as_unroll_does():
  # Inside jit lengths cannot be checked; unroll clamps them to [0, T], and so must the readout.
  layer = rnnlab.rnn(rnnlab.elman(H))
  params = random_params(layer, seed=8)
  lengths = jnp.array([T + 5, -3, 2])

  @jax.jit
  def run(params, xs, lengths):
    ys, carry = layer.apply(params, xs, lengths=lengths)
    return ys, carry, gather_last(ys, lengths)

  ys, carry, last = run(params, XS, lengths)
  assert np.all(np.isfinite(np.asarray(last)))
  close(last, np.stack([ys[0, T - 1], np.zeros(H), ys[2, 1]]))
  close(last, carry)  # the final carry of an Elman layer is its last valid output


# ---- dropout ---------------------------------------------------------------------------------

RATE = 0.4
SCALE = np.float32(1 / (1 - RATE))


def random_params_of(layer, seed):
  """``random_params`` with unit scale and every leaf's own dtype."""
  rng = np.random.default_rng(seed)
  shapes = jax.eval_shape(lambda key: layer.init(key, I), KEY)
  return jax.tree.map(lambda l: jnp.asarray(rng.standard_normal(l.shape), l.dtype), shapes)


def sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def identity_cell():
  """A user's cell whose output is its input: a window onto what a layer is fed."""

  def init(key, input_size, *, dtype=jnp.float32):
    return ()

  def initial_carry(params, batch_shape=()):
    return jnp.zeros(batch_shape)

  def step(params, carry, x):
    return carry, x

  return rnnlab.Cell(init, initial_carry, step, "identity")


def test_variational_dropout_is_one_mask_per_sequence_and_unit_for_all_steps():
  ones = jnp.ones((64, T, 16))
  out = np.asarray(rnnlab.variational_dropout(KEY, ones, RATE))
  assert set(np.unique(out)) == {0.0, SCALE}  # inverted scaling: kept units / (1 - rate)
  np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], out.shape))  # one mask in time
  assert len({row.tobytes() for row in out[:, 0]}) > 32  # each sequence its own mask
  # 1024 units kept with probability 0.6: the standard error is 0.015, this is 5 of them.
  assert abs((out[:, 0] > 0).mean() - (1 - RATE)) < 0.077
  xs = jnp.asarray(np.random.default_rng(9).standard_normal(ones.shape), jnp.float32)
  np.testing.assert_array_equal(rnnlab.variational_dropout(KEY, xs, RATE), xs * out)
  # The mask does not depend on T: a sequence's windows are masked alike with one key.
  np.testing.assert_array_equal(
    rnnlab.variational_dropout(KEY, xs[:, :3], RATE), xs[:, :3] * out[:, :3]
  )
  assert rnnlab.variational_dropout(None, xs, RATE) is xs  # no key: evaluation
  assert rnnlab.variational_dropout(KEY, xs, 0.0) is xs
  for bad in (1.0, -0.1, True, "0.5"):
    with pytest.raises(ValueError, match=r"rate must be a number in \[0, 1\)"):
      rnnlab.variational_dropout(KEY, xs, bad)


def test_dropout_leaves_the_expectation_of_a_linear_map_unchanged():
  # Monte Carlo over 4000 keys: the mean of readout(dropout(xs)) is readout(xs), within
  # 5 standard errors, and the unscaled mask ((1 - rate) * readout(xs)) would be far outside.
  readout = rnnlab.dense(3)
  params = random_params_of(readout, seed=10)
  xs = jnp.asarray(np.random.default_rng(11).standard_normal((2, 4, I)), jnp.float32)
  keys = jax.random.split(KEY, 4000)
  samples = jax.jit(
    jax.vmap(lambda k: readout.apply(params, rnnlab.variational_dropout(k, xs, RATE)))
  )(keys)
  samples = np.asarray(samples, np.float64)
  exact = np.asarray(readout.apply(params, xs), np.float64)
  error = 5 * samples.std(axis=0) / np.sqrt(len(keys))
  assert np.all(np.abs(samples.mean(axis=0) - exact) < error)
  assert np.any(np.abs(samples.mean(axis=0) - (1 - RATE) * exact) > error)


def test_stacked_dropout_masks_each_layers_input_with_its_own_mask_for_all_steps():
  ident = identity_cell()
  xs = jnp.asarray(np.random.default_rng(12).standard_normal((64, T, I)), jnp.float32) + 5.0
  layer = rnnlab.stacked([ident, ident, ident], dropout=RATE)
  params = layer.init(KEY, I)
  np.testing.assert_array_equal(layer.apply(params, xs)[0], xs)  # no key: no dropout
  ys = np.asarray(layer.apply(params, xs, key=KEY)[0])
  # Layers 2 and 3 each drop their inputs (xs > 0 here, so a 0 is a dropped unit): two
  # masks, each constant in time, each kept unit scaled by 1 / (1 - rate).
  kept = ys != 0
  np.testing.assert_array_equal(kept, np.broadcast_to(kept[:, :1], kept.shape))
  np.testing.assert_array_equal(ys, np.where(kept, xs * SCALE * SCALE, 0.0))
  # Kept by both: (1 - rate)^2 = 0.36 of 256 units (one mask reused would keep 0.6).
  assert abs(kept[:, 0].mean() - (1 - RATE) ** 2) < 0.15
  # The first layer's inputs are the model's to drop, not the stack's.
  single = rnnlab.stacked([ident], dropout=RATE)
  np.testing.assert_array_equal(single.apply(single.init(KEY, I), xs, key=KEY)[0], xs)


def test_recurrent_dropout_is_one_mask_on_the_state_feeding_w_hh():
  # A linear Elman cell with identity weights and one unit input at t = 0 has h_t = m^t:
  # the same mask m (values 0 and 1 / (1 - rate)) at every step.
  batch, hidden = 16, 6
  elman = rnnlab.rnn(rnnlab.elman(hidden, "linear"), recurrent_dropout=RATE)
  eye = jnp.eye(hidden)
  params = rnnlab.ElmanParams(eye, eye, jnp.zeros(hidden))
  xs = jnp.zeros((batch, 5, hidden)).at[:, 0].set(1.0)
  ys = np.asarray(jax.jit(elman.apply)(params, xs, key=KEY)[0])
  mask = ys[:, 1]
  assert set(np.unique(mask)) == {0.0, SCALE}
  for t in range(5):
    np.testing.assert_allclose(ys[:, t], mask**t, rtol=1e-6)
  # An LSTM layer with the same key and (batch, H) draws that mask: its h enters h W_hh masked,
  # while c and everything else see the plain state (a NumPy loop of the equations).
  lstm = rnnlab.rnn(rnnlab.lstm(hidden), recurrent_dropout=RATE)
  lp = random_params_of(lstm, seed=13)
  lp = jax.tree.map(lambda l: 0.5 * l, lp)
  xs = jnp.asarray(np.random.default_rng(14).standard_normal((batch, 5, I)), jnp.float32)
  ys, carry = jax.jit(lstm.apply)(lp, xs, key=KEY)
  w_ih, w_hh, b = (np.asarray(v, np.float64) for v in lp)
  h = c = np.zeros((batch, hidden))
  for t in range(5):
    a = np.asarray(xs[:, t], np.float64) @ w_ih + (h * mask) @ w_hh + b
    i, f, g, o = (a[:, k * hidden : (k + 1) * hidden] for k in range(4))
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(c)
    np.testing.assert_allclose(np.asarray(ys[:, t]), h, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(carry.c), c, rtol=1e-5, atol=1e-5)
  for cell in (rnnlab.layer_norm_lstm(H), rnnlab.gru(H, reset_after=False)):
    with pytest.raises(ValueError, match=r"recurrent_dropout needs a cell with CellParts"):
      rnnlab.rnn(cell, recurrent_dropout=RATE)
  with pytest.raises(ValueError, match=r"rnn: recurrent_dropout must be a number in \[0, 1\)"):
    rnnlab.rnn(rnnlab.lstm(H), recurrent_dropout=1.0)
  with pytest.raises(ValueError, match=r"stacked: dropout must be a number in \[0, 1\) .*; got -1"):
    rnnlab.stacked([rnnlab.lstm(H)], dropout=-1)


def test_without_a_key_dropout_layers_are_bitwise_the_deterministic_layers():
  def build(rate, recurrent):
    return rnnlab.stacked(
      [
        rnnlab.bidirectional(rnnlab.lstm(H), recurrent_dropout=recurrent),
        rnnlab.rnn(rnnlab.gru(H), recurrent_dropout=recurrent),
      ],
      dropout=rate,
    )

  dropping, plain = build(0.3, 0.2), build(0.0, 0.0)
  params = random_params(plain, seed=15)

  @jax.jit
  def run(params, xs, key):
    return [
      layer.apply(params, xs, lengths=LENGTHS, key=k)[0]
      for layer, k in ((dropping, None), (plain, None), (plain, key), (dropping, key))
    ]

  evaluation, plain_evaluation, plain_with_key, training = run(params, XS, KEY)
  np.testing.assert_array_equal(evaluation, plain_evaluation)
  np.testing.assert_array_equal(evaluation, plain_with_key)  # rates 0: nothing drawn
  assert float(jnp.abs(training - evaluation).max()) > 1e-2
  assert float(jnp.abs(jnp.where(PAD, training, 0.0)).max()) == 0.0  # still zero past lengths
