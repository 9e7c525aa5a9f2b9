r"""The compiled programs of a group: init, chunk, finish and diagnose, vmapped over its members.

A group's members share one training config up to the value axes, which they
take as traced scalars: ``hparams``, a dict from dotted config paths to one value
per member (:func:`rnnlab.runner.grid.hparams`). Each program is ``jax.vmap`` of
one member's function over a block of members, ``shard_map``-ed over a 1-D mesh
(every device runs the plain vmapped program on its own block; see
:mod:`rnnlab.runner.devices`), and jitted once per group (jit caches by shape).

``diagnose(params, key)`` measures one member's gradient flow (module
:func:`make_diagnose`); for a cell without :class:`rnnlab.cells.CellParts` the
measurements that need them (the hidden state's gradient norms, their decay rate
and memory horizon, the gate blocks' spectra) are NaN (``memory_horizon`` -1),
and the tables leave them empty; the Lyapunov exponent needs no parts.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from rnnlab import diagnostics as diag_lib
from rnnlab import scan as scan_lib
from rnnlab import train as train_lib
from rnnlab.runner import config as config_lib
from rnnlab.runner import devices as devices_lib

Array = jax.Array
PyTree = Any


def hparams_dtypes(tc: ml_collections.ConfigDict, traced: Sequence[str]) -> dict[str, np.dtype]:
  """The dtype of each traced path: int32 for an int field, float32 otherwise."""
  return {
    p: np.dtype(np.int32) if config_lib.field_type(tc, p) is int else np.dtype(np.float32)
    for p in traced
  }


def make_diagnose(
  d: ml_collections.ConfigDict, trainer: train_lib.Trainer, tc: ml_collections.ConfigDict
) -> Callable[[PyTree, Array], dict]:
  """``diagnose(params, key) -> dict`` of one member's gradient-flow diagnostics.

  On ``d.batch_size`` held-out sequences (drawn from the run key's ``k_diag``
  stream, so the same for init and trained): ``log_grad_norms`` (lag ascending,
  ``ln ||dL/dh_t||`` for the first layer's ``h`` over the whole batch, lag ``= L
  - 1 - t``), its ``decay_rate`` and ``memory_horizon``, the ``spectral_radius``
  and ``sigma_max`` (largest over the ``H x H`` gate blocks of the first layer's
  ``W_hh``), Pascanu's ``pascanu_bound`` (Elman) and the largest Lyapunov
  exponent (first layer, mean over the sequences). NaN (``memory_horizon`` -1)
  where the cell lacks the :class:`rnnlab.cells.CellParts` a measurement needs.
  """
  cell = train_lib.make_cell(tc)
  parts = cell.parts
  model, task = trainer.model, trainer.eval_task

  def diagnose(params: PyTree, key: Array) -> dict:
    batch = task.sample(train_lib.split_key(key)[3], d.batch_size)
    length = batch.inputs.shape[1]
    lags = jnp.arange(length)
    nan = jnp.asarray(jnp.nan, jnp.float32)
    if parts is not None:

      def loss(params):
        outputs, _ = model.apply(params, batch.inputs, lengths=batch.lengths)
        return task.loss(outputs, batch)

      grads = diag_lib.state_grads(loss)(params)
      first = grads.encoder[0]  # the first layer
      h_TxBxH = parts.hidden(first)
      flat = h_TxBxH.reshape(h_TxBxH.shape[0], -1).astype(jnp.float32)
      top = jnp.max(jnp.abs(flat), axis=-1)
      scaled = jnp.linalg.norm(flat / jnp.where(top > 0, top, 1.0)[:, None], axis=-1)
      log_norms = jnp.where(
        top > 0, jnp.log(jnp.where(top > 0, top, 1.0)) + jnp.log(scaled), -jnp.inf
      )
      log_by_lag = log_norms[::-1]
      decay = diag_lib.decay_rate(log_by_lag, lags)
      horizon = diag_lib.memory_horizon(log_by_lag, lags, d.horizon_fraction)
    else:
      log_by_lag, decay, horizon = jnp.full((length,), jnp.nan, jnp.float32), nan, -1
    layer0 = params.encoder[0]
    if parts is not None and parts.blocks:
      spectra = diag_lib.recurrent_spectra(cell, layer0)
      radius = jnp.max(jnp.stack(list(spectra["spectral_radius"].values())))
      sigma = jnp.max(jnp.stack(list(spectra["sigma_max"].values())))
      bound = spectra["pascanu_bound"]
    else:
      radius = sigma = bound = nan
    lyapunov = diag_lib.lyapunov_spectrum(
      cell,
      layer0,
      batch.inputs,
      num_exponents=1,
      transient=int(d.lyapunov_transient * length),
      key=train_lib.split_key(key)[3],
    )
    return {
      "log_grad_norms": log_by_lag.astype(jnp.float32),
      "decay_rate": jnp.asarray(decay, jnp.float32),
      "memory_horizon": jnp.asarray(horizon, jnp.int32),
      "spectral_radius": jnp.asarray(radius, jnp.float32),
      "sigma_max": jnp.asarray(sigma, jnp.float32),
      "pascanu_bound": jnp.asarray(bound, jnp.float32),
      "lyapunov": jnp.mean(lyapunov[..., 0]).astype(jnp.float32),
    }

  return diagnose


class Programs(NamedTuple):
  """The compiled pieces of one group on one mesh, each vmapped over members.

  ``init(key_data, hp) -> TrainState``; ``diagnose(params, key_data) -> dict`` (at
  initialisation, after training and in the gain scan; None when no diagnostics
  run); ``chunk(state, key_data, hp, steps) -> (state, records)`` (donates
  ``state``); ``finish(state, key_data, hp) -> dict``, the held-out evaluation (at
  initialisation and after training). ``abstract`` holds one member's shapes of
  ``state``, ``diagnose``, ``records`` and ``finish``; ``has_parts`` whether the
  cell has :class:`rnnlab.cells.CellParts`.
  """

  trainer: train_lib.Trainer
  traced: tuple[str, ...]
  init: Callable
  diagnose: Callable | None
  chunk: Callable
  finish: Callable
  abstract: dict[str, Any]
  has_parts: bool


_PROGRAMS: dict[Any, Programs] = {}
_INITS: dict[Any, Callable] = {}
_LOCK = threading.Lock()


def program_key(tc: ml_collections.ConfigDict, traced: Sequence[str], drop: Sequence[str] = ()):
  """The JSON of a program's training config, its traced paths' values left out (they are inputs)."""
  data = tc.to_dict()
  for path in (*traced, *drop):
    *sections, key = path.split(".")
    node = data
    for name in sections:
      node = node[name]
    node[key] = "<traced>" if path in traced else "<any>"
  return json.dumps(data, sort_keys=True, default=str)


def programs(
  config: ml_collections.ConfigDict,
  tc: ml_collections.ConfigDict,
  traced: Sequence[str],
  mesh: jax.sharding.Mesh,
) -> Programs:
  """The :class:`Programs` of the training config ``tc`` with ``traced`` paths on ``mesh``.

  Built once per process. The init program depends only on the model, the
  optimizer and the task's input and output sizes, so groups that differ only in
  ``task.length`` share it.
  """
  d = config.diagnostics
  diag_key = json.dumps(d.to_dict(), sort_keys=True, default=str)
  cache_key = (program_key(tc, traced), tuple(traced), diag_key, mesh)
  with _LOCK:
    if cache_key not in _PROGRAMS:
      _PROGRAMS[cache_key] = _build(config, tc, tuple(traced), mesh)
    return _PROGRAMS[cache_key]


def _build(config, tc, traced: tuple[str, ...], mesh) -> Programs:
  trainer = train_lib.make_trainer(tc)
  d = config.diagnostics
  diagnose = make_diagnose(d, trainer, tc) if (d.phases or d.gain_scan) else None
  wrap = jax.random.wrap_key_data
  P = jax.sharding.PartitionSpec
  out = jax.sharding.NamedSharding(mesh, P("sweep"))

  def per_device(fn, donate=(), replicated=0):
    # shard_map: every device runs the plain vmapped program on its own block of members
    # (see rnnlab.runner.devices: the block has the same size on every device and call).
    def block(*args):
      # impl="auto" weighs the unroll's paths for a vmapped block of this many members.
      with scan_lib.vmapped(jax.tree.leaves(args)[0].shape[0]):
        return fn(*args)

    def wrapped(*args):
      in_specs = (P("sweep"),) * (len(args) - replicated) + (P(),) * replicated
      return jax.shard_map(
        block, mesh=mesh, in_specs=in_specs, out_specs=P("sweep"), check_vma=False
      )(*args)

    return jax.jit(wrapped, out_shardings=out, donate_argnums=donate)

  sizes = (trainer.model.input_size, trainer.model.output_size)
  init_key = (program_key(tc, traced, drop=("task.length",)), traced, sizes, mesh)
  if init_key not in _INITS:
    _INITS[init_key] = per_device(
      lambda key_data, hp: jax.vmap(lambda k, h: trainer.init(wrap(k), h))(key_data, hp)
    )

  def diagnose_all(params, key_data):
    return jax.vmap(diagnose)(params, wrap(key_data))

  def finish_all(state, key_data, hp):
    return jax.vmap(lambda s, k, h: trainer.finish(s, wrap(k), h))(state, key_data, hp)

  every = tc.eval.every

  def chunk_all(state, key_data, hp, steps):
    def one(s, k, h):
      k = wrap(k)
      if not every:
        return trainer.run(s, k, h, steps)

      def piece(s, part):  # config.eval.every: the held-out evaluation after every `every` steps
        s, records = trainer.run(s, k, h, part)
        s, _ = trainer.evaluate(s, k, part[-1] + 1)
        return s, records

      s, records = jax.lax.scan(piece, s, steps.reshape(-1, every))
      return s, jax.tree.map(lambda r: r.reshape(-1, *r.shape[2:]), records)

    return jax.vmap(one)(state, key_data, hp)

  one_key = jax.ShapeDtypeStruct(jax.random.key_data(jax.random.key(0)).shape, jnp.uint32)
  one_hp = {p: jax.ShapeDtypeStruct((), dt) for p, dt in hparams_dtypes(tc, traced).items()}
  state = jax.eval_shape(lambda k, h: trainer.init(wrap(k), h), one_key, one_hp)
  steps = jax.ShapeDtypeStruct((1,), jnp.int32)
  abstract = {
    "state": state,
    "records": jax.eval_shape(
      lambda s, k, h, t: trainer.run(s, wrap(k), h, t)[1], state, one_key, one_hp, steps
    ),
    "finish": jax.eval_shape(lambda s, k, h: trainer.finish(s, wrap(k), h), state, one_key, one_hp),
  }
  if diagnose is not None:
    abstract["diagnose"] = jax.eval_shape(lambda p, k: diagnose(p, wrap(k)), state.params, one_key)
  return Programs(
    trainer,
    traced,
    _INITS[init_key],
    per_device(diagnose_all) if diagnose is not None else None,
    per_device(chunk_all, donate=0, replicated=1),
    per_device(finish_all),
    abstract,
    train_lib.make_cell(tc).parts is not None,
  )


def chunk_steps(config: ml_collections.ConfigDict, tc: ml_collections.ConfigDict) -> int:
  """Updates per chunk: ``run.chunk_steps``, a multiple of ``eval.every`` when that is set.

  With ``config.eval.every = n`` a chunk runs its steps ``n`` at a time, each
  followed by the held-out evaluation (as :func:`rnnlab.train.make_train` does, so
  ``eval.stop_when_solved`` freezes a member where it would there).
  """
  every = tc.eval.every
  chunk = config.run.chunk_steps
  return max(every, chunk // every * every) if every else chunk


def compile_ahead(
  config: ml_collections.ConfigDict,
  tc: ml_collections.ConfigDict,
  traced: Sequence[str],
  mesh: jax.sharding.Mesh,
  layout: devices_lib.Layout,
  *,
  train: bool = True,
) -> None:
  """Compiles the programs a group (or a gain scan) will call, at one wave's shapes.

  Ahead-of-time (``jit(...).lower(...).compile()``), which fills the same cache
  the later calls hit, so a background thread can compile the next groups while
  the current one trains (XLA compiles without the GIL). With ``train=False``
  only the init and diagnostics programs (the gain scan).
  """
  prog = programs(config, tc, traced, mesh)
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("sweep"))

  def sharded(tree):
    return jax.tree.map(
      lambda s: jax.ShapeDtypeStruct((layout.width, *s.shape), s.dtype, sharding=sharding), tree
    )

  one_key = jax.ShapeDtypeStruct(jax.random.key_data(jax.random.key(0)).shape, jnp.uint32)
  key_data = sharded(one_key)
  hp = sharded({p: jax.ShapeDtypeStruct((), dt) for p, dt in hparams_dtypes(tc, traced).items()})
  state = sharded(prog.abstract["state"])
  prog.init.lower(key_data, hp).compile()
  if prog.diagnose is not None:
    prog.diagnose.lower(state.params, key_data).compile()
  if not train:
    return
  num_steps, chunk = tc.num_steps, chunk_steps(config, tc)
  for size in sorted({min(chunk, num_steps), num_steps % chunk} - {0}):
    prog.chunk.lower(state, key_data, hp, jax.ShapeDtypeStruct((size,), jnp.int32)).compile()
  prog.finish.lower(state, key_data, hp).compile()


__all__ = [
  "Programs",
  "chunk_steps",
  "compile_ahead",
  "hparams_dtypes",
  "make_diagnose",
  "program_key",
  "programs",
]
