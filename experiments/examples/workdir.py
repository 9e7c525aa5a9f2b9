"""Output folders for the gallery's examples: checked before any work, written after it.

An example calls :func:`prepare` first (so a bad ``--workdir`` fails in a second,
before any training), then writes its results with :func:`write_json` and
:func:`save_figure` once everything is computed, so a failed run leaves nothing
half-written. :func:`usage_errors` wraps an example's ``main`` so that a bad setting
(any ``ValueError``) prints one line and exits with status 2, and :func:`parse_flags`
does the same for a flag absl cannot parse (``--epochs=abc``, an unknown flag) and
exits with status 0 after ``--help``. :func:`flag_reader` reads the flags with
``--quick``'s smoke-run settings under every flag not given on the command line, so an
explicit flag always wins (``--quick --steps=50`` trains 50 steps).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from absl import flags


def check_positive_ints(**values: Any) -> None:
  """Raises one line naming the first flag that is not a positive integer."""
  for name, value in values.items():
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"--{name} must be a positive int; got {value!r}")


def flag_reader(
  quick: Mapping[str, Any], flag_values: flags.FlagValues = flags.FLAGS
) -> Callable[[str], Any]:
  """``value(name)``: a parsed flag's value, or ``quick[name]`` under ``--quick``.

  ``--quick`` changes only the flags in ``quick`` that were not on the command line
  (absl's ``flag_values[name].present``): an explicit flag always wins, whatever its
  value, even the default's.

  Args:
    quick: the smoke run's settings by flag name (``{"steps": 200}``).
    flag_values: the parsed flags, with a ``--quick`` among them.
  """
  unknown = sorted(name for name in quick if name not in flag_values)
  if unknown:
    raise KeyError(f"flag_reader: --quick sets undefined flags {unknown}")
  quick_run = bool(flag_values["quick"].value)

  def value(name: str) -> Any:
    flag = flag_values[name]
    if quick_run and name in quick and not flag.present:
      return quick[name]
    return flag.value

  return value


def prepare(workdir: str) -> str:
  """Creates ``workdir`` if needed and checks that it is a writable folder.

  Raises:
    ValueError: naming the folder and why it cannot be used.
  """
  from rnnlab import workdir as workdir_lib  # noqa: PLC0415  (the runner's check, shared)

  return workdir_lib.writable_folder(workdir)


HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, but a bad flag value is one line on stderr and exit status 2.

  ``--help`` (``-h``, ``--helpshort``, ``--helpfull``) prints the flags and exits with
  status 0 (absl's own exits with 1). Pass as ``app.run(main, flags_parser=parse_flags)``.
  """
  helps = ["--help" if a == "-h" else a for a in argv[1:] if a.split("=")[0] in HELP]
  try:
    return flags.FLAGS([argv[0], *helps] if helps else argv)
  except SystemExit:
    if not helps:
      raise
    sys.exit(0)  # absl printed the help and exited with 1: asking for help is no error
  except flags.Error as e:
    prog = os.path.basename(argv[0]) if argv else "example"
    message = " ".join(str(e).split())  # absl's messages may wrap
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def usage_errors(main: Callable[[list[str]], Any]) -> Callable[[list[str]], Any]:
  """Wraps an absl ``main``: a ``ValueError`` becomes one line on stderr and exit status 2."""

  @functools.wraps(main)
  def wrapped(argv: list[str]) -> Any:
    prog = os.path.basename(argv[0]) if argv else "example"
    try:
      if len(argv) > 1:
        raise ValueError(f"unexpected arguments {argv[1:]}; every option is a --flag")
      return main(argv)
    except ValueError as e:
      print(f"{prog}: error: {e}", file=sys.stderr)
      sys.exit(2)

  return wrapped


def write_json(path: str, data: Any) -> None:
  """Writes ``data`` as indented JSON, atomically (a temporary file, then a rename)."""
  tmp = f"{path}.tmp"
  with open(tmp, "w") as f:
    json.dump(data, f, indent=2, sort_keys=True)
    f.write("\n")
  os.replace(tmp, path)


def save_figure(fig: Any, path: str, dpi: int = 80) -> None:
  """Saves a matplotlib figure as PNG, atomically, and closes it."""
  import matplotlib.pyplot as plt

  tmp = f"{path}.tmp.png"
  fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
  plt.close(fig)
  os.replace(tmp, path)


def pyplot():
  """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
  import matplotlib

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  return plt
