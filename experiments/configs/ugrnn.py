r"""A cell of one's own against the LSTM: the UGRNN (Collins et al. 2017) over hidden size.

The cell is ``experiments/cells/ugrnn.py``, a plain :class:`rnnlab.Cell` in its own
file, named in the config by its import path. Both cells train on the adding
problem at T = 50 at two hidden sizes, a few seeds each; the summary has one column
per swept field (``model.cell``, ``model.hidden_size``), the report draws the
success rate against the hidden size per cell.

    python -m experiments.run --config=experiments/configs/ugrnn.py:quick --workdir=/tmp/ugrnn
    python -m experiments.run --config=experiments/configs/ugrnn.py --workdir=runs/ugrnn
    python -m experiments.run --config=experiments/configs/ugrnn.py:model.hidden_size=16+32+64 \
      --workdir=runs/ugrnn_h

Presets: ``quick`` (CI: tiny, under a minute on 2 CPU cores) and ``default`` (a few
minutes on 2 CPU cores). The argument after ``:`` also takes shortcuts, as every
experiment file's (:func:`rnnlab.runner.config.parse_arg`).
"""

from __future__ import annotations

import ml_collections

from rnnlab.runner import config as runner_config

PRESETS = ("quick", "default")
UGRNN = "experiments.cells.ugrnn:ugrnn"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config for ``arg`` (``"[preset][,key=value...]"``)."""
  preset, shortcuts = runner_config.parse_arg(arg, PRESETS)
  config = runner_config.experiment_config()
  config.preset = preset

  config.task.name = "adding"  # the adding problem (baseline MSE 1/6)
  config.task.length = 50  # T
  config.optimizer.learning_rate = 3e-3  # Adam
  config.num_steps = 1000  # updates per run
  config.sweep.axes = {
    "model.cell": ("lstm", UGRNN),
    "model.hidden_size": (16, 32),
  }  # the built-in LSTM and the cell of one's own, at two sizes
  config.sweep.seeds = 3  # seeds per (cell, hidden size)
  config.report.success_x = "model.hidden_size"  # success rate against the hidden size
  config.report.group_by = "model.cell"  # a line per cell

  if preset == "quick":
    runner_config.quick_settings(config, num_steps=40, hidden_size=None)
    config.task.length = 10
    config.sweep.axes = {**config.sweep.axes, "model.hidden_size": (4, 8)}

  runner_config.apply_shortcuts(config, shortcuts)
  return config
