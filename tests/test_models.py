"""Tests for rnnlab.models: the four RNN types against compositions written by hand from
their params (rnnlab.unroll, cell.step, NumPy), plus short training runs that must lower
the loss."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnlab
from rnnlab import train as rt
from rnnlab.models import sample

B, T, I, H, V = 3, 6, 4, 8, 7
XS = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, I)), jnp.float32)
TOKENS = jnp.asarray(np.random.default_rng(1).integers(0, V, (B, T)), jnp.int32)
LENGTHS = jnp.array([6, 2, 4])
PAD = jnp.arange(T) >= LENGTHS[:, None]  # (B, T): True past the lengths
KEY = jax.random.key(0)


def close(a, b, tol=1e-5):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for la, lb in zip(leaves_a, leaves_b, strict=True):
    assert la.shape == lb.shape, (la.shape, lb.shape)
    np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=tol, atol=tol)


def readout(p, x):
  """The dense readout by hand, in NumPy."""
  return np.asarray(x) @ np.asarray(p.w) + np.asarray(p.b)


def last_by_hand(ys, lengths):
  """``ys[b, lengths[b] - 1]``, zeros for a length 0 (NumPy, one batch axis)."""
  ys = np.asarray(ys)
  out = np.zeros((ys.shape[0], ys.shape[-1]), ys.dtype)
  for b, n in enumerate(np.asarray(lengths)):
    if n > 0:
      out[b] = ys[b, n - 1]
  return out


def randomize(params, seed, scale=0.3):
  """Every leaf drawn afresh, so zero-initialised biases take part too."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype), params)


def random_params(init, *args, seed, scale=0.3):
  """Params with the structure ``init(key, *args)`` gives (traced, not run: eager
  initialisation compiles many small kernels), every leaf drawn at random."""
  return randomize(jax.eval_shape(lambda key: init(key, *args), KEY), seed, scale)


# ---- many-to-one -----------------------------------------------------------------------------

M2O_CELL = rnnlab.lstm(H)
M2O = rnnlab.many_to_one(rnnlab.bidirectional(M2O_CELL), 2)
M2O_PARAMS = random_params(M2O.init, I, seed=1)
M2O_APPLY = jax.jit(M2O.apply)


def test_many_to_one_reads_out_the_last_valid_state():
  out = M2O_APPLY(M2O_PARAMS, XS, lengths=LENGTHS)
  assert out.shape == (B, 2)
  enc = M2O_PARAMS.encoder
  ys_f, _ = rnnlab.unroll(M2O_CELL, enc.forward, XS, lengths=LENGTHS)
  ys_b, _ = rnnlab.unroll(M2O_CELL, enc.backward, XS, lengths=LENGTHS, reverse=True)
  summary = np.concatenate([last_by_hand(ys_f, LENGTHS), np.asarray(ys_b)[:, 0]], -1)
  close(out, readout(M2O_PARAMS.readout, summary))
  # The padding is ignored, and no lengths means every sequence is T long.
  garbage = jnp.where(PAD[..., None], 5.0, XS)
  close(M2O_APPLY(M2O_PARAMS, garbage, lengths=LENGTHS), out)
  close(M2O_APPLY(M2O_PARAMS, XS), M2O_APPLY(M2O_PARAMS, XS, lengths=jnp.full((B,), T)))
  assert float(jnp.abs(M2O_APPLY(M2O_PARAMS, garbage) - out).max()) > 1e-3


def test_many_to_one_with_tokens():
  cell = rnnlab.gru(H)
  model = rnnlab.many_to_one(cell, 3, embed_size=5)
  params = random_params(model.init, V, seed=2)
  assert params.embed.table.shape == (V, 5)
  apply = jax.jit(model.apply)
  out = apply(params, TOKENS, lengths=LENGTHS)
  assert out.shape == (B, 3)
  xs = np.asarray(params.embed.table)[np.asarray(TOKENS)]
  _, carry = rnnlab.unroll(cell, params.encoder, xs, lengths=LENGTHS)
  close(out, readout(params.readout, carry))  # a GRU's final carry is its last valid output
  close(apply(params, jnp.where(PAD, V - 1 - TOKENS, TOKENS), lengths=LENGTHS), out)
  with pytest.raises(ValueError, match=r"token 7 is outside the vocabulary \[0, 7\)"):
    model.apply(params, TOKENS.at[0, 0].set(V))


# ---- many-to-many ----------------------------------------------------------------------------


def test_many_to_many_is_a_per_step_readout_zero_past_lengths():
  elman, gru = rnnlab.elman(H), rnnlab.gru(H)
  model = rnnlab.many_to_many(rnnlab.stacked([elman, gru]), 2)
  params = random_params(model.init, I, seed=3)
  apply = jax.jit(model.apply)
  out = apply(params, XS, lengths=LENGTHS)
  assert out.shape == (B, T, 2)
  h1, _ = rnnlab.unroll(elman, params.encoder[0], XS, lengths=LENGTHS)
  h2, _ = rnnlab.unroll(gru, params.encoder[1], h1, lengths=LENGTHS)
  expected = np.where(np.asarray(PAD)[..., None], 0.0, readout(params.readout, h2))
  close(out, expected)
  assert float(jnp.abs(jnp.where(PAD[..., None], out, 0.0)).max()) == 0.0
  assert float(jnp.abs(params.readout.b).min()) > 0  # so the zeros are masked, not readout(0)
  # Without lengths every step is read out.
  h1, _ = rnnlab.unroll(elman, params.encoder[0], XS)
  h2, _ = rnnlab.unroll(gru, params.encoder[1], h1)
  close(apply(params, XS), readout(params.readout, h2))


# ---- one-to-many -----------------------------------------------------------------------------

GEN_CELL = rnnlab.stack_cells([rnnlab.lstm(H), rnnlab.gru(H)])
GEN = rnnlab.one_to_many(GEN_CELL, V, 5)
GEN_PARAMS = jax.tree.map(lambda l: 3 * l, random_params(GEN.init, seed=5))  # sharp, varied logits
GENERATE = jax.jit(GEN.generate, static_argnums=3, static_argnames="temperature")


def test_one_to_many_apply_is_an_unroll_of_embedded_tokens():
  logits, carry = GEN.apply(GEN_PARAMS, TOKENS)
  assert logits.shape == (B, T, V)
  xs = np.asarray(GEN_PARAMS.embed.table)[np.asarray(TOKENS)]
  ys, ref_carry = rnnlab.unroll(GEN_CELL, GEN_PARAMS.cell, xs)
  close(logits, readout(GEN_PARAMS.readout, ys))
  close(carry, ref_carry)
  # A conditioning carry is the unroll's initial carry.
  start = randomize(GEN_CELL.initial_carry(GEN_PARAMS.cell, (B,)), 5)
  logits, _ = GEN.apply(GEN_PARAMS, TOKENS, start)
  ys, _ = rnnlab.unroll(GEN_CELL, GEN_PARAMS.cell, xs, start)
  close(logits, readout(GEN_PARAMS.readout, ys))


def greedy_by_hand(prompt, steps, carry=None):
  """Reads the prompt with cell.step, then feeds each argmax back (NumPy tables)."""
  table = np.asarray(GEN_PARAMS.embed.table)
  if carry is None:
    carry = GEN_CELL.initial_carry(GEN_PARAMS.cell, (prompt.shape[0],))
  for t in range(prompt.shape[1]):
    carry, y = GEN_CELL.step(GEN_PARAMS.cell, carry, table[np.asarray(prompt[:, t])])
  tokens = []
  for _ in range(steps):
    token = np.argmax(readout(GEN_PARAMS.readout, y), -1)
    tokens.append(token)
    carry, y = GEN_CELL.step(GEN_PARAMS.cell, carry, table[token])
  return np.stack(tokens, 1)


def test_greedy_generation_equals_a_python_loop_over_step():
  prompt, steps = TOKENS[:, :2], 5
  tokens = GENERATE(GEN_PARAMS, KEY, prompt, steps, temperature=0.0)
  assert tokens.shape == (B, steps)
  expected = greedy_by_hand(prompt, steps)
  np.testing.assert_array_equal(np.asarray(tokens), expected)
  assert len(np.unique(expected)) > 1
  # A conditioning carry is where the prompt's reading starts.
  start = randomize(GEN_CELL.initial_carry(GEN_PARAMS.cell, (B,)), 9, scale=1.0)
  tokens = GENERATE(GEN_PARAMS, KEY, prompt, steps, temperature=0.0, carry=start)
  np.testing.assert_array_equal(np.asarray(tokens), greedy_by_hand(prompt, steps, start))
  assert not np.array_equal(np.asarray(tokens), expected)


def assert_frequencies(samples, probs):
  """Empirical token frequencies within 4 standard errors (+0.01) of ``probs``."""
  freq = np.bincount(samples, minlength=V) / len(samples)
  tol = 4 * np.sqrt(probs * (1 - probs) / len(samples)) + 0.01
  assert np.all(np.abs(freq - probs) <= tol), (freq, probs)


def test_sampled_tokens_follow_the_softmax_and_are_fed_back():
  # Two tokens from one prompt over many keys: the first ~ softmax(logits / temperature) after
  # the prompt; the second, given the first, ~ the softmax after reading that first token.
  temperature, n = 1.0, 6000
  prompt = TOKENS[2:3, :2]
  draws = jax.jit(
    jax.vmap(lambda k: GEN.generate(GEN_PARAMS, k, prompt, 2, temperature=temperature)[0])
  )(jax.random.split(jax.random.key(3), n))
  draws = np.asarray(draws)

  def next_probs(tokens):
    logits, _ = GEN.apply(GEN_PARAMS, jnp.asarray(tokens)[None])
    return np.asarray(jax.nn.softmax(logits[0, -1] / temperature), np.float64)

  probs = next_probs(prompt[0])
  assert_frequencies(draws[:, 0], probs)
  # Given each frequent first token (the argmax and others), the second follows its softmax.
  checked = 0
  for first in np.flatnonzero(np.bincount(draws[:, 0], minlength=V) >= 400):
    assert_frequencies(draws[draws[:, 0] == first, 1], next_probs(np.append(prompt[0], first)))
    checked += 1
  assert checked >= 2


def test_sampling_is_reproducible_and_depends_on_the_key():
  prompt = TOKENS[:, :1]
  a = GENERATE(GEN_PARAMS, jax.random.key(1), prompt, 30, temperature=1.0)
  b = GENERATE(GEN_PARAMS, jax.random.key(1), prompt, 30, temperature=1.0)
  c = GENERATE(GEN_PARAMS, jax.random.key(2), prompt, 30, temperature=1.0)
  assert a.shape == (B, 30) and jnp.issubdtype(a.dtype, jnp.integer)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  assert bool(jnp.any(a != c))
  assert int(a.min()) >= 0 and int(a.max()) < V


def test_generated_shape_follows_the_prompt_batch_shape():
  assert GENERATE(GEN_PARAMS, KEY, TOKENS[0, :2], 3, temperature=0.0).shape == (3,)
  prompts = jnp.stack([TOKENS[:, :2], TOKENS[:, 2:4]])  # (2, B, 2)
  tokens = GENERATE(GEN_PARAMS, KEY, prompts, 3, temperature=0.0)
  assert tokens.shape == (2, B, 3)
  # Each example of a batch is generated independently of the others.
  np.testing.assert_array_equal(
    tokens[0], GENERATE(GEN_PARAMS, KEY, prompts[0], 3, temperature=0.0)
  )


def test_sample_temperature():
  logits = jnp.array([[0.0, 1.0, 3.0]])
  assert int(sample(KEY, logits, 0.0)[0]) == 2
  draws = jax.vmap(lambda k: sample(k, logits[0], 1.0))(jax.random.split(KEY, 4000))
  freq = np.bincount(np.asarray(draws), minlength=3) / 4000
  np.testing.assert_allclose(freq, np.asarray(jax.nn.softmax(logits[0])), atol=0.03)
  # A high temperature flattens the distribution.
  draws = jax.vmap(lambda k: sample(k, logits[0], 100.0))(jax.random.split(KEY, 4000))
  assert np.bincount(np.asarray(draws), minlength=3).min() > 1000
  with pytest.raises(ValueError, match="temperature must be >= 0"):
    sample(KEY, logits, -0.5)


def test_generation_errors():
  with pytest.raises(ValueError, match=r"temperature must be >= 0 \(0 is greedy\); got -1"):
    GEN.generate(GEN_PARAMS, KEY, TOKENS[:, :1], 3, temperature=-1.0)
  with pytest.raises(ValueError, match="num_steps must be a positive int; got 0"):
    GEN.generate(GEN_PARAMS, KEY, TOKENS[:, :1], 0)
  with pytest.raises(ValueError, match=r"prompt must be tokens \(\*batch, P\) with P >= 1"):
    GEN.generate(GEN_PARAMS, KEY, jnp.zeros((B, 0), jnp.int32), 3)


# ---- shift_right -----------------------------------------------------------------------------


def test_shift_right():
  targets = jnp.array([[5, 6, 7], [1, 2, 3]], jnp.int32)
  shifted = rnnlab.shift_right(targets, 0)
  np.testing.assert_array_equal(np.asarray(shifted), [[0, 5, 6], [0, 1, 2]])
  assert shifted.dtype == targets.dtype and shifted.shape == targets.shape
  np.testing.assert_array_equal(np.asarray(rnnlab.shift_right(jnp.array([4, 5]), 9)), [9, 4])
  many = jnp.arange(24).reshape(2, 3, 4)
  np.testing.assert_array_equal(
    np.asarray(rnnlab.shift_right(many, -1)),
    np.concatenate([np.full((2, 3, 1), -1), np.arange(24).reshape(2, 3, 4)[..., :3]], -1),
  )


# ---- encoder-decoder -------------------------------------------------------------------------

ENC_CELL, DEC_CELL = rnnlab.gru(H), rnnlab.lstm(H)
SEQ2SEQ = rnnlab.encoder_decoder(
  rnnlab.bidirectional(ENC_CELL), DEC_CELL, V, target_embed_size=5, source_embed_size=4
)
S2S_PARAMS = random_params(SEQ2SEQ.init, V, seed=7, scale=0.5)  # varied greedy tokens


def encoder_summary_by_hand(params, source, lengths):
  xs = np.asarray(params.source_embed.table)[np.asarray(source)]
  ys_f, _ = rnnlab.unroll(ENC_CELL, params.encoder.forward, xs, lengths=lengths)
  ys_b, _ = rnnlab.unroll(ENC_CELL, params.encoder.backward, xs, lengths=lengths, reverse=True)
  return np.concatenate([last_by_hand(ys_f, lengths), np.asarray(ys_b)[:, 0]], -1)


def test_decoder_initial_carry_is_a_tanh_bridge_of_the_encoder_summary():
  carry = SEQ2SEQ.encode(S2S_PARAMS, TOKENS, source_lengths=LENGTHS)
  assert isinstance(carry, rnnlab.LSTMCarry) and carry.h.shape == (B, H)
  summary = encoder_summary_by_hand(S2S_PARAMS, TOKENS, LENGTHS)
  assert len(S2S_PARAMS.bridge) == 2  # one affine map per leaf: h, then c
  for leaf, bridge in zip(carry, S2S_PARAMS.bridge, strict=True):
    close(leaf, np.tanh(readout(bridge, summary)))
  assert float(jnp.abs(carry.h - carry.c).max()) > 1e-3


def test_bridge_fits_any_decoder_carry():
  decoder = rnnlab.stack_cells([rnnlab.gru(3), rnnlab.lstm(6)])
  model = rnnlab.encoder_decoder(rnnlab.elman(H), decoder, V, target_embed_size=4)
  params = random_params(model.init, I, seed=7)
  carry = model.encode(params, XS, source_lengths=LENGTHS)
  ys, _ = rnnlab.unroll(rnnlab.elman(H), params.encoder, XS, lengths=LENGTHS)
  summary = last_by_hand(ys, LENGTHS)
  leaves = jax.tree.leaves(carry)
  assert [l.shape for l in leaves] == [(B, 3), (B, 6), (B, 6)]
  for leaf, bridge in zip(leaves, params.bridge, strict=True):
    close(leaf, np.tanh(readout(bridge, summary)))


def test_teacher_forcing_is_a_decoder_unroll_from_the_bridged_carry():
  target_in = rnnlab.shift_right(TOKENS[:, :4], 0)
  logits = SEQ2SEQ.apply(S2S_PARAMS, TOKENS, target_in, source_lengths=LENGTHS)
  assert logits.shape == (B, 4, V)
  carry = SEQ2SEQ.encode(S2S_PARAMS, TOKENS, source_lengths=LENGTHS)
  xs = np.asarray(S2S_PARAMS.target_embed.table)[np.asarray(target_in)]
  ys, _ = rnnlab.unroll(DEC_CELL, S2S_PARAMS.decoder, xs, carry)
  close(logits, readout(S2S_PARAMS.readout, ys))


def test_greedy_decode_equals_a_python_loop_feeding_argmax_back():
  steps = 5
  decoded = SEQ2SEQ.greedy_decode(S2S_PARAMS, TOKENS, steps, start_token=0, source_lengths=LENGTHS)
  assert decoded.shape == (B, steps)
  table = np.asarray(S2S_PARAMS.target_embed.table)
  carry = SEQ2SEQ.encode(S2S_PARAMS, TOKENS, source_lengths=LENGTHS)
  token, expected = np.zeros(B, np.int64), []
  for _ in range(steps):
    carry, y = DEC_CELL.step(S2S_PARAMS.decoder, carry, table[token])
    token = np.argmax(readout(S2S_PARAMS.readout, y), -1)
    expected.append(token)
  np.testing.assert_array_equal(np.asarray(decoded), np.stack(expected, 1))
  # Non-degenerate: the tokens vary, and the first one is not the start token fed back.
  assert len(np.unique(np.asarray(decoded))) > 2 and bool(jnp.any(decoded[:, 0] != 0))
  with pytest.raises(ValueError, match="num_steps must be a positive int; got 0"):
    SEQ2SEQ.greedy_decode(S2S_PARAMS, TOKENS, 0, start_token=0)


# ---- training --------------------------------------------------------------------------------


def train(loss, params, steps, lr=0.03):
  """Adam on ``loss``; returns the losses before the first and the last update."""
  opt = optax.adam(lr)

  @jax.jit
  def update(params, state):
    value, grads = jax.value_and_grad(loss)(params)
    updates, state = opt.update(grads, state, params)
    return optax.apply_updates(params, updates), state, value

  state, values = opt.init(params), []
  for _ in range(steps):
    params, state, value = update(params, state)
    values.append(float(value))
  assert all(np.isfinite(values))
  return values[0], values[-1]


def test_encoder_decoder_learns_to_copy():
  model = rnnlab.encoder_decoder(
    rnnlab.gru(16), rnnlab.gru(16), V, target_embed_size=8, source_embed_size=8
  )
  src = jnp.asarray(np.random.default_rng(3).integers(1, V, (32, 4)), jnp.int32)
  target_in = rnnlab.shift_right(src, 0)

  def loss(p):
    logits = model.apply(p, src, target_in)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, src))

  # Random params of the init's structure: eager init compiles a kernel per weight shape.
  first, last = train(loss, random_params(model.init, V, seed=8), 120)
  assert last < 0.2 * first, (first, last)


def test_many_to_one_learns_the_sign_of_the_first_input():
  xs = jnp.asarray(np.random.default_rng(4).standard_normal((64, 5, 1)), jnp.float32)
  labels = (xs[:, 0, 0] > 0).astype(jnp.int32)
  lengths = jnp.asarray(np.random.default_rng(5).integers(1, 6, (64,)), jnp.int32)
  model = rnnlab.many_to_one(rnnlab.gru(16), 2)

  def loss(p):
    logits = model.apply(p, xs, lengths=lengths)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

  first, last = train(loss, model.init(KEY, 1), 100)
  assert last < 0.2 * first, (first, last)


# ---- init signatures -------------------------------------------------------------------------

INIT_CELL = rnnlab.gru(H)
# (object, the sizes it does not know): init(key, *sizes, dtype=...) for every one.
INITS = {
  "cell": (INIT_CELL, (I,)),
  "layer_norm_lstm": (rnnlab.layer_norm_lstm(H), (I,)),
  "layer_norm_gru": (rnnlab.layer_norm_gru(H), (I,)),
  "stack_cells": (rnnlab.stack_cells([INIT_CELL, rnnlab.lstm(H)]), (I,)),
  "rnn": (rnnlab.rnn(INIT_CELL), (I,)),
  "bidirectional": (rnnlab.bidirectional(INIT_CELL), (I,)),
  "stacked": (rnnlab.stacked([INIT_CELL, INIT_CELL]), (I,)),
  "dense": (rnnlab.dense(2), (I,)),
  "embedding": (rnnlab.embedding(V, 4), ()),
  "many_to_one": (rnnlab.many_to_one(INIT_CELL, 2), (I,)),
  "many_to_many": (rnnlab.many_to_many(INIT_CELL, 2, embed_size=4), (V,)),
  "one_to_many": (rnnlab.one_to_many(INIT_CELL, V, 4), ()),
  "encoder_decoder": (
    rnnlab.encoder_decoder(INIT_CELL, INIT_CELL, V, target_embed_size=4, source_embed_size=4),
    (V,),
  ),
}


def init_dtypes(init, *args, **kwargs):
  """The dtypes of the leaves ``init(KEY, *args, **kwargs)`` gives (traced, not run)."""
  params = jax.eval_shape(lambda key: init(key, *args, **kwargs), KEY)
  return {leaf.dtype for leaf in jax.tree.leaves(params)}


@pytest.mark.parametrize("name", INITS)
def test_init_takes_the_key_the_unknown_sizes_then_keywords(name):
  obj, sizes = INITS[name]
  assert init_dtypes(obj.init, *sizes) == {jnp.dtype(jnp.float32)}
  assert init_dtypes(obj.init, *sizes, dtype=jnp.bfloat16) == {jnp.dtype(jnp.bfloat16)}
  # The old form, a dtype after the sizes, still works: a dtype is never a size.
  assert init_dtypes(obj.init, *sizes, jnp.bfloat16) == {jnp.dtype(jnp.bfloat16)}
  assert init_dtypes(obj.init, *sizes, "bfloat16") == {jnp.dtype(jnp.bfloat16)}


def test_init_errors_show_the_call_to_make():
  cases = [
    (
      lambda: INITS["one_to_many"][0].init(KEY, V),
      r"^one_to_many.init: unexpected positional argument 7; call init\(key, \*, "
      r"dtype=jnp.float32\) \(vocab_size=7 and embed_size=4 are the model's own\)$",
    ),
    (
      lambda: INITS["embedding"][0].init(KEY, V),
      r"^embedding.init: unexpected positional argument 7; call init\(key, \*, "
      r"dtype=jnp.float32\) \(vocab_size=7, features=4 are its own\)$",
    ),
    (
      lambda: INITS["many_to_many"][0].init(KEY),
      r"^many_to_many.init: missing input_size; call init\(key, input_size, \*, "
      r"dtype=jnp.float32\) \(input_size: the vocabulary size\)$",
    ),
    (
      lambda: INITS["stacked"][0].init(KEY, I, 8),
      r"^stacked\(gru,gru\).init: unexpected positional argument 8; call init\(key, input_size",
    ),
    (
      lambda: INITS["dense"][0].init(KEY, I, jnp.zeros(3)),
      r"^dense.init: unexpected positional argument an array of shape \(3,\); call init",
    ),
    (
      # rnnlab.train's model takes gain by keyword only: a positional number could be a size.
      lambda: rt.make_model(rt.default_config()).init(KEY, 0.5),
      r"^make_model\(config\).init: unexpected positional argument 0.5; call init\(key, \*, "
      r"gain=None\) \(the sizes come from the config and the task\)$",
    ),
  ]
  for call, message in cases:
    with pytest.raises(TypeError, match=message):
      call()
  model = rt.make_model(rt.default_config())
  assert jax.eval_shape(lambda k: model.init(k, gain=0.5), KEY).readout.w.dtype == jnp.float32


# ---- dropout ---------------------------------------------------------------------------------

RATE = 0.4


def identity_cell():
  """A user's cell whose output is its input, so a model's masks show in its outputs."""

  def init(key, input_size, *, dtype=jnp.float32):
    return ()

  def initial_carry(params, batch_shape=()):
    return jnp.zeros(batch_shape)

  def step(params, carry, x):
    return carry, x

  return rnnlab.Cell(init, initial_carry, step, "identity")


def test_model_dropout_masks_inputs_and_outputs_alike_at_every_step_and_only_with_a_key():
  # An identity encoder and an identity readout: outputs = xs * m_in * m_out / (1 - rate)^2.
  xs = jnp.asarray(np.random.default_rng(20).standard_normal((64, T, I)), jnp.float32) + 5.0
  lengths = jnp.asarray(np.random.default_rng(21).integers(1, T + 1, 64))
  identity = rnnlab.layers.DenseParams(jnp.eye(I), jnp.zeros(I))
  scale = np.float32(1 / (1 - RATE))
  for factory in (rnnlab.many_to_many, rnnlab.many_to_one):
    model = factory(identity_cell(), I, input_dropout=RATE, output_dropout=RATE)
    params = rnnlab.models.ModelParams(None, (), identity)  # the identity cell has none
    no_dropout = factory(identity_cell(), I)

    @jax.jit
    def run(params, model=model, no_dropout=no_dropout):
      return (
        model.apply(params, xs, lengths=lengths),
        no_dropout.apply(params, xs, lengths=lengths),
        model.apply(params, xs, lengths=lengths, key=KEY),
      )

    plain, reference, out = (np.asarray(a) for a in run(params))
    np.testing.assert_array_equal(plain, reference)
    if factory is rnnlab.many_to_one:
      kept = out != 0
      np.testing.assert_allclose(out, np.where(kept, plain * scale * scale, 0.0), rtol=1e-6)
      assert abs(kept.mean() - (1 - RATE) ** 2) < 0.15  # two masks, 256 units
      continue
    valid = np.asarray(~(jnp.arange(T) >= lengths[:, None]))[..., None]
    kept = (out != 0) | ~valid
    np.testing.assert_array_equal(kept[:, :1] & valid, kept & valid)  # one mask for all steps
    np.testing.assert_allclose(out, np.where(kept & valid, plain * scale * scale, 0.0), rtol=1e-6)
    assert abs(kept[:, 0].mean() - (1 - RATE) ** 2) < 0.15  # two masks, 256 units
  with pytest.raises(ValueError, match=r"many_to_one: input_dropout must be a number in \[0, 1\)"):
    rnnlab.many_to_one(identity_cell(), 2, input_dropout=1.5)
  with pytest.raises(ValueError, match=r"one_to_many: output_dropout must be a number in"):
    rnnlab.one_to_many(identity_cell(), V, 4, output_dropout=-0.5)


def test_generator_and_seq2seq_dropout_is_off_without_a_key():
  # (generate and greedy_decode take no key: they never drop.)
  generator = rnnlab.one_to_many(DEC_CELL, V, 5, input_dropout=0.3, output_dropout=0.3)
  seq2seq = rnnlab.encoder_decoder(
    rnnlab.stacked([rnnlab.rnn(ENC_CELL, recurrent_dropout=0.3), ENC_CELL], dropout=0.3),
    DEC_CELL,
    V,
    target_embed_size=5,
    input_dropout=0.3,
    output_dropout=0.3,
  )
  plain_generator = rnnlab.one_to_many(DEC_CELL, V, 5)
  plain_seq2seq = rnnlab.encoder_decoder(
    rnnlab.stacked([ENC_CELL, ENC_CELL]), DEC_CELL, V, target_embed_size=5
  )
  g_params = random_params(generator.init, seed=22, scale=0.5)
  s_params = random_params(seq2seq.init, I, seed=23, scale=0.5)

  @jax.jit
  def run(g_params, s_params, key):
    g_args, s_args = (g_params, TOKENS), (s_params, XS, TOKENS)
    g_kw, s_kw = dict(lengths=LENGTHS), dict(source_lengths=LENGTHS, target_lengths=LENGTHS)
    return (
      generator.apply(*g_args, **g_kw, key=key)[0],
      seq2seq.apply(*s_args, **s_kw, key=key),
      generator.apply(*g_args, **g_kw)[0],
      seq2seq.apply(*s_args, **s_kw),
      plain_generator.apply(*g_args, **g_kw)[0],
      plain_seq2seq.apply(*s_args, **s_kw),
    )

  g_drop, s_drop, g_eval, s_eval, g_plain, s_plain = run(g_params, s_params, KEY)
  np.testing.assert_array_equal(g_eval, g_plain)  # evaluation is bitwise the plain model
  np.testing.assert_array_equal(s_eval, s_plain)
  valid = ~PAD[..., None]
  assert float(jnp.abs(jnp.where(valid, g_drop - g_eval, 0.0)).max()) > 1e-2
  assert float(jnp.abs(jnp.where(valid, s_drop - s_eval, 0.0)).max()) > 1e-2
