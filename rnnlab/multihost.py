r"""Several processes on one sweep: ``jax.distributed``, one global mesh, process 0 on disk.

A multi-process launch runs one copy of the runner per process (per host, or
per GPU); :func:`initialize` joins them through ``jax.distributed`` (CPU
collectives over gloo), and they then act as one program over one global
device mesh (``rnnlab.runner.devices.make_mesh``), in which every process holds the
same number of devices:

* **Inputs.** Every process computes the same host arrays (the members, their
  keys and hyper-parameters, a restored state) and keeps only the shards of
  its own devices (:func:`put`, ``jax.make_array_from_callback``): no
  transfer, no cross-process equality check.
* **Outputs.** Every wave's outputs are gathered to every process
  (:func:`to_host`, ``multihost_utils.process_allgather``): an all-gather only
  copies, so the host arrays are bitwise those of one process holding every
  device.
* **Disk.** Only process 0 touches the workdir: it takes the lock, binds and
  prepares the folder, writes the tables, the report and every checkpoint
  (:class:`PrimaryStore`); the other processes need no shared file system.
  What process 0 restores from a checkpoint, or decides (whether a chunk is
  saved: :func:`agree`), reaches the others through :func:`broadcast`, so
  every process runs the same collectives in the same order.

With one process every function here is the identity (or plain
``jax.device_put``, a plain :class:`rnnlab.store.Store`): a single-process
launch runs exactly as before.

The numbers do not depend on the split: a member's numbers depend only on its
block size (``run.members_per_block``), the programs hold no collective
(``shard_map`` with each device on its own block), and gathering copies
bits, so 2 processes x 1 device give byte-equal tables to 1 process x 2
devices (``tests/test_run_multihost.py``).
"""

from __future__ import annotations

import os
import pickle
import re
import sys
from collections.abc import Callable
from typing import Any, NamedTuple

PyTree = Any


SHUTDOWN_SECONDS = 3600  # how long a finished process waits for the others (jax: 300)


class Cluster(NamedTuple):
  """An explicit multi-process launch: ``--coordinator``, ``--num_processes``, ``--process_id``."""

  coordinator: str  # HOST:PORT of process 0's coordination service
  num_processes: int
  process_id: int


class ProcessLostError(RuntimeError):
  """A gather between the processes failed: another process of the launch has ended."""


def _allgather(tree: PyTree, tiled: bool = False) -> PyTree:
  """``multihost_utils.process_allgather``; a failed one (a process gone) is :class:`ProcessLostError`.

  Gloo reports a peer that ended as ``ValueError: ... Gloo AllGather failed:
  ... Connection closed by peer``; the message keeps its first line.
  """
  from jax.experimental import multihost_utils  # noqa: PLC0415

  try:
    return multihost_utils.process_allgather(tree, tiled=tiled)
  except (ValueError, RuntimeError) as e:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
    raise ProcessLostError(
      f"process {process_index()} lost the others of its launch: a gather between them failed "
      f"({first}); another process has ended (its log says why)"
    ) from e


_ADDRESS = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def check_cluster(
  coordinator: str | None, num_processes: int | None, process_id: int | None
) -> Cluster | None:
  """The launch's :class:`Cluster` from its three flags (all three or none; ``None``: none).

  Checked before JAX starts.

  Raises:
    ValueError: one line naming the flag, its value and what was expected.
  """
  given = {
    "--coordinator": coordinator,
    "--num_processes": num_processes,
    "--process_id": process_id,
  }
  missing = [name for name, value in given.items() if value is None]
  if len(missing) == 3:
    return None
  if missing:
    have = ", ".join(f"{n}={v}" for n, v in given.items() if v is not None)
    raise ValueError(
      f"{' and '.join(missing)} missing (got {have}); a multi-process launch gives all three of "
      "--coordinator=HOST:PORT, --num_processes=N and --process_id=I (0 <= I < N), or none"
    )
  match = _ADDRESS.match(coordinator)
  if not match or not 1 <= int(match.group(1)) <= 65535:
    raise ValueError(
      f"--coordinator={coordinator!r} is invalid; expected HOST:PORT of process 0 (e.g. "
      "node001:12345), with a port in [1, 65535]"
    )
  if num_processes < 1:
    raise ValueError(f"--num_processes={num_processes} is invalid; expected an int >= 1")
  if not 0 <= process_id < num_processes:
    raise ValueError(
      f"--process_id={process_id} is invalid; expected an int in [0, {num_processes - 1}] "
      f"(--num_processes={num_processes})"
    )
  return Cluster(coordinator, num_processes, process_id)


def initialize(cluster: Cluster | None, from_environment: bool = False) -> int:
  """Joins this process to the launch's others (``jax.distributed``); returns the process count.

  Before anything starts a JAX backend. ``cluster`` (the flags) names the
  coordinator and this process explicitly; ``from_environment``
  (``config.run.distributed``) leaves it to ``jax.distributed.initialize()``,
  which reads ``JAX_COORDINATOR_ADDRESS`` (and ``JAX_COORDINATOR_PORT``) and
  the cluster's own variables (SLURM ``srun``, Open MPI ``mpirun``, Kubernetes,
  Cloud TPU; there each GPU process gets one GPU, by its local rank).
  Neither: a single process, nothing is called, 1 is returned.
  CPU collectives (the gathers between processes) go over gloo.

  Raises:
    ValueError: jax refused the settings (one line). A coordinator that
      cannot be reached ends the process after jax's ``initialization_timeout``
      (300 s) with jax's own fatal log (not catchable).
  """
  if cluster is None and not from_environment:
    return 1
  import jax  # noqa: PLC0415

  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  # A process that ends normally waits in jax's shutdown barrier for the others: let
  # process 0 write the report meanwhile (failures leave at once: exit_now).
  kwargs = {"shutdown_timeout_seconds": SHUTDOWN_SECONDS}
  try:
    if cluster is None:
      jax.distributed.initialize(**kwargs)
    else:
      # No cluster detection: under srun it would also limit each process to the GPU
      # of its SLURM_LOCALID; here a process uses every device it sees
      # (JAX_LOCAL_DEVICE_IDS or CUDA_VISIBLE_DEVICES limit them).
      jax.distributed.initialize(
        coordinator_address=cluster.coordinator,
        num_processes=cluster.num_processes,
        process_id=cluster.process_id,
        cluster_detection_method="deactivate",
        **kwargs,
      )
  except (ValueError, TypeError) as e:
    if cluster is not None:
      raise ValueError(f"jax.distributed.initialize: {e}") from None
    raise ValueError(
      f"config.run.distributed=True, but jax.distributed.initialize() found no cluster in the "
      f"environment ({e}); launch under srun or mpirun, or give --coordinator=HOST:PORT, "
      "--num_processes=N and --process_id=I"
    ) from None
  # The backend must not start before configure_devices: the process count comes from
  # the distributed state, not from jax.process_count() (which would start it).
  from jax._src import distributed  # noqa: PLC0415

  return int(distributed.global_state.num_processes or 1)


def connect(mesh) -> None:
  """Connects the processes' collectives now (first gathers), without gloo's chatter.

  Gloo connects the devices of a gather on its first use and prints one line
  per device on stdout (``[Gloo] Rank 0 is connected to 1 peer ranks...``);
  here the gathers the sweep will use (of host arrays: :func:`broadcast`; of
  arrays sharded over ``mesh``: :func:`to_host`) run once with that output sent
  to ``/dev/null`` (a failure still raises). One process: nothing.
  """
  import jax  # noqa: PLC0415

  if jax.process_count() == 1:
    return
  import numpy as np  # noqa: PLC0415

  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(mesh.axis_names))
  sys.stdout.flush()
  sys.stderr.flush()
  saved = {fd: os.dup(fd) for fd in (1, 2)}
  try:
    with open(os.devnull, "w") as null:
      for fd in saved:
        os.dup2(null.fileno(), fd)
      _allgather(np.zeros((1,), np.int32))
      to_host(put(np.zeros((mesh.size,), np.int32), sharding))
  finally:
    for fd, copy in saved.items():
      os.dup2(copy, fd)
      os.close(copy)


def process_index() -> int:
  """This process's index (0: the one that writes)."""
  import jax  # noqa: PLC0415

  return jax.process_index()


def is_primary() -> bool:
  """Whether this process writes the workdir (process 0; always so with one process)."""
  return process_index() == 0


def mesh_devices(devices: int) -> list:
  """The devices of the sweep's mesh: ``devices`` in all (0: every one), as many on each process.

  Process by process, each process's first ``devices / process_count`` local
  devices (by id): every process then holds an equal part of every wave.
  With one process: the first ``devices`` of ``jax.devices()``.

  Raises:
    ValueError: more devices than JAX sees, or a count that does not split
      evenly over the processes.
  """
  import jax  # noqa: PLC0415

  available = jax.devices()
  if devices > len(available):
    raise ValueError(
      f"config.run.devices={devices} is more than the {len(available)} devices JAX sees "
      f"({available[0].platform}); expected 0 (all) or at most {len(available)}"
    )
  processes = jax.process_count()
  if processes == 1:
    return available[: devices or len(available)]
  if devices % processes:
    raise ValueError(
      f"config.run.devices={devices} does not split evenly over {processes} processes; expected "
      f"0 (all) or a multiple of {processes} (the mesh's devices over all processes)"
    )
  by_process: dict[int, list] = {}
  for device in available:
    by_process.setdefault(device.process_index, []).append(device)
  each = devices // processes if devices else min(len(d) for d in by_process.values())
  fewest = min(by_process.items(), key=lambda item: len(item[1]))
  if len(fewest[1]) < each:
    raise ValueError(
      f"config.run.devices={devices} needs {each} devices on each of {processes} processes, but "
      f"process {fewest[0]} has {len(fewest[1])}; expected 0 (all) or at most "
      f"{len(fewest[1]) * processes}"
    )
  return [d for p in sorted(by_process) for d in sorted(by_process[p], key=lambda d: d.id)[:each]]


def put(tree: PyTree, sharding) -> PyTree:
  """Host arrays (the same on every process) -> global arrays with ``sharding``.

  Each process keeps the shards of its own devices (no transfer between
  processes); with one process ``jax.device_put``.
  """
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def one(x):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

  return jax.tree.map(one, tree)


def to_host(tree: PyTree) -> PyTree:
  """Global arrays -> whole host arrays on every process (an all-gather: bits are copied)."""
  import jax  # noqa: PLC0415
  import numpy as np  # noqa: PLC0415

  if jax.process_count() > 1:
    tree = _allgather(tree, tiled=True)
  return jax.tree.map(np.asarray, tree)


def broadcast(value: Any) -> Any:
  """Process 0's ``value`` on every process (any picklable object; bit for bit).

  Pickled and sent as bytes through an all-gather, so floats keep their bits
  (a psum-based broadcast turns ``-0.0`` into ``0.0``) and every dtype
  survives (64-bit ints included). Every process must call it at the same
  point; the other processes' ``value`` is ignored. One process: ``value``.
  """
  import jax  # noqa: PLC0415

  if jax.process_count() == 1:
    return value
  import numpy as np  # noqa: PLC0415

  data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL) if is_primary() else b""
  size = int(np.asarray(_allgather(np.int32(len(data)))).ravel()[0])
  # A power-of-two buffer: one compiled gather per size class, not one per byte count.
  buffer = np.zeros(1 << max(size - 1, 0).bit_length(), np.uint8)
  buffer[: len(data)] = np.frombuffer(data, np.uint8)
  gathered = np.asarray(_allgather(buffer))  # (processes, len)
  return pickle.loads(gathered[0, :size].tobytes())


def agree(decision: bool) -> bool:
  """Process 0's ``decision`` on every process (e.g. whether to checkpoint this chunk)."""
  return bool(broadcast(bool(decision)))


class PrimaryStore:
  """A :class:`rnnlab.store.Store` that only process 0 reads and writes.

  :meth:`restore` returns on every process what process 0 restored (or
  ``None``), so every process resumes from the same verified step;
  :meth:`save` is process 0's alone (every process has the whole tree: see
  :func:`to_host`). With one process it is the plain store.
  """

  def __init__(self, directory: str, write: Callable[[str], None] | None = None):
    from rnnlab import store as store_lib  # noqa: PLC0415

    self.directory = directory
    kwargs = {} if write is None else {"write": write}
    self.store = store_lib.Store(directory, **kwargs) if is_primary() else None

  def restore(self, target: PyTree) -> tuple[PyTree, dict] | None:
    return broadcast(self.store.restore(target) if self.store is not None else None)

  def save(self, step: int, tree: PyTree, meta: dict) -> None:
    if self.store is not None:
      self.store.save(step, tree, meta)

  def close(self) -> None:
    if self.store is not None:
      self.store.close()


def exit_now(status: int) -> None:
  """Ends a process of a multi-process launch at once, skipping jax's shutdown barrier.

  ``sys.exit`` would wait (up to :data:`SHUTDOWN_SECONDS`) in ``jax.distributed.shutdown``
  for the other processes, which may be blocked in a collective with this one;
  ending here lets them see the connection drop and end too. One process:
  ``sys.exit``.
  """
  from jax._src import distributed  # noqa: PLC0415

  if distributed.global_state.client is None:
    sys.exit(status)
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)


__all__ = [
  "Cluster",
  "PrimaryStore",
  "ProcessLostError",
  "SHUTDOWN_SECONDS",
  "agree",
  "broadcast",
  "check_cluster",
  "connect",
  "exit_now",
  "initialize",
  "is_primary",
  "mesh_devices",
  "process_index",
  "put",
  "to_host",
]
