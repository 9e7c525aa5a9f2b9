r"""The experiment runner: a sweep of RNN training runs and its vanishing/exploding report.

    python -m experiments.run --workdir=runs/vanishing          # the flagship, default preset
    python -m experiments.run --config=experiments/configs/vanishing.py:quick --workdir=/tmp/q
    python -m experiments.run --config=experiments/configs/vanishing.py:cell=lstm,T=200 \
      --config.train.learning_rate=3e-4 --workdir=runs/x

Every field of the config file can be overridden with ``--config.<field>=<value>``;
see ``experiments/configs/vanishing.py`` for the fields and presets. Launched
again with the same command, a killed run resumes from its checkpoints and ends
with the same results; finished groups are read back. Multi-host: set
``--config.run.distributed=True`` and launch one process per host
(``jax.distributed.initialize`` reads the cluster from the environment).

Bad settings (an unknown cell or task, a malformed override, a non-positive T or
hidden size, an unwritable or foreign workdir) print one line and exit with
status 2 before any work, leaving the workdir as it was.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

_DEFAULT_CONFIG = os.path.join(os.path.dirname(__file__), "configs", "vanishing.py")


def _config_fields(path: str) -> str:
  """The config file's fields with their comments (for --help): ``  field = default  # why``."""
  lines, pattern = [], re.compile(r"^  config\.([\w.]+) = (.+?)  # (.+)$")
  with open(path) as f:
    for line in f:
      match = pattern.match(line.rstrip())
      if match and "ConfigDict()" not in match.group(2):
        lines.append(f"  --config.{match.group(1)}={match.group(2)}: {match.group(3)}")
      elif lines and line.startswith("  # "):  # a comment continued on the next line
        lines[-1] += " " + line.strip()[2:]
  return "\n".join(lines)


__doc__ += (  # noqa: A001  (absl prints the main module's docstring as --help)
  f"\nConfig fields of {os.path.relpath(_DEFAULT_CONFIG)} (defaults of the default preset):\n"
  + _config_fields(_DEFAULT_CONFIG)
  + "\n"
)

_CONFIG = config_flags.DEFINE_config_file(
  "config",
  _DEFAULT_CONFIG,
  "Sweep config file, optionally with ':<preset>,<key>=<value>,...' (e.g. "
  "experiments/configs/vanishing.py:quick or ...:cell=lstm,T=200). Fields can be "
  "overridden with --config.<field>=<value> (e.g. --config.train.learning_rate=3e-4).",
  lock_config=True,
)
_OVERWRITE = flags.DEFINE_bool(
  "overwrite",
  False,
  "Delete the workdir's earlier results (config.json, environment.json, checkpoints, tables, "
  "figures, report.md; nothing else) and start over. Needed to reuse a workdir whose results "
  "were made with other settings.",
)
_WORKDIR = flags.DEFINE_string(
  "workdir",
  "runs/vanishing",
  "Folder for the resolved config, checkpoints, tables, figures and report.md. "
  "Created if missing; rerun with the same folder to resume.",
)


EXIT_USAGE = 2  # a bad flag or config, an unusable, busy or foreign workdir: before any work
EXIT_IO = 3  # a read or write failed mid-run (disk full, permission, read-only file system)

HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def parse_flags(argv: list[str]) -> list[str]:
  """absl flag parsing where a bad flag or config argument is one line and exit status 2."""
  try:
    rest = flags.FLAGS(argv)
  except SystemExit as e:  # absl prints --help and exits with 1; asking for help is no error
    sys.exit(0 if any(a.split("=")[0] in HELP for a in argv[1:]) else e.code)
  except (flags.Error, ValueError, TypeError, KeyError, AttributeError) as e:
    message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
    print(f"run: error: {message}", file=sys.stderr)
    sys.exit(2)
  if len(rest) > 1:
    print(f"run: error: unexpected arguments {rest[1:]}; every option is a --flag", file=sys.stderr)
    sys.exit(2)
  return rest


def _fail(message: str, status: int) -> None:
  print(f"run: error: {message}", file=sys.stderr, flush=True)
  sys.exit(status)


def main(argv: list[str]) -> None:
  del argv
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs every save at INFO
  raw = _CONFIG.value
  from rnnlab import sweep  # noqa: PLC0415  (after the flags: JAX must not start before)
  from rnnlab import workdir as workdir_lib  # noqa: PLC0415

  try:
    sweep.configure_devices(raw.run.devices, raw.run.cpu_opt_level)
    if raw.run.distributed:
      import jax  # noqa: PLC0415

      jax.distributed.initialize()
    config = sweep.resolve(raw)
    mesh = sweep.make_mesh(config.run.devices)
    workdir = workdir_lib.writable_folder(_WORKDIR.value)
  except (ValueError, AttributeError) as e:
    _fail(str(e), EXIT_USAGE)
  import jax  # noqa: PLC0415

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
        sweep.prepare_workdir(workdir, config, mesh, overwrite=_OVERWRITE.value)
      _run(sweep, config, workdir)
  except workdir_lib.WorkdirError as e:
    _fail(str(e), EXIT_USAGE)
  except OSError as e:
    _fail(_os_error(e, workdir), EXIT_IO)
  except KeyboardInterrupt:
    _fail("interrupted; what was committed is kept: launch the same command to resume", 130)


def _run(sweep, config, workdir: str) -> None:
  start = time.perf_counter()
  out = sweep.run(config, workdir)
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
