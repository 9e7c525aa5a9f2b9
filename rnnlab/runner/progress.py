"""Progress lines with an ETA, for the current group and the whole sweep."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


def duration(seconds: float) -> str:
  """``42s``, ``3m05s``, ``2h07m``; ``?`` for an unknown (infinite or NaN) duration."""
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
  write: Callable[[str], None] = _stderr
  done_work: float = 0.0
  busy_seconds: float = 0.0

  def update(self, prefix: str, group_left: float, line: str, work: float, seconds: float):
    """Counts ``work`` done in ``seconds`` and writes ``line`` with both ETAs."""
    self.done_work += work
    self.busy_seconds += seconds
    rate = self.done_work / self.busy_seconds if self.busy_seconds > 0 else float("nan")
    eta_group = group_left / rate if rate > 0 else float("inf")
    eta_sweep = (self.total_work - self.done_work) / rate if rate > 0 else float("inf")
    self.write(f"{prefix} {line} | ETA group {duration(eta_group)}, sweep {duration(eta_sweep)}")

  def skip(self, work: float) -> None:
    """Takes ``work`` out of the total (read back from a checkpoint, not computed)."""
    self.total_work -= work


__all__ = [
  "Progress",
  "duration",
]
