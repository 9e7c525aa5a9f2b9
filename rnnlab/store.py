r"""Verified checkpoints: an orbax folder of steps whose content is checked on every restore.

A :class:`Store` keeps the last few steps of one unit of work (a sweep group, a
gain scan) in an orbax ``CheckpointManager`` folder, each step a ``(tree,
meta)`` pair: ``tree`` a pytree of host arrays (``StandardSave``), ``meta`` a
JSON dict (``JsonSave``). Orbax writes a step into a temporary folder and
renames it when complete, so a killed writer never leaves a half-written step
that looks committed. What the rename cannot catch is damage *after* the
commit (a flipped byte, a truncated or deleted file, garbage in orbax's own
metadata), so every step also records a digest of its content when it is
committed:

.. math::
   \text{digest} = \mathrm{SHA256}\big(\mathrm{json}(\text{meta}) \,\|\,
     \textstyle\bigoplus_{\text{leaf } \ell} \text{path}_\ell \,\|\,
     \text{dtype}_\ell \,\|\, \text{shape}_\ell \,\|\, \text{bytes}_\ell\big)

(leaves in ``jax.tree`` order, C-contiguous bytes), stored in ``meta`` under
``"digest"``. :meth:`Store.restore` recomputes it from what was actually read
back: a step that fails to load, lacks its digest or does not match it is never
used; it is reported in one line (which step, why), deleted, and the next
older step is tried; ``None`` when no step verifies, so the caller recomputes
from the start. The digest is of the restored values, so any damage that
changes a number is caught, and damage that changes none is harmless.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

PyTree = Any

FORMAT = 1  # bumped when what a step holds changes meaning
_LOGGERS = ("absl", "orbax", "jax._src.distributed", "asyncio")


def tree_digest(tree: PyTree, meta: dict) -> str:
  """SHA-256 of ``meta`` (as sorted JSON) and every leaf's path, dtype, shape and bytes."""
  h = hashlib.sha256()
  h.update(json.dumps(meta, sort_keys=True, default=str).encode())
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  for path, leaf in leaves:
    array = np.ascontiguousarray(np.asarray(leaf))
    h.update(jax.tree_util.keystr(path).encode())
    h.update(f"|{array.dtype.str}|{array.shape}|".encode())
    h.update(array.tobytes())
  return h.hexdigest()


class _Quiet:
  """Silences the loggers orbax and tensorstore report a failed read on (we report it once)."""

  def __enter__(self):
    self._levels = {}
    for name in _LOGGERS:
      logger = logging.getLogger(name)
      self._levels[name] = logger.level
      logger.setLevel(logging.CRITICAL + 1)

  def __exit__(self, *exc):
    for name, level in self._levels.items():
      logging.getLogger(name).setLevel(level)


def _drop_closed_loop_callbacks() -> None:
  """After a failed read, tensorstore calls back into orbax's closed event loop; drop that noise.

  The failure itself is reported by :meth:`Store.restore`; the late callbacks
  only raise ``RuntimeError('Event loop is closed')`` through
  ``sys.unraisablehook`` (a traceback each on stderr). Everything else is
  passed on to the hook that was installed before.
  """
  previous = sys.unraisablehook
  if getattr(previous, "_rnnlab_store", False):
    return

  def hook(unraisable):
    error = unraisable.exc_value
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
      return
    previous(unraisable)

  hook._rnnlab_store = True
  sys.unraisablehook = hook


class _DropOrphanedWriteErrors(logging.Filter):
  """Drops asyncio's late report of an orbax write task whose failure was already raised.

  When a write fails (a full disk), orbax's other write tasks fail too; their
  exceptions are never retrieved, and asyncio logs each ("Task exception was
  never retrieved", with a traceback) whenever the task is garbage collected,
  which may be long after :meth:`Store.save` raised the failure as one error.
  Only I/O failures (an ``OSError``, or tensorstore's error carrying an
  ``os_error_code``) are dropped; any other record passes.
  """

  def filter(self, record: logging.LogRecord) -> bool:
    message = str(record.msg)
    if "exception was never retrieved" not in message or not record.exc_info:
      return True
    error = record.exc_info[1]
    return not (isinstance(error, OSError) or "os_error_code=" in str(error))


def _drop_orphaned_write_errors() -> None:
  logger = logging.getLogger("asyncio")
  if not any(isinstance(f, _DropOrphanedWriteErrors) for f in logger.filters):
    logger.addFilter(_DropOrphanedWriteErrors())


def _stderr(line: str) -> None:
  print(line, file=sys.stderr, flush=True)


class Store:
  """The verified steps of one unit of work in an orbax folder (see the module doc).

  Args:
    directory: the orbax folder (created on the first save).
    keep: how many of the newest steps to keep; 2 leaves an older step to fall
      back on when the newest is found damaged.
    write: where the one-line damage reports go (default: stderr).
  """

  def __init__(self, directory: str, keep: int = 2, write: Callable[[str], None] = _stderr):
    self.directory = directory
    self.name = os.path.basename(os.path.normpath(directory))
    self.keep = keep
    self.write = write
    self.manager = None
    # A failed read or write ends orbax's event loop while tensorstore still holds
    # callbacks into it; they fire later, on other threads, each printing a traceback;
    # and its other write tasks' failures are logged whenever they are collected.
    _drop_closed_loop_callbacks()
    _drop_orphaned_write_errors()

  def _open(self):
    if self.manager is None:
      import orbax.checkpoint as ocp  # noqa: PLC0415  (heavy; only when a store is used)

      self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
          max_to_keep=self.keep,
          enable_async_checkpointing=False,
          cleanup_tmp_directories=True,
          **_one_process_options(ocp, self.directory),
        ),
        item_names=("tree", "meta"),
      )
    return self.manager

  def steps(self) -> list[int]:
    """The committed steps on disk, oldest first (orbax names a committed step by its number)."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(int(n) for n in os.listdir(self.directory) if n.isdigit())

  def restore(self, target: PyTree) -> tuple[PyTree, dict] | None:
    """The newest step that loads and verifies, as ``(tree, meta)``; ``None`` if none does.

    ``target`` gives the tree's structure, shapes and dtypes. Steps that fail
    are reported, deleted, and skipped.
    """
    import orbax.checkpoint as ocp  # noqa: PLC0415

    discarded = False
    for step in reversed(self.steps()):
      try:
        with _Quiet():
          restored = self._load(ocp, step, target)
      except Exception as e:  # noqa: BLE001  (any failure to load means: do not use this step)
        reason = f"unreadable ({type(e).__name__}: {_first_line(e)})"
      else:
        if restored is not None:
          if discarded:
            self.write(f"checkpoint {self.name}: falling back to step {step}, which verifies")
          return restored
        reason = "its content does not match the digest (and step) recorded when it was saved"
      self.write(f"checkpoint {self.name} step {step}: {reason}; discarding it")
      self._discard(step)
      discarded = True
    if discarded:
      self.write(f"checkpoint {self.name}: no step verifies; recomputing it from the start")
    return None

  def _load(self, ocp, step: int, target: PyTree) -> tuple[PyTree, dict] | None:
    # A fresh manager per attempt: orbax caches step metadata, and a damaged step
    # must not leave a half-read manager behind.
    self.close()
    restored = self._open().restore(
      step,
      args=ocp.args.Composite(tree=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()),
    )
    meta = dict(restored.meta)
    recorded = meta.pop("digest", None)
    tree = jax.tree.map(np.asarray, restored.tree)
    if meta.pop("format", None) != FORMAT or recorded != tree_digest(tree, meta):
      return None
    if meta.pop("step", None) != step:
      return None
    if jax.tree.structure(tree) != jax.tree.structure(target):
      return None
    return tree, meta

  def _discard(self, step: int) -> None:
    self.close()
    path = os.path.join(self.directory, str(step))
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
      os.remove(path)

  def save(self, step: int, tree: PyTree, meta: dict) -> None:
    """Commits ``(tree, meta)`` as ``step`` with its digest (blocking); keeps the newest steps."""
    import orbax.checkpoint as ocp  # noqa: PLC0415

    tree = jax.tree.map(np.asarray, tree)
    meta = {**meta, "step": int(step)}  # a step copied or renamed to another number fails
    meta = {**meta, "format": FORMAT, "digest": tree_digest(tree, meta)}
    if step in self.steps():  # a step left over from a run whose later steps were discarded
      self._discard(step)
    manager = self._open()
    try:
      with _Quiet():  # orbax logs a failed write from each of its threads; we raise it once
        manager.save(
          step,
          args=ocp.args.Composite(tree=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(meta)),
          force=True,
        )
        manager.wait_until_finished()
    except Exception as e:
      with _Quiet(), contextlib.suppress(Exception):
        self.close()
      self.manager = None
      raise _os_error(e, os.path.join(self.directory, str(step))) from e

  def close(self) -> None:
    if self.manager is not None:
      self.manager.close()
      self.manager = None


def _one_process_options(ocp, directory: str) -> dict:
  """Orbax options for a store that this process alone uses, in a multi-process launch.

  There only process 0 opens stores (:class:`rnnlab.multihost.PrimaryStore`):
  orbax must then neither wait for the other processes at its barriers nor
  create the folder through them. One process: orbax's defaults.
  """
  if jax.process_count() == 1:
    return {}
  os.makedirs(directory, exist_ok=True)
  me = jax.process_index()
  return {
    "create": False,
    "multiprocessing_options": ocp.options.MultiprocessingOptions(
      primary_host=me, active_processes={me}
    ),
  }


def _os_error(error: Exception, path: str) -> Exception:
  """A failed write as the ``OSError`` it is (tensorstore reports one as ``ValueError``)."""
  if isinstance(error, OSError):
    if error.filename is None and error.errno is not None:
      return OSError(error.errno, error.strerror or str(error), path)
    return error
  code = re.search(r"os_error_code='(\d+)'", str(error))
  if code:
    errno = int(code.group(1))
    return OSError(errno, os.strerror(errno), path)
  return error


def _first_line(error: BaseException) -> str:
  text = str(error).strip()
  return text.splitlines()[0][:200] if text else "no message"


__all__ = [
  "FORMAT",
  "Store",
  "tree_digest",
]
