r"""The flagship sweep: how gradients vanish or explode in the tanh RNN, the LSTM and the GRU.

Trains the three cells on a long-dependency task as the dependency length T
grows, with and without gradient clipping, over several seeds, and measures
``||dL/dh_t||`` against the lag at initialisation and after training, the
recurrent spectrum, the largest Lyapunov exponent and, without training, how
the gradient's decay rate moves as the recurrent gain sweeps across the
Pascanu threshold.

    python -m experiments.run --workdir=runs/vanishing                      # default preset
    python -m experiments.run --config=experiments/configs/vanishing.py:quick --workdir=/tmp/q
    python -m experiments.run --config=experiments/configs/vanishing.py:cell=lstm,T=200 \
      --config.optimizer.learning_rate=3e-4 --workdir=runs/x

An experiment config (:func:`rnnlab.runner.config.experiment_config`): the
training config's fields, each the default of every member, and the runner's
``sweep``, ``diagnostics``, ``run`` and ``report`` sections. The sweep's axes
are the cell, the dependency length T and the clipping threshold; the gain
scan is on.

The argument after ``:`` is a comma-separated list: at most one preset name
(``quick``, ``default``, ``paper``) and ``key=value`` shortcuts for the sweep's
axes (``cell``, ``T``, ``gain``, ``lr``, ``clip`` or any dotted field such as
``model.hidden_size``: one value or several joined by ``+``, e.g.
``cell=lstm+gru,T=50+100``; ``seeds``: a count; ``task``: a task name). Any field
can also be set with ``--config.<field>=<value>``, the axes as a dict
(``--config.sweep.axes="{'model.cell': ('lstm',), 'model.hidden_size': (16, 32)}"``);
the fields whose comment gives None a meaning also take ``None``.

Presets:

* ``quick``: CI smoke test, under a minute on 2 CPU cores: tiny models, short T.
* ``default``: the flagship comparison, under 10 minutes on 2 CPU cores: the
  adding problem (Le 2015 / Arjovsky 2016, baseline 1/6) at T = 10..80, three
  cells, clipping on and off, five seeds.
* ``paper``: the grids of Arjovsky et al. 2016 (adding, 128 units, RMSProp 1e-3,
  clip 1, T = 100..750) and Pascanu et al. 2013 (50 units, T = 50..200); hours.
"""

from __future__ import annotations

import ml_collections

from rnnlab.runner import config as runner_config

PRESETS = ("quick", "default", "paper")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config for ``arg`` (``"[preset][,key=value...]"``; see the module doc)."""
  preset, shortcuts = runner_config.parse_arg(arg, PRESETS)
  config = runner_config.experiment_config()
  config.preset = preset  # the preset that filled the defaults: quick | default | paper

  config.task.name = "adding"  # the adding problem (Le 2015 / Arjovsky 2016, baseline 1/6)
  config.model.hidden_size = 32  # H, units per layer (every cell gets the same H)
  config.optimizer.learning_rate = 2e-3  # peak learning rate
  config.num_steps = 1200  # parameter updates per run

  config.sweep.axes = {
    "model.cell": ("elman", "lstm", "gru"),
    "task.length": (10, 20, 40, 80),
    "clip": (0.0, 1.0),
  }  # the cells, the dependency lengths T, the clipping thresholds (0: off)
  config.sweep.seeds = 5  # seeds per grid point
  config.diagnostics.gain_scan = (0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0)  # gains of
  # the untrained decay-versus-gain scan of each cell, across the Pascanu threshold g = 1

  if preset == "quick":
    runner_config.quick_settings(config)
    config.sweep.axes = {**config.sweep.axes, "task.length": (5, 10)}
    config.diagnostics.gain_scan = (0.5, 0.9, 1.1, 2.0)
    config.diagnostics.gain_scan_seeds = 1
  elif preset == "paper":
    runner_config.paper_settings(config)
    config.eval.num_batches = 40
    config.sweep.axes = {**config.sweep.axes, "task.length": (50, 100, 200, 400, 750)}
    config.diagnostics.batch_size = 64

  runner_config.apply_shortcuts(config, shortcuts)
  return config
