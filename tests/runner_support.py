"""Helpers for the runner's subprocess tests (tests/test_run*.py): launch it as a user does.

Every launch shares one persistent XLA compilation cache (the ``runner_env``
fixture in conftest.py), so a program compiled by one run is loaded by the
next, in every xdist worker: the same executable, so the same numbers.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = "experiments/configs/vanishing.py"
# One group (gru, T=5), 3 seeds x 2 clip thresholds = 6 members, 4 chunks of 10 steps,
# a checkpoint after every chunk (the quick preset), a 3-gain scan.
TINY = [
  f"--config={CONFIG}:quick,cell=gru,T=5,seeds=3",
  "--config.num_steps=40",
  "--config.run.chunk_steps=10",
  "--config.diagnostics.gain_scan=(0.5,1.0,2.0)",
  "--config.run.plots=False",
  "--config.run.devices=2",
]
TABLES = ("summary.csv", "metrics.csv", "gradients.csv", "gain_scan.csv")


def launch(args, env, **kwargs):
  return subprocess.Popen(
    [sys.executable, "-m", "experiments.run", *args],
    cwd=ROOT,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
    **kwargs,
  )


def run(args, env, timeout=300):
  proc = launch(args, env)
  out, err = proc.communicate(timeout=timeout)
  return proc.returncode, out, err


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def tables(workdir):
  out = {}
  for name in TABLES:
    with open(os.path.join(workdir, name)) as f:
      out[name] = f.read()
  return out


def digest(workdir):
  """One hash of every file's path and bytes below ``workdir``."""
  h = hashlib.sha256()
  for base, _, files in sorted(os.walk(workdir)):
    for name in sorted(files):
      path = os.path.join(base, name)
      h.update(path.encode())
      with open(path, "rb") as f:
        h.update(f.read())
  return h.hexdigest()


def error_line(err):
  """The one ``run: error:`` line of a failed launch; asserts there is no other error output."""
  errors = [line for line in err.splitlines() if line.startswith("run: error:")]
  assert len(errors) == 1, err[-3000:]
  assert "Traceback" not in err, err[-3000:]
  assert not re.search(r"^[EF]\d{4} ", err, re.MULTILINE), err[-3000:]  # absl's error logs
  return errors[0]
