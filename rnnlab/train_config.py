"""The training config's schema: :func:`default_config`, every field with its comment.

Kept apart from :mod:`rnnlab.train` and free of JAX, so that a command line can read
the fields (and an experiment config built on them, :mod:`rnnlab.runner.config`)
before JAX starts. ``rnnlab.train.default_config`` is this function.
"""

from __future__ import annotations

import ml_collections

# The choices of the config's named fields (rnnlab.train checks them; listed here for the
# comments and for tools that read the schema without JAX).
CELLS = ("elman", "lstm", "gru", "layer_norm_lstm", "layer_norm_gru", "exprnn", "lru")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam", "adamw")
SCHEDULES = ("none", "cosine", "warmup_cosine", "exponential")
READOUTS = ("linear",)
FLOSS_INPUTS = ("fresh", "train")


def default_config() -> ml_collections.ConfigDict:
  """The default training config: an LSTM on the Le/Arjovsky adding problem at T=50.

  Returns:
    A locked ``ConfigDict``; override fields with ``config.field = value`` or
    absl's ``--config.field=value``. Every field is commented below.
  """
  config = ml_collections.ConfigDict()

  config.task = ml_collections.ConfigDict()
  config.task.name = "adding"  # a task of rnnlab.tasks (tasks.get(name, length, **kwargs)), or
  # an import path "package.module:factory" of a task of one's own (factory(length, **kwargs))
  config.task.length = 50  # T, the dependency length handed to the task
  config.task.kwargs = ml_collections.ConfigDict()  # extra keyword arguments for tasks.get

  config.model = ml_collections.ConfigDict()
  config.model.cell = "lstm"  # one of CELLS (elman|lstm|gru|layer_norm_lstm|layer_norm_gru|
  # exprnn|lru), or an import path "package.module:factory" of a cell of one's own (see
  # make_cell); lru (rnnlab.cells.lru at its defaults, GLU readout) reads hidden_size only
  config.model.hidden_size = 64  # H, units per layer
  config.model.num_layers = 1  # stacked recurrent layers (rnnlab.layers.stacked)
  config.model.nonlinearity = "tanh"  # elman only: "tanh" | "relu" | "linear"
  config.model.recurrent_init = "orthogonal"  # w_hh scheme: orthogonal|gaussian|identity|uniform
  # (exprnn: the init of A, henaff|cayley|identity; "orthogonal" means its default, henaff)
  config.model.gain = 1.0  # g, the recurrent scheme's scale (a sweepable hparam)
  config.model.input_init = "lecun_normal"  # w_ih scheme: lecun_normal|glorot_uniform|uniform|zeros
  config.model.forget_bias = 1.0  # lstms only: initial forget-gate bias (Jozefowicz 2015)
  config.model.chrono_t_max = None  # gated cells: chrono gate-bias init T_max (None: off)
  config.model.readout = "linear"  # per-step readout from the top layer: "linear" (dense)
  # Variational dropout (Gal & Ghahramani 2016): one mask per sequence and unit for all
  # steps, drawn every training step; evaluation never drops. Rates in [0, 1).
  config.model.dropout = ml_collections.ConfigDict()
  config.model.dropout.input = 0.0  # on the task's inputs
  config.model.dropout.between = 0.0  # between stacked layers (num_layers > 1)
  config.model.dropout.output = 0.0  # on the top layer's outputs, before the readout
  config.model.dropout.recurrent = 0.0  # on h_{t-1} in h W_hh (elman, lstm, gru only)

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"  # one of OPTIMIZERS: sgd | momentum | rmsprop | adam | adamw
  config.optimizer.learning_rate = 1e-3  # peak learning rate (a sweepable hparam)
  config.optimizer.momentum = 0.9  # "momentum" only: the heavy-ball coefficient
  config.optimizer.nesterov = False  # "momentum" only: Nesterov's variant
  config.optimizer.rmsprop_decay = 0.9  # "rmsprop" only: decay of the squared-gradient average
  config.optimizer.b1 = 0.9  # "adam" and "adamw": first-moment decay
  config.optimizer.b2 = 0.999  # "adam" and "adamw": second-moment decay
  config.optimizer.eps = 1e-8  # "rmsprop", "adam" and "adamw": denominator epsilon
  config.optimizer.weight_decay = 1e-4  # "adamw" only: decoupled decay (optax's default)
  config.optimizer.decay_biases = False  # "adamw" only: also decay the 1-D leaves (biases)
  config.optimizer.schedule = "none"  # one of SCHEDULES: none|cosine|warmup_cosine|exponential
  config.optimizer.warmup_steps = 0  # "warmup_cosine": linear warm-up from 0 over these updates
  config.optimizer.end_factor = 0.0  # cosine schedules: final lr = end_factor * learning_rate
  config.optimizer.decay_rate = 0.1  # "exponential": lr * decay_rate ** (step / num_steps)

  config.clip = 1.0  # global-norm clipping threshold c (a sweepable hparam); None or 0: off
  config.batch_size = 32  # B, sequences per update
  config.num_steps = 1000  # parameter updates (scan length)

  config.eval = ml_collections.ConfigDict()
  config.eval.batch_size = 256  # sequences per held-out batch
  config.eval.num_batches = 4  # held-out batches evaluated after training (0: skip)
  config.eval.every = 0  # also evaluate every this many updates inside the scan (0: never)
  config.eval.stop_when_solved = False  # freeze a member once such an evaluation says solved
  config.eval.task_kwargs = ml_collections.ConfigDict()  # task kwargs overridden for eval
  # (e.g. {"split": "test"} for digits and char_lm; fresh keys otherwise)

  config.tbptt = ml_collections.ConfigDict()
  config.tbptt.k1 = None  # truncated BPTT: a new window starts every k1 steps (None: full BPTT)
  config.tbptt.k2 = None  # truncated BPTT: each window backpropagates k2 steps (k1 <= k2 <= T)

  # Gradient flossing (Engelken 2023; rnnlab.flossing): on the updates that floss, the
  # gradient of w * mean_i lambda_i^2 over the top-k Lyapunov exponents of the recurrent
  # layers (QR method) is added to the task's; records "floss" and "lyapunov_max" then.
  config.floss = ml_collections.ConfigDict()
  config.floss.weight = 0.0  # w >= 0 (0: off); a sweepable hparam
  config.floss.num_exponents = 1  # k, the top exponents flossed, <= num_layers * hidden_size
  # (the references floss 16 of 64 and 75 of 80 units)
  config.floss.every = 1  # floss on the updates s with s % every == 0
  config.floss.until = 0  # floss only on the updates s < until (0: to the end)
  config.floss.alone = 0  # preflossing: updates s < alone floss and drop the task's gradient
  config.floss.inputs = "fresh"  # one of FLOSS_INPUTS: "fresh" (a batch of its own each
  # update, as the reference) | "train" (the first floss.batch_size sequences of the batch)
  config.floss.batch_size = 1  # sequences the penalty averages over (the reference: 1)
  config.floss.transient = 0.25  # fraction of the first steps left out of the exponents' mean

  config.diagnostics_every = 0  # call `diagnostics` every this many updates (0: never)

  # A member whose step fires a rule is diverged: frozen from that step on (module docstring).
  config.divergence = ml_collections.ConfigDict()
  config.divergence.loss_factor = 1e7  # f > 1: a finite loss above f * max(first loss, task
  # baseline) counts as divergence (None or inf: off; non-finite losses always count)
  config.divergence.max_grad_norm = None  # a gradient norm before clipping above this counts
  # as divergence (None: off)

  config.lock()
  return config


__all__ = [
  "CELLS",
  "FLOSS_INPUTS",
  "OPTIMIZERS",
  "READOUTS",
  "SCHEDULES",
  "default_config",
]
