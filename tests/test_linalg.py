"""rnnlab.linalg: LAPACK one matrix at a time on the CPU, with jnp.linalg's values and gradients."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rnnlab import linalg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def batched_lapack_calls(fn, *args) -> list[str]:
  """The ``num_batch_dims`` of every LAPACK custom call in ``jit(fn)``'s CPU program."""
  text = jax.jit(fn).lower(*args).as_text()
  return [
    line.split('num_batch_dims = "')[1].split('"')[0]
    for line in text.splitlines()
    if "custom_call @lapack_" in line
  ]


X = jax.random.normal(jax.random.key(0), (3, 2, 6, 4))
W = jax.random.normal(jax.random.key(1), (3, 5, 5))


def test_qr_eigvals_svdvals_equal_jnp_linalg_bitwise_batched_and_under_vmap():
  q, r = jnp.linalg.qr(X)
  for got in (linalg.qr(X), jax.vmap(linalg.qr)(X), jax.vmap(jax.vmap(linalg.qr))(X)):
    np.testing.assert_array_equal(got[0], q)
    np.testing.assert_array_equal(got[1], r)
  np.testing.assert_array_equal(jax.vmap(linalg.eigvals)(W), jnp.linalg.eigvals(W))
  np.testing.assert_array_equal(jax.vmap(linalg.svdvals)(X), jnp.linalg.svd(X, compute_uv=False))


@pytest.mark.parametrize(
  "fn",
  [
    jax.vmap(jax.vmap(linalg.qr)),
    linalg.qr,
    jax.vmap(jax.grad(lambda a: jnp.sum(linalg.qr(a)[1] ** 2))),
    lambda w: jax.vmap(linalg.eigvals)(w[..., :4, :4]),
    jax.vmap(linalg.svdvals),
  ],
)
def test_every_lapack_call_takes_one_matrix(fn):
  calls = batched_lapack_calls(fn, X)
  assert calls and set(calls) == {"0"}, calls
  # The control: jnp.linalg batches them (what hangs XLA's CPU pool; module doc).
  assert set(batched_lapack_calls(jax.vmap(jnp.linalg.qr), X)) == {"2"}


def test_qr_gradients_equal_jnp_linalg_and_finite_differences():
  def loss(qr):
    return lambda a: jnp.sum(jnp.sin(qr(a)[0])) + jnp.sum(qr(a)[1] ** 2)

  np.testing.assert_allclose(
    jax.vmap(jax.grad(loss(linalg.qr)))(X[0]),
    jax.vmap(jax.grad(loss(jnp.linalg.qr)))(X[0]),
    rtol=1e-5,
    atol=1e-6,
  )
  with jax.enable_x64(True):
    a = np.asarray(X[0], np.float64)
    check_grads(linalg.qr, (a[0],), order=2, modes=("fwd", "rev"))
    check_grads(jax.vmap(linalg.qr), (a,), order=1, modes=("fwd", "rev"))


def test_qr_of_a_wide_matrix_is_an_error_naming_the_shape():
  with pytest.raises(ValueError, match=r"m >= n; got \(3, 5\)"):
    linalg.qr(jnp.ones((3, 5)))


@pytest.mark.parametrize("shape", [(8, 8), (8, 32), (32, 8), (3, 4, 5), (4, 0)])
@pytest.mark.parametrize("column_axis", [-1, 0])
def test_orthogonal_draws_jax_initializers_matrices_bitwise(shape, column_axis):
  key = jax.random.key(2)
  ours = linalg.orthogonal(1.3, column_axis)(key, shape)
  theirs = jax.nn.initializers.orthogonal(1.3, column_axis)(key, shape)
  np.testing.assert_array_equal(ours, theirs)
  assert ours.shape == shape and ours.dtype == theirs.dtype


def test_two_cpu_devices_running_batched_factorisations_at_once_finish():
  """The program that hung the runner: each of 2 devices factorises a batch of 128 x 128.

  With ``jnp.linalg.qr`` both of XLA's pool threads (2 cores) block inside
  LAPACK, waiting for batch pieces that nobody runs: this program hung 3 runs
  of 3 (2026-11-26, jaxlib 0.10.2); with ``rnnlab.linalg.qr`` it takes 3 s.
  """
  code = textwrap.dedent(
    """
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_num_cpu_devices", 2)
    from jax.sharding import Mesh, PartitionSpec as P
    from rnnlab import linalg

    def block(x):
      return jax.vmap(lambda a: linalg.qr(a)[0])(x)

    mesh = Mesh(np.array(jax.devices()), ("d",))
    f = jax.jit(jax.shard_map(block, mesh=mesh, in_specs=P("d"), out_specs=P("d")))
    x = jax.random.normal(jax.random.key(0), (8, 128, 128))
    for _ in range(300):
      jax.block_until_ready(f(x))
    print("done")
    """
  )
  env = {**os.environ, "PYTHONPATH": ROOT, "JAX_PLATFORMS": "cpu"}
  out = subprocess.run(
    [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=240
  )
  assert out.returncode == 0 and out.stdout.strip() == "done", out.stderr[-2000:]
