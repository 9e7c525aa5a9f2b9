"""Tests for rnnlab.unroll: against Python loops over cell.step, lengths, reverse, jit/vmap/grad.

What rnnlab.testing checks for every cell (tests/test_cells.py runs it on each built-in
cell: batch-major unroll against the loop, causality, padding with gradients, jit, vmap,
dtypes) is not repeated here; these tests cover the unroll's own options: layouts,
reverse (with lengths, padding and causality), traced lengths, retraces, errors.
"""

from functools import partial

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnlab

I, H, B, T = 3, 5, 3, 6

CELLS = {
  "elman_tanh": rnnlab.elman(H, "tanh"),
  "elman_relu": rnnlab.elman(H, "relu"),
  "elman_linear": rnnlab.elman(H, "linear", gain=0.9),
  "lstm": rnnlab.lstm(H),
  "gru_reset_after": rnnlab.gru(H, reset_after=True),
  "gru_reset_before": rnnlab.gru(H, reset_after=False),
}
# An array carry, a NamedTuple carry, a cell without CellParts: for the unroll's own
# options (what every cell must satisfy is rnnlab.testing's, run in tests/test_cells.py).
CARRY_KINDS = ["elman_tanh", "lstm", "gru_reset_before"]
# Shared compiled functions: one compile per (cell, shapes, options) for the whole module.
STEPS = {name: jax.jit(cell.step) for name, cell in CELLS.items()}
UNROLL = jax.jit(
  rnnlab.unroll, static_argnums=0, static_argnames=("reverse", "time_major", "unroll")
)


def normal(seed, shape, scale=1.0, dtype=np.float32):
  return jnp.asarray(scale * np.random.default_rng(seed).standard_normal(shape), dtype)


def randomize(tree, seed, scale=0.5):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype), tree)


def params_for(name, seed=0, dtype=jnp.float32):
  # Random parameters (biases included) so every term of the step matters.
  return randomize(CELLS[name].init(jax.random.key(seed), I, dtype), seed + 100, scale=0.6)


def random_carry(name, params, batch_shape, seed):
  return randomize(CELLS[name].initial_carry(params, batch_shape), seed, scale=0.7)


def loop(name, params, xs_TxBxI, carry):
  """The reference: a Python loop over cell.step on a time-major sequence."""
  ys = []
  for t in range(xs_TxBxI.shape[0]):
    carry, y = STEPS[name](params, carry, xs_TxBxI[t])
    ys.append(y)
  return jnp.stack(ys), carry


def assert_trees_close(a, b, rtol=1e-5, atol=1e-5):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for la, lb in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert la.shape == lb.shape
    np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=rtol, atol=atol)


def tree_index(tree, idx):
  return jax.tree.map(lambda leaf: leaf[idx], tree)


# ----------------------------------------------------------------------------- against a loop


@pytest.mark.parametrize("layout", ["time_major", "unbatched", "batch_2d"])
@pytest.mark.parametrize("name", CARRY_KINDS)
def test_unroll_matches_python_loop(name, layout):
  params = params_for(name)
  batch_shape = {"unbatched": (), "batch_2d": (2, 2)}.get(layout, (B,))
  xs_T = normal(1, (T, *batch_shape, I))  # time-major reference input
  # An explicit random carry for the batched layouts, the default (zeros) otherwise.
  carry = None if layout == "unbatched" else random_carry(name, params, batch_shape, 2)
  ref_carry = CELLS[name].initial_carry(params, batch_shape) if carry is None else carry
  want_ys, want_carry = loop(name, params, xs_T, ref_carry)
  if layout == "time_major":
    ys, got_carry = UNROLL(CELLS[name], params, xs_T, carry, time_major=True)
    got_ys = ys
  else:
    xs = jnp.moveaxis(xs_T, 0, -2)  # (*batch, T, I)
    ys, got_carry = UNROLL(CELLS[name], params, xs, carry)
    assert ys.shape == (*batch_shape, T, H)
    got_ys = jnp.moveaxis(ys, -2, 0)
  assert_trees_close(got_ys, want_ys)
  assert_trees_close(got_carry, want_carry)


def test_unroll_option_is_only_a_schedule():
  name = "lstm"
  params = params_for(name)
  xs = normal(3, (B, T, I))
  ys1, c1 = UNROLL(CELLS[name], params, xs, lengths=jnp.array([6, 2, 4]))
  ys2, c2 = UNROLL(CELLS[name], params, xs, lengths=jnp.array([6, 2, 4]), unroll=3)
  assert_trees_close(ys1, ys2, rtol=1e-6, atol=1e-6)
  assert_trees_close(c1, c2, rtol=1e-6, atol=1e-6)


# ----------------------------------------------------------------------------- jit / vmap


class UnrollVariantsTest(chex.TestCase):
  """jit and no-jit give the same unroll (lstm: a NamedTuple carry; with lengths and reverse)."""

  @chex.variants(with_jit=True, without_jit=True)
  def test_jit_equals_no_jit(self):
    name = "lstm"
    params = params_for(name)
    xs = normal(5, (2, 4, I))
    lengths = jnp.array([4, 2])

    @self.variant
    def run(params, xs, lengths):
      fwd = rnnlab.unroll(CELLS[name], params, xs, lengths=lengths)
      bwd = rnnlab.unroll(CELLS[name], params, xs, lengths=lengths, reverse=True)
      return fwd, bwd

    (ys, carry), (ys_r, carry_r) = run(params, xs, lengths)
    # Reference: the loop, per sequence over its valid part.
    for b, L in enumerate([4, 2]):
      init = CELLS[name].initial_carry(params)
      want_ys, want_c = loop(name, params, xs[b, :L], init)
      assert_trees_close(ys[b, :L], want_ys)
      assert_trees_close(tree_index(carry, b), want_c)
      want_ys_r, want_c_r = loop(name, params, xs[b, :L][::-1], init)
      assert_trees_close(ys_r[b, :L], want_ys_r[::-1])
      assert_trees_close(tree_index(carry_r, b), want_c_r)
      np.testing.assert_array_equal(ys[b, L:], 0.0)
      np.testing.assert_array_equal(ys_r[b, L:], 0.0)


@pytest.mark.parametrize("name", CARRY_KINDS)
def test_no_retrace_on_second_call(name):
  chex.clear_trace_counter()  # the counter is keyed by the function's code, shared across params

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(params, xs, carry, lengths):
    ys, c = rnnlab.unroll(CELLS[name], params, xs, carry, lengths=lengths, reverse=True)
    return jnp.sum(ys), c

  a = run(
    params_for(name, 0),
    normal(8, (B, T, I)),
    random_carry(name, params_for(name), (B,), 9),
    jnp.array([6, 3, 0]),
  )
  b = run(
    params_for(name, 1),
    normal(10, (B, T, I)),
    random_carry(name, params_for(name), (B,), 11),
    jnp.array([1, 2, 5]),
  )
  assert not np.allclose(a[0], b[0])
  # A new shape is a new trace, which the counter must catch (the check is live).
  with pytest.raises(AssertionError, match="traced"):
    run(
      params_for(name),
      normal(8, (B, T + 1, I)),
      random_carry(name, params_for(name), (B,), 9),
      jnp.array([6, 3, 0]),
    )


# ----------------------------------------------------------------------------- causality


@partial(jax.jit, static_argnums=(0, 1))
def jac_ys_xs(name, reverse, params, xs):
  return jax.jacrev(lambda xs: rnnlab.unroll(CELLS[name], params, xs, reverse=reverse)[0])(xs)


# Forward causality is rnnlab.testing.check_causality's, on every cell (tests/test_cells.py).
@pytest.mark.parametrize("reverse", [True])
@pytest.mark.parametrize("name", CARRY_KINDS)
def test_causality(name, reverse):
  Tc = 5
  params = params_for(name)
  xs = normal(12, (Tc, I))
  J = np.asarray(jac_ys_xs(name, reverse, params, xs))  # (T, H, T, I): d ys[t] / d xs[s]
  assert J.shape == (Tc, H, Tc, I)
  for t in range(Tc):
    for s in range(Tc):
      future = s > t if not reverse else s < t
      if future:
        np.testing.assert_array_equal(J[t, :, s, :], 0.0, err_msg=f"ys[{t}] depends on xs[{s}]")
  # Not vacuous: each output depends on some input of its own past.
  for t in range(Tc):
    past = slice(0, t + 1) if not reverse else slice(t, Tc)
    assert np.abs(J[t, :, past, :]).sum() > 0.0


# ----------------------------------------------------------------------------- lengths


LENGTHS = np.array([T, 2, 0])


# Outputs zero past each length and the final carry of the cut sequences (lengths
# 0, T and between): rnnlab.testing.check_padding's, on every cell (tests/test_cells.py).


def test_all_lengths_zero_gives_initial_carry():
  name = "lstm"
  params = params_for(name)
  carry0 = random_carry(name, params, (B,), 15)
  for reverse in (False, True):
    ys, carry = UNROLL(
      CELLS[name],
      params,
      normal(16, (B, T, I)),
      carry0,
      lengths=jnp.zeros(B, jnp.int32),
      reverse=reverse,
    )
    np.testing.assert_array_equal(ys, 0.0)
    for got, want in zip(jax.tree.leaves(carry), jax.tree.leaves(carry0), strict=True):
      np.testing.assert_array_equal(got, want)


UNROLL_IMPL = jax.jit(rnnlab.unroll, static_argnums=0, static_argnames=("reverse", "impl"))


@pytest.mark.parametrize("impl", ["scan", "fused"])
@pytest.mark.parametrize("reverse", [False, True])
def test_traced_lengths_outside_range_are_clamped(reverse, impl):
  # Under jit the values cannot be checked; unroll documents a clamp to [0, T].
  cell, params = CELLS["lstm"], params_for("lstm")
  xs, carry0 = normal(20, (4, T, I)), random_carry("lstm", params, (4,), 21)
  run = partial(UNROLL_IMPL, cell, params, xs, carry0, reverse=reverse, impl=impl)
  ys, carry = run(lengths=jnp.array([T + 3, -2, 1_000_000, -1_000_000]))
  want_ys, want_carry = run(lengths=jnp.array([T, 0, T, 0]))
  np.testing.assert_array_equal(ys, want_ys)
  jax.tree.map(np.testing.assert_array_equal, carry, want_carry)
  np.testing.assert_array_equal(ys[1], 0.0)
  assert np.all(ys[0] != 0)


def test_check_carry_is_public_and_names_its_caller():
  cell, params = CELLS["lstm"], params_for("lstm")
  x = jax.ShapeDtypeStruct((3, I), jnp.float32)
  rnnlab.scan.check_carry(cell, params, cell.initial_carry(params, (3,)), x)  # fits: no error
  with pytest.raises(ValueError, match=r"^my_diagnostic: the carry .* does not fit lstm"):
    rnnlab.scan.check_carry(cell, params, cell.initial_carry(params, (2,)), x, "my_diagnostic")


def padded_loss(name, reverse, params, xs, carry, lengths):
  ys, c = rnnlab.unroll(CELLS[name], params, xs, carry, lengths=lengths, reverse=reverse)
  w = jnp.linspace(-1.0, 2.0, ys.size).reshape(ys.shape)
  return jnp.sum(w * ys) + sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(c)), ys


VALUE_AND_GRAD = jax.jit(
  jax.value_and_grad(padded_loss, argnums=(2, 3, 4), has_aux=True), static_argnums=(0, 1)
)


# Forward is rnnlab.testing.check_padding's, on every cell (tests/test_cells.py).
@pytest.mark.parametrize("reverse", [True])
@pytest.mark.parametrize("name", CARRY_KINDS)
def test_padding_changes_neither_outputs_nor_gradients(name, reverse):
  params = params_for(name)
  xs = normal(17, (B, T, I))
  carry0 = random_carry(name, params, (B,), 18)
  lengths = jnp.asarray(LENGTHS)
  pad = np.arange(T)[None, :, None] >= LENGTHS[:, None, None]  # (B, T, 1) padding mask
  (loss_a, ys_a), grads_a = VALUE_AND_GRAD(name, reverse, params, xs, carry0, lengths)
  g_params_a, g_xs_a, g_carry_a = grads_a
  # Gradient w.r.t. padding is exactly zero; the real part is not all zero.
  np.testing.assert_array_equal(np.where(pad, g_xs_a, 0.0), 0.0)
  assert np.abs(np.where(pad, 0.0, g_xs_a)).sum() > 0
  for padding in [normal(19, (B, T, I), scale=100.0), jnp.full((B, T, I), jnp.nan)]:
    xs_b = jnp.where(pad, padding, xs)
    (loss_b, ys_b), grads_b = VALUE_AND_GRAD(name, reverse, params, xs_b, carry0, lengths)
    np.testing.assert_array_equal(ys_b, ys_a)
    np.testing.assert_allclose(loss_b, loss_a, rtol=1e-6)
    assert_trees_close(grads_b, grads_a, rtol=1e-6, atol=1e-6)
    for leaf in jax.tree.leaves(grads_b):
      assert np.all(np.isfinite(leaf))


# ----------------------------------------------------------------------------- reverse


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("name", CARRY_KINDS)
def test_reverse_equals_flipped_forward(name, time_major):
  params = params_for(name)
  xs = normal(20, (B, T, I))
  carry0 = random_carry(name, params, (B,), 21)
  if time_major:
    xs_in = jnp.swapaxes(xs, 0, 1)
    ys, carry = UNROLL(CELLS[name], params, xs_in, carry0, reverse=True, time_major=True)
    ys = jnp.swapaxes(ys, 0, 1)
  else:
    ys, carry = UNROLL(CELLS[name], params, xs, carry0, reverse=True)
  ys_f, carry_f = UNROLL(CELLS[name], params, xs[:, ::-1], carry0)
  assert_trees_close(ys, ys_f[:, ::-1], rtol=1e-6, atol=1e-6)
  assert_trees_close(carry, carry_f, rtol=1e-6, atol=1e-6)
  # Not the forward unroll: reversal matters.
  ys_fwd, _ = UNROLL(CELLS[name], params, xs, carry0)
  assert not np.allclose(ys, ys_fwd, atol=1e-4)


def reverse_with_lengths_reference(name, params, xs, carry0, lengths):
  """Each sequence's valid part flipped, run forward with the loop, flipped back, zero-padded."""
  ys = np.zeros((xs.shape[0], xs.shape[1], H), np.float32)
  carries = []
  for b, L in enumerate(lengths):
    c = tree_index(carry0, b)
    if L > 0:
      out, c = loop(name, params, xs[b, :L][::-1], c)
      ys[b, :L] = np.asarray(out)[::-1]
    carries.append(c)
  return ys, jax.tree.map(lambda *leaves: jnp.stack(leaves), *carries)


@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("name", CARRY_KINDS)
def test_reverse_with_lengths(name, time_major):
  params = params_for(name)
  xs = normal(22, (B, T, I))
  carry0 = random_carry(name, params, (B,), 23)
  lengths = np.array([4, T, 0])
  if time_major:
    ys, carry = UNROLL(
      CELLS[name],
      params,
      jnp.swapaxes(xs, 0, 1),
      carry0,
      lengths=jnp.asarray(lengths),
      reverse=True,
      time_major=True,
    )
    ys = jnp.swapaxes(ys, 0, 1)
  else:
    ys, carry = UNROLL(CELLS[name], params, xs, carry0, lengths=jnp.asarray(lengths), reverse=True)
  want_ys, want_carry = reverse_with_lengths_reference(name, params, xs, carry0, lengths)
  assert_trees_close(ys, want_ys)
  assert_trees_close(carry, want_carry)


# ----------------------------------------------------------------------------- gradients


# The step's own gradients (order 2) are rnnlab.testing.check_grads's, on every cell.
@pytest.mark.parametrize("name", CARRY_KINDS)
def test_gradients_match_finite_differences(name):
  with jax.enable_x64(True):
    cell = CELLS[name]
    params = randomize(cell.init(jax.random.key(0), I, jnp.float64), 1, scale=0.6)
    carry0 = randomize(cell.initial_carry(params, (2,)), 2, scale=0.7)
    xs = normal(3, (2, 4, I), dtype=np.float64)
    lengths = jnp.array([4, 2])

    @jax.jit
    def loss(params, xs, carry):
      ys, c = rnnlab.unroll(cell, params, xs, carry, lengths=lengths)
      w = jnp.linspace(-1.0, 1.0, ys.size).reshape(ys.shape)
      return jnp.sum(w * ys) + sum(jnp.sum(jnp.sin(leaf)) for leaf in jax.tree.leaves(c))

    grads = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry0)
    for leaf in jax.tree.leaves(grads):
      assert leaf.dtype == jnp.float64
      assert np.all(np.isfinite(leaf))
    assert np.abs(np.asarray(grads[1])).sum() > 0
    check_grads(loss, (params, xs, carry0), order=1, modes=["rev"])


# ----------------------------------------------------------------------------- errors


@pytest.fixture(scope="module")
def elman_params():
  return CELLS["elman_tanh"].init(jax.random.key(0), I)


def test_error_xs_ndim_1(elman_params):
  with pytest.raises(ValueError, match=r"xs must have shape \(\*batch, T, I\); got shape \(6,\)"):
    rnnlab.unroll(CELLS["elman_tanh"], elman_params, jnp.ones(6))
  with pytest.raises(ValueError, match=r"xs must have shape \(T, \*batch, I\)"):
    rnnlab.unroll(CELLS["elman_tanh"], elman_params, jnp.ones(6), time_major=True)


def test_error_lengths_wrong_shape(elman_params):
  with pytest.raises(
    ValueError, match=r"lengths has shape \(2,\); expected the batch shape \(3,\)"
  ):
    rnnlab.unroll(CELLS["elman_tanh"], elman_params, jnp.ones((3, T, I)), lengths=jnp.array([1, 2]))
  with pytest.raises(ValueError, match=r"lengths has shape \(3, 1\)"):
    rnnlab.unroll(
      CELLS["elman_tanh"], elman_params, jnp.ones((3, T, I)), lengths=jnp.ones((3, 1), jnp.int32)
    )


def test_error_float_lengths(elman_params):
  with pytest.raises(ValueError, match=r"lengths must be integers; got dtype float32"):
    rnnlab.unroll(
      CELLS["elman_tanh"], elman_params, jnp.ones((3, T, I)), lengths=jnp.array([1.0, 2.0, 3.0])
    )


@pytest.mark.parametrize("bad,index", [(-1, 1), (T + 1, 2), (100, 0)])
def test_error_lengths_out_of_range(elman_params, bad, index):
  lengths = [2, 3, 4]
  lengths[index] = bad
  with pytest.raises(
    ValueError, match=rf"lengths must lie in \[0, T={T}\]; got {bad} at index \({index},\)"
  ):
    rnnlab.unroll(
      CELLS["elman_tanh"], elman_params, jnp.ones((3, T, I)), lengths=jnp.array(lengths)
    )


@pytest.mark.parametrize("carry_batch", [(2,), (1,), (), (3, 2)])
def test_error_carry_wrong_batch_shape(elman_params, carry_batch):
  carry = jnp.zeros((*carry_batch, H))
  with pytest.raises(
    ValueError, match=r"carry.*float32\[" + ", ".join(map(str, (*carry_batch, H)))
  ):
    rnnlab.unroll(CELLS["elman_tanh"], elman_params, jnp.ones((3, T, I)), carry)


def test_error_carry_wrong_structure_or_dtype():
  params = CELLS["lstm"].init(jax.random.key(0), I)
  with pytest.raises(
    ValueError, match=r"carry .* does not fit lstm.*LSTMCarry"
  ):  # an array where an LSTMCarry belongs
    rnnlab.unroll(CELLS["lstm"], params, jnp.ones((3, T, I)), jnp.zeros((3, H)))
  bf16 = jax.tree.map(lambda l: l.astype(jnp.bfloat16), CELLS["lstm"].initial_carry(params, (3,)))
  with pytest.raises(ValueError, match=r"carry .*bfloat16.* does not fit lstm.*expected .*float32"):
    rnnlab.unroll(CELLS["lstm"], params, jnp.ones((3, T, I)), bf16)


def test_error_wrong_feature_size_names_shapes(elman_params):
  with pytest.raises(ValueError, match=r"x has shape \(3, 7\), expected \(\*batch, 3\)"):
    rnnlab.unroll(CELLS["elman_tanh"], elman_params, jnp.ones((3, T, 7)))


@pytest.mark.parametrize("not_a_cell", ["elman", None, (1, 2, 3)])
def test_error_not_a_cell(elman_params, not_a_cell):
  with pytest.raises(
    TypeError, match=rf"cell must be an rnnlab Cell; got {type(not_a_cell).__name__}"
  ):
    rnnlab.unroll(not_a_cell, elman_params, jnp.ones((3, T, I)))
  with pytest.raises(TypeError, match="cell must be an rnnlab Cell; got function"):
    rnnlab.unroll(CELLS["elman_tanh"].step, elman_params, jnp.ones((3, T, I)))


# ----------------------------------------------------------------------------- a user's own cell


def leaky_dict(alpha, hidden):
  """h' = (1 - a) h + a x W; the carry is a dict that also counts the steps taken."""

  def init(key, input_size, dtype=jnp.float32):
    return {"w": jax.random.normal(key, (input_size, hidden), dtype)}

  def initial_carry(params, batch_shape=()):
    bs = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    return {"h": jnp.zeros((*bs, hidden)), "steps": jnp.zeros(bs)}

  def step(params, carry, x):
    h = (1 - alpha) * carry["h"] + alpha * (x @ params["w"])
    return {"h": h, "steps": carry["steps"] + 1.0}, h

  return rnnlab.Cell(init, initial_carry, step, "leaky_dict")


def leaky_tuple(alpha, hidden):
  """The same integrator with a tuple carry (h, steps) and a tuple output (h, 2h)."""

  def init(key, input_size, dtype=jnp.float32):
    return {"w": jax.random.normal(key, (input_size, hidden), dtype)}

  def initial_carry(params, batch_shape=()):
    bs = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
    return (jnp.zeros((*bs, hidden)), jnp.zeros(bs))

  def step(params, carry, x):
    h = (1 - alpha) * carry[0] + alpha * (x @ params["w"])
    return (h, carry[1] + 1.0), (h, 2.0 * h)

  return rnnlab.Cell(init, initial_carry, step, "leaky_tuple")


def leaky_reference(alpha, w, xs, lengths, reverse):
  """NumPy float64: per sequence, the valid part (flipped if reverse), zeros past it."""
  w, xs = np.asarray(w, np.float64), np.asarray(xs, np.float64)
  ys = np.zeros((*xs.shape[:2], w.shape[1]))
  hs, steps = np.zeros((xs.shape[0], w.shape[1])), np.zeros(xs.shape[0])
  for b, L in enumerate(lengths):
    order = range(L - 1, -1, -1) if reverse else range(L)
    h = np.zeros(w.shape[1])
    for t in order:
      h = (1 - alpha) * h + alpha * (xs[b, t] @ w)
      ys[b, t] = h
      steps[b] += 1
    hs[b] = h
  return ys, hs, steps


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("carry_kind", ["dict", "tuple"])
def test_custom_cell(carry_kind, reverse):
  alpha, hidden = 0.3, 4
  cell = (leaky_dict if carry_kind == "dict" else leaky_tuple)(alpha, hidden)
  params = cell.init(jax.random.key(0), I)
  xs = normal(30, (B, T, I))
  lengths = np.array([3, T, 0])
  ys, carry = UNROLL(cell, params, xs, lengths=jnp.asarray(lengths), reverse=reverse)
  want_ys, want_h, want_steps = leaky_reference(alpha, params["w"], xs, lengths, reverse)
  if carry_kind == "dict":
    h, steps = carry["h"], carry["steps"]
  else:
    (ys, ys2), (h, steps) = ys, carry
    np.testing.assert_allclose(ys2, 2 * want_ys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(ys, want_ys, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(h, want_h, rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(steps, lengths.astype(np.float32))  # frozen past the length
