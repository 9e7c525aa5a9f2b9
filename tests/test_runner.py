"""The runner's engine in-process: any field swept, axes classified, one's own cell and task.

The sweeps here run in the test process (``rnnlab.runner.run.run``, on the
devices this process has), tiny, and are checked against solo
:func:`rnnlab.train.make_train` runs of each member's own settings.
"""

from __future__ import annotations

import copy
import math
import os
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnlab
from rnnlab import tasks as tasks_lib
from rnnlab import train as train_lib
from rnnlab.runner import config as config_lib
from rnnlab.runner import devices as devices_lib
from rnnlab.runner import grid as grid_lib
from rnnlab.runner import programs as programs_lib
from rnnlab.runner import run as run_lib
from rnnlab.runner import tables as tables_lib

HERE = os.path.splitext(os.path.basename(__file__))[0]  # this module, as an import path


# --------------------------------------------------------------------------
# A cell and a task of one's own, as a researcher writes them.
# --------------------------------------------------------------------------


class LeakyParams(NamedTuple):
  w_ih: jax.Array
  w_hh: jax.Array
  b: jax.Array


def leaky_cell(hidden_size, recurrent_init="orthogonal", gain=1.0):
  """A leaky tanh RNN, h' = 0.5 h + 0.5 tanh(x W_ih + h W_hh + b), without CellParts."""
  H = hidden_size
  schemes = {
    "orthogonal": rnnlab.linalg.orthogonal(),
    "identity": lambda key, shape, dtype: jnp.eye(shape[0], dtype=dtype),
  }

  def init(key, input_size, *, dtype=jnp.float32):
    k_ih, k_hh = jax.random.split(key)
    return LeakyParams(
      w_ih=jax.random.normal(k_ih, (input_size, H), dtype) / math.sqrt(input_size),
      w_hh=gain * schemes[recurrent_init](k_hh, (H, H), dtype),
      b=jnp.zeros(H, dtype),
    )

  def initial_carry(params, batch_shape=()):
    return jnp.zeros((*batch_shape, H), params.w_hh.dtype)

  def step(params, h, x):
    h = 0.5 * h + 0.5 * jnp.tanh(x @ params.w_ih + h @ params.w_hh + params.b)
    return h, h

  return rnnlab.Cell(init, initial_carry, step, "leaky")


def short_adding(length, **kwargs):
  """A task of one's own: the adding problem under another name."""
  return tasks_lib.get("adding", length, **kwargs)


def tiny(**axes) -> object:
  """A tiny experiment config over ``axes`` (dotted paths given with ``__`` for ``.``)."""
  config = config_lib.experiment_config()
  with config.unlocked():
    config.task.length = 6
    config.model.hidden_size = 4
    config.num_steps = 12
    config.batch_size = 8
    config.eval.batch_size = 16
    config.eval.num_batches = 1
    config.report.solve_window = 4
    config.diagnostics.batch_size = 4
    config.diagnostics.phases = ("trained",)
    config.run.chunk_steps = 12
    config.run.checkpoint_seconds = 1e9
    config.run.compile_threads = 0
    config.run.plots = False
    config.sweep.axes = {k.replace("__", "."): v for k, v in axes.items()}
  return config


def solo(config, member) -> float:
  """The member's final held-out loss from a solo ``make_train`` run of its own settings."""
  tc = grid_lib.member_config(config, member)
  _, metrics = train_lib.make_train(tc)(jax.random.key(member.seed))
  return float(metrics["eval_loss"])


def run_sweep(config, tmp_path):
  config = config_lib.resolve(config)
  plan = grid_lib.plan(config)
  run_lib.run(config, str(tmp_path), plan=plan, write=lambda line: None)
  return config, plan, tables_lib.read_table(os.path.join(tmp_path, tables_lib.SUMMARY))


# --------------------------------------------------------------------------
# The tests.
# --------------------------------------------------------------------------


def test_own_cell_and_task_swept_with_lstm_equal_solo_runs(tmp_path):
  config = tiny(
    model__cell=("lstm", f"{HERE}:leaky_cell"),
    model__hidden_size=(3, 5),
    model__recurrent_init=("orthogonal", "identity"),
  )
  with config.unlocked():
    config.task.name = f"{HERE}:short_adding"
  config, plan, summary = run_sweep(config, tmp_path)

  axes = ["model.cell", "model.hidden_size", "model.recurrent_init"]
  assert plan.program_axes == tuple(axes) and plan.value_axes == ()
  assert len(plan.groups) == 8 and len(plan.members) == 8
  assert list(summary) == list(tables_lib.summary_columns(axes))
  rows = {(c, h, r) for c, h, r in zip(*(summary[a] for a in axes), strict=True)}
  assert rows == {
    (c, h, r)
    for c in ("lstm", f"{HERE}:leaky_cell")
    for h in (3, 5)
    for r in ("orthogonal", "identity")
  }
  assert list(summary["cell"]) == list(summary["model.cell"]) and set(summary["T"]) == {6}
  assert list(summary["member"]) == [m.index for m in plan.members]  # rows in member order
  for i, member in enumerate(plan.members):
    np.testing.assert_allclose(summary["final_loss"][i], solo(config, member), rtol=2e-5)
  # The leaky cell has no CellParts: the diagnostics that need them are n/a, the rest measured.
  own = summary["model.cell"] == f"{HERE}:leaky_cell"
  assert np.all(np.isnan(summary["decay_rate"][own]) & np.isnan(summary["spectral_radius"][own]))
  assert np.all(np.isfinite(summary["lyapunov"][own]))
  assert np.all(np.isfinite(summary["decay_rate"][~own]))
  assert np.all(np.isnan(summary["decay_rate_init"]))  # diagnostics.phases = ("trained",)


def test_a_vmapped_and_a_looped_axis_are_classified_and_run(tmp_path):
  config = tiny(optimizer__momentum=(0.0, 0.9), model__num_layers=(1, 2))
  with config.unlocked():
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.diagnostics.phases = ()
    config.eval.every = 6  # the runner evaluates inside its chunks as make_train does
    config.eval.stop_when_solved = True
  before = len(programs_lib._PROGRAMS)
  config, plan, summary = run_sweep(config, tmp_path)
  assert plan.value_axes == ("optimizer.momentum",)
  assert plan.program_axes == ("model.num_layers",)
  assert len(plan.groups) == 2  # one compiled program per number of layers
  assert len(programs_lib._PROGRAMS) - before == 2
  for group in plan.groups:
    assert "optimizer.momentum" in group.traced and len(group.members) == 2
  # Members (momentum, layers): (0, 1) (0, 2) (0.9, 1) (0.9, 2); groups by layers interleave.
  assert [m.index for m in plan.groups[0].members] == [0, 2]
  assert list(summary["member"]) == [0, 1, 2, 3]  # rows in member order all the same
  for i, member in enumerate(plan.members):
    np.testing.assert_allclose(summary["final_loss"][i], solo(config, member), rtol=2e-5)
  assert summary["final_loss"][0] != summary["final_loss"][2]  # the momentum did change things


def test_zip_mode_pairs_the_values_and_grid_mode_crosses_them():
  axes = dict(model__hidden_size=(3, 5), optimizer__learning_rate=(1e-3, 1e-2))
  config = tiny(**axes)
  with config.unlocked():
    config.sweep.mode = "zip"
    config.sweep.seeds = 2
  plan = grid_lib.plan(config_lib.resolve(config))
  assert [(m.values, m.seed) for m in plan.members] == [
    ((3, 1e-3), 0),
    ((3, 1e-3), 1),
    ((5, 1e-2), 0),
    ((5, 1e-2), 1),
  ]
  assert plan.value_axes == ("optimizer.learning_rate",)
  assert [g.name for g in plan.groups] == ["H3", "H5"]
  with config.unlocked():
    config.sweep.mode = "grid"
  plan = grid_lib.plan(config_lib.resolve(config))
  assert len(plan.members) == 8 and len(plan.groups) == 2
  with config.unlocked():
    config.sweep.mode = "zip"
    config.sweep.axes = {"model.hidden_size": (3, 5), "optimizer.learning_rate": (1e-3,)}
  with pytest.raises(ValueError, match="axes of equal lengths in zip mode"):
    config_lib.resolve(config)


def test_padding_never_doubles_the_work_and_keeps_the_block_a_members_numbers_depend_on():
  # The case: 2 seeds on 2 devices ran 4 members; now one block of 2.
  assert devices_lib.layout(2, 2, 2) == devices_lib.Layout(2, 1, 2)
  assert devices_lib.layout(2, 2, 2).padded == 0
  for size in range(1, 41):
    for devices in range(1, 9):
      for block in range(1, 5):
        layout = devices_lib.layout(size, devices, block)
        assert layout.padded < size, layout  # less than twice the work
        assert layout.devices <= devices and layout.block <= block
        if size <= block:  # one block on one device, on every host
          assert (layout.devices, layout.block, layout.padded) == (1, size, 0), layout
        else:  # the block a member's numbers depend on, whatever the devices
          assert layout.block == block and (layout.devices > 1 or devices == 1), layout
        if layout.waves == 1:
          assert layout.padded < block, layout
        # Several processes: every device in every wave.
        spread = devices_lib.layout(size, devices, block, shrink=False)
        assert spread.devices == devices and spread.padded < max(size, devices), spread
  # The tiny sweep of the shard test (6 members, a gain scan of 3): the same block on 2 and 4.
  for size in (6, 3):
    assert devices_lib.layout(size, 2, 2).block == devices_lib.layout(size, 4, 2).block == 2


def test_the_axes_take_any_training_field_and_refuse_others_in_one_line():
  config = tiny(model__hidden_size=(3, 5))
  config_lib.resolve(config)
  cases = [
    ({"model.hiden_size": (3,)}, "did you mean 'model.hidden_size'?"),
    ({"run.devices": (1, 2)}, "'run.devices' is a field of the runner"),
    ({"model": (1,)}, "'model' is a section of the config"),
    ({"model.hidden_size": (3, 3)}, "distinct values"),
    ({"model.hidden_size": (3.5,)}, "expected a value of type int"),
    ({"model.hidden_size": (0,)}, "config.model.hidden_size=0 is invalid"),
    ({"optimizer.learning_rate": (float("nan"),)}, "finite numbers"),
  ]
  for axes, message in cases:
    with config.unlocked():
      config.sweep.axes = axes
    with pytest.raises(ValueError, match=None) as error:
      config_lib.resolve(config)
    assert message in str(error.value) and "\n" not in str(error.value), (axes, error.value)


def test_the_report_settings_name_fields_and_sections_or_fail_in_one_line():
  config = tiny(model__hidden_size=(3, 5))
  good = [
    ("group_by", "model.hidden_size+optimizer.learning_rate"),
    ("group_by", "model.num_layers"),  # a field not swept: the report notes it
    ("success_x", "T"),
    ("order", ("success_rate", "clipping")),
  ]
  bad = [
    ("group_by", "model.hidden_size+model.hiden_size", "did you mean 'model.hidden_size'?"),
    ("success_x", "run.devices", "'run.devices' is a field of the runner"),
    ("order", ("success",), "config.report.order=('success',) is invalid"),
    ("order", ("clipping", "clipping"), "a tuple of distinct names"),
  ]
  for field, value in good:
    c = copy.deepcopy(config)
    c.report[field] = value
    config_lib.resolve(c)
  for field, value, message in bad:
    c = copy.deepcopy(config)
    c.report[field] = value
    with pytest.raises(ValueError, match=None) as error:
      config_lib.resolve(c)
    assert message in str(error.value) and "\n" not in str(error.value), (field, error.value)


def test_shortcuts_are_sugar_for_axes():
  config = config_lib.experiment_config()
  _, shortcuts = config_lib.parse_arg(
    "quick,cell=lstm+gru,T=5,lr=0.1,model.hidden_size=4+8", ("quick",)
  )
  config_lib.apply_shortcuts(config, shortcuts)
  assert config.sweep.axes == {
    "model.cell": ("lstm", "gru"),
    "task.length": (5,),
    "optimizer.learning_rate": (0.1,),
    "model.hidden_size": (4, 8),
  }
  _, shortcuts = config_lib.parse_arg("seeds=3,task=copy,clip=0+1", ())
  config_lib.apply_shortcuts(config, shortcuts)
  assert config.sweep.seeds == 3 and config.task.name == "copy"
  assert config.sweep.axes["clip"] == (0.0, 1.0)
