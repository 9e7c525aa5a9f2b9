r"""Optimizer ablation after Pascanu, Mikolov & Bengio 2013: does clipping, or an adaptive optimizer, rescue the tanh RNN?

The question. Pascanu et al. 2013 trained a 50-unit tanh RNN with minibatch SGD,
with and without gradient-norm clipping, and plotted the share of runs that solve
the task against the dependency length T: clipping (threshold 1) keeps SGD from
being thrown off by exploding gradients and solves longer T. This experiment
puts the two SGD arms next to the adaptive optimizers people use today, on two
of the paper's tasks (``rnnlab.tasks``, generated as the paper's code does):

* ``temporal_order_2bit`` (``tempOrder.py``): random distractors, two A/B symbols
  in fixed windows, classify their order (4 classes) at the end; trivial
  baseline ln 4; solved: under 1 % errors on held-out sequences;
* ``multiplication`` (``multiplication.py``): two marked values U[0, 1], target
  their product at the end; baseline Var = 1/9 - 1/16 (predict 1/4); solved:
  under 1 % of sequences with squared error above 0.04.

Arms (:data:`ARMS`; each sets ``optimizer.name``, ``optimizer.learning_rate``
and ``clip`` together):

==========  =========  =====  =====================================================
arm         optimizer  lr     clip
==========  =========  =====  =====================================================
sgd         sgd        0.1    off: the paper's MSGD
sgd_clip    sgd        0.1    1 (global norm): the paper's MSGD-C
rmsprop     rmsprop    1e-3   off (decay 0.9, as Arjovsky et al. 2016 use it)
adam        adam       1e-3   off (betas 0.9, 0.999)
==========  =========  =====  =====================================================

Learning rates: 2000 updates is far fewer than the paper ran, so SGD gets 0.1
(the paper: 0.01), the best of 0.01, 0.03, 0.1, 0.3 on temporal order at T = 20
and 40 (2 seeds each, clipping on and off); RMSProp and Adam get 1e-3, the best
of 1e-3, 3e-3, 1e-2 at T = 40 and 60. Every run: the Elman (tanh) cell, 50 units,
orthogonal ``W_hh`` (gain 1), batch 32, 2000 updates; ``cell=elman+lstm`` adds the LSTM.

What the literature expects. Without clipping, SGD at a learning rate large
enough to make progress is thrown off by gradient explosions (a blown-up loss,
or none learnt at longer T); with clipping the same SGD solves longer T
(Pascanu 2013, Fig. 7). Adaptive optimizers divide each step by a running
gradient scale, which tames explosions too; with a tuned learning rate they are
the usual choice for RNNs (Arjovsky 2016 uses RMSProp, clip 1). Multiplication is
the harder task at equal T. Results depend strongly on the seed: success rates
are over 8 seeds.

Axes (zip mode: rows are task x cell x T x arm; see
:mod:`experiments.configs.linked`): ``task.name``, ``task.length``,
``optimizer.name``, ``optimizer.learning_rate``, ``clip`` (and ``model.cell``
when several cells are given). The report draws the success rate against T, a
colour per optimizer and a line style per clipping threshold; where its figures
fix the other axes they show the config's own setting (SGD at 0.1 on temporal
order), and the tables give every arm and task.

    python -m experiments.run --config=experiments/configs/optimizer_ablation.py --workdir=runs/optim
    python -m experiments.run --config=experiments/configs/optimizer_ablation.py:quick --workdir=/tmp/q
    python -m experiments.run --config=experiments/configs/optimizer_ablation.py:task=temporal_order_2bit,T=50+100+150,arm=sgd+sgd_clip,seeds=5 --workdir=runs/pascanu

The argument after ``:``: at most one preset, then ``task=`` (tasks joined by
``+``), ``cell=``, ``T=``, ``arm=`` (of :data:`ARMS`), ``lr_sgd=``, ``lr_rmsprop=``,
``lr_adam=`` (one learning rate each), and any other field with one value
(``seeds=5``, ``model.hidden_size=100``).

Presets:

* ``quick``: the CI smoke test, about half a minute on 2 CPU cores: temporal
  order at T = 10 and 20, arms sgd, sgd_clip and adam (4 compiled programs), 8
  units, 60 updates, 2 seeds.
* ``default``: 2 tasks x T = 20, 35, 50 x 4 arms x 8 seeds (192 runs, 18 compiled
  programs; the two SGD arms share one, their clip and lr vmapped): 206 s on a
  quiet 2-core machine (2026-11-26).
"""

from __future__ import annotations

import ml_collections

from experiments.configs import linked
from rnnlab.runner import config as runner_config

PRESETS = ("quick", "default")
TASKS = ("temporal_order_2bit", "multiplication")
# Each arm: the fields it sets together.
ARMS = {
  "sgd": {"optimizer.name": "sgd", "optimizer.learning_rate": 0.1, "clip": 0.0},
  "sgd_clip": {"optimizer.name": "sgd", "optimizer.learning_rate": 0.1, "clip": 1.0},
  "rmsprop": {"optimizer.name": "rmsprop", "optimizer.learning_rate": 1e-3, "clip": 0.0},
  "adam": {"optimizer.name": "adam", "optimizer.learning_rate": 1e-3, "clip": 0.0},
}
# The config-argument keys this file handles itself (the others: fixed settings).
OWN = {
  "arm": "arm",
  "arms": "arm",
  "task": "task",
  "task.name": "task",
  "cell": "cell",
  "model.cell": "cell",
  "T": "T",
  "task.length": "T",
  "lr_sgd": "lr_sgd",
  "lr_rmsprop": "lr_rmsprop",
  "lr_adam": "lr_adam",
}


def arms(names, learning_rates) -> list[dict]:
  """The arms ``names``, with the learning rates ``{optimizer: lr}`` given on the command line."""
  out = []
  for name in names:
    arm = dict(ARMS[name])
    lr = learning_rates.get(arm["optimizer.name"])
    if lr is not None:
      arm["optimizer.learning_rate"] = lr
    out.append(arm)
  return out


def _learning_rates(own) -> dict[str, float]:
  out = {}
  for optimizer in ("sgd", "rmsprop", "adam"):
    texts = own.get(f"lr_{optimizer}")
    if texts is None:
      continue
    try:
      (value,) = (float(t) for t in texts)
    except ValueError:
      value = -1.0
    if not value > 0:
      raise ValueError(
        f"bad config argument lr_{optimizer}={'+'.join(texts)}; expected one learning rate > 0"
      )
    out[optimizer] = value
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment config for ``arg`` (``"[preset][,key=value...]"``; see the module doc)."""
  preset, shortcuts = runner_config.parse_arg(arg, PRESETS)
  own, rest = linked.split_shortcuts(shortcuts, OWN)
  config = runner_config.experiment_config()
  config.preset = preset  # the preset that filled the defaults: quick | default

  config.task.name = "temporal_order_2bit"  # the task the figures show where they fix one
  config.model.cell = "elman"  # the paper's cell: a tanh RNN with 50 units
  config.model.nonlinearity = "tanh"
  config.model.hidden_size = 50
  config.model.recurrent_init = "orthogonal"
  # The arm the figures show where they fix the optimizer's fields: SGD with clipping.
  config.optimizer.name = "sgd"
  config.optimizer.learning_rate = 0.1
  config.clip = 1.0
  config.num_steps = 2000  # parameter updates per run
  config.sweep.seeds = 8  # seeds per row
  config.report.success_x = "task.length"  # success rate against T ...
  config.report.group_by = "optimizer.name"  # ... a colour per optimizer (clip: line style)
  config.report.order = ("success_rate", "clipping")  # the question first: which optimizer solves
  tasks, cells, lengths, names = TASKS, ("elman",), (20, 35, 50), tuple(ARMS)

  if preset == "quick":
    runner_config.quick_settings(config)
    tasks, lengths, names = ("temporal_order_2bit",), (10, 20), ("sgd", "sgd_clip", "adam")

  given = linked.set_fields(config, rest)
  grid = {
    "task.name": tuple(own.get("task", tasks)),
    "model.cell": tuple(own.get("cell", cells)),
    "task.length": linked.lengths(own.get("T"), lengths),
  }
  names = linked.choices("arm", own.get("arm", names), tuple(ARMS))
  linked.set_axes(config, linked.product(arms(names, _learning_rates(own)), grid), given)
  return config
