"""Gradient flossing: the penalty against an independent NumPy QR, and its training option."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

import rnnlab
from rnnlab import diagnostics, flossing, linalg
from rnnlab import train as rt


def numpy_penalty(w_ih, w_hh, b, xs_BxTxI, q0, transient):
  """``mean(lambda_i^2)`` of a tanh Elman cell: explicit Jacobians, NumPy's QR (float64)."""
  values = []
  for xs in xs_BxTxI:
    h, q, total = np.zeros(w_hh.shape[0]), q0, np.zeros(q0.shape[1])
    for t, x in enumerate(xs):
      h = np.tanh(x @ w_ih + h @ w_hh + b)
      jac = (1 - h**2)[:, None] * w_hh.T  # dh_t / dh_{t-1}
      q, r = np.linalg.qr(jac @ q)
      if t >= transient:
        total += np.log(np.abs(np.diag(r)))
    values.append(np.sort(total / (len(xs) - transient))[::-1])
  return np.mean(np.square(values))


def test_penalty_and_its_gradient_match_numpy_qr_and_central_differences():
  with jax.enable_x64(True):
    cell = rnnlab.elman(3)
    params = cell.init(jax.random.key(1), 2, dtype=jnp.float64)
    params = params._replace(w_hh=1.3 * params.w_hh)
    xs = jax.random.normal(jax.random.key(2), (2, 7, 2), jnp.float64)
    key, k, transient = jax.random.key(3), 2, 2
    q0 = np.asarray(linalg.qr(jax.random.normal(key, (3, k), jnp.float64))[0])

    def loss(w_hh):
      return flossing.flossing_loss(
        cell, params._replace(w_hh=w_hh), xs, num_exponents=k, transient=transient, key=key
      )

    w_ih, w_hh, b = (np.asarray(a) for a in params)
    xs_np = np.asarray(xs)
    expected = numpy_penalty(w_ih, w_hh, b, xs_np, q0, transient)
    np.testing.assert_allclose(loss(params.w_hh), expected, rtol=1e-10)
    grad = jax.grad(loss)(params.w_hh)
    eps, fd = 1e-6, np.zeros_like(w_hh)
    for index in np.ndindex(w_hh.shape):
      step = np.zeros_like(w_hh)
      step[index] = eps
      up = numpy_penalty(w_ih, w_hh + step, b, xs_np, q0, transient)
      down = numpy_penalty(w_ih, w_hh - step, b, xs_np, q0, transient)
      fd[index] = (up - down) / (2 * eps)
    assert np.abs(fd).max() > 1e-2  # the check is not vacuous
    np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-9)


def test_descent_on_the_penalty_alone_pushes_a_linear_cells_exponents_to_zero():
  # h_t = h_{t-1} W + x_t W_ih with W = 0.5 Q: every exponent is log 0.5 = -0.69.
  cell = rnnlab.elman(4, "linear", gain=0.5)
  params = cell.init(jax.random.key(0), 1)
  xs = jax.random.normal(jax.random.key(1), (1, 30, 1))

  def exponents(p):
    return diagnostics.lyapunov_spectrum(cell, p, xs, num_exponents=4)[0]

  def descend(p, _):
    grads = jax.grad(lambda p: flossing.flossing_loss(cell, p, xs, num_exponents=4))(p)
    return jax.tree.map(lambda a, g: a - 0.5 * g, p, grads), None

  trained, _ = jax.jit(lambda p: jax.lax.scan(descend, p, length=40))(params)
  before, after = exponents(params), exponents(trained)
  np.testing.assert_allclose(before, np.log(0.5), atol=1e-4)
  assert np.max(np.abs(after)) < 0.05, after


def tiny_config(weight: float) -> object:
  c = rt.default_config()
  c.task.length = 12
  c.model.cell = "elman"
  c.model.hidden_size = 6
  c.model.gain = 0.4  # lambda_1 well below 0 at the start
  c.optimizer.learning_rate = 0.03
  c.batch_size = 4
  c.num_steps = 20
  c.eval.num_batches = 0
  c.floss.weight = weight
  c.floss.num_exponents = 3
  c.floss.batch_size = 2
  return c


@pytest.mark.slow  # about 20 s on 2 busy cores: the compile of a scan through the QR's gradient
def test_training_with_flossing_lowers_the_largest_exponents_magnitude():
  keys = jax.random.split(jax.random.key(0), 2)
  train = rt.make_train(tiny_config(1.0))
  _, records = jax.jit(jax.vmap(train))(keys, {"floss.weight": jnp.array([0.0, 1.0])})
  top = records["lyapunov_max"]  # (member, step): lambda_1 on the step's flossing inputs
  assert top.shape == (2, 20) and np.all(np.isfinite(top))
  assert top[1, 0] < -0.3  # gain 0.4: contracting at the start
  assert abs(top[1, -1]) < 0.5 * abs(top[1, 0])  # flossing pulled lambda_1 toward 0
  assert abs(top[1, -1]) < 0.5 * abs(top[0, -1])  # further than training without it
  # Off (a weight of a concrete 0): the program and its records are those of no flossing.
  plain = jax.eval_shape(rt.make_train(tiny_config(0.0)), keys[0])[1]
  assert set(plain) & set(rt.FLOSS_METRICS) == set() and set(rt.FLOSS_METRICS) <= set(records)


def _qr_in_cond(closed) -> list[bool]:
  found = []

  def walk(jaxpr, in_cond):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name == "qr":
        found.append(in_cond)
      for value in eqn.params.values():
        for sub in value if isinstance(value, tuple | list) else [value]:
          inner = sub.jaxpr if isinstance(sub, jax_core.ClosedJaxpr) else sub
          if isinstance(inner, jax_core.Jaxpr):
            walk(inner, in_cond or eqn.primitive.name == "cond")

  walk(closed.jaxpr, False)
  return found


def test_the_flossing_qr_stays_in_a_cond_under_vmap():
  c = tiny_config(0.5)
  c.floss.every = 5
  keys = jax.random.split(jax.random.key(0), 2)
  flossing_run = jax.make_jaxpr(jax.vmap(rt.make_train(c)))(
    keys, {"floss.weight": jnp.array([0.1, 0.5])}
  )
  plain_run = jax.make_jaxpr(jax.vmap(rt.make_train(tiny_config(0.0))))(
    keys, {"clip": jnp.array([0.0, 1.0])}
  )
  flossing_qrs, plain_qrs = _qr_in_cond(flossing_run), _qr_in_cond(plain_run)
  # Every QR that flossing adds is inside a cond (a select would run it on every step).
  assert flossing_qrs.count(True) >= 1 and plain_qrs.count(True) == 0
  assert flossing_qrs.count(False) == plain_qrs.count(False)  # the initialisation's


def test_weight_traces_and_the_rest_shape_the_program():
  c = tiny_config(0.5)
  paths = ["floss.weight", "floss.num_exponents", "floss.every", "floss.transient"]
  assert rt.traced_fields(c, paths) == dict(zip(paths, [True, False, False, False], strict=True))


@pytest.mark.parametrize(
  ("field", "value", "words"),
  [
    ("weight", -0.1, "config.floss.weight=-0.1 is invalid; expected a number >= 0"),
    ("num_exponents", 7, "config.floss.num_exponents=7 is invalid; expected an int in [1, 6]"),
    ("num_exponents", 0, "config.floss.num_exponents=0 is invalid; expected a positive int"),
    ("every", 0, "config.floss.every=0 is invalid; expected a positive int"),
    ("until", -1, "config.floss.until=-1 is invalid; expected an int >= 0"),
    ("alone", -2, "config.floss.alone=-2 is invalid; expected an int >= 0"),
    ("inputs", "eval", "config.floss.inputs='eval' is invalid; expected one of ('fresh', 'train')"),
    ("transient", 1.0, "config.floss.transient=1.0 is invalid; expected a fraction in [0, 1)"),
  ],
)
def test_bad_floss_fields_raise_one_line_naming_the_value(field, value, words):
  c = tiny_config(0.5)
  c.floss[field] = value
  with pytest.raises(ValueError) as error:
    rt.check_config(c)
  message = str(error.value)
  assert "\n" not in message and message.startswith(words), message


def test_train_inputs_need_a_big_enough_batch():
  c = tiny_config(0.5)
  c.floss.inputs, c.floss.batch_size = "train", 5
  with pytest.raises(ValueError, match=r"config.floss.batch_size=5 is invalid; expected at most"):
    rt.check_config(c)
