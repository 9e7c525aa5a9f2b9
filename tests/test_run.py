"""The experiment runner end to end: outputs, kill -9 and resume, sharding, bad flags.

Every run is a subprocess (``python -m experiments.run``), as a user launches it:
the number of XLA devices is fixed when JAX starts. The runs share one
persistent compilation cache, so a program compiled by one run is loaded by the
next (the same executable, so the same numbers).
"""

from __future__ import annotations

import os
import shutil
import signal
import time

import numpy as np
import pytest
from runner_support import CONFIG, TABLES, TINY, digest, launch, read_csv, run, tables

from rnnlab.runner import tables as tables_lib


@pytest.fixture(scope="module")
def env(runner_env):
  return runner_env


@pytest.fixture(scope="module")
def quick(vanishing_quick):
  return vanishing_quick  # the flagship's quick preset (conftest): run once per test session


def test_quick_preset_writes_every_file_with_the_expected_rows(quick):
  workdir, out, err = quick
  for name in ("config.json", "report.md", *TABLES):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  for figure in ("grad_vs_lag", "decay_vs_gain", "training_curves", "success_rate", "clipping"):
    with open(os.path.join(workdir, "figures", f"{figure}.png"), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", figure
    with open(os.path.join(workdir, "figures", f"{figure}.svg")) as f:
      assert "<svg" in f.read(), figure
    with open(os.path.join(workdir, "report.md")) as f:
      assert f"figures/{figure}.png" in f.read(), figure
  # Progress lines with an ETA, per group; the axes' classification and the padding.
  assert "ETA group" in err and "[6/6] gru_T10" in err
  assert "vmapped axes: clip; looped axes: model.cell, task.length" in err
  assert "0 padded member(s) in all" in err  # 4 members per group on 2 devices

  rows = read_csv(os.path.join(workdir, "summary.csv"))
  axes = ["model.cell", "task.length", "clip"]
  assert list(rows[0]) == list(tables_lib.summary_columns(axes))
  grid = {(r["cell"], int(r["T"]), float(r["clip"]), int(r["seed"])) for r in rows}
  expected = {
    (c, T, clip, s)
    for c in ("elman", "lstm", "gru")
    for T in (5, 10)
    for clip in (0.0, 1.0)
    for s in (0, 1)
  }
  assert grid == expected and len(rows) == 24
  metrics = read_csv(os.path.join(workdir, "metrics.csv"))
  assert len(metrics) == 24 * 60
  for r in rows:
    assert abs(float(r["baseline"]) - 1 / 6) < 1e-6
    assert (r["model.cell"], r["task.length"]) == (r["cell"], r["T"])
    final_loss = float(r["final_loss"])
    assert np.isfinite(final_loss)
    # The adding task's own criterion (MSE below a tenth of the baseline), checked apart.
    assert (r["solved"] == "True") == (final_loss < 1 / 60)
    steps = [m for m in metrics if m["member"] == r["member"]]
    # diverged_at is the first step either divergence rule rejected (non-finite or blown up).
    rejected = [int(m["step"]) for m in steps if m["diverged"] == "True"]
    assert int(r["diverged_at"]) == (rejected[0] if rejected else -1)
    assert all(m["diverged"] == "True" for m in steps if m["nonfinite"] == "True")
    clipped = np.mean([m["clipped"] == "True" for m in steps])
    assert abs(float(r["clip_fraction"]) - clipped) < 1e-6
    if float(r["clip"]) == 0:
      assert clipped == 0
    for column in ("decay_rate_init", "spectral_radius_init", "lyapunov_init"):
      assert np.isfinite(float(r[column])), column
  scan = read_csv(os.path.join(workdir, "gain_scan.csv"))
  assert len(scan) == 3 * 4  # 3 cells x 4 gains x 1 seed
  # The untrained tanh RNN with orthogonal W_hh = g Q: sigma_max is the gain itself.
  for r in scan:
    if r["cell"] == "elman":
      assert abs(float(r["sigma_max"]) - float(r["gain"])) < 1e-4
      assert abs(float(r["pascanu_bound"]) - float(r["gain"])) < 1e-4


def test_tables_read_with_pandas(quick):
  pd = pytest.importorskip("pandas")
  workdir, _, _ = quick
  summary = pd.read_csv(os.path.join(workdir, "summary.csv"))
  assert summary["solved"].dtype == bool and summary["T"].dtype.kind == "i"
  assert len(pd.read_csv(os.path.join(workdir, "gradients.csv"))) > 0


def test_sigkill_mid_sweep_then_rerun_equals_a_clean_run(tmp_path, env, tiny_clean):
  workdir = str(tmp_path / "killed")
  args = [*TINY, f"--workdir={workdir}"]
  proc = launch(args, env)
  progress = os.path.join(workdir, "checkpoints", "gru_T5")
  deadline = time.monotonic() + 240
  killed_at = None
  while time.monotonic() < deadline and proc.poll() is None:
    steps = [int(s) for s in os.listdir(progress) if s.isdigit()] if os.path.isdir(progress) else []
    if steps and max(steps) < 40:  # a checkpoint of a group in progress: kill now
      proc.send_signal(signal.SIGKILL)
      killed_at = max(steps)
      break
    time.sleep(0.01)
  proc.communicate()
  assert killed_at is not None, "the run finished before it could be killed"
  assert proc.returncode == -signal.SIGKILL
  assert not os.path.exists(os.path.join(workdir, "summary.csv"))

  rc, _, err = run(args, env)
  assert rc == 0, err[-3000:]
  assert "resuming at step" in err
  # The killed run's lock was released by the OS; the relaunch says whose it took over.
  assert f"took over the lock of pid {proc.pid}" in err
  assert tables(workdir) == tables(tiny_clean)

  # A finished sweep launched again reads every group back and rewrites the same tables.
  rc, _, err = run(args, env)
  assert rc == 0 and "finished earlier" in err
  assert tables(workdir) == tables(tiny_clean)


def test_sharded_over_4_devices_equals_2_devices_bitwise_and_1_device_to_rounding(
  tmp_path, env, tiny_clean
):
  results = {}
  procs = {
    d: launch([*TINY, f"--config.run.devices={d}", f"--workdir={tmp_path / str(d)}"], env)
    for d in (4, 1)
  }
  for d, proc in procs.items():
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    results[d] = tables(str(tmp_path / str(d)))
  assert results[4] == tables(tiny_clean)
  # One device compiles through XLA's single-device pipeline: the untrained diagnostics
  # agree bitwise, the training to float rounding (amplified by training, so: early steps).
  one, two = results[1], tables(tiny_clean)
  assert one["gain_scan.csv"] == two["gain_scan.csv"]
  m1 = read_csv(str(tmp_path / "1" / "metrics.csv"))
  m2 = read_csv(os.path.join(tiny_clean, "metrics.csv"))
  assert [r["member"] for r in m1] == [r["member"] for r in m2]
  pairs = zip(m1, m2, strict=True)
  early = np.asarray([(float(a["loss"]), float(b["loss"])) for a, b in pairs if int(a["step"]) < 5])
  np.testing.assert_allclose(early[:, 0], early[:, 1], rtol=1e-5)


BAD = [
  ([f"--config={CONFIG}:quick,cell=foo"], "config.model.cell='foo' is invalid"),
  (
    [f"--config={CONFIG}:quick", "--config.sweep.axes={'model.cell': ('elman', 'rnn')}"],
    "config.model.cell='rnn' is invalid",
  ),
  ([f"--config={CONFIG}:quick", "--config.task.name=adder"], "config.task.name='adder' is invalid"),
  ([f"--config={CONFIG}:quick", "--config.optimizer.learning_rate=fast"], "learning_rate"),
  ([f"--config={CONFIG}:quick,T=10+0"], "config.task.length=0"),
  ([f"--config={CONFIG}:quick,T=-5"], "config.task.length=-5"),
  ([f"--config={CONFIG}:quick", "--config.model.hidden_size=0"], "config.model.hidden_size=0"),
  ([f"--config={CONFIG}:quick", "--config.nosuchfield=1"], "nosuchfield"),
  ([f"--config={CONFIG}:fastest"], "unknown preset 'fastest'"),
  (
    [f"--config={CONFIG}:quick", "--config.sweep.axes={'model.hiden_size': (8,)}"],
    "unknown config field 'model.hiden_size'; did you mean 'model.hidden_size'?",
  ),
  (
    [f"--config={CONFIG}:quick", "--config.sweep.axes={'run.devices': (1, 2)}"],
    "'run.devices' is a field of the runner",
  ),
]


def test_bad_flags_exit_2_with_one_line_and_leave_the_workdir_intact(tmp_path, env, tiny_clean):
  workdir = str(tmp_path / "results")
  shutil.copytree(tiny_clean, workdir)
  before = digest(workdir)
  blocker = tmp_path / "a_file"
  blocker.write_text("not a folder")
  cases = [([*args, f"--workdir={workdir}"], message) for args, message in BAD]
  cases += [
    ([*TINY, f"--workdir={blocker}"], "is not a folder"),
    ([*TINY, f"--workdir={blocker}/sub"], "is not writable"),
  ]
  # These two take the workdir's lock to read its binding: launched together, one would
  # find the other's lock (also exit 2, "in use"), so they run one after the other.
  binding = [
    # The workdir holds a sweep of another config: refuse rather than mix results.
    (
      [*TINY, "--config.optimizer.learning_rate=0.5", f"--workdir={workdir}"],
      "made with other settings (optimizer.learning_rate: 0.002 there, 0.5 here",
    ),
    # The same axes in another order: other member indices, so other results.
    (
      [
        *TINY,
        "--config.sweep.axes={'clip': (0.0, 1.0), 'model.cell': ('gru',), 'task.length': (5,)}",
        f"--workdir={workdir}",
      ],
      "sweep.axes in another order",
    ),
  ]
  procs = [(launch(args, env), message) for args, message in cases]
  finished = []
  for proc, message in procs:
    _, err = proc.communicate(timeout=120)
    finished.append((proc.returncode, err, message))
  for args, message in binding:
    returncode, _, err = run(args, env)
    finished.append((returncode, err, message))
  for returncode, err, message in finished:
    lines = err.strip().splitlines()
    assert returncode == 2, (message, err[-2000:])
    assert len(lines) == 1 and lines[0].startswith("run: error:"), err[-2000:]
    assert message in lines[0], (message, lines[0])
  assert digest(workdir) == before


def test_help_documents_every_flag(env):
  rc, out, err = run(["--help"], env)
  text = out + err
  assert rc == 0, err[-2000:]
  assert "--config" in text and "--workdir" in text and "resume" in text
