r"""Initialisation ablation: does the recurrent initialisation decide how long a dependency each cell learns?

The question. Four schemes for the recurrent weights ``W_hh`` (and, for chrono,
the gate biases), each on the Elman RNN, the LSTM and the GRU, on the adding
problem as the dependency length T grows (Le et al. 2015 / Arjovsky et al. 2016
variant: values U[0, 1], one marker in each half, target X1 + X2; trivial
baseline MSE 1/6 by predicting 1; solved: held-out MSE below a tenth of it):

==========  =========================================================  ==========================
scheme      what it sets (``config.model``)                            reference
==========  =========================================================  ==========================
orthogonal  ``recurrent_init="orthogonal"``: ``W_hh = Q``, every        Saxe et al. 2014;
            singular value 1                                           Henaff et al. 2016
gaussian    ``recurrent_init="gaussian"``: ``N(0, 1/H)``, spectral      the classic default
            radius about 1, largest singular value about 2
identity    ``recurrent_init="identity"``: ``W_hh = I``; with the       Le et al. 2015 (IRNN)
            Elman cell's ReLU this is the IRNN
chrono      gated cells only: ``recurrent_init="orthogonal"`` and      Tallec & Ollivier 2018
            ``chrono_t_max=T_max``: forget (LSTM) / update (GRU) gate
            biases ``log U[1, T_max - 1]``, T_max the longest sequence
==========  =========================================================  ==========================

Everything else is the same for every run: 32 units, Adam at 1e-3, clipping at
1, batch 32, 1200 updates, the LSTM's forget-gate bias 1 where chrono is off.
The Elman cell is the ReLU RNN (``model.nonlinearity="relu"``; the gated cells
ignore the field) under every scheme, so its three rows differ by ``W_hh``
alone: the IRNN against the ReLU RNN with an orthogonal or a Gaussian matrix,
Le et al.'s own control (``model.nonlinearity=tanh`` on the command line gives
the tanh RNN instead). Gated cells get ``W_hh``'s scheme in each gate's block.

What the literature expects. Le et al. 2015: the IRNN learns the adding problem
at T where the ReLU RNN with a Gaussian init does not, about as well as the LSTM;
Arjovsky et al. 2016 saw it fail under RMSProp, so the IRNN is sensitive to the
optimizer. Orthogonal matrices keep the linear part's gradient norm (every
singular value 1) where a Gaussian one (singular values up to about 2, most
below 1) lets it decay or blow up. The gates make the LSTM and the GRU far less
sensitive to ``W_hh``; chrono initialisation gives the LSTM and the GRU memory
time constants up to T_max from the first step and helps most at the longest T
(Tallec & Ollivier 2018). At initialisation, ``||dL/dh_t||`` against the lag
(the report's first figure) shows each scheme's gradient flow before any
training: the identity's is the flattest.

Axes (zip mode: the rows are cell x T x scheme, where a scheme may set several
fields; see :mod:`experiments.configs.linked`): ``model.cell``,
``task.length``, ``model.recurrent_init``, ``model.chrono_t_max``; seeds per
row. The report draws the success rate against T, a colour per scheme
(``report.group_by = "model.recurrent_init+model.chrono_t_max"``: chrono, which
is orthogonal ``W_hh`` with ``chrono_t_max`` set, is a line of its own) and a
line style per cell; its figures show the Elman cell where they fix one (its
gradient norm against the lag for each scheme), and the tables give every row.

    python -m experiments.run --config=experiments/configs/init_ablation.py --workdir=runs/init
    python -m experiments.run --config=experiments/configs/init_ablation.py:quick --workdir=/tmp/q
    python -m experiments.run --config=experiments/configs/init_ablation.py:cell=lstm+gru,T=100+200,scheme=orthogonal+chrono,seeds=5 --workdir=runs/chrono
    python -m experiments.run --config=experiments/configs/init_ablation.py:task=copy,T=10+20 --workdir=runs/init_copy

The argument after ``:``: at most one preset, then ``cell=`` (cells joined by
``+``), ``T=`` (dependency lengths), ``scheme=`` (of :data:`SCHEMES`), and any
other field with one value (``seeds=8``, ``task=copy``, ``model.hidden_size=48``,
``optimizer.learning_rate=3e-4``); ``--config.<field>=`` works as everywhere.

Presets:

* ``quick``: the CI smoke test, about half a minute on 2 CPU cores: the LSTM with
  identity and chrono, T = 5 and 10 (4 compiled programs), 8 units, 60 updates, 2 seeds.
* ``default``: the ablation, 11 (cell, scheme) rows x T = 25, 50, 100 x 8 seeds
  (264 runs, 33 compiled programs): 294 s on a quiet 2-core machine (2026-11-26).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import linked
from rnnlab.runner import config as runner_config

PRESETS = ("quick", "default")
CELLS = ("elman", "lstm", "gru")
SCHEMES = ("orthogonal", "gaussian", "identity", "chrono")
GATED = ("lstm", "gru", "layer_norm_lstm", "layer_norm_gru")  # cells with gate biases (chrono)
# Steps a task's sequences have beyond T (the copy task's 10 symbols and 10 recall steps).
EXTRA_STEPS = {"copy": 20, "noiseless_memorization": 20}
# The config-argument keys this file handles itself (the others: fixed settings).
OWN = {
  "cell": "cell",
  "model.cell": "cell",
  "T": "T",
  "task.length": "T",
  "scheme": "scheme",
  "schemes": "scheme",
}


def scheme(name: str, t_max: float):
  """The fields scheme ``name`` sets at a grid point (``None`` where it does not apply)."""

  def settings(point):
    if name == "chrono":
      cell = point["model.cell"]
      if cell not in GATED and ":" not in cell and "." not in cell:
        return None  # chrono sets gate biases: the Elman cell has none
      return {"model.recurrent_init": "orthogonal", "model.chrono_t_max": t_max}
    return {"model.recurrent_init": name, "model.chrono_t_max": None}

  return settings


def rows(cells, lengths, schemes, task: str) -> list[dict]:
  """The sweep's rows: cell x T x scheme (chrono only for gated cells)."""
  t_max = float(max(lengths) + EXTRA_STEPS.get(task, 0))  # the longest sequence of the sweep
  grid = {"model.cell": tuple(cells), "task.length": tuple(lengths)}
  return linked.product([scheme(s, t_max) for s in schemes], grid)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config for ``arg`` (``"[preset][,key=value...]"``; see the module doc)."""
  preset, shortcuts = runner_config.parse_arg(arg, PRESETS)
  own, rest = linked.split_shortcuts(shortcuts, OWN)
  config = runner_config.experiment_config()
  config.preset = preset  # the preset that filled the defaults: quick | default

  config.task.name = "adding"  # the adding problem (Le 2015 / Arjovsky 2016, baseline 1/6)
  config.model.cell = "elman"  # the cell the report's figures show where they fix one
  config.model.hidden_size = 32  # H, units per layer (every cell gets the same H)
  config.model.nonlinearity = "relu"  # the Elman cell's: with identity, the IRNN
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.clip = 1.0
  config.num_steps = 1200  # parameter updates per run
  config.sweep.seeds = 8  # seeds per row (a group of 8 fills 2 devices x 2 members twice)
  config.report.success_x = "task.length"  # success rate against T ...
  # ... a colour per scheme: chrono is orthogonal W_hh with chrono_t_max set, a line of its own
  config.report.group_by = "model.recurrent_init+model.chrono_t_max"
  cells, lengths, schemes = CELLS, (25, 50, 100), SCHEMES

  if preset == "quick":
    runner_config.quick_settings(config)
    cells, lengths, schemes = ("lstm",), (5, 10), ("identity", "chrono")

  given = linked.set_fields(config, rest)
  cells = tuple(own.get("cell", cells))
  lengths = linked.lengths(own.get("T"), lengths)
  schemes = linked.choices("scheme", own.get("scheme", schemes), SCHEMES)
  linked.set_axes(config, rows(cells, lengths, schemes, config.task.name), given)
  return config
