"""Probe taps: a scope in which every :func:`rnnlab.unroll` reports itself as it is traced.

:mod:`rnnlab.diagnostics` finds the unrolls inside a user's loss this way (see
:func:`rnnlab.diagnostics.value_and_state_grads`), so that layers and models
need no hooks of their own::

    def show(u: probes.Unroll):
      print(u.cell.name, u.num_steps, u.reverse)
      return None                        # no probes: the unroll runs as usual

    with probes.tap(show):
      jax.eval_shape(loss, params, xs)   # prints one line per unroll in the loss

Inside ``with tap(fn):`` every unroll given no ``probes=`` argument calls
``fn(Unroll(...))`` once, at trace time, and adds what ``fn`` returns (``None``,
or time-major probes like the carry with a leading time axis) to its states. The
innermost scope wins; outside every scope nothing is called and nothing added.

The scope is a :class:`contextvars.ContextVar`, so it belongs to the thread
(strictly, the context) that entered it: a tap entered on one thread is never
seen by another thread tracing at the same time (the sweep runner traces its
next programs on background threads while the main thread traces its own), and
leaving it on one thread never disturbs another's. The value held is never
mutated, only set and reset, so a context copied into a new thread (a
``threading.Thread(context=...)``, or Python builds whose threads inherit their
parent's context) shares no state with the original.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

PyTree = Any


class Unroll(NamedTuple):
  """What an unroll reports to the tap, at trace time.

  Attributes:
    cell: the :class:`~rnnlab.cells.Cell` being unrolled.
    params: the params it runs with (tracers while a loss is traced).
    carry: the initial carry, leaves ``(*batch, ...)``.
    num_steps: T.
    batch_ndim: the number of batch dimensions of ``xs`` (leading in each carry leaf).
    reverse: whether it runs from the last step to the first.
  """

  cell: Any
  params: PyTree
  carry: PyTree
  num_steps: int
  batch_ndim: int
  reverse: bool


Tap = Callable[[Unroll], PyTree | None]

_TAP: contextvars.ContextVar[Tap | None] = contextvars.ContextVar("rnnlab_probe_tap", default=None)


@contextlib.contextmanager
def tap(fn: Tap) -> Iterator[Tap]:
  """Within the ``with`` block (and this thread) every unroll calls ``fn`` as it is traced.

  ``fn(unroll: Unroll)`` returns ``None`` (no probes) or probes shaped like
  ``unroll.carry`` with a leading time axis, ``(T, *batch, ...)`` per leaf.
  Scopes nest; the innermost one's ``fn`` is called, and leaving a scope
  restores the one around it.
  """
  if not callable(fn):
    raise TypeError(f"probes.tap: expected a callable; got {type(fn).__name__}")
  token = _TAP.set(fn)
  try:
    yield fn
  finally:
    _TAP.reset(token)


def current() -> Tap | None:
  """The innermost tap of this thread's scope, or None outside every :func:`tap` block."""
  return _TAP.get()


__all__ = ["Tap", "Unroll", "current", "tap"]
