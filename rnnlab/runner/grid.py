r"""The grid of a sweep: members, which axes are vmapped and which compiled, and the groups.

A *member* is one training run: its index, its value for every axis of
``config.sweep.axes`` and its seed. In ``grid`` mode the members are the
cartesian product of the axes (in their order, the last fastest) times the
seeds (fastest of all); in ``zip`` mode the i-th values of every axis make one
point. Member ``i`` with seed ``s`` runs the training config
:func:`member_config` with ``jax.random.key(s)``.

Axes are of two kinds, decided from how the field enters the training program
(:func:`classify`), not from a list of names:

* a *value* axis only changes numbers the program computes with: the trainer
  takes it as a traced scalar in its ``hparams`` (``rnnlab.train.traced_fields``
  says so, for every group's program), so its members share one compiled program,
  ``jax.vmap``-ed over them and sharded over the devices (learning rate, gain,
  clip, momentum, betas, weight decay ...);
* a *program* axis changes the program: a shape, a choice of code, a Python
  ``if`` on the value, a string (cell, hidden size, number of layers, init
  scheme, optimizer, task, T ...), and the fields the runner reads itself
  (:data:`RUNNER_FIELDS`). Each combination of program-axis values is a *group*:
  one compiled program, run after the others.

So ``len(plan.groups)`` programs are compiled (one per distinct combination of
program-axis values), and each group's members carry the values of the value axes
as the ``hparams`` of its one program.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Sequence
from typing import Any, NamedTuple

import ml_collections

from rnnlab import train as train_lib
from rnnlab.runner import config as config_lib

# Fields the runner itself reads as Python values (the cell and T columns, the number of
# steps it loops over, the evaluations it asks for): always program axes.
RUNNER_FIELDS = (
  "model.cell",
  "task.name",
  "task.length",
  "num_steps",
  "eval.num_batches",
  "eval.every",
)
# The hyper-parameters the trainer has always taken traced (rnnlab.train.HParams): a group's
# program takes them in its hparams even when they are not swept (when they trace), so one
# program serves every value of them (the gain scan reuses the groups' programs).
CLASSIC = ("optimizer.learning_rate", "model.gain", "clip")


class Member(NamedTuple):
  """One training run: its index, its value of every axis (in the axes' order), its seed."""

  index: int
  values: tuple
  seed: int


class Group(NamedTuple):
  """The members that share one compiled program: equal values of every program axis.

  Attributes:
    name: a folder name (``lstm_T50``) built from the program-axis values.
    program: ``((path, value), ...)`` of the program axes.
    members: the group's members, in member order.
    traced: the dotted paths its program takes in ``hparams`` (the value axes and
      the :data:`CLASSIC` fields that trace).
  """

  name: str
  program: tuple
  members: tuple[Member, ...]
  traced: tuple[str, ...]


class Plan(NamedTuple):
  """What a sweep will run: its members and groups, and how each axis was classified.

  ``len(groups)`` is the number of compiled training programs.
  """

  axes: tuple[str, ...]
  value_axes: tuple[str, ...]
  program_axes: tuple[str, ...]
  members: tuple[Member, ...]
  groups: tuple[Group, ...]


# --------------------------------------------------------------------------
# Members and their configs.
# --------------------------------------------------------------------------


def points(config: ml_collections.ConfigDict) -> list[tuple]:
  """The points of the axes: one tuple of values per point, in member order (no seeds)."""
  values = list(config.sweep.axes.values())
  if config.sweep.mode == "zip":
    return list(zip(*values, strict=True)) if values else [()]
  return list(itertools.product(*values))


def members(config: ml_collections.ConfigDict) -> list[Member]:
  """Every member of a resolved config, in order: the points, each with its seeds (fastest)."""
  s = config.sweep
  seeds = range(s.seed_offset, s.seed_offset + s.seeds)
  pairs = itertools.product(points(config), seeds)
  return [Member(i, values, seed) for i, (values, seed) in enumerate(pairs)]


def train_part(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The training config inside an experiment config (its runner sections left out), unlocked."""
  tc = copy.deepcopy(config)
  tc.unlock()
  for key in (*config_lib.SECTIONS, *config_lib.META):
    if key in tc:
      del tc[key]
  return tc


def with_values(
  tc: ml_collections.ConfigDict, pairs: Sequence[tuple[str, Any]]
) -> ml_collections.ConfigDict:
  """A locked copy of the training config ``tc`` with each ``(dotted path, value)`` set."""
  tc = copy.deepcopy(tc)
  tc.unlock()
  for path, value in pairs:
    *sections, key = path.split(".")
    node = tc
    for name in sections:
      node = node[name]
    try:
      node[key] = value
    except TypeError:
      kind = config_lib.field_type(tc, path)
      raise ValueError(
        f"config.sweep.axes[{path!r}] value {value!r} is invalid; expected a value of type "
        f"{getattr(kind, '__name__', kind)} (the type of {path})"
      ) from None
  tc.lock()
  return tc


def member_config(config: ml_collections.ConfigDict, member: Member) -> ml_collections.ConfigDict:
  """The training config of ``member``: the experiment's training fields with its axis values."""
  return with_values(train_part(config), list(zip(config.sweep.axes, member.values, strict=True)))


def cell_name(config: ml_collections.ConfigDict, member: Member) -> str:
  """The member's ``model.cell`` (a built-in name or an import path)."""
  return str(_value(config, member, "model.cell"))


def length(config: ml_collections.ConfigDict, member: Member) -> int:
  """The member's ``task.length`` (T)."""
  return int(_value(config, member, "task.length"))


def _value(config: ml_collections.ConfigDict, member: Member, path: str) -> Any:
  axes = list(config.sweep.axes)
  if path in axes:
    return member.values[axes.index(path)]
  return field_value(config, path)


def field_value(config: ml_collections.ConfigDict, path: str) -> Any:
  """The value of the field at the dotted ``path``."""
  node = config
  for key in path.split("."):
    node = node[key]
  return node


def make_task(tc: ml_collections.ConfigDict) -> Any:
  """The training task of a training config (a built-in name or an import path)."""
  try:
    return train_lib.make_task(tc)
  except ValueError as e:
    t = tc.task
    raise ValueError(
      f"{e} (config.task.name={t.name!r}, config.task.length={t.length!r})"
    ) from None


def check_members(config: ml_collections.ConfigDict) -> None:
  """Checks every member's training config, every task and every cell before any work.

  :func:`rnnlab.train.check_config` on each point's concrete config, the task of
  each distinct ``task`` section, the cell of each distinct ``model`` section.

  Raises:
    ValueError: one line naming the first bad field (and the point it came from).
  """
  base = train_part(config)
  tasks, cells = set(), set()
  for values in points(config):
    pairs = list(zip(config.sweep.axes, values, strict=True))
    tc = with_values(base, pairs)
    try:
      train_lib.check_config(tc)
    except ValueError as e:
      where = ", ".join(f"{p}={v!r}" for p, v in pairs)
      raise ValueError(f"{e} (at {where})" if where else str(e)) from None
    task_key = json.dumps(tc.task.to_dict(), sort_keys=True, default=str)
    if task_key not in tasks:
      make_task(tc)
      tasks.add(task_key)
    model_key = json.dumps(tc.model.to_dict(), sort_keys=True, default=str)
    if model_key not in cells:
      train_lib.make_cell(tc)  # a factory of one's own must return an rnnlab.Cell
      cells.add(model_key)


# --------------------------------------------------------------------------
# Classification and groups.
# --------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
  return isinstance(value, int | float) and not isinstance(value, bool)


def _traced_fields(tc: ml_collections.ConfigDict, paths: Sequence[str]) -> dict[str, bool]:
  """``rnnlab.train.traced_fields`` of ``paths`` in the training config ``tc``."""
  return dict(train_lib.traced_fields(tc, list(paths))) if paths else {}


def classify(config: ml_collections.ConfigDict) -> tuple[tuple[str, ...], tuple[str, ...]]:
  """``(value_axes, program_axes)`` of a resolved config (see the module docstring).

  A candidate for a value axis has only numbers for values and is not one of
  :data:`RUNNER_FIELDS` (nor a ``task`` field); it is a value axis if the trainer
  traces it as an abstract scalar in the program of every group
  (``rnnlab.train.traced_fields`` on the group's config). A candidate refused by
  some group becomes a program axis, which splits the groups; the check repeats
  until no group refuses one.
  """
  value_axes, program_axes, _ = _classify(config)
  return value_axes, program_axes


def _classify(config: ml_collections.ConfigDict):
  """:func:`classify`, and per group ``(members, config, {path: traces})`` of its last round.

  Each group's config is asked once per round about the candidates and the
  :data:`CLASSIC` fields that are not axes (whether its program takes them traced).
  """
  axes = config.sweep.axes
  candidates = [
    p
    for p, values in axes.items()
    if p not in RUNNER_FIELDS and not p.startswith("task.") and all(map(_is_number, values))
  ]
  classic = [p for p in CLASSIC if p not in axes]
  while True:
    program = [p for p in axes if p not in candidates]
    settings = []
    refused = set()
    for _, ms, tc in _program_settings(config, program):
      traced = _traced_fields(tc, [*candidates, *classic])
      refused |= {p for p in candidates if not traced.get(p, False)}
      settings.append((ms, tc, traced))
    if not refused:
      return tuple(candidates), tuple(program), settings
    candidates = [p for p in candidates if p not in refused]


def _program_settings(config: ml_collections.ConfigDict, program: Sequence[str]):
  """``[(program values, members, config of the first member)]`` per distinct program values."""
  axes = list(config.sweep.axes)
  index = [axes.index(p) for p in program]
  settings: dict[tuple, list[Member]] = {}
  for m in members(config):
    settings.setdefault(tuple(repr(m.values[i]) for i in index), []).append(m)
  return [(key, ms, member_config(config, ms[0])) for key, ms in settings.items()]


_SHORT = {"task.length": "T", "model.hidden_size": "H", "model.num_layers": "L"}


def _short(path: str, value: Any) -> str:
  """One program-axis value in a group name: ``lstm``, ``T50``, ``H64``, ``momentum0.9``."""
  last = path.rsplit(".", 1)[-1]
  if isinstance(value, str):
    text = re.split(r"[:.]", value)[-1] if (":" in value or "." in value) else value
  elif isinstance(value, bool):
    text = last if value else f"no_{last}"
  elif _is_number(value):
    text = _SHORT.get(path, last) + (f"{value:g}" if isinstance(value, float) else str(value))
  else:
    text = f"{last}{value}"
  return re.sub(r"[^A-Za-z0-9_.+-]", "-", text).lstrip(".-") or "x"


def short_name(cell: str) -> str:
  """A cell's name in folder names: a built-in name, or an import path's last part."""
  return _short("model.cell", cell)


def group_name(program: Sequence[tuple[str, Any]]) -> str:
  """A folder name of a group's program-axis values, e.g. ``lstm_T50`` (``all`` for none)."""
  return "_".join(_short(p, v) for p, v in program) or "all"


def plan(config: ml_collections.ConfigDict) -> Plan:
  """The members, the classification and the groups of a resolved config (see the module doc)."""
  value_axes, program_axes, settings = _classify(config)
  axes = list(config.sweep.axes)
  groups, names = [], set()
  for ms, _, traced in settings:
    program = tuple((p, ms[0].values[axes.index(p)]) for p in program_axes)
    name = base = group_name(program)
    k = 2
    while name in names:
      name, k = f"{base}-{k}", k + 1
    names.add(name)
    paths = (*value_axes, *(p for p in CLASSIC if p not in axes and traced.get(p)))
    groups.append(Group(name, program, tuple(ms), tuple(paths)))
  result = Plan(tuple(axes), value_axes, program_axes, tuple(members(config)), tuple(groups))
  if config.diagnostics.gain_scan:
    for cell, group in gain_scan_groups(config, result):
      if "model.gain" not in group.traced:
        raise ValueError(
          f"config.diagnostics.gain_scan={config.diagnostics.gain_scan!r} is invalid for cell "
          f"{cell!r}, whose factory takes model.gain as a Python value (it does not trace); "
          "expected () for this sweep"
        )
  return result


def gain_scan_groups(config: ml_collections.ConfigDict, plan_: Plan) -> list[tuple[str, Group]]:
  """``(cell, its first group)`` of every swept cell, in order: where its gain scan runs."""
  out: dict[str, Group] = {}
  for group in plan_.groups:
    out.setdefault(cell_name(config, group.members[0]), group)
  return list(out.items())


def program_config(config: ml_collections.ConfigDict, group: Group) -> ml_collections.ConfigDict:
  """The training config a group's program is built from: its first member's."""
  return member_config(config, group.members[0])


def hparams(config: ml_collections.ConfigDict, group: Group) -> dict[str, list]:
  """``{path: [one value per member]}`` of the group's traced paths (clip None -> 0.0: off)."""
  axes = list(config.sweep.axes)
  out = {}
  for path in group.traced:
    if path in axes:
      values = [m.values[axes.index(path)] for m in group.members]
    else:
      values = [_value(config, m, path) for m in group.members]
    out[path] = [0.0 if (path == "clip" and v is None) else v for v in values]
  return out


def describe(plan_: Plan) -> str:
  """One line: how many members and groups, which axes are vmapped and which looped."""
  value = ", ".join(plan_.value_axes) or "none"
  program = ", ".join(plan_.program_axes) or "none"
  return (
    f"{len(plan_.members)} members in {len(plan_.groups)} compiled group(s); vmapped axes: "
    f"{value}; looped axes: {program}"
  )


__all__ = [
  "CLASSIC",
  "Group",
  "Member",
  "Plan",
  "RUNNER_FIELDS",
  "cell_name",
  "check_members",
  "classify",
  "describe",
  "field_value",
  "gain_scan_groups",
  "group_name",
  "hparams",
  "length",
  "make_task",
  "member_config",
  "members",
  "plan",
  "points",
  "program_config",
  "short_name",
  "train_part",
  "with_values",
]
