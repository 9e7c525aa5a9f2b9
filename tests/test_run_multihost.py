"""Several processes on one sweep: 2 processes x 1 CPU device give the tables of 1 process x 2.

The runner is launched as a cluster launches it, once per process with
``--coordinator=HOST:PORT --num_processes=2 --process_id=I`` (jax.distributed,
gloo between the processes), on the tiny sweep of ``runner_support.TINY``
(``run.devices=2``: one CPU device per process). Its tables must equal byte for
byte those of one process holding both devices (the ``tiny_clean`` fixture);
process 0 alone writes the workdir and reports, and a resumed multi-process
launch restores on process 0 and hands the state to the other.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys

import pytest
from absl import flags
from runner_support import ROOT, TINY, tables

from experiments import run as run_lib
from rnnlab import workdir as workdir_lib

GROUP = "gru_T5"
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def launch_cluster(args, workdirs, env, tmp_path, timeout=300):
  """Runs one runner process per workdir (process i gets ``workdirs[i]``); returns (rc, err)s."""
  port = free_port()
  procs = []
  for i, workdir in enumerate(workdirs):
    err = open(tmp_path / f"err{i}.txt", "w+")  # noqa: SIM115  (closed below)
    cmd = [
      sys.executable,
      "-m",
      "experiments.run",
      *args,
      f"--workdir={workdir}",
      f"--coordinator=127.0.0.1:{port}",
      f"--num_processes={len(workdirs)}",
      f"--process_id={i}",
    ]
    procs.append((subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=err, stderr=err), err))
  results = []
  try:
    for proc, err in procs:
      proc.wait(timeout=timeout)
      err.seek(0)
      results.append((proc.returncode, err.read()))
  finally:
    for proc, err in procs:
      if proc.poll() is None:
        proc.kill()
        proc.wait()
      err.close()
  return results


def test_two_processes_give_the_tables_of_one_process_with_both_devices(
  tiny_clean, tmp_path, runner_env
):
  workdir, elsewhere = str(tmp_path / "work"), str(tmp_path / "process1")
  # Process 1 is told another workdir: it must not touch any (process 0 writes).
  (rc0, err0), (rc1, err1) = launch_cluster(TINY, [workdir, elsewhere], runner_env, tmp_path)
  assert rc0 == 0, err0[-3000:]
  assert rc1 == 0, err1[-3000:]
  assert tables(workdir) == tables(tiny_clean)
  assert "sweep: 6 members in 1 compiled group(s)" in err0 and "on 2 cpu device(s)" in err0
  assert err1.strip() == "", err1[-3000:]  # process 0 reports; gloo's chatter is silenced
  assert not os.path.exists(elsewhere)
  with open(os.path.join(workdir, workdir_lib.ENVIRONMENT)) as f:
    assert '"processes": 2' in f.read()

  # Resumed mid-group: process 0 restores step 30 (verified) and hands it to process 1;
  # the gain scan is read back the same way. The tables are again those of one process.
  group = os.path.join(workdir, "checkpoints", GROUP)
  assert sorted(os.listdir(group)) == ["30", "40"]
  shutil.rmtree(os.path.join(group, "40"))
  for name in tables(workdir):
    os.remove(os.path.join(workdir, name))
  (rc0, err0), (rc1, err1) = launch_cluster(TINY, [workdir, elsewhere], runner_env, tmp_path)
  assert rc0 == 0 and rc1 == 0, (err0[-3000:], err1[-3000:])
  assert "resuming at step 30/40" in err0
  assert tables(workdir) == tables(tiny_clean)


def test_a_workdir_in_use_stops_every_process_with_one_line(tmp_path, runner_env):
  workdir = str(tmp_path / "held")
  os.makedirs(workdir)
  with workdir_lib.Lock(workdir):
    results = launch_cluster(TINY, [workdir, workdir], runner_env, tmp_path, timeout=120)
  for i, (rc, err) in enumerate(results):
    lines = err.strip().splitlines()
    assert rc == 2, (i, err[-3000:])
    assert len(lines) == 1 and f"is in use by pid {os.getpid()}" in lines[0], (i, err[-3000:])
  assert results[1][1].startswith("run: error: process 0: --workdir=")


def parse_error(capsys, *args: str) -> str:
  runner_flags = run_lib.define_flags(flags.FlagValues())
  with pytest.raises(SystemExit) as exit_info:
    run_lib.parse_flags(["run", *args], runner_flags)
  lines = capsys.readouterr().err.splitlines()
  assert exit_info.value.code == 2, lines
  assert len(lines) == 1 and lines[0].startswith("run: error: "), lines
  return lines[0]


@pytest.mark.parametrize(
  "args, message",
  [
    (["--coordinator=node1:1234"], "--num_processes and --process_id missing"),
    (["--num_processes=2", "--process_id=0"], "--coordinator missing"),
    (["--coordinator=node1", "--num_processes=2", "--process_id=0"], "expected HOST:PORT"),
    (["--coordinator=node1:70000", "--num_processes=2", "--process_id=0"], "[1, 65535]"),
    (["--coordinator=node1:1234", "--num_processes=0", "--process_id=0"], "an int >= 1"),
    (["--coordinator=node1:1234", "--num_processes=2", "--process_id=2"], "in [0, 1]"),
    (["--coordinator=node1:1234", "--num_processes=2", "--process_id=x"], "process_id"),
  ],
)
def test_cluster_flags_are_all_three_or_none_and_checked_before_jax(capsys, args, message):
  assert message in parse_error(capsys, *args)


def test_cluster_flags_parse():
  runner_flags = run_lib.define_flags(flags.FlagValues())
  run_lib.parse_flags(
    ["run", "--process_id=1", "--coordinator=[::1]:999", "--num_processes=3"], runner_flags
  )
  assert tuple(run_lib.cluster(runner_flags)) == ("[::1]:999", 3, 1)
  runner_flags = run_lib.define_flags(flags.FlagValues())
  run_lib.parse_flags(["run"], runner_flags)
  assert run_lib.cluster(runner_flags) is None
