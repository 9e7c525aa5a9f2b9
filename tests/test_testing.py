"""Tests for rnnlab.testing: each check passes a sound cell and fails a cell broken its way.

``toy(bug)`` is one small tanh RNN written here (with CellParts), and each ``bug``
breaks exactly the property its check is about; the sound ``toy()`` passes every
check, so a failure below is the bug's, not the toy's. Also here: the guide
"Your own cell" (docs/own-cell.md), run as written.
"""

import re
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import testing

I, H = 3, 4
SHAPES = [((2,), 3)]  # one tiny shape for the broken cells: one compilation each


class ToyParams(NamedTuple):
  w_ih: jax.Array
  w_hh: jax.Array
  b: jax.Array


@jax.custom_vjp
def wrong_tanh(a):
  return jnp.tanh(a)


def _wrong_tanh_fwd(a):
  y = jnp.tanh(a)
  return y, y


def _wrong_tanh_bwd(y, g):
  return (g * (1 - y),)  # should be 1 - y**2


wrong_tanh.defvjp(_wrong_tanh_fwd, _wrong_tanh_bwd)


@jax.custom_vjp
def credit_input(x):
  return x


def _credit_fwd(x):
  return x, x


def _credit_bwd(x, g):
  # Gradient for x whether or not anything came back: every later step "reaches" it.
  return (g + 0.1 * x,)


credit_input.defvjp(_credit_fwd, _credit_bwd)


def toy(bug=None):
  """``h' = tanh(x W_ih + h W_hh + b)`` written from scratch, with one optional bug.

  Bugs: ``"peek"`` (a custom VJP sends gradient to the input at every step, so the
  outputs seem to depend on later inputs), ``"norm"`` (unit-norm inputs with no
  epsilon: NaN at the zeros that ``unroll`` feeds at padded steps), ``"calls"`` (a
  Python call counter in the step, frozen at trace time), ``"batch_mean"`` (centres
  x over axis 0: the features of one sequence, the batch of a batched step),
  ``"vjp"`` (a custom VJP of tanh with the wrong derivative), ``"layout"``
  (CellParts in the ``(in, out)`` layout, the step in PyTorch's ``(out, in)``),
  ``"float32"`` (the step computes in float32 whatever the params' dtype).
  """
  calls = [0]

  def init(key, input_size, dtype=jnp.float32):
    k_ih, k_hh, k_b = jax.random.split(key, 3)
    return ToyParams(
      0.6 * jax.random.normal(k_ih, (input_size, H), dtype),
      0.6 * jax.random.normal(k_hh, (H, H), dtype),
      0.3 * jax.random.normal(k_b, (H,), dtype),
    )

  def initial_carry(params, batch_shape=()):
    return jnp.zeros((*batch_shape, H), params.w_hh.dtype)

  def project(params, x):
    x = x.astype(params.w_ih.dtype)
    if bug == "norm":
      x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
    if bug == "batch_mean":
      x = x - jnp.mean(x, axis=0)
    if bug == "peek":
      x = credit_input(x)
    return x @ params.w_ih + params.b

  def recurrent(params):
    return params.w_hh, None

  def update(h, xp, hp):
    return (wrong_tanh if bug == "vjp" else jnp.tanh)(xp + hp)

  def step(params, h, x):
    w_hh = params.w_hh.T if bug == "layout" else params.w_hh
    if bug == "float32":
      params, h = jax.tree.map(lambda a: a.astype(jnp.float32), (params, h))
      w_hh = w_hh.astype(jnp.float32)
    h = update(h, project(params, x), h @ w_hh)
    if bug == "calls":
      calls[0] += 1
      h = h * (1.0 + 0.01 * calls[0])
    return h, h

  def gates(h, xp, hp):
    return {}, {"h": update(h, xp, hp)}

  parts = rnnlab.CellParts(
    project, recurrent, update, lambda h: h, additive=True, gates=gates, blocks=("h",)
  )
  return rnnlab.Cell(init, initial_carry, step, f"toy_{bug}" if bug else "toy", parts)


def test_the_sound_toy_passes_every_check():
  # At the shape the broken toys fail at: what fails there is the bug.
  assert testing.check_cell(toy(), I, shapes=SHAPES) == testing.CHECKS


# (check, bug, what the one-line message must say)
BROKEN = [
  ("loop", "calls", r"unroll == Python loop over step failed .* ys differs at index"),
  ("causality", "peek", r"causality failed .* output leaf 0 at t=0 depends on the input at s=1"),
  ("padding", "norm", r"padding failed .* the gradient \(params, xs, carry\).* is nan"),
  ("jit", "calls", r"jit == no-jit failed .* step \(carry, y\)\[0\] differs"),
  ("vmap", "batch_mean", r"vmap == loop failed .* the batched unroll \(ys, carry\).* differs"),
  ("grads", "vjp", r"check_grads failed .* differ from finite differences in float64: "),
  ("fused", "layout", r"fused == scan failed .* one step: the CellParts' \(carry, y\) vs step's"),
  (
    "dtypes",
    "float32",
    r"dtype failed .* bfloat16 params and float32 x the step returns .*float32",
  ),
]


@pytest.mark.parametrize("check,bug,message", BROKEN, ids=[f"{c}-{b}" for c, b, _ in BROKEN])
def test_each_check_fails_its_broken_cell_in_one_line(check, bug, message):
  with pytest.raises(testing.CellCheckError) as info:
    getattr(testing, f"check_{check}")(toy(bug), I, shapes=SHAPES)
  text = str(info.value)
  assert isinstance(info.value, AssertionError)
  assert "\n" not in text
  assert re.search(message, text), text
  # The cell, the shapes and the seed are named.
  assert f"cell 'toy_{bug}' on xs (2, 3, 3) (batch_shape=(2,), T=3, input_size=3;" in text
  assert "seed=0" in text


def test_check_cell_stops_at_the_first_failing_property():
  # toy_calls fails the loop and jit checks: the loop comes first.
  with pytest.raises(
    AssertionError, match=r"^unroll == Python loop over step failed .*'toy_calls'"
  ):
    testing.check_cell(toy("calls"), I, shapes=SHAPES)


def test_an_exception_inside_the_cell_is_a_one_line_failure_chained_to_it():
  def step(params, h, x):
    if jnp.sum(x) > 0:  # Python control flow on a traced value
      return h, h
    return h + 1, h

  base = toy()
  cell = rnnlab.Cell(base.init, base.initial_carry, step, "branchy")
  with pytest.raises(testing.CellCheckError) as info:
    testing.check_jit(cell, I, shapes=SHAPES)
  text = str(info.value)
  assert "\n" not in text
  assert text.startswith("jit == no-jit failed for cell 'branchy'")
  assert "jax.jit(step) raised TracerBoolConversionError" in text
  assert isinstance(info.value.__cause__, jax.errors.TracerBoolConversionError)


def test_check_grads_leaves_x64_off():
  assert not jax.config.read("jax_enable_x64")
  testing.check_grads(toy(), I, shapes=SHAPES)
  assert not jax.config.read("jax_enable_x64")
  assert jnp.asarray(1.0).dtype == jnp.float32  # still 32-bit outside the check


def test_fused_needs_parts_and_check_cell_skips_it_without():
  base = toy()
  plain = rnnlab.Cell(base.init, base.initial_carry, base.step, "plain")
  with pytest.raises(ValueError, match="check_fused: plain has no CellParts"):
    testing.check_fused(plain, I, shapes=SHAPES)
  others = ("causality", "padding", "jit", "vmap", "dtypes", "grads")
  assert testing.check_cell(plain, I, shapes=SHAPES, skip=others) == ("loop",)


def test_bad_arguments():
  with pytest.raises(ValueError, match=r"unknown checks in skip: \['speed'\]"):
    testing.check_cell(toy(), I, skip=("speed",))
  with pytest.raises(TypeError, match="cell must be an rnnlab Cell; got function"):
    testing.check_loop(toy().step, I)
  with pytest.raises(ValueError, match="input_size must be a positive int; got 0"):
    testing.check_loop(toy(), 0)
  with pytest.raises(ValueError, match=r"shapes need T >= 2"):
    testing.check_loop(toy(), I, shapes=[((2,), 1)])


def test_random_shapes_are_seeded_and_small():
  assert testing.random_shapes(5, 4) == testing.random_shapes(5, 4)
  assert testing.random_shapes(5, 4) != testing.random_shapes(6, 4)
  # The first three draws take batch ranks 0, 1 and 2, in a seeded order.
  assert sorted(len(s.batch_shape) for s in testing.random_shapes(3, 3)) == [0, 1, 2]
  for shape in testing.random_shapes(7, 6):
    assert 2 <= shape.num_steps <= 6
    assert all(1 <= d <= 3 for d in shape.batch_shape)
    assert not shape.batch_shape or np.prod(shape.batch_shape) >= 2


# ------------------------------------------------------------------- the guide "Your own cell"


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "own-cell.md"


def guide_blocks():
  """The python code blocks of docs/own-cell.md, in order."""
  return re.findall(r"```python\n(.*?)```", GUIDE.read_text(), flags=re.S)


def test_guide_own_cell_runs_as_written():
  blocks = guide_blocks()
  assert len(blocks) >= 4
  namespace = {}
  for block in blocks:
    exec(compile(block, str(GUIDE), "exec"), namespace)  # noqa: S102
  ns = namespace
  cell = ns["cell"]
  assert isinstance(cell, rnnlab.Cell) and cell.parts is not None and cell.name == "ugrnn"
  # The fused path ran and agrees with the scan.
  np.testing.assert_allclose(ns["ys_fused"], ns["ys"], rtol=2e-5, atol=2e-5)
  # Diagnostics: one state gradient per step, gate values in range, spectra per block.
  assert ns["dl_dh"].shape == (ns["xs"].shape[1], ns["xs"].shape[0], ns["hidden_size"])
  assert set(ns["stats"]["gates"]) == {"g"} and set(ns["stats"]["units"]) == {"c"}
  assert set(ns["spectra"]["sigma_max"]) == {"g", "c"}
  # Training lowered the loss, and the checks ran every property on the cell.
  losses = np.asarray(ns["losses"])
  assert np.all(np.isfinite(losses)) and losses[-10:].mean() < 0.5 * losses[:10].mean()
  assert ns["checked"] == testing.CHECKS


def test_guide_own_cell_failure_message_is_the_real_one():
  # The guide quotes the message of its cell with the cast to the params' dtype left out.
  cast = "xp = x.astype(params.w_ih.dtype) @ params.w_ih + params.b"
  block = guide_blocks()[0]
  assert cast in block
  namespace = {}
  exec(
    compile(block.replace(cast, "xp = x @ params.w_ih + params.b"), "own-cell.md", "exec"),
    namespace,
  )  # noqa: S102
  with pytest.raises(AssertionError) as info:
    testing.check_dtypes(namespace["cell"], input_size=3)
  quoted = re.search(r"A step that forgot .*? fails with `(.*?)`\.", GUIDE.read_text(), re.S)
  assert quoted and " ".join(quoted.group(1).split()) == str(info.value)
