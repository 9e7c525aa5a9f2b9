r"""The experiment runner: a sweep of RNN training runs over any fields, and its report.

    python -m experiments.run --workdir=runs/vanishing          # the flagship, default preset
    python -m experiments.run --config=experiments/configs/vanishing.py:quick --workdir=/tmp/q
    python -m experiments.run --config=experiments/configs/vanishing.py:cell=lstm,T=200 \
      --config.optimizer.learning_rate=3e-4 --workdir=runs/x
    python -m experiments.run --config=my_experiment.py:quick,model.hidden_size=32+64 \
      --config.sweep.axes="{'model.cell': ('lstm', 'mine.cells:my_cell')}" --workdir=runs/y

``--config`` takes any file whose ``get_config(arg)`` returns an experiment config
(:func:`rnnlab.runner.config.experiment_config`: the training config plus the
``sweep``, ``diagnostics``, ``run`` and ``report`` sections); the default is the
flagship, ``experiments/configs/vanishing.py``. Every field of the config can be
overridden with ``--config.<field>=<value>``, before or after ``--config`` (a
tuple as ``(1, 2)``, the axes as a dict; ``None`` where the field's comment gives
None a meaning); see the list below. Launched again with the same command, a
killed run resumes from its checkpoints and ends with the same results; finished
groups are read back.

Several processes (hosts, or GPUs) on one sweep: launch the same command once
per process with ``--coordinator=HOST:PORT --num_processes=N --process_id=I``
(all three, or none; HOST:PORT is where process 0 listens), or with
``--config.run.distributed=True`` and none of them, leaving it to
``jax.distributed.initialize()`` to read the cluster from the environment
(``JAX_COORDINATOR_ADDRESS``, SLURM's ``srun``, Open MPI's ``mpirun``). The
processes share one device mesh of ``run.devices`` devices (0: all; otherwise a
multiple of N, split evenly; a CPU host is split into ``run.devices / N`` XLA
devices per process, with gloo between processes) and compute the same tables
as one process with all the devices. Process 0 alone writes the workdir (its
lock, binding, checkpoints, tables, report) and prints the progress; the others
need no access to it. See docs/runner.md ("Several hosts") for a SLURM script.

A workdir has one writer at a time, is bound to the settings that made its
numbers (``config.json``, ``environment.json``; ``--overwrite`` discards them),
and every checkpoint is verified when it is restored (see docs/runner.md, "A workdir
never gives a wrong number").

Exit status, each failure one line on stderr that starts ``run: error:``:

* 0: the sweep is done, or ``--help`` (``-h``, ``--helpshort``, ``--helpfull``).
* 2: the command cannot run as given; nothing is written. A bad flag or setting
  (found before JAX is imported: an unknown flag or config field, with the
  nearest name; a value that does not parse as its field's type; an unknown
  preset or two presets in ``--config=<file>:<arg>``; a missing config file; an
  argument that is not a flag), a bad cell, task or size, or a workdir that is
  not a writable folder, is in use by another launch (named), or holds results
  of other settings (the differences listed).
* 3: a read or write failed mid-run (a full disk, a permission denied, a
  read-only file system), naming the path and the OS error; everything committed
  before is intact and the same command resumes once the cause is fixed.
* 4: another process of a multi-process launch ended mid-run (its own log says
  why); everything committed is intact and the same launch resumes.
* 130: interrupted (Ctrl-C); the same command resumes.
* 1: a bug (with its traceback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from typing import NamedTuple, NoReturn

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from experiments import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vanishing.py")


EXIT_USAGE = 2  # a bad flag or config, an unusable, busy or foreign workdir: before any work
EXIT_IO = 3  # a read or write failed mid-run (disk full, permission, read-only file system)
EXIT_LOST = 4  # another process of a multi-process launch ended mid-run


class RunnerFlags(NamedTuple):
  """The runner's flags, defined on ``flag_values`` by :func:`define_flags`."""

  flag_values: flags.FlagValues
  config: flags.FlagHolder
  workdir: flags.FlagHolder
  overwrite: flags.FlagHolder
  coordinator: flags.FlagHolder
  num_processes: flags.FlagHolder
  process_id: flags.FlagHolder
  argv: list[str]  # the command line parse_flags put in order: ml_collections reads the
  # --config.<field> overrides from here, not from sys.argv


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> RunnerFlags:
  """Defines ``--config`` (and its ``--config.<field>`` overrides) and ``--workdir``."""
  argv: list[str] = []  # empty until parse_flags: no overrides are parsed at definition
  config = config_flags.DEFINE_config_file(
    "config",
    _DEFAULT_CONFIG,
    "Experiment config file, optionally with ':<preset>,<key>=<value>,...' (e.g. "
    "experiments/configs/vanishing.py:quick or ...:cell=lstm,T=200,model.hidden_size=16+32). "
    "Fields can be overridden with --config.<field>=<value> (e.g. "
    "--config.optimizer.learning_rate=3e-4).",
    flag_values=flag_values,
    lock_config=True,
    sys_argv=argv,
  )
  workdir = flags.DEFINE_string(
    "workdir",
    "runs/vanishing",
    "Folder for the resolved config, checkpoints, tables, figures and report.md. "
    "Created if missing; rerun with the same folder to resume.",
    flag_values=flag_values,
  )
  overwrite = flags.DEFINE_bool(
    "overwrite",
    False,
    "Delete the workdir's earlier outputs (config.json, environment.json, checkpoints, "
    "tables, figures, report.md; nothing else) and start over: to reuse a workdir whose "
    "results were made with other settings.",
    flag_values=flag_values,
  )
  coordinator = flags.DEFINE_string(
    "coordinator",
    None,
    "Multi-process launch: HOST:PORT where process 0 runs the jax.distributed coordinator "
    "(with --num_processes and --process_id; all three or none).",
    flag_values=flag_values,
  )
  num_processes = flags.DEFINE_integer(
    "num_processes",
    None,
    "Multi-process launch: how many processes run this sweep together (one per host or GPU).",
    flag_values=flag_values,
  )
  process_id = flags.DEFINE_integer(
    "process_id",
    None,
    "Multi-process launch: this process's index in [0, num_processes); 0 writes the workdir.",
    flag_values=flag_values,
  )
  return RunnerFlags(
    flag_values, config, workdir, overwrite, coordinator, num_processes, process_id, argv
  )


_FLAGS = define_flags()
_CONFIG, _WORKDIR, _OVERWRITE = _FLAGS.config, _FLAGS.workdir, _FLAGS.overwrite


def parse_flags(argv: list[str], runner_flags: RunnerFlags | None = None) -> list[str]:
  """The runner's flags from ``argv`` (any order); a bad one is one line and exit status 2."""
  runner_flags = runner_flags or _FLAGS
  rest = cli.parse_flags(argv, runner_flags.flag_values, runner_flags.argv, _DEFAULT_CONFIG)
  cluster(runner_flags)  # checked with the other flags, before JAX starts
  return rest


def cluster(runner_flags: RunnerFlags | None = None):
  """The launch's :class:`rnnlab.multihost.Cluster` (``None``: no cluster flags); exit 2 if bad."""
  from rnnlab import multihost  # noqa: PLC0415  (imports no JAX at module level)

  runner_flags = runner_flags or _FLAGS
  try:
    return multihost.check_cluster(
      runner_flags.coordinator.value,
      runner_flags.num_processes.value,
      runner_flags.process_id.value,
    )
  except ValueError as e:
    _fail(str(e), EXIT_USAGE)


def _fail(message: str, status: int) -> NoReturn:
  print(f"run: error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def main(argv: list[str]) -> None:
  del argv
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  raw = _CONFIG.value
  from rnnlab.runner import config as config_lib  # noqa: PLC0415  (JAX-free)

  missing = [s for s in config_lib.SECTIONS if s not in raw]
  if missing:
    _fail(
      f"--config is not an experiment of the runner: it has no {', '.join(missing)} "
      "section(s); a config file of another command (e.g. experiments/configs/"
      "signal_propagation.py) runs with the command its docstring names",
      EXIT_USAGE,
    )
  import jax  # noqa: PLC0415  (after the flags: JAX must not start before)

  from rnnlab import multihost  # noqa: PLC0415
  from rnnlab import workdir as workdir_lib  # noqa: PLC0415
  from rnnlab.runner import devices, grid  # noqa: PLC0415
  from rnnlab.runner import run as runner  # noqa: PLC0415

  try:
    processes = multihost.initialize(cluster(), from_environment=raw.run.distributed)
  except ValueError as e:
    _fail(str(e), EXIT_USAGE)
  fail = _fail if processes == 1 else _fail_now
  try:
    devices.configure_devices(raw.run.devices, raw.run.cpu_opt_level, processes)
    config = config_lib.resolve(raw)
    plan = grid.plan(config)
    mesh = devices.make_mesh(config.run.devices)
    multihost.connect(mesh)
    primary = jax.process_index() == 0
    # Only process 0 touches the workdir (the others may not see it).
    workdir = workdir_lib.writable_folder(_WORKDIR.value) if primary else _WORKDIR.value
  except multihost.ProcessLostError as e:
    fail(f"{e}; launch the same command on every process to resume", EXIT_LOST)
  except (ValueError, AttributeError) as e:
    fail(str(e), EXIT_USAGE)
  except Exception:
    if processes == 1:
      raise
    _bug_now()
  try:
    with _claim(workdir_lib, multihost, workdir, primary) as lock:
      if lock is not None and lock.previous:
        p = lock.previous
        print(
          f"run: took over the lock of pid {p.get('pid')} on {p.get('host')} (since "
          f"{p.get('since')}), which ended without releasing it",
          file=sys.stderr,
        )
      _started(multihost, runner, workdir, config, mesh, primary)
      _run(runner, config, plan, workdir)
  except _OtherProcessError as e:
    fail(*e.args)
  except multihost.ProcessLostError as e:
    fail(f"{e}; launch the same command on every process to resume", EXIT_LOST)
  except workdir_lib.WorkdirError as e:
    fail(str(e), EXIT_USAGE)
  except OSError as e:
    fail(_os_error(e, workdir), EXIT_IO)
  except KeyboardInterrupt:
    fail("interrupted; what was committed is kept: launch the same command to resume", 130)
  except Exception:
    if processes == 1:
      raise
    _bug_now()


class _OtherProcessError(Exception):
  """Process 0 could not start the sweep: ``(message, status)``, for every other process."""


@contextlib.contextmanager
def _claim(workdir_lib, multihost, workdir: str, primary: bool):
  """Process 0 holds the workdir's lock for the launch (see :func:`_started`); others none."""
  if not primary:
    yield None
    return
  try:
    lock = workdir_lib.Lock(workdir).__enter__()
  except BaseException as e:
    _share_failure(multihost, e, workdir)
    raise
  try:
    yield lock
  finally:
    lock.__exit__(None, None, None)


def _started(multihost, runner, workdir: str, config, mesh, primary: bool) -> None:
  """Process 0 prepares the workdir; every process learns whether it could (a collective).

  Without it, the other processes of a launch whose workdir is refused would wait
  for process 0 in their first collective until jax's heartbeat timeout.
  """
  if primary:
    try:
      runner.prepare_workdir(workdir, config, mesh, overwrite=_OVERWRITE.value)
    except BaseException as e:
      _share_failure(multihost, e, workdir)
      raise
  outcome = multihost.broadcast(None)
  if outcome is not None and not primary:
    raise _OtherProcessError(*outcome)


def _share_failure(multihost, error: BaseException, workdir: str) -> None:
  """Process 0's start-up failure, as ``(line, status)``, to the others (several processes)."""
  if multihost.process_index() != 0 or not _multiprocess():
    return
  if isinstance(error, OSError):
    line, status = _os_error(error, workdir), EXIT_IO
  elif isinstance(error, ValueError):  # WorkdirError
    line, status = str(error), EXIT_USAGE
  elif isinstance(error, KeyboardInterrupt):
    line, status = "interrupted", 130
  else:
    line, status = f"failed: {type(error).__name__}: {error}", 1
  multihost.broadcast((f"process 0: {line}", status))


def _multiprocess() -> bool:
  import jax  # noqa: PLC0415

  return jax.process_count() > 1


def _bug_now() -> NoReturn:
  """A bug in a process of a multi-process launch: its traceback, then exit 1 at once.

  Raised on, it would wait in jax's shutdown barrier for the other processes,
  which wait for it in their next gather.
  """
  from rnnlab import multihost  # noqa: PLC0415

  traceback.print_exc()
  multihost.exit_now(1)


def _fail_now(message: str, status: int) -> NoReturn:
  """:func:`_fail` for a process of a multi-process launch: ends it at once (see multihost)."""
  from rnnlab import multihost  # noqa: PLC0415

  print(f"run: error: {message}", file=sys.stderr, flush=True)
  multihost.exit_now(status)


def _run(runner, config, plan, workdir: str) -> None:
  start = time.perf_counter()
  out = runner.run(config, workdir, plan=plan)
  if not out["paths"]:  # another host of a multi-host launch: process 0 writes
    return
  if config.run.plots:
    from rnnlab import report  # noqa: PLC0415

    out["paths"] += report.write_report(workdir)
  print(f"done in {time.perf_counter() - start:.0f}s: {len(out['paths'])} files in {workdir}")
  for path in out["paths"]:
    print(f"  {os.path.relpath(path, workdir)}")
  if config.run.plots:
    print(f"read {os.path.join(workdir, 'report.md')}")


def _os_error(error: OSError, workdir: str) -> str:
  """One line for a failed read or write: the path, the OS error, and what to do."""
  path = error.filename or workdir
  reason = error.strerror or str(error).strip().splitlines()[0]
  return (
    f"cannot write {path}: {reason} (errno {error.errno}); everything committed before is "
    "intact: fix the cause and launch the same command to resume"
  )


if __name__ == "__main__":
  app.run(main, flags_parser=parse_flags)
