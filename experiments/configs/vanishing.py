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
      --config.train.learning_rate=3e-4 --workdir=runs/x

The argument after ``:`` is a comma-separated list: at most one preset name
(``quick``, ``default``, ``paper``) and ``key=value`` shortcuts for the sweep
(``cell``, ``T``, ``gain``, ``lr``, ``clip``: one value or several joined by
``+``, e.g. ``cell=lstm+gru,T=50+100``; ``seeds``: a count; ``task``: a task
name). Any field can also be set with ``--config.<field>=<value>``; the fields whose
comment gives None a meaning (declared with :func:`_optional`) also take ``None``.

Presets:

* ``quick``: CI smoke test, under a minute on 2 CPU cores: tiny models, short T.
* ``default``: the flagship comparison, under 10 minutes on 2 CPU cores: the
  adding problem (Le 2015 / Arjovsky 2016, baseline 1/6) at T = 10..80, three
  cells, clipping on and off, five seeds.
* ``paper``: the grids of Arjovsky et al. 2016 (adding, 128 units, RMSProp 1e-3,
  clip 1, T = 100..750) and Pascanu et al. 2013 (50 units, T = 50..200); hours.
"""

from __future__ import annotations

import difflib
from typing import Any

import ml_collections
from ml_collections import config_dict

PRESETS = ("quick", "default", "paper")
SHORTCUTS = ("cell", "T", "gain", "lr", "clip", "seeds", "task")


def _optional(field_type: type, default: Any = None) -> config_dict.FieldReference:
  """A field of type ``field_type | None``, for the fields where None means something.

  The explicit type lets ``--config.<field>=<value>`` set a field whose default is None
  (the runner parses the value as a ``field_type``), and ``--config.<field>=None`` set
  one whose default is not.
  """
  return config_dict.FieldReference(default, field_type=field_type | None)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The sweep config for ``arg`` (``"[preset][,key=value...]"``; see the module doc)."""
  preset, shortcuts = _parse_arg(arg or "")
  config = ml_collections.ConfigDict()
  config.preset = preset  # the preset that filled the defaults: quick | default | paper

  config.task = ml_collections.ConfigDict()
  config.task.name = "adding"  # a task of rnnlab.tasks.TASKS (T comes from sweep.T)
  config.task.kwargs = ml_collections.ConfigDict()  # extra keyword arguments for tasks.get

  config.model = ml_collections.ConfigDict()
  config.model.hidden_size = 32  # H, units per layer (every cell gets the same H)
  config.model.num_layers = 1  # stacked recurrent layers; diagnostics read the first
  config.model.nonlinearity = "tanh"  # elman only: tanh | relu | linear
  config.model.recurrent_init = "orthogonal"  # w_hh: orthogonal | gaussian | identity | uniform
  config.model.gain = 1.0  # recurrent gain g when sweep.gain is None
  config.model.input_init = "lecun_normal"  # w_ih: lecun_normal | glorot_uniform | uniform | zeros
  config.model.forget_bias = 1.0  # lstm only: initial forget-gate bias (Jozefowicz 2015)
  config.model.chrono_t_max = _optional(float)  # lstm/gru: chrono gate-bias init T_max (None: off)

  config.train = ml_collections.ConfigDict()
  config.train.optimizer = "adam"  # sgd | momentum | rmsprop | adam (optax)
  config.train.learning_rate = 2e-3  # peak learning rate when sweep.lr is None
  config.train.schedule = "none"  # none | cosine | warmup_cosine | exponential
  config.train.warmup_steps = 0  # warmup_cosine only: linear warm-up updates
  config.train.clip = 1.0  # global-norm clipping threshold when sweep.clip is None (0: off)
  config.train.batch_size = 32  # B, sequences per update
  config.train.num_steps = 1200  # parameter updates per run
  config.train.eval_batch_size = 256  # held-out sequences per evaluation batch
  config.train.eval_batches = 4  # held-out batches for the final loss and `solved`
  config.train.solve_window = 50  # steps-to-solve: first step whose trailing mean of this
  # many training losses and metrics meets the task's `solved` criterion
  config.train.diverge_factor = _optional(float, 1e7)  # a run whose training loss exceeds this
  # times its first loss (or the task's baseline, if larger) is diverged and frozen (None or
  # inf: only non-finite values are)

  config.sweep = ml_collections.ConfigDict()
  config.sweep.cell = ("elman", "lstm", "gru")  # cells (each its own compiled program)
  config.sweep.T = (10, 20, 40, 80)  # dependency lengths (each its own compiled program)
  config.sweep.gain = _optional(tuple)  # recurrent gains, vmapped (None: (model.gain,))
  config.sweep.clip = _optional(tuple, (0.0, 1.0))  # clipping thresholds, vmapped; 0 = off
  # (None: (train.clip,))
  config.sweep.lr = _optional(tuple)  # learning rates, vmapped (None: (train.learning_rate,))
  config.sweep.seeds = 5  # seeds 0 .. seeds-1 per grid point, vmapped
  config.sweep.seed_offset = 0  # first seed (seeds are seed_offset .. seed_offset+seeds-1)

  config.diagnostics = ml_collections.ConfigDict()
  config.diagnostics.batch_size = 32  # held-out sequences for ||dL/dh_t|| and Lyapunov
  config.diagnostics.horizon_fraction = 0.01  # memory horizon: largest lag with norm >= this
  # fraction of the norm at lag 0
  config.diagnostics.lyapunov_transient = 0.25  # share of the steps left out of the Lyapunov mean
  config.diagnostics.gain_scan = _optional(tuple, (0.5, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5, 2.0))
  # gains for the untrained decay-versus-gain scan (empty or None: skip it)
  config.diagnostics.gain_scan_T = 0  # T of the gain scan (0: the largest T of the sweep)
  config.diagnostics.gain_scan_seeds = 3  # seeds per (cell, gain) in the gain scan

  config.run = ml_collections.ConfigDict()
  config.run.chunk_steps = 100  # updates per compiled chunk; state is saved between chunks
  config.run.checkpoint_seconds = 30.0  # save the sweep state at most this often (0: every chunk)
  config.run.devices = 0  # devices for the sweep axis (0: all; a CPU-only host is split into
  # one XLA device per core, at least 2: jax_num_cpu_devices, XLA's
  # --xla_force_host_platform_device_count; several processes: the total, a multiple of
  # their number, split evenly)
  config.run.cpu_opt_level = _optional(int, 1)  # CPU-only hosts: XLA's LLVM optimisation
  # level; 1 compiles about 2x faster than XLA's default at the same speed (None: XLA's default)
  config.run.members_per_block = 2  # members vmapped together on a device (raise it on a
  # GPU); members are padded to whole blocks on every device, and a member's numbers
  # depend on this size, never on the number of devices (2 or more)
  config.run.compile_threads = 2  # threads compiling the next groups' programs ahead (0: off)
  config.run.distributed = False  # several processes, found by jax.distributed.initialize()
  # in the environment (srun, mpirun, JAX_COORDINATOR_ADDRESS); or give the runner
  # --coordinator, --num_processes and --process_id instead
  config.run.metrics_every = 1  # metrics.csv keeps every this-many-th step (and the last)
  config.run.plots = True  # write the PNG/SVG figures and report.md at the end

  if preset == "quick":
    config.model.hidden_size = 8
    config.train.num_steps = 60
    config.train.batch_size = 16
    config.train.eval_batch_size = 64
    config.train.eval_batches = 1
    config.train.solve_window = 10
    config.sweep.T = (5, 10)
    config.sweep.seeds = 2
    config.diagnostics.batch_size = 8
    config.diagnostics.gain_scan = (0.5, 0.9, 1.1, 2.0)
    config.diagnostics.gain_scan_seeds = 1
    config.run.chunk_steps = 20
    config.run.checkpoint_seconds = 0.0
  elif preset == "paper":
    config.model.hidden_size = 128
    config.train.optimizer = "rmsprop"
    config.train.learning_rate = 1e-3
    config.train.num_steps = 20000
    config.train.batch_size = 20
    config.train.eval_batches = 40
    config.sweep.T = (50, 100, 200, 400, 750)
    config.sweep.clip = (0.0, 1.0)
    config.sweep.seeds = 5
    config.diagnostics.batch_size = 64
    config.run.chunk_steps = 500
    config.run.checkpoint_seconds = 300.0
    config.run.metrics_every = 20

  _apply_shortcuts(config, shortcuts)
  return config


def _parse_arg(arg: str) -> tuple[str, dict[str, str]]:
  preset, shortcuts = None, {}
  parts = [p.strip() for p in arg.split(",")]
  for i, part in enumerate(parts):
    if not part:
      continue
    if "=" not in part:
      if part not in PRESETS:
        raise ValueError(_unknown_preset(arg, parts, i))
      if preset is not None:
        raise ValueError(
          f"two presets, {preset!r} and {part!r}, in the config argument {arg!r}; give at "
          f"most one of {PRESETS}"
        )
      preset = part
      continue
    key, value = (s.strip() for s in part.split("=", 1))
    if key not in SHORTCUTS or not value:
      raise ValueError(
        f"bad config argument {part!r}; expected a preset {PRESETS} or key=value with key in "
        f"{SHORTCUTS}"
      )
    shortcuts[key] = value
  return preset or "default", shortcuts


def _unknown_preset(arg: str, parts: list[str], i: int) -> str:
  """The message for ``parts[i]``, neither a preset nor a shortcut, with the likeliest fix."""
  message = f"unknown preset {parts[i]!r} in the config argument {arg!r}; expected one of {PRESETS}"
  if i > 0 and "=" in parts[i - 1]:  # T=10,20: more values of the shortcut before it
    values = [parts[i - 1]]
    for part in parts[i:]:
      if not part or "=" in part or part in PRESETS:
        break
      values.append(part)
    return f"{message}; the values of a shortcut are joined by '+': {'+'.join(values)}"
  close = difflib.get_close_matches(parts[i], PRESETS, n=1)
  return f"{message}; did you mean {close[0]!r}?" if close else message


def _numbers(key: str, value: str, kind: type) -> tuple:
  try:
    return tuple(kind(v) for v in value.split("+"))
  except ValueError:
    raise ValueError(
      f"bad config argument {key}={value!r}; expected {kind.__name__}s joined by '+'"
    ) from None


def _apply_shortcuts(config: ml_collections.ConfigDict, shortcuts: dict[str, str]) -> None:
  for key, value in shortcuts.items():
    if key == "cell":
      config.sweep.cell = tuple(value.split("+"))
    elif key == "T":
      config.sweep.T = _numbers(key, value, int)
    elif key == "gain":
      config.sweep.gain = _numbers(key, value, float)
    elif key == "lr":
      config.sweep.lr = _numbers(key, value, float)
    elif key == "clip":
      config.sweep.clip = _numbers(key, value, float)
    elif key == "seeds":
      config.sweep.seeds = _numbers(key, value, int)[0]
    elif key == "task":
      config.task.name = value
