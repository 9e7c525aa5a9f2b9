r"""The driver of a sweep: every group trained in checkpointed chunks, resumable, into tables.

:func:`run` takes a resolved experiment config (:func:`rnnlab.runner.config.resolve`)
and its :class:`rnnlab.runner.grid.Plan`, and runs the groups one after another,
each as one compiled program vmapped over its members and sharded over the
devices (:mod:`rnnlab.runner.programs`, :mod:`rnnlab.runner.devices`), while
background threads compile the next groups' programs.

Each group trains in chunks of ``config.run.chunk_steps`` updates
(:class:`rnnlab.train.Trainer`). Between chunks its whole state (parameters,
optimizer state, per-step records so far, diagnostics at initialisation) can
be saved as a verified checkpoint (:class:`rnnlab.store.Store`) under
``workdir/checkpoints/<group>``; a killed sweep launched again restores each
group's latest checkpoint and goes on with the same chunks, so it ends bitwise
equal to an uninterrupted run; finished groups are read back, not recomputed.
Every table is written to a temporary file and renamed, so nothing
half-written is ever read back.

Outputs (:mod:`rnnlab.runner.tables` defines their columns): ``summary.csv``
(one row per member, one column per swept field), ``metrics.csv`` (per-step
training metrics), ``gradients.csv`` (``ln ||dL/dh_t||`` against the lag, at
initialisation and trained) and, when ``config.diagnostics.gain_scan`` names
gains, ``gain_scan.csv`` (untrained diagnostics as the recurrent gain sweeps).

Keys: member ``seed`` s runs :mod:`rnnlab.train` with ``jax.random.key(s)``, so
the members of one seed share their data stream and initial draws across every
other axis (common random numbers).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import multihost
from rnnlab import workdir as workdir_lib
from rnnlab.runner import config as config_lib
from rnnlab.runner import devices as devices_lib
from rnnlab.runner import grid as grid_lib
from rnnlab.runner import programs as programs_lib
from rnnlab.runner import tables as tables_lib
from rnnlab.runner.progress import Progress

Array = jax.Array
PyTree = Any


class GroupResult(NamedTuple):
  """A finished group on the host; every leaf has the group's members first."""

  group: grid_lib.Group
  records: dict[str, np.ndarray]  # (N, num_steps) per-step metrics
  finish: dict[str, np.ndarray]  # (N,) diverged_at, eval_loss, eval_metric, solved
  init_finish: dict[str, np.ndarray]  # the same evaluation at initialisation
  init: dict[str, np.ndarray] | None  # diagnostics at initialisation (None: not measured)
  trained: dict[str, np.ndarray] | None  # diagnostics after training (None: not measured)
  task: Any  # the training task (baseline, solved)
  has_parts: bool  # whether the cell has CellParts (else those diagnostics are n/a)


class Unit(NamedTuple):
  """A group, or a cell's gain scan, with what it runs on."""

  name: str
  tc: ml_collections.ConfigDict  # the training config of its program
  traced: tuple[str, ...]
  layout: devices_lib.Layout
  mesh: jax.sharding.Mesh


def _keys(seeds: Sequence[int]) -> Array:
  return jax.random.key_data(jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32)))


def _host_zeros(abstract: PyTree, leading: int) -> PyTree:
  return jax.tree.map(lambda s: np.zeros((leading, *s.shape), s.dtype), abstract)


def _hp_arrays(tc: ml_collections.ConfigDict, values: dict[str, list]) -> dict[str, np.ndarray]:
  dtypes = programs_lib.hparams_dtypes(tc, list(values))
  return {p: np.asarray(v, dtypes[p]) for p, v in values.items()}


def _units(config, plan: grid_lib.Plan, mesh) -> tuple[list[Unit], list[tuple[str, Unit]]]:
  """Each group's :class:`Unit`, and ``(cell, unit)`` of each swept cell's gain scan."""
  shrink = jax.process_count() == 1
  block = config.run.members_per_block

  def unit(name, tc, traced, size):
    layout = devices_lib.layout(size, mesh.size, block, shrink=shrink)
    return Unit(name, tc, traced, layout, devices_lib.submesh(mesh, layout.devices))

  groups = [
    unit(g.name, grid_lib.program_config(config, g), g.traced, len(g.members)) for g in plan.groups
  ]
  scans = []
  d = config.diagnostics
  if d.gain_scan:
    size = len(d.gain_scan) * d.gain_scan_seeds
    for cell, group in grid_lib.gain_scan_groups(config, plan):
      tc = grid_lib.with_values(
        grid_lib.program_config(config, group), [("task.length", gain_scan_length(config))]
      )
      name = f"gain_scan_{grid_lib.short_name(cell)}"
      scans.append((cell, unit(name, tc, group.traced, size)))
  return groups, scans


def gain_scan_length(config: ml_collections.ConfigDict) -> int:
  """The T of the untrained gain scan: ``diagnostics.gain_scan_T`` or the largest swept T."""
  members = grid_lib.members(config)
  return config.diagnostics.gain_scan_T or max(grid_lib.length(config, m) for m in members)


# --------------------------------------------------------------------------
# Running a group and a gain scan.
# --------------------------------------------------------------------------


def run_group(
  config: ml_collections.ConfigDict,
  group: grid_lib.Group,
  unit: Unit,
  store: multihost.PrimaryStore | None,
  progress: Progress,
  prefix: str,
) -> GroupResult:
  """Trains one group to the end, resuming from and saving to ``store``."""
  prog = programs_lib.programs(config, unit.tc, unit.traced, unit.mesh)
  phases = config.diagnostics.phases
  num_steps, chunk = unit.tc.num_steps, programs_lib.chunk_steps(config, unit.tc)
  n = len(group.members)
  waves = devices_lib.Waves(unit.mesh, unit.layout)
  key_dev = waves.put(np.asarray(_keys([m.seed for m in group.members])))
  hp_dev = waves.put(_hp_arrays(unit.tc, grid_lib.hparams(config, group)))
  records = jax.tree.map(lambda s: np.zeros((n, num_steps), s.dtype), prog.abstract["records"])
  target = {
    "state": _host_zeros(prog.abstract["state"], n),
    "records": records,
    "finish": _host_zeros(prog.abstract["finish"], n),
    "init_finish": _host_zeros(prog.abstract["finish"], n),
  }
  for phase in phases:
    target[phase] = _host_zeros(prog.abstract["diagnose"], n)
  work_per_step = n * unit.tc.task.length
  restored = store.restore(target) if store is not None else None
  if restored is not None and restored[1].get("done"):
    tree = restored[0]
    progress.skip(work_per_step * num_steps)
    progress.write(f"{prefix} {group.name}: finished earlier, read back from its checkpoint")
    return _result(group, prog, tree)

  def each(fn, *per_wave, fixed=()):
    # One wave in flight at a time: nothing queued behind a wave, at a few ms per chunk.
    # (Batched LAPACK calls on several CPU devices at once hang jaxlib 0.10's thread pool
    # whatever the queue: the programs take theirs from rnnlab.linalg, one matrix a call.)
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
    if "init" in phases:
      tree["init"] = waves.get(each(prog.diagnose, [s.params for s in state], key_dev))
    tree["init_finish"] = waves.get(each(prog.finish, state, key_dev, hp_dev))
    progress.write(
      f"{prefix} {group.name}: {unit.layout.describe()}, initialised in "
      f"{time.perf_counter() - tick:.1f}s"
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
  if "trained" in phases:
    tree["trained"] = waves.get(each(prog.diagnose, [s.params for s in state], key_dev))
  tree["state"] = waves.get(state)
  if store is not None:
    store.save(num_steps, tree, {"next_step": num_steps, "done": True})
  return _result(group, prog, tree)


def _result(group: grid_lib.Group, prog: programs_lib.Programs, tree: dict) -> GroupResult:
  def host(name):
    return {k: np.asarray(v) for k, v in tree[name].items()} if name in tree else None

  return GroupResult(
    group,
    host("records"),
    host("finish"),
    host("init_finish"),
    host("init"),
    host("trained"),
    prog.trainer.task,
    prog.has_parts,
  )


def _scan_grid(config: ml_collections.ConfigDict) -> list[tuple[float, int]]:
  d = config.diagnostics
  return [(g, s) for g in d.gain_scan for s in range(d.gain_scan_seeds)]


def run_gain_scan(config: ml_collections.ConfigDict, unit: Unit) -> dict[str, np.ndarray]:
  """Untrained diagnostics of one cell over ``diagnostics.gain_scan`` x its seeds.

  Runs the init and diagnostics programs of the cell's first group at the scan's
  T, so they compile once when that T is a swept T and the sizes match.
  """
  prog = programs_lib.programs(config, unit.tc, unit.traced, unit.mesh)
  grid = _scan_grid(config)
  waves = devices_lib.Waves(unit.mesh, unit.layout)
  values = {}
  for path in unit.traced:
    value = grid_lib.field_value(unit.tc, path)
    values[path] = [0.0 if (path == "clip" and value is None) else value] * len(grid)
  values["model.gain"] = [g for g, _ in grid]
  key_data = waves.put(np.asarray(_keys([s for _, s in grid])))
  hp_dev = waves.put(_hp_arrays(unit.tc, values))
  states = [jax.block_until_ready(prog.init(k, h)) for k, h in zip(key_data, hp_dev, strict=True)]
  pairs = zip(states, key_data, strict=True)
  result = waves.get([jax.block_until_ready(prog.diagnose(s.params, k)) for s, k in pairs])
  result.pop("log_grad_norms")
  result["gain"] = np.asarray([g for g, _ in grid], np.float32)
  result["seed"] = np.asarray([s for _, s in grid])
  return result


def _gain_scan_target(config: ml_collections.ConfigDict, unit: Unit) -> dict[str, np.ndarray]:
  """The shapes :func:`run_gain_scan` returns (what its checkpoint is restored into)."""
  size = len(_scan_grid(config))
  prog = programs_lib.programs(config, unit.tc, unit.traced, unit.mesh)
  abstract = dict(prog.abstract["diagnose"])
  abstract.pop("log_grad_norms")
  target = _host_zeros(abstract, size)
  target["gain"] = np.zeros((size,), np.float32)
  target["seed"] = np.zeros((size,), np.int64)
  return target


# --------------------------------------------------------------------------
# Tables.
# --------------------------------------------------------------------------


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


def _diag_columns(result: GroupResult, i: int) -> dict[str, Any]:
  """The summary's diagnostic columns of member ``i`` (None where not measured or n/a)."""
  out = {}
  for phase, suffix in (("init", "_init"), ("trained", "")):
    diag = getattr(result, phase)
    parts = diag is not None and result.has_parts
    horizon = int(diag["memory_horizon"][i]) if parts else None
    out[f"decay_rate{suffix}"] = diag["decay_rate"][i] if parts else None
    out[f"memory_horizon{suffix}"] = horizon
    out[f"memory_horizon{suffix}_censored"] = horizon_censored(diag, i) if parts else None
    out[f"spectral_radius{suffix}"] = diag["spectral_radius"][i] if parts else None
    out[f"lyapunov{suffix}"] = diag["lyapunov"][i] if diag is not None else None
  return out


def summary_rows(config: ml_collections.ConfigDict, result: GroupResult) -> list[dict[str, Any]]:
  """One ``summary.csv`` row (a dict of its columns) per member of a finished group."""
  rows = []
  axes = list(config.sweep.axes)
  fin, init_fin = result.finish, result.init_finish
  for i, m in enumerate(result.group.members):
    rec = {k: v[i] for k, v in result.records.items()}

    def get(d, key, i=i):
      return d[key][i] if key in d else None  # a float32 is written with 9 digits

    row = {"member": m.index, "group": result.group.name}
    row.update(zip(axes, m.values, strict=True))
    row.update(
      seed=m.seed,
      cell=grid_lib.cell_name(config, m),
      T=grid_lib.length(config, m),
      final_loss=get(fin, "eval_loss"),
      final_metric=get(fin, "eval_metric"),
      initial_loss=get(init_fin, "eval_loss"),
      baseline=float(result.task.baseline),
      solved=bool(fin["solved"][i]) if "solved" in fin else None,
      steps_to_solve=steps_to_solve(
        result.task, rec["loss"], rec["metric"], config.report.solve_window
      ),
      diverged_at=int(fin["diverged_at"][i]),
      clip_fraction=float(np.mean(rec["clipped"])),
      **_diag_columns(result, i),
    )
    rows.append(row)
  return rows


def write_tables(
  config: ml_collections.ConfigDict,
  workdir: str,
  results: Sequence[GroupResult],
  gain_scan: dict[str, dict[str, np.ndarray]],
) -> list[str]:
  """Writes ``summary.csv``, ``metrics.csv``, ``gradients.csv`` (and ``gain_scan.csv``).

  Rows in member order; ``metrics.csv`` holds every ``run.metrics_every``-th step
  (and the last); ``gain_scan.csv`` is written when the gain scan is on. Returns
  the paths.
  """
  summary, metrics, gradients = [], {}, {}
  every = config.run.metrics_every
  names = [c for c in tables_lib.columns(tables_lib.METRICS) if c not in ("member", "step")]
  # Flossing's records, in every group when the sweep flosses (a traced weight is never looped).
  optional = [n for n in tables_lib.METRICS_OPTIONAL if any(n in r.records for r in results)]
  for result in results:
    summary.extend(summary_rows(config, result))
    num_steps = result.records["loss"].shape[1]
    kept = sorted(set(range(0, num_steps, every)) | {num_steps - 1})
    for i, m in enumerate(result.group.members):
      columns = [result.records[name][i] for name in names]
      nan = np.full((num_steps,), np.nan, np.float32)
      columns += [result.records[name][i] if name in result.records else nan for name in optional]
      metrics[m.index] = [[m.index, s, *(c[s] for c in columns)] for s in kept]
      gradients[m.index] = []
      for phase in tables_lib.PHASES:
        diag = getattr(result, phase)
        if diag is None or not result.has_parts:
          continue
        logs = diag["log_grad_norms"][i]
        gradients[m.index] += [[m.index, phase, lag, logs[lag]] for lag in range(logs.shape[0])]
  # Every table in member order (a group's members need not be consecutive).
  summary.sort(key=lambda row: row["member"])
  metrics = [row for index in sorted(metrics) for row in metrics[index]]
  gradients = [row for index in sorted(gradients) for row in gradients[index]]
  axes = list(config.sweep.axes)
  paths = [
    tables_lib.write_table(workdir, tables_lib.SUMMARY, summary, axes),
    tables_lib.write_table(workdir, tables_lib.METRICS, metrics, optional=optional),
    tables_lib.write_table(workdir, tables_lib.GRADIENTS, gradients),
  ]
  if config.diagnostics.gain_scan:
    scan_rows = []
    T = gain_scan_length(config)
    fields = [c for c in tables_lib.columns(tables_lib.GAIN_SCAN) if c not in ("cell", "T")]
    for cell, scan in gain_scan.items():
      for j in range(scan["gain"].shape[0]):
        row = {"cell": cell, "T": T, **{c: scan[c][j] for c in fields}}
        if int(row["memory_horizon"]) < 0:  # a cell without CellParts: n/a
          row["memory_horizon"] = None
        scan_rows.append(row)
    paths.append(tables_lib.write_table(workdir, tables_lib.GAIN_SCAN, scan_rows))
  return paths


# --------------------------------------------------------------------------
# The workdir and the whole sweep.
# --------------------------------------------------------------------------


def config_json(config: ml_collections.ConfigDict) -> str:
  """The resolved config as indented JSON (``workdir/config.json``); the axes in their order."""
  return json.dumps(config.to_dict(), indent=2, default=str) + "\n"


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
  :data:`rnnlab.runner.config.RUN_ONLY_FIELDS`, the order of the axes, the device
  count, the XLA flags, the jax/jaxlib versions and platform) unless
  ``overwrite``, which first deletes the old outputs; clears a killed run's
  temporary files; checks that every folder the sweep writes accepts a file;
  then records the config and environment.

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
  workdir_lib.check_binding(
    workdir, here, env, ignore=config_lib.RUN_ONLY_FIELDS, ordered=("sweep.axes",)
  )
  stale = workdir_lib.clear_stale(workdir)
  if stale:
    write(f"removed {len(stale)} temporary files left by an interrupted run")
  folders = ["", workdir_lib.CHECKPOINTS]
  if config.run.plots:
    folders.append("figures")
  workdir_lib.check_writable(workdir, folders)
  workdir_lib.bind(workdir, here, env)


def _latest_step(directory: str) -> int | None:
  """The newest finished checkpoint step in an orbax folder (None if none)."""
  if not os.path.isdir(directory):
    return None
  steps = [int(name) for name in os.listdir(directory) if name.isdigit()]
  return max(steps, default=None)


def run(
  config: ml_collections.ConfigDict,
  workdir: str,
  *,
  plan: grid_lib.Plan | None = None,
  write: Callable[[str], None] | None = None,
) -> dict[str, Any]:
  """Runs (or resumes) the whole sweep of a resolved ``config`` into ``workdir``.

  Args:
    config: from :func:`rnnlab.runner.config.resolve`.
    workdir: from :func:`prepare_workdir`.
    plan: from :func:`rnnlab.runner.grid.plan` (default: made here).
    write: where progress lines go (default: stderr).

  Returns:
    ``{"plan": Plan, "results": [GroupResult...], "gain_scan": {cell: columns},
    "paths": [...]}`` (``paths`` empty on every process but the first).
  """
  plan = plan or grid_lib.plan(config)
  if write is None and not multihost.is_primary():
    write = lambda line: None  # noqa: E731  (process 0 reports for a multi-process launch)
  progress_kwargs = {} if write is None else {"write": write}
  mesh = devices_lib.make_mesh(config.run.devices)
  units, scans = _units(config, plan, mesh)
  total = sum(u.layout.size * u.tc.task.length * u.tc.num_steps for u in units)
  progress = Progress(total_work=total, **progress_kwargs)
  primary = jax.process_index() == 0
  checkpoints = os.path.join(workdir, workdir_lib.CHECKPOINTS)
  padded = sum(u.layout.padded for u in units)
  progress.write(
    f"sweep: {grid_lib.describe(plan)}; on {mesh.size} {mesh.devices.flat[0].platform} "
    f"device(s), {padded} padded member(s) in all; workdir {workdir}"
  )

  # Compile ahead, in order of use, on background threads while earlier work runs.
  jobs = [(u, 0, False) for _, u in scans] + [(u, u.tc.num_steps, True) for u in units]
  threads = config.run.compile_threads
  executor = concurrent.futures.ThreadPoolExecutor(max(threads, 1)) if threads else None
  ahead = {}
  for u, final_step, train in jobs:
    if executor is not None and _latest_step(os.path.join(checkpoints, u.name)) != final_step:
      ahead[u.name] = executor.submit(
        programs_lib.compile_ahead, config, u.tc, u.traced, u.mesh, u.layout, train=train
      )

  def ready(name: str) -> None:
    if name in ahead:
      ahead.pop(name).result()  # re-raises a compile error here

  try:
    gain_scan: dict[str, dict[str, np.ndarray]] = {}
    for cell, u in scans:
      store = multihost.PrimaryStore(os.path.join(checkpoints, u.name), write=progress.write)
      try:
        restored = store.restore(_gain_scan_target(config, u))
        if restored is not None:
          gain_scan[cell] = {k: np.asarray(v) for k, v in restored[0].items()}
        else:
          tick = time.perf_counter()
          ready(u.name)
          gain_scan[cell] = run_gain_scan(config, u)
          store.save(0, gain_scan[cell], {"done": True})
          progress.write(
            f"gain scan {cell}: {len(config.diagnostics.gain_scan)} gains at "
            f"T={u.tc.task.length} ({u.layout.describe()}) in {time.perf_counter() - tick:.1f}s"
          )
      finally:
        store.close()

    results = []
    paths: list[str] = []
    for i, (group, u) in enumerate(zip(plan.groups, units, strict=True)):
      ready(u.name)
      store = multihost.PrimaryStore(os.path.join(checkpoints, u.name), write=progress.write)
      try:
        prefix = f"[{i + 1}/{len(units)}]"
        results.append(run_group(config, group, u, store, progress, prefix))
      finally:
        store.close()
      if primary:
        paths = write_tables(config, workdir, results, gain_scan)
  finally:
    if executor is not None:
      executor.shutdown(wait=False, cancel_futures=True)
  return {"plan": plan, "results": results, "gain_scan": gain_scan, "paths": paths}


__all__ = [
  "GroupResult",
  "Unit",
  "config_json",
  "gain_scan_length",
  "horizon_censored",
  "prepare_workdir",
  "run",
  "run_gain_scan",
  "run_group",
  "steps_to_solve",
  "summary_rows",
  "write_tables",
]
