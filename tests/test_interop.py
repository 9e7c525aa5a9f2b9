"""Tests for rnnlab.interop: PyTorch, flax.linen and Keras weights both ways; flax modules.

Parity runs the peer's own implementation (random PyTorch modules and cells, flax.linen
cells, Keras layers) against rnnlab with converted weights; PyTorch at T=100 compares
outputs, final states and the gradients of a loss through outputs *and* final states
with respect to inputs, initial states and every weight, within 1e-5 in float32. Round
trips are checked bitwise. PyTorch and Keras tests skip, with the reason, when the
optional package is absent.
"""

import functools
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import rnnlab
from rnnlab import interop

B, T, I, H = 2, 100, 3, 4
TOL = dict(rtol=1e-5, atol=1e-5)
TORCH_REASON = "PyTorch parity needs torch: pip install -e '.[torch]' (CI installs the CPU build)"
KERAS_REASON = "Keras parity needs keras 3: pip install -e '.[keras]'"


@pytest.fixture(scope="module")
def torch():
  torch = pytest.importorskip("torch", reason=TORCH_REASON)
  torch.set_num_threads(1)
  return torch


@pytest.fixture(scope="module")
def keras():
  os.environ.setdefault("KERAS_BACKEND", "jax")
  keras = pytest.importorskip("keras", reason=KERAS_REASON)
  if keras.backend.backend() != "jax":
    pytest.skip(f"Keras runs on the {keras.backend.backend()} backend; these tests use jax")
  return keras


def rng_for(*labels):
  """A NumPy generator seeded from the test case's labels (stable across runs)."""
  return np.random.default_rng([sum(map(ord, str(l))) for l in labels])


def random_params(cell, seed, input_size=I):
  """The cell's params with every leaf random, biases included (default biases are zero)."""
  rng = np.random.default_rng(seed)
  # Only the structure is needed: tracing init (no compute) keeps the tests fast.
  params = jax.eval_shape(lambda key: cell.init(key, input_size), jax.random.key(seed))
  return jax.tree.map(lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape), l.dtype), params)


def assert_close(actual, expected, what, **tol):
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
  np.testing.assert_allclose(actual, expected, **(tol or TOL), err_msg=what)


def assert_trees_equal(actual, expected):
  assert jax.tree.structure(actual) == jax.tree.structure(expected)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected), strict=True):
    assert a.dtype == e.dtype and a.shape == e.shape
    np.testing.assert_array_equal(np.asarray(a), np.asarray(e))


# ---- PyTorch ---------------------------------------------------------------------------------

KINDS = interop.TORCH_KINDS
# (num_layers, bidirectional, bias) for the modules; cells get bias and no bias too.
MODULE_CONFIGS = [(1, False, True), (2, True, False), (3, False, True)]
# Three layers share the code path of two; they run in the round trip and error tests.
MODULE_CASES = [(k, *c) for k in KINDS for c in MODULE_CONFIGS[:2]] + [("lstm", 2, True, True)]


def torch_module(torch, kind, num_layers, bidirectional, bias, seed=0):
  torch.manual_seed(seed)
  kw = dict(
    input_size=I,
    hidden_size=H,
    num_layers=num_layers,
    bidirectional=bidirectional,
    bias=bias,
    batch_first=True,
  )
  if kind.startswith("rnn"):
    return torch.nn.RNN(nonlinearity=kind[4:], **kw)
  return {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](**kw)


def torch_cell_module(torch, kind, bias, seed=0):
  torch.manual_seed(seed)
  if kind.startswith("rnn"):
    return torch.nn.RNNCell(I, H, bias=bias, nonlinearity=kind[4:])
  return {"lstm": torch.nn.LSTMCell, "gru": torch.nn.GRUCell}[kind](I, H, bias=bias)


def grads_by_key(torch_module_):
  return {k: p.grad.numpy() for k, p in torch_module_.named_parameters()}


def compare_param_grads(ours, theirs, bias, what):
  """rnnlab's gradients, exported as PyTorch's (``to_torch(grads=True)``), against PyTorch's.

  Elman and LSTM have one bias b = bias_ih + bias_hh, so dL/dbias_ih = dL/dbias_hh = dL/db.
  Without biases PyTorch has no bias parameters: the export drops the gradients of
  rnnlab's zero biases.
  """
  exported = interop.to_torch(ours, bias=bias, grads=True)
  assert list(exported) == list(theirs), what  # the same keys, in PyTorch's order
  for key, grad in theirs.items():
    assert float(np.abs(grad).max()) > 1e-4, (what, key)  # a live gradient, or nothing is shown
    assert_close(exported[key], grad, f"{what}: d loss / d {key}")


@functools.cache
def module_loss(kind, num_layers, bidirectional):
  """jit(value_and_grad) of the rnnlab side, one per structure, shared by every test."""
  layer = interop.torch_layer(kind, H, num_layers=num_layers, bidirectional=bidirectional)

  def loss(params, xs, carry, cot_ys, cot_h):
    ys, final = layer.apply(params, xs, carry)
    h_n = interop.carry_to_torch(final)
    # A random linear functional of outputs and final states (h and c): every path counts.
    value = jnp.sum(ys * cot_ys) + sum(
      jnp.sum(a * b) for a, b in zip(jax.tree.leaves(h_n), cot_h, strict=True)
    )
    return value, (ys, h_n)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize(("kind", "num_layers", "bidirectional", "bias"), MODULE_CASES)
def test_torch_module_outputs_states_and_gradients_match(
  torch, kind, num_layers, bidirectional, bias
):
  what = f"{kind} L={num_layers} bi={bidirectional} bias={bias}"
  module = torch_module(torch, kind, num_layers, bidirectional, bias)
  rng = rng_for(what)
  D = 2 if bidirectional else 1
  xs = rng.standard_normal((B, T, I)).astype(np.float32)
  h0 = 0.5 * rng.standard_normal((num_layers * D, B, H)).astype(np.float32)
  c0 = 0.5 * rng.standard_normal((num_layers * D, B, H)).astype(np.float32)
  cot_ys = rng.standard_normal((B, T, D * H)).astype(np.float32)
  cot_h = [rng.standard_normal((num_layers * D, B, H)).astype(np.float32) for _ in range(2)]

  x_t = torch.tensor(xs, requires_grad=True)
  h0_t, c0_t = torch.tensor(h0, requires_grad=True), torch.tensor(c0, requires_grad=True)
  hx = (h0_t, c0_t) if kind == "lstm" else h0_t
  ys_t, hn_t = module(x_t, hx)
  hn_t = hn_t if kind == "lstm" else (hn_t,)
  value_t = (ys_t * torch.tensor(cot_ys)).sum()
  value_t = value_t + sum(
    (a * torch.tensor(b)).sum() for a, b in zip(hn_t, cot_h[: len(hn_t)], strict=True)
  )
  value_t.backward()

  params = interop.from_torch(module.state_dict(), kind)
  hx_np = (h0, c0) if kind == "lstm" else h0
  carry = interop.carry_from_torch(hx_np, kind, num_layers=num_layers, bidirectional=bidirectional)
  n_states = 2 if kind == "lstm" else 1
  (value, (ys, h_n)), (g_params, g_xs, g_carry) = module_loss(kind, num_layers, bidirectional)(
    params, jnp.asarray(xs), carry, jnp.asarray(cot_ys), [jnp.asarray(c) for c in cot_h[:n_states]]
  )
  assert_close(ys, ys_t.detach().numpy(), f"{what}: outputs")
  for ours, theirs, name in zip(
    jax.tree.leaves(h_n), hn_t, ("h_n", "c_n")[: len(hn_t)], strict=True
  ):
    assert_close(ours, theirs.detach().numpy(), f"{what}: {name}")
  assert_close(value, value_t.item(), f"{what}: loss")
  assert_close(g_xs, x_t.grad.numpy(), f"{what}: d loss / d xs")
  g_hx = interop.carry_to_torch(g_carry)
  g_hx = g_hx if kind == "lstm" else (g_hx,)
  for ours, theirs, name in zip(g_hx, (h0_t.grad, c0_t.grad), ("h_0", "c_0"), strict=False):
    assert_close(ours, theirs.numpy(), f"{what}: d loss / d {name}")
  compare_param_grads(g_params, grads_by_key(module), bias, what)


@functools.cache
def cell_loss(kind):
  cell = interop.torch_cell(kind, H)

  def loss(params, xs, carry, cot_ys):
    ys, final = rnnlab.unroll(cell, params, xs, carry)
    value = jnp.sum(ys * cot_ys) + sum(jnp.sum(l) for l in jax.tree.leaves(final))
    return value, (ys, final)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no_bias"])
@pytest.mark.parametrize("kind", KINDS)
def test_torch_cells_match_over_a_sequence(torch, kind, bias):
  what = f"{kind}Cell bias={bias}"
  module = torch_cell_module(torch, kind, bias)
  rng = rng_for(what)
  xs = rng.standard_normal((B, T, I)).astype(np.float32)
  cot_ys = rng.standard_normal((B, T, H)).astype(np.float32)
  h0 = 0.5 * rng.standard_normal((B, H)).astype(np.float32)
  hx_np = (h0, -h0) if kind == "lstm" else h0

  x_t = torch.tensor(xs, requires_grad=True)
  hx = tuple(torch.tensor(a) for a in hx_np) if kind == "lstm" else torch.tensor(hx_np)
  ys_t = []
  for t in range(T):
    hx = module(x_t[:, t], hx)
    ys_t.append(hx[0] if kind == "lstm" else hx)
  ys_t = torch.stack(ys_t, dim=1)
  final_t = hx if kind == "lstm" else (hx,)
  value_t = (ys_t * torch.tensor(cot_ys)).sum() + sum(a.sum() for a in final_t)
  value_t.backward()

  params = interop.from_torch(module.state_dict(), kind)
  carry = interop.carry_from_torch(hx_np, kind)
  (value, (ys, final)), (g_params, g_xs) = cell_loss(kind)(
    params, jnp.asarray(xs), carry, jnp.asarray(cot_ys)
  )
  assert_close(ys, ys_t.detach().numpy(), f"{what}: outputs")
  final = interop.carry_to_torch(final)
  for ours, theirs in zip(jax.tree.leaves(final), final_t, strict=True):
    assert_close(ours, theirs.detach().numpy(), f"{what}: final state")
  assert_close(g_xs, x_t.grad.numpy(), f"{what}: d loss / d xs")
  compare_param_grads(g_params, grads_by_key(module), bias, what)


@pytest.mark.parametrize("kind", KINDS)
def test_torch_round_trips_are_exact(torch, kind):
  # torch -> rnnlab -> torch: GRU biases map one to one, so the whole dict comes back;
  # Elman and LSTM keep the sum bias_ih + bias_hh (in bias_ih) and the weights bitwise.
  for num_layers, bidirectional, bias in MODULE_CONFIGS:
    module = torch_module(torch, kind, num_layers, bidirectional, bias, seed=3)
    state = {k: v.numpy() for k, v in module.state_dict().items()}
    back = interop.to_torch(interop.from_torch(module.state_dict(), kind), bias=bias)
    assert list(back) == list(state)  # PyTorch's keys, in PyTorch's order
    # The torch-free dicts the error tests use have PyTorch's layout too.
    handmade = numpy_state_dict(kind, num_layers, bidirectional, bias)
    assert {k: v.shape for k, v in handmade.items()} == {k: v.shape for k, v in state.items()}
    for key, value in state.items():
      if kind != "gru" and key.startswith("bias_ih"):
        expected = value + state[key.replace("bias_ih", "bias_hh")]
      elif kind != "gru" and key.startswith("bias_hh"):
        expected = np.zeros_like(value)
      else:
        expected = value
      assert back[key].dtype == value.dtype
      np.testing.assert_array_equal(back[key], expected, err_msg=f"{kind} {key}")
    # The exported dict loads strictly and the module computes the same function.
    clone = torch_module(torch, kind, num_layers, bidirectional, bias, seed=4)
    clone.load_state_dict(
      interop.to_torch(interop.from_torch(state, kind), as_tensors=True, bias=bias)
    )
    x = torch.randn(B, 7, I)
    np.testing.assert_allclose(clone(x)[0].detach().numpy(), module(x)[0].detach().numpy(), **TOL)

  # rnnlab -> torch -> rnnlab is bitwise, biases included, for cells and stacks.
  cell = interop.torch_cell(kind, H)
  params = random_params(cell, seed=5)
  assert_trees_equal(interop.from_torch(interop.to_torch(params), kind), params)
  params = interop.from_torch(numpy_state_dict(kind, 2, bidirectional=True, seed=6), kind)
  params = jax.tree.map(lambda l: l + 0.25, params)  # a bias_ih/bias_hh split of its own
  state = interop.to_torch(params, prefix="encoder.rnn.")
  assert_trees_equal(interop.from_torch(state, kind, prefix="encoder.rnn."), params)
  # The exported cell dict is what PyTorch's cell expects.
  torch_cell_module(torch, kind, True).load_state_dict(
    interop.to_torch(random_params(cell, 7), as_tensors=True)
  )


def test_from_torch_reads_tensors_and_keeps_or_sets_dtype(torch):
  module = torch_module(torch, "gru", 1, False, True)
  params = interop.from_torch(module.state_dict(), "gru")
  assert all(l.dtype == jnp.float32 for l in jax.tree.leaves(params))
  as_bf16 = interop.from_torch(module.state_dict(), "gru", dtype=jnp.bfloat16)
  assert all(l.dtype == jnp.bfloat16 for l in jax.tree.leaves(as_bf16))
  from_bf16 = interop.from_torch(module.to(torch.bfloat16).state_dict(), "gru")
  np.testing.assert_array_equal(
    np.asarray(from_bf16[0].w_hh, np.float32), np.asarray(as_bf16[0].w_hh, np.float32)
  )


def numpy_state_dict(kind="lstm", num_layers=2, bidirectional=False, bias=True, seed=0):
  """A module's state dict as plain NumPy arrays in PyTorch's layout, written without torch."""
  rng = np.random.default_rng(seed)
  rows = {"lstm": 4, "gru": 3}.get(kind, 1) * H
  state = {}
  for layer in range(num_layers):
    for suffix in ("", "_reverse") if bidirectional else ("",):
      inputs = I if layer == 0 else H * (2 if bidirectional else 1)
      shapes = {"weight_ih": (rows, inputs), "weight_hh": (rows, H)}
      if bias:
        shapes.update(bias_ih=(rows,), bias_hh=(rows,))
      for name, shape in shapes.items():
        state[f"{name}_l{layer}{suffix}"] = rng.standard_normal(shape).astype(np.float32)
  return state


def test_from_torch_needs_no_torch_and_infers_the_structure():
  state = numpy_state_dict("gru", num_layers=3, bidirectional=True, bias=False)
  assert "bias_ih_l0" not in state and "weight_hh_l2_reverse" in state
  params = interop.from_torch(state, "gru")
  assert len(params) == 3 and all(isinstance(p, rnnlab.layers.BidirectionalParams) for p in params)
  assert params[1].forward.w_ih.shape == (2 * H, 3 * H)  # layer 1 reads both directions
  assert all(float(jnp.abs(d.b_ih).max()) == 0 for layer in params for d in layer)
  # A float64 dict is held as JAX holds it (float32 without x64) unless asked otherwise.
  state64 = {k: v.astype(np.float64) for k, v in state.items()}
  assert jax.tree.leaves(interop.from_torch(state64, "gru"))[0].dtype == jnp.float32


@pytest.mark.parametrize(
  ("edit", "kind", "message"),
  [
    (lambda s: s.pop("bias_hh_l1"), "lstm", r"missing key 'bias_hh_l1' \(expected shape \(16,\)\)"),
    (
      lambda s: s.update(weight_hh_l1=np.zeros((16, 5), np.float32)),
      "lstm",
      r"key 'weight_hh_l1' has shape \(16, 5\); expected \(16, 4\)",
    ),
    (
      lambda s: s.update(weight_ih_l1=np.zeros((16, 3), np.float32)),
      "lstm",
      r"key 'weight_ih_l1' has shape \(16, 3\); expected \(16, 4\)",
    ),
    (lambda s: s.update(weight_hr_l0=np.zeros((4, 2), np.float32)), "lstm", r"proj_size > 0"),
    (
      lambda s: s.update(weight_ih_l3=np.zeros((16, 4), np.float32)),
      "lstm",
      r"unexpected key 'weight_ih_l3'",
    ),
    (
      lambda s: s.update(bias_ih_l0=np.zeros((4, 4), np.float32)),
      "lstm",
      r"key 'bias_ih_l0' has shape \(4, 4\); expected \(16,\), nn.LSTM's \(4\*H,\) with H = 4$",
    ),
    (
      lambda s: None,
      "gru",
      r"key 'weight_hh_l0' has shape \(16, 4\); expected \(12, 4\), nn.GRU's \(3\*H, H\) with H = 4; "
      r"\(16, 4\) is nn.LSTM's \(4\*H, H\) with H = 4: is kind='gru' right \(kind='lstm'\?\)$",
    ),
    (lambda s: None, "rnn", r"kind='rnn'; expected one of \('rnn_tanh'"),
    (lambda s: s.update(weight_hh_l0="nope"), "lstm", r"key 'weight_hh_l0': expected a floating"),
  ],
)
def test_from_torch_errors_name_the_key_and_the_expected_shape(edit, kind, message):
  state = numpy_state_dict("lstm")
  edit(state)
  with pytest.raises(ValueError, match=message):
    interop.from_torch(state, kind)


def test_from_torch_reads_a_submodule_by_prefix():
  state = {f"encoder.rnn.{k}": v for k, v in numpy_state_dict("gru", 1).items()}
  state["head.weight"] = np.zeros((2, H), np.float32)
  params = interop.from_torch(state, "gru", prefix="encoder.rnn.")
  np.testing.assert_array_equal(params[0].w_hh, state["encoder.rnn.weight_hh_l0"].T)
  with pytest.raises(
    ValueError, match=r"missing key 'weight_hh_l0'.*\(pass prefix='encoder.rnn.'\?\)"
  ):
    interop.from_torch(state, "gru")


def test_torch_export_errors():
  params = random_params(rnnlab.lstm(H), 0)
  with pytest.raises(ValueError, match=r"params.b is not zero .*; grads=True for gradients\)$"):
    interop.to_torch(params, bias=False)
  zero_bias = params._replace(b=jnp.zeros_like(params.b))
  assert "bias_ih" not in interop.to_torch(zero_bias, bias=False)
  # Gradients: a bias-free module has no bias parameters to hold them; b's reaches both.
  assert list(interop.to_torch(params, bias=False, grads=True)) == ["weight_ih", "weight_hh"]
  as_grads = interop.to_torch(params, grads=True)
  for key in ("bias_ih", "bias_hh"):
    np.testing.assert_array_equal(as_grads[key], np.asarray(params.b))
  mixed = (params, random_params(rnnlab.gru(H), 1, input_size=H))
  with pytest.raises(ValueError, match=r"params\[1\] is a GRUParams .* every layer alike"):
    interop.to_torch(mixed)
  with pytest.raises(ValueError, match=r"params\[0\] is a dict"):
    interop.to_torch(({"w": 1},))
  with pytest.raises(ValueError, match=r"h has shape \(3, 2, 4\); expected \(num_layers \* D = 4"):
    interop.carry_from_torch(
      np.zeros((3, B, H), np.float32), "gru", num_layers=2, bidirectional=True
    )


@pytest.mark.parametrize("array_type", ["numpy", "jax", "torch"])
def test_carry_from_torch_takes_every_documented_form(request, array_type):
  if array_type == "torch":
    as_array = request.getfixturevalue("torch").tensor
  else:
    as_array = {"numpy": np.asarray, "jax": jnp.asarray}[array_type]
  rng = rng_for("carry", array_type)
  h0_np, c0_np = (rng.standard_normal((4, B, H)).astype(np.float32) for _ in range(2))
  h0, c0 = as_array(h0_np), as_array(c0_np)

  def check(carry, *expected):
    assert all(isinstance(l, jax.Array) for l in jax.tree.leaves(carry))
    back = jax.tree.leaves(interop.carry_to_torch(carry))  # PyTorch's layout again
    for ours, theirs in zip(back, expected, strict=True):
      np.testing.assert_array_equal(np.asarray(ours), theirs)
    return carry

  # nn.RNN / nn.GRU: h_0 (num_layers * D, B, H); the kind may be given or left out.
  stacked = [check(interop.carry_from_torch(h0, num_layers=4), h0_np)]
  stacked.append(check(interop.carry_from_torch(h0, "gru", num_layers=4), h0_np))
  stacked.append(
    check(interop.carry_from_torch(h0, "rnn_relu", num_layers=2, bidirectional=True), h0_np)
  )
  assert len(stacked[0]) == 4 and isinstance(stacked[2][1], rnnlab.layers.BidirectionalCarry)
  np.testing.assert_array_equal(stacked[2][1].backward, h0_np[3])
  # nn.LSTM: hx = (h_0, c_0) as PyTorch takes it, or h_0 and c_0 as two arguments.
  lstm_forms = [
    interop.carry_from_torch((h0, c0), num_layers=2, bidirectional=True),
    interop.carry_from_torch([h0, c0], "lstm", num_layers=2, bidirectional=True),
    interop.carry_from_torch(h0, c0, num_layers=2, bidirectional=True),
  ]
  for carry in lstm_forms:
    check(carry, h0_np, c0_np)
    assert_trees_equal(carry, lstm_forms[0])
  np.testing.assert_array_equal(lstm_forms[0][1].backward.c, c0_np[3])
  # Cells: h (B, H), or (h, c).
  for carry in (interop.carry_from_torch(h0[0]), interop.carry_from_torch(h0[0], "gru")):
    check(carry, h0_np[0])
  for carry in (
    interop.carry_from_torch((h0[0], c0[0])),
    interop.carry_from_torch((h0[0], c0[0]), "lstm"),
    interop.carry_from_torch(h0[0], c0[0]),
  ):
    assert isinstance(check(carry, h0_np[0], c0_np[0]), rnnlab.LSTMCarry)
  # Forms that do not fit: one line each, naming what was given.
  cases = [
    ((h0, "lstm"), {}, r"an LSTM's hx is the pair \(h, c\)"),
    (((h0, c0), "gru"), {}, r"a gru's hx is one array h; got a tuple of 2 .*kind='lstm'"),
    (((h0, c0), c0), {}, r"c_0 is given twice"),
    ((h0, c0[:1]), {}, r"c has shape \(1, 2, 4\); expected h's \(4, 2, 4\)"),
    ((h0, 3), {}, r"kind=3; expected one of \('rnn_tanh'.* or c_0 \(an array\)"),
    ((h0,), dict(num_layers=3), r"h has shape \(4, 2, 4\); expected \(num_layers \* D = 3"),
  ]
  for args, kwargs, message in cases:
    with pytest.raises(ValueError, match=message) as error:
      interop.carry_from_torch(*args, **kwargs)
    assert "\n" not in str(error.value)


def _transposed(tree, *path):
  """A copy of a nested dict of arrays with the leaf at ``path`` transposed."""
  if not path:
    return np.asarray(tree).T
  return {**tree, path[0]: _transposed(tree[path[0]], *path[1:])}


def _rnn_state_dict(input_size, hidden, rows):
  rng = np.random.default_rng(0)
  shapes = dict(weight_ih_l0=(rows, input_size), weight_hh_l0=(rows, hidden))
  shapes.update(bias_ih_l0=(rows,), bias_hh_l0=(rows,))
  return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _nnx_gru_dict():
  rng = np.random.default_rng(0)
  return {
    "dense_i": {"kernel": rng.standard_normal((I, 3 * H)), "bias": np.zeros(3 * H)},
    "dense_h": {"kernel": rng.standard_normal((H, 3 * H))},
  }


IMPORT_SHAPE_ERRORS = {
  # A transposed matrix: the shape expected is its transpose, and the kind is not questioned.
  "torch rnn weight_ih.T": (
    lambda: interop.from_torch(_transposed(_rnn_state_dict(5, 27, 27), "weight_ih_l0"), "rnn_tanh"),
    r"from_torch: key 'weight_ih_l0' has shape \(5, 27\); expected \(27, 5\), nn.RNN's "
    r"\(H, I\) with H = 27 \(is it transposed\?\)$",
  ),
  "torch gru weight_hh.T": (
    lambda: interop.from_torch(_transposed(_rnn_state_dict(5, 9, 27), "weight_hh_l0"), "gru"),
    r"from_torch: key 'weight_hh_l0' has shape \(9, 27\); expected \(27, 9\), nn.GRU's "
    r"\(3\*H, H\) with H = 9 \(is it transposed\?\)$",
  ),
  "torch lstm weight_ih_l1.T": (
    lambda: interop.from_torch(_transposed(numpy_state_dict("lstm"), "weight_ih_l1"), "lstm"),
    r"key 'weight_ih_l1' has shape \(4, 16\); expected \(16, 4\), nn.LSTM's \(4\*H, I\) "
    r"with H = 4 \(is it transposed\?\)$",
  ),
  # Neither transposed nor another kind's: the columns give H, and no kind hint.
  "torch gru weight_hh odd": (
    lambda: interop.from_torch(_rnn_state_dict(5, 5, 12), "gru"),
    r"key 'weight_hh_l0' has shape \(12, 5\); expected \(15, 5\), nn.GRU's \(3\*H, H\) "
    r"with H = 5$",
  ),
  "torch weight_ih odd": (
    lambda: interop.from_torch(
      {**_rnn_state_dict(5, 9, 27), "weight_ih_l0": np.ones((20, 5))}, "gru"
    ),
    r"key 'weight_ih_l0' has shape \(20, 5\); expected \(27, 5\), nn.GRU's \(3\*H, I\) "
    r"with H = 9$",
  ),
  "torch weight_hh not a matrix": (
    lambda: interop.from_torch({**_rnn_state_dict(5, 9, 27), "weight_hh_l0": np.ones(27)}, "gru"),
    r"key 'weight_hh_l0' has shape \(27,\); expected nn.GRU's \(3\*H, H\)$",
  ),
  "flax input kernel.T": (
    lambda: interop.from_flax(_transposed(dict(flax_setup("gru")[1]), "iz", "kernel")),
    r"from_flax: params\['iz'\]\['kernel'\] has shape \(4, 3\); expected \(3, 4\), flax's "
    r"\(in, out\) \(is it transposed\?\)$",
  ),
  "flax first input kernel.T": (
    lambda: interop.from_flax(_transposed(dict(flax_setup("lstm")[1]), "ii", "kernel")),
    r"params\['ii'\]\['kernel'\] has shape \(4, 3\); expected \(3, 4\), flax's \(in, out\) "
    r"= \(I, H\) with H = 4 \(is it transposed\?\)$",
  ),
  "nnx dense_h.T": (
    lambda: interop.from_nnx(_transposed(_nnx_gru_dict(), "dense_h", "kernel")),
    r"from_nnx: params\['dense_h'\]\['kernel'\] has shape \(12, 4\); expected \(4, 12\), "
    r"\(H, G\*H\) with G = 1 \(SimpleCell\), 3 \(GRUCell\) or 4 .* \(is it transposed\?\)$",
  ),
  "nnx dense_i.T": (
    lambda: interop.from_nnx(_transposed(_nnx_gru_dict(), "dense_i", "kernel")),
    r"params\['dense_i'\]\['kernel'\] has shape \(12, 3\); expected \(3, 12\), flax's "
    r"\(in, out\) = \(I, 3\*H\) with H = 4 \(is it transposed\?\)$",
  ),
  "keras recurrent_kernel.T": (
    lambda: interop.from_keras([np.ones((I, 3 * H)), np.ones((3 * H, H))], "gru"),
    r"from_keras: recurrent_kernel has shape \(12, 4\); expected \(4, 12\), a Keras GRU's "
    r"\(H, 3\*H\) with H = 4 \(is it transposed\?\)$",
  ),
  "keras kernel.T": (
    lambda: interop.from_keras([np.ones((4 * H, I)), np.ones((H, 4 * H))], "lstm"),
    r"from_keras: kernel has shape \(16, 3\); expected \(3, 16\), Keras's \(I, 4\*H\) with "
    r"H = 4 \(is it transposed\?\)$",
  ),
}


@pytest.mark.parametrize("case", IMPORT_SHAPE_ERRORS)
def test_import_shape_errors_name_the_leaf_the_shape_found_and_expected(case):
  convert, message = IMPORT_SHAPE_ERRORS[case]
  with pytest.raises(ValueError, match=message) as error:
    convert()
  assert "\n" not in str(error.value)


# ---- flax.linen ------------------------------------------------------------------------------

FLAX_CELLS = {
  "simple": nn.SimpleCell,
  "lstm": nn.LSTMCell,
  "optimized_lstm": nn.OptimizedLSTMCell,
  "gru": nn.GRUCell,
}
T_FLAX = 20


@functools.cache
def flax_setup(kind):
  """flax.linen nn.RNN over the cell, and a random flax param tree (every leaf drawn)."""
  module = nn.RNN(FLAX_CELLS[kind](features=H), return_carry=True)
  xs = jnp.zeros((B, T_FLAX, I))
  shapes = jax.eval_shape(module.init, jax.random.key(0), xs)["params"]["cell"]
  rng = rng_for("flax", kind)
  tree = jax.tree.map(lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape), l.dtype), shapes)
  return module, tree, jax.jit(lambda p, x: module.apply({"params": {"cell": p}}, x))


@pytest.mark.parametrize("kind", FLAX_CELLS)
def test_flax_round_trips(kind):
  _, tree, _ = flax_setup(kind)
  params = interop.from_flax({"params": {"cell": tree}})  # nn.RNN variables unwrap
  assert isinstance(params, (rnnlab.ElmanParams, rnnlab.LSTMParams, rnnlab.GRUParams))
  assert isinstance(params, type(random_params(interop.flax_cell(kind, H), 0)))
  # flax -> rnnlab -> flax is bitwise (the GRU's b_hr, b_hz come in as zeros).
  assert_trees_equal(interop.to_flax(params), jax.tree.map(jnp.asarray, dict(tree)))
  # rnnlab -> flax -> rnnlab is bitwise except the GRU, which keeps the sums only.
  ours = random_params(interop.flax_cell(kind, H), seed=11)
  back = interop.from_flax(interop.to_flax(ours))
  if kind != "gru":
    assert_trees_equal(back, ours)
    return
  H3 = jnp.arange(3 * H)
  folded = jnp.where(H3 < 2 * H, ours.b_hh, 0.0)
  np.testing.assert_array_equal(back.b_ih, ours.b_ih + folded)
  np.testing.assert_array_equal(back.b_hh, ours.b_hh - folded)
  assert_trees_equal((back.w_ih, back.w_hh), (ours.w_ih, ours.w_hh))
  no_hr_hz = ours._replace(b_hh=ours.b_hh - folded)
  assert_trees_equal(interop.from_flax(interop.to_flax(no_hr_hz)), no_hr_hz)


@pytest.mark.parametrize("kind", FLAX_CELLS)
def test_exported_params_run_in_flax_as_in_rnnlab(kind):
  # rnnlab params with every bias non-zero (the GRU's b_hr, b_hz included) -> flax.
  module, _, run_flax = flax_setup(kind)
  cell = interop.flax_cell(kind, H)
  params = random_params(cell, seed=12)
  xs = jnp.asarray(rng_for("xs", kind).standard_normal((B, T_FLAX, I)), jnp.float32)
  carry, ys_flax = run_flax(interop.to_flax(params), xs)
  ys, final = jax.jit(functools.partial(rnnlab.unroll, cell))(params, xs)
  assert_close(ys, ys_flax, f"{kind}: outputs")
  assert_trees_equal(interop.carry_to_flax(interop.carry_from_flax(carry)), carry)
  for a, b in zip(
    jax.tree.leaves(final), jax.tree.leaves(interop.carry_from_flax(carry)), strict=True
  ):
    assert_close(a, b, f"{kind}: final carry")


def test_from_flax_errors_name_the_leaf():
  _, tree, _ = flax_setup("gru")
  tree = jax.tree.map(lambda l: l, dict(tree))
  broken = {**tree, "hn": {"kernel": tree["hn"]["kernel"]}}
  with pytest.raises(ValueError, match=r"missing params\['hn'\]\['bias'\] of a flax gru cell"):
    interop.from_flax(broken)
  wrong = {**tree, "iz": {"kernel": tree["iz"]["kernel"][:, :2], "bias": tree["iz"]["bias"]}}
  with pytest.raises(
    ValueError, match=r"params\['iz'\]\['kernel'\] has shape \(3, 2\); expected \(3, 4\)"
  ):
    interop.from_flax(wrong)
  with pytest.raises(ValueError, match=r"closest is gru \(missing \['hz'\], unexpected \[\]\)"):
    interop.from_flax({k: v for k, v in tree.items() if k != "hz"})


# ---- flax.nnx cells --------------------------------------------------------------------------

NNX_CELLS = {
  "simple": nnx.SimpleCell,
  "lstm": nnx.LSTMCell,
  "optimized_lstm": nnx.OptimizedLSTMCell,
  "gru": nnx.GRUCell,
}


@functools.cache
def nnx_runner(kind):
  """A jitted nnx.RNN over the nnx cell, as a function of the cell's pure param dict."""
  cell = NNX_CELLS[kind](I, H, rngs=nnx.Rngs(0))
  graphdef, state = nnx.split(nnx.RNN(cell, return_carry=True))

  @jax.jit
  def run(pure, xs):
    new = jax.tree.map(lambda l: l, state)
    nnx.replace_by_pure_dict(new, {"cell": pure})
    return nnx.merge(graphdef, new)(xs)

  return cell, run


@pytest.mark.parametrize("kind", NNX_CELLS)
def test_nnx_cells_convert_both_ways(kind):
  cell, run = nnx_runner(kind)
  rng = rng_for("nnx", kind)
  pure = jax.tree.map(
    lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape), l.dtype),
    nnx.state(cell, nnx.Param).to_pure_dict(),
  )
  xs = jnp.asarray(rng.standard_normal((B, T_FLAX, I)), jnp.float32)
  params = interop.from_nnx(pure)
  ours = interop.flax_cell(kind, H)
  carry, ys_nnx = run(pure, xs)
  unroll = jax.jit(functools.partial(rnnlab.unroll, ours))
  ys, final = unroll(params, xs)
  assert_close(ys, ys_nnx, f"nnx {kind}: outputs")
  for a, b in zip(
    jax.tree.leaves(final), jax.tree.leaves(interop.carry_from_flax(carry)), strict=True
  ):
    assert_close(a, b, f"nnx {kind}: final carry")
  # nnx -> rnnlab -> nnx is bitwise.
  assert_trees_equal(interop.to_nnx(params, kind), pure)
  # rnnlab -> nnx: into a live cell; the GRU needs b_hn = 0 (nnx has none), b_hr, b_hz fold.
  mine = random_params(ours, seed=14)
  if kind == "gru":
    with pytest.raises(ValueError, match=r"b_hn, max \|b\| = .* nnx's GRUCell has no bias"):
      interop.to_nnx(mine)
    mine = mine._replace(b_hh=mine.b_hh.at[2 * H :].set(0.0))
  live = NNX_CELLS[kind](I, H, rngs=nnx.Rngs(1))
  interop.load_nnx(live, mine)
  loaded = nnx.state(live, nnx.Param).to_pure_dict()
  assert_close(run(loaded, xs)[1], unroll(mine, xs)[0], f"nnx {kind}: exported")
  if kind != "gru":
    assert_trees_equal(interop.from_nnx(live), mine)


# ---- Keras -----------------------------------------------------------------------------------

T_KERAS = 30
KERAS_CASES = [
  ("simple_rnn", True, True),
  ("lstm", True, True),
  ("gru", True, True),
  ("gru", False, True),
  ("gru", True, False),
]


def keras_layer(keras, kind, reset_after, use_bias):
  cls = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM, "gru": keras.layers.GRU}
  kw = dict(return_sequences=True, return_state=True, use_bias=use_bias)
  if kind == "gru":
    kw["reset_after"] = reset_after
  layer = cls[kind](H, **kw)
  layer.build((None, T_KERAS, I))
  return layer


# Keras's own Variable trips NumPy 2's copy-keyword deprecation on set_weights; not ours.
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")
@pytest.mark.parametrize(("kind", "reset_after", "use_bias"), KERAS_CASES)
def test_keras_layers_match_and_round_trip(keras, kind, reset_after, use_bias):
  what = f"keras {kind} reset_after={reset_after} use_bias={use_bias}"
  layer = keras_layer(keras, kind, reset_after, use_bias)
  rng = rng_for(what)
  weights = [0.5 * rng.standard_normal(w.shape).astype(np.float32) for w in layer.get_weights()]
  layer.set_weights(weights)
  xs = rng.standard_normal((B, T_KERAS, I)).astype(np.float32)
  # One compiled Keras forward pass for both weight sets (its own code, run statelessly).
  seeds = [v.value for v in layer.non_trainable_variables]
  run_keras = jax.jit(lambda w, x: layer.stateless_call(w, seeds, x)[0])
  cell = interop.keras_cell(kind, H, reset_after=reset_after)
  run_ours = jax.jit(functools.partial(rnnlab.unroll, cell))

  params = interop.from_keras(layer.get_weights(), kind, reset_after=reset_after)
  ys_k, *states_k = run_keras([v.value for v in layer.trainable_variables], xs)
  ys, final = run_ours(params, jnp.asarray(xs))
  assert_close(ys, ys_k, f"{what}: outputs")
  # Keras's LSTM states are [h, c], rnnlab's LSTMCarry(h, c).
  for ours, theirs in zip(jax.tree.leaves(final), states_k, strict=True):
    assert_close(ours, theirs, f"{what}: final state")

  # keras -> rnnlab -> keras is bitwise.
  back = interop.to_keras(params, reset_after=reset_after, use_bias=use_bias)
  assert len(back) == len(weights)
  for a, e in zip(back, weights, strict=True):
    assert a.dtype == e.dtype
    np.testing.assert_array_equal(a, e)
  # rnnlab -> keras: random params (both GRU biases non-zero) run the same in Keras.
  ours = random_params(cell, seed=13)
  if not use_bias:
    ours = jax.tree.map(lambda l: l if l.ndim == 2 else jnp.zeros_like(l), ours)
  exported = interop.to_keras(ours, reset_after=reset_after, use_bias=use_bias)
  layer.set_weights(exported)  # Keras checks every shape
  assert_close(run_ours(ours, jnp.asarray(xs))[0], run_keras(exported, xs)[0], what)
  if kind == "gru" and not reset_after:
    # One Keras bias holds b_ih + b_hh: import gives b_hh = 0, the same function.
    back = interop.from_keras(interop.to_keras(ours, reset_after=False), "gru", reset_after=False)
    np.testing.assert_array_equal(back.b_ih, ours.b_ih + ours.b_hh)
    assert float(jnp.abs(back.b_hh).max()) == 0.0
  elif use_bias:
    back = interop.from_keras(exported, kind, reset_after=reset_after)
    assert_trees_equal(back, ours)


def test_keras_gate_order_and_errors_without_keras():
  # The GRU's z, r, h columns become r, z, n: mark each gate's block and follow it.
  kernel = np.concatenate([np.full((1, H), v, np.float32) for v in (1.0, 2.0, 3.0)], axis=1)
  recurrent = np.tile(kernel, (H, 1))
  bias = np.stack([kernel[0], 10 * kernel[0]])
  params = interop.from_keras(
    {"kernel": kernel, "recurrent_kernel": recurrent, "bias": bias}, "gru"
  )
  assert params.w_ih[0, :H].tolist() == [2.0] * H  # r first
  assert params.w_ih[0, H : 2 * H].tolist() == [1.0] * H  # then z
  assert params.b_hh[2 * H :].tolist() == [30.0] * H  # n last, from the recurrent row
  with pytest.raises(
    ValueError, match=r"bias has shape \(12,\), that of a GRU with reset_after=False"
  ):
    interop.from_keras([kernel, recurrent, bias[0]], "gru")
  with pytest.raises(
    ValueError,
    match=r"recurrent_kernel has shape \(4, 12\); expected \(4, 16\), a Keras LSTM's \(H, 4\*H\) "
    r"with H = 4; \(4, 12\) is a Keras GRU's \(H, 3\*H\) with H = 4: is kind='lstm' right",
  ):
    interop.from_keras([kernel, recurrent], "lstm")
  with pytest.raises(ValueError, match=r"kernel has shape \(1, 8\); expected \(1, 12\)"):
    interop.from_keras([kernel[:, :8], recurrent], "gru")
  with pytest.raises(ValueError, match=r"missing key 'recurrent_kernel'"):
    interop.from_keras({"kernel": kernel}, "gru")
  with pytest.raises(ValueError, match=r"got 1 arrays"):
    interop.from_keras([kernel], "gru")


# ---- flax modules ----------------------------------------------------------------------------

T_TRAIN = 12


def random_variables(module, seed, *args):
  """The module's variables with every leaf random: init is traced (its structure and
  shapes are what is checked), not compiled, to keep the tests fast."""
  shapes = jax.eval_shape(module.init, jax.random.key(seed), *args)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda l: jnp.asarray(0.5 * rng.standard_normal(l.shape), l.dtype), shapes)


def regression_batch():
  rng = rng_for("train")
  xs = jnp.asarray(rng.standard_normal((B, T_TRAIN, I)), jnp.float32)
  targets = jnp.asarray(rng.standard_normal((B, 1)), jnp.float32)
  return xs, targets


class Regressor(nn.Module):
  """An rnnlab cell inside a flax model: the wrapped unroll, then a flax Dense readout."""

  cell: rnnlab.Cell

  @nn.compact
  def __call__(self, xs, lengths):
    ys = interop.RNN(self.cell, name="rnn")(xs, lengths=lengths)
    return nn.Dense(1, name="readout")(rnnlab.layers.gather_last(ys, lengths))


def test_linen_wrapper_trains_one_step_like_plain_rnnlab():
  cell = rnnlab.lstm(H)
  xs, targets = regression_batch()
  lengths = jnp.array([T_TRAIN, 5])
  model = Regressor(cell)
  variables = random_variables(model, 0, xs, lengths)
  assert isinstance(variables["params"]["rnn"]["cell"], rnnlab.LSTMParams)
  optimizer = optax.adam(1e-2)

  def flax_loss(params):
    return jnp.mean((model.apply({"params": params}, xs, lengths) - targets) ** 2)

  def plain_loss(params):
    ys, _ = rnnlab.unroll(cell, params["rnn"]["cell"], xs, lengths=lengths)
    last = rnnlab.layers.gather_last(ys, lengths)
    readout = params["readout"]
    return jnp.mean((last @ readout["kernel"] + readout["bias"] - targets) ** 2)

  def train_step(loss_fn, params):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    new = optax.apply_updates(params, updates)
    return loss, new, grads, loss_fn(new)

  @jax.jit
  def both(params):
    return train_step(flax_loss, params), train_step(plain_loss, params)

  (loss_f, new_f, grads_f, after_f), (loss_p, new_p, grads_p, _) = both(variables["params"])
  assert float(jnp.abs(grads_p["rnn"]["cell"].w_hh).max()) > 1e-4
  np.testing.assert_allclose(loss_f, loss_p, rtol=1e-6)
  for a, b in zip(jax.tree.leaves(new_f), jax.tree.leaves(new_p), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  assert float(after_f) < float(loss_f)  # the step helped
  # The wrapped cell's params go straight to the converters.
  state = interop.to_torch(new_f["rnn"]["cell"])
  assert state["weight_hh"].shape == (4 * H, H)


def test_linen_wrapper_runs_layers_and_returns_the_carry():
  layer = rnnlab.bidirectional(rnnlab.gru(H))
  xs, _ = regression_batch()
  module = interop.RNN(layer, return_carry=True)
  reverse = interop.RNN(rnnlab.gru(H), reverse=True)
  variables = random_variables(module, 1, xs)
  v_reverse = random_variables(reverse, 2, xs)

  @jax.jit
  def run(variables, v_reverse):
    wrapped = module.apply(variables, xs), reverse.apply(v_reverse, xs)
    cell_params = v_reverse["params"]["cell"]
    plain = (
      layer.apply(variables["params"]["cell"], xs)[::-1],
      rnnlab.unroll(rnnlab.gru(H), cell_params, xs, reverse=True)[0],
    )
    return wrapped, plain

  wrapped, plain = run(variables, v_reverse)
  assert_trees_equal(wrapped, plain)
  with pytest.raises(ValueError, match=r"reverse and time_major apply to a Cell"):
    interop.RNN(layer, reverse=True).init(jax.random.key(0), xs)
  with pytest.raises(ValueError, match=r"cell must be an rnnlab Cell or Layer; got str"):
    interop.RNN("lstm").init(jax.random.key(0), xs)


def test_nnx_wrapper_trains_one_step_like_plain_rnnlab():
  cell = rnnlab.gru(H)
  xs, targets = regression_batch()
  model = interop.NNXRNN(cell, I, rngs=nnx.Rngs(0))
  start = model.cell_params()
  assert isinstance(start, rnnlab.GRUParams)
  optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

  def loss_of(ys):
    return jnp.mean((ys[:, -1, :1] - targets) ** 2)

  @nnx.jit
  def nnx_step(model, optimizer):
    loss, grads = nnx.value_and_grad(lambda m: loss_of(m(xs)[0]))(model)
    optimizer.update(model, grads)
    return loss

  @jax.jit
  def plain_step(params):
    loss, grads = jax.value_and_grad(lambda p: loss_of(rnnlab.unroll(cell, p, xs)[0]))(params)
    tx = optax.adam(1e-2)
    updates, _ = tx.update(grads, tx.init(params), params)
    return loss, optax.apply_updates(params, updates)

  loss_n = nnx_step(model, optimizer)
  loss_p, new_p = plain_step(start)
  np.testing.assert_allclose(loss_n, loss_p, rtol=1e-6)
  after = model.cell_params()
  assert float(jnp.abs(after.w_hh - start.w_hh).max()) > 1e-4  # the step moved the weights
  for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(new_p), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Imported params start an nnx model directly.
  imported = interop.NNXRNN(cell, I, rngs=nnx.Rngs(0), params=new_p)
  assert_trees_equal(imported(xs), rnnlab.unroll(cell, new_p, xs))
