"""Tests for rnnlab.probes: the tap scope that every unroll reports to while traced."""

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import diagnostics as diag
from rnnlab import probes

B, T, I, H = 2, 4, 3, 5
CELL = rnnlab.lstm(H)
PARAMS = jax.eval_shape(lambda: CELL.init(jax.random.key(0), I))
XS = jax.ShapeDtypeStruct((B, T, I), jnp.float32)


def trace_unroll(**kwargs):
  return jax.eval_shape(lambda p, xs: rnnlab.unroll(CELL, p, xs, **kwargs), PARAMS, XS)


def test_unroll_reports_to_the_innermost_tap_and_only_inside_its_scope():
  seen = []

  def outer(u):
    seen.append(("outer", u))

  def inner(u):
    seen.append(("inner", u))

  trace_unroll()
  assert probes.current() is None and seen == []
  with probes.tap(outer):
    trace_unroll()
    with probes.tap(inner):
      trace_unroll(reverse=True)
    trace_unroll()
  trace_unroll()
  assert probes.current() is None
  assert [who for who, _ in seen] == ["outer", "inner", "outer"]
  report = seen[1][1]
  assert report.cell is CELL and report.num_steps == T and report.batch_ndim == 1
  assert report.reverse and jax.tree.map(jnp.shape, report.carry) == rnnlab.LSTMCarry(
    (B, H), (B, H)
  )
  # Given probes, an unroll asks no tap.
  zeros = rnnlab.LSTMCarry(jnp.zeros((B, T, H)), jnp.zeros((B, T, H)))
  with probes.tap(outer):
    trace_unroll(probes=zeros)
  assert len(seen) == 3


def test_probes_from_a_tap_are_added_to_the_states():
  cell = rnnlab.elman(H, "linear")
  params = cell.init(jax.random.key(0), I)._replace(w_hh=jnp.zeros((H, H)))
  xs = jnp.zeros((B, T, I))
  bump = jnp.arange(T * B * H, dtype=jnp.float32).reshape(T, B, H)
  with probes.tap(lambda u: bump):  # time major, as the tap's contract says
    ys, _ = rnnlab.unroll(cell, params, xs)
  # With W_hh = 0 and x = 0 the state after step t is exactly the probe d_t (+ bias).
  np.testing.assert_allclose(ys, np.moveaxis(bump, 0, 1) + params.b, rtol=1e-6)
  bad_shape = pytest.raises(
    ValueError, match=r"a probe has shape \(4, 2, 6\); expected \(4, 2, 5\)"
  )
  with probes.tap(lambda u: jnp.zeros((T, B, H + 1))), bad_shape:
    rnnlab.unroll(cell, params, xs)
  with pytest.raises(TypeError, match="expected a callable"), probes.tap("not a function"):
    pass


def test_taps_on_two_threads_at_once_never_see_each_other():
  # Two threads trace state_grads of different models at the same time (as the sweep
  # compiles ahead on background threads). The barrier inside the loss holds both in
  # their tap scopes together; a tap shared across threads would hand one thread's
  # unrolls the other's probes (wrong shapes or count: an error), or mix the results.
  barrier = threading.Barrier(2, timeout=60)
  models = {
    "gru": rnnlab.gru(3),
    "stack": rnnlab.stacked([rnnlab.elman(4), rnnlab.bidirectional(rnnlab.lstm(2))]),
  }
  results, errors = {}, []

  def run(name):
    try:
      model = models[name]
      params = jax.eval_shape(lambda: model.init(jax.random.key(0), I))

      def loss(params, xs):
        barrier.wait()
        if isinstance(model, rnnlab.Cell):
          return jnp.sum(rnnlab.unroll(model, params, xs)[0])
        return jnp.sum(model.apply(params, xs)[0])

      results[name] = jax.eval_shape(diag.state_grads(loss), params, XS)
      assert probes.current() is None
    except Exception as e:  # noqa: BLE001 - reported on the main thread
      errors.append(f"{name}: {type(e).__name__}: {e}")
      barrier.abort()

  threads = [threading.Thread(target=run, args=(name,)) for name in models]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  assert errors == []
  assert results["gru"].shape == (T, B, 3)
  elman, bidirectional = results["stack"]
  assert elman.shape == (T, B, 4) and bidirectional.backward.h.shape == (T, B, 2)
