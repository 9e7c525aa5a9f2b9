"""The runner's workdir under faults: damaged checkpoints, two launches, kill -9, full disk.

Each test injects one fault into a tiny sweep (one group, 6 members, 4 chunks;
``runner_support.TINY``) launched as a user launches it, and asserts the
outcome: the same tables as an undamaged run, byte for byte, or one
``run: error:`` line with the documented exit status and the workdir intact.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
from runner_support import TINY, digest, error_line, launch, run, tables

from rnnlab import workdir as workdir_lib

GROUP = "gru_T5"
SCAN = "gain_scan_gru"


@pytest.fixture
def clean(tiny_clean):
  """The tiny sweep, uninterrupted and undamaged: the reference every fault is held to."""
  return tiny_clean


def copy_of(clean, tmp_path, name="work"):
  workdir = str(tmp_path / name)
  shutil.copytree(clean, workdir)
  return workdir


def step_dir(workdir, store, step):
  return os.path.join(workdir, "checkpoints", store, str(step))


def steps(workdir, store):
  folder = os.path.join(workdir, "checkpoints", store)
  return sorted(int(n) for n in os.listdir(folder) if n.isdigit())


def data_file(step_path):
  """The largest file of a step's arrays (orbax's OCDBT data)."""
  files = [
    os.path.join(base, name)
    for base, _, names in os.walk(os.path.join(step_path, "tree"))
    for name in names
  ]
  return max(files, key=os.path.getsize)


def flip(path, count=8):
  with open(path, "r+b") as f:
    data = bytearray(f.read())
    middle = len(data) // 2
    for i in range(middle, min(middle + count, len(data))):
      data[i] ^= 0xFF
    f.seek(0)
    f.write(data)


def truncate(path):
  with open(path, "r+b") as f:
    f.truncate(os.path.getsize(path) // 2)


def garbage(path):
  with open(path, "wb") as f:
    f.write(b"\x00{not json" * 7)


def no_temporary_files(workdir):
  left = [
    os.path.join(base, name)
    for base, dirs, files in os.walk(workdir)
    for name in dirs + files
    if "tmp" in name or name.startswith(".write-test")
  ]
  assert not left, left


# --------------------------------------------------------------------------
# Damaged checkpoints: never used, never a different number.
# --------------------------------------------------------------------------


def _flip_finished(w):
  flip(data_file(step_dir(w, GROUP, 40)))
  return [f"checkpoint {GROUP} step 40:", f"checkpoint {GROUP}: falling back to step 30"]


def _flip_unfinished(w):
  # As if killed before the last save: the newest step is of an unfinished group.
  shutil.rmtree(step_dir(w, GROUP, 40))
  flip(data_file(step_dir(w, GROUP, 30)))
  return [f"checkpoint {GROUP} step 30:", f"checkpoint {GROUP}: no step verifies; recomputing"]


def _truncate_data(w):
  truncate(data_file(step_dir(w, GROUP, 40)))
  return [f"checkpoint {GROUP} step 40: unreadable", "falling back to step 30"]


def _delete_data(w):
  os.remove(data_file(step_dir(w, GROUP, 40)))
  return [f"checkpoint {GROUP} step 40: unreadable", "falling back to step 30"]


def _garbage_metadata(w):
  garbage(os.path.join(step_dir(w, GROUP, 40), "tree", "_METADATA"))
  garbage(os.path.join(step_dir(w, SCAN, 0), "meta", "metadata"))
  return [
    f"checkpoint {GROUP} step 40: unreadable",
    f"checkpoint {SCAN} step 0: unreadable",
    f"checkpoint {SCAN}: no step verifies; recomputing",
  ]


@pytest.mark.parametrize(
  "damage", [_flip_finished, _flip_unfinished, _truncate_data, _delete_data, _garbage_metadata]
)
def test_a_damaged_checkpoint_is_reported_discarded_and_the_tables_equal_a_clean_run(
  damage, clean, tmp_path, runner_env
):
  workdir = copy_of(clean, tmp_path)
  expected = damage(workdir)
  rc, _, err = run([*TINY, f"--workdir={workdir}"], runner_env)
  assert rc == 0, err[-3000:]
  for line in expected:
    assert line in err, (line, err[-3000:])
  assert "Traceback" not in err and "Event loop is closed" not in err, err[-3000:]
  assert tables(workdir) == tables(clean)
  assert max(steps(workdir, GROUP)) == 40


# --------------------------------------------------------------------------
# One writer per workdir.
# --------------------------------------------------------------------------


def test_two_launches_at_once_one_runs_the_other_exits_2(clean, tmp_path, runner_env):
  workdir = str(tmp_path / "shared")
  args = [*TINY, f"--workdir={workdir}"]
  procs = [launch(args, runner_env) for _ in range(2)]
  outcomes = [(p, *p.communicate(timeout=300)) for p in procs]
  assert sorted(p.returncode for p, _, _ in outcomes) == [0, 2], [e[-800:] for *_, e in outcomes]
  (winner, _, _), (_, _, err) = sorted(outcomes, key=lambda o: o[0].returncode)
  line = error_line(err)
  assert f"--workdir={workdir} is in use by " in line
  assert f"pid {winner.pid} on {socket.gethostname()}" in line or "not written its pid" in line
  assert tables(workdir) == tables(clean)
  # A third launch afterwards reads the workdir back.
  rc, _, err = run(args, runner_env)
  assert rc == 0 and "finished earlier" in err, err[-3000:]
  assert tables(workdir) == tables(clean)


def test_a_launch_while_another_runs_names_the_holder_and_touches_nothing(
  clean, tmp_path, runner_env
):
  workdir = str(tmp_path / "busy")
  args = [*TINY, f"--workdir={workdir}"]
  first = launch(args, runner_env)
  try:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and first.poll() is None:
      if os.path.isdir(os.path.join(workdir, "checkpoints", GROUP)) and steps(workdir, GROUP):
        break
      time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # frozen mid-run, holding the lock
    assert first.poll() is None, "the first run ended before it could be frozen"
    before = digest(workdir)
    rc, _, err = run(args, runner_env)
    assert rc == 2
    line = error_line(err)
    assert f"is in use by pid {first.pid} on {socket.gethostname()} since " in line
    assert digest(workdir) == before
  finally:
    first.send_signal(signal.SIGCONT)
  _, err = first.communicate(timeout=300)
  assert first.returncode == 0, err[-3000:]
  assert tables(workdir) == tables(clean)


def test_the_lock_of_a_held_workdir_is_refused_and_free_after_release(tmp_path, runner_env):
  workdir = str(tmp_path / "held")
  os.makedirs(workdir)
  with workdir_lib.Lock(workdir):
    rc, _, err = run([*TINY, f"--workdir={workdir}"], runner_env)
    assert rc == 2
    assert f"is in use by pid {os.getpid()}" in error_line(err)
    assert sorted(os.listdir(workdir)) == sorted([workdir_lib.LOCK, workdir_lib.HOLDER])
  assert workdir_lib.HOLDER not in os.listdir(workdir)  # released cleanly: no holder record


# --------------------------------------------------------------------------
# kill -9 at the worst moments.
# --------------------------------------------------------------------------


def kill_when(proc, found, timeout=240):
  """SIGKILLs ``proc`` as soon as ``found()`` returns something; returns that."""
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline and proc.poll() is None:
    hit = found()
    if hit:
      proc.send_signal(signal.SIGKILL)
      proc.communicate()
      return hit
    time.sleep(0.002)
  proc.communicate()
  return None


def test_kill_during_a_checkpoint_write_resumes_exactly(clean, tmp_path, runner_env):
  workdir = str(tmp_path / "killed_saving")
  args = [*TINY, f"--workdir={workdir}"]
  pattern = os.path.join(workdir, "checkpoints", GROUP, "*orbax-checkpoint-tmp*")
  caught = kill_when(launch(args, runner_env), lambda: glob.glob(pattern))
  assert caught, "the run finished before a checkpoint write could be interrupted"
  rc, _, err = run(args, runner_env)
  assert rc == 0, err[-3000:]
  assert tables(workdir) == tables(clean)
  no_temporary_files(workdir)


def test_kill_during_figure_writing_resumes_and_leaves_no_temporary_file(
  clean, tmp_path, runner_env
):
  workdir = str(tmp_path / "killed_drawing")
  args = [*TINY, "--config.run.plots=True", f"--workdir={workdir}"]
  pattern = os.path.join(workdir, "figures", ".*.tmp")
  caught = kill_when(launch(args, runner_env), lambda: glob.glob(pattern))
  assert caught, "the run finished before a figure write could be interrupted"
  rc, _, err = run(args, runner_env)
  assert rc == 0, err[-3000:]
  assert "temporary files left by an interrupted run" in err
  assert "finished earlier" in err
  assert tables(workdir) == tables(clean)
  assert os.path.getsize(os.path.join(workdir, "report.md")) > 0
  no_temporary_files(workdir)


# --------------------------------------------------------------------------
# The disk and the folders.
# --------------------------------------------------------------------------


def _tmpfs(tmp_path, size, where="disk"):
  mount = tmp_path / where
  mount.mkdir(parents=True)
  done = subprocess.run(
    ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
    capture_output=True,
    text=True,
  )
  if done.returncode != 0:
    pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
  return str(mount)


@pytest.fixture
def small_disk(tmp_path):
  """A 300 KiB tmpfs (the tiny sweep needs about 400 KiB); skipped where mounting is refused."""
  mount = _tmpfs(tmp_path, "300k")
  try:
    yield mount
  finally:
    subprocess.run(["umount", "-l", mount], capture_output=True)


@pytest.fixture
def checkpoint_disk(tmp_path):
  """A workdir whose ``checkpoints/`` is a tmpfs of its own, to be remounted read-only.

  (The workdir itself keeps the runner's lock open for writing, so its own file
  system could not be remounted read-only under a live run.)
  """
  mount = _tmpfs(tmp_path, "16m", where="w/checkpoints")
  try:
    yield os.path.dirname(mount)
  finally:
    subprocess.run(["umount", "-l", mount], capture_output=True)


def test_a_full_disk_is_one_line_keeps_what_was_committed_and_resumes(
  small_disk, clean, runner_env
):
  workdir = os.path.join(small_disk, "w")
  args = [*TINY, f"--workdir={workdir}"]
  rc, _, err = run(args, runner_env)
  assert rc == 3, err[-3000:]
  line = error_line(err)
  assert "No space left on device" in line and workdir in line, line
  assert "launch the same command to resume" in line
  committed = steps(workdir, GROUP)
  assert committed and max(committed) < 40, committed
  # The cause fixed (a bigger disk), the same command resumes from the committed steps.
  subprocess.run(["mount", "-o", "remount,size=16m", small_disk], check=True)
  rc, _, err = run(args, runner_env)
  assert rc == 0, err[-3000:]
  assert f"resuming at step {max(committed)}/40" in err
  assert tables(workdir) == tables(clean)
  no_temporary_files(workdir)


def _frozen_after_first_checkpoint(args, workdir, env):
  """Launches the runner and SIGSTOPs it once its group has committed a checkpoint."""
  proc = launch(args, env)
  deadline = time.monotonic() + 240
  folder = os.path.join(workdir, "checkpoints", GROUP)
  while time.monotonic() < deadline and proc.poll() is None:
    if os.path.isdir(folder) and steps(workdir, GROUP):
      break
    time.sleep(0.002)
  proc.send_signal(signal.SIGSTOP)
  assert proc.poll() is None, "the run ended before it could be frozen"
  return proc


@pytest.mark.parametrize("how", ["read_only_file_system", "immutable_folder"])
def test_a_folder_turned_unwritable_mid_run_is_one_line_and_the_run_resumes_after_the_fix(
  how, checkpoint_disk, clean, runner_env
):
  workdir = checkpoint_disk
  disk = os.path.join(workdir, "checkpoints")
  args = [*TINY, f"--workdir={workdir}"]
  proc = _frozen_after_first_checkpoint(args, workdir, runner_env)
  try:
    if how == "read_only_file_system":
      subprocess.run(["mount", "-o", "remount,ro", disk], check=True)
      undo = lambda: subprocess.run(["mount", "-o", "remount,rw", disk], check=True)  # noqa: E731
      reason = "Read-only file system"
    else:
      undo = _make_unwritable(os.path.join(workdir, "checkpoints", GROUP))
      reason = "Operation not permitted" if os.geteuid() == 0 else "Permission denied"
  finally:
    proc.send_signal(signal.SIGCONT)
  try:
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err[-3000:]
    line = error_line(err)
    assert reason in line and workdir in line, line
  finally:
    undo()
  rc, _, err = run(args, runner_env)
  assert rc == 0, err[-3000:]
  assert "resuming at step" in err
  assert tables(workdir) == tables(clean)
  no_temporary_files(workdir)


def _make_unwritable(path):
  """Makes a folder refuse new files even to root (chattr +i); returns how to undo it."""
  if os.geteuid() != 0:
    os.chmod(path, 0o555)
    return lambda: os.chmod(path, 0o755)
  done = subprocess.run(["chattr", "+i", path], capture_output=True, text=True)
  if done.returncode != 0:
    pytest.skip(f"root cannot make a folder unwritable here ({done.stderr.strip()})")
  return lambda: subprocess.run(["chattr", "-i", path], check=True)


def test_an_unwritable_checkpoint_folder_is_refused_before_work_and_resumes_after_the_fix(
  clean, tmp_path, runner_env
):
  workdir = copy_of(clean, tmp_path)
  for name in os.listdir(workdir):
    if name.endswith(".csv"):
      os.remove(os.path.join(workdir, name))
  shutil.rmtree(step_dir(workdir, GROUP, 40))  # the group is unfinished: work is left
  folder = os.path.join(workdir, "checkpoints", GROUP)
  undo = _make_unwritable(folder)
  try:
    before = digest(workdir)
    rc, _, err = run([*TINY, f"--workdir={workdir}"], runner_env)
    assert rc == 2, err[-3000:]
    line = error_line(err)
    assert f"checkpoints/{GROUP} is not writable" in line, line
    assert digest(workdir) == before
  finally:
    undo()
  rc, _, err = run([*TINY, f"--workdir={workdir}"], runner_env)
  assert rc == 0, err[-3000:]
  assert "resuming at step 30/40" in err
  assert tables(workdir) == tables(clean)


# --------------------------------------------------------------------------
# A workdir is bound to what made its numbers.
# --------------------------------------------------------------------------


def _edit_json(path, edit):
  import json  # noqa: PLC0415

  with open(path) as f:
    data = json.load(f)
  edit(data)
  with open(path, "w") as f:
    json.dump(data, f)


def test_a_workdir_bound_to_other_settings_is_refused_in_one_line_and_overwrite_starts_over(
  clean, tmp_path, runner_env
):
  cases = {}

  def case(name, message, extra=(), prepare=None):
    workdir = copy_of(clean, tmp_path, name)
    if prepare is not None:
      prepare(workdir)
    cases[name] = (workdir, [*TINY, *extra, f"--workdir={workdir}"], message)

  case(
    "no_config",
    "holds results but no config.json",
    ("--config.optimizer.learning_rate=0.01",),
    lambda w: os.remove(os.path.join(w, "config.json")),
  )
  case(
    "corrupt_config",
    "config.json is unreadable (JSONDecodeError",
    prepare=lambda w: garbage(os.path.join(w, "config.json")),
  )
  case("devices", "(devices: 2 there, 1 here)", ("--config.run.devices=1",))
  case("cpu_opt_level", "run.cpu_opt_level: 1 there, 2 here", ("--config.run.cpu_opt_level=2",))
  case(
    "versions",
    "jax: '0.0.1' there",
    prepare=lambda w: _edit_json(
      os.path.join(w, "environment.json"), lambda d: d.update(jax="0.0.1")
    ),
  )
  case(
    "no_environment",
    "holds results but no environment.json",
    prepare=lambda w: os.remove(os.path.join(w, "environment.json")),
  )
  before = {name: digest(w) for name, (w, _, _) in cases.items()}
  procs = {name: launch(args, runner_env) for name, (_, args, _) in cases.items()}
  for name, proc in procs.items():
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, (name, err[-2000:])
    line = error_line(err)
    assert cases[name][2] in line, (name, line)
    assert "--overwrite" in line, line
    assert digest(cases[name][0]) == before[name], name

  # --overwrite discards the old state (and only the sweep's own files) and starts over.
  workdir, args, _ = cases["devices"]
  keep = os.path.join(workdir, "notes.txt")
  with open(keep, "w") as f:
    f.write("mine")
  rc, _, err = run([*args, "--config.run.devices=2", "--overwrite"], runner_env)
  assert rc == 0, err[-3000:]
  assert "--overwrite: removed" in err and "finished earlier" not in err
  assert tables(workdir) == tables(clean)
  with open(keep) as f:
    assert f.read() == "mine"
