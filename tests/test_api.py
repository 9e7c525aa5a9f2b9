"""Every public module declares ``__all__``, its names exist, and the API reference lists it.

A public module is one under ``rnnlab/`` no part of whose dotted name starts with ``_``.
``__all__`` is what ``from rnnlab.x import *`` and the reference (``docs/api/``, autodoc
reads ``__all__``) show: the module's own API, never ``jax``, ``np`` or ``optax``.
"""

import importlib
import os
import pkgutil
import re
import types

import pytest

import rnnlab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def public_modules():
  found = [
    m.name
    for m in pkgutil.walk_packages(rnnlab.__path__, "rnnlab.")
    if not any(part.startswith("_") for part in m.name.split("."))
  ]
  return ["rnnlab", *sorted(found)]


MODULES = public_modules()


def test_the_walk_finds_the_modules():
  assert {"rnnlab.cells", "rnnlab.runner.config", "rnnlab.report.style"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_public_module_declares_all_of_its_own_names(name):
  module = importlib.import_module(name)
  assert isinstance(getattr(module, "__all__", None), list), f"{name} has no __all__ list"
  names = module.__all__
  assert len(names) == len(set(names)), f"{name}.__all__ repeats a name"
  namespace = {}
  exec(f"from {name} import *", namespace)  # noqa: S102  (imports a package's submodules)
  missing = [n for n in names if not hasattr(module, n)]
  assert not missing, f"{name}.__all__ names what it lacks: {missing}"
  assert set(namespace) - {"__builtins__"} == set(names)
  for n in names:
    value = getattr(module, n)
    if isinstance(value, types.ModuleType):  # a package's submodules, never jax or numpy
      assert value.__name__.startswith("rnnlab."), f"{name}.__all__ exports {value.__name__}"
    elif isinstance(value, (type, types.FunctionType)):  # not a typing alias of its own
      assert (value.__module__ or "").startswith("rnnlab"), (
        f"{name}.__all__ exports {n} from {value.__module__}"
      )


def test_the_api_reference_lists_every_public_module():
  with open(os.path.join(ROOT, "docs", "api", "index.md")) as f:
    listed = re.findall(r"^generated/(\S+)$", f.read(), re.M)
  assert sorted(listed) == sorted(MODULES)
