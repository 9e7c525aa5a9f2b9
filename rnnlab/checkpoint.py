"""Save and load any pytree of arrays (params, a train state) with orbax, bit for bit.

::

    rnnlab.save("/tmp/run/state", state)                     # a folder, written once
    state = rnnlab.load("/tmp/run/state", like=state)         # the same NamedTuples, dtypes, bits
    params = rnnlab.load(path, like=jax.eval_shape(model.init, key, 2))  # shapes suffice

``save`` writes one orbax ``StandardCheckpointer`` folder (``StandardSave``: each
array's shape, dtype and bytes, in orbax's own layout; see
``rnnlab.store`` for the runner's verified, multi-step checkpoints). Orbax keeps
the tree as nested dicts and lists, so ``load`` takes ``like``, a pytree of the
same structure (arrays, or ``jax.ShapeDtypeStruct``s from ``jax.eval_shape``), and
returns the stored values in ``like``'s containers (NamedTuples included): jax
arrays where ``like`` has jax arrays or shape structs (on ``like``'s sharding when
it has one), NumPy arrays where it has NumPy arrays. Before reading any bytes,
``load`` checks every leaf's path, shape and dtype against ``like`` and refuses a
mismatch in one line naming what differs (orbax itself would cast a dtype or fail
with a long message). ``None`` and empty containers (``()``, ``optax.EmptyState()``)
hold no arrays and come back as ``like`` has them.

Typed PRNG keys are not arrays orbax can store: save ``jax.random.key_data(key)``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import jax
import numpy as np

PyTree = Any

__all__ = ["load", "save"]


def _path(keys) -> str:
  """A leaf's path as orbax names it: ``params.encoder.0.w_ih``."""
  parts = []
  for k in keys:
    for attr in ("name", "key", "idx"):
      if hasattr(k, attr):
        parts.append(str(getattr(k, attr)))
        break
    else:
      parts.append(str(k))
  return ".".join(parts)


def _leaf_specs(tree: PyTree, is_leaf=None) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)
  return {_path(p): (tuple(np.shape(x)), np.dtype(x.dtype)) for p, x in leaves}


def _as_storable(path: str, leaf: Any) -> Any:
  if isinstance(leaf, jax.Array):
    if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
      raise TypeError(
        f"rnnlab.save: leaf {path} is a typed PRNG key; save jax.random.key_data(key) instead"
      )
    return leaf
  if isinstance(leaf, np.ndarray | np.generic | int | float | bool | complex):
    return np.asarray(leaf)
  raise TypeError(
    f"rnnlab.save: leaf {path} is a {type(leaf).__name__}; expected an array (jax or NumPy)"
  )


def save(path: str | os.PathLike, tree: PyTree, *, overwrite: bool = False) -> str:
  """Writes ``tree`` (params, a :class:`rnnlab.train.TrainState`, any pytree of arrays).

  Args:
    path: the checkpoint folder to create (made absolute; its parent is created).
    tree: a pytree whose leaves are jax or NumPy arrays (or Python/NumPy scalars,
      stored as 0-d NumPy arrays).
    overwrite: replace an existing checkpoint at ``path``; otherwise that is an error.

  Returns:
    The absolute path written.

  Raises:
    FileExistsError: ``path`` exists and ``overwrite`` is False.
    TypeError: a leaf is not an array (or is a typed PRNG key).
  """
  import orbax.checkpoint as ocp  # noqa: PLC0415  (heavy; only when a checkpoint is used)

  path = os.path.abspath(os.fspath(path))
  if os.path.lexists(path) and not overwrite:
    raise FileExistsError(f"rnnlab.save: {path} exists; pass overwrite=True to replace it")
  tree = jax.tree_util.tree_map_with_path(lambda p, x: _as_storable(_path(p), x), tree)
  checkpointer = ocp.StandardCheckpointer()
  try:
    checkpointer.save(path, tree, force=overwrite)
    checkpointer.wait_until_finished()
  finally:
    checkpointer.close()
  return path


def _mismatch(stored: dict, wanted: dict) -> str:
  """The differences between two ``{path: (shape, dtype)}`` maps, in a few words."""
  notes = [f"{p} is not in the checkpoint" for p in wanted if p not in stored]
  notes += [f"{p} is in the checkpoint but not in like" for p in stored if p not in wanted]
  for p in wanted:
    if p in stored and stored[p] != wanted[p]:
      (s_shape, s_dtype), (w_shape, w_dtype) = stored[p], wanted[p]
      what = []
      if s_shape != w_shape:
        what.append(f"shape {s_shape} (like: {w_shape})")
      if s_dtype != w_dtype:
        what.append(f"dtype {s_dtype} (like: {w_dtype})")
      notes.append(f"{p} has {' and '.join(what)}")
  shown = "; ".join(notes[:3])
  return shown + (f"; and {len(notes) - 3} more" if len(notes) > 3 else "")


def _target(leaf: Any) -> Any:
  if isinstance(leaf, np.ndarray | np.generic | int | float | bool | complex):
    return np.zeros(np.shape(leaf), np.asarray(leaf).dtype)
  sharding = getattr(leaf, "sharding", None)
  return jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding)


def _stored_tree(checkpointer, path: str) -> PyTree:
  """The stored tree of shapes and dtypes, or a one-line error if ``path`` holds none."""
  if not os.path.isdir(path):
    raise ValueError(f"rnnlab.load: {path} is a file; expected a checkpoint folder")
  absl_logger = logging.getLogger("absl")
  level = absl_logger.level
  absl_logger.setLevel(logging.ERROR)  # orbax warns about each missing metadata file
  try:
    metadata = checkpointer.metadata(path)
  except Exception as e:  # noqa: BLE001  (orbax raises several kinds; all mean: not one)
    reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
  else:
    item = getattr(metadata, "item_metadata", None)
    if item is not None and getattr(item, "tree", None) is not None:
      return item.tree
    reason = "it holds no orbax checkpoint metadata"
  finally:
    absl_logger.setLevel(level)
  raise ValueError(f"rnnlab.load: {path} is not a checkpoint rnnlab.save wrote ({reason})")


def load(path: str | os.PathLike, like: PyTree = None) -> PyTree:
  """Reads a checkpoint written by :func:`save`.

  Args:
    path: the checkpoint folder.
    like: a pytree of the stored structure (arrays or ``jax.ShapeDtypeStruct``):
      the result has its containers and leaf kinds, and every leaf must match the
      stored path, shape and dtype. ``None``: orbax's own view (nested dicts and
      lists of jax arrays).

  Returns:
    The stored tree, bit for bit.

  Raises:
    FileNotFoundError: nothing at ``path``.
    ValueError: ``path`` is not a checkpoint :func:`save` wrote, or its leaves
      differ from ``like``'s (one line naming the first differences).
  """
  import orbax.checkpoint as ocp  # noqa: PLC0415

  path = os.path.abspath(os.fspath(path))
  if not os.path.exists(path):
    raise FileNotFoundError(f"rnnlab.load: no checkpoint at {path} (it does not exist)")
  checkpointer = ocp.StandardCheckpointer()
  try:
    stored = _stored_tree(checkpointer, path)
    if like is None:
      return checkpointer.restore(path)
    target = jax.tree.map(_target, like)
    stored_specs = _leaf_specs(stored, is_leaf=lambda x: hasattr(x, "shape"))
    wanted_specs = _leaf_specs(target)
    if stored_specs != wanted_specs:
      raise ValueError(
        f"rnnlab.load: the checkpoint at {path} does not match like: "
        f"{_mismatch(stored_specs, wanted_specs)}"
      )
    restored = checkpointer.restore(path, target)
  finally:
    checkpointer.close()
  # orbax rebuilds like's containers; unflatten anyway so the result has exactly its treedef.
  return jax.tree.unflatten(jax.tree.structure(like), jax.tree.leaves(restored))
