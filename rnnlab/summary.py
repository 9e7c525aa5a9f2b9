"""A table of any params pytree: each named sub-tree's leaves, shapes and counts, and a total.

An LSTM(16) on the adding problem (``config.model.hidden_size = 16``)::

    >>> print(rnnlab.param_summary(rnnlab.train.make_model(config).init(key)))
    sub-tree                 leaves                                params
    encoder[0] (LSTMParams)  w_ih (2, 64), w_hh (16, 64), b (64,)   1,216
    readout (DenseParams)    w (16, 1), b (1,)                         17
    total                    5 arrays, 4.8 KiB                      1,233

A row is a sub-tree that holds arrays directly (a cell's params, a dense layer's),
named by its path from the root (``.field``, ``[index]``, ``['key']`` as
``jax.tree_util.keystr`` writes them, the leading dot dropped) and its type;
``depth=k`` groups by the first ``k`` path entries instead (``depth=0``: one row).
Leaves can be arrays or ``jax.ShapeDtypeStruct`` (``jax.eval_shape(model.init, key,
...)`` counts a model without building it); a leaf's dtype is shown when it is not
float32.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np

PyTree = Any

__all__ = ["ParamSummary", "param_count", "param_summary"]


class SummaryRow(NamedTuple):
  """One sub-tree: its path, its type, its leaves as ``(relative path, shape, dtype)``, its count."""

  name: str  # the path from the root ("encoder[0]"), "(root)" for the root itself
  kind: str  # the sub-tree's type name ("LSTMParams"), "" where it cannot be told
  leaves: tuple[tuple[str, tuple[int, ...], np.dtype], ...]
  count: int


class ParamSummary(NamedTuple):
  """The rows of :func:`param_summary`, their total and bytes; ``str()`` is the table."""

  rows: tuple[SummaryRow, ...]
  total: int
  bytes: int
  num_arrays: int

  def __str__(self) -> str:
    def leaf_text(path, shape, dtype):
      kind = "" if dtype == np.float32 else f" {dtype}"
      return f"{path or '(value)'} {shape}{kind}".strip()

    table = [("sub-tree", "leaves", "params")]
    for row in self.rows:
      leaves = ", ".join(leaf_text(*leaf) for leaf in row.leaves)
      name = f"{row.name} ({row.kind})" if row.kind else row.name
      table.append((name, leaves, f"{row.count:,}"))
    table.append(
      (
        "total",
        f"{self.num_arrays} array{'s' * (self.num_arrays != 1)}, {_human_bytes(self.bytes)}",
        f"{self.total:,}",
      )
    )
    widths = [max(len(line[i]) for line in table) for i in range(3)]
    return "\n".join(
      f"{name:<{widths[0]}}  {leaves:<{widths[1]}}  {count:>{widths[2]}}"
      for name, leaves, count in table
    )


def _human_bytes(n: int) -> str:
  for unit in ("B", "KiB", "MiB", "GiB"):
    if n < 1024 or unit == "GiB":
      return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
    n /= 1024
  return f"{n:.1f} GiB"  # unreachable


def _shape_dtype(leaf: Any) -> tuple[tuple[int, ...], np.dtype]:
  shape = tuple(getattr(leaf, "shape", np.shape(leaf)))
  dtype = getattr(leaf, "dtype", None)
  return shape, np.dtype(dtype if dtype is not None else np.asarray(leaf).dtype)


def _name(keys: tuple) -> str:
  return jax.tree_util.keystr(keys).lstrip(".")


def _node_type(tree: PyTree, keys: tuple) -> str:
  node = tree
  for k in keys:
    if isinstance(k, jax.tree_util.GetAttrKey):
      node = getattr(node, k.name)
    elif isinstance(k, jax.tree_util.SequenceKey):
      node = node[k.idx]
    elif isinstance(k, jax.tree_util.DictKey):
      node = node[k.key]
    else:  # a custom node's key: no way down from here
      return ""
  return "" if hasattr(node, "shape") else type(node).__name__  # a bare array is no sub-tree


def param_count(params: PyTree) -> int:
  """The number of scalars in a pytree of arrays (or ``jax.ShapeDtypeStruct``)."""
  return sum(int(np.prod(_shape_dtype(leaf)[0])) for leaf in jax.tree.leaves(params))


def param_summary(params: PyTree, depth: int | None = None) -> ParamSummary:
  """Counts the parameters of ``params`` per named sub-tree (see the module docstring).

  Args:
    params: any pytree of arrays or ``jax.ShapeDtypeStruct`` (model params, a
      train state, optimizer state).
    depth: ``None`` (default): one row per sub-tree that holds arrays directly;
      ``k >= 0``: one row per distinct first ``k`` path entries.

  Returns:
    A :class:`ParamSummary`; ``print`` it for the table, read ``.rows[i].count``
    and ``.total`` for the numbers. Rows come in the tree's leaf order.
  """
  if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
    raise ValueError(f"param_summary: depth={depth!r} is invalid; expected None or an int >= 0")
  leaves, _ = jax.tree_util.tree_flatten_with_path(params)
  groups: dict[tuple, list] = {}
  for keys, leaf in leaves:
    cut = len(keys) - 1 if depth is None else min(depth, len(keys))
    groups.setdefault(tuple(keys[:cut]), []).append((keys[cut:], *_shape_dtype(leaf)))
  rows = []
  total = nbytes = 0
  for prefix, members in groups.items():
    count = sum(int(np.prod(shape)) for _, shape, _ in members)
    total += count
    nbytes += sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in members)
    described = tuple((_name(rest), shape, dtype) for rest, shape, dtype in members)
    rows.append(SummaryRow(_name(prefix) or "(root)", _node_type(params, prefix), described, count))
  return ParamSummary(tuple(rows), total, nbytes, len(leaves))
