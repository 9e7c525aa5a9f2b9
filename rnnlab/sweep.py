r"""Sweeps: a grid of training runs, vmapped and sharded, checkpointed, resumable, summarised.

A sweep config (``experiments/configs/vanishing.py``) declares a grid over
cells x T x recurrent gain x clipping threshold x learning rate x seeds. Its
members split into *groups* of equal shapes, one per ``(cell, T)``: the members
of a group differ only in traced scalars (:class:`rnnlab.train.HParams` and the
key), so a group runs as one compiled program, ``jax.vmap`` over its members,
with the member axis sharded over a 1-D device mesh (``NamedSharding(mesh,
P("sweep"))``); the groups run one after another.

Each group trains in chunks of ``config.run.chunk_steps`` updates
(:class:`rnnlab.train.Trainer`). Between chunks its whole state (parameters,
optimizer state, per-step records so far, diagnostics at initialisation) can
be saved as an orbax checkpoint under ``workdir/checkpoints/<group>``; a killed
sweep launched again restores each group's latest checkpoint and goes on with
the same chunks, so it ends bitwise equal to an uninterrupted run; finished
groups are read back, not recomputed. Orbax writes each checkpoint into a
temporary folder and renames it when complete, and every table is written to a
temporary file and renamed, so nothing half-written is ever read back.

Outputs (see :func:`write_tables`): ``summary.csv`` (one row per member),
``metrics.csv`` (tidy per-step training metrics), ``gradients.csv``
(``ln ||dL/dh_t||`` against the lag, at initialisation and trained) and
``gain_scan.csv`` (untrained diagnostics as the recurrent gain sweeps), all
plain CSV that ``pandas.read_csv`` reads as is.

Keys: member ``seed`` s runs ``rnnlab.train`` with ``jax.random.key(s)``, so
the members of one seed share their data stream and initial draws across
cells, T, gains, clip thresholds and learning rates (common random numbers).
"""

from __future__ import annotations

import concurrent.futures
import copy
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import diagnostics as diag_lib
from rnnlab import multihost
from rnnlab import store as store_lib
from rnnlab import tasks as tasks_lib
from rnnlab import train as train_lib
from rnnlab import workdir as workdir_lib

Array = jax.Array
PyTree = Any

SUMMARY_COLUMNS = (
  "member",
  "group",
  "cell",
  "task",
  "T",
  "hidden",
  "gain",
  "lr",
  "clip",
  "seed",
  "final_loss",
  "final_metric",
  "initial_loss",
  "baseline",
  "solved",
  "steps_to_solve",
  "diverged_at",
  "clip_fraction",
  "decay_rate_init",
  "decay_rate",
  "memory_horizon_init",
  "memory_horizon_init_censored",
  "memory_horizon",
  "memory_horizon_censored",
  "spectral_radius_init",
  "spectral_radius",
  "lyapunov_init",
  "lyapunov",
)
MEMBER_COLUMNS = ("member", "cell", "T", "gain", "lr", "clip", "seed")
METRIC_COLUMNS = train_lib.STEP_METRICS
GAIN_SCAN_COLUMNS = (
  "cell",
  "T",
  "gain",
  "seed",
  "decay_rate",
  "memory_horizon",
  "spectral_radius",
  "sigma_max",
  "pascanu_bound",
  "lyapunov",
)
# Fields that change no number of the sweep: a workdir may be resumed with other values.
RUN_ONLY_FIELDS = ("checkpoint_seconds", "compile_threads", "devices", "distributed", "plots")
# (run.cpu_opt_level is not among them: it changes XLA's code and so the last bits.)


class Member(NamedTuple):
  """One training run of the grid."""

  index: int
  cell: str
  T: int
  gain: float
  clip: float
  lr: float
  seed: int


class Group(NamedTuple):
  """The members that share one compiled program: the same cell and T."""

  name: str
  cell: str
  T: int
  members: tuple[Member, ...]


# --------------------------------------------------------------------------
# The grid and its checks.
# --------------------------------------------------------------------------


def _fail(field: str, value: Any, expected: str) -> None:
  raise ValueError(f"config.{field}={value!r} is invalid; expected {expected}")


def _is_int(value: Any) -> bool:
  return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
  return isinstance(value, int | float | np.number) and not isinstance(value, bool)


def _axis(config: ml_collections.ConfigDict, field: str, fallback: Any) -> tuple:
  value = config.sweep[field]
  if value is None:
    return (fallback,)
  if isinstance(value, str) or not isinstance(value, Sequence):
    return (value,)
  if not value:
    _fail(f"sweep.{field}", value, "a non-empty tuple (or None for the single default)")
  return tuple(value)


def resolve(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A checked copy of ``config`` whose sweep axes are all filled in.

  ``sweep.gain``, ``sweep.clip`` and ``sweep.lr`` left ``None`` become the
  one-value tuples of ``model.gain``, ``train.clip`` and ``train.learning_rate``.

  Raises:
    ValueError: one line naming the first bad field and what was expected.
  """
  if not isinstance(config, ml_collections.ConfigDict):
    raise ValueError(f"a sweep config must be an ml_collections.ConfigDict; got {config!r}")
  config = copy.deepcopy(config)
  config.unlock()
  for section in ("task", "model", "train", "sweep", "diagnostics", "run"):
    if section not in config:
      _fail(section, None, "a section of the config (see experiments/configs/vanishing.py)")
  if config.task.name not in tasks_lib.TASKS:
    raise ValueError(
      f"unknown task {config.task.name!r} in config.task.name; expected one of "
      f"{', '.join(tasks_lib.TASKS)}"
    )
  cells = _axis(config, "cell", None)
  for cell in cells:
    if cell not in train_lib.CELLS:
      raise ValueError(
        f"unknown cell {cell!r} in config.sweep.cell; expected one of {', '.join(train_lib.CELLS)}"
      )
  if len(set(cells)) != len(cells):
    _fail("sweep.cell", cells, "distinct cells")
  lengths = _axis(config, "T", None)
  for T in lengths:
    if not _is_int(T) or T < 1:
      _fail("sweep.T", lengths, "positive ints (sequence lengths)")
  gains = _axis(config, "gain", config.model.gain)
  clips = _axis(config, "clip", config.train.clip if config.train.clip is not None else 0.0)
  lrs = _axis(config, "lr", config.train.learning_rate)
  for field, values, low in (("gain", gains, None), ("clip", clips, 0.0), ("lr", lrs, 0.0)):
    for v in values:
      if not _is_number(v) or not math.isfinite(v) or (low is not None and v < low):
        bound = "finite numbers" if low is None else f"finite numbers >= {low:g}"
        _fail(f"sweep.{field}", values, bound)
    if field == "lr" and min(values) <= 0:
      _fail("sweep.lr", values, "learning rates > 0")
  for field in ("seeds",):
    if not _is_int(config.sweep[field]) or config.sweep[field] < 1:
      _fail(f"sweep.{field}", config.sweep[field], "a positive int")
  if not _is_int(config.sweep.seed_offset) or config.sweep.seed_offset < 0:
    _fail("sweep.seed_offset", config.sweep.seed_offset, "an int >= 0")
  config.sweep.cell = tuple(str(c) for c in cells)
  config.sweep.T = tuple(int(t) for t in lengths)
  config.sweep.gain = tuple(float(g) for g in gains)
  config.sweep.clip = tuple(float(c) for c in clips)
  config.sweep.lr = tuple(float(v) for v in lrs)

  for field in ("hidden_size", "num_layers"):
    if not _is_int(config.model[field]) or config.model[field] < 1:
      _fail(f"model.{field}", config.model[field], "a positive int")
  for field in ("batch_size", "num_steps", "eval_batch_size", "solve_window"):
    if not _is_int(config.train[field]) or config.train[field] < 1:
      _fail(f"train.{field}", config.train[field], "a positive int")
  if not _is_int(config.train.eval_batches) or config.train.eval_batches < 1:
    _fail("train.eval_batches", config.train.eval_batches, "a positive int")
  factor = config.train.diverge_factor
  if factor is not None and (not _is_number(factor) or math.isnan(factor) or factor <= 1):
    _fail("train.diverge_factor", factor, "None (off) or a number > 1 (inf: off)")
  d = config.diagnostics
  if not _is_int(d.batch_size) or d.batch_size < 1:
    _fail("diagnostics.batch_size", d.batch_size, "a positive int")
  if not _is_number(d.horizon_fraction) or not 0 < d.horizon_fraction <= 1:
    _fail("diagnostics.horizon_fraction", d.horizon_fraction, "a number in (0, 1]")
  if not _is_number(d.lyapunov_transient) or not 0 <= d.lyapunov_transient < 1:
    _fail("diagnostics.lyapunov_transient", d.lyapunov_transient, "a share in [0, 1)")
  scan = () if d.gain_scan is None else d.gain_scan
  if isinstance(scan, str) or not isinstance(scan, Sequence):
    _fail("diagnostics.gain_scan", d.gain_scan, "a tuple of gains (empty: skip the scan)")
  for g in scan:
    if not _is_number(g) or not math.isfinite(g):
      _fail("diagnostics.gain_scan", d.gain_scan, "finite gains")
  d.gain_scan = tuple(float(g) for g in scan)
  if not _is_int(d.gain_scan_T) or d.gain_scan_T < 0:
    _fail("diagnostics.gain_scan_T", d.gain_scan_T, "an int >= 0 (0: the largest sweep T)")
  if not _is_int(d.gain_scan_seeds) or d.gain_scan_seeds < 1:
    _fail("diagnostics.gain_scan_seeds", d.gain_scan_seeds, "a positive int")
  r = config.run
  if not _is_int(r.compile_threads) or r.compile_threads < 0:
    _fail("run.compile_threads", r.compile_threads, "an int >= 0 (0: compile on first use)")
  for field in ("chunk_steps", "metrics_every", "members_per_block"):
    if not _is_int(r[field]) or r[field] < 1:
      _fail(f"run.{field}", r[field], "a positive int")
  if not _is_int(r.devices) or r.devices < 0:
    _fail("run.devices", r.devices, "an int >= 0 (0: all devices)")
  if not _is_number(r.checkpoint_seconds) or r.checkpoint_seconds < 0:
    _fail("run.checkpoint_seconds", r.checkpoint_seconds, "a number >= 0")

  # Every group's training config and task must be valid too: check them all now,
  # before any work, so a bad T fails in a second and not after an hour.
  for cell, T in itertools.product(config.sweep.cell, config.sweep.T):
    tc = train_config(config, cell, T)
    train_lib.check_config(tc)
    # The runner's diagnostics (the hidden state's gradient norms by lag, per-gate
    # spectra) read the cell's CellParts.
    if train_lib.make_cell(tc).parts is None:
      with_parts = [c for c in train_lib.CELLS if train_lib.cell_factory(c)(2).parts is not None]
      raise ValueError(
        f"cell {cell!r} in config.sweep.cell has no CellParts, which the runner's diagnostics "
        f"need; expected one of {', '.join(with_parts)} (train it with rnnlab.train.make_train)"
      )
    tasks_lib.get(config.task.name, T, **dict(config.task.kwargs))
  if d.gain_scan:
    tasks_lib.get(config.task.name, gain_scan_length(config), **dict(config.task.kwargs))
  config.lock()
  return config


def gain_scan_length(config: ml_collections.ConfigDict) -> int:
  """The T of the untrained gain scan: ``diagnostics.gain_scan_T`` or the largest sweep T."""
  return config.diagnostics.gain_scan_T or max(config.sweep.T)


def train_config(config: ml_collections.ConfigDict, cell: str, T: int) -> ml_collections.ConfigDict:
  """The :mod:`rnnlab.train` config of the group ``(cell, T)`` of a resolved sweep config."""
  tc = train_lib.default_config()
  with tc.unlocked():
    tc.task.name = config.task.name
    tc.task.length = int(T)
    tc.task.kwargs = ml_collections.ConfigDict(dict(config.task.kwargs))
    for field in (
      "hidden_size",
      "num_layers",
      "nonlinearity",
      "recurrent_init",
      "input_init",
      "forget_bias",
      "chrono_t_max",
      "gain",
    ):
      tc.model[field] = config.model[field]
    tc.model.cell = cell
    if cell == "elman":
      tc.model.chrono_t_max = None
    tc.optimizer.name = config.train.optimizer
    tc.optimizer.learning_rate = float(config.train.learning_rate)
    tc.optimizer.schedule = config.train.schedule
    tc.optimizer.warmup_steps = config.train.warmup_steps
    tc.clip = config.train.clip
    tc.batch_size = config.train.batch_size
    tc.num_steps = config.train.num_steps
    tc.eval.batch_size = config.train.eval_batch_size
    tc.eval.num_batches = config.train.eval_batches
    tc.divergence.loss_factor = config.train.diverge_factor
  return tc


def members(config: ml_collections.ConfigDict) -> list[Member]:
  """Every member of a resolved config, in grid order (cell, T, gain, clip, lr, seed)."""
  s = config.sweep
  seeds = range(s.seed_offset, s.seed_offset + s.seeds)
  grid = itertools.product(s.cell, s.T, s.gain, s.clip, s.lr, seeds)
  return [Member(i, *values) for i, values in enumerate(grid)]


def groups(config: ml_collections.ConfigDict) -> list[Group]:
  """The members split by ``(cell, T)``: one compiled program each."""
  by_key: dict[tuple[str, int], list[Member]] = {}
  for m in members(config):
    by_key.setdefault((m.cell, m.T), []).append(m)
  return [Group(f"{cell}_T{T}", cell, T, tuple(ms)) for (cell, T), ms in by_key.items()]


# --------------------------------------------------------------------------
# Devices.
# --------------------------------------------------------------------------


ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm-plugin", "libtpu")


def _accelerator_installed() -> bool:
  import importlib.metadata  # noqa: PLC0415

  for name in ACCELERATOR_PLUGINS:
    try:
      importlib.metadata.version(name)
      return True
    except importlib.metadata.PackageNotFoundError:
      continue
  return False


def configure_devices(devices: int, cpu_opt_level: int | None = None, processes: int = 1) -> None:
  """Before JAX starts: on a CPU-only host, split the CPU into XLA devices for the sweep axis.

  ``devices=0`` gives one device per core the process may use (at least 2); a
  positive number that many. With ``processes > 1`` (a multi-process launch,
  :func:`rnnlab.multihost.initialize`) ``devices`` counts the mesh's devices
  over all processes: each process gets ``devices / processes`` of them (0:
  one per core, at least 1). ``cpu_opt_level`` sets XLA's
  ``--xla_backend_optimization_level`` (LLVM's) when no accelerator plugin is
  installed: 1 compiles the runner's programs about twice as fast as XLA's
  default, at the same training speed at these sizes (BUILD.md). Other backends
  keep their own devices and flags. Call it before anything touches a JAX
  backend.
  """
  if not _is_int(devices) or devices < 0:
    _fail("run.devices", devices, "an int >= 0 (0: all devices)")
  if cpu_opt_level is not None and (not _is_int(cpu_opt_level) or not 0 <= cpu_opt_level <= 3):
    _fail("run.cpu_opt_level", cpu_opt_level, "None or an int in [0, 3]")
  if os.environ.get("JAX_PLATFORMS", "cpu") not in ("", "cpu"):
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if (
    cpu_opt_level is not None
    and "xla_backend_optimization_level" not in flags
    and not _accelerator_installed()
  ):
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level={cpu_opt_level}".strip()
  if processes > 1 and devices % processes:
    _fail("run.devices", devices, f"0 (all) or a multiple of the {processes} processes")
  if not devices:
    # At least two, even on one core: a sweep's numbers are then the same on every CPU
    # host (see _Waves), since a 1-device mesh compiles through XLA's single-device
    # pipeline, whose other algebraic rewrites move results by an ulp. (Several
    # processes make a mesh of 2 or more devices whatever each one holds.)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    devices = max(len(cores) or os.cpu_count() or 1, 2 if processes == 1 else 1)
  elif processes > 1:
    devices //= processes
  jax.config.update("jax_num_cpu_devices", int(devices))


def make_mesh(devices: int = 0) -> jax.sharding.Mesh:
  """A 1-D mesh ``("sweep",)`` over ``devices`` devices (0: all, every process).

  Several processes: as many devices on each (:func:`rnnlab.multihost.mesh_devices`).
  """
  return jax.sharding.Mesh(np.asarray(multihost.mesh_devices(devices)), ("sweep",))


_to_host = multihost.to_host


class _Waves:
  """Members in waves of ``devices x block``: one call gives every device exactly one block.

  A member's numbers then depend only on the block size (XLA picks other kernels
  for other vmapped sizes, which moves results by an ulp that training amplifies),
  never on the number of devices or on where the member sits. The last wave is
  padded with copies of its first member, computed and dropped.
  """

  def __init__(self, mesh: jax.sharding.Mesh, size: int, block: int):
    self.size = size
    self.width = mesh.size * block
    self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("sweep"))
    self.slices = [slice(i, min(i + self.width, size)) for i in range(0, size, self.width)]

  def put(self, tree: PyTree) -> list[PyTree]:
    """Host arrays with a leading member axis of ``size`` -> one sharded pytree per wave."""

    def wave(part):
      def pad(x):
        x = np.asarray(x)[part]
        return np.concatenate([x, np.repeat(x[:1], self.width - x.shape[0], axis=0)])

      return multihost.put(jax.tree.map(pad, tree), self.sharding)

    return [wave(part) for part in self.slices]

  def get(self, waves: Sequence[PyTree]) -> PyTree:
    """The waves' outputs back on the host, concatenated, padding dropped."""
    host = [_to_host(w) for w in waves]
    parts = [
      jax.tree.map(lambda x, p=p: x[: p.stop - p.start], h)
      for h, p in zip(host, self.slices, strict=True)
    ]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


# --------------------------------------------------------------------------
# Diagnostics of one member's parameters.
# --------------------------------------------------------------------------


def make_diagnose(
  config: ml_collections.ConfigDict, trainer: train_lib.Trainer, cell_name: str, T: int
) -> Callable[[PyTree, Array], dict]:
  """``diagnose(params, key) -> dict`` of one member's gradient-flow diagnostics.

  On ``diagnostics.batch_size`` held-out sequences (drawn from the run key's
  ``k_diag`` stream, so the same for init and trained): ``log_grad_norms``
  (lag ascending, ``ln ||dL/dh_t||`` for the first layer's ``h`` over the whole
  batch, lag ``= L - 1 - t``), its ``decay_rate`` and ``memory_horizon``, the
  ``spectral_radius`` and ``sigma_max`` (largest over the ``H x H`` gate blocks
  of the first layer's ``W_hh``), Pascanu's ``pascanu_bound`` (Elman) and the
  largest Lyapunov exponent (first layer, mean over the sequences).
  """
  tc = train_config(config, cell_name, T)
  cell = train_lib.make_cell(tc)
  d = config.diagnostics
  model, task = trainer.model, trainer.eval_task

  def diagnose(params: PyTree, key: Array) -> dict:
    batch = task.sample(train_lib.split_key(key)[3], d.batch_size)

    def loss(params):
      outputs, _ = model.apply(params, batch.inputs, lengths=batch.lengths)
      return task.loss(outputs, batch)

    grads = diag_lib.state_grads(loss)(params)
    first = grads.encoder[0]  # the first layer (one direction: the sweep stacks plain cells)
    h_TxBxH = cell.parts.hidden(first)
    flat = h_TxBxH.reshape(h_TxBxH.shape[0], -1).astype(jnp.float32)
    top = jnp.max(jnp.abs(flat), axis=-1)
    scaled = jnp.linalg.norm(flat / jnp.where(top > 0, top, 1.0)[:, None], axis=-1)
    log_norms = jnp.where(
      top > 0, jnp.log(jnp.where(top > 0, top, 1.0)) + jnp.log(scaled), -jnp.inf
    )
    log_by_lag = log_norms[::-1]
    lags = jnp.arange(log_by_lag.shape[0])
    layer0 = params.encoder[0]
    spectra = diag_lib.recurrent_spectra(cell, layer0)
    length = batch.inputs.shape[1]
    lyapunov = diag_lib.lyapunov_spectrum(
      cell,
      layer0,
      batch.inputs,
      num_exponents=1,
      transient=int(d.lyapunov_transient * length),
      key=train_lib.split_key(key)[3],
    )
    return {
      "log_grad_norms": log_by_lag,
      "decay_rate": diag_lib.decay_rate(log_by_lag, lags),
      "memory_horizon": diag_lib.memory_horizon(log_by_lag, lags, d.horizon_fraction),
      "spectral_radius": jnp.max(jnp.stack(list(spectra["spectral_radius"].values()))),
      "sigma_max": jnp.max(jnp.stack(list(spectra["sigma_max"].values()))),
      "pascanu_bound": spectra["pascanu_bound"],
      "lyapunov": jnp.mean(lyapunov[..., 0]),
    }

  return diagnose


def _host_zeros(abstract: PyTree, leading: int) -> PyTree:
  return jax.tree.map(lambda s: np.zeros((leading, *s.shape), s.dtype), abstract)


# --------------------------------------------------------------------------
# Progress.
# --------------------------------------------------------------------------


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "?"
  seconds = int(round(seconds))
  if seconds < 60:
    return f"{seconds}s"
  if seconds < 3600:
    return f"{seconds // 60}m{seconds % 60:02d}s"
  return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclasses.dataclass
class Progress:
  """Progress lines with an ETA: for the current group (its members) and the whole sweep.

  Work is counted in member-steps times T (what a group's step costs grows with
  its members and T); the rate is measured on this run's own chunks.
  """

  total_work: float
  write: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)
  done_work: float = 0.0
  busy_seconds: float = 0.0

  def update(self, prefix: str, group_left: float, line: str, work: float, seconds: float):
    self.done_work += work
    self.busy_seconds += seconds
    rate = self.done_work / self.busy_seconds if self.busy_seconds > 0 else float("nan")
    eta_group = group_left / rate if rate > 0 else float("inf")
    eta_sweep = (self.total_work - self.done_work) / rate if rate > 0 else float("inf")
    self.write(f"{prefix} {line} | ETA group {_duration(eta_group)}, sweep {_duration(eta_sweep)}")

  def skip(self, work: float) -> None:
    self.total_work -= work


# --------------------------------------------------------------------------
# Running a group.
# --------------------------------------------------------------------------


class GroupResult(NamedTuple):
  """A finished group on the host; every leaf has the group's members first."""

  group: Group
  records: dict[str, np.ndarray]  # (N, num_steps) per-step metrics
  finish: dict[str, np.ndarray]  # (N,) diverged_at, eval_loss, eval_metric, solved
  init_finish: dict[str, np.ndarray]  # the same evaluation at initialisation
  init: dict[str, np.ndarray]  # diagnostics at initialisation
  trained: dict[str, np.ndarray]  # diagnostics after training
  baseline: float
  task: str


def _hparams(ms: Sequence[Member]) -> train_lib.HParams:
  f32 = lambda values: np.asarray(values, np.float32)  # noqa: E731
  return train_lib.HParams(
    learning_rate=f32([m.lr for m in ms]),
    gain=f32([m.gain for m in ms]),
    clip=f32([m.clip for m in ms]),
  )


def _keys(seeds: Sequence[int]) -> Array:
  return jax.random.key_data(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)))


class Programs(NamedTuple):
  """The compiled pieces of one ``(cell, T)``, each vmapped over members (jit caches by shape).

  ``init(key_data, hp) -> TrainState``; ``diagnose(params, key_data) -> dict``
  (at initialisation, after training and in the gain scan); ``chunk(state,
  key_data, hp, steps) -> (state, records)`` (donates ``state``); ``finish(state,
  key_data, hp) -> dict``, the held-out evaluation (at initialisation and after
  training). ``abstract`` holds one member's shapes of ``state``, ``diagnose``,
  ``records`` and ``finish``.
  """

  trainer: train_lib.Trainer
  init: Callable
  diagnose: Callable
  chunk: Callable
  finish: Callable
  abstract: dict[str, Any]


_PROGRAMS: dict[Any, Programs] = {}
_INITS: dict[Any, Callable] = {}
_PROGRAMS_LOCK = threading.Lock()


def programs(config: ml_collections.ConfigDict, cell: str, T: int, mesh) -> Programs:
  """The :class:`Programs` of ``(cell, T)`` on ``mesh``, built once per process.

  The init program depends only on the cell and the task's input and output
  sizes, so groups of one cell share it across T.
  """
  cache_key = (config_json(config), cell, T, mesh)
  with _PROGRAMS_LOCK:
    if cache_key not in _PROGRAMS:
      _PROGRAMS[cache_key] = _build_programs(config, cell, T, mesh)
    return _PROGRAMS[cache_key]


def _build_programs(config: ml_collections.ConfigDict, cell: str, T: int, mesh) -> Programs:
  trainer = train_lib.make_trainer(train_config(config, cell, T))
  diagnose = make_diagnose(config, trainer, cell, T)
  wrap = jax.random.wrap_key_data
  P = jax.sharding.PartitionSpec
  out = jax.sharding.NamedSharding(mesh, P("sweep"))

  def per_device(fn, donate=(), replicated=0):
    # shard_map: every device runs the plain vmapped program on its own block of members
    # (see _Waves: the block has the same size on every device and in every call).
    def wrapped(*args):
      in_specs = (P("sweep"),) * (len(args) - replicated) + (P(),) * replicated
      return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=P("sweep"), check_vma=False)(
        *args
      )

    return jax.jit(wrapped, out_shardings=out, donate_argnums=donate)

  init_key = (config_json(config), cell, trainer.model.input_size, trainer.model.output_size, mesh)
  if init_key not in _INITS:
    _INITS[init_key] = per_device(lambda key_data, hp: jax.vmap(trainer.init)(wrap(key_data), hp))

  def diagnose_all(params, key_data):
    return jax.vmap(diagnose)(params, wrap(key_data))

  def finish_all(state, key_data, hp):
    return jax.vmap(trainer.finish)(state, wrap(key_data), hp)

  def chunk_all(state, key_data, hp, steps):
    return jax.vmap(trainer.run, in_axes=(0, 0, 0, None))(state, wrap(key_data), hp, steps)

  one_key = jax.ShapeDtypeStruct(jax.random.key_data(jax.random.key(0)).shape, jnp.uint32)
  one_hp = train_lib.HParams(*(jax.ShapeDtypeStruct((), jnp.float32),) * 3)
  state = jax.eval_shape(lambda k, h: trainer.init(wrap(k), h), one_key, one_hp)
  steps = jax.ShapeDtypeStruct((1,), jnp.int32)
  abstract = {
    "state": state,
    "diagnose": jax.eval_shape(lambda p, k: diagnose(p, wrap(k)), state.params, one_key),
    "records": jax.eval_shape(lambda *a: trainer.run(*a)[1], state, one_key, one_hp, steps),
    "finish": jax.eval_shape(lambda s, k, h: trainer.finish(s, wrap(k), h), state, one_key, one_hp),
  }
  return Programs(
    trainer,
    _INITS[init_key],
    per_device(diagnose_all),
    per_device(chunk_all, donate=0, replicated=1),
    per_device(finish_all),
    abstract,
  )


def compile_ahead(
  config: ml_collections.ConfigDict, cell: str, T: int, mesh, *, train: bool = True
) -> None:
  """Compiles the programs a group (or a gain scan) of ``(cell, T)`` will call (one wave's shapes).

  Ahead-of-time (``jit(...).lower(...).compile()``), which fills the same
  cache the later calls hit, so a background thread can compile the next
  groups while the current one trains (XLA compiles without the GIL). With
  ``train=False`` only the init and diagnostics programs (the gain scan).
  """
  prog = programs(config, cell, T, mesh)
  waves = _Waves(mesh, 1, config.run.members_per_block)

  def sharded(tree):
    return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct((waves.width, *s.shape), s.dtype, sharding=waves.sharding),
      tree,
    )

  one_key = jax.ShapeDtypeStruct(jax.random.key_data(jax.random.key(0)).shape, jnp.uint32)
  key_data = sharded(one_key)
  hp = sharded(train_lib.HParams(*(jax.ShapeDtypeStruct((), jnp.float32),) * 3))
  state = sharded(prog.abstract["state"])
  prog.init.lower(key_data, hp).compile()
  prog.diagnose.lower(state.params, key_data).compile()
  if not train:
    return
  num_steps, chunk = config.train.num_steps, config.run.chunk_steps
  for length in sorted({min(chunk, num_steps), num_steps % chunk} - {0}):
    prog.chunk.lower(state, key_data, hp, jax.ShapeDtypeStruct((length,), jnp.int32)).compile()
  prog.finish.lower(state, key_data, hp).compile()


def run_group(
  config: ml_collections.ConfigDict,
  group: Group,
  mesh: jax.sharding.Mesh,
  store: store_lib.Store | None,
  progress: Progress,
  prefix: str,
) -> GroupResult:
  """Trains one group to the end, resuming from and saving to ``store``."""
  prog = programs(config, group.cell, group.T, mesh)
  trainer = prog.trainer
  num_steps, chunk = config.train.num_steps, config.run.chunk_steps
  n = len(group.members)
  waves = _Waves(mesh, n, config.run.members_per_block)
  key_dev = waves.put(np.asarray(_keys([m.seed for m in group.members])))
  hp_dev = waves.put(_hparams(group.members))
  records = jax.tree.map(lambda s: np.zeros((n, num_steps), s.dtype), prog.abstract["records"])
  target = {
    "state": _host_zeros(prog.abstract["state"], n),
    "records": records,
    "init": _host_zeros(prog.abstract["diagnose"], n),
    "trained": _host_zeros(prog.abstract["diagnose"], n),
    "finish": _host_zeros(prog.abstract["finish"], n),
    "init_finish": _host_zeros(prog.abstract["finish"], n),
  }
  work_per_step = n * group.T
  restored = store.restore(target) if store is not None else None
  if restored is not None and restored[1].get("done"):
    tree = restored[0]
    progress.skip(work_per_step * num_steps)
    progress.write(f"{prefix} {group.name}: finished earlier, read back from its checkpoint")
    return _result(config, group, trainer, tree)

  def each(fn, *per_wave, fixed=()):
    # One wave in flight at a time. With several multi-device CPU programs queued at once,
    # a program mixing LAPACK calls (eig, QR) with large matmuls hung for good (seen with
    # the evaluation and the diagnostics fused into one program, 3 waves, 2 devices);
    # waiting for each wave costs a few ms per chunk and leaves nothing queued.
    return [jax.block_until_ready(fn(*args, *fixed)) for args in zip(*per_wave, strict=True)]

  if restored is not None:
    tree, meta = restored
    start = int(meta["next_step"])
    progress.skip(work_per_step * start)
    progress.write(f"{prefix} {group.name}: resuming at step {start}/{num_steps}")
    state = waves.put(tree["state"])
  else:
    tree, start = target, 0
    tick = time.perf_counter()
    state = each(prog.init, key_dev, hp_dev)
    tree["init"] = waves.get(each(prog.diagnose, [s.params for s in state], key_dev))
    tree["init_finish"] = waves.get(each(prog.finish, state, key_dev, hp_dev))
    progress.write(
      f"{prefix} {group.name}: {n} members in {len(waves.slices)} wave(s) of {waves.width} on "
      f"{mesh.size} device(s), initialised in {time.perf_counter() - tick:.1f}s"
    )

  last_save = time.perf_counter()
  step = start
  while step < num_steps:
    size = min(chunk, num_steps - step)
    tick = time.perf_counter()
    steps = jnp.arange(step, step + size, dtype=jnp.int32)
    outs = each(prog.chunk, state, key_dev, hp_dev, fixed=(steps,))
    state = [o[0] for o in outs]
    for name, values in waves.get([o[1] for o in outs]).items():
      tree["records"][name][:, step : step + size] = values
    step += size
    seconds = time.perf_counter() - tick
    loss = tree["records"]["loss"][:, step - size : step]
    with np.errstate(all="ignore"), warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)
      line = (
        f"{group.name}: step {step}/{num_steps} ({seconds:.2f}s), "
        f"median loss {np.nanmedian(loss):.4g}"
      )
    progress.update(prefix, work_per_step * (num_steps - step), line, work_per_step * size, seconds)
    if store is not None and step < num_steps:
      now = time.perf_counter()
      # Process 0's clock decides for all: saving gathers the state, a collective.
      if multihost.agree(now - last_save >= config.run.checkpoint_seconds):
        tree["state"] = waves.get(state)
        store.save(step, tree, {"next_step": step, "done": False})
        last_save = now

  tree["finish"] = waves.get(each(prog.finish, state, key_dev, hp_dev))
  tree["trained"] = waves.get(each(prog.diagnose, [s.params for s in state], key_dev))
  tree["state"] = waves.get(state)
  if store is not None:
    store.save(num_steps, tree, {"next_step": num_steps, "done": True})
  return _result(config, group, trainer, tree)


def _result(config, group: Group, trainer: train_lib.Trainer, tree: dict) -> GroupResult:
  return GroupResult(
    group,
    {k: np.asarray(v) for k, v in tree["records"].items()},
    {k: np.asarray(v) for k, v in tree["finish"].items()},
    {k: np.asarray(v) for k, v in tree["init_finish"].items()},
    {k: np.asarray(v) for k, v in tree["init"].items()},
    {k: np.asarray(v) for k, v in tree["trained"].items()},
    float(trainer.task.baseline),
    config.task.name,
  )


def run_gain_scan(
  config: ml_collections.ConfigDict, cell_name: str, mesh: jax.sharding.Mesh
) -> dict[str, np.ndarray]:
  """Untrained diagnostics of ``cell_name`` over ``diagnostics.gain_scan`` x its seeds.

  Runs the programs of the group ``(cell, T)`` (the init and the diagnostics),
  so they compile once when the scan's T is a sweep T and its size matches.
  """
  prog = programs(config, cell_name, gain_scan_length(config), mesh)
  gains = config.diagnostics.gain_scan
  grid = list(itertools.product(gains, range(config.diagnostics.gain_scan_seeds)))
  waves = _Waves(mesh, len(grid), config.run.members_per_block)
  gain = np.asarray([g for g, _ in grid], np.float32)
  hp = train_lib.HParams(np.full_like(gain, config.train.learning_rate), gain, np.zeros_like(gain))
  key_data = waves.put(np.asarray(_keys([s for _, s in grid])))
  hp_dev = waves.put(hp)
  states = [jax.block_until_ready(prog.init(k, h)) for k, h in zip(key_data, hp_dev, strict=True)]
  pairs = zip(states, key_data, strict=True)
  result = waves.get([jax.block_until_ready(prog.diagnose(s.params, k)) for s, k in pairs])
  result.pop("log_grad_norms")
  result["gain"] = gain
  result["seed"] = np.asarray([s for _, s in grid])
  return result


# --------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------


def _fmt(value: Any) -> str:
  if isinstance(value, bool | np.bool_):
    return str(bool(value))
  if isinstance(value, int | np.integer):
    return str(int(value))
  if isinstance(value, float | np.floating):
    return format(float(value), ".9g")
  return str(value)


def _csv(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(columns)
  for row in rows:
    writer.writerow([_fmt(v) for v in row])
  return buffer.getvalue()


write_atomic = workdir_lib.write_text_atomic


def steps_to_solve(task: Any, loss_N: np.ndarray, metric_N: np.ndarray, window: int) -> int:
  """First update count whose trailing ``window`` mean loss and metric meet ``task.solved``.

  ``-1`` if never; a step whose trailing window holds a NaN does not count.
  """
  size = loss_N.shape[0]
  if size < window:
    return -1
  kernel = np.ones(window) / window
  with np.errstate(all="ignore"):
    mean_loss = np.convolve(loss_N.astype(np.float64), kernel, mode="valid")
    mean_metric = np.convolve(metric_N.astype(np.float64), kernel, mode="valid")
  ok = np.array(task.solved(jnp.asarray(mean_loss), jnp.asarray(mean_metric)), bool)
  ok &= np.isfinite(mean_loss) & np.isfinite(mean_metric)
  hits = np.flatnonzero(ok)
  return int(hits[0] + window) if hits.size else -1


def horizon_censored(diag: dict[str, np.ndarray], i: int) -> bool:
  """Whether member ``i``'s ``memory_horizon`` is censored: it equals the largest lag measured.

  Then the norm never fell below ``diagnostics.horizon_fraction`` of its lag-0 value
  within the window, and the true horizon is at least that lag, not that lag.
  """
  largest = diag["log_grad_norms"][i].shape[-1] - 1
  return bool(int(diag["memory_horizon"][i]) >= largest)


def summary_rows(config: ml_collections.ConfigDict, result: GroupResult) -> list[list[Any]]:
  """One row of :data:`SUMMARY_COLUMNS` per member of a finished group."""
  task = tasks_lib.get(config.task.name, result.group.T, **dict(config.task.kwargs))
  rows = []
  for i, m in enumerate(result.group.members):
    rec = {k: v[i] for k, v in result.records.items()}
    fin = {k: v[i] for k, v in result.finish.items()}
    rows.append(
      [
        m.index,
        result.group.name,
        m.cell,
        result.task,
        m.T,
        config.model.hidden_size,
        m.gain,
        m.lr,
        m.clip,
        m.seed,
        float(fin["eval_loss"]),
        float(fin["eval_metric"]),
        float(result.init_finish["eval_loss"][i]),
        result.baseline,
        bool(fin["solved"]),
        steps_to_solve(task, rec["loss"], rec["metric"], config.train.solve_window),
        int(fin["diverged_at"]),
        float(np.mean(rec["clipped"])),
        float(result.init["decay_rate"][i]),
        float(result.trained["decay_rate"][i]),
        int(result.init["memory_horizon"][i]),
        horizon_censored(result.init, i),
        int(result.trained["memory_horizon"][i]),
        horizon_censored(result.trained, i),
        float(result.init["spectral_radius"][i]),
        float(result.trained["spectral_radius"][i]),
        float(result.init["lyapunov"][i]),
        float(result.trained["lyapunov"][i]),
      ]
    )
  return rows


def write_tables(
  config: ml_collections.ConfigDict,
  workdir: str,
  results: Sequence[GroupResult],
  gain_scan: dict[str, dict[str, np.ndarray]],
) -> list[str]:
  """Writes ``summary.csv``, ``metrics.csv``, ``gradients.csv``, ``gain_scan.csv``; returns paths.

  ``metrics.csv`` holds every ``run.metrics_every``-th step (and the last).
  """
  summary, metrics, gradients = [], [], []
  every = config.run.metrics_every
  for result in sorted(results, key=lambda r: r.group.members[0].index):
    summary.extend(summary_rows(config, result))
    num_steps = result.records["loss"].shape[1]
    kept = sorted(set(range(0, num_steps, every)) | {num_steps - 1})
    for i, m in enumerate(result.group.members):
      ident = [getattr(m, c if c != "member" else "index") for c in MEMBER_COLUMNS]
      columns = [result.records[name][i] for name in METRIC_COLUMNS]
      metrics.extend([*ident, s, *(c[s] for c in columns)] for s in kept)
      for phase, diag in (("init", result.init), ("trained", result.trained)):
        logs = diag["log_grad_norms"][i]
        gradients.extend([*ident, phase, lag, logs[lag]] for lag in range(logs.shape[0]))
  scan_rows = []
  T = gain_scan_length(config)
  for cell, scan in gain_scan.items():
    for j in range(scan["gain"].shape[0]):
      scan_rows.append([cell, T, *(scan[c][j] for c in GAIN_SCAN_COLUMNS[2:])])
  tables = {
    "summary.csv": _csv(SUMMARY_COLUMNS, summary),
    "metrics.csv": _csv((*MEMBER_COLUMNS, "step", *METRIC_COLUMNS), metrics),
    "gradients.csv": _csv((*MEMBER_COLUMNS, "phase", "lag", "log_grad_norm"), gradients),
    "gain_scan.csv": _csv(GAIN_SCAN_COLUMNS, scan_rows),
  }
  paths = []
  for name, text in tables.items():
    path = os.path.join(workdir, name)
    write_atomic(path, text)
    paths.append(path)
  return paths


# --------------------------------------------------------------------------
# The workdir and the whole sweep.
# --------------------------------------------------------------------------


def config_json(config: ml_collections.ConfigDict) -> str:
  """The resolved config as indented JSON (what ``workdir/config.json`` holds)."""
  return json.dumps(config.to_dict(), indent=2, sort_keys=True, default=str) + "\n"


def prepare_workdir(
  workdir: str,
  config: ml_collections.ConfigDict,
  mesh: jax.sharding.Mesh,
  *,
  overwrite: bool = False,
  write: Callable[[str], None] | None = None,
) -> None:
  """Readies a locked ``workdir`` for ``config`` before any work (see :mod:`rnnlab.workdir`).

  Refuses a workdir bound to other settings (the config apart from
  :data:`RUN_ONLY_FIELDS`, the device count, the XLA flags, the jax/jaxlib
  versions and platform) unless ``overwrite``, which first deletes the old
  outputs; clears a killed run's temporary files; checks that every folder the
  sweep writes accepts a file; then records the config and environment.

  Raises:
    rnnlab.workdir.WorkdirError: one line saying what is wrong and how to proceed.
  """
  write = write or (lambda line: print(line, file=sys.stderr, flush=True))
  here = json.loads(config_json(config))
  env = workdir_lib.environment(mesh.size)
  if overwrite:
    removed = workdir_lib.remove_outputs(workdir)
    if removed:
      write(f"--overwrite: removed {len(removed)} earlier outputs of {workdir}")
  workdir_lib.check_binding(workdir, here, env, ignore=[f"run.{f}" for f in RUN_ONLY_FIELDS])
  stale = workdir_lib.clear_stale(workdir)
  if stale:
    write(f"removed {len(stale)} temporary files left by an interrupted run")
  folders = ["", workdir_lib.CHECKPOINTS]
  if config.run.plots:
    folders.append("figures")
  workdir_lib.check_writable(workdir, folders)
  workdir_lib.bind(workdir, here, env)


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  write: Callable[[str], None] | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) the whole sweep of a resolved ``config`` into ``workdir``.

  Args:
    config: from :func:`resolve`.
    workdir: from :func:`prepare_workdir`.
    write: where progress lines go (default: stderr).

  Returns:
    ``{"results": [GroupResult...], "gain_scan": {cell: columns}, "paths": [...]}``.
  """
  if write is None and not multihost.is_primary():
    write = lambda line: None  # noqa: E731  (process 0 reports for a multi-process launch)
  progress_kwargs = {} if write is None else {"write": write}
  mesh = make_mesh(config.run.devices)
  all_groups = groups(config)
  total = sum(len(g.members) * g.T * config.train.num_steps for g in all_groups)
  progress = Progress(total_work=total, **progress_kwargs)
  primary = jax.process_index() == 0
  checkpoints = os.path.join(workdir, "checkpoints")
  progress.write(
    f"sweep: {len(members(config))} members in {len(all_groups)} groups on {mesh.size} "
    f"{mesh.devices.flat[0].platform} device(s); workdir {workdir}"
  )

  # Compile ahead, in order of use, on background threads while earlier work runs.
  num_steps = config.train.num_steps
  scan_cells = config.sweep.cell if config.diagnostics.gain_scan else ()
  jobs = [
    (f"gain_scan_{cell}", 0, (cell, gain_scan_length(config)), False) for cell in scan_cells
  ] + [(g.name, num_steps, (g.cell, g.T), True) for g in all_groups]
  threads = config.run.compile_threads
  executor = concurrent.futures.ThreadPoolExecutor(max(threads, 1)) if threads else None
  ahead = {}
  for name, final_step, args, train in jobs:
    if executor is not None and _latest_step(os.path.join(checkpoints, name)) != final_step:
      ahead[name] = executor.submit(compile_ahead, config, *args, mesh, train=train)

  def ready(name: str) -> None:
    if name in ahead:
      ahead.pop(name).result()  # re-raises a compile error here

  try:
    gain_scan: dict[str, dict[str, np.ndarray]] = {}
    for cell in scan_cells:
      store = multihost.PrimaryStore(
        os.path.join(checkpoints, f"gain_scan_{cell}"), write=progress.write
      )
      try:
        restored = store.restore(_gain_scan_target(config, cell, mesh))
        if restored is not None:
          gain_scan[cell] = {k: np.asarray(v) for k, v in restored[0].items()}
        else:
          tick = time.perf_counter()
          ready(f"gain_scan_{cell}")
          gain_scan[cell] = run_gain_scan(config, cell, mesh)
          store.save(0, gain_scan[cell], {"done": True})
          progress.write(
            f"gain scan {cell}: {len(config.diagnostics.gain_scan)} gains at "
            f"T={gain_scan_length(config)} in {time.perf_counter() - tick:.1f}s"
          )
      finally:
        store.close()

    results = []
    paths: list[str] = []
    for i, group in enumerate(all_groups):
      ready(group.name)
      store = multihost.PrimaryStore(os.path.join(checkpoints, group.name), write=progress.write)
      try:
        prefix = f"[{i + 1}/{len(all_groups)}]"
        results.append(run_group(config, group, mesh, store, progress, prefix))
      finally:
        store.close()
      if primary:
        paths = write_tables(config, workdir, results, gain_scan)
  finally:
    if executor is not None:
      executor.shutdown(wait=False, cancel_futures=True)
  return {"results": results, "gain_scan": gain_scan, "paths": paths}


def _latest_step(directory: str) -> int | None:
  """The newest finished checkpoint step in an orbax folder (None if none)."""
  if not os.path.isdir(directory):
    return None
  steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
  return max(steps, default=None)


def _gain_scan_target(config: ml_collections.ConfigDict, cell: str, mesh) -> dict[str, np.ndarray]:
  """The shapes :func:`run_gain_scan` returns (what its checkpoint is restored into)."""
  size = len(config.diagnostics.gain_scan) * config.diagnostics.gain_scan_seeds
  abstract = dict(programs(config, cell, gain_scan_length(config), mesh).abstract["diagnose"])
  abstract.pop("log_grad_norms")
  target = _host_zeros(abstract, size)
  target["gain"] = np.zeros((size,), np.float32)
  target["seed"] = np.zeros((size,), np.int64)
  return target
