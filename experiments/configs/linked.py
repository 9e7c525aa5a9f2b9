r"""Paired axes for the experiment files whose arms set several fields together (zip mode).

An *arm* of an ablation is often more than one field: SGD with clipping is
``optimizer.name="sgd"``, its learning rate and ``clip=1``; chrono initialisation
is ``recurrent_init="orthogonal"`` with ``chrono_t_max=T_max``, and only for the
gated cells. In ``zip`` mode (``config.sweep.mode = "zip"``) the i-th values of
every axis make one point, so such arms can be crossed by hand with the other
axes (cells, T, tasks). This module does that for the files in this folder:

* :func:`product`: every arm with every point of a grid, as rows ``{path: value}``;
* :func:`set_axes`: rows -> ``config.sweep.axes`` in zip mode, a field that takes
  one value in every row set on the config instead (so ``summary.csv`` has a
  column for each field that varies, and none for a constant);
* :func:`split_shortcuts`, :func:`set_fields`: the ``key=v1+v2`` arguments after
  the config file's ``:``. A file takes the keys of the axes it builds itself
  (``T=20+50``); every other key is a fixed setting here (one value), since in
  zip mode an axis of its own would not pair up with the points.

JAX-free, like :mod:`rnnlab.runner.config` (a command line reads a config file
before JAX starts).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ml_collections

from rnnlab.runner import config as runner_config

Arm = Mapping[str, Any]
Row = dict[str, Any]


def product(
  arms: Sequence[Arm | Callable[[Mapping[str, Any]], Arm | None]],
  grid: Mapping[str, Sequence[Any]],
) -> list[Row]:
  """Every arm with every point of ``grid`` (the grid's last axis fastest, the arms fastest of all).

  Args:
    arms: each a dict ``{dotted path: value}``, or a function of the grid point
      (``{path: value}``) that returns one, or ``None`` where the arm does not apply
      (chrono for a cell without gates). Every arm sets the same paths.
    grid: ``{dotted path: values}``: the axes crossed with every arm.

  Returns:
    The rows ``{path: value}``: the grid's paths first, then the arms'.

  Raises:
    ValueError: one line: arms that set different paths, or no row at all.
  """
  rows, paths = [], None
  for values in itertools.product(*grid.values()):
    point = dict(zip(grid, values, strict=True))
    for arm in arms:
      settings = arm(point) if callable(arm) else arm
      if settings is None:
        continue
      if paths is None:
        paths = tuple(settings)
      elif tuple(settings) != paths:
        raise ValueError(
          f"linked.product: every arm must set the same fields; got {tuple(settings)} and {paths}"
        )
      rows.append({**point, **settings})
  if not rows:
    raise ValueError(f"linked.product: no point: no arm applies to any point of {dict(grid)}")
  return rows


def set_axes(
  config: ml_collections.ConfigDict, rows: Sequence[Row], given: Mapping[str, str] | None = None
) -> None:
  """Sets ``config.sweep`` to the ``rows`` in zip mode (in place).

  A path whose value is the same in every row is set on the config as a fixed
  setting; the others become ``config.sweep.axes`` (``mode = "zip"``), in the
  rows' order.

  Args:
    config: the experiment config.
    rows: from :func:`product`.
    given: ``{path: argument}`` of the fields the command line set
      (:func:`set_fields`): none may be a field the rows set.

  Raises:
    ValueError: one line: a field set both by the command line and by the rows.
  """
  paths = list(rows[0])
  given = given or {}
  for path in paths:
    if path in given:
      raise ValueError(
        f"bad config argument {given[path]}; {path} is set by this experiment's rows (its "
        "arms, cells and T): use the experiment's own arguments (see its module docstring)"
      )
  varying = [p for p in paths if len({repr(r[p]) for r in rows}) > 1]
  fixed = {p: runner_config.coerce(config, p, rows[0][p]) for p in paths if p not in varying}
  with config.unlocked():  # a task option (task.kwargs.<name>) may be a new key
    config.update_from_flattened_dict(fixed)
  config.sweep.mode = "zip"
  config.sweep.axes = {
    p: tuple(runner_config.coerce(config, p, r[p]) for r in rows) for p in varying
  }


def split_shortcuts(
  shortcuts: Sequence[tuple[str, str]], own: Mapping[str, str]
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
  """The shortcuts an experiment file handles itself, and the rest.

  Args:
    shortcuts: ``(key, text)`` pairs from :func:`rnnlab.runner.config.parse_arg`.
    own: ``{key: name}``: the keys the file takes (``{"T": "T", "task.length": "T"}``).

  Returns:
    ``({name: [value texts]}, rest)``: each own key's values split at ``+``.
  """
  mine: dict[str, list[str]] = {}
  rest = []
  for key, text in shortcuts:
    if key in own:
      mine[own[key]] = [v.strip() for v in text.split("+") if v.strip()]
    else:
      rest.append((key, text))
  return mine, rest


def choices(name: str, texts: Sequence[str] | None, known: Sequence[str]) -> tuple[str, ...]:
  """``texts`` checked against the ``known`` choices of the config argument ``name``.

  Raises:
    ValueError: one line naming the unknown value and the choices.
  """
  if texts is None:
    return tuple(known)
  for text in texts:
    if text not in known:
      raise ValueError(
        f"bad config argument {name}={'+'.join(texts)}; {text!r} is not one of {tuple(known)}"
      )
  return tuple(dict.fromkeys(texts))


def lengths(texts: Sequence[str] | None, default: Sequence[int]) -> tuple[int, ...]:
  """The ``T=`` values as ints (``default`` without any).

  Raises:
    ValueError: one line: a value that is not a positive int.
  """
  if texts is None:
    return tuple(default)
  out = []
  for text in texts:
    try:
      value = int(text)
    except ValueError:
      value = 0
    if value < 1:
      raise ValueError(
        f"bad config argument T={'+'.join(texts)}; expected positive ints joined by '+'"
      )
    out.append(value)
  return tuple(dict.fromkeys(out))


def set_fields(
  config: ml_collections.ConfigDict, shortcuts: Sequence[tuple[str, str]]
) -> dict[str, str]:
  """Applies the other shortcuts as fixed settings (``seeds=8``, ``model.hidden_size=64``).

  Each is parsed and checked by :func:`rnnlab.runner.config.apply_shortcuts`
  (its field, its type); a field takes one value here, set on the config.

  Returns:
    ``{path: "key=value"}`` of the fields set (for :func:`set_axes`).

  Raises:
    ValueError: one line: a field given several values, or what ``apply_shortcuts`` refuses.
  """
  axes = dict(config.sweep.axes)
  given = {}
  for key, text in shortcuts:
    config.sweep.axes = {}
    try:
      runner_config.apply_shortcuts(config, [(key, text)])
    finally:
      added, config.sweep.axes = dict(config.sweep.axes), axes
    for path, values in added.items():
      if len(values) != 1:
        raise ValueError(
          f"bad config argument {key}={text}; this experiment pairs its own axes (zip mode), so "
          f"{path} takes one value here (or give config.sweep.axes in full)"
        )
      with config.unlocked():  # a task option (task.kwargs.<name>) may be a new key
        config.update_from_flattened_dict({path: values[0]})
      given[path] = f"{key}={text}"
  return given
