"""Gradient-flow diagnostics against closed forms and independent computations.

Each quantity is checked against something computed another way: probe
gradients against a Python-loop model perturbed at one step at a time, Jacobian
norms against closed forms and ``jax.jacrev`` of the whole unroll, spectra
against NumPy, gates against NumPy equations, the curse of memory against its
closed form.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import diagnostics as diag

B, T, I = 3, 6, 2

# Jitted once per cell object, so the tests that share a cell share the compile.
jacobian_norms = jax.jit(
  diag.jacobian_norms, static_argnums=0, static_argnames=("method", "lags", "num_iters", "state")
)
lyapunov_spectrum = jax.jit(
  diag.lyapunov_spectrum, static_argnums=0, static_argnames=("num_exponents", "transient")
)
gate_statistics = jax.jit(diag.gate_statistics, static_argnums=0, static_argnames=("bins",))
gate_values = jax.jit(diag.gate_values, static_argnums=0)


def randomize(tree, seed, scale=0.6):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(scale * rng.standard_normal(l.shape), l.dtype), tree)


def random_params(cell, seed, scale=0.6):
  """Random parameters of ``cell``'s shapes (no eager init: cheaper in tests)."""
  return randomize(jax.eval_shape(lambda: cell.init(jax.random.key(0), I)), seed, scale)


def orthogonal(n, seed):
  q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
  return jnp.asarray(q, jnp.float32)


# ---------------------------------------------------------------------------
# 1. Probe gradients against a model perturbed one step at a time.
# ---------------------------------------------------------------------------

# A stack that runs all three cells, a bidirectional layer among them.
LAYERS = (("elman", False), ("lstm", True), ("gru", False))
H = 4


def make_cell(name):
  return {"elman": rnnlab.elman, "lstm": rnnlab.lstm, "gru": rnnlab.gru}[name](H)


MODEL = rnnlab.stacked(
  [rnnlab.bidirectional(make_cell(n)) if bi else make_cell(n) for n, bi in LAYERS]
)
# The unrolls in call order: (layer, cell name, reverse).
UNROLLS = [
  (l, n, rev) for l, (n, bi) in enumerate(LAYERS) for rev in ((False, True) if bi else (False,))
]
WEIGHTS = randomize(jnp.zeros((B, T, H)), 7, 1.0)


def model_loss(params, xs, lengths):
  ys, _ = MODEL.apply(params, xs, lengths=lengths)
  return jnp.sum(jnp.sin(ys) * WEIGHTS)


def reference_loss(params, xs, lengths, which, t_star, e):
  """The same model as Python loops over ``cell.step``; ``e`` is added to unroll
  ``which``'s carry after step ``t_star`` (if that step is valid)."""
  valid = np.arange(T)[None, :] < lengths[:, None]  # (B, T)
  inputs = xs
  for l, (name, bi) in enumerate(LAYERS):
    cell = make_cell(name)
    outs = []
    for rev in (False, True) if bi else (False,):
      p = (params[l].backward if rev else params[l].forward) if bi else params[l]
      u = UNROLLS.index((l, name, rev))
      c = cell.initial_carry(p, (B,))
      ys = [None] * T
      for t in reversed(range(T)) if rev else range(T):
        new, _ = cell.step(p, c, inputs[:, t])
        hit = (u == which) & (t == t_star)
        new = jax.tree.map(lambda a, d, hit=hit: a + jnp.where(hit, d, 0.0), new, e[u])
        keep = jnp.asarray(valid[:, t])[:, None]
        c = jax.tree.map(lambda n, o, keep=keep: jnp.where(keep, n, o), new, c)
        h = new.h if name == "lstm" else new
        ys[t] = jnp.where(keep, h, 0.0)
      outs.append(jnp.stack(ys, axis=1))
    inputs = jnp.concatenate(outs, axis=-1)
  return jnp.sum(jnp.sin(inputs) * WEIGHTS)


# One compile of the reference's gradient for every (unroll, step) and both cases.
NAIVE = jax.jit(jax.grad(reference_loss, argnums=5))


@pytest.fixture(scope="module")
def model_setup():
  params = randomize(jax.eval_shape(lambda k: MODEL.init(k, I), jax.random.key(0)), 1)
  xs = randomize(jnp.zeros((B, T, I)), 2, 1.0)
  return params, xs


def unroll_state(state, layer, reverse):
  """The state gradient of one unroll, found where its params are in MODEL's params."""
  entry = state[layer]
  if isinstance(entry, rnnlab.layers.BidirectionalParams):
    return entry.backward if reverse else entry.forward
  return entry


# The default (time first, organised like the params) and both options, in one compile.
def all_layouts(params, xs, lengths):
  value, grads, state = diag.value_and_state_grads(model_loss)(params, xs, lengths)
  by_call = diag.value_and_state_grads(model_loss, by_call=True, time_major=False)
  return value, grads, state, by_call(params, xs, lengths)[2]


ALL_LAYOUTS = jax.jit(all_layouts)


@pytest.mark.parametrize("lengths", [None, (6, 3, 0)], ids=["full", "lengths"])
def test_probe_gradients_equal_one_perturbation_at_a_time(model_setup, lengths):
  params, xs = model_setup
  lengths_arr = np.full((B,), T) if lengths is None else np.asarray(lengths)
  lengths_in = None if lengths is None else jnp.asarray(lengths_arr)
  value, grads, state, by_call = ALL_LAYOUTS(params, xs, lengths_in)
  # Organised like the params: a tuple of layers, the bidirectional one by direction.
  lstm_carry = rnnlab.LSTMCarry(0, 0)
  bidirectional = rnnlab.layers.BidirectionalParams(lstm_carry, lstm_carry)
  assert jax.tree.structure(state) == jax.tree.structure((0, bidirectional, 0))
  per_unroll = [unroll_state(state, l, rev) for l, _, rev in UNROLLS]
  assert per_unroll[1].h.shape == (T, B, H)  # time first
  # by_call: the same gradients, one per unroll in call order, batch first.
  assert len(by_call) == len(UNROLLS)
  for a, b in zip(per_unroll, by_call, strict=True):
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.moveaxis(a, 0, 1), b), a, b)
  if lengths is None:  # The value and parameter gradients are jax.value_and_grad's.
    v0, g0 = jax.jit(jax.value_and_grad(model_loss))(params, xs, lengths_in)
    np.testing.assert_allclose(value, v0, rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), grads, g0)
  # One jax.grad of the reference per (unroll, step), with e at zero.
  zeros = [jax.tree.map(lambda a: jnp.zeros_like(a[0]), g) for g in per_unroll]
  for u in range(len(UNROLLS)):
    for t in range(T):
      expected = NAIVE(params, xs, lengths_arr, u, t, zeros)[u]
      got = jax.tree.map(lambda g, t=t: g[t], per_unroll[u])
      jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=2e-6), got, expected)
  # Steps past a length get zero, steps before it do not.
  if lengths is not None:
    g = state[0]
    assert np.all(g[3:, 1] == 0) and np.all(g[:, 2] == 0) and np.any(g[:3, 1] != 0)
  norms = diag.step_norms(state)
  np.testing.assert_allclose(
    norms[1].forward.c, np.linalg.norm(state[1].forward.c, axis=-1), rtol=1e-6
  )


def test_state_grads_under_vmap_and_with_aux():
  cell = rnnlab.gru(3)
  xs = randomize(jnp.zeros((2, 5, I)), 3, 1.0)

  def loss(params, xs):
    ys, _ = rnnlab.unroll(cell, params, xs)
    return jnp.sum(ys[:, -1] ** 2), ys

  params = random_params(cell, 4)
  members = jax.tree.map(lambda p: jnp.stack([p, 2 * p]), params)
  batched = jax.jit(jax.vmap(diag.state_grads(loss, has_aux=True), in_axes=(0, None)))(members, xs)
  solo_fn = jax.jit(diag.value_and_state_grads(loss, has_aux=True))
  for m in range(2):
    (value, ys), _, solo = solo_fn(jax.tree.map(lambda p, m=m: p[m], members), xs)
    np.testing.assert_allclose(batched[m], solo, atol=1e-6)
    # The params are the cell's own, so the state gradient is its carry's: (T, B, H),
    # time first; the loss reads only the last step.
    assert solo.shape == (5, 2, 3)
    np.testing.assert_allclose(solo[-1], 2 * ys[:, -1], rtol=1e-5)
    np.testing.assert_allclose(solo[:-1] != 0, True)
    np.testing.assert_allclose(value, jnp.sum(ys[:, -1] ** 2), rtol=1e-6)


def test_state_grads_errors():
  with pytest.raises(ValueError, match="ran no rnnlab unroll"):
    diag.state_grads(lambda x: jnp.sum(x**2))(jnp.ones(3))


# Shapes only (jax.eval_shape): the structure of the state gradients needs no compile.
SEQ = rnnlab.many_to_one(
  rnnlab.stacked([rnnlab.bidirectional(rnnlab.gru(H)), rnnlab.lstm(H)]), 2, embed_size=3
)
SEQ_PARAMS = jax.eval_shape(lambda: SEQ.init(jax.random.key(0), 7))
TOKENS = jax.ShapeDtypeStruct((B, T), jnp.int32)


def seq_loss(params, tokens):
  return jnp.sum(SEQ.apply(params, tokens) ** 2)


def test_state_grads_are_organised_like_the_params():
  shapes = jax.eval_shape(diag.state_grads(seq_loss), SEQ_PARAMS, TOKENS)
  layer0, layer1 = shapes.encoder
  # Embedding and readout hold no cell: None. Layer 0 by direction, layer 1 the LSTM's carry.
  assert shapes.embed is None and shapes.readout is None
  assert type(shapes) is type(SEQ_PARAMS) and type(layer0) is rnnlab.layers.BidirectionalParams
  assert layer0.forward.shape == layer0.backward.shape == (T, B, H)
  assert type(layer1) is rnnlab.LSTMCarry and layer1.c.shape == (T, B, H)
  batch_first = jax.eval_shape(diag.state_grads(seq_loss, time_major=False), SEQ_PARAMS, TOKENS)
  assert jax.tree.map(lambda s: s.shape, batch_first.encoder[1]) == rnnlab.LSTMCarry(
    (B, T, H), (B, T, H)
  )
  # Other argnums: a tuple of trees, as jax.grad's.
  _, _, both = jax.eval_shape(
    diag.value_and_state_grads(lambda x, p: seq_loss(p, x), argnums=(1,)), TOKENS, SEQ_PARAMS
  )
  assert both[0].encoder[1].h.shape == (T, B, H)


def test_params_run_by_several_unrolls_get_a_tuple_in_call_order():
  cell = rnnlab.lstm(H)
  params = jax.eval_shape(lambda: cell.init(jax.random.key(0), I))

  def loss(params, xs):
    ys, carry = rnnlab.unroll(cell, params, xs[:, :2])  # a warm-up, then the rest
    ys, _ = rnnlab.unroll(cell, params, xs[:, 2:], carry, reverse=True)
    return jnp.sum(ys)

  first, second = jax.eval_shape(diag.state_grads(loss), params, jnp.zeros((B, T, I)))
  assert first.h.shape == (2, B, H) and second.h.shape == (T - 2, B, H)


def test_params_with_no_place_in_the_arguments_are_an_error_unless_by_call():
  cell = rnnlab.gru(H)
  params = random_params(cell, 0)
  xs = jnp.zeros((B, T, I))

  def cast(params, xs):  # computed inside the loss: not a subtree of the argument
    half = jax.tree.map(lambda p: p.astype(jnp.bfloat16), params)
    return jnp.sum(rnnlab.unroll(cell, half, xs)[0].astype(jnp.float32))

  def closed_over(xs):
    return jnp.sum(rnnlab.unroll(cell, params, xs)[0])

  for loss, args in ((cast, (params, xs)), (closed_over, (xs,))):
    with pytest.raises(
      ValueError, match=r"unroll 0 \(gru\) ran with params that are not .*by_call"
    ):
      jax.eval_shape(diag.state_grads(loss), *args)
    assert jax.eval_shape(diag.state_grads(loss, by_call=True), *args)[0].shape == (T, B, H)


# ---------------------------------------------------------------------------
# 2-3. Jacobian products and spectra.
# ---------------------------------------------------------------------------

N = 5


def linear_cell(w_hh):
  cell = rnnlab.elman(N, "linear")
  return cell, random_params(cell, 0)._replace(w_hh=w_hh)


@pytest.mark.parametrize("g", [0.8, 1.25])
def test_linear_cell_jacobian_is_g_to_the_lag(g):
  cell, params = linear_cell(g * orthogonal(N, 0))
  xs = randomize(jnp.zeros((2, 40, I)), 4, 1.0)
  jn = jacobian_norms(cell, params, xs)
  lags = np.arange(41)
  np.testing.assert_array_equal(jn.lags[0], lags)
  np.testing.assert_allclose(np.exp(jn.log_spectral), np.broadcast_to(g**lags, (2, 41)), rtol=1e-5)
  np.testing.assert_allclose(jn.log_frobenius, jn.log_spectral + 0.5 * np.log(N), atol=1e-5)
  # Every singular value equals g^lag.
  np.testing.assert_allclose(
    jn.log_singular_values, np.broadcast_to(jn.log_spectral[..., None], (2, 41, N)), atol=1e-5
  )
  np.testing.assert_allclose(diag.decay_rate(jn.log_spectral, jn.lags), np.log(g), rtol=1e-5)
  # The matrix-free estimate agrees.
  power = jacobian_norms(cell, params, xs[0], method="power", lags=(0, 7, 40), num_iters=5)
  np.testing.assert_allclose(power.log_spectral, np.log(g) * np.array([0, 7, 40]), atol=1e-4)
  assert power.log_singular_values.shape == (3, 0) and np.isnan(power.log_frobenius).all()


def test_memory_horizon_and_decay_rate_of_a_geometric_decay():
  lags = np.arange(20)
  log_norms = np.log(0.9) * lags
  # 0.9^6 = 0.53 >= 0.5 > 0.9^7 = 0.48
  assert int(diag.memory_horizon(log_norms, lags, 0.5)) == 6
  assert int(diag.memory_horizon(log_norms, lags, 1e-6)) == 19
  np.testing.assert_allclose(
    diag.decay_rate(np.append(log_norms, -np.inf), np.arange(21)), np.log(0.9), rtol=1e-6
  )
  with pytest.raises(ValueError, match="fraction must lie in"):
    diag.memory_horizon(log_norms, lags, 0.0)


@pytest.fixture(scope="module")
def tanh_setup():
  cell = rnnlab.elman(N, "tanh")
  params = random_params(cell, 5, 0.7)
  xs = randomize(jnp.zeros((30, I)), 6, 1.0)
  return cell, params, xs


def test_tanh_jacobian_matches_jacrev_and_pascanu_bound(tanh_setup):
  cell, params, xs = tanh_setup
  jn = jacobian_norms(cell, params, xs)
  # Independent: jacrev of the final state with respect to the initial one, and with
  # respect to the state after 12 steps (lags 30 and 18).
  h0 = jnp.zeros((N,))
  full = jax.jit(jax.jacrev(lambda h: rnnlab.unroll(cell, params, xs, h)[1]))(h0)
  h12 = rnnlab.unroll(cell, params, xs[:12], h0)[1]
  tail = jax.jit(jax.jacrev(lambda h: rnnlab.unroll(cell, params, xs[12:], h)[1]))(h12)
  for lag, jac in ((30, full), (18, tail)):
    s = np.linalg.svd(np.asarray(jac), compute_uv=False)
    np.testing.assert_allclose(np.exp(jn.log_singular_values[lag]), s, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(np.exp(jn.log_frobenius[lag]), np.linalg.norm(s), rtol=1e-5)
  # Pascanu: ||dh_T/dh_t|| <= (gamma sigma_max(W_hh))^(T-t), gamma = 1 for tanh.
  spectra = diag.recurrent_spectra(cell, params)
  sigma = float(spectra["sigma_max"]["h"])
  np.testing.assert_allclose(sigma, np.linalg.norm(np.asarray(params.w_hh), 2), rtol=1e-5)
  np.testing.assert_allclose(
    spectra["spectral_radius"]["h"],
    np.abs(np.linalg.eigvals(np.asarray(params.w_hh))).max(),
    rtol=1e-5,
  )
  np.testing.assert_allclose(spectra["pascanu_bound"], sigma)
  assert np.all(np.asarray(jn.log_spectral) <= np.arange(31) * np.log(sigma) + 1e-5)
  # The power method finds the same largest singular values.
  power = jacobian_norms(cell, params, xs, method="power", lags=(3, 18, 30), num_iters=60)
  np.testing.assert_allclose(power.log_spectral, jn.log_spectral[np.array([3, 18, 30])], atol=1e-3)


def test_jacobian_norms_do_not_underflow_on_long_vanishing_products():
  cell, params = linear_cell(0.5 * orthogonal(N, 1))
  jn = jacobian_norms(cell, params, jnp.zeros((300, I)), lags=(0, 150, 300))
  # 0.5^300 = 5e-91 is far below float32's range; its logarithm is not.
  np.testing.assert_allclose(jn.log_spectral, np.log(0.5) * np.array([0, 150, 300]), rtol=1e-5)


def test_recurrent_spectra_per_gate_block():
  cell = rnnlab.lstm(3)
  params = random_params(cell, 8)
  spectra = diag.recurrent_spectra(cell, params)
  assert list(spectra["sigma_max"]) == ["i", "f", "g", "o"]
  w = np.asarray(params.w_hh)
  for k, name in enumerate("ifgo"):
    block = w[:, 3 * k : 3 * (k + 1)]
    np.testing.assert_allclose(spectra["sigma_max"][name], np.linalg.norm(block, 2), rtol=1e-5)
    np.testing.assert_allclose(
      spectra["spectral_radius"][name], np.abs(np.linalg.eigvals(block)).max(), rtol=1e-5
    )
  assert np.isnan(spectra["pascanu_bound"])
  gru = rnnlab.gru(3)
  assert list(diag.recurrent_spectra(gru, random_params(gru, 0))["sigma_max"]) == [
    "r",
    "z",
    "n",
  ]


# ---------------------------------------------------------------------------
# 4. Lyapunov spectrum.
# ---------------------------------------------------------------------------


def test_lyapunov_exponents_of_a_diagonal_linear_cell():
  a = np.array([0.5, -0.9, 0.2, 1.1, -0.3], np.float32)
  cell, params = linear_cell(jnp.diag(a))
  xs = randomize(jnp.zeros((2, 400, I)), 9, 1.0)
  lyap = lyapunov_spectrum(cell, params, xs, num_exponents=3, transient=40)
  expected = np.sort(np.log(np.abs(a)))[::-1][:3]
  np.testing.assert_allclose(lyap, np.broadcast_to(expected, (2, 3)), atol=1e-4)


def test_lyapunov_exponent_is_the_jacobian_decay_rate(tanh_setup):
  # Two methods, one quantity: lambda_1 = lim log sigma_max(dh_T/dh_0) / T.
  cell, params, _ = tanh_setup
  params = params._replace(w_hh=1.3 * params.w_hh)
  xs = randomize(jnp.zeros((300, I)), 10, 1.0)
  lyap = lyapunov_spectrum(cell, params, xs, num_exponents=1)
  jn = jacobian_norms(cell, params, xs, lags=(300,))
  np.testing.assert_allclose(lyap[0], jn.log_spectral[0] / 300, atol=0.02)


def test_lyapunov_errors(tanh_setup):
  cell, params, xs = tanh_setup
  with pytest.raises(ValueError, match=r"num_exponents=6 must lie in \[1, n=5\]"):
    diag.lyapunov_spectrum(cell, params, xs, num_exponents=6)
  with pytest.raises(ValueError, match="transient must be an int in"):
    diag.lyapunov_spectrum(cell, params, xs, num_exponents=1, transient=30)


# ---------------------------------------------------------------------------
# 5. Gates: the long-memory regimes, NumPy equations, saturation.
# ---------------------------------------------------------------------------


def test_lstm_with_forget_open_and_input_shut_carries_the_gradient_undiminished():
  cell = rnnlab.lstm(3)
  xs = randomize(jnp.zeros((2, 50, I)), 11, 1.0)
  v = jnp.array([0.3, -1.0, 0.5])

  def loss(params, xs):
    _, carry = rnnlab.unroll(cell, params, xs)
    return jnp.sum(carry.c @ v)

  base = random_params(cell, 12)
  pinned = base._replace(b=base.b.at[0:3].set(-30.0).at[3:6].set(30.0))
  fn = jax.jit(diag.state_grads(loss))
  grads = fn(pinned, xs)
  np.testing.assert_allclose(grads.c, np.broadcast_to(v, grads.c.shape), rtol=1e-5)
  np.testing.assert_allclose(diag.step_norms(grads).c, np.linalg.norm(v), rtol=1e-5)
  # Without the pinning the same gradient fades.
  free = diag.step_norms(fn(base._replace(b=base.b.at[3:6].set(0.0)), xs)).c
  assert np.all(free[0] < 0.1 * np.linalg.norm(v))
  stats = gate_statistics(cell, pinned, xs)
  assert float(stats["gates"]["f"]["mean_over_time"]) > 0.999
  assert float(stats["gates"]["i"]["mean_over_time"]) < 1e-3
  np.testing.assert_allclose(stats["gates"]["f"]["saturated"], 1.0)


def test_gru_with_update_gate_pinned_to_one_carries_the_gradient_undiminished():
  cell = rnnlab.gru(3)
  xs = randomize(jnp.zeros((2, 50, I)), 13, 1.0)
  v = jnp.array([1.0, 2.0, -0.5])

  def loss(params, xs):
    return jnp.sum(rnnlab.unroll(cell, params, xs)[1] @ v)

  params = random_params(cell, 14)
  pinned = params._replace(b_ih=params.b_ih.at[3:6].set(30.0))
  grads = jax.jit(diag.state_grads(loss))(pinned, xs)
  np.testing.assert_allclose(grads, np.broadcast_to(v, grads.shape), rtol=1e-5)
  z = gate_values(cell, pinned, xs)[0]["z"]
  assert z.shape == (50, 2, 3) and float(z.min()) > 0.999


def sigmoid(a):
  return 1 / (1 + np.exp(-a))


def test_gate_values_match_numpy_equations_and_statistics_respect_lengths():
  cell = rnnlab.lstm(3)
  params = random_params(cell, 15, 1.0)
  xs = randomize(jnp.zeros((2, 5, I)), 16, 1.0)
  gates, units = gate_values(cell, params, xs)
  w_ih, w_hh, b = (np.asarray(a, np.float64) for a in params)
  h = c = np.zeros((2, 3))
  for t in range(5):
    a = np.asarray(xs[:, t], np.float64) @ w_ih + h @ w_hh + b
    i, f, g, o = sigmoid(a[:, :3]), sigmoid(a[:, 3:6]), np.tanh(a[:, 6:9]), sigmoid(a[:, 9:])
    c = f * c + i * g
    h = o * np.tanh(c)
    for name, ref in (("i", i), ("f", f), ("o", o)):
      np.testing.assert_allclose(gates[name][t], ref, atol=1e-5)
    np.testing.assert_allclose(units["g"][t], g, atol=1e-5)
    np.testing.assert_allclose(units["tanh_c"][t], np.tanh(c), atol=1e-5)
  stats = gate_statistics(cell, params, xs, lengths=jnp.array([5, 2]), bins=4)
  f = np.asarray(gates["f"])
  # Steps 2..4 count the first sequence only.
  np.testing.assert_allclose(stats["gates"]["f"]["mean"][:2], f[:2].mean(axis=(1, 2)), rtol=1e-5)
  np.testing.assert_allclose(stats["gates"]["f"]["mean"][2:], f[2:, 0].mean(axis=-1), rtol=1e-5)
  hist = np.stack([np.histogram(f[t, 0], bins=4, range=(0, 1))[0] / 3 for t in range(2, 5)])
  np.testing.assert_allclose(stats["gates"]["f"]["hist"][2:], hist, atol=1e-6)
  np.testing.assert_allclose(
    stats["gates"]["f"]["mean_over_time"], (f[:2].sum() + f[2:, 0].sum()) / 21, rtol=1e-5
  )


def test_saturation_of_tanh_units():
  cell = rnnlab.elman(4, "tanh")
  params = random_params(cell, 17)
  xs = randomize(jnp.zeros((2, 8, I)), 18, 1.0)
  calm = gate_statistics(cell, params, xs)["units"]["h"]
  loud = gate_statistics(cell, params._replace(w_ih=100 * params.w_ih), xs)["units"]["h"]
  h = np.asarray(gate_values(cell, params, xs)[1]["h"])
  np.testing.assert_allclose(calm["saturated"], (np.abs(h) > 0.99).mean(axis=(1, 2)))
  assert float(loud["saturated_over_time"]) > 0.8 > 0.5 > float(calm["saturated_over_time"])
  assert diag.gate_statistics(rnnlab.elman(4, "relu"), params, xs) == {"gates": {}, "units": {}}


def test_gate_errors():
  gru = rnnlab.gru(3, reset_after=False)
  with pytest.raises(ValueError, match="does not expose its gates"):
    diag.gate_values(gru, random_params(gru, 0), jnp.zeros((4, I)))
  stack = rnnlab.stack_cells([rnnlab.elman(3)])
  with pytest.raises(ValueError, match="no CellParts with named gate blocks"):
    diag.recurrent_spectra(stack, random_params(stack, 0))


# ---------------------------------------------------------------------------
# 6. Training statistics.
# ---------------------------------------------------------------------------


def test_training_stats():
  tree = {"a": jnp.array([3.0, 0.0]), "b": (jnp.array([[4.0]]),)}
  stats = diag.training_stats(tree, 4.0)
  assert (
    float(stats["grad_norm"]) == 5.0 and bool(stats["clipped"]) and not bool(stats["nonfinite"])
  )
  assert not bool(diag.training_stats(tree, 0.0)["clipped"])
  assert not bool(diag.training_stats(tree, 5.0)["clipped"])
  for bad in (jnp.nan, jnp.inf, -jnp.inf):
    assert bool(diag.training_stats({"a": tree["a"].at[1].set(bad)})["nonfinite"])


# ---------------------------------------------------------------------------
# 7. Curse of memory.
# ---------------------------------------------------------------------------


def test_curse_of_memory_closed_form_for_the_scalar_linear_recurrence():
  cell = rnnlab.diagonal(1)
  xs = jax.random.normal(jax.random.key(19), (4096, 120, 1))
  fn = jax.jit(lambda p, x: diag.parameter_sensitivity(cell, p, x, wrt="lam")[:, -1])
  means = []
  for lam in (0.5, 0.8):
    params = cell.init(jax.random.key(0), 1)._replace(lam=jnp.array([lam]), w_ih=jnp.ones((1, 1)))
    s = np.asarray(fn(params, xs))
    expected = float(diag.curse_of_memory_closed_form(lam))
    assert abs(s.mean() - expected) < 4 * s.std() / np.sqrt(s.size), (lam, s.mean(), expected)
    means.append(s.mean())
  # Sensitivity grows as lam -> 1 while every dh_t/dh_k = lam^(t-k) stays below 1.
  assert means[1] > 10 * means[0]


def test_parameter_sensitivity_matches_jacrev():
  cell, params = linear_cell(0.9 * orthogonal(N, 2))
  xs = randomize(jnp.zeros((2, 6, I)), 20, 1.0)
  got = jax.jit(lambda p, x: diag.parameter_sensitivity(cell, p, x, wrt="w_hh"))(params, xs)

  def states(w):
    return rnnlab.unroll(cell, params._replace(w_hh=w), xs[1], impl="scan")[0]

  jac = np.asarray(jax.jit(jax.jacrev(states))(params.w_hh))  # (T, N, N, N)
  np.testing.assert_allclose(got[1], (jac**2).sum(axis=(1, 2, 3)), rtol=1e-4)
  with pytest.raises(ValueError, match="wrt='lam' is not a field"):
    diag.parameter_sensitivity(cell, params, xs, wrt="lam")


def test_jacobian_norms_errors(tanh_setup):
  cell, params, xs = tanh_setup
  with pytest.raises(ValueError, match="method='svd'"):
    diag.jacobian_norms(cell, params, xs, method="svd")
  with pytest.raises(ValueError, match=r"lag 31 is outside \[0, T=30\]"):
    diag.jacobian_norms(cell, params, xs, lags=[0, 31])
  with pytest.raises(ValueError, match="num_iters must be a positive int"):
    diag.jacobian_norms(cell, params, xs, method="power", num_iters=0)
  with pytest.raises(ValueError, match="xs must have shape"):
    diag.jacobian_norms(cell, params, jnp.zeros((I,)))
  with pytest.raises(ValueError, match=r"jacobian_norms: elman.step\(params, carry, x\) fails"):
    diag.jacobian_norms(cell, params, jnp.zeros((4, I + 1)))


def test_diagnostics_vmap_over_members(tanh_setup):
  cell, params, xs = tanh_setup
  members = jax.tree.map(lambda p: jnp.stack([p, 1.5 * p]), params)
  batched = jax.jit(jax.vmap(lambda p: jacobian_norms(cell, p, xs, lags=(5,)).log_spectral))(
    members
  )
  for m, scale in enumerate((1.0, 1.5)):
    solo = jacobian_norms(
      cell, jax.tree.map(lambda p, scale=scale: scale * p, params), xs, lags=(5,)
    )
    np.testing.assert_allclose(batched[m], solo.log_spectral, rtol=1e-5)


def test_diagonal_cell():
  cell = rnnlab.diagonal(4, radius=(0.5, 0.6))
  params = cell.init(jax.random.key(0), I)
  assert params.lam.shape == (4,) and bool(jnp.all((params.lam >= 0.5) & (params.lam < 0.6)))
  xs = randomize(jnp.zeros((5, I)), 21, 1.0)
  ys, h = rnnlab.unroll(cell, params, xs)
  expected = np.zeros(4)
  for t in range(5):
    expected = np.asarray(params.lam) * expected + np.asarray(xs[t] @ params.w_ih + params.b)
  np.testing.assert_allclose(h, expected, rtol=1e-5)
  spectra = diag.recurrent_spectra(cell, params)
  np.testing.assert_allclose(spectra["spectral_radius"]["h"], params.lam.max(), rtol=1e-6)
  np.testing.assert_allclose(spectra["pascanu_bound"], params.lam.max(), rtol=1e-6)
  with pytest.raises(ValueError, match=r"radius must satisfy -1 <= low <= high <= 1"):
    rnnlab.diagonal(4, radius=(0.5, 1.5))


def test_lstm_hidden_block_and_whole_carry_match_jacrev():
  cell = rnnlab.lstm(3)
  params = random_params(cell, 22)
  xs = randomize(jnp.zeros((8, I)), 23, 1.0)
  carry0 = cell.initial_carry(params)

  def final(h0, c0):
    carry = rnnlab.LSTMCarry(h0, c0)
    return rnnlab.unroll(cell, params, xs, carry, impl="scan")[1]

  jac = jax.jit(jax.jacrev(final, argnums=(0, 1)))(carry0.h, carry0.c)
  # dc_8/dc_0 as a (6, 6) matrix over (h, c); its (h, h) block is dh_8/dh_0 with c_0 held.
  whole = np.block([[jac.h[0], jac.h[1]], [jac.c[0], jac.c[1]]])
  for state, matrix in (("carry", whole), ("hidden", np.asarray(jac.h[0]))):
    jn = jacobian_norms(cell, params, xs, state=state, lags=(8,))
    s = np.linalg.svd(matrix, compute_uv=False)
    # float32: singular values far below the largest are only known to ~1e-6 of it.
    np.testing.assert_allclose(np.exp(jn.log_singular_values[0]), s, rtol=1e-4, atol=1e-6 * s[0])
    power = jacobian_norms(cell, params, xs, method="power", state=state, lags=(8,), num_iters=80)
    np.testing.assert_allclose(power.log_spectral, np.log(s[:1]), atol=1e-3)
  with pytest.raises(ValueError, match="state='cell'"):
    diag.jacobian_norms(cell, params, xs, state="cell")


def test_step_norms_keep_vanishing_and_huge_gradients():
  grads = {"a": jnp.stack([jnp.full((2, 3), 1e-25), jnp.full((2, 3), 3e30), jnp.zeros((2, 3))])}
  norms = diag.step_norms(grads)["a"]  # (T=3, B=2)
  np.testing.assert_allclose(norms[0], np.sqrt(3) * 1e-25, rtol=1e-6)
  np.testing.assert_allclose(norms[1], np.sqrt(3) * 3e30, rtol=1e-6)
  np.testing.assert_array_equal(norms[2], 0.0)
  # jnp.linalg.norm squares 1e-25 to zero.
  assert float(jnp.linalg.norm(grads["a"][0, 0])) == 0.0
  np.testing.assert_allclose(diag.norm(jnp.array([3e-30, 4e-30])), 5e-30, rtol=1e-6)


def test_bfloat16_params_run_the_linear_algebra_in_float32():
  cell = rnnlab.lstm(3)
  params = random_params(cell, 24)
  xs = randomize(jnp.zeros((6, I)), 25, 1.0)
  low = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
  exact = jacobian_norms(cell, low, xs.astype(jnp.bfloat16), lags=(1, 6))
  assert exact.log_spectral.dtype == jnp.float32
  reference = jacobian_norms(
    cell, jax.tree.map(lambda a: a.astype(jnp.float32), low), xs, lags=(1, 6)
  )
  np.testing.assert_allclose(exact.log_spectral, reference.log_spectral, atol=0.05)
  lyap = lyapunov_spectrum(cell, low, xs.astype(jnp.bfloat16), num_exponents=2)
  assert lyap.shape == (2,) and bool(jnp.all(jnp.isfinite(lyap)))
  np.testing.assert_allclose(
    diag.recurrent_spectra(cell, low)["sigma_max"]["f"],
    np.linalg.norm(np.asarray(low.w_hh[:, 3:6], np.float32), 2),
    rtol=1e-5,
  )
