r"""Training: a model chosen by a config, optax optimizers, and the whole loop as one scan.

The purejaxrl pattern: ``make_train(config)`` closes over a static config and
returns ``train(key, hparams=None) -> (params, metrics)``, a pure function whose
steps all run inside one ``jax.lax.scan``, so it jits as one program and
``jax.vmap`` sweeps seeds and shape-preserving hyper-parameters: ``hparams`` maps
dotted config paths to values that replace the config's, traced, so one program
serves every value of any field that :func:`traced_fields` says traces (learning
rate, gain, clip, momentum, betas, weight decay, forget bias, dropout rates, ...);
the fields that shape the program (sizes, cell, optimizer kind, task) are set in
the config, one program each::

    config = rnnlab.train.default_config()
    train = rnnlab.train.make_train(config)                   # returned jitted
    params, metrics = train(jax.random.key(0))               # one run
    keys = jax.random.split(jax.random.key(0), 8)
    hp = rnnlab.train.default_hparams(config)
    hps = jax.tree.map(lambda v: jnp.full((8,), v), hp)._replace(
      learning_rate=jnp.logspace(-4, -1, 8))
    params, metrics = jax.jit(jax.vmap(train))(keys, hps)    # 8 runs, one program
    keys, hps, labels = rnnlab.train.grid(config, seeds=4, learning_rate=(1e-3, 1e-2))
    params, metrics = jax.jit(jax.vmap(train))(keys, hps)    # the same, built by grid
    hps = {"optimizer.learning_rate": jnp.full((8,), 1e-3), "optimizer.b1": jnp.linspace(0.5, 0.95, 8)}
    params, metrics = jax.jit(jax.vmap(train))(keys, hps)    # any traced fields, by path
    rnnlab.train.traced_fields(config, ["optimizer.b1", "model.hidden_size"])
    # {'optimizer.b1': True, 'model.hidden_size': False}

One step at update count ``s`` (``s = 0 .. num_steps - 1``):

.. math::
   \text{batch}_s &= \text{task.sample}(\mathrm{fold\_in}(k_{data}, s), B) \\
   L_s, g_s &= \text{task.loss}(\text{model}(\theta_s, x_s), \text{batch}_s),\
     \nabla_\theta L_s \\
   \tilde g_s &= g_s \cdot \min(1, c / \lVert g_s \rVert_2) \quad
     \text{(global-norm clipping, Pascanu et al. 2013; off when } c \le 0) \\
   \theta_{s+1} &= \theta_s + \text{optimizer}(\tilde g_s; \eta_s)

Every step records ``loss``, ``metric``, ``grad_norm`` (before clipping),
``clipped``, ``nonfinite``, ``diverged`` and ``learning_rate``, each of shape
``(num_steps,)``.

Gradient flossing (``config.floss``, off by default; Engelken 2023,
:mod:`rnnlab.flossing`): on the updates that floss (``s % floss.every == 0`` and
``s < floss.until``, or ``s < floss.alone``), :math:`g_s \mathrel{+}= w\,\nabla_\theta
\tfrac1k \sum_{i \le k} \lambda_i^2` with the top-``k`` Lyapunov exponents of the
recurrent layers on ``floss.batch_size`` sequences (fresh ones from ``fold_in(fold_in(key,
5), s)``, or the batch's first), from a fixed frame ``Q_0``; on the ``floss.alone``
first updates (preflossing) the task's gradient is dropped. Before clipping, so the
clipped gradient is that of the sum. With flossing on, the records add ``floss`` (the
penalty) and ``lyapunov_max`` (:math:`\lambda_1`), NaN on the updates that do not floss.
Whether an update flosses depends on ``s`` alone, so under ``vmap`` (a swept
``floss.weight``) it stays a ``lax.cond`` and the QR runs only on those updates.

Divergence: step ``s`` is *rejected* when either rule fires on it:

* non-finite (always on): its loss, gradient norm or updated parameters are not
  all finite (recorded as ``nonfinite``);
* blow-up (``config.divergence``, on by default): its loss is finite but
  :math:`L_s > f \cdot \max(L_{ref}, b)`, with ``f = divergence.loss_factor``
  (default 1e7; None or inf: off), :math:`L_{ref}` the member's first finite
  training loss (that of step 0 unless step 0 is already non-finite; carried in
  ``TrainState.initial_loss``, so chunked and resumed runs keep it) and ``b``
  the task's trivial baseline (a floor, so a run that happens to start near zero
  loss is not cut by noise); or its gradient norm before clipping exceeds
  ``divergence.max_grad_norm`` (default None: off, since exploding gradients are
  what clipping studies look at). See :func:`blow_up_rule`.

``diverged`` records, per step, whether the step was rejected by either rule
(``nonfinite`` implies ``diverged``; ``diverged & ~nonfinite`` is a finite
blow-up). ``diverged_at`` is the first rejected step (-1 if none), and from then
on the parameters and optimizer state stay as they were before it (frozen,
hence finite), while the per-step metrics keep being recorded for the frozen
parameters (so ``loss`` stays huge or non-finite after a blow-up). The choice is
made with ``jnp.where`` on each member's own values, so under ``vmap`` a
diverging member never touches the others. Since ``f > 1``, step 0 is never a
blow-up.

Why ``f = 1e7`` (measured with the flagship runner, ``experiments.run``): healthy
runs stay within a few times their first loss (at most 1.9x in the default
preset's 120 runs, 8.4x with Adam at learning rate 0.03 and no clipping); the
largest spike seen in a run that later recovered was 1.2e6x (plain SGD at
learning rate 0.1, GRU at gain 2, no clipping, T=40: its loss went back to the
baseline); Adam at learning rate 1e4 (the quick preset's 24 runs) peaked at 2e8x
to 1e10x and never came back below 4e5x. The rule also catches each of 30 runs
that later overflowed (plain SGD or momentum at learning rate 0.1 to 1 without
clipping) 6 to 75 steps before their first non-finite step.

Periodic evaluation and early stopping (off by default): with ``config.eval.every
= n`` the params after updates ``n, 2n, ..., num_steps`` are scored on the same
``config.eval.num_batches`` held-out batches as the final evaluation (from
``k_eval``), inside the scan, and recorded in ``metrics["evals"]``. With
``config.eval.stop_when_solved`` a member whose evaluation at update count ``k``
says ``task.solved`` is frozen from step ``k`` on exactly as a diverged member is
(params and optimizer state kept, the per-step metrics of the frozen params still
recorded, never marked diverged); ``solved_at = k`` (-1 if never; the state
tracks it whenever ``eval.every > 0``, and only a member still training, not
diverged, can be marked). The scan keeps its length, so the run still vmaps, and
the other members of a vmapped block are bitwise what they are without early
stopping.

Keys: ``k_init, k_data, k_eval, k_diag = jax.random.split(key, 4)``; step
``s`` samples its batch from ``jax.random.fold_in(k_data, s)`` (a stream task
instead reads window ``(randint(k_data, (), 0, num_windows) + s) % num_windows``
of its parallel rows, resetting the carried state at window 0). With dropout on
(``config.model.dropout``), step ``s`` draws its masks from
``fold_in(fold_in(key, 4), s)``, a stream apart from those four, so a run's
batches do not depend on its dropout rates; evaluation never drops.

Truncated BPTT (``config.tbptt.k1, k2``): see :func:`tbptt_outputs`; one update
per batch, whose gradient is the sum of the windows' truncated gradients.

Reproducibility (what ``tests/test_train.py`` checks, on the CPU, jax 0.10.2):

* the same key gives bitwise the same params and metrics, called plainly or
  under ``jax.jit``: ``make_train`` returns ``train`` already jitted, so both
  run the same XLA program. (Without that, XLA fuses a plain call's scan body
  apart from the ops around it and a reduction can move by an ulp: a measured
  1-ulp difference in a ``step_stats`` norm. Under ``jax.disable_jit()`` the run
  goes op by op and is not bitwise equal either.);
* members of a vmapped batch are bitwise independent of each other: changing
  one member's key or hyper-parameters leaves every other member's params and
  metrics bitwise unchanged (the divergence test relies on it);
* a vmapped member is *not* bitwise equal to its solo ``jit(train)`` run: XLA
  lowers the vmapped matmuls to batched ones that sum in another order, so the
  two differ by float rounding (about 1e-7 relative from the first step), and
  chaotic training amplifies that over hundreds of steps (to 1e-4 relative after
  about 100 steps of the adding test). The learning-rate schedule, the
  divergence step and the outcome agree; compare vmapped runs with vmapped runs
  when bitwise equality matters.
"""

from __future__ import annotations

import contextvars
import copy
import difflib
import functools
import importlib
import inspect
import itertools
import math
import operator
import re
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.typing import ArrayLike

from rnnlab import cells as cells_lib
from rnnlab import diagnostics as diag_lib
from rnnlab import flossing as floss_lib
from rnnlab import layers as layers_lib
from rnnlab import models as models_lib
from rnnlab._signatures import init_signature
from rnnlab.train_config import (  # noqa: F401  (default_config: rnnlab.train's own)
  CELLS,
  FLOSS_INPUTS,
  OPTIMIZERS,
  READOUTS,
  SCHEDULES,
  default_config,
)

Array = jax.Array
PyTree = Any

DROPOUT_STREAM = 4  # fold_in(key, DROPOUT_STREAM): the dropout masks' key stream
FLOSS_STREAM = 5  # fold_in(key, FLOSS_STREAM): gradient flossing's frame and inputs
# The per-step records added when flossing is on (config.floss.weight != 0).
FLOSS_METRICS = ("floss", "lyapunov_max")
STEP_METRICS = (
  "loss",
  "metric",
  "grad_norm",
  "clipped",
  "nonfinite",
  "diverged",
  "learning_rate",
)


class HParams(NamedTuple):
  """Shape-preserving hyper-parameters that ``train`` takes as traced scalars.

  ``jax.vmap(train)(keys, hparams)`` with leaves of shape ``(N,)`` sweeps them.
  The same as the mapping ``{"optimizer.learning_rate": learning_rate, "model.gain":
  gain, "clip": clip}`` (:data:`HPARAMS_PATHS`; bitwise the same run), which takes any
  other field that traces as well (:func:`resolve_hparams`).

  Attributes:
    learning_rate: the peak learning rate (the schedule multiplies it).
    gain: the recurrent initialisation's gain g.
    clip: the global-norm clipping threshold; ``<= 0`` turns clipping off.
  """

  learning_rate: Array
  gain: Array
  clip: Array


def default_hparams(config: ml_collections.ConfigDict) -> HParams:
  """The config's own hyper-parameters as float32 scalars (what ``train(key)`` uses).

  ``clip=None`` in the config is 0.0 here (off). Every ``hparams`` starts from these
  three (:func:`resolve_hparams`), so a mapping that leaves them out runs as ``train(key)``.
  """
  clip = config.clip if config.clip is not None else 0.0
  return HParams(
    learning_rate=jnp.asarray(config.optimizer.learning_rate, jnp.float32),
    gain=jnp.asarray(config.model.gain, jnp.float32),
    clip=jnp.asarray(clip, jnp.float32),
  )


# The HParams fields and the config paths they stand for.
HPARAMS_PATHS = {"learning_rate": "optimizer.learning_rate", "gain": "model.gain", "clip": "clip"}

HParamsLike = HParams | Mapping[str, ArrayLike] | None


def field_paths(config: ml_collections.ConfigDict) -> dict[str, Any]:
  """Every field of ``config`` by its dotted path: ``{"optimizer.learning_rate": 1e-3, ...}``.

  The leaves of the nested ``ConfigDict``, sorted by path (a section such as
  ``model.dropout`` is not a field; its entries are, ``task.kwargs``' included).
  """
  out: dict[str, Any] = {}

  def walk(node: Any, prefix: str) -> None:
    for name, value in node.items():
      if isinstance(value, ml_collections.ConfigDict | dict):
        walk(value, f"{prefix}{name}.")
      else:
        out[prefix + name] = value

  walk(config, "")
  return out


def unknown_path(path: Any, known: Sequence[str], where: str = "hparams") -> ValueError:
  """The one-line error for a path that names no field, with the nearest field (difflib)."""
  near = difflib.get_close_matches(str(path), list(known), n=1, cutoff=0.0)
  hint = f"; the nearest field is {near[0]!r}" if near else ""
  return ValueError(f"{where}: {path!r} is not a field of the training config{hint}")


def _field_dtype(path: str, value: Any) -> Any:
  """float32 for a float field, int32 for an int field, None for a field that cannot trace."""
  if path == "clip" and value is None:
    return jnp.float32  # None is off, as clip <= 0 is (HParams' clip)
  if isinstance(value, bool) or not isinstance(value, int | float):
    return None
  return jnp.int32 if isinstance(value, int) else jnp.float32


_PROBING = contextvars.ContextVar("rnnlab_train_probing", default=False)


def resolve_hparams(
  config: ml_collections.ConfigDict,
  hparams: HParamsLike = None,
  *,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
  task: Any = None,
) -> dict[str, Array]:
  """The values ``train``, ``Trainer.init``, ``run`` and ``finish`` take instead of the config's.

  Args:
    config: the (concrete, checked) training config.
    hparams: None (the config's values), an :class:`HParams` (the three paths of
      :data:`HPARAMS_PATHS`) or a mapping from dotted config paths (those of
      :func:`field_paths`) to scalars: Python numbers or 0-d arrays, traced ones
      included (``jax.vmap`` over a dict of ``(N,)`` arrays sweeps them).
    cell, task: the trainer's own cell and task, if any (as :func:`make_trainer`'s).

  Returns:
    ``{path: 0-d array}``: ``optimizer.learning_rate``, ``model.gain`` and ``clip``
    always (the config's, as :func:`default_hparams` gives them, where not given),
    then the given paths; float32 for a float field, int32 for an int field.

  Raises:
    ValueError: one line, for an unknown path (naming the nearest field), a value
      that is not a scalar number, a field that is not a number (a string, a bool,
      None, a tuple: set it in the config), a ``task.*`` path when the trainer was
      given its own ``task``, or a field that the trainer needs as a concrete value
      (:func:`traced_fields` says False: a shape, a choice of code): such a field
      changes the program, so it is set in the config (one program per value).
  """
  out = dict(zip(HPARAMS_PATHS.values(), default_hparams(config), strict=True))
  if hparams is None:
    return out
  if isinstance(hparams, HParams):
    return dict(zip(HPARAMS_PATHS.values(), _check_hparams(hparams), strict=True))
  if not isinstance(hparams, Mapping):
    raise ValueError(
      "train: hparams must be None, an rnnlab.train.HParams or a mapping of config paths "
      f"to scalars; got {type(hparams).__name__}"
    )
  fields = field_paths(config)
  for path, value in hparams.items():
    if path not in fields:
      raise unknown_path(path, fields)
    dtype = _field_dtype(path, fields[path])
    if dtype is None:
      raise ValueError(
        f"hparams: config.{path}={fields[path]!r} is not a number field; hparams take int and "
        "float fields only (set the others in the config)"
      )
    if task is not None and path.startswith("task."):
      raise ValueError(
        f"hparams: {path!r} is given, but the trainer has its own task (config.task is unused)"
      )
    if jnp.ndim(value) != 0:
      raise ValueError(
        f"train: hparams[{path!r}] has shape {jnp.shape(value)}; expected a scalar "
        "(vmap train over a batch of hparams to sweep them)"
      )
    kind = jnp.result_type(value)
    if jnp.issubdtype(kind, jnp.bool_) or not jnp.issubdtype(kind, jnp.number):
      raise ValueError(f"hparams: {path!r} is of dtype {kind}; expected a number")
    if dtype == jnp.int32 and not jnp.issubdtype(kind, jnp.integer):
      raise ValueError(
        f"hparams: config.{path} is an int field; got a value of dtype {kind} (use integers)"
      )
    out[path] = jnp.asarray(value, dtype)
  extra = [path for path in out if path not in HPARAMS_PATHS.values()]
  if extra and not _PROBING.get():
    traced = traced_fields(config, extra, cell=cell, task=task)
    fixed = [path for path in extra if not traced[path]]
    if fixed:
      raise ValueError(
        f"hparams: {', '.join(fixed)} cannot be given as values: the trainer uses "
        f"{'that field' if len(fixed) == 1 else 'those fields'} as concrete Python values "
        "(a shape, a loop, a choice of code; traced_fields says False): set it in the config "
        "(one program per value)"
      )
  return out


def _config_view(config: ml_collections.ConfigDict, values: Mapping[str, Any]) -> Any:
  """A copy of ``config`` whose ``values`` paths hold the given (maybe traced) values.

  Unchecked and not type-safe: the values may be arrays or tracers, and every
  reader inside the trainer reads them from here (so a field read in a
  trace-friendly way traces, and one read as a Python value fails to trace).
  """
  view = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
  for path, value in values.items():
    *parents, name = path.split(".")
    node = view
    for parent in parents:
      node = node[parent]
    node[name] = value
  return view


def _grid_values(name: str, values: Any, default: float, check: Callable, expected: str):
  """One axis of :func:`grid` as a tuple of floats (None: the config's value)."""
  if values is None:
    return (float(default),)
  single = isinstance(values, int | float | np.number) and not isinstance(values, bool)
  values = (values,) if single else tuple(values)
  if not values:
    raise ValueError(f"grid: {name}=() is empty; expected one value or a sequence of values")
  for v in values:
    ok = not isinstance(v, bool) and isinstance(v, int | float | np.number)
    if not (ok and math.isfinite(v) and check(v)):
      raise ValueError(f"grid: {name} value {v!r} is invalid; expected {expected}")
  return tuple(float(v) for v in values)


def _grid_seeds(seeds: Any) -> tuple[int, ...]:
  if isinstance(seeds, int) and not isinstance(seeds, bool):
    if seeds < 1:
      raise ValueError(f"grid: seeds={seeds} is invalid; expected a count >= 1 or a list of ints")
    return tuple(range(seeds))
  seeds = tuple(seeds)
  bad = [s for s in seeds if isinstance(s, bool) or not isinstance(s, int | np.integer)]
  if not seeds or bad:
    raise ValueError(f"grid: seeds={seeds!r} is invalid; expected a count >= 1 or a list of ints")
  return tuple(int(s) for s in seeds)


def _grid_keys(labels: Sequence[dict]) -> Array:
  seeds = {m["seed"] for m in labels}
  seed_keys = {seed: jax.random.key_data(jax.random.key(seed)) for seed in seeds}
  return jax.random.wrap_key_data(jnp.stack([seed_keys[m["seed"]] for m in labels]))


def _grid_axes(
  config: ml_collections.ConfigDict, axes: Mapping[str, Any]
) -> dict[str, tuple[int | float, ...]]:
  """The values of each axis of :func:`grid`'s ``axes`` form, each checked on a config."""
  fields = field_paths(config)
  out = {}
  for path, values in axes.items():
    if path not in fields:
      raise unknown_path(path, fields, "grid")
    single = isinstance(values, int | float | np.number) and not isinstance(values, bool)
    values = (values,) if single else tuple(values)
    if not values:
      raise ValueError(f"grid: {path}=() is empty; expected one value or a sequence of values")
    for value in values:
      if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(
          f"grid: {path} value {value!r} is invalid; expected a number (a field that takes "
          "other values changes the program: make one train per value)"
        )
      member = copy.deepcopy(config)
      *parents, name = path.split(".")
      node = member
      for parent in parents:
        node = node[parent]
      try:
        node[name] = value  # the config's own type check (an int field takes no float)
      except (TypeError, ValueError) as e:
        raise ValueError(f"grid: {path} value {value!r} is invalid; {e}") from None
      check_config(member)  # one line naming the field and the value
    out[path] = values
  traced = traced_fields(config, list(out))
  fixed = [path for path in out if not traced[path]]
  if fixed:
    raise ValueError(
      f"grid: {', '.join(fixed)} changes the program (traced_fields says False); "
      "make one train per value"
    )
  return out


def grid(
  config: ml_collections.ConfigDict,
  seeds: int | Any = 1,
  *,
  learning_rate: float | Any = None,
  gain: float | Any = None,
  clip: float | Any = None,
  axes: Mapping[str, Any] | None = None,
) -> tuple[Array, HParams | dict[str, Array], tuple[dict, ...]]:
  """Keys and hyper-parameters of a grid of runs, ready for ``jax.vmap(train)(keys, hparams)``.

  The members are the cartesian product ``gain x clip x learning_rate x seed``,
  in that order with the seed varying fastest (the experiment runner's order), so
  ``N = len(gain) * len(clip) * len(learning_rate) * len(seeds)`` and a metric of
  shape ``(N, ...)`` reshapes to ``(len(gain), len(clip), len(learning_rate),
  len(seeds), ...)``::

    keys, hps, labels = rnnlab.train.grid(config, seeds=4, learning_rate=(1e-3, 1e-2))
    params, metrics = jax.jit(jax.vmap(rnnlab.train.make_train(config)))(keys, hps)
    labels[5]  # {'gain': 1.0, 'clip': 1.0, 'learning_rate': 0.01, 'seed': 1}

  The generic form sweeps any fields that trace (:func:`traced_fields`), by path::

    keys, hps, labels = rnnlab.train.grid(
      config, seeds=2, axes={"optimizer.momentum": (0.5, 0.9), "model.forget_bias": (0.0, 1.0)})
    labels[1]  # {'optimizer.momentum': 0.5, 'model.forget_bias': 0.0, 'seed': 1}

  Member ``i`` runs with ``jax.random.key(labels[i]["seed"])`` (the runner's keys
  too), so it is the run ``train(jax.random.key(seed), hparams)`` of those values
  (to float rounding: see the module docstring on vmapped members).

  Args:
    config: the training config; an axis left at None takes its value from it.
    seeds: the number of seeds ``n`` (seeds ``0 .. n-1``) or the seeds themselves (ints).
    learning_rate: one value or a sequence of peak learning rates (> 0).
    gain: one value or a sequence of recurrent initialisation gains.
    clip: one value or a sequence of clipping thresholds (>= 0; 0: off).
    axes: instead of the three above, ``{path: values}`` over fields of the config
      (in this order, then the seed); each value is checked by :func:`check_config`
      on the config holding it, and each field must trace (:func:`traced_fields`).

  Returns:
    ``(keys, hparams, labels)``: ``keys`` ``(N,)`` typed PRNG keys; ``hparams`` an
    :class:`HParams` of float32 ``(N,)`` arrays (or, with ``axes``, a dict of ``(N,)``
    arrays by path: float32 for float fields, int32 for int fields); ``labels`` a
    tuple of ``N`` dicts ``{"gain", "clip", "learning_rate", "seed"}`` (with ``axes``:
    ``{path, ..., "seed"}``) saying which member is which (``pandas.DataFrame(labels)``
    makes them a table).
  """
  check_config(config)
  seeds = _grid_seeds(seeds)
  if axes is not None:
    if any(v is not None for v in (learning_rate, gain, clip)):
      raise ValueError("grid: give either axes= or learning_rate=/gain=/clip=, not both")
    values = _grid_axes(config, axes)
    labels = tuple(
      {**dict(zip(values, point, strict=True)), "seed": seed}
      for *point, seed in itertools.product(*values.values(), seeds)
    )
    fields = field_paths(config)
    hparams = {
      path: jnp.asarray([m[path] for m in labels], _field_dtype(path, fields[path]))
      for path in values
    }
    return _grid_keys(labels), hparams, labels
  config_clip = 0.0 if config.clip is None else config.clip
  axes = {
    "gain": _grid_values("gain", gain, config.model.gain, lambda v: True, "a finite number"),
    "clip": _grid_values("clip", clip, config_clip, lambda v: v >= 0, "a number >= 0 (0: off)"),
    "learning_rate": _grid_values(
      "learning_rate",
      learning_rate,
      config.optimizer.learning_rate,
      lambda v: v > 0,
      "a number > 0",
    ),
  }
  labels = tuple(
    {"gain": g, "clip": c, "learning_rate": lr, "seed": seed}
    for g, c, lr, seed in itertools.product(*axes.values(), seeds)
  )
  hparams = HParams(
    **{name: jnp.asarray([m[name] for m in labels], jnp.float32) for name in HParams._fields}
  )
  return _grid_keys(labels), hparams, labels


class Model(NamedTuple):
  """A per-step sequence model: recurrent layers and a dense readout at every step.

  Params are :class:`rnnlab.models.ModelParams` (those of
  :func:`rnnlab.models.many_to_many` on the same stack).

  Attributes:
    init: ``init(key, *, gain=None) -> params``; ``gain`` (may be traced) overrides
      ``config.model.gain`` for the recurrent scheme.
    initial_carry: ``initial_carry(params, batch_shape) -> carry`` (zeros).
    apply: ``apply(params, inputs, carry=None, *, lengths=None, key=None) -> (outputs,
      carry)`` with ``inputs (B, T, I)`` and ``outputs (B, T, O)``, zero past
      ``lengths``; ``key`` draws ``config.model.dropout``'s masks (None: no dropout).
    input_size: I.
    output_size: O.
  """

  init: Callable[..., models_lib.ModelParams]
  initial_carry: Callable[..., PyTree]
  apply: Callable[..., tuple[Array, PyTree]]
  input_size: int
  output_size: int


def _fail(field: str, value: Any, expected: str) -> None:
  raise ValueError(f"config.{field}={value!r} is invalid; expected {expected}")


def _positive_int(field: str, value: Any) -> int:
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    _fail(field, value, "a positive int")
  return value


def _choice(field: str, value: Any, choices: tuple[str, ...]) -> str:
  if value not in choices:
    _fail(field, value, f"one of {choices}")
  return value


def _number(field: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
  if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
    _fail(field, value, "a finite number")
  if positive and value <= 0:
    _fail(field, value, "a number > 0")
  if nonneg and value < 0:
    _fail(field, value, "a number >= 0")
  return float(value)


def _check_model_config(config: ml_collections.ConfigDict, cell: Any = None) -> None:
  m = config.model
  if cell is None and m.cell not in CELLS:
    cell_factory(m.cell)  # an import path that must resolve
  _positive_int("model.hidden_size", m.hidden_size)
  _positive_int("model.num_layers", m.num_layers)
  _choice("model.nonlinearity", m.nonlinearity, tuple(cells_lib.ACTIVATIONS))
  _choice("model.readout", m.readout, READOUTS)
  _number("model.gain", m.gain)
  if cell is None and m.cell == "exprnn" and m.gain != 1:
    _fail("model.gain", m.gain, "1 for the exprnn cell (its W is orthogonal, with no gain)")
  _number("model.forget_bias", m.forget_bias)
  if m.chrono_t_max is not None:
    if _number("model.chrono_t_max", m.chrono_t_max) <= 2:
      _fail("model.chrono_t_max", m.chrono_t_max, "None or a number > 2")
    if cell is None and m.cell in ("elman", "lru"):
      _fail("model.chrono_t_max", m.chrono_t_max, f"None for the {m.cell} cell (it has no gates)")
  for field in ("input", "between", "output", "recurrent"):
    value = m.dropout[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
      _fail(f"model.dropout.{field}", value, "a number in [0, 1)")
  if m.dropout.recurrent and cell is None and m.cell in CELLS_WITHOUT_PARTS:
    _fail(
      "model.dropout.recurrent",
      m.dropout.recurrent,
      f"0 for the {m.cell} cell (it has no CellParts naming the recurrent product)",
    )


def _check_divergence_config(config: ml_collections.ConfigDict) -> None:
  for field, bound in (("loss_factor", 1.0), ("max_grad_norm", 0.0)):
    value = config.divergence[field]
    if value is None:
      continue
    # inf is allowed: the rule never fires (the same as None).
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > bound:
      _fail(f"divergence.{field}", value, f"None (off) or a number > {bound:g}")


def _check_eval_config(config: ml_collections.ConfigDict) -> None:
  every, num_steps = config.eval.every, config.num_steps
  if isinstance(every, bool) or not isinstance(every, int) or every < 0:
    _fail("eval.every", every, "an int >= 0 (0: off)")
  if every and num_steps % every:
    _fail("eval.every", every, f"a divisor of num_steps={num_steps}")
  if every and not config.eval.num_batches:
    _fail("eval.num_batches", config.eval.num_batches, "an int >= 1 when eval.every is set")
  if not isinstance(config.eval.stop_when_solved, bool):
    _fail("eval.stop_when_solved", config.eval.stop_when_solved, "a bool")
  if config.eval.stop_when_solved and not every:
    _fail(
      "eval.stop_when_solved", True, "False unless eval.every > 0 (it stops on those evaluations)"
    )


def _check_task_config(config: ml_collections.ConfigDict, task: Any = None) -> None:
  if task is None:
    task_factory(config.task.name)  # a built-in name or an import path that must resolve
  _positive_int("task.length", config.task.length)
  for field in ("task.kwargs", "eval.task_kwargs"):
    section, name = field.split(".")
    if not isinstance(config[section][name], ml_collections.ConfigDict | dict):
      _fail(field, config[section][name], "a dict of keyword arguments for the task")


def _check_floss_config(config: ml_collections.ConfigDict) -> None:
  f = config.floss
  _number("floss.weight", f.weight, nonneg=True)
  k = _positive_int("floss.num_exponents", f.num_exponents)
  units = config.model.num_layers * config.model.hidden_size
  # Checked with the weight 0 too: a swept weight turns flossing on in the same program.
  if k > units:
    _fail(
      "floss.num_exponents",
      k,
      f"an int in [1, {units}] (model.num_layers * model.hidden_size, the hidden units)",
    )
  _positive_int("floss.every", f.every)
  for field in ("until", "alone"):
    value = f[field]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
      _fail(f"floss.{field}", value, "an int >= 0")
  _choice("floss.inputs", f.inputs, FLOSS_INPUTS)
  size = _positive_int("floss.batch_size", f.batch_size)
  if f.inputs == "train" and size > config.batch_size:
    _fail("floss.batch_size", size, f"at most batch_size={config.batch_size} with inputs 'train'")
  transient = f.transient
  if (
    isinstance(transient, bool) or not isinstance(transient, int | float) or not 0 <= transient < 1
  ):
    _fail("floss.transient", transient, "a fraction in [0, 1)")


def check_config(config: ml_collections.ConfigDict, *, cell: Any = None, task: Any = None) -> None:
  """Raises a one-line ``ValueError`` naming the first bad field of ``config``.

  The one place where the training fields are validated (:func:`make_train`,
  :func:`make_trainer`, :func:`make_model`, :func:`grid` and the experiment runner
  call it, each on a concrete config; values given later as traced ``hparams`` are
  not checked again). Each error reads ``config.<field>=<value> is invalid;
  expected <what>``.

  Args:
    config: a config like :func:`default_config`'s.
    cell: a cell factory that replaces ``config.model.cell`` (see :func:`make_cell`).
    task: a task object that replaces ``config.task`` (its name is then not checked).
  """
  _check_task_config(config, task)
  _check_model_config(config, cell)
  o = config.optimizer
  _choice("optimizer.name", o.name, OPTIMIZERS)
  _number("optimizer.learning_rate", o.learning_rate, positive=True)
  _number("optimizer.momentum", o.momentum, nonneg=True)
  _number("optimizer.rmsprop_decay", o.rmsprop_decay, nonneg=True)
  _number("optimizer.b1", o.b1, nonneg=True)
  _number("optimizer.b2", o.b2, nonneg=True)
  _number("optimizer.eps", o.eps, nonneg=True)
  _number("optimizer.weight_decay", o.weight_decay, nonneg=True)
  if not isinstance(o.decay_biases, bool):
    _fail("optimizer.decay_biases", o.decay_biases, "a bool")
  _choice("optimizer.schedule", o.schedule, SCHEDULES)
  num_steps = _positive_int("num_steps", config.num_steps)
  if isinstance(o.warmup_steps, bool) or not isinstance(o.warmup_steps, int):
    _fail("optimizer.warmup_steps", o.warmup_steps, "an int")
  if not 0 <= o.warmup_steps <= num_steps:
    _fail("optimizer.warmup_steps", o.warmup_steps, f"an int in [0, num_steps={num_steps}]")
  _number("optimizer.end_factor", o.end_factor, nonneg=True)
  _number("optimizer.decay_rate", o.decay_rate, positive=True)
  if config.clip is not None:
    _number("clip", config.clip, nonneg=True)
  _positive_int("batch_size", config.batch_size)
  _positive_int("eval.batch_size", config.eval.batch_size)
  if isinstance(config.eval.num_batches, bool) or not isinstance(config.eval.num_batches, int):
    _fail("eval.num_batches", config.eval.num_batches, "an int >= 0")
  if config.eval.num_batches < 0:
    _fail("eval.num_batches", config.eval.num_batches, "an int >= 0")
  every = config.diagnostics_every
  if isinstance(every, bool) or not isinstance(every, int) or every < 0:
    _fail("diagnostics_every", every, "an int >= 0 (0: off)")
  if every and num_steps % every:
    _fail("diagnostics_every", every, f"a divisor of num_steps={num_steps}")
  _check_eval_config(config)
  _check_divergence_config(config)
  _check_floss_config(config)
  k1, k2 = config.tbptt.k1, config.tbptt.k2
  if (k1 is None) != (k2 is None):
    _fail("tbptt", (k1, k2), "k1 and k2 both None (full BPTT) or both set")
  if k1 is not None:
    _positive_int("tbptt.k1", k1)
    _positive_int("tbptt.k2", k2)
    if k1 > k2:
      _fail("tbptt.k1", k1, f"k1 <= k2={k2}")


def _import_factory(field: str, value: Any, expected: str) -> Callable:
  """The callable that an import path ``"package.module:factory"`` (or ``module.factory``) names.

  Raises a one-line ``ValueError`` naming ``config.<field>``, the value and ``expected``.
  """
  if not isinstance(value, str) or not ("." in value or ":" in value):
    _fail(field, value, expected)
  module_name, _, attr = value.rpartition(":") if ":" in value else value.rpartition(".")
  try:
    factory = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    reason = " ".join(str(e).split())
    _fail(field, value, f"{expected} ({type(e).__name__}: {reason})")
  if not callable(factory):
    _fail(field, value, f"{expected}; {attr!r} is not callable")
  return factory


def task_factory(name: str | Callable[..., Any]) -> Callable[..., Any]:
  """The factory of a ``config.task.name`` value: a built-in name, an import path, a callable.

  A built-in name (one of :data:`rnnlab.tasks.TASKS`) gives
  ``lambda length, **kwargs: rnnlab.tasks.get(name, length, **kwargs)``; an import
  path ``"package.module:factory"`` (or ``"package.module.factory"``) names a
  function of one's own called the same way, ``factory(length, **config.task.kwargs)``,
  that returns an :class:`rnnlab.tasks.Task`.

  Raises:
    ValueError: one line naming the value and what was expected.
  """
  from rnnlab import tasks  # noqa: PLC0415  (tasks may import heavier optional data)

  if callable(name):
    return name
  if name in tasks.TASKS:
    return functools.partial(tasks.get, name)
  expected = (
    f"a task of rnnlab.tasks.TASKS ({', '.join(tasks.TASKS)}) or an import path "
    "'package.module:factory' of a task factory"
  )
  return _import_factory("task.name", name, expected)


def _build_task(config: Any, kwargs: dict) -> Any:
  from rnnlab import tasks  # noqa: PLC0415

  made = task_factory(config.task.name)(config.task.length, **kwargs)
  if not isinstance(made, tasks.Task):
    raise ValueError(
      f"config.task.name={config.task.name!r} returned {type(made).__name__}; "
      "expected an rnnlab.tasks.Task"
    )
  return made


def make_task(config: ml_collections.ConfigDict, *, held_out: bool = False) -> Any:
  """The task ``config.task`` describes: ``factory(task.length, **task.kwargs)``.

  ``config.task.name`` is a built-in task or an import path (:func:`task_factory`).
  ``held_out=True`` gives the evaluation's task: ``config.eval.task_kwargs`` over
  ``config.task.kwargs`` (e.g. ``{"split": "test"}``; fresh keys otherwise).
  """
  kwargs = dict(config.task.kwargs)
  if held_out:
    kwargs.update(dict(config.eval.task_kwargs))
  return _build_task(config, kwargs)


# The built-in cells with no CellParts: recurrent dropout needs them to name h W_hh.
CELLS_WITHOUT_PARTS = ("layer_norm_lstm", "layer_norm_gru", "lru")

# The keywords a cell factory of one's own is called with, those its signature names.
CELL_FACTORY_KEYWORDS = (
  "recurrent_init",
  "gain",
  "input_init",
  "nonlinearity",
  "forget_bias",
  "chrono_t_max",
)


def cell_factory(cell: str | Callable[..., cells_lib.Cell]) -> Callable[..., cells_lib.Cell]:
  """The factory of a ``config.model.cell`` value: a built-in name, an import path, a callable.

  An import path ``"package.module:factory"`` (or ``"package.module.factory"``)
  names a function of one's own that returns a :class:`rnnlab.cells.Cell`.

  Raises:
    ValueError: one line naming the value and what was expected.
  """
  if callable(cell):
    return cell
  builtin = {
    "elman": cells_lib.elman,
    "lstm": cells_lib.lstm,
    "gru": cells_lib.gru,
    "layer_norm_lstm": cells_lib.layer_norm_lstm,
    "layer_norm_gru": cells_lib.layer_norm_gru,
    "exprnn": cells_lib.exprnn,
    "lru": cells_lib.lru,
  }
  if cell in builtin:
    return builtin[cell]
  expected = f"one of {CELLS} or an import path 'package.module:factory' of a cell factory"
  return _import_factory("model.cell", cell, expected)


def make_cell(
  config: ml_collections.ConfigDict,
  gain: Any = None,
  *,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
) -> cells_lib.Cell:
  """One recurrent cell as ``config.model`` describes it (``gain`` overrides ``model.gain``).

  ``cell`` (default ``config.model.cell``) is a built-in name, an import path
  ``"package.module:factory"`` or a factory. A factory of one's own is called as
  ``factory(hidden_size, **keywords)`` with those of
  :data:`CELL_FACTORY_KEYWORDS` (the built-ins' options: ``recurrent_init``,
  ``gain``, ``input_init``, ...) that its signature names (all of them if it
  takes ``**kwargs``); ``gain`` may be a traced scalar (a swept
  :class:`HParams`). It must return a :class:`rnnlab.cells.Cell`.

  ``"lru"`` is :func:`rnnlab.cells.lru` at its defaults (GLU readout, ``N = H``, ring
  ``[0, 1]``): none of the keywords applies to it (a swept gain leaves it unchanged).
  For other LRU settings pass ``cell=functools.partial(rnnlab.cells.lru, r_min=0.9)``.
  """
  m = config.model
  gain = m.gain if gain is None else gain
  kwargs = dict(recurrent_init=m.recurrent_init, gain=gain, input_init=m.input_init)
  name = m.cell if cell is None else cell
  factory = cell_factory(name)
  if name == "elman":
    return factory(m.hidden_size, m.nonlinearity, **kwargs)
  if name in ("lstm", "layer_norm_lstm"):
    return factory(m.hidden_size, m.forget_bias, chrono_t_max=m.chrono_t_max, **kwargs)
  if name in ("gru", "layer_norm_gru"):
    return factory(m.hidden_size, chrono_t_max=m.chrono_t_max, **kwargs)
  if name == "exprnn":
    # W = expm(S) is orthogonal by construction: a gain would break that, so only 1 is accepted
    # (checked with the config); the config's default "orthogonal" means the cell's Henaff init.
    rec = "henaff" if m.recurrent_init == "orthogonal" else m.recurrent_init
    return factory(m.hidden_size, recurrent_init=rec, input_init=m.input_init)
  if name == "lru":
    # Its ring initialisation replaces recurrent_init and gain, and B, C, D have the
    # reference's own scales, so none of the keywords applies.
    return factory(m.hidden_size)
  options = {**kwargs, "nonlinearity": m.nonlinearity, "forget_bias": m.forget_bias}
  options["chrono_t_max"] = m.chrono_t_max
  parameters = inspect.signature(factory).parameters
  if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
    options = {k: v for k, v in options.items() if k in parameters}
  made = factory(m.hidden_size, **options)
  if not isinstance(made, cells_lib.Cell):
    raise ValueError(
      f"config.model.cell={name!r} returned {type(made).__name__}; expected an rnnlab.Cell"
    )
  return made


def make_model(
  config: ml_collections.ConfigDict,
  task: Any = None,
  *,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
) -> Model:
  """The model that ``config.model`` describes, sized for ``task``.

  ``config.model.num_layers`` cells (:func:`rnnlab.layers.stacked`) and a dense
  readout at every step (:func:`rnnlab.models.many_to_many`'s parameters), so
  ``outputs[b, t] = readout(h^L_t)`` has the task's output size; the task's mask
  selects the steps that count (the last one for the adding problem).
  ``config.model.dropout`` applies when ``apply`` is given a key: input dropout on
  the inputs, ``between`` between the layers (:func:`rnnlab.layers.stacked`),
  ``recurrent`` on each layer's ``h_{t-1}`` (:func:`rnnlab.layers.rnn`) and
  output dropout on the top layer's outputs, all variational.

  Args:
    config: a config like :func:`default_config`'s.
    task: an :class:`rnnlab.tasks.Task`; default ``rnnlab.tasks.get`` of ``config.task``.
    cell: replaces ``config.model.cell``: a cell factory of one's own (see :func:`make_cell`).
  """
  _check_model_config(config, cell)
  return _build_model(config, make_task(config) if task is None else task, cell)


def _build_model(config: Any, task: Any, cell: Any) -> Model:
  """:func:`make_model` without the checks: ``config`` may be a view holding traced values."""
  num_layers = config.model.num_layers
  dropout = config.model.dropout

  def stack(gain):
    cells = [make_cell(config, gain, cell=cell) for _ in range(num_layers)]
    if not layers_lib.dropout_off(dropout.recurrent):
      cells = [layers_lib.rnn(c, recurrent_dropout=dropout.recurrent) for c in cells]
    return layers_lib.stacked(cells, dropout=dropout.between)

  layer = stack(config.model.gain)
  readout = layers_lib.dense(task.output_size)

  @init_signature("make_model(config)", " (the sizes come from the config and the task)")
  def init(key: Array, *, gain: Any = None) -> models_lib.ModelParams:
    gain = config.model.gain if gain is None else gain
    return models_lib.many_to_many(stack(gain), task.output_size).init(key, task.input_size)

  def initial_carry(params, batch_shape=()):
    return layer.initial_carry(params.encoder, batch_shape)

  def apply(params, inputs, carry=None, *, lengths=None, key=None):
    k_in, k_layers, k_out = (None, None, None) if key is None else jax.random.split(key, 3)
    inputs = layers_lib.variational_dropout(k_in, inputs, dropout.input)
    ys, carry = layer.apply(params.encoder, inputs, carry, lengths=lengths, key=k_layers)
    ys = layers_lib.variational_dropout(k_out, ys, dropout.output)
    outputs = readout.apply(params.readout, ys)
    if lengths is not None:
      valid = jnp.arange(outputs.shape[-2]) < jnp.asarray(lengths)[..., None]
      outputs = jnp.where(valid[..., None], outputs, jnp.zeros_like(outputs))
    return outputs, carry

  return Model(init, initial_carry, apply, task.input_size, task.output_size)


def clip_by_global_norm(max_norm: Any) -> optax.GradientTransformation:
  r"""Global-norm clipping whose threshold may be traced (so ``vmap`` can sweep it).

  ``g <- g * min(1, c / ||g||_2)`` over the whole gradient pytree (Pascanu et al.
  2013); ``c <= 0`` leaves the gradient unchanged. ``optax.clip_by_global_norm``
  is the same map with a static threshold.
  """

  def init_fn(params):
    del params
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    del params
    norm = diag_lib.global_norm(updates)
    trigger = diag_lib.clip_fired(norm, max_norm)
    scale = jnp.where(trigger, max_norm / jnp.where(trigger, norm, 1.0), 1.0)
    updates = jax.tree.map(lambda g: jnp.where(trigger, g * scale.astype(g.dtype), g), updates)
    return updates, state

  return optax.GradientTransformation(init_fn, update_fn)


def make_schedule(config: ml_collections.ConfigDict, learning_rate: Any = None) -> Callable:
  """``step -> learning rate``: ``learning_rate`` (may be traced) times the unit schedule.

  ``none``: constant; ``cosine``: cosine decay to ``end_factor`` over ``num_steps``;
  ``warmup_cosine``: linear from 0 over ``warmup_steps``, then cosine to
  ``end_factor``; ``exponential``: ``decay_rate ** (step / num_steps)``.
  """
  o = config.optimizer
  _choice("optimizer.schedule", o.schedule, SCHEDULES)
  lr = o.learning_rate if learning_rate is None else learning_rate
  n = config.num_steps
  if o.schedule == "none":
    unit = optax.constant_schedule(1.0)
  elif o.schedule == "cosine":
    unit = optax.cosine_decay_schedule(1.0, n, alpha=o.end_factor)
  elif o.schedule == "warmup_cosine":
    unit = optax.warmup_cosine_decay_schedule(0.0, 1.0, o.warmup_steps, n, end_value=o.end_factor)
  else:
    unit = _exponential_decay(n, o.decay_rate)
  return lambda step: lr * unit(step)


def _exponential_decay(num_steps: int, decay_rate: Any) -> Callable[[Array], Array]:
  """``optax.exponential_decay(1.0, num_steps, decay_rate)`` whose rate may be traced.

  The same arithmetic (``1`` until step 0, then ``decay_rate ** (step / num_steps)``);
  optax's checks the rate in Python (``decay_rate == 0``), which a traced rate cannot be.
  """
  if num_steps <= 0:
    raise ValueError(f"config.num_steps={num_steps!r} is invalid; expected a positive int")

  def unit(count):
    return jnp.where(count <= 0, 1.0, 1.0 * jnp.power(decay_rate, count / num_steps))

  return unit


def make_optimizer(
  config: ml_collections.ConfigDict, learning_rate: Any = None, clip: Any = None
) -> optax.GradientTransformation:
  """``clip_by_global_norm(clip)`` then the configured optax optimizer on the schedule.

  The optimizer is wrapped in ``optax.inject_hyperparams``, so the (possibly
  traced) learning rate lives in its state. ``learning_rate`` and ``clip``
  default to the config's.

  ``adamw`` is ``optax.adamw`` (Loshchilov & Hutter 2019): the decay is decoupled
  from the gradient's moments, ``theta <- theta - eta_s (adam(g) + lambda theta)``
  with ``lambda = optimizer.weight_decay`` (scaled by the scheduled rate, as in
  optax and PyTorch), applied to the leaves of :func:`weight_decay_mask` (the
  matrices) unless ``optimizer.decay_biases``. The gradient is clipped before,
  the decay term is not.
  """
  o = config.optimizer
  _choice("optimizer.name", o.name, OPTIMIZERS)
  if clip is None:
    clip = config.clip if config.clip is not None else 0.0
  schedule = make_schedule(config, learning_rate)
  if o.name == "sgd":
    opt = optax.inject_hyperparams(optax.sgd)(learning_rate=schedule)
  elif o.name == "momentum":
    opt = optax.inject_hyperparams(optax.sgd, static_args=("nesterov",))(
      learning_rate=schedule, momentum=o.momentum, nesterov=o.nesterov
    )
  elif o.name == "rmsprop":
    opt = optax.inject_hyperparams(optax.rmsprop)(
      learning_rate=schedule, decay=o.rmsprop_decay, eps=o.eps
    )
  elif o.name == "adam":
    opt = optax.inject_hyperparams(optax.adam)(learning_rate=schedule, b1=o.b1, b2=o.b2, eps=o.eps)
  else:
    opt = optax.inject_hyperparams(optax.adamw, static_args=("mask",))(
      learning_rate=schedule,
      b1=o.b1,
      b2=o.b2,
      eps=o.eps,
      weight_decay=o.weight_decay,
      mask=None if o.decay_biases else weight_decay_mask,
    )
  return optax.chain(clip_by_global_norm(clip), opt)


def weight_decay_mask(params: PyTree) -> PyTree:
  """``adamw``'s default decay mask: True for the leaves with 2 or more axes (the matrices).

  Biases (1-D) are left out: decaying an LSTM's forget-gate bias or a chrono
  initialisation towards 0 would undo the memory they were set up to give, and
  the usual practice (BERT's optimizer, nanoGPT) decays only weight matrices.
  ``config.optimizer.decay_biases = True`` decays every leaf.
  """
  return jax.tree.map(lambda leaf: jnp.ndim(leaf) >= 2, params)


def _select(pred: Array, on_true: PyTree, on_false: PyTree) -> PyTree:
  return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _check_hparams(hparams: HParams) -> HParams:
  if not isinstance(hparams, HParams):
    raise ValueError(
      f"train: hparams must be an rnnlab.train.HParams (or None); got {type(hparams).__name__}"
    )
  for name, value in hparams._asdict().items():
    if jnp.ndim(value) != 0:
      raise ValueError(
        f"train: hparams.{name} has shape {jnp.shape(value)}; expected a scalar "
        "(vmap train over a batch of hparams to sweep them)"
      )
  return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), hparams)


def _window_schedule(num_steps_T: int, k1: int, k2: int) -> int:
  """The number of TBPTT windows over a sequence of length T, or a clear error."""
  if k2 > num_steps_T or (num_steps_T - k2) % k1:
    raise ValueError(
      f"config.tbptt=(k1={k1}, k2={k2}) does not tile the task's sequences of length "
      f"{num_steps_T}; expected k2 <= T and (T - k2) divisible by k1"
    )
  return (num_steps_T - k2) // k1 + 1


def tbptt_outputs(
  model: Model,
  params: PyTree,
  inputs: Array,
  k1: int,
  k2: int,
  carry: PyTree = None,
  *,
  lengths: Array | None = None,
  key: Array | None = None,
) -> tuple[Array, PyTree]:
  r"""The model's outputs with gradients truncated as TBPTT(k1, k2) (Williams & Peng 1990).

  Window ``j = 0 .. n-1`` (``n = (T - k2) / k1 + 1``) covers steps
  ``[j k1, j k1 + k2)`` and starts from the carry at ``j k1`` with its gradient
  stopped. Window 0 gives the outputs of its k2 steps; window ``j >= 1`` gives
  those of its last k1 steps. So every output is computed once from the exact
  forward state (the values equal the full unroll's), but its gradient reaches at
  most k2 steps back (window 0: back to step 0). A loss of these outputs has the
  TBPTT(k1, k2) gradient summed over the sequence; with ``k2 = T`` (one window)
  it is the full BPTT gradient.

  Args:
    model: a :class:`Model`.
    params: its params.
    inputs: ``(B, T, I)``.
    k1: steps between window starts.
    k2: window length, ``k1 <= k2 <= T``, ``(T - k2) % k1 == 0``.
    carry: the carry at step 0 (``None``: zeros); its gradient is stopped.
    lengths: optional ``(B,)`` valid lengths (past them outputs are 0, the carry frozen).
    key: the dropout key (None: none), handed to every window alike, so a
      sequence keeps one mask across its windows.

  Returns:
    ``(outputs (B, T, O), carry)`` with the carry after step ``T - 1`` (gradient stopped).
  """
  batch_size, T = inputs.shape[0], inputs.shape[1]
  n = _window_schedule(T, k1, k2)
  if carry is None:
    carry = model.initial_carry(params, (batch_size,))

  def run(carry, start, size):
    xs = jax.lax.dynamic_slice_in_dim(inputs, start, size, axis=1)
    window_lengths = None if lengths is None else jnp.clip(lengths - start, 0, size)
    return model.apply(params, xs, carry, lengths=window_lengths, key=key)

  def window(carry, start):
    # Part A, [start, start + k1): its end is where the next window starts.
    out_a, carry_a = run(jax.lax.stop_gradient(carry), start, k1)
    if k2 == k1:
      return carry_a, out_a, carry_a
    out_b, carry_b = run(carry_a, start + k1, k2 - k1)
    return carry_a, jnp.concatenate([out_a, out_b], axis=1), carry_b

  next_carry, out_0, last_carry = window(carry, 0)
  if n == 1:
    return out_0, jax.lax.stop_gradient(last_carry)

  def later(carry, j):
    next_carry, out, last = window(carry, j * k1)
    return next_carry, (out[:, k2 - k1 :], last)

  _, (outs_NxBxK1xO, lasts) = jax.lax.scan(later, next_carry, jnp.arange(1, n))
  outs = jnp.moveaxis(outs_NxBxK1xO, 0, 1).reshape(batch_size, (n - 1) * k1, -1)
  final = jax.tree.map(lambda leaf: leaf[-1], lasts)
  return jnp.concatenate([out_0, outs], axis=1), jax.lax.stop_gradient(final)


class TrainState(NamedTuple):
  """The scan carry of the training loop."""

  params: PyTree
  opt_state: PyTree
  rnn_carry: PyTree  # the stream's carried state (TBPTT on a stream), else ()
  diverged_at: Array  # int32: the first rejected step, -1 while none
  initial_loss: Array  # float32: the first finite training loss, nan before one is seen
  # int32 when config.eval.every > 0: the update count whose periodic evaluation first said
  # solved, -1 while none; () otherwise (so the state is what it was before the option).
  solved_at: Any = ()


def blow_up_rule(config: ml_collections.ConfigDict, task: Any = None) -> Callable[..., Array]:
  """The finite blow-up rule of ``config.divergence`` (see the module docstring).

  Args:
    config: a training config (``divergence.loss_factor``, ``divergence.max_grad_norm``).
    task: the training task; its ``baseline`` (when a finite number > 0) floors the
      reference loss. Default: none (the reference is the first loss alone).

  Returns:
    ``fired(loss, grad_norm, initial_loss) -> bool array``: ``loss > loss_factor *
    max(initial_loss, baseline)`` or ``grad_norm > max_grad_norm``, each rule only
    when set; False where a value is nan (the non-finite rule covers those). Applied
    elementwise, so under ``vmap`` each member is judged by its own values.
  """
  _check_divergence_config(config)
  return _blow_up_rule(config, task)


def _rule_off(value: Any) -> bool:
  """A divergence threshold that is off: None or a Python inf (a traced one is applied)."""
  return value is None or (not isinstance(value, jax.Array) and value == math.inf)


def _blow_up_rule(config: Any, task: Any) -> Callable[..., Array]:
  """:func:`blow_up_rule` without the checks (its thresholds may be traced)."""
  factor, max_grad_norm = config.divergence.loss_factor, config.divergence.max_grad_norm
  try:
    floor = float(getattr(task, "baseline", 0.0))
  except (TypeError, ValueError):
    floor = 0.0
  floor = floor if math.isfinite(floor) and floor > 0 else 0.0

  def fired(loss: Array, grad_norm: Array, initial_loss: Array) -> Array:
    out = jnp.zeros(jnp.shape(loss), bool)
    if not _rule_off(factor):
      reference = jnp.maximum(initial_loss, floor)
      out = out | (loss > factor * reference)
    if not _rule_off(max_grad_norm):
      out = out | (grad_norm > max_grad_norm)
    return out

  return fired


class Trainer(NamedTuple):
  """The training loop in pieces, for runners that checkpoint between chunks of steps.

  ``train(key, hp)`` of :func:`make_train` is ``finish(run(init(key, hp), key, hp,
  arange(num_steps))...)``; cutting ``arange(num_steps)`` into consecutive chunks
  gives the same updates (each step reads only its own index and the state), so
  a runner can save the state between chunks and resume. With ``config.eval.every
  = n`` it is chunks of ``n`` steps, each followed by ``evaluate(state, key, end, hp)``.
  All are pure and unjitted: jit, vmap and shard them as a whole.

  ``hparams`` (``hp``) is what :func:`resolve_hparams` takes: None (the config's
  values), an :class:`HParams`, or a mapping ``{dotted config path: scalar}``
  whose values replace the config's, traced under ``jit`` and ``vmap`` (one member
  per value, one program): any field for which :func:`traced_fields` says True
  (learning rate, gain, clip, momentum, Adam's betas, weight decay, forget bias,
  dropout rates, ...). Pass the same ``hparams`` to every piece of one run.

  Attributes:
    init: ``init(key, hparams=None) -> TrainState``, the parameters at initialisation.
    run: ``run(state, key, hparams, steps) -> (state, records)``: the updates at
      the int32 step indices ``steps`` (one ``lax.scan``); ``records`` holds
      the per-step metrics, each ``(len(steps),)``.
    finish: ``finish(state, key, hparams=None) -> dict``: ``diverged_at``; when
      ``config.eval.num_batches``, ``eval_loss``, ``eval_metric`` and ``solved``;
      when ``config.eval.every``, ``solved_at``.
    model: the :class:`Model` (of the config's own values).
    task: the training task.
    eval_task: the held-out task (``config.eval.task_kwargs`` applied).
    evaluate: ``evaluate(state, key, step, hparams=None) -> (state, record)``: one
      periodic evaluation (see :func:`make_train`) of ``state.params`` after
      ``step`` updates: ``record`` holds ``loss``, ``metric``, ``solved``; when the
      state tracks ``solved_at`` (``config.eval.every > 0``) and the member is still
      training and not yet solved, a solved evaluation sets ``solved_at = step``
      (from which ``run`` freezes it if ``config.eval.stop_when_solved``). A chunked
      runner calls it after every ``config.eval.every`` steps, as ``train`` does.
  """

  init: Callable[..., TrainState]
  run: Callable[..., tuple[TrainState, dict]]
  finish: Callable[..., dict]
  model: Model
  task: Any
  eval_task: Any
  evaluate: Callable[..., tuple[TrainState, dict]]


def split_key(key: Array) -> tuple[Array, Array, Array, Array]:
  """``k_init, k_data, k_eval, k_diag``: the run key's four streams (see the module doc)."""
  k_init, k_data, k_eval, k_diag = jax.random.split(key, 4)
  return k_init, k_data, k_eval, k_diag


class _TaskParts(NamedTuple):
  """What the loop reads from the task: the tasks, and the stream's rows when TBPTT reads one."""

  task: Any
  eval_task: Any
  stream: Any
  streams_BxS: Any  # noqa: N815 (the rows, B x S)
  num_windows: Any


def _task_parts(config: Any, own_task: Any) -> _TaskParts:
  task = make_task(config) if own_task is None else own_task
  eval_task = make_task(config, held_out=True) if own_task is None else own_task
  stream = getattr(task, "stream", None) if config.tbptt.k1 is not None else None
  if stream is None:
    return _TaskParts(task, eval_task, None, None, None)
  streams_BxS = stream.parallel(config.batch_size)
  num_windows = stream.num_windows(config.batch_size, config.task.length)
  if num_windows < 1:
    _fail(
      "task.length",
      config.task.length,
      f"a window that fits the stream's rows of {streams_BxS.shape[1]}",
    )
  return _TaskParts(task, eval_task, stream, streams_BxS, num_windows)


def _flosser(config: Any, task: Any, cell: Any) -> Callable | None:
  """Gradient flossing's part of a step (``config.floss``; :mod:`rnnlab.flossing`), or None.

  None when ``floss.weight`` is a concrete 0 (off: the program is that of no flossing).
  Otherwise ``flossed(params, inputs, key, step_index) -> (grads, record, alone)``:
  ``weight * grad mean_i lambda_i^2`` of the recurrent layers (zeros on an update that
  does not floss), the records ``floss`` (the penalty, NaN when not flossing) and
  ``lyapunov_max`` (lambda_1, mean over the flossed sequences), and whether the update
  is a preflossing one (task gradient dropped). Whether an update flosses depends on the
  step index alone, shared by the members of a vmapped block, so the ``lax.cond`` stays
  a branch under ``vmap`` and the QR runs only on the updates that floss.
  """
  f = config.floss
  weight = f.weight
  if isinstance(weight, int | float) and weight == 0:
    return None
  # The fields that shape the program: Python needs them concretely.
  every, until, alone = (operator.index(f[name]) for name in ("every", "until", "alone"))
  num_exponents, size = operator.index(f.num_exponents), operator.index(f.batch_size)
  transient = float(f.transient)
  num_layers = config.model.num_layers
  # The step of the model's recurrent layers: the cells without dropout (nor a mask).
  cells = [make_cell(config, cell=cell) for _ in range(num_layers)]
  floss_cell = cells[0] if num_layers == 1 else cells_lib.stack(cells)

  def recurrent(params):
    return params.encoder[0] if num_layers == 1 else tuple(params.encoder)

  def value(params, xs, frame_key):
    exponents = diag_lib.lyapunov_spectrum(
      floss_cell,
      recurrent(params),
      xs,
      num_exponents=num_exponents,
      transient=int(transient * xs.shape[-2]),
      key=frame_key,
    )
    return floss_lib.penalty(exponents), jnp.mean(exponents[..., 0])

  value_and_grad = jax.value_and_grad(value, has_aux=True)

  def flossed(params, inputs, key, step_index):
    frame_key, inputs_key = jax.random.split(jax.random.fold_in(key, FLOSS_STREAM))
    pre = step_index < alone
    on = pre | ((step_index % every == 0) & ((step_index < until) if until else True))

    def floss(params):
      if f.inputs == "train":
        xs = inputs[:size]
      else:
        xs = task.sample(jax.random.fold_in(inputs_key, step_index), size).inputs
      (loss, top), grads = value_and_grad(params, xs, frame_key)
      return grads, loss.astype(jnp.float32), top.astype(jnp.float32)

    def skip(params):
      nan = jnp.asarray(jnp.nan, jnp.float32)
      return jax.tree.map(jnp.zeros_like, params), nan, nan

    grads, loss, top = jax.lax.cond(on, floss, skip, params)
    # A select, not a product: a member whose swept weight is 0 gets exactly its task
    # gradient even where the flossing pass is not finite (0 * nan = nan).
    grads = jax.tree.map(lambda g: jnp.where(weight > 0, weight * g, 0).astype(g.dtype), grads)
    return grads, {"floss": loss, "lyapunov_max": top}, pre

  return flossed


def _loop(config: Any, parts: _TaskParts, cell: Any, step_stats: Callable | None) -> Any:
  """The loop of one config (a view of it, maybe holding traced values): its five pieces.

  Every field the loop uses is read from ``config`` here, at trace time, so a value
  that :func:`resolve_hparams` put in the view reaches the code (and fails to
  trace where Python needs it concretely).
  """
  task, eval_task, stream = parts.task, parts.eval_task, parts.stream
  model = _build_model(config, task, cell)
  batch_size = config.batch_size
  tbptt = config.tbptt.k1 is not None
  length = config.task.length

  def sample(key, step_index):
    if stream is None:
      return task.sample(jax.random.fold_in(key, step_index), batch_size)
    return stream.window(parts.streams_BxS, _stream_window(key, step_index) * length, length)

  def _stream_window(key, step_index):
    # Each run walks the rows window by window from its own random first window.
    offset = jax.random.randint(key, (), 0, parts.num_windows)
    return (offset + step_index) % parts.num_windows

  def forward(params, batch, carry, dropout_key):
    if tbptt:
      return tbptt_outputs(
        model,
        params,
        batch.inputs,
        config.tbptt.k1,
        config.tbptt.k2,
        carry,
        lengths=batch.lengths,
        key=dropout_key,
      )
    return model.apply(params, batch.inputs, lengths=batch.lengths, key=dropout_key)

  def loss_fn(params, batch, carry, dropout_key):
    outputs, carry = forward(params, batch, carry, dropout_key)
    return task.loss(outputs, batch), (outputs, carry)

  dropout = config.model.dropout
  fields = ("input", "between", "output", "recurrent")
  dropout_on = not all(layers_lib.dropout_off(dropout[f]) for f in fields)
  grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  blew_up = _blow_up_rule(config, task)
  stop_when_solved = config.eval.stop_when_solved
  clip = config.clip
  track_solved = bool(config.eval.every)
  flossed = _flosser(config, task, cell)

  def init(key: Array) -> TrainState:
    tx = make_optimizer(config)
    params = model.init(split_key(key)[0])
    rnn_carry = () if stream is None else model.initial_carry(params, (batch_size,))
    return TrainState(
      params,
      tx.init(params),
      rnn_carry,
      jnp.asarray(-1, jnp.int32),
      jnp.asarray(jnp.nan, jnp.float32),
      jnp.asarray(-1, jnp.int32) if track_solved else (),
    )

  def run(state: TrainState, key: Array, steps: Array) -> tuple[TrainState, dict]:
    tx = make_optimizer(config)
    schedule = make_schedule(config)
    k_data = split_key(key)[1]
    k_dropout = jax.random.fold_in(key, DROPOUT_STREAM) if dropout_on else None

    def step(state: TrainState, step_index: Array):
      batch = sample(k_data, step_index)
      step_dropout = None if k_dropout is None else jax.random.fold_in(k_dropout, step_index)
      carry_in = None
      if stream is not None:
        # A new pass over the rows starts from zeros; otherwise carry the state on.
        fresh = _stream_window(k_data, step_index) == 0
        zeros = model.initial_carry(state.params, (batch_size,))
        carry_in = _select(fresh, zeros, state.rnn_carry)
      (loss, (outputs, carry_out)), grads = grad_fn(state.params, batch, carry_in, step_dropout)
      floss_record = {}
      if flossed is not None:
        floss_grads, floss_record, alone = flossed(state.params, batch.inputs, key, step_index)
        grads = jax.tree.map(lambda g, fg: jnp.where(alone, 0, g) + fg, grads, floss_grads)
      grad_norm = diag_lib.global_norm(grads)
      updates, opt_state = tx.update(grads, state.opt_state, state.params)
      params = optax.apply_updates(state.params, updates)
      finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & diag_lib.all_finite(params)
      initial_loss = jnp.where(
        jnp.isnan(state.initial_loss) & jnp.isfinite(loss), loss, state.initial_loss
      )
      rejected = ~finite | blew_up(loss, grad_norm, initial_loss)
      training = state.diverged_at < 0
      if stop_when_solved:
        # Stopped by a solved evaluation: frozen as a diverged member is, never marked diverged.
        training = training & (state.solved_at < 0)
      keep_going = ~rejected & training
      diverged_at = jnp.where(training & rejected, step_index.astype(jnp.int32), state.diverged_at)
      new_state = TrainState(
        _select(keep_going, params, state.params),
        _select(keep_going, opt_state, state.opt_state),
        () if stream is None else _select(keep_going, carry_out, state.rnn_carry),
        diverged_at,
        initial_loss.astype(jnp.float32),
        state.solved_at,
      )
      record = {
        "loss": loss,
        "metric": task.metric(outputs, batch),
        "grad_norm": grad_norm,
        "clipped": diag_lib.clip_fired(grad_norm, clip),
        "nonfinite": ~finite,
        "diverged": rejected,
        "learning_rate": jnp.asarray(schedule(step_index), jnp.float32),
        **floss_record,
      }
      if step_stats is not None:
        extra = step_stats(grads, updates, loss)
        clash = sorted(set(extra) & set(record))
        if clash:
          raise ValueError(f"step_stats returned {clash}, which shadow built-in metrics")
        record.update(extra)
      return new_state, record

    return jax.lax.scan(step, state, jnp.asarray(steps, jnp.int32))

  def score(params: PyTree, key: Array) -> dict:
    # The held-out evaluation of finish and of the periodic evaluations: the same batches.
    scores = _evaluate(
      model, eval_task, params, split_key(key)[2], config.eval.batch_size, config.eval.num_batches
    )
    solved = jnp.asarray(task.solved(scores["loss"], scores["metric"]), bool)
    return {"loss": scores["loss"], "metric": scores["metric"], "solved": solved}

  def finish(state: TrainState, key: Array) -> dict:
    result = {"diverged_at": state.diverged_at}
    if config.eval.num_batches:
      scores = score(state.params, key)
      result["eval_loss"] = scores["loss"]
      result["eval_metric"] = scores["metric"]
      result["solved"] = scores["solved"]
    if track_solved:
      result["solved_at"] = state.solved_at
    return result

  def evaluate(state: TrainState, key: Array, step: Any) -> tuple[TrainState, dict]:
    _positive_int("eval.num_batches", operator.index(config.eval.num_batches))
    record = score(state.params, key)
    solved = record["solved"]
    if isinstance(state.solved_at, tuple):  # not tracked (config.eval.every == 0)
      return state, record
    first = solved & (state.solved_at < 0) & (state.diverged_at < 0)
    solved_at = jnp.where(first, jnp.asarray(step, jnp.int32), state.solved_at)
    return state._replace(solved_at=solved_at), record

  return types.SimpleNamespace(
    init=init, run=run, finish=finish, evaluate=evaluate, model=model, sample=sample
  )


def make_trainer(
  config: ml_collections.ConfigDict,
  step_stats: Callable[[PyTree, PyTree, Array], dict] | None = None,
  *,
  task: Any = None,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
) -> Trainer:
  """The :class:`Trainer` of ``config``: arguments as :func:`make_train` (no diagnostics).

  The config is checked here (:func:`check_config`); each piece then takes
  ``hparams`` (see :class:`Trainer`) and builds the loop from a view of the
  config in which the given paths hold the given (traced) values.
  """
  check_config(config, cell=cell, task=task)
  own_task = task
  parts = _task_parts(config, own_task)
  base = _loop(config, parts, cell, step_stats)
  # Check the window schedule against the task's real sequence length, before tracing.
  if config.tbptt.k1 is not None:
    batch_shape = jax.eval_shape(base.sample, jax.random.key(0), 0)
    _window_schedule(batch_shape.inputs.shape[1], config.tbptt.k1, config.tbptt.k2)

  def loop(hparams: HParamsLike):
    values = resolve_hparams(config, hparams, cell=cell, task=own_task)
    view = _config_view(config, values)
    # Only the three HParams paths given: the task is the config's own; else rebuilt
    # from the view (a task field, the batch size, TBPTT may be among the values).
    classic = set(values) <= set(HPARAMS_PATHS.values())
    return _loop(view, parts if classic else _task_parts(view, own_task), cell, step_stats)

  def init(key: Array, hparams: HParamsLike = None) -> TrainState:
    return loop(hparams).init(key)

  def run(
    state: TrainState, key: Array, hparams: HParamsLike, steps: Array
  ) -> tuple[TrainState, dict]:
    return loop(hparams).run(state, key, steps)

  def finish(state: TrainState, key: Array, hparams: HParamsLike = None) -> dict:
    return loop(hparams).finish(state, key)

  def evaluate(
    state: TrainState, key: Array, step: Any, hparams: HParamsLike = None
  ) -> tuple[TrainState, dict]:
    return loop(hparams).evaluate(state, key, step)

  return Trainer(init, run, finish, base.model, parts.task, parts.eval_task, evaluate)


def make_train(
  config: ml_collections.ConfigDict,
  step_stats: Callable[[PyTree, PyTree, Array], dict] | None = None,
  diagnostics: Callable[[PyTree, Any], PyTree] | None = None,
  *,
  task: Any = None,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
) -> Callable[..., tuple[PyTree, dict]]:
  """Builds ``train(key, hparams=None) -> (params, metrics)``, the whole run as one function.

  Args:
    config: a config like :func:`default_config`'s (checked here; closed over, never mutated).
    step_stats: optional ``(grads, updates, loss) -> dict`` of extra per-step
      scalars (e.g. training-time gradient statistics); ``grads`` are before
      clipping, ``updates`` the optimizer's output. Each entry is recorded
      every step under its own name, which must not shadow a built-in metric.
    diagnostics: optional ``(params, batch) -> pytree`` evaluated on a fixed
      held-out batch at update counts ``0, e, 2e, ..., num_steps`` with
      ``e = config.diagnostics_every`` (the loop becomes a scan over
      ``num_steps / e`` chunks of an inner scan of ``e`` steps, so nothing is
      computed at other steps, even under ``vmap``).
    task: an :class:`rnnlab.tasks.Task`; default :func:`make_task` of ``config.task``.
    cell: a cell of one's own, replacing ``config.model.cell``: a factory
      ``factory(hidden_size, **options) -> rnnlab.Cell`` (or an import path
      ``"package.module:factory"``, which ``config.model.cell`` takes too), called
      with the ``config.model`` options its signature names (:func:`make_cell`).

  Returns:
    ``train(key, hparams=None)``, already wrapped in ``jax.jit`` (so a plain call
    compiles the whole run once), and free to be jitted or vmapped again.
    ``hparams`` is None (the config's values), an :class:`HParams` of scalars, or a
    mapping ``{dotted config path: scalar}`` of any fields that trace
    (:func:`traced_fields`; see :func:`resolve_hparams`), e.g.
    ``{"optimizer.learning_rate": lr, "optimizer.momentum": m, "model.forget_bias": fb}``:
    the run is then that of the config holding those values (to float rounding).
    It returns the
    final params and a dict of metrics: ``loss``, ``metric``, ``grad_norm``,
    ``clipped``, ``nonfinite``, ``diverged``, ``learning_rate`` (and the ``step_stats``
    entries), each ``(num_steps,)``; ``diverged_at`` (int32, -1 if never);
    ``eval_loss``, ``eval_metric`` and ``solved`` on ``config.eval.num_batches``
    held-out batches after training (absent when 0); ``diagnostics`` and
    ``diagnostics_step`` when ``diagnostics`` is given; with ``config.eval.every
    = n``, ``evals`` (a dict of ``step``, ``loss``, ``metric``, ``solved``, each
    ``(num_steps / n,)``: the held-out evaluation after every ``n`` updates) and
    ``solved_at`` (int32, the update count of the first solved evaluation, -1 if
    none; where ``config.eval.stop_when_solved`` froze the member).

  With ``config.tbptt`` set, each step's gradient is TBPTT(k1, k2) over the
  sampled batch (:func:`tbptt_outputs`, one update per batch). If the task is a
  stream (``task.stream`` is not None), consecutive steps read consecutive
  chunks of each stream and the recurrent state is carried from one step to the
  next (gradient stopped); otherwise every batch starts from zeros.
  :func:`make_trainer` gives the same loop in pieces (for checkpointing runners).
  """
  trainer = make_trainer(config, step_stats, task=task, cell=cell)
  if diagnostics is not None and not config.diagnostics_every:
    _fail(
      "diagnostics_every",
      config.diagnostics_every,
      "a positive divisor of num_steps when diagnostics is given",
    )

  def train(key: Array, hparams: HParamsLike = None) -> tuple[PyTree, dict]:
    # The loop's shape (its length, the chunks between evaluations and diagnostics) is
    # read from the view as Python ints: those fields never trace.
    view = _config_view(config, resolve_hparams(config, hparams, cell=cell, task=task))
    num_steps = operator.index(view.num_steps)
    diag_every = operator.index(view.diagnostics_every)
    eval_every = operator.index(view.eval.every)
    every = diag_every if diagnostics is not None else 0
    state = trainer.init(key, hparams)
    steps = jnp.arange(num_steps, dtype=jnp.int32)
    metrics: dict[str, Any] = {}
    if eval_every:
      state, records, periodic = _run_with_evaluations(
        trainer, view, diagnostics if every else None, state, key, hparams
      )
      metrics.update(periodic)
    elif not every:
      state, records = trainer.run(state, key, hparams, steps)
    else:
      diag_batch = trainer.eval_task.sample(split_key(key)[3], view.eval.batch_size)

      def chunk(state, chunk_steps):
        state, records = trainer.run(state, key, hparams, chunk_steps)
        return state, (records, diagnostics(state.params, diag_batch))

      first = diagnostics(state.params, diag_batch)
      state, (records, diags) = jax.lax.scan(chunk, state, steps.reshape(-1, every))
      records = jax.tree.map(lambda r: r.reshape(num_steps, *r.shape[2:]), records)
      metrics["diagnostics"] = jax.tree.map(
        lambda f, d: jnp.concatenate([f[None], d]), first, diags
      )
      metrics["diagnostics_step"] = jnp.arange(0, num_steps + 1, every, dtype=jnp.int32)
    metrics.update(records)
    metrics.update(trainer.finish(state, key, hparams))
    return state.params, metrics

  # Compiled as one program whether or not the caller wraps it in jit (see the module
  # docstring: this is what makes train(key) and jax.jit(train)(key) bitwise equal).
  return jax.jit(train)


def _run_with_evaluations(trainer, config, diagnostics, state, key, hparams):
  """The loop with periodic evaluations (and diagnostics): chunks of the steps between them.

  The steps run in chunks of ``period = gcd(eval.every, diagnostics_every)``
  (one ``lax.scan`` over chunks of an inner scan); after a chunk, each of the two
  runs only when its own interval divides the update count, under a ``lax.cond``
  on that count. The count is the same for every member, so under ``vmap`` the
  condition stays a real branch and nothing is computed at other chunk ends.
  """
  num_steps, eval_every = config.num_steps, config.eval.every
  diag_every = config.diagnostics_every if diagnostics is not None else 0
  period = math.gcd(eval_every, diag_every) if diag_every else eval_every
  ends = np.arange(period, num_steps + 1, period)  # the update count after each chunk
  if diag_every:
    diag_batch = trainer.eval_task.sample(split_key(key)[3], config.eval.batch_size)

  def at_multiples(interval, count, fn, state):
    """``fn(state) -> (state, out)`` where ``interval`` divides ``count``, else a no-op."""
    if interval == period:
      return fn(state)
    skipped = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(fn, state)[1])
    return jax.lax.cond(count % interval == 0, fn, lambda st: (st, skipped), state)

  def chunk(state, chunk_steps):
    state, records = trainer.run(state, key, hparams, chunk_steps)
    count = chunk_steps[-1] + 1
    state, out = at_multiples(
      eval_every, count, lambda st: trainer.evaluate(st, key, count, hparams), state
    )
    outs = {"evals": out}
    if diag_every:
      state, outs["diagnostics"] = at_multiples(
        diag_every, count, lambda st: (st, diagnostics(st.params, diag_batch)), state
      )
    return state, (records, outs)

  def pick(tree, interval):
    index = np.flatnonzero(ends % interval == 0)
    return tree if len(index) == len(ends) else jax.tree.map(lambda r: r[index], tree)

  first = diagnostics(state.params, diag_batch) if diag_every else None
  steps = jnp.arange(num_steps, dtype=jnp.int32).reshape(-1, period)
  state, (records, outs) = jax.lax.scan(chunk, state, steps)
  records = jax.tree.map(lambda r: r.reshape(num_steps, *r.shape[2:]), records)
  evals = pick(outs["evals"], eval_every)
  evals["step"] = jnp.arange(eval_every, num_steps + 1, eval_every, dtype=jnp.int32)
  metrics = {"evals": evals}
  if diag_every:
    diags = pick(outs["diagnostics"], diag_every)
    metrics["diagnostics"] = jax.tree.map(lambda f, d: jnp.concatenate([f[None], d]), first, diags)
    metrics["diagnostics_step"] = jnp.arange(0, num_steps + 1, diag_every, dtype=jnp.int32)
  return state, records, metrics


# The errors that say "this value was needed as a concrete Python value" while tracing.
TRACER_ERRORS = (
  jax.errors.ConcretizationTypeError,
  jax.errors.TracerBoolConversionError,
  jax.errors.TracerIntegerConversionError,
  jax.errors.TracerArrayConversionError,
)
_TRACED_CACHE: dict[tuple, tuple[Any, bool]] = {}
_TRACED_CACHE_SIZE = 1024


def _needed_concretely(error: BaseException) -> bool:
  """Whether ``error``, raised while tracing, says that a traced value had to be concrete.

  JAX's tracer errors (a Python ``if``, ``int()``, ``float()``, ``range`` or NumPy on
  a tracer) and the ``TypeError`` or ``ValueError`` of code that got a tracer where it
  needs a number and says so: a shape (``Shapes must be 1D sequences of concrete values
  of integer type, got (JitTracer(int32[]), 3)``) or a check of its own that names the
  value (``hidden_size must be a positive int; got JitTracer(int32[])``). Anything
  else propagates.
  """
  if isinstance(error, TRACER_ERRORS):
    return True
  return isinstance(error, TypeError | ValueError) and bool(_NAMES_A_TRACER.search(str(error)))


_NAMES_A_TRACER = re.compile(r"Tracer\b|Tracer\(|Traced<|traced array")


def _cache_key(config, cell, task) -> tuple[tuple, tuple]:
  """``(key, objects)``: the cache key of a config with its cell and task, and the objects
  compared by identity (a task that cannot be hashed, held by the entry)."""
  frozen = config.to_json_best_effort(sort_keys=True)
  pinned = []
  parts = []
  for obj in (cell, task):
    try:
      hash(obj)
      parts.append(obj)
    except TypeError:
      parts.append(("id", id(obj)))
      pinned.append(obj)
  return (frozen, *parts), tuple(pinned)


def traced_fields(
  config: ml_collections.ConfigDict,
  paths: str | Sequence[str],
  *,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
  task: Any = None,
) -> dict[str, bool]:
  """Which fields the trainer can take as traced values in ``hparams`` (value, not program).

  For each dotted path, True iff ``make_train(config, task=task, cell=cell)(key,
  {path: value})`` traces (``jax.eval_shape``: the trainer's ``init``, ``run`` as the
  body of the scan over the steps, its periodic ``evaluate`` and ``finish``, nothing
  compiled or run) with the value an abstract scalar (float32 for a float field,
  int32 for an int field). A field that Python needs concretely (a shape, a loop
  count, a choice of code, ``if value > 0``) fails to trace: False, a field whose
  values each need their own program. A field that is not a number (a string, a
  bool, None, a tuple, a section) is False without tracing.

  The answer comes from how the code reads the field, not from a list: with the
  default config, the learning rate, gain, clip, momentum, ``rmsprop_decay``, the
  betas, eps, weight decay, the schedule's ``end_factor`` and ``decay_rate``, the
  forget bias, the four dropout rates (a traced rate always draws its masks; a
  rate of 0 keeps every unit, so the numbers are those of no dropout) and
  ``divergence.loss_factor`` are True; the sizes (``model.hidden_size``,
  ``model.num_layers``, ``batch_size``, ``task.length``, ``eval.batch_size``,
  ``eval.num_batches``), ``eval.every``, ``diagnostics_every`` and ``num_steps``
  are False, as are the strings (cell, task, optimizer, schedule, schemes), the
  bools and the None fields (``divergence.max_grad_norm``, ``model.chrono_t_max``,
  ``tbptt.k1``, ``k2``). ``num_steps`` is False because :func:`make_train` makes it
  the length of the scan over the steps (and a runner cuts the steps into chunks
  by it); the :class:`Trainer`'s pieces alone would not need it under a constant
  schedule, but members of one program share one scan, so it is a program field.
  A field the config leaves unused traces trivially: ``optimizer.momentum`` under
  Adam, ``optimizer.warmup_steps`` without the ``warmup_cosine`` schedule (with it,
  False: optax branches on it) are True, rightly, since their values change
  nothing there. The answer is about the given config: a None field is False here
  and may be True in a config that sets it (``divergence.max_grad_norm = 10.0``,
  ``model.chrono_t_max = 8.0`` for a gated cell), so ask with a config holding a
  value of the axis; the built-in tasks' options (``task.kwargs.*``) are False
  (their builders compute in NumPy).

  The probes trace all the paths at once first; only if that fails, each alone
  (after checking that the config traces with no values at all, so a bug is
  raised, not read as False). Results are cached per (config, path, cell, task).

  Args:
    config: a training config (checked by :func:`check_config`).
    paths: one dotted path or a sequence of them (those of :func:`field_paths`).
    cell, task: as :func:`make_train`'s.

  Returns:
    ``{path: bool}`` in the order of ``paths``.

  Raises:
    ValueError: one line for an unknown path (naming the nearest field); a bad config.
  """
  paths = [paths] if isinstance(paths, str) else list(paths)
  fields = field_paths(config)
  for path in paths:
    if path not in fields:
      raise unknown_path(path, fields, "traced_fields")
  key, pinned = _cache_key(config, cell, task)
  out: dict[str, bool] = {}
  todo = []
  for path in paths:
    entry = _TRACED_CACHE.get((key, path))
    if _field_dtype(path, fields[path]) is None or (task is not None and path.startswith("task.")):
      out[path] = False
    elif entry is not None and all(a is b for a, b in zip(entry[0], pinned, strict=True)):
      out[path] = entry[1]
    else:
      todo.append(path)
  if todo:
    train = make_train(config, task=task, cell=cell)
    dtypes = {path: _field_dtype(path, fields[path]) for path in todo}

    def traces(probe_paths: Sequence[str]) -> bool:
      hparams = {path: jax.ShapeDtypeStruct((), dtypes[path]) for path in probe_paths}
      token = _PROBING.set(True)
      try:
        jax.eval_shape(train, jax.random.key(0), hparams)
      except (TypeError, ValueError) as error:  # JAX's tracer errors are TypeErrors
        if not probe_paths or not _needed_concretely(error):
          raise
        return False
      finally:
        _PROBING.reset(token)
      return True

    if traces(todo):
      found = dict.fromkeys(todo, True)
    else:
      traces([])  # the config alone must trace; otherwise its error is raised
      found = {path: traces([path]) for path in todo}
    if len(_TRACED_CACHE) > _TRACED_CACHE_SIZE:
      _TRACED_CACHE.clear()
    for path, value in found.items():
      _TRACED_CACHE[key, path] = (pinned, value)
    out.update(found)
  return {path: out[path] for path in paths}


def _evaluate(model, task, params, key_or_batch, batch_size, num_batches) -> dict:
  def score(batch):
    outputs, _ = model.apply(params, batch.inputs, lengths=batch.lengths)
    return task.loss(outputs, batch), task.metric(outputs, batch)

  if not isinstance(key_or_batch, jax.Array) or not jnp.issubdtype(
    key_or_batch.dtype, jax.dtypes.prng_key
  ):
    loss, metric = score(key_or_batch)
    return {"loss": loss, "metric": metric}
  keys = jax.random.split(key_or_batch, num_batches)
  losses, metrics = jax.lax.map(lambda k: score(task.sample(k, batch_size)), keys)
  return {"loss": jnp.mean(losses), "metric": jnp.mean(metrics)}


def evaluate(
  config: ml_collections.ConfigDict,
  params: PyTree,
  key_or_batch: Any,
  num_batches: int | None = None,
  *,
  task: Any = None,
  cell: str | Callable[..., cells_lib.Cell] | None = None,
) -> dict:
  """Mean loss and metric of ``params`` on held-out batches (full BPTT forward, zero carry).

  Args:
    config: the training config (model, task, ``eval.batch_size``).
    params: the model's params (e.g. from ``train``).
    key_or_batch: a typed PRNG key (``jax.random.key``): ``num_batches`` fresh
      batches of ``config.eval.batch_size`` are sampled from it (pass a key the
      training run did not use); or one task batch, scored as is.
    num_batches: default ``config.eval.num_batches`` (at least 1).
    task: default ``rnnlab.tasks.get`` of ``config.task`` with
      ``config.eval.task_kwargs`` over its kwargs (e.g. the test split).
    cell: the cell factory the params were trained with, if not ``config.model.cell``.

  Returns:
    ``{"loss": scalar, "metric": scalar}``, the means over the batches (each
    batch's loss is the task's own reduction; batches are equal-sized).
  """
  task = make_task(config, held_out=True) if task is None else task
  model = make_model(config, task, cell=cell)
  if isinstance(key_or_batch, jax.Array) and jnp.issubdtype(
    key_or_batch.dtype, jax.dtypes.prng_key
  ):
    num_batches = config.eval.num_batches if num_batches is None else num_batches
    _positive_int("eval.num_batches", num_batches)
    _positive_int("eval.batch_size", config.eval.batch_size)
  return _evaluate(model, task, params, key_or_batch, config.eval.batch_size, num_batches)


__all__ = [
  "CELL_FACTORY_KEYWORDS",
  "DROPOUT_STREAM",
  "FLOSS_METRICS",
  "FLOSS_STREAM",
  "HPARAMS_PATHS",
  "HParams",
  "HParamsLike",
  "Model",
  "STEP_METRICS",
  "TRACER_ERRORS",
  "TrainState",
  "Trainer",
  "blow_up_rule",
  "cell_factory",
  "check_config",
  "clip_by_global_norm",
  "default_config",
  "default_hparams",
  "evaluate",
  "field_paths",
  "grid",
  "make_cell",
  "make_model",
  "make_optimizer",
  "make_schedule",
  "make_task",
  "make_train",
  "make_trainer",
  "resolve_hparams",
  "split_key",
  "task_factory",
  "tbptt_outputs",
  "traced_fields",
  "unknown_path",
  "weight_decay_mask",
]
