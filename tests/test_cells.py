"""Tests for rnnlab.cells: elman, lstm, gru, their layer-normalised forms, diagonal, stack_cells.

The NumPy references below are written from the equations in the cells' docstrings
(float64), not from the implementation. The properties every cell must have (scan
equals a loop, causality, padding, jit, vmap, finite-difference gradients, the fused
path, dtypes) are :mod:`rnnlab.testing`'s checks, run on every built-in cell below.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnlab
from rnnlab import testing

I, H = 3, 5  # input and hidden sizes used throughout

# (id, kind, factory(hidden_size, **kwargs) -> Cell)
CELL_SPECS = [
  ("elman_tanh", "elman_tanh", lambda h, **kw: rnnlab.elman(h, "tanh", **kw)),
  ("elman_relu", "elman_relu", lambda h, **kw: rnnlab.elman(h, "relu", **kw)),
  ("elman_linear", "elman_linear", lambda h, **kw: rnnlab.elman(h, "linear", **kw)),
  ("lstm", "lstm", lambda h, **kw: rnnlab.lstm(h, **kw)),
  ("gru_reset_after", "gru_after", lambda h, **kw: rnnlab.gru(h, reset_after=True, **kw)),
  ("gru_reset_before", "gru_before", lambda h, **kw: rnnlab.gru(h, reset_after=False, **kw)),
]
IDS = [s[0] for s in CELL_SPECS]
KIND = {s[0]: s[1] for s in CELL_SPECS}
FACTORY = {s[0]: s[2] for s in CELL_SPECS}
# One cell object per spec, so jitted steps are compiled once per module.
CELLS = {name: FACTORY[name](H) for name in IDS}
STEPS = {name: jax.jit(cell.step) for name, cell in CELLS.items()}
GATES = {"elman": 1, "lstm": 4, "gru": 3}


def family(name):
  return name.split("_")[0]


def randomize(tree, seed, scale=0.5):
  """Every leaf replaced by scale * N(0, 1) of the same shape and dtype (NumPy RNG: no compiles)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype), tree)


def normal(seed, shape, dtype=np.float32):
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


# ----------------------------------------------------------------------------- NumPy reference


def sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def np_step(kind, params, carry, x):
  """One step from the documented equations, float64 NumPy; returns (carry, y)."""
  p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items()}
  x = np.asarray(x, np.float64)
  if kind.startswith("elman"):
    h = np.asarray(carry, np.float64)
    a = x @ p["w_ih"] + h @ p["w_hh"] + p["b"]
    act = {"elman_tanh": np.tanh, "elman_relu": lambda v: np.maximum(v, 0.0)}.get(kind, lambda v: v)
    h = act(a)
    return h, h
  if kind == "lstm":
    h, c = (np.asarray(v, np.float64) for v in carry)
    hs = p["w_hh"].shape[0]

    def pre(g):  # gate g's pre-activation, gates i, f, g, o
      sl = slice(g * hs, (g + 1) * hs)
      return x @ p["w_ih"][:, sl] + h @ p["w_hh"][:, sl] + p["b"][sl]

    i, f, g, o = sigmoid(pre(0)), sigmoid(pre(1)), np.tanh(pre(2)), sigmoid(pre(3))
    c = f * c + i * g
    h = o * np.tanh(c)
    return (h, c), h
  # GRU, gates r, z, n
  h = np.asarray(carry, np.float64)
  hs = p["w_hh"].shape[0]
  W_ir, W_iz, W_in = (p["w_ih"][:, k * hs : (k + 1) * hs] for k in range(3))
  W_hr, W_hz, W_hn = (p["w_hh"][:, k * hs : (k + 1) * hs] for k in range(3))
  b_ir, b_iz, b_in = (p["b_ih"][k * hs : (k + 1) * hs] for k in range(3))
  b_hr, b_hz, b_hn = (p["b_hh"][k * hs : (k + 1) * hs] for k in range(3))
  r = sigmoid(x @ W_ir + b_ir + h @ W_hr + b_hr)
  z = sigmoid(x @ W_iz + b_iz + h @ W_hz + b_hz)
  if kind == "gru_after":
    n = np.tanh(x @ W_in + b_in + r * (h @ W_hn + b_hn))
  else:
    n = np.tanh(x @ W_in + b_in + (r * h) @ W_hn + b_hn)
  h = (1.0 - z) * n + z * h
  return h, h


def random_state(name, params, batch_shape, seed):
  cell = CELLS[name]
  carry = randomize(cell.initial_carry(params, batch_shape), seed, scale=0.8)
  x = normal(seed + 1, (*batch_shape, I))
  return carry, x


LN_CELLS = {
  "layer_norm_lstm": rnnlab.layer_norm_lstm(H),
  "layer_norm_gru": rnnlab.layer_norm_gru(H),
}
LN_STEPS = {name: jax.jit(cell.step) for name, cell in LN_CELLS.items()}
STACK = rnnlab.stack_cells([rnnlab.elman(H), rnnlab.gru(H)])


# ----------------------------------------------------------------------------- shapes, dtypes


def expected_param_shapes(name):
  g = GATES[family(name)]
  shapes = {"w_ih": (I, g * H), "w_hh": (H, g * H)}
  if family(name) == "gru":
    shapes.update(b_ih=(g * H,), b_hh=(g * H,))
  else:
    shapes.update(b=(g * H,))
  return shapes


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float64"])
@pytest.mark.parametrize("name", IDS)
def test_shapes_and_dtypes(name, dtype):
  cell = CELLS[name]
  with jax.enable_x64(dtype == "float64"):
    dt = jnp.dtype(dtype)
    params = cell.init(jax.random.key(0), I, dt)
    shapes = {k: tuple(v.shape) for k, v in params._asdict().items()}
    assert shapes == expected_param_shapes(name)
    assert all(leaf.dtype == dt for leaf in jax.tree.leaves(params))
    for batch_shape in [(), (3,), (2, 3)]:
      carry = cell.initial_carry(params, batch_shape)
      leaves = jax.tree.leaves(carry)
      assert len(leaves) == (2 if name == "lstm" else 1)
      for leaf in leaves:
        assert leaf.shape == (*batch_shape, H)
        assert leaf.dtype == dt
        np.testing.assert_array_equal(np.asarray(leaf, np.float32), 0.0)
      # A float32 input is cast to the params dtype; carry and output keep it. (Shapes
      # only: the values are rnnlab.testing's, in test_builtin_cell_passes_every_check.)
      x = jax.ShapeDtypeStruct((*batch_shape, I), jnp.float32)
      new_carry, y = jax.eval_shape(CELLS[name].step, params, carry, x)
      assert jax.tree.structure(new_carry) == jax.tree.structure(carry)
      for leaf in jax.tree.leaves(new_carry):
        assert leaf.shape == (*batch_shape, H)
        assert leaf.dtype == dt
      assert y.shape == (*batch_shape, H)
      assert y.dtype == dt


def test_initial_carry_int_batch_shape():
  cell = CELLS["lstm"]
  params = cell.init(jax.random.key(0), I)
  carry = cell.initial_carry(params, 4)
  assert carry.h.shape == (4, H) and carry.c.shape == (4, H)


# ----------------------------------------------------------------------------- NumPy parity


@pytest.mark.parametrize("name", IDS)
def test_step_matches_numpy_reference(name):
  # Fully random parameters (not the init scheme's), non-zero carry.
  params = randomize(CELLS[name].init(jax.random.key(3), I), 4, scale=0.7)
  carry, x = random_state(name, params, (3,), 5)
  new_carry, y = STEPS[name](params, carry, x)
  ref_carry, ref_y = np_step(KIND[name], params, carry, x)
  np.testing.assert_allclose(np.asarray(y), ref_y, rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(new_carry), jax.tree.leaves(ref_carry), strict=True):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  # The step must actually depend on the carry (a zero carry gives another answer).
  zero = CELLS[name].initial_carry(params, (3,))
  _, y0 = STEPS[name](params, zero, x)
  assert not np.allclose(np.asarray(y0), np.asarray(y), atol=1e-3)


def test_gru_variants_differ():
  """reset_after True/False are different functions of the same parameters."""
  params = randomize(CELLS["gru_reset_after"].init(jax.random.key(0), I), 1)
  carry, x = random_state("gru_reset_after", params, (3,), 2)
  _, y_after = STEPS["gru_reset_after"](params, carry, x)
  _, y_before = STEPS["gru_reset_before"](params, carry, x)
  assert np.max(np.abs(np.asarray(y_after) - np.asarray(y_before))) > 1e-3


def test_lstm_carry_is_named():
  params = CELLS["lstm"].init(jax.random.key(0), I)
  carry = CELLS["lstm"].initial_carry(params, (2,))
  assert isinstance(carry, rnnlab.LSTMCarry)
  new_carry, y = STEPS["lstm"](params, carry, jnp.ones((2, I)))
  assert isinstance(new_carry, rnnlab.LSTMCarry)
  np.testing.assert_array_equal(np.asarray(new_carry.h), np.asarray(y))


# ----------------------------------------------------------------------------- rnnlab.testing

# Every built-in cell, each at one shape of one seeded draw: the first three draws take
# batch ranks 0, 1 and 2, so every rank is checked on some cell.
CHECKED = {
  **CELLS,
  "diagonal": rnnlab.diagonal(H),
  "stack_lstm_elman": rnnlab.stack_cells([rnnlab.lstm(4), rnnlab.elman(H)]),
  "layer_norm_lstm": rnnlab.layer_norm_lstm(H),
  "layer_norm_gru": rnnlab.layer_norm_gru(H),
}
CHECK_SHAPES = dict(zip(CHECKED, testing.random_shapes(seed=0, count=len(CHECKED)), strict=True))


@pytest.mark.parametrize("name", list(CHECKED))
def test_builtin_cell_passes_every_check(name):
  cell = CHECKED[name]
  # Random params (biases and the forget slice too), so every term of the step matters.
  params = randomize(cell.init(jax.random.key(1), I), 2, scale=0.6)
  # Second derivatives (float64, inside the check) for the LSTM, first elsewhere: each
  # order costs as many compilations again, and these steps are plain jnp code.
  order = 2 if name == "lstm" else 1
  ran = testing.check_cell(
    cell, I, params=params, shapes=[CHECK_SHAPES[name]], seed=3, grad_order=order
  )
  has_parts = cell.parts is not None
  assert ran == tuple(c for c in testing.CHECKS if has_parts or c != "fused")


def test_builtin_cells_are_checked_at_every_batch_rank():
  assert {len(s.batch_shape) for s in CHECK_SHAPES.values()} == {0, 1, 2}


# ----------------------------------------------------------------------------- init schemes


def blocks(w, gates):
  """The (rows, H) per-gate blocks of a fused (rows, gates * H) weight."""
  return [np.asarray(w, np.float64)[:, k * H : (k + 1) * H] for k in range(gates)]


@pytest.mark.parametrize("name", IDS)
def test_orthogonal_recurrent_blocks(name):
  gain = 1.7
  cell = FACTORY[name](H, recurrent_init="orthogonal", gain=gain)
  params = cell.init(jax.random.key(0), I)
  bs = blocks(params.w_hh, GATES[family(name)])
  for blk in bs:
    np.testing.assert_allclose(np.linalg.svd(blk, compute_uv=False), gain, rtol=1e-5)
  # Each gate's block is drawn separately.
  for a in range(len(bs)):
    for b in range(a + 1, len(bs)):
      assert not np.allclose(bs[a], bs[b])


def test_default_recurrent_init_is_orthogonal_gain_one():
  for name in IDS:
    params = CELLS[name].init(jax.random.key(7), I)
    for blk in blocks(params.w_hh, GATES[family(name)]):
      np.testing.assert_allclose(np.linalg.svd(blk, compute_uv=False), 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", IDS)
def test_identity_recurrent(name):
  gain = 0.6
  params = FACTORY[name](H, recurrent_init="identity", gain=gain).init(jax.random.key(0), I)
  for blk in blocks(params.w_hh, GATES[family(name)]):
    np.testing.assert_array_equal(blk, np.float32(gain) * np.eye(H, dtype=np.float32))


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru_reset_after"])
def test_gaussian_recurrent_std(name):
  # Entries N(0, gain^2 / H). Over K keys we pool n = K * H * H * gates >= 1000 samples;
  # the sample std has relative standard error ~1/sqrt(2n) <= 2.3%, so the 15% tolerance
  # is > 6 standard errors; the mean is checked to 5 standard errors.
  gain, K = 2.0, 40
  cell = FACTORY[name](H, recurrent_init="gaussian", gain=gain)
  w = np.concatenate([np.asarray(cell.init(jax.random.key(k), I).w_hh).ravel() for k in range(K)])
  w = w.astype(np.float64)
  target = gain / np.sqrt(H)
  assert abs(w.std() / target - 1.0) < 0.15, (w.std(), target)
  assert abs(w.mean()) < 5 * target / np.sqrt(w.size)


def pooled(cell, field, K=4, input_size=I):
  return np.concatenate(
    [np.asarray(getattr(cell.init(jax.random.key(k), input_size), field)).ravel() for k in range(K)]
  )


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru_reset_before"])
def test_uniform_recurrent_bound(name):
  gain = 1.5
  bound = gain / np.sqrt(H)
  w = np.abs(pooled(FACTORY[name](H, recurrent_init="uniform", gain=gain), "w_hh"))
  assert w.max() <= bound * (1 + 1e-6)
  # >= 100 samples: the max falls below 0.8 * bound with probability < 0.8**100.
  assert w.max() > 0.8 * bound
  assert abs(w.mean() / bound - 0.5) < 0.15  # |U(-b, b)| has mean b / 2


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru_reset_after"])
def test_uniform_input_init_bound_uses_hidden_size(name):
  # 1/sqrt(H) = 0.447 < 1/sqrt(fan_in) = 0.577: the bound is the hidden size's.
  bound = 1.0 / np.sqrt(H)
  w = np.abs(pooled(FACTORY[name](H, input_init="uniform"), "w_ih"))
  assert w.max() <= bound * (1 + 1e-6)
  assert w.max() > 0.8 * bound


@pytest.mark.parametrize("forget_bias", [1.0, 2.5, 0.0])
def test_lstm_forget_bias_written_to_forget_slice_only(forget_bias):
  params = rnnlab.lstm(H, forget_bias).init(jax.random.key(0), I)
  b = np.asarray(params.b)
  np.testing.assert_array_equal(b[H : 2 * H], np.float32(forget_bias))
  np.testing.assert_array_equal(np.delete(b, np.s_[H : 2 * H]), 0.0)
  # With a random bias scheme, everything but the forget slice is the scheme's draw.
  key = jax.random.key(1)
  a = np.asarray(rnnlab.lstm(H, forget_bias, bias_init="uniform").init(key, I).b)
  c = np.asarray(rnnlab.lstm(H, -3.0, bias_init="uniform").init(key, I).b)
  np.testing.assert_array_equal(a[H : 2 * H], np.float32(forget_bias))
  np.testing.assert_array_equal(np.delete(a, np.s_[H : 2 * H]), np.delete(c, np.s_[H : 2 * H]))
  assert np.all(np.delete(a, np.s_[H : 2 * H]) != 0.0)


def test_lstm_default_forget_bias_is_one():
  b = np.asarray(CELLS["lstm"].init(jax.random.key(0), I).b)
  np.testing.assert_array_equal(b[H : 2 * H], 1.0)


@pytest.mark.parametrize("t_max", [3.0, 50.0])
def test_lstm_chrono(t_max):
  hs = H
  params = rnnlab.lstm(hs, chrono_t_max=t_max).init(jax.random.key(0), I)
  b = np.asarray(params.b, np.float64)
  b_i, b_f, b_g, b_o = (b[k * hs : (k + 1) * hs] for k in range(4))
  assert np.all(b_f >= 0.0) and np.all(b_f <= np.log(t_max - 1) + 1e-6)
  assert np.unique(b_f).size > 1  # drawn, not constant
  np.testing.assert_array_equal(b_i, -b_f)
  np.testing.assert_array_equal(b_g, 0.0)
  np.testing.assert_array_equal(b_o, 0.0)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_chrono(reset_after):
  hs, t_max = H, 20.0
  key = jax.random.key(0)
  plain = rnnlab.gru(hs, reset_after, bias_init="uniform").init(key, I)
  params = rnnlab.gru(hs, reset_after, bias_init="uniform", chrono_t_max=t_max).init(key, I)
  z = slice(hs, 2 * hs)
  b_iz = np.asarray(params.b_ih, np.float64)[z]
  assert np.all(b_iz >= 0.0) and np.all(b_iz <= np.log(t_max - 1) + 1e-6)
  assert np.unique(b_iz).size > 1
  np.testing.assert_array_equal(np.asarray(params.b_hh)[z], 0.0)
  # The r and n slices are untouched.
  for name in ("b_ih", "b_hh"):
    got, want = np.asarray(getattr(params, name)), np.asarray(getattr(plain, name))
    np.testing.assert_array_equal(
      np.delete(got, np.s_[hs : 2 * hs]), np.delete(want, np.s_[hs : 2 * hs])
    )


def test_callable_initializers_are_used():
  cell = rnnlab.gru(
    H,
    recurrent_init=jax.nn.initializers.constant(0.25),
    input_init=jax.nn.initializers.constant(-0.5),
    bias_init=jax.nn.initializers.constant(0.125),
  )
  p = cell.init(jax.random.key(0), I)
  np.testing.assert_array_equal(p.w_hh, 0.25)
  np.testing.assert_array_equal(p.w_ih, -0.5)
  np.testing.assert_array_equal(p.b_ih, 0.125)
  np.testing.assert_array_equal(p.b_hh, 0.125)


# ----------------------------------------------------------------------------- errors


def test_unknown_activation():
  with pytest.raises(ValueError, match=r"activation='softsign' is not supported.*tanh.*relu"):
    rnnlab.elman(H, "softsign")


def test_callable_activation():
  params = randomize(CELLS["elman_tanh"].init(jax.random.key(0), I), 1)
  x = normal(2, (2, I))
  h0 = jnp.zeros((2, H))
  _, y = rnnlab.elman(H, jnp.sin).step(params, h0, x)
  np.testing.assert_allclose(
    y, np.sin(np.asarray(x @ params.w_ih + params.b)), rtol=1e-5, atol=1e-6
  )


@pytest.mark.parametrize("family_name", ["elman", "lstm", "gru"])
def test_unknown_recurrent_init(family_name):
  factory = getattr(rnnlab, family_name)
  with pytest.raises(
    ValueError, match=r"recurrent_init='xavier' is not a known scheme.*orthogonal"
  ):
    factory(H, recurrent_init="xavier")


@pytest.mark.parametrize("family_name", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "4"])
def test_bad_hidden_size(family_name, bad):
  with pytest.raises(
    ValueError,
    match=rf"{family_name}: hidden_size must be a positive int; got {re.escape(repr(bad))}",
  ):
    getattr(rnnlab, family_name)(bad)


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru_reset_after"])
@pytest.mark.parametrize("bad", [0, -2, 1.5])
def test_bad_input_size(name, bad):
  with pytest.raises(
    ValueError, match=rf"input_size must be a positive int; got {re.escape(repr(bad))}"
  ):
    CELLS[name].init(jax.random.key(0), bad)


@pytest.mark.parametrize("name", IDS)
def test_step_wrong_feature_size_names_shapes(name):
  cell = CELLS[name]
  params = cell.init(jax.random.key(0), I)
  carry = cell.initial_carry(params, (2,))
  msg = (
    re.escape(f"x has shape (2, {I + 2}), expected (*batch, {I})")
    + r".*"
    + re.escape(f"{tuple(params.w_ih.shape)}")
  )
  with pytest.raises(ValueError, match=msg):
    cell.step(params, carry, jnp.ones((2, I + 2)))


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru_reset_after"])
def test_gate_values_rebuild_the_steps_new_carry(name):
  # The step and the gates come from one function of the equations: the gates it
  # reports must give back the carry the step computes.
  cell = CELLS[name]
  params = randomize(cell.init(jax.random.key(0), I), 31, 0.8)
  carry = randomize(cell.initial_carry(params, (2,)), 32, 0.8)
  x = normal(33, (2, I))

  @jax.jit
  def both(params, carry, x):
    xp, hp = rnnlab.cells.preactivations(cell.parts, params, carry, x)
    return cell.step(params, carry, x)[0], cell.parts.gates(carry, xp, hp)

  new, (gates, units) = both(params, carry, x)
  if name == "lstm":
    assert set(gates) == {"i", "f", "o"} and set(units) == {"g", "tanh_c"}
    c = gates["f"] * carry.c + gates["i"] * units["g"]
    np.testing.assert_allclose(new.c, c, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(new.h, gates["o"] * units["tanh_c"], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(units["tanh_c"], np.tanh(new.c), rtol=1e-5, atol=1e-6)
  elif name == "gru_reset_after":
    assert set(gates) == {"r", "z"} and set(units) == {"n"}
    h = (1 - gates["z"]) * units["n"] + gates["z"] * carry
    np.testing.assert_allclose(new, h, rtol=1e-6, atol=1e-6)
  else:
    assert gates == {} and set(units) == {"h"}
    np.testing.assert_array_equal(new, units["h"])


# Each family with another family's params: (cell, params from, expected and given type names).
PARAMS_MIXUPS = [
  ("lstm", "gru_reset_after", "LSTMParams", "GRUParams"),  # the reported AttributeError
  ("gru_reset_after", "lstm", "GRUParams", "LSTMParams"),
  ("gru_reset_before", "elman_tanh", "GRUParams", "ElmanParams"),
  ("elman_tanh", "lstm", "ElmanParams", "LSTMParams"),  # the same fields, other shapes
  ("lstm", "elman_tanh", "LSTMParams", "ElmanParams"),
]


@pytest.mark.parametrize("name,other,expected,given", PARAMS_MIXUPS)
def test_another_cells_params_are_a_one_line_type_error(name, other, expected, given):
  cell = CELLS[name]
  params = jax.eval_shape(lambda: CELLS[other].init(jax.random.key(0), I))
  carry = jax.eval_shape(lambda: cell.initial_carry(CELLS[name].init(jax.random.key(0), I), (2,)))
  x = jax.ShapeDtypeStruct((2, I), jnp.float32)
  msg = rf"^{family(name)}: got params of type {given}; the {family(name)} cell takes {expected} "
  # A check on the params' type, so it holds while traced: under jit, and through unroll.
  with pytest.raises(TypeError, match=msg):
    jax.jit(cell.step).trace(params, carry, x)
  with pytest.raises(TypeError, match=msg):
    jax.eval_shape(lambda p: rnnlab.unroll(cell, p, jnp.ones((2, 4, I))), params)
  with pytest.raises(TypeError, match=msg):
    jax.eval_shape(lambda p, c: rnnlab.unroll(cell, p, jnp.ones((2, 4, I)), c), params, carry)


def test_diagonal_cell_checks_its_params_too():
  cell = rnnlab.diagonal(H)
  params = jax.eval_shape(lambda: CELLS["elman_tanh"].init(jax.random.key(0), I))
  with pytest.raises(TypeError, match="diagonal: got params of type ElmanParams"):
    jax.eval_shape(cell.step, params, jnp.zeros(H), jnp.zeros(I))


def test_step_scalar_x_raises():
  cell = CELLS["elman_tanh"]
  params = cell.init(jax.random.key(0), I)
  with pytest.raises(ValueError, match=r"x has shape \(\)"):
    cell.step(params, cell.initial_carry(params), jnp.float32(1.0))


@pytest.mark.parametrize("family_name", ["lstm", "gru"])
@pytest.mark.parametrize("t_max", [2, 1.5, 0, -4.0])
def test_chrono_t_max_too_small(family_name, t_max):
  with pytest.raises(ValueError, match=rf"t_max > 2.*got {re.escape(str(t_max))}"):
    getattr(rnnlab, family_name)(H, chrono_t_max=t_max)


def test_float64_without_x64_is_an_error_not_a_silent_float32():
  with jax.enable_x64(False), pytest.raises(ValueError, match="64-bit"):
    CELLS["elman_tanh"].init(jax.random.key(0), I, jnp.float64)


@pytest.mark.parametrize("dtype", [jnp.int32, "not-a-dtype"])
def test_non_float_dtype_rejected(dtype):
  with pytest.raises(ValueError, match="dtype"):
    CELLS["lstm"].init(jax.random.key(0), I, dtype=dtype)


def test_init_takes_dtype_by_keyword_and_still_positionally():
  # init(key, input_size, *, dtype=...), the convention of every init in rnnlab.
  key = jax.random.key(0)
  for cell in [*CELLS.values(), *LN_CELLS.values(), rnnlab.diagonal(H), STACK]:
    for dtype in (jnp.bfloat16, np.dtype("bfloat16"), "bfloat16"):
      by_keyword = jax.eval_shape(lambda k, c=cell, d=dtype: c.init(k, I, dtype=d), key)
      positional = jax.eval_shape(lambda k, c=cell, d=dtype: c.init(k, I, d), key)
      assert {l.dtype for l in jax.tree.leaves(by_keyword)} == {jnp.dtype(jnp.bfloat16)}
      assert jax.tree.structure(by_keyword) == jax.tree.structure(positional)
      assert {l.dtype for l in jax.tree.leaves(positional)} == {jnp.dtype(jnp.bfloat16)}
  usage = re.escape("call init(key, input_size, *, dtype=jnp.float32)")
  with pytest.raises(TypeError, match=rf"^lstm.init: unexpected positional argument 'x'; {usage}$"):
    CELLS["lstm"].init(key, I, "x")
  with pytest.raises(TypeError, match=rf"^layer_norm_gru.init: missing input_size; {usage}$"):
    LN_CELLS["layer_norm_gru"].init(key)
  with pytest.raises(TypeError, match=rf"^stack\(elman,gru\).init: unexpected .* 2.0; {usage}$"):
    STACK.init(key, I, 2.0)


# ----------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("name", IDS)
def test_init_determinism(name):
  cell = CELLS[name]
  a = cell.init(jax.random.key(11), I)
  b = cell.init(jax.random.key(11), I)
  c = cell.init(jax.random.key(12), I)
  for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(la, lb)
  # Biases default to zeros (and forget_bias is constant), so only weights differ.
  assert not np.array_equal(a.w_ih, c.w_ih)
  assert not np.array_equal(a.w_hh, c.w_hh)


# ----------------------------------------------------------------------------- layer norm


def np_layer_norm(a, eps=1e-5):
  """(a - mean) / sqrt(var + eps) over the last axis (Ba et al. 2016, eq. 4; their code's eps)."""
  mean = a.mean(axis=-1, keepdims=True)
  return (a - mean) / np.sqrt(((a - mean) ** 2).mean(axis=-1, keepdims=True) + eps)


def np_ln_step(kind, params, carry, x):
  """One layer-normalised step from the equations in the docstrings, float64 NumPy."""
  p = {k: np.asarray(v, np.float64) for k, v in params._asdict().items()}
  x = np.asarray(x, np.float64)
  if kind == "layer_norm_lstm":
    h, c = (np.asarray(v, np.float64) for v in carry)
    a = (
      np_layer_norm(x @ p["w_ih"]) * p["scale_ih"]
      + np_layer_norm(h @ p["w_hh"]) * p["scale_hh"]
      + p["b"]
    )
    i, f, g, o = (a[..., k * H : (k + 1) * H] for k in range(4))
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h = sigmoid(o) * np.tanh(np_layer_norm(c) * p["scale_c"] + p["bias_c"])
    return (h, c), h
  h = np.asarray(carry, np.float64)
  rz, n = slice(0, 2 * H), slice(2 * H, 3 * H)  # r and z share their statistics, n has its own

  def normed(a, side):
    out = np.concatenate([np_layer_norm(a[..., rz]), np_layer_norm(a[..., n])], axis=-1)
    return out * p[f"scale_{side}"] + p[f"b_{side}"]

  u, v = normed(x @ p["w_ih"], "ih"), normed(h @ p["w_hh"], "hh")
  r = sigmoid(u[..., :H] + v[..., :H])
  z = sigmoid(u[..., H : 2 * H] + v[..., H : 2 * H])
  n_t = np.tanh(u[..., n] + r * v[..., n])
  h = (1.0 - z) * n_t + z * h
  return h, h


def random_ln_params(name, seed):
  """Every leaf random, the norms' gains around 1 (so no unit is switched off)."""
  params = randomize(LN_CELLS[name].init(jax.random.key(seed), I), seed, scale=0.7)
  scales = {k: v + 1.0 for k, v in params._asdict().items() if k.startswith("scale")}
  return params._replace(**scales)


def plain_twin(name, params):
  """The plain cell's reference kind and params with the layer-normalised cell's weights."""
  if name == "layer_norm_lstm":
    return "lstm", rnnlab.LSTMParams(params.w_ih, params.w_hh, params.b)
  return "gru_after", rnnlab.GRUParams(params.w_ih, params.w_hh, params.b_ih, params.b_hh)


@pytest.mark.parametrize("name", LN_CELLS)
def test_layer_norm_step_matches_numpy_reference(name):
  params = random_ln_params(name, 1)
  carry = randomize(LN_CELLS[name].initial_carry(params, (3,)), 2, scale=0.8)
  x = normal(3, (3, I))
  new_carry, y = LN_STEPS[name](params, carry, x)
  ref_carry, ref_y = np_ln_step(name, params, carry, x)
  np.testing.assert_allclose(np.asarray(y), ref_y, rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(new_carry), jax.tree.leaves(ref_carry), strict=True):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  # The plain cell on the same weights is another function (the norms do something).
  kind, plain_params = plain_twin(name, params)
  _, y_plain = np_step(kind, plain_params, carry, x)
  assert np.max(np.abs(y_plain - ref_y)) > 1e-2


@pytest.mark.parametrize("name", LN_CELLS)
def test_layer_norm_unroll_equals_a_python_loop_of_the_reference(name):
  params = random_ln_params(name, 4)
  xs = normal(5, (2, 6, I))
  ys, carry = jax.jit(functools.partial(rnnlab.unroll, LN_CELLS[name]))(params, xs)
  ref = LN_CELLS[name].initial_carry(params, (2,))
  for t in range(xs.shape[1]):
    ref, y = np_ln_step(name, params, ref, xs[:, t])
    np.testing.assert_allclose(np.asarray(ys[:, t]), y, rtol=1e-5, atol=1e-5)
  for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(ref), strict=True):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LN_CELLS)
def test_layer_norm_check_grads_float64(name):
  with jax.enable_x64(True):
    cell = LN_CELLS[name]
    params = jax.tree.map(lambda l: l.astype(jnp.float64), random_ln_params(name, 6))
    carry = randomize(cell.initial_carry(params, (2,)), 7, scale=0.8)
    x = normal(8, (2, I), jnp.float64)
    assert all(leaf.dtype == jnp.float64 for leaf in jax.tree.leaves((params, carry)))
    # First order and jitted, for the CI budget (order 2 costs 3x, op by op 2x more).
    check_grads(jax.jit(cell.step), (params, carry, x), order=1, modes=["rev"])


@pytest.mark.parametrize("name", LN_CELLS)
def test_layer_norm_output_ignores_the_scale_of_each_weight_matrix(name):
  # The paper's invariance (sec. 5.1): rescaling W_ih or W_hh leaves every step unchanged,
  # as each projection is normalised on its own. With a negligible eps and powers of two
  # (exact in floating point) only rounding is left.
  cell = getattr(rnnlab, name)(H, eps=1e-20)
  params = random_ln_params(name, 9)
  carry = randomize(cell.initial_carry(params, (3,)), 10, scale=0.8)
  x = normal(11, (3, I))
  _, y = cell.step(params, carry, x)
  scaled = params._replace(w_ih=4.0 * params.w_ih, w_hh=0.25 * params.w_hh)
  _, y_scaled = cell.step(scaled, carry, x)
  np.testing.assert_allclose(np.asarray(y_scaled), np.asarray(y), rtol=1e-5, atol=1e-6)
  # ... which the plain cells are not.
  kind, plain_params = plain_twin(name, params)
  _, p0 = np_step(kind, plain_params, carry, x)
  _, p1 = np_step(kind, plain_params._replace(w_ih=4.0 * params.w_ih), carry, x)
  assert np.max(np.abs(p0 - p1)) > 1e-2


def test_layer_norm_init():
  gain = 1.3
  key = jax.random.key(0)
  lstm_params = rnnlab.layer_norm_lstm(H, 2.0, gain=gain).init(key, I)
  gru_params = rnnlab.layer_norm_gru(H, gain=gain, chrono_t_max=20.0).init(key, I)
  assert isinstance(lstm_params, rnnlab.LayerNormLSTMParams)
  assert isinstance(gru_params, rnnlab.LayerNormGRUParams)
  shapes = {k: v.shape for k, v in lstm_params._asdict().items()}
  assert shapes == {
    "w_ih": (I, 4 * H),
    "w_hh": (H, 4 * H),
    "b": (4 * H,),
    "scale_ih": (4 * H,),
    "scale_hh": (4 * H,),
    "scale_c": (H,),
    "bias_c": (H,),
  }
  shapes = {k: v.shape for k, v in gru_params._asdict().items()}
  assert shapes == {
    "w_ih": (I, 3 * H),
    "w_hh": (H, 3 * H),
    "b_ih": (3 * H,),
    "b_hh": (3 * H,),
    "scale_ih": (3 * H,),
    "scale_hh": (3 * H,),
  }
  # Gains start at 1, the cell state's bias at 0, the weights as the plain cells'.
  for params in (lstm_params, gru_params):
    for k in ("scale_ih", "scale_hh", "scale_c"):
      if hasattr(params, k):
        np.testing.assert_array_equal(getattr(params, k), 1.0)
  np.testing.assert_array_equal(lstm_params.bias_c, 0.0)
  for params, gates in ((lstm_params, 4), (gru_params, 3)):
    for blk in blocks(params.w_hh, gates):
      np.testing.assert_allclose(np.linalg.svd(blk, compute_uv=False), gain, rtol=1e-5)
  same = rnnlab.lstm(H, 2.0, gain=gain).init(key, I)
  np.testing.assert_array_equal(lstm_params.w_ih, same.w_ih)
  np.testing.assert_array_equal(lstm_params.b, same.b)  # forget slice 2.0, the rest 0
  same = rnnlab.gru(H, gain=gain, chrono_t_max=20.0).init(key, I)
  np.testing.assert_array_equal(gru_params.b_ih, same.b_ih)  # chrono's b_iz
  np.testing.assert_array_equal(gru_params.w_hh, same.w_hh)


def test_layer_norm_errors():
  with pytest.raises(ValueError, match=r"layer_norm_lstm: eps must be a number > 0; got 0"):
    rnnlab.layer_norm_lstm(H, eps=0)
  with pytest.raises(ValueError, match=r"layer_norm_gru: hidden_size must be a positive int"):
    rnnlab.layer_norm_gru(0)
  cell = LN_CELLS["layer_norm_lstm"]
  params = jax.eval_shape(lambda: CELLS["lstm"].init(jax.random.key(0), I))
  carry = jax.ShapeDtypeStruct((2, H), jnp.float32)
  with pytest.raises(TypeError, match="^layer_norm_lstm: got params of type LSTMParams"):
    jax.jit(cell.step).trace(params, rnnlab.LSTMCarry(carry, carry), jnp.ones((2, I)))
  with pytest.raises(ValueError, match=r"layer_norm_gru.step: x has shape \(2, 4\)"):
    cell = LN_CELLS["layer_norm_gru"]
    params = cell.init(jax.random.key(0), I)
    cell.step(params, cell.initial_carry(params, (2,)), jnp.ones((2, I + 1)))


# ----------------------------------------------------------------------------- stack_cells


def stack_by_hand(cells, params, carry, x, residual):
  new = []
  for l, (cell, p, c) in enumerate(zip(cells, params, carry.layers, strict=True)):
    c, y = cell.step(p, c, x)
    x = y + x if (residual and l > 0) else y
    new.append(c)
  return new, x


@pytest.mark.parametrize("residual", [False, True])
def test_stack_cells_equals_cells_in_sequence(residual):
  sizes = [H, H, H] if residual else [H, 4, H]
  cells = [rnnlab.elman(sizes[0]), rnnlab.lstm(sizes[1]), rnnlab.gru(sizes[2])]
  stacked = rnnlab.stack_cells(cells, residual=residual)
  params = stacked.init(jax.random.key(0), I)
  assert isinstance(params, tuple) and len(params) == 3
  # Layer l reads layer l-1's width.
  assert [p.w_ih.shape for p in params] == [
    (I, sizes[0]),
    (sizes[0], 4 * sizes[1]),
    (sizes[1], 3 * sizes[2]),
  ]
  params = randomize(params, 1)
  carry = randomize(stacked.initial_carry(params, (2,)), 2)
  x = normal(3, (2, I))
  new_carry, y = jax.jit(stacked.step)(params, carry, x)

  # By hand, with the NumPy references: no use of the library's step at all.
  xs, want_carries = np.asarray(x, np.float64), []
  kinds = ["elman_tanh", "lstm", "gru_after"]
  for l, (kind, p, c) in enumerate(zip(kinds, params, carry.layers, strict=True)):
    c_new, out = np_step(kind, p, c, xs)
    xs = out + xs if (residual and l > 0) else out
    want_carries.append(c_new)
  np.testing.assert_allclose(np.asarray(y), xs, rtol=1e-5, atol=1e-5)
  assert y.shape == (2, sizes[-1])
  for got, want in zip(jax.tree.leaves(new_carry), jax.tree.leaves(want_carries), strict=True):
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)

  # And with the cells' own steps.
  hand_carries, hand_y = stack_by_hand(cells, params, carry, x, residual)
  np.testing.assert_allclose(y, hand_y, rtol=1e-6, atol=1e-6)
  for got, want in zip(jax.tree.leaves(new_carry), jax.tree.leaves(hand_carries), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_stack_residual_adds_the_input():
  # Zero the second layer's weights: it outputs tanh(0) = 0, so the residual output is its input.
  cells = [rnnlab.elman(4), rnnlab.elman(4)]
  params = rnnlab.stack_cells(cells, residual=True).init(jax.random.key(0), I)
  zero = jax.tree.map(jnp.zeros_like, params[1])
  params = (params[0], zero)
  stacked_res = rnnlab.stack_cells(cells, residual=True)
  stacked_plain = rnnlab.stack_cells(cells, residual=False)
  carry = stacked_res.initial_carry(params, (3,))
  x = normal(1, (3, I))
  _, y_res = stacked_res.step(params, carry, x)
  _, y_plain = stacked_plain.step(params, carry, x)
  _, y0 = cells[0].step(params[0], carry.layers[0], x)
  np.testing.assert_array_equal(y_plain, 0.0)
  np.testing.assert_allclose(y_res, y0, rtol=1e-6)
  assert np.any(np.asarray(y0) != 0.0)


def test_stack_residual_width_mismatch():
  stacked = rnnlab.stack_cells([rnnlab.elman(6), rnnlab.lstm(5)], residual=True)
  with pytest.raises(
    ValueError, match=r"residual=True needs layer 1 \(lstm\).*6 features.*output 5"
  ):
    stacked.init(jax.random.key(0), I)
  # The same widths are fine without the residual, and layer 0 may change width with it.
  rnnlab.stack_cells([rnnlab.elman(6), rnnlab.lstm(5)]).init(jax.random.key(0), I)
  rnnlab.stack_cells([rnnlab.elman(6), rnnlab.lstm(6)], residual=True).init(jax.random.key(0), I)


@pytest.mark.parametrize("bad", [[], [rnnlab.elman(4), "lstm"], [lambda x: x]])
def test_stack_rejects_non_cells(bad):
  with pytest.raises(ValueError, match="non-empty sequence of Cells"):
    rnnlab.stack_cells(bad)


def test_stack_cells_is_a_cell_with_stacked_carry():
  stacked = rnnlab.stack_cells([rnnlab.gru(4), rnnlab.lstm(4)])
  assert isinstance(stacked, rnnlab.Cell)
  params = stacked.init(jax.random.key(0), I)
  carry = stacked.initial_carry(params, (2, 3))
  assert isinstance(carry.layers[1], rnnlab.LSTMCarry)
  assert [leaf.shape for leaf in jax.tree.leaves(carry)] == [(2, 3, 4)] * 3
