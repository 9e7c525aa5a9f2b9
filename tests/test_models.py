"""Tests for rnnlab.models: the four RNN types against hand-written compositions, plus
short training runs that must lower the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
from rnnlab.layers import gather_last
from rnnlab.models import sample

B, T, I, H, V = 3, 6, 4, 8, 7
XS = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, I)), jnp.float32)
TOKENS = jnp.asarray(np.random.default_rng(1).integers(0, V, (B, T)))
LENGTHS = jnp.array([6, 2, 4])
KEY = jax.random.key(0)


def close(a, b, tol=1e-5):
  for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=tol, atol=tol)


def readout(p, x):
  return x @ p.w + p.b


def test_many_to_one_reads_out_the_last_valid_state():
  encoder = rnnlab.bidirectional(rnnlab.lstm(H))
  model = rnnlab.many_to_one(encoder, 2)
  params = model.init(KEY, I)
  out = model.apply(params, XS, lengths=LENGTHS)
  ys, _ = encoder.apply(params.encoder, XS, lengths=LENGTHS)
  summary = jnp.concatenate([gather_last(ys[..., :H], LENGTHS), ys[:, 0, H:]], -1)
  close(out, readout(params.readout, summary))
  assert out.shape == (B, 2)
  pad = jnp.arange(T) >= LENGTHS[:, None]
  close(model.apply(params, jnp.where(pad[..., None], 5.0, XS), lengths=LENGTHS), out)


def test_many_to_one_with_tokens():
  model = rnnlab.many_to_one(rnnlab.gru(H), 3, embed_size=5)
  params = model.init(KEY, V)
  assert params.embed.table.shape == (V, 5)
  out = model.apply(params, TOKENS, lengths=LENGTHS)
  xs = params.embed.table[TOKENS]
  ys, carry = rnnlab.unroll(rnnlab.gru(H), params.encoder, xs, lengths=LENGTHS)
  close(out, readout(params.readout, carry))  # a GRU's final carry is its last valid output


def test_many_to_many_is_a_per_step_readout_zero_past_lengths():
  model = rnnlab.many_to_many(rnnlab.stacked([rnnlab.elman(H), rnnlab.gru(H)]), 2)
  params = model.init(KEY, I)
  out = model.apply(params, XS, lengths=LENGTHS)
  ys, _ = rnnlab.stacked([rnnlab.elman(H), rnnlab.gru(H)]).apply(
    params.encoder, XS, lengths=LENGTHS
  )
  valid = (jnp.arange(T) < LENGTHS[:, None])[..., None]
  close(out, jnp.where(valid, readout(params.readout, ys), 0.0))
  assert float(jnp.abs(jnp.where(valid, 0.0, out)).max()) == 0.0
  close(
    model.apply(params, XS),
    readout(
      params.readout, rnnlab.stacked([rnnlab.elman(H), rnnlab.gru(H)]).apply(params.encoder, XS)[0]
    ),
  )


GEN_CELL = rnnlab.stack_cells([rnnlab.lstm(H), rnnlab.gru(H)])
GEN = rnnlab.one_to_many(GEN_CELL, V, 5)
GEN_PARAMS = jax.tree.map(lambda l: 3 * l, GEN.init(KEY))  # sharper logits, varied tokens
GENERATE = jax.jit(GEN.generate, static_argnums=3, static_argnames="temperature")


def test_one_to_many_apply_is_unroll_of_embedded_tokens():
  logits, carry = GEN.apply(GEN_PARAMS, TOKENS)
  ys, ref_carry = rnnlab.unroll(GEN_CELL, GEN_PARAMS.cell, GEN_PARAMS.embed.table[TOKENS])
  close(logits, readout(GEN_PARAMS.readout, ys))
  close(carry, ref_carry)
  assert logits.shape == (B, T, V)


def test_greedy_generation_equals_a_python_loop():
  prompt = TOKENS[:, :2]
  tokens = GENERATE(GEN_PARAMS, KEY, prompt, 5, temperature=0.0)
  assert tokens.shape == (B, 5)
  logits, carry = GEN.apply(GEN_PARAMS, prompt)
  token = jnp.argmax(logits[:, -1], -1)
  expected = []
  for _ in range(5):
    expected.append(token)
    carry, y = GEN_CELL.step(GEN_PARAMS.cell, carry, GEN_PARAMS.embed.table[token])
    token = jnp.argmax(readout(GEN_PARAMS.readout, y), -1)
  np.testing.assert_array_equal(tokens, jnp.stack(expected, 1))


def test_sampling_is_reproducible_and_depends_on_the_key():
  prompt = TOKENS[:, :1]
  a = GENERATE(GEN_PARAMS, jax.random.key(1), prompt, 40, temperature=1.0)
  b = GENERATE(GEN_PARAMS, jax.random.key(1), prompt, 40, temperature=1.0)
  c = GENERATE(GEN_PARAMS, jax.random.key(2), prompt, 40, temperature=1.0)
  np.testing.assert_array_equal(a, b)
  assert bool(jnp.any(a != c))
  assert int(a.min()) >= 0 and int(a.max()) < V


def test_sample_temperature():
  logits = jnp.array([[0.0, 1.0, 3.0]])
  assert int(sample(KEY, logits, 0.0)[0]) == 2
  draws = jax.vmap(lambda k: sample(k, logits[0], 1.0))(jax.random.split(KEY, 4000))
  freq = np.bincount(np.asarray(draws), minlength=3) / 4000
  np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits[0])), atol=0.03)


def test_generation_errors():
  with pytest.raises(ValueError, match="temperature must be >= 0"):
    GEN.generate(GEN_PARAMS, KEY, TOKENS[:, :1], 3, temperature=-1.0)
  with pytest.raises(ValueError, match="num_steps must be a positive int; got 0"):
    GEN.generate(GEN_PARAMS, KEY, TOKENS[:, :1], 0)
  with pytest.raises(ValueError, match=r"prompt must be tokens \(\*batch, P\) with P >= 1"):
    GEN.generate(GEN_PARAMS, KEY, jnp.zeros((B, 0), int), 3)


def test_shift_right():
  np.testing.assert_array_equal(
    rnnlab.shift_right(jnp.array([[5, 6, 7], [1, 2, 3]]), 0), [[0, 5, 6], [0, 1, 2]]
  )


SEQ2SEQ = rnnlab.encoder_decoder(
  rnnlab.bidirectional(rnnlab.gru(H)),
  rnnlab.lstm(H),
  V,
  target_embed_size=5,
  source_embed_size=4,
)


def test_encoder_decoder_bridge_teacher_forcing_and_greedy_decoding():
  params = SEQ2SEQ.init(KEY, V)
  carry = SEQ2SEQ.encode(params, TOKENS, source_lengths=LENGTHS)
  ys, _ = rnnlab.bidirectional(rnnlab.gru(H)).apply(
    params.encoder, params.source_embed.table[TOKENS], lengths=LENGTHS
  )
  summary = jnp.concatenate([gather_last(ys[..., :H], LENGTHS), ys[:, 0, H:]], -1)
  close(carry.h, jnp.tanh(readout(params.bridge[0], summary)))
  close(carry.c, jnp.tanh(readout(params.bridge[1], summary)))

  target_in = rnnlab.shift_right(TOKENS[:, :4], 0)
  logits = SEQ2SEQ.apply(params, TOKENS, target_in, source_lengths=LENGTHS)
  dec_ys, _ = rnnlab.unroll(
    rnnlab.lstm(H), params.decoder, params.target_embed.table[target_in], carry
  )
  close(logits, readout(params.readout, dec_ys))
  assert logits.shape == (B, 4, V)

  decoded = SEQ2SEQ.greedy_decode(params, TOKENS, 5, start_token=0, source_lengths=LENGTHS)
  token, expected = jnp.zeros((B,), jnp.int32), []
  for _ in range(5):
    carry, y = rnnlab.lstm(H).step(params.decoder, carry, params.target_embed.table[token])
    token = jnp.argmax(readout(params.readout, y), -1)
    expected.append(token)
  np.testing.assert_array_equal(decoded, jnp.stack(expected, 1))


def _train(loss, params, steps, lr=0.03):
  opt = optax.adam(lr)

  @jax.jit
  def update(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = opt.update(grads, state)
    return optax.apply_updates(params, updates), state, value

  state, first = opt.init(params), float(loss(params))
  for _ in range(steps):
    params, state, value = update(params, state)
  return first, float(loss(params))


def test_encoder_decoder_learns_to_copy():
  src = jnp.asarray(np.random.default_rng(3).integers(1, V, (32, 4)))
  params = SEQ2SEQ.init(KEY, V)

  def loss(p):
    logits = SEQ2SEQ.apply(p, src, rnnlab.shift_right(src, 0))
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, src))

  first, last = _train(loss, params, 120)
  assert last < 0.5 * first, (first, last)


def test_many_to_one_learns_the_sign_of_the_first_input():
  xs = jnp.asarray(np.random.default_rng(4).standard_normal((64, 5, 1)), jnp.float32)
  labels = (xs[:, 0, 0] > 0).astype(jnp.int32)
  model = rnnlab.many_to_one(rnnlab.gru(16), 2)

  def loss(p):
    logits = model.apply(p, xs)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  first, last = _train(loss, model.init(KEY, 1), 100)
  assert last < 0.3 * first, (first, last)
