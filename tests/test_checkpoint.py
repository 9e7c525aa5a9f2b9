"""Tests for rnnlab.checkpoint: bitwise round trips of params and train states (optimizer
state included, NamedTuples and dtypes kept), training resumed from a loaded state, errors.

One tiny trainer (GRU(4) on adding at T=10, Adam) is compiled once for the module.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import train as rt

CHUNK = 3  # updates per chunk; the uninterrupted run does 2 * CHUNK


def tiny_config():
  c = rt.default_config()
  c.task.length = 10
  c.model.cell = "gru"
  c.model.hidden_size = 4
  c.batch_size = 4
  c.num_steps = 2 * CHUNK
  c.eval.num_batches = 0
  return c


@functools.cache
def trainer():
  t = rt.make_trainer(tiny_config())
  return t, jax.jit(t.init), jax.jit(t.run)


def steps(start, stop):
  return jnp.arange(start, stop, dtype=jnp.int32)


@functools.cache
def mid_state():
  """The state after CHUNK updates (Adam's moments and count are non-trivial)."""
  _, init, run = trainer()
  key = jax.random.key(0)
  return run(init(key), key, None, steps(0, CHUNK))[0]


def assert_bitwise(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert type(x) is type(y), (type(x), type(y))
    assert x.dtype == y.dtype and x.shape == y.shape
    assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_train_state_round_trip_is_bitwise_with_its_types(tmp_path):
  state = mid_state()
  assert int(state.opt_state[1].count) == CHUNK  # the optimizer state has moved
  path = rnnlab.save(tmp_path / "state", state)
  assert_bitwise(rnnlab.load(path, like=state), state)
  # Shapes suffice as the template; the result is the same.
  assert_bitwise(rnnlab.load(path, like=jax.eval_shape(lambda: state)), state)


def test_mixed_dtypes_and_numpy_leaves_round_trip_bitwise(tmp_path):
  tree = {
    "params": rnnlab.lstm(3).init(jax.random.key(1), 2, dtype=jnp.bfloat16),
    "step": jnp.asarray(7, jnp.int32),
    "mask": jnp.asarray([True, False, True]),
    "host": np.linspace(0, 1, 5),  # float64 stays NumPy float64
    "nan": jnp.asarray([jnp.nan, -0.0, jnp.inf]),
    "nothing": None,
    "empty": (),
  }
  rnnlab.save(tmp_path / "tree", tree)
  restored = rnnlab.load(tmp_path / "tree", like=tree)
  assert_bitwise(restored, tree)
  assert isinstance(restored["params"], rnnlab.LSTMParams)
  assert restored["nothing"] is None and restored["empty"] == ()
  # Without a template: orbax's nested dicts, same values.
  raw = rnnlab.load(tmp_path / "tree")
  assert isinstance(raw["params"], dict)
  np.testing.assert_array_equal(raw["params"]["w_hh"], tree["params"].w_hh)


def test_training_resumed_from_a_loaded_state_equals_uninterrupted_training(tmp_path):
  _, init, run = trainer()
  key = jax.random.key(0)
  whole, records = run(init(key), key, None, steps(0, 2 * CHUNK))
  rnnlab.save(tmp_path / "mid", mid_state())
  like = jax.eval_shape(init, key)  # a fresh process knows only the shapes
  resumed, later = run(rnnlab.load(tmp_path / "mid", like=like), key, None, steps(CHUNK, 2 * CHUNK))
  assert_bitwise(resumed, whole)
  assert_bitwise(later, jax.tree.map(lambda r: r[CHUNK:], records))


def test_errors_are_one_line_and_name_what_differs(tmp_path):
  state = mid_state()
  path = rnnlab.save(tmp_path / "state", state)
  errors = []
  with pytest.raises(FileNotFoundError, match="no checkpoint at .*missing") as info:
    rnnlab.load(tmp_path / "missing", like=state)
  errors.append(info)
  (tmp_path / "folder").mkdir()
  with pytest.raises(ValueError, match="is not a checkpoint rnnlab.save wrote") as info:
    rnnlab.load(tmp_path / "folder", like=state)
  errors.append(info)
  with pytest.raises(FileExistsError, match="overwrite=True") as info:
    rnnlab.save(path, state)
  errors.append(info)
  wider = rt.make_model(wider_config()).init(jax.random.key(0))
  with pytest.raises(
    ValueError, match=r"params.encoder.0.w_hh has shape \(4, 12\) \(like: \(5, 15\)\)"
  ) as info:
    rnnlab.load(path, like=state._replace(params=wider))
  errors.append(info)
  recast = state._replace(initial_loss=state.initial_loss.astype(jnp.bfloat16))
  with pytest.raises(
    ValueError, match=r"initial_loss has dtype float32 \(like: bfloat16\)"
  ) as info:
    rnnlab.load(path, like=recast)
  errors.append(info)
  with pytest.raises(ValueError, match="extra is not in the checkpoint") as info:
    rnnlab.load(path, like={"extra": jnp.zeros(2)})
  errors.append(info)
  with pytest.raises(TypeError, match="typed PRNG key; save jax.random.key_data") as info:
    rnnlab.save(tmp_path / "key", {"key": jax.random.key(0)})
  errors.append(info)
  assert all("\n" not in str(e.value) for e in errors)
  # Overwriting on request replaces the contents.
  rnnlab.save(path, state._replace(diverged_at=jnp.asarray(2, jnp.int32)), overwrite=True)
  assert int(rnnlab.load(path, like=state).diverged_at) == 2


def wider_config():
  c = tiny_config()
  c.model.hidden_size = 5
  return c
