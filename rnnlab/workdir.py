r"""A sweep's workdir: one writer at a time, bound to what made its numbers, checked before work.

A workdir holds a sweep's resolved config (``config.json``), what else its
numbers depend on (``environment.json``), its checkpoints and its tables,
figures and report. Before any work the runner

1. checks the folder is usable (:func:`writable_folder`),
2. takes the workdir's lock (:class:`Lock`): a second launch on a folder in use
   fails at once with the holder's pid, host and start time,
3. checks the folder's *binding* (:func:`check_binding`): a workdir that holds
   results of another config, another device count, another XLA optimisation
   level or other jax/jaxlib versions or platform is refused with the list of
   differences; so are checkpoints without a readable ``config.json``,
4. clears temporary files that a killed run left (:func:`clear_stale`),
5. checks that every folder it will write accepts a file (:func:`check_writable`).

The lock is ``filelock.FileLock`` on ``workdir/.lock``, an OS advisory lock
(``flock``): the kernel releases it when its process ends, however it ends, so
the lock of a killed run (``kill -9``, a crash, a reboot) is free again and the
next launch takes it over; ``.lock.json`` beside it says who holds it. It
guarantees one writer among processes that see the same *local* file system.
On a network file system (NFS, Lustre, GPFS, SMB) ``flock`` may be emulated,
local to one client, or unsupported, so two hosts may both get the lock; give
each launch its own workdir there.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import shutil
import socket
from collections.abc import Iterable
from typing import Any

LOCK = ".lock"
HOLDER = ".lock.json"
CONFIG = "config.json"
ENVIRONMENT = "environment.json"
CHECKPOINTS = "checkpoints"
# Everything a sweep writes into its workdir (what --overwrite removes; nothing else is touched).
OUTPUTS = (
  CONFIG,
  ENVIRONMENT,
  CHECKPOINTS,
  "figures",
  "report.md",
  "summary.csv",
  "metrics.csv",
  "gradients.csv",
  "gain_scan.csv",
)


class WorkdirError(ValueError):
  """A workdir that cannot be used as asked: one line saying why and what to do."""


def writable_folder(workdir: str) -> str:
  """``workdir`` made absolute, created if missing, and checked writable (a probe file).

  Raises:
    WorkdirError: one line naming the folder and why it cannot be used.
  """
  if not workdir:
    raise WorkdirError("--workdir must name a folder; got an empty string")
  path = os.path.abspath(os.path.expanduser(workdir))
  if os.path.exists(path) and not os.path.isdir(path):
    raise WorkdirError(f"--workdir={workdir} exists and is not a folder")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as e:
    raise WorkdirError(f"--workdir={workdir} is not writable ({e.strerror})") from None
  _probe(path, f"--workdir={workdir}")
  return path


def _probe(folder: str, name: str) -> None:
  """Creates and removes a file in ``folder`` (``os.access`` says yes to root on any folder)."""
  probe = os.path.join(folder, f".write-test-{os.getpid()}")
  try:
    with open(probe, "w"):
      pass
    os.remove(probe)
  except OSError as e:
    raise WorkdirError(f"{name} is not writable ({e.strerror}: {folder})") from None


def check_writable(workdir: str, folders: Iterable[str] = ("", CHECKPOINTS)) -> None:
  """Every folder the runner will write under ``workdir`` accepts a new file.

  ``folders`` (relative to ``workdir``) are created if missing; every folder
  already below them (the checkpoint steps, the figures) is probed too, since
  the runner replaces and deletes files there.

  Raises:
    WorkdirError: one line naming the first folder that refuses a file.
  """
  for folder in folders:
    top = os.path.join(workdir, folder)
    if os.path.exists(top) and not os.path.isdir(top):
      raise WorkdirError(f"{top} is in the way: the runner writes a folder there")
    try:
      os.makedirs(top, exist_ok=True)
    except OSError as e:
      raise WorkdirError(f"{top} cannot be created ({e.strerror})") from None
    walk = [top] if folder == "" else [base for base, _, _ in os.walk(top)]
    for path in walk:
      _probe(path, os.path.relpath(path, os.path.dirname(workdir)))


def clear_stale(workdir: str) -> list[str]:
  """Removes temporary files a killed run left behind; returns what was removed.

  The tables' ``<name>.tmp<pid>`` files, the figures' and report's ``.<name>.*.tmp`` files,
  probe files, and orbax's unfinished ``*.orbax-checkpoint-tmp*`` step folders.
  Call it with the lock held: a live writer's temporary files look the same.
  """
  patterns = (
    "*.tmp[0-9]*",
    ".*.tmp",
    ".write-test-*",
    os.path.join("figures", ".*.tmp"),
    os.path.join("figures", "*.tmp[0-9]*"),
    os.path.join(CHECKPOINTS, "*", "*.orbax-checkpoint-tmp*"),
    os.path.join(CHECKPOINTS, "*", "*", "*.orbax-checkpoint-tmp*"),
  )
  removed = []
  for pattern in patterns:
    for path in glob.glob(os.path.join(workdir, pattern)):
      if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
      else:
        os.remove(path)
      removed.append(path)
  return removed


def remove_outputs(workdir: str) -> list[str]:
  """Deletes what a sweep wrote in ``workdir`` (:data:`OUTPUTS`, nothing else); returns it."""
  removed = []
  for name in reversed(OUTPUTS):  # config.json last: what a cut-short removal leaves stays bound
    path = os.path.join(workdir, name)
    if os.path.isdir(path) and not os.path.islink(path):
      shutil.rmtree(path)
    elif os.path.lexists(path):
      os.remove(path)
    else:
      continue
    removed.append(path)
  return removed


# --------------------------------------------------------------------------
# One writer.
# --------------------------------------------------------------------------


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _read_json(path: str) -> Any:
  with open(path) as f:
    return json.load(f)


def write_json_atomic(path: str, data: Any, *, sort_keys: bool = True) -> None:
  """Writes ``data`` as indented JSON (keys sorted) through a temporary file, fsync and a rename."""
  write_text_atomic(path, json.dumps(data, indent=2, sort_keys=sort_keys, default=str) + "\n")


def write_text_atomic(path: str, text: str) -> None:
  """Writes ``text`` to ``path`` through a temporary file, fsync and a rename.

  A failure (a full disk, say) removes the temporary file and leaves ``path``
  as it was; the ``OSError`` propagates.
  """
  tmp = f"{path}.tmp{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


class Lock:
  """The workdir's one-writer lock (``filelock.FileLock`` on ``workdir/.lock``; module doc).

  ``with Lock(workdir) as lock:`` takes it or raises :class:`WorkdirError`
  naming the holder; ``lock.previous`` is the holder record a killed run left
  (``None`` after a clean exit), so the caller can say it took that lock over.
  """

  def __init__(self, workdir: str):
    import filelock  # noqa: PLC0415

    self._filelock = filelock
    self.workdir = workdir
    self.lock = filelock.FileLock(os.path.join(workdir, LOCK))
    self.holder_path = os.path.join(workdir, HOLDER)
    self.previous: dict | None = None

  def __enter__(self) -> Lock:
    try:
      self.lock.acquire(timeout=0)
    except self._filelock.Timeout:
      raise WorkdirError(self._busy_message()) from None
    except OSError as e:
      raise WorkdirError(f"--workdir={self.workdir}: cannot take its lock ({e.strerror})") from None
    try:
      previous = _read_json(self.holder_path)
    except (OSError, ValueError):
      previous = None
    self.previous = previous if isinstance(previous, dict) else None
    me = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
    try:
      write_json_atomic(self.holder_path, me)
    except OSError:
      self.lock.release()
      raise
    return self

  def _busy_message(self) -> str:
    try:
      holder = _read_json(self.holder_path)
      who = f"pid {holder['pid']} on {holder['host']} since {holder['since']}"
    except (OSError, ValueError, KeyError, TypeError):
      who = "another process (it has not written its pid yet)"
    return (
      f"--workdir={self.workdir} is in use by {who}; wait for it to finish, or stop it "
      "(a killed run's lock is released by the OS), or choose another --workdir"
    )

  def __exit__(self, *exc) -> None:
    with contextlib.suppress(OSError):
      os.remove(self.holder_path)
    self.lock.release()


# --------------------------------------------------------------------------
# What the numbers depend on.
# --------------------------------------------------------------------------


def environment(num_devices: int) -> dict[str, Any]:
  """What besides the config changes a sweep's numbers: versions, platform, devices, XLA flags."""
  import jax  # noqa: PLC0415
  import jaxlib  # noqa: PLC0415

  device = jax.devices()[0]
  return {
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "platform": device.platform,
    "device_kind": device.device_kind,
    "devices": int(num_devices),
    "processes": jax.process_count(),
    "xla_flags": " ".join(sorted(os.environ.get("XLA_FLAGS", "").split())),
  }


def _differences(here: Any, there: Any, path: str = "") -> list[str]:
  if isinstance(here, dict) and isinstance(there, dict):
    out = []
    for key in sorted(set(here) | set(there)):
      out += _differences(here.get(key), there.get(key), f"{path}.{key}" if path else key)
    return out
  return [] if here == there else [f"{path}: {there!r} there, {here!r} here"]


def _get(data: Any, field: str) -> Any:
  for key in field.split("."):
    data = data.get(key) if isinstance(data, dict) else None
  return data


def has_results(workdir: str) -> bool:
  """Whether ``workdir`` holds anything a sweep computed (a checkpoint or a table)."""
  checkpoints = os.path.join(workdir, CHECKPOINTS)
  if os.path.isdir(checkpoints) and any(os.scandir(checkpoints)):
    return True
  return any(os.path.exists(os.path.join(workdir, n)) for n in OUTPUTS if n.endswith(".csv"))


def check_binding(
  workdir: str,
  config: dict,
  env: dict,
  *,
  ignore: Iterable[str] = (),
  ordered: Iterable[str] = (),
  flag: str = "--overwrite",
) -> None:
  """Refuses a workdir whose results were made by another config or environment.

  Args:
    workdir: the (locked) folder.
    config: this launch's resolved config as a JSON dict.
    env: this launch's :func:`environment`.
    ignore: dotted config fields that change no number (``run.plots``...).
    ordered: dotted config fields holding a dict whose key order matters too (the
      sweep's axes: their order is the members' order).
    flag: the option that discards the old state, named in the message.

  Raises:
    WorkdirError: one line listing the differences and how to proceed.
  """
  how = f"resume with the same settings, choose a new --workdir, or pass {flag} to discard it"
  saved = os.path.join(workdir, CONFIG)
  if not os.path.exists(saved):
    if has_results(workdir):
      raise WorkdirError(
        f"--workdir={workdir} holds results but no {CONFIG}, so the settings that made them are "
        f"unknown; choose a new --workdir, or pass {flag} to discard them"
      )
    return
  records = {}
  for name in (CONFIG, ENVIRONMENT):
    path = os.path.join(workdir, name)
    try:
      records[name] = _read_json(path)
    except FileNotFoundError:
      records[name] = None
    except (OSError, ValueError) as e:
      raise WorkdirError(
        f"{path} is unreadable ({type(e).__name__}: {e}); it records the settings of the results "
        f"there: restore it, choose a new --workdir, or pass {flag} to discard them"
      ) from None
    if records[name] is not None and not isinstance(records[name], dict):
      raise WorkdirError(f"{path} does not hold a JSON object; {how}")
  if records[ENVIRONMENT] is None and has_results(workdir):
    raise WorkdirError(
      f"--workdir={workdir} holds results but no {ENVIRONMENT} (jax versions, devices), so "
      f"they may not be resumed exactly; choose a new --workdir, or pass {flag} to discard them"
    )

  def strip(d: dict) -> dict:
    d = json.loads(json.dumps(d))
    for field in ignore:
      section, _, key = field.rpartition(".")
      (d.get(section, {}) if section else d).pop(key, None)
    return d

  diff = _differences(strip(config), strip(records[CONFIG]))
  for field in ordered:
    here, there = _get(config, field), _get(records[CONFIG], field)
    # (a dict with other keys is listed among the differences already)
    same_keys = isinstance(here, dict) and isinstance(there, dict) and set(here) == set(there)
    if same_keys and list(here) != list(there):
      diff.append(f"{field} in another order: {list(there)} there, {list(here)} here")
  diff += _differences(env, records[ENVIRONMENT] or env)
  if diff:
    shown = "; ".join(diff[:6]) + (f"; and {len(diff) - 6} more" if len(diff) > 6 else "")
    raise WorkdirError(
      f"--workdir={workdir} holds results made with other settings ({shown}); {how}"
    )


def bind(workdir: str, config: dict, env: dict) -> None:
  """Records ``config`` and ``env`` in ``workdir`` (after :func:`check_binding` passed).

  The config keeps its keys' order (a sweep's axes are in the order of its members).
  """
  write_json_atomic(os.path.join(workdir, CONFIG), config, sort_keys=False)
  write_json_atomic(os.path.join(workdir, ENVIRONMENT), env)


__all__ = [
  "CHECKPOINTS",
  "CONFIG",
  "ENVIRONMENT",
  "HOLDER",
  "LOCK",
  "Lock",
  "OUTPUTS",
  "WorkdirError",
  "bind",
  "check_binding",
  "check_writable",
  "clear_stale",
  "environment",
  "has_results",
  "remove_outputs",
  "writable_folder",
  "write_json_atomic",
  "write_text_atomic",
]
