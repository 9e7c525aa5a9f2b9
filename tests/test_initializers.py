"""Tests for rnnlab.initializers: each scheme's defining property, name resolution, dtypes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import initializers as inits

KEY = jax.random.key(0)


@pytest.mark.parametrize("gain", [0.5, 1.0, 1.3])
def test_orthogonal_singular_values_equal_the_gain(gain):
  w = np.asarray(inits.orthogonal(gain)(KEY, (16, 16)), np.float64)
  np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), gain, rtol=1e-5)
  wide = np.asarray(inits.orthogonal(gain)(KEY, (4, 12)), np.float64)
  np.testing.assert_allclose(wide @ wide.T, gain**2 * np.eye(4), atol=1e-5)


def test_gaussian_has_variance_gain_squared_over_n_and_spectral_radius_about_gain():
  gain, n = 1.5, 256
  w = np.asarray(inits.gaussian(gain)(KEY, (n, n)), np.float64)
  np.testing.assert_allclose(w.std(), gain / np.sqrt(n), rtol=0.02)
  np.testing.assert_allclose(np.abs(np.linalg.eigvals(w)).max(), gain, rtol=0.1)


def test_identity_and_its_shape_check():
  np.testing.assert_array_equal(inits.identity(0.7)(KEY, (3, 3)), 0.7 * np.eye(3, dtype=np.float32))
  with pytest.raises(ValueError, match=r"square \(H, H\) shape; got \(3, 4\)"):
    inits.identity()(KEY, (3, 4))


def test_uniform_bound_and_spread():
  w = np.asarray(inits.uniform(0.25)(KEY, (64, 64)))
  assert np.abs(w).max() <= 0.25
  assert np.abs(w).max() > 0.24  # fills the interval, not a narrower one


def test_chrono_range_and_validation():
  b = np.asarray(inits.chrono(40.0)(KEY, (2000,)))
  assert b.min() >= 0.0 and b.max() <= np.log(39.0) + 1e-6
  # log U[1, 39]: the median is log(20).
  np.testing.assert_allclose(np.median(b), np.log(20.0), atol=0.1)
  with pytest.raises(ValueError, match="t_max > 2"):
    inits.chrono(2.0)


def test_zeros():
  assert not np.any(np.asarray(inits.zeros(KEY, (3, 2))))


def test_names_resolve_with_hidden_size_and_gain():
  w = np.asarray(inits.recurrent("orthogonal", 8, gain=2.0)(KEY, (8, 8)), np.float64)
  np.testing.assert_allclose(np.linalg.svd(w, compute_uv=False), 2.0, rtol=1e-5)
  u = np.asarray(inits.recurrent("uniform", 16, gain=1.0)(KEY, (16, 16)))
  assert np.abs(u).max() <= 0.25  # PyTorch: 1 / sqrt(H)
  v = np.asarray(inits.input_weights("uniform", 100)(KEY, (3, 100)))
  assert np.abs(v).max() <= 0.1  # bound from the hidden size, not the fan-in of 3
  g = np.asarray(inits.input_weights("glorot_uniform", 8)(KEY, (40, 60)))
  assert np.abs(g).max() <= np.sqrt(6 / 100)
  assert not np.any(np.asarray(inits.bias("zeros", 8)(KEY, (8,))))


def test_callables_pass_through_and_unknown_names_list_the_known_ones():
  def mine(key, shape, dtype=jnp.float32):
    return jnp.full(shape, 3.0, dtype)

  assert inits.recurrent(mine, 4) is mine
  assert inits.input_weights(mine, 4) is mine
  assert inits.bias(mine, 4) is mine
  with pytest.raises(ValueError, match=r"recurrent_init='xavier' .* \('orthogonal', 'gaussian'"):
    inits.recurrent("xavier", 4)
  with pytest.raises(ValueError, match=r"input_init='he' .*'lecun_normal'"):
    inits.input_weights("he", 4)
  with pytest.raises(ValueError, match=r"bias_init='ones' .* \('zeros', 'uniform'\)"):
    inits.bias("ones", 4)


@pytest.mark.parametrize(
  "init", [inits.orthogonal(0.9), inits.gaussian(1.1), inits.identity(1.0), inits.uniform(0.3)]
)
def test_dtypes(init):
  w = init(KEY, (6, 6), jnp.bfloat16)
  assert w.dtype == jnp.bfloat16 and bool(jnp.all(jnp.isfinite(w)))
  with jax.enable_x64(True):
    w64 = init(KEY, (6, 6), jnp.float64)
    assert w64.dtype == jnp.float64 and bool(jnp.all(jnp.isfinite(w64)))
    assert float(jnp.abs(w64).max()) > 0


def test_per_gate_blocks_are_drawn_separately():
  w = np.asarray(inits.per_gate(inits.orthogonal(1.0), KEY, 5, 5, 4, jnp.float32), np.float64)
  assert w.shape == (5, 20)
  blocks = np.split(w, 4, axis=1)
  for block in blocks:
    np.testing.assert_allclose(block.T @ block, np.eye(5), atol=1e-5)
  assert not np.allclose(blocks[0], blocks[1])
