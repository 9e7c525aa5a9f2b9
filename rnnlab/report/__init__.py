r"""Figures and a markdown report that follow the experiment's axes, from its workdir alone.

:func:`write_report` reads a sweep's tables (``summary.csv``, ``metrics.csv``,
``gradients.csv``, ``gain_scan.csv``, through the one schema of
:mod:`rnnlab.runner.tables`) and ``config.json``, and writes one figure per
section as ``workdir/figures/<name>.<format>`` and ``workdir/report.md``:

* the success rate and the memory horizons per setting, as tables
  (:mod:`~rnnlab.report.tabulate`: a row per value of the grouping axis and of
  every other axis, a column per value of the x axis);
* :mod:`~rnnlab.report.gradients` (``grad_vs_lag``): ``||dL/dh_t||`` against the
  lag, at initialisation and after training, a line per group;
* :mod:`~rnnlab.report.gain_scan` (``decay_vs_gain``): the untrained scan over the
  recurrent gain, when the experiment ran it;
* :mod:`~rnnlab.report.curves` (``training_curves``): loss against step, a panel
  per x value, a line per group;
* :mod:`~rnnlab.report.success` (``success_rate``): the share of runs solved
  against the x axis, a line per group (styled by a third axis);
* :mod:`~rnnlab.report.clipping` (``clipping``): how often clipping fired and what
  it changed, when ``clip`` is an axis.

The x axis is ``config.report.success_x`` (default: ``task.length`` when swept,
else the first numeric axis), the grouping axis ``config.report.group_by``
(default: ``model.cell`` when swept, else another axis); see
:mod:`~rnnlab.report.reading`. Each section computes its data once
(``data(experiment)``), and both its figure (``plot(data)``) and its reading
(``reading(data)``) are drawn from it. A section whose table or axis is absent
(no gain scan, no ``clip`` axis) is left out; one whose data is unusable says why.
A value that is NaN (a cell without diagnostics) prints as ``n/a``.

    python -m rnnlab.report WORKDIR        # redraw a finished workdir's figures and report
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from matplotlib.figure import Figure

from rnnlab.report import clipping, curves, gain_scan, gradients, overview, success, tabulate
from rnnlab.report import style as style_lib
from rnnlab.report.reading import Axis, Experiment, experiment, read_experiment
from rnnlab.runner.tables import read_table

# The figure sections in the order report.md gives them.
SECTIONS: tuple[ModuleType, ...] = (gradients, gain_scan, curves, success, clipping)
FIGURES = tuple(s.NAME for s in SECTIONS)


def applies(section: ModuleType, exp: Experiment) -> bool:
  """Whether ``section`` belongs in this experiment's report (its table or axis is present)."""
  check = getattr(section, "applies", None)
  return True if check is None else bool(check(exp))


def present(exp: Experiment) -> list[str]:
  """The names (of :data:`FIGURES`) of the sections this experiment's report has, in order."""
  return [s.NAME for s in ordered(exp) if applies(s, exp)]


def ordered(exp: Experiment) -> list[ModuleType]:
  """:data:`SECTIONS`, those named in ``config.report.order`` first (in that order)."""
  order = exp.setting("report.order") or ()
  first = [s for name in order for s in SECTIONS if name == s.NAME]
  return first + [s for s in SECTIONS if s not in first]


def build(exp: Experiment) -> list[tuple[ModuleType, Any, Figure | None]]:
  """``(section, data, figure)`` per section that applies (:func:`ordered`), data computed once."""
  out = []
  for section in ordered(exp):
    if not applies(section, exp):
      continue
    data = section.data(exp)
    with style_lib.quiet():
      figure = section.plot(data)
    out.append((section, data, figure))
  return out


def _save_atomic(path: str, write: Callable[[Any], None]) -> None:
  folder = os.path.dirname(path) or "."
  fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      write(f)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp)
    raise


def write_report(
  workdir: str | os.PathLike, formats: Sequence[str] = ("png", "svg"), dpi: int = 120
) -> list[str]:
  """Writes the figures and ``report.md`` for the sweep tables in ``workdir``.

  Each figure goes to ``workdir/figures/<name>.<format>`` (names in
  :data:`FIGURES`) and the report to ``workdir/report.md``, each through a
  temporary file in the same folder and ``os.replace``. The report says what was
  run, tabulates the success rate and memory horizons per setting, and gives each
  figure (the first format embedded, the others linked) a reading computed from
  the same data; a section without usable data says why.

  Args:
    workdir: the sweep's folder (``summary.csv`` required; ``metrics.csv``,
      ``gradients.csv``, ``gain_scan.csv`` and ``config.json`` optional).
    formats: image formats matplotlib can write, e.g. ``("png", "svg", "pdf")``.
    dpi: resolution of the raster formats.

  Returns:
    The paths written: the figure files, then ``report.md``.

  Raises:
    FileNotFoundError: ``workdir/summary.csv`` is missing.
    ValueError: an unknown format, or a malformed table or ``config.json``.
  """
  workdir = os.fspath(workdir)
  formats = [formats] if isinstance(formats, str) else list(formats)
  supported = Figure().canvas.get_supported_filetypes()
  bad = [f for f in formats if f not in supported]
  if not formats or bad:
    raise ValueError(f"write_report: formats must be among {sorted(supported)}; got {formats!r}")
  exp = read_experiment(workdir)
  figures_dir = os.path.join(workdir, "figures")
  os.makedirs(figures_dir, exist_ok=True)
  written: list[str] = []
  md = [overview.title(exp), "", overview.overview(exp), ""]
  md += [f"## Success rate {tabulate.per(exp)}", "", tabulate.success_table(exp), ""]
  horizons = tabulate.horizon_table(exp)
  if horizons is not None:
    md += [f"## Memory horizon {tabulate.per(exp)}", "", horizons, ""]
  embed = "png" if "png" in formats else formats[0]
  for number, (section, data, fig) in enumerate(build(exp), start=1):
    name, heading = section.NAME, section.title(exp)
    md += [f"## {number}. {heading}", ""]
    if fig is None:
      md += [f"Figure skipped: {section.why(exp, data)}.", ""]
      continue
    for fmt in formats:
      path = os.path.join(figures_dir, f"{name}.{fmt}")
      with style_lib.rc():
        _save_atomic(
          path,
          lambda f, fmt=fmt, fig=fig: fig.savefig(
            f, format=fmt, dpi=dpi, bbox_inches="tight", metadata=style_lib.SAVE_METADATA.get(fmt)
          ),
        )
      written.append(path)
    links = " · ".join(f"[{fmt.upper()}](figures/{name}.{fmt})" for fmt in formats if fmt != embed)
    md += [f"![{heading}](figures/{name}.{embed})", ""]
    if links:
      md += [links, ""]
    with style_lib.quiet():
      md += [section.reading(data), ""]
  report = os.path.join(workdir, "report.md")
  text = "\n".join(md).rstrip() + "\n"
  _save_atomic(report, lambda f: f.write(text.encode("utf-8")))
  written.append(report)
  return written


__all__ = [
  "FIGURES",
  "SECTIONS",
  "Axis",
  "Experiment",
  "build",
  "experiment",
  "present",
  "read_experiment",
  "read_table",
  "write_report",
]
