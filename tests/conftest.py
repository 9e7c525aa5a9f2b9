"""Shared test settings: float32 matmuls at full precision, a --runslow switch."""

import os
import shutil

import jax
import pytest

# Parity checks compare at 1e-5: make every backend do full-precision float32 matmuls.
jax.config.update("jax_default_matmul_precision", "highest")


def pytest_addoption(parser):
  parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config, items):
  if config.getoption("--runslow"):
    return
  skip_slow = pytest.mark.skip(reason="slow: pass --runslow to run")
  for item in items:
    if "slow" in item.keywords:
      item.add_marker(skip_slow)


@pytest.fixture(scope="session")
def runner_env(tmp_path_factory):
  """The environment of the runner's subprocess tests: one XLA compilation cache for all.

  The cache sits beside the xdist workers' own temporary folders, so every
  worker and test module loads the programs another one compiled.
  """
  base = tmp_path_factory.getbasetemp()
  cache = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "xla_cache"
  cache.mkdir(exist_ok=True)
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return {
    **os.environ,
    "JAX_COMPILATION_CACHE_DIR": str(cache),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    "PYTHONPATH": root,
  }


@pytest.fixture(scope="session")
def tiny_clean(tmp_path_factory, runner_env):
  """The runner's tiny sweep, uninterrupted and undamaged (``runner_support.TINY``).

  The reference the kill, shard and fault tests hold their tables to, computed
  once per test process.
  """
  from runner_support import TINY, run  # noqa: PLC0415

  workdir = str(tmp_path_factory.mktemp("tiny_clean"))
  rc, _, err = run([*TINY, f"--workdir={workdir}"], runner_env)
  assert rc == 0, err[-3000:]
  return workdir


@pytest.fixture(scope="session")
def vanishing_quick(tmp_path_factory, runner_env):
  """The flagship's quick preset, run once for every test module and xdist worker.

  ``test_run`` checks its files and ``test_experiments`` its report sections:
  the first worker to take the lock runs it (pytest-xdist's recipe for a
  session fixture that runs once), the other reads the same workdir.
  Returns ``(workdir, stdout, stderr)``.
  """
  import filelock  # noqa: PLC0415
  from runner_support import CONFIG, run  # noqa: PLC0415

  base = tmp_path_factory.getbasetemp()
  shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
  workdir = shared / "vanishing_quick"
  done = shared / "vanishing_quick.out"
  with filelock.FileLock(str(shared / "vanishing_quick.lock")):
    if not done.exists():
      shutil.rmtree(workdir, ignore_errors=True)
      rc, out, err = run([f"--config={CONFIG}:quick", f"--workdir={workdir}"], runner_env)
      assert rc == 0, err[-3000:]
      (shared / "vanishing_quick.err").write_text(err)
      done.write_text(out)
  return str(workdir), done.read_text(), (shared / "vanishing_quick.err").read_text()
