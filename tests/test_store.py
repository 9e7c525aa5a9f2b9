"""rnnlab.store: every restored step verifies against the digest recorded when it was saved."""

from __future__ import annotations

import logging
import os
import shutil

import numpy as np
import pytest

from rnnlab import store as store_lib

TREE = {
  "a": np.arange(600, dtype=np.float32).reshape(6, 100),
  "b": np.array([3, -1], np.int32),
  "c": np.array([True, False]),
}


def target():
  return {k: np.zeros_like(v) for k, v in TREE.items()}


def shifted(step):
  return {**TREE, "a": TREE["a"] + step}


@pytest.fixture
def saved(tmp_path):
  """A store saved at steps 5, 10 and 20: it keeps the newest two."""
  folder = str(tmp_path / "unit")
  store = store_lib.Store(folder, write=lambda line: None)
  for step in (5, 10, 20):
    store.save(step, shifted(step), {"next_step": step})
  store.close()
  return folder


def restore(folder):
  lines = []
  out = store_lib.Store(folder, write=lines.append).restore(target())
  return out, lines


def test_digest_changes_with_any_value_dtype_shape_or_meta():
  base = store_lib.tree_digest(TREE, {"x": 1})
  assert base == store_lib.tree_digest({k: v.copy() for k, v in TREE.items()}, {"x": 1})
  changed = [
    ({**TREE, "a": TREE["a"] + np.float32(1e-3)}, {"x": 1}),
    ({**TREE, "b": TREE["b"].astype(np.int64)}, {"x": 1}),
    ({**TREE, "a": TREE["a"].reshape(100, 6)}, {"x": 1}),
    (TREE, {"x": 2}),
  ]
  for tree, meta in changed:
    assert store_lib.tree_digest(tree, meta) != base


def test_the_newest_step_restores_exactly_and_older_ones_are_dropped(saved):
  (tree, meta), lines = restore(saved)
  assert meta == {"next_step": 20} and lines == []
  for k, v in shifted(20).items():
    np.testing.assert_array_equal(tree[k], v)
    assert tree[k].dtype == v.dtype
  assert store_lib.Store(saved).steps() == [10, 20]


def _data_files(step_dir):
  return [os.path.join(b, n) for b, _, ns in os.walk(step_dir) for n in ns]


@pytest.mark.parametrize("how", ["flip", "truncate", "delete"])
def test_a_damaged_newest_step_is_discarded_for_the_older_one(saved, how):
  step20 = os.path.join(saved, "20")
  biggest = max(_data_files(os.path.join(step20, "tree")), key=os.path.getsize)
  if how == "delete":
    os.remove(biggest)
  else:
    with open(biggest, "r+b") as f:
      data = bytearray(f.read())
      if how == "flip":
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0xFF for b in data[middle : middle + 8])
        f.seek(0)
        f.write(data)
      else:
        f.truncate(len(data) // 2)
  (tree, meta), lines = restore(saved)
  assert meta == {"next_step": 10}
  np.testing.assert_array_equal(tree["a"], shifted(10)["a"])
  assert lines[0].startswith("checkpoint unit step 20: ") and lines[0].endswith("discarding it")
  assert lines[1] == "checkpoint unit: falling back to step 10, which verifies"
  assert store_lib.Store(saved).steps() == [10]


def test_a_step_renamed_to_another_number_does_not_verify(saved):
  shutil.rmtree(os.path.join(saved, "20"))
  shutil.copytree(os.path.join(saved, "10"), os.path.join(saved, "30"))
  (_, meta), lines = restore(saved)
  assert meta == {"next_step": 10}
  assert "step 30: its content does not match" in lines[0]


def test_no_step_verifies_means_recompute(saved):
  for step in ("10", "20"):
    with open(os.path.join(saved, step, "meta", "metadata"), "w") as f:
      f.write("{garbage")
  out, lines = restore(saved)
  assert out is None
  assert lines[-1] == "checkpoint unit: no step verifies; recomputing it from the start"
  assert store_lib.Store(saved).steps() == []


def test_saving_over_a_leftover_step_replaces_it(saved):
  store = store_lib.Store(saved, write=lambda line: None)
  store.save(20, shifted(99), {"next_step": 20})
  store.close()
  (tree, _), _ = restore(saved)
  np.testing.assert_array_equal(tree["a"], shifted(99)["a"])


def test_a_full_disk_raises_the_os_error_naming_the_step():
  error = store_lib._os_error(
    ValueError("RESOURCE_EXHAUSTED: Failed to write 113 bytes [os_error_code='28']"), "/x/20"
  )
  assert isinstance(error, OSError) and error.errno == 28 and error.filename == "/x/20"
  plain = store_lib._os_error(OSError(13, "Permission denied"), "/x/20")
  assert plain.errno == 13 and plain.filename == "/x/20"
  other = ValueError("unrelated")
  assert store_lib._os_error(other, "/x") is other


def test_asyncio_late_reports_of_failed_writes_are_dropped_and_nothing_else(tmp_path, caplog):
  # A full disk fails every orbax write task; Store.save raises the failure once, and the
  # other tasks' exceptions are logged by asyncio whenever they are collected (later).
  store_lib.Store(str(tmp_path / "s"))
  logger = logging.getLogger("asyncio")
  io = ValueError("RESOURCE_EXHAUSTED: Failed writing: No space left [os_error_code='28']")
  other = ValueError("a bug in a task")
  with caplog.at_level(logging.ERROR, logger="asyncio"):
    for error in (io, OSError(28, "No space left on device"), other):
      logger.error(
        "Task exception was never retrieved\nfuture: <Task finished>",
        exc_info=(type(error), error, None),
      )
    logger.error("Unclosed client session")
  kept = [r.exc_info[1] if r.exc_info else r.msg for r in caplog.records]
  assert kept == [other, "Unclosed client session"]
