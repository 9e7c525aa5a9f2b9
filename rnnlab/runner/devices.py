r"""Devices, meshes and waves: how a group's members are laid out over the devices.

A group of ``n`` members runs on a 1-D mesh ``("sweep",)`` of ``k`` devices in
*waves*: one call of a compiled program gives every device of the mesh exactly
one *block* of ``b`` members (``jax.vmap`` over the block, ``shard_map`` over the
devices), so a wave holds ``k * b`` members and the last wave is padded with
copies of its first member, computed and dropped. The layout (:func:`layout`),
with ``m = config.run.members_per_block``::

    b = min(m, n)
    k = min(devices, ceil(n / b))
    waves = ceil(n / (k b)),  padded = waves k b - n

Why this rule. A member's numbers depend on the block size ``b`` (XLA picks other
kernels for other vmapped sizes, which moves results by an ulp that training
amplifies) and on whether its mesh has one device or several (a 1-device program
goes through XLA's single-device pipeline, whose other rewrites move results by
an ulp), never on how many devices beyond one or on where the member sits. So the
block is ``m`` for every group of at least ``m`` members, whatever the number of
devices, and only the number of devices a group uses shrinks: a group no larger
than one wave takes as few devices as its blocks need. Hence:

* a member's numbers are the same on any number of devices >= 2 (bitwise: the
  shard test runs 2 and 4); a group of ``n <= m`` members runs on one device as
  one block of ``n``, the same on every host;
* padding never doubles the work: ``padded < n`` always, ``padded < m`` when the
  group fits in one wave, and none when ``n <= m`` (before, the block was ``m`` on
  every device, so 2 seeds on 2 devices ran 4 members; now one block of 2).

With several processes (``jax.process_count() > 1``, :mod:`rnnlab.multihost`)
every wave spans every device of the global mesh (each process holds an equal
part of it): ``k = devices``, ``b = min(m, ceil(n / devices))``; a group of more
than ``devices x (m - 1)`` members has the same layout as in one process with
all the devices, so its numbers are byte-equal there too. The layout of every group is known before any work, and the
progress lines report each group's padding.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

from rnnlab import multihost

PyTree = Any
ACCELERATOR_PLUGINS = ("jax-cuda12-plugin", "jax-cuda13-plugin", "jax-rocm-plugin", "libtpu")


def _fail(field: str, value: Any, expected: str) -> None:
  raise ValueError(f"config.{field}={value!r} is invalid; expected {expected}")


def _is_int(value: Any) -> bool:
  return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _accelerator_installed() -> bool:
  import importlib.metadata  # noqa: PLC0415

  for name in ACCELERATOR_PLUGINS:
    try:
      importlib.metadata.version(name)
      return True
    except importlib.metadata.PackageNotFoundError:
      continue
  return False


def configure_devices(devices: int, cpu_opt_level: int | None = None, processes: int = 1) -> None:
  """Before JAX starts: on a CPU-only host, split the CPU into XLA devices for the sweep axis.

  ``devices=0`` gives one device per core the process may use (at least 2); a
  positive number that many. With ``processes > 1`` (a multi-process launch,
  :func:`rnnlab.multihost.initialize`) ``devices`` counts the mesh's devices
  over all processes: each process gets ``devices / processes`` of them (0:
  one per core, at least 1). ``cpu_opt_level`` sets XLA's
  ``--xla_backend_optimization_level`` (LLVM's) when no accelerator plugin is
  installed: 1 compiles the runner's programs about twice as fast as XLA's
  default, at the same training speed at these sizes (BUILD.md). Other backends
  keep their own devices and flags. Call it before anything touches a JAX
  backend.
  """
  if not _is_int(devices) or devices < 0:
    _fail("run.devices", devices, "an int >= 0 (0: all devices)")
  if cpu_opt_level is not None and (not _is_int(cpu_opt_level) or not 0 <= cpu_opt_level <= 3):
    _fail("run.cpu_opt_level", cpu_opt_level, "None or an int in [0, 3]")
  if os.environ.get("JAX_PLATFORMS", "cpu") not in ("", "cpu"):
    return
  flags = os.environ.get("XLA_FLAGS", "")
  if (
    cpu_opt_level is not None
    and "xla_backend_optimization_level" not in flags
    and not _accelerator_installed()
  ):
    os.environ["XLA_FLAGS"] = f"{flags} --xla_backend_optimization_level={cpu_opt_level}".strip()
  if processes > 1 and devices % processes:
    _fail("run.devices", devices, f"0 (all) or a multiple of the {processes} processes")
  if not devices:
    # At least two, even on one core: a sweep's numbers are then the same on every CPU
    # host (see the module docstring), since a 1-device mesh compiles through XLA's
    # single-device pipeline, whose other algebraic rewrites move results by an ulp.
    # (Several processes make a mesh of 2 or more devices whatever each one holds.)
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else ()
    devices = max(len(cores) or os.cpu_count() or 1, 2 if processes == 1 else 1)
  elif processes > 1:
    devices //= processes
  jax.config.update("jax_num_cpu_devices", int(devices))


def make_mesh(devices: int = 0) -> jax.sharding.Mesh:
  """A 1-D mesh ``("sweep",)`` over ``devices`` devices (0: all, every process).

  Several processes: as many devices on each (:func:`rnnlab.multihost.mesh_devices`).
  """
  return jax.sharding.Mesh(np.asarray(multihost.mesh_devices(devices)), ("sweep",))


class Layout(NamedTuple):
  """How ``size`` members run: waves of ``devices`` blocks of ``block`` members (module doc)."""

  size: int
  devices: int
  block: int

  @property
  def width(self) -> int:
    """Members per wave: ``devices x block``."""
    return self.devices * self.block

  @property
  def waves(self) -> int:
    return -(-self.size // self.width)

  @property
  def padded(self) -> int:
    """Copies computed and dropped to fill the last wave."""
    return self.waves * self.width - self.size

  def describe(self) -> str:
    """``4 members in 2 wave(s) of 2 device(s) x 2, 0 padded``."""
    return (
      f"{self.size} members in {self.waves} wave(s) of {self.devices} device(s) x {self.block}, "
      f"{self.padded} padded"
    )


def layout(size: int, devices: int, members_per_block: int, *, shrink: bool = True) -> Layout:
  """The :class:`Layout` of a group of ``size`` members on ``devices`` devices (module doc).

  ``shrink=False`` keeps every device in the mesh (several processes: each one
  must hold a part of every wave).
  """
  if not shrink:
    return Layout(size, devices, min(members_per_block, math.ceil(size / devices)))
  block = min(members_per_block, size)
  return Layout(size, min(devices, math.ceil(size / block)), block)


def submesh(mesh: jax.sharding.Mesh, devices: int) -> jax.sharding.Mesh:
  """The mesh of the first ``devices`` devices of ``mesh`` (``mesh`` itself if all)."""
  if devices == mesh.size:
    return mesh
  return jax.sharding.Mesh(np.asarray(mesh.devices.flat[:devices]), ("sweep",))


class Waves:
  """A group's members in the waves of a :class:`Layout` on ``mesh`` (its ``layout.devices``)."""

  def __init__(self, mesh: jax.sharding.Mesh, layout_: Layout):
    if mesh.size != layout_.devices:
      raise ValueError(f"Waves: a mesh of {mesh.size} devices for {layout_}")
    self.layout = layout_
    self.size = layout_.size
    self.width = layout_.width
    self.sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("sweep"))
    self.slices = [
      slice(i, min(i + self.width, self.size)) for i in range(0, self.size, self.width)
    ]

  def put(self, tree: PyTree) -> list[PyTree]:
    """Host arrays with a leading member axis of ``size`` -> one sharded pytree per wave."""

    def wave(part):
      def pad(x):
        x = np.asarray(x)[part]
        return np.concatenate([x, np.repeat(x[:1], self.width - x.shape[0], axis=0)])

      return multihost.put(jax.tree.map(pad, tree), self.sharding)

    return [wave(part) for part in self.slices]

  def get(self, waves: Sequence[PyTree]) -> PyTree:
    """The waves' outputs back on the host, concatenated, padding dropped."""
    host = [multihost.to_host(w) for w in waves]
    parts = [
      jax.tree.map(lambda x, p=p: x[: p.stop - p.start], h)
      for h, p in zip(host, self.slices, strict=True)
    ]
    return jax.tree.map(lambda *xs: np.concatenate(xs), *parts)


__all__ = [
  "ACCELERATOR_PLUGINS",
  "Layout",
  "Waves",
  "configure_devices",
  "layout",
  "make_mesh",
  "submesh",
]
