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
groups are read back. Multi-host: set ``--config.run.distributed=True`` and launch
one process per host (``jax.distributed.initialize`` reads the cluster from the
environment).

A workdir has one writer at a time, is bound to the settings that made its
numbers (``config.json``, ``environment.json``; ``--overwrite`` discards them),
and every checkpoint is verified when it is restored (see README.md, "A workdir
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
* 130: interrupted (Ctrl-C); the same command resumes.
* 1: a bug (with its traceback).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from typing import NamedTuple, NoReturn

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from experiments import cli

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vanishing.py")

__doc__ += (  # noqa: A001  (absl prints the main module's docstring as --help)
  f"\nConfig fields of {os.path.relpath(_DEFAULT_CONFIG)} (defaults of the default preset):\n"
  + cli.help_fields(_DEFAULT_CONFIG)
  + "\n"
)

EXIT_USAGE = 2  # a bad flag or config, an unusable, busy or foreign workdir: before any work
EXIT_IO = 3  # a read or write failed mid-run (disk full, permission, read-only file system)


class RunnerFlags(NamedTuple):
  """The runner's flags, defined on ``flag_values`` by :func:`define_flags`."""

  flag_values: flags.FlagValues
  config: flags.FlagHolder
  workdir: flags.FlagHolder
  overwrite: flags.FlagHolder
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
  return RunnerFlags(flag_values, config, workdir, overwrite, argv)


_FLAGS = define_flags()
_CONFIG, _WORKDIR, _OVERWRITE = _FLAGS.config, _FLAGS.workdir, _FLAGS.overwrite


def parse_flags(argv: list[str], runner_flags: RunnerFlags | None = None) -> list[str]:
  """The runner's flags from ``argv`` (any order); a bad one is one line and exit status 2."""
  runner_flags = runner_flags or _FLAGS
  return cli.parse_flags(argv, runner_flags.flag_values, runner_flags.argv, _DEFAULT_CONFIG)


def _fail(message: str, status: int) -> NoReturn:
  print(f"run: error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def main(argv: list[str]) -> None:
  del argv
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  raw = _CONFIG.value
  import jax  # noqa: PLC0415  (after the flags: JAX must not start before)

  from rnnlab import workdir as workdir_lib  # noqa: PLC0415
  from rnnlab.runner import config as config_lib  # noqa: PLC0415
  from rnnlab.runner import devices, grid  # noqa: PLC0415
  from rnnlab.runner import run as runner  # noqa: PLC0415

  try:
    devices.configure_devices(raw.run.devices, raw.run.cpu_opt_level)
    if raw.run.distributed:
      jax.distributed.initialize()
    config = config_lib.resolve(raw)
    plan = grid.plan(config)
    mesh = devices.make_mesh(config.run.devices)
    workdir = workdir_lib.writable_folder(_WORKDIR.value)
  except (ValueError, AttributeError) as e:
    _fail(str(e), EXIT_USAGE)
  primary = jax.process_index() == 0
  try:
    with workdir_lib.Lock(workdir) if primary else contextlib.nullcontext() as lock:
      if lock is not None and lock.previous:
        p = lock.previous
        print(
          f"run: took over the lock of pid {p.get('pid')} on {p.get('host')} (since "
          f"{p.get('since')}), which ended without releasing it",
          file=sys.stderr,
        )
      if primary:
        runner.prepare_workdir(workdir, config, mesh, overwrite=_OVERWRITE.value)
      _run(runner, config, plan, workdir)
  except workdir_lib.WorkdirError as e:
    _fail(str(e), EXIT_USAGE)
  except OSError as e:
    _fail(_os_error(e, workdir), EXIT_IO)
  except KeyboardInterrupt:
    _fail("interrupted; what was committed is kept: launch the same command to resume", 130)


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
