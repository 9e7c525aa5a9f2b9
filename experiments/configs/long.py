r"""Long dependencies and their cures: the adding and copy problems at T in the hundreds.

The question. Which cells learn a dependency hundreds of steps long, and do the
remedies found since 2016 (an orthogonal recurrence, gradient flossing) let the
tanh RNN do what it cannot alone? Five arms, each trained on two tasks of
:mod:`rnnlab.tasks` as T grows:

* ``adding`` (Le et al. 2015 / Arjovsky et al. 2016: values U[0, 1], one marker
  in each half, target X1 + X2 at the last step; trivial baseline MSE 1/6 by
  predicting 1; solved: held-out MSE below a tenth of it) at T = 100, 200, 400;
* ``copy`` (Arjovsky et al. 2016: 10 symbols from 8, T - 1 blanks, a delimiter,
  10 blanks; recall the 10 symbols; mean cross-entropy over T + 20 steps;
  memoryless baseline ``10 ln 8 / (T + 20)``; solved: below a tenth of it) at
  T = 100, 200.

==============  ==================================================================
arm             what it sets
==============  ==================================================================
elman           ``model.cell="elman"``: the tanh RNN, orthogonal ``W_hh``
lstm            ``model.cell="lstm"``: forget-gate bias 1
gru             ``model.cell="gru"``
exprnn          ``model.cell="exprnn"``: ``W = expm(A - A^T)`` with modReLU
                (Lezcano-Casado & Martinez-Rubio 2019; :func:`rnnlab.cells.exprnn`)
elman_floss     the tanh RNN with gradient flossing (Engelken 2023;
                :mod:`rnnlab.flossing`): ``floss.weight`` = 0.1 on the top 16
                Lyapunov exponents, every 4th update, on a fresh sequence
==============  ==================================================================

Every run: 64 units, Adam at 1e-3, clipping at 1, batch 32, 3000 updates, 6 seeds
per row. What the literature expects, to be confirmed or refuted: on adding, the
tanh RNN stays at the baseline while the LSTM and the GRU solve it (Le 2015;
Arjovsky 2016, adding problem); on copy, the LSTM and the GRU plateau at the
baseline while the orthogonal cell goes below it (Arjovsky 2016, copying memory
problem; Henaff et al. 2016); flossing lets the tanh RNN reach longer T than
without it (Engelken 2023). ``python -m experiments.long_findings --workdir=<dir>``
checks these against the run's tables (``findings.md``).

Axes (zip mode: rows are task x T x arm; see :mod:`experiments.configs.linked`):
``task.name``, ``task.length``, ``model.cell``, ``floss.weight``. The report draws
the success rate against T, a colour per arm (``model.cell+floss.weight``) and a
line style per task.

    python -m experiments.run --config=experiments/configs/long.py --workdir=runs/long
    python -m experiments.run --config=experiments/configs/long.py:quick --workdir=/tmp/q
    python -m experiments.run --config=experiments/configs/long.py:task=copy,T=100+300,arm=lstm+exprnn --workdir=runs/copy

The argument after ``:``: at most one preset, then ``task=`` (tasks joined by
``+``), ``T=`` (lengths, for every task given), ``arm=`` (of :data:`ARMS`),
``floss=`` (the flossing weight of the ``elman_floss`` arm), and any other field
with one value (``seeds=8``, ``model.hidden_size=128``).

Presets:

* ``quick``: the CI smoke test: every arm on adding at T = 10 and copy at T = 5,
  8 units, 60 updates, 2 seeds.
* ``default``: the comparison above, 2 tasks x 5 lengths x 5 arms x 6 seeds.
* ``paper``: the published scale: 128 units, RMSProp 1e-3 (Arjovsky et al.'s
  optimizer), batch 20, 20000 updates, adding at T = 100, 200, 400, 750 and copy
  at T = 100, 200, 500, 1000, 5 seeds; days on 2 CPU cores (README, "the paper presets").
"""

from __future__ import annotations

import ml_collections

from experiments.configs import linked
from rnnlab.runner import config as runner_config

PRESETS = ("quick", "default", "paper")
TASKS = ("adding", "copy")
FLOSS_WEIGHT = 0.1  # the elman_floss arm's flossing weight (floss= on the command line)
# Each arm: the fields it sets together (elman_floss's weight: FLOSS_WEIGHT or floss=).
ARMS = {
  "elman": {"model.cell": "elman", "floss.weight": 0.0},
  "lstm": {"model.cell": "lstm", "floss.weight": 0.0},
  "gru": {"model.cell": "gru", "floss.weight": 0.0},
  "exprnn": {"model.cell": "exprnn", "floss.weight": 0.0},
  "elman_floss": {"model.cell": "elman", "floss.weight": FLOSS_WEIGHT},
}
# The config-argument keys this file handles itself (the others: fixed settings).
OWN = {
  "arm": "arm",
  "arms": "arm",
  "task": "task",
  "task.name": "task",
  "T": "T",
  "task.length": "T",
  "floss": "floss",
}


def arms(names, floss_weight: float) -> list[dict]:
  """The arms ``names``; the flossing arm with ``floss_weight``."""
  out = []
  for name in names:
    arm = dict(ARMS[name])
    if arm["floss.weight"]:
      arm["floss.weight"] = floss_weight
    out.append(arm)
  return out


def _floss_weight(texts) -> float:
  if texts is None:
    return FLOSS_WEIGHT
  try:
    (value,) = (float(t) for t in texts)
  except ValueError:
    value = -1.0
  if not value > 0:
    raise ValueError(f"bad config argument floss={'+'.join(texts)}; expected one weight > 0")
  return value


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config for ``arg`` (``"[preset][,key=value...]"``; see the module doc)."""
  preset, shortcuts = runner_config.parse_arg(arg, PRESETS)
  own, rest = linked.split_shortcuts(shortcuts, OWN)
  config = runner_config.experiment_config()
  config.preset = preset  # the preset that filled the defaults: quick | default | paper

  config.task.name = "adding"  # the task the figures show where they fix one
  config.model.cell = "elman"  # the cell the figures show where they fix one
  config.model.nonlinearity = "tanh"
  config.model.hidden_size = 64  # H, units per layer (every cell gets the same H)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 1e-3
  config.clip = 1.0
  config.batch_size = 32
  config.num_steps = 3000  # parameter updates per run
  config.eval.num_batches = 4
  # Gradient flossing's settings for the elman_floss arm (the other arms: weight 0, off).
  config.floss.num_exponents = 16  # k: the reference flosses 16 exponents of 64 units
  config.floss.every = 4  # every 4th update flosses (the penalty's QR pass costs about 4 steps)
  config.sweep.seeds = 6  # seeds per row
  config.run.members_per_block = 3  # 6 seeds fill 2 devices x 3 members in one wave
  config.run.chunk_steps = 250
  config.run.checkpoint_seconds = 120.0
  config.run.metrics_every = 10
  config.diagnostics.batch_size = 16
  config.report.success_x = "task.length"  # success rate against T ...
  config.report.group_by = "model.cell+floss.weight"  # ... a colour per arm (task: line style)
  config.report.order = ("success_rate", "training_curves")
  lengths = {"adding": (100, 200, 400), "copy": (100, 200)}
  tasks, names = TASKS, tuple(ARMS)

  if preset == "quick":
    runner_config.quick_settings(config)
    config.floss.num_exponents = 2
    config.run.members_per_block = 2
    lengths = {"adding": (10,), "copy": (5,)}
  elif preset == "paper":
    runner_config.paper_settings(config)
    config.run.members_per_block = 2
    config.floss.num_exponents = 32
    lengths = {"adding": (100, 200, 400, 750), "copy": (100, 200, 500, 1000)}

  given = linked.set_fields(config, rest)
  tasks = linked.choices("task", own.get("task", tasks), TASKS)
  names = linked.choices("arm", own.get("arm", names), tuple(ARMS))
  chosen = arms(names, _floss_weight(own.get("floss")))
  rows = []
  for task in tasks:
    grid = {"task.name": (task,), "task.length": linked.lengths(own.get("T"), lengths[task])}
    rows += linked.product(chosen, grid)
  linked.set_axes(config, rows, given)
  return config
