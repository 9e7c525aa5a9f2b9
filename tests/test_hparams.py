"""Tests for traced hyper-parameters in rnnlab.train: hparams as {config path: value},
traced_fields (value fields vs program fields), their numbers against concrete configs,
grid's axes form, and tasks by import path.

Every run is a tiny model for a few steps; the compiled programs are shared through caches.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import cells, tasks
from rnnlab import train as rt

VALUE_FIELDS = (
  "optimizer.learning_rate",
  "model.gain",
  "clip",
  "optimizer.momentum",
  "optimizer.b1",
  "optimizer.b2",
  "optimizer.eps",
  "optimizer.rmsprop_decay",
  "optimizer.weight_decay",
  "optimizer.end_factor",
  "optimizer.decay_rate",
  "model.forget_bias",
  "model.dropout.input",
  "model.dropout.between",
  "model.dropout.output",
  "model.dropout.recurrent",
  "divergence.loss_factor",
  "floss.weight",
)
PROGRAM_FIELDS = (
  "model.hidden_size",
  "model.num_layers",
  "task.length",
  "batch_size",
  "num_steps",
  "eval.batch_size",
  "eval.num_batches",
  "eval.every",
  "diagnostics_every",
  "model.cell",
  "model.recurrent_init",
  "optimizer.name",
  "optimizer.schedule",
  "optimizer.nesterov",
  "task.name",
  "tbptt.k1",
  "tbptt.k2",
  "model.chrono_t_max",  # None in the default config
  "divergence.max_grad_norm",  # None in the default config
)


def tiny_config(optimizer="momentum", cell="lstm"):
  """LSTM(4) on adding at T=8, 4 steps of batches of 4: cheap to trace and to compile."""
  c = rt.default_config()
  c.task.length = 8
  c.model.cell = cell
  c.model.hidden_size = 4
  c.optimizer.name = optimizer
  c.optimizer.learning_rate = 0.05
  c.batch_size = 4
  c.num_steps = 4
  c.eval.batch_size = 8
  c.eval.num_batches = 1
  return c


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(np.testing.assert_array_equal, a, b)


def assert_trees_close(a, b, rtol=1e-6, atol=1e-7):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=rtol, atol=atol), a, b)


def with_values(config, values):
  """A copy of ``config`` holding ``values`` (``{path: value}``) as concrete Python values."""
  config = config.copy_and_resolve_references()
  for path, value in values.items():
    *parents, name = path.split(".")
    node = config
    for parent in parents:
      node = node[parent]
    node[name] = value
  return config


# ----------------------------------------------------------------------------- traced_fields


def test_traced_fields_tells_value_fields_from_program_fields():
  config = tiny_config()
  found = rt.traced_fields(config, VALUE_FIELDS + PROGRAM_FIELDS)
  assert list(found) == list(VALUE_FIELDS + PROGRAM_FIELDS)
  assert [p for p in VALUE_FIELDS if not found[p]] == []
  assert [p for p in PROGRAM_FIELDS if found[p]] == []
  # Set fields trace or not by how the code reads them, not by their name.
  config.tbptt.k1, config.tbptt.k2 = 2, 4
  config.divergence.max_grad_norm = 10.0
  config.optimizer.schedule, config.optimizer.warmup_steps = "warmup_cosine", 2
  found = rt.traced_fields(config, ["tbptt.k1", "tbptt.k2", "divergence.max_grad_norm"])
  assert found == {"tbptt.k1": False, "tbptt.k2": False, "divergence.max_grad_norm": True}
  assert rt.traced_fields(config, "optimizer.warmup_steps") == {"optimizer.warmup_steps": False}


def test_traced_fields_caches_per_config_and_path(monkeypatch):
  config = tiny_config()
  first = rt.traced_fields(config, ["optimizer.b2", "model.num_layers"])

  def no_tracing(*args, **kwargs):
    raise AssertionError("traced again")

  monkeypatch.setattr(jax, "eval_shape", no_tracing)
  assert rt.traced_fields(config, ["model.num_layers", "optimizer.b2"]) == {
    "model.num_layers": first["model.num_layers"],
    "optimizer.b2": first["optimizer.b2"],
  }
  config.model.hidden_size = 5  # another config: traced again
  with pytest.raises(AssertionError, match="traced again"):
    rt.traced_fields(config, ["optimizer.b2"])


def test_a_bug_is_raised_not_read_as_a_program_field():
  config = tiny_config()

  def broken_cell(hidden_size, *, gain):
    cell = cells.elman(hidden_size, gain=gain)

    def init(key, input_size, *, dtype=jnp.float32):
      return None + 1  # a TypeError that has nothing to do with tracing

    return cell._replace(init=init)

  with pytest.raises(TypeError, match="unsupported operand"):
    rt.traced_fields(config, ["model.gain"], cell=broken_cell)
  with pytest.raises(TypeError, match="unsupported operand"):
    rt.traced_fields(config, ["model.hidden_size"], cell=broken_cell)


def test_unknown_paths_name_the_nearest_field_in_one_line():
  config = tiny_config()
  with pytest.raises(
    ValueError, match=r"'optimizer.momentun' .* nearest field is 'optimizer.momentum'"
  ):
    rt.traced_fields(config, ["optimizer.momentun"])
  train = rt.make_train(config)
  with pytest.raises(ValueError, match=r"'model.forget_bais' .* 'model.forget_bias'") as info:
    train(jax.random.key(0), {"model.forget_bais": 1.0})
  assert "\n" not in str(info.value)


@pytest.mark.parametrize(
  ("values", "match"),
  [
    (
      {"model.hidden_size": 8},
      r"model.hidden_size cannot be given as values.* set it in the config",
    ),
    ({"num_steps": 3}, r"num_steps cannot be given"),
    ({"model.cell": 1.0}, r"config.model.cell='lstm' is not a number field"),
    ({"optimizer.nesterov": 1}, r"config.optimizer.nesterov=False is not a number field"),
    ({"model.num_layers": 1.5}, r"config.model.num_layers is an int field"),
    ({"optimizer.momentum": jnp.ones(2)}, r"hparams\['optimizer.momentum'\] has shape \(2,\)"),
  ],
)
def test_values_the_trainer_cannot_take_raise_one_line_errors(values, match):
  config = tiny_config()
  trainer = rt.make_trainer(config)
  for call in (
    lambda: rt.make_train(config)(jax.random.key(0), values),
    lambda: trainer.init(jax.random.key(0), values),
  ):
    with pytest.raises(ValueError, match=match) as info:
      call()
    assert "\n" not in str(info.value)


# ----------------------------------------------------------------------------- numbers


TRACED = {
  "optimizer.learning_rate": 0.03,
  "optimizer.momentum": 0.5,
  "model.forget_bias": 2.0,
  "model.gain": 0.8,
  "model.dropout.output": 0.25,
  "model.dropout.recurrent": 0.1,
  "divergence.loss_factor": 50.0,
}


def test_traced_values_give_the_run_of_the_config_holding_them():
  config = tiny_config()
  key = jax.random.key(1)
  traced = rt.make_train(config)(key, TRACED)
  concrete = rt.make_train(with_values(config, TRACED))(key)
  assert_trees_close(traced, concrete)
  # Vmapped members: each is the run of its own concrete config (to float rounding).
  members = [TRACED, {**TRACED, "optimizer.momentum": 0.9, "model.forget_bias": -1.0}]
  batch = {path: jnp.asarray([m[path] for m in members]) for path in TRACED}
  keys = jnp.stack([key, jax.random.key(2)])
  params, metrics = jax.jit(jax.vmap(rt.make_train(config)))(keys, batch)
  for i, values in enumerate(members):
    solo = rt.make_train(with_values(config, values))(keys[i])
    assert_trees_close(jax.tree.map(lambda leaf, i=i: leaf[i], (params, metrics)), solo, 1e-5)


@pytest.mark.parametrize(
  ("optimizer", "values"),
  [
    ("adam", {"optimizer.b1": 0.8, "optimizer.b2": 0.99, "optimizer.eps": 1e-6}),
    ("adamw", {"optimizer.weight_decay": 0.1, "optimizer.b1": 0.5}),
    ("rmsprop", {"optimizer.rmsprop_decay": 0.7, "model.dropout.input": 0.2}),
  ],
)
def test_optimizer_fields_traced_equal_concrete(optimizer, values):
  config = tiny_config(optimizer, "elman")
  config.optimizer.schedule = "exponential"
  values = {**values, "optimizer.decay_rate": 0.3}
  key = jax.random.key(4)
  traced = rt.make_train(config)(key, values)
  concrete = rt.make_train(with_values(config, values))(key)  # differs from config's run
  assert_trees_close(traced, concrete)


def test_hparams_of_the_three_classic_fields_are_bitwise_the_hparams_tuple():
  config = tiny_config("sgd", "elman")
  train = jax.jit(jax.vmap(rt.make_train(config)))
  keys = jax.random.split(jax.random.key(0), 3)
  hps = rt.HParams(
    jnp.asarray([0.01, 0.05, 0.2], jnp.float32),
    jnp.asarray([1.0, 0.6, 1.2], jnp.float32),
    jnp.asarray([0.0, 1.0, 0.05], jnp.float32),
  )
  as_dict = {path: getattr(hps, name) for name, path in rt.HPARAMS_PATHS.items()}
  assert_trees_equal(train(keys, hps), train(keys, as_dict))
  # Paths left out take the config's values: an empty dict is the default run, bitwise.
  solo = rt.make_train(config)
  assert_trees_equal(solo(keys[0]), solo(keys[0], {}))


def test_trainer_pieces_take_the_values():
  config = tiny_config("momentum", "elman")
  config.eval.every = 2
  trainer = rt.make_trainer(config)
  key = jax.random.key(3)
  values = {"optimizer.momentum": 0.3, "model.gain": 0.5}

  @jax.jit
  def chunked(key, values):
    state = trainer.init(key, values)
    state, first = trainer.run(state, key, values, jnp.arange(2))
    state, record = trainer.evaluate(state, key, 2, values)
    state, second = trainer.run(state, key, values, jnp.arange(2, 4))
    state, _ = trainer.evaluate(state, key, 4, values)
    return (
      state.params,
      first["loss"],
      second["loss"],
      record["loss"],
      trainer.finish(state, key, values),
    )

  params, first, second, evaluation, finished = chunked(key, values)
  whole_params, metrics = rt.make_train(with_values(config, values))(key)
  assert_trees_close(params, whole_params)
  np.testing.assert_allclose(np.concatenate([first, second]), metrics["loss"], rtol=1e-6)
  np.testing.assert_allclose(evaluation, metrics["evals"]["loss"][0], rtol=1e-6)
  np.testing.assert_allclose(finished["eval_loss"], metrics["eval_loss"], rtol=1e-6)


# ----------------------------------------------------------------------------- grid


def test_grid_sweeps_any_value_field_by_path():
  config = tiny_config()
  keys, hps, labels = rt.grid(
    config, seeds=(3, 5), axes={"optimizer.momentum": (0.5, 0.9), "model.forget_bias": 0.0}
  )
  assert [tuple(m.values()) for m in labels] == [
    (0.5, 0.0, 3),
    (0.5, 0.0, 5),
    (0.9, 0.0, 3),
    (0.9, 0.0, 5),
  ]
  assert set(hps) == {"optimizer.momentum", "model.forget_bias"}
  assert all(v.shape == (4,) and v.dtype == jnp.float32 for v in hps.values())
  np.testing.assert_array_equal(
    jax.random.key_data(keys[1]), jax.random.key_data(jax.random.key(5))
  )
  for axes, match in (
    ({"model.hidden_size": (4, 8)}, "model.hidden_size changes the program"),
    ({"optimizer.momentum": (0.5, -1.0)}, r"config.optimizer.momentum=-1.0 is invalid"),
    ({"optimizer.momentun": (0.5,)}, r"nearest field is 'optimizer.momentum'"),
    ({"clip": (None, 1.0)}, r"grid: clip value None is invalid; expected a number"),
  ):
    with pytest.raises(ValueError, match=match) as info:
      rt.grid(config, axes=axes)
    assert "\n" not in str(info.value)
  with pytest.raises(ValueError, match="either axes= or"):
    rt.grid(config, axes={"clip": (1.0,)}, clip=1.0)


# ----------------------------------------------------------------------------- tasks by path


def renamed_adding(length, **kwargs):
  """A task factory of one's own: the adding problem under another name."""
  return tasks.get("adding", length, **kwargs)._replace(name="my_adding")


def not_a_task(length):
  return length


@functools.cache
def own_task_runs():
  key = jax.random.key(2)
  config = tiny_config("sgd", "elman")
  builtin = rt.make_train(config)(key)
  config.task.name = f"{__name__}:renamed_adding"
  return builtin, rt.make_train(config)(key), rt.make_trainer(config).task


def test_a_task_of_ones_own_by_import_path():
  builtin, own, task = own_task_runs()
  assert task.name == "my_adding"
  assert_trees_equal(builtin, own)


def test_a_task_path_that_cannot_be_made_is_one_line():
  config = tiny_config()
  for name, match in (
    ("no_such_module:task", r"config\.task\.name='no_such_module:task' is invalid.*import path"),
    (f"{__name__}:no_such_factory", "AttributeError"),
    ("addding", r"config\.task\.name='addding' is invalid; expected a task of"),
  ):
    config.task.name = name
    with pytest.raises(ValueError, match=match) as info:
      rt.check_config(config)
    assert "\n" not in str(info.value)
  config.task.name = f"{__name__}:not_a_task"
  with pytest.raises(ValueError, match="returned int; expected an rnnlab.tasks.Task"):
    rt.make_train(config)


def test_an_own_task_object_fixes_the_task_fields():
  config = tiny_config()
  task = renamed_adding(config.task.length)
  assert rt.traced_fields(config, ["task.length", "clip"], task=task) == {
    "task.length": False,
    "clip": True,
  }
  with pytest.raises(ValueError, match="the trainer has its own task"):
    rt.make_trainer(config, task=task).init(jax.random.key(0), {"task.length": 4})
