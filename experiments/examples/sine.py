r"""Noisy-sine forecasting, many-to-many: an Elman layer of 20 units and a dense output.

The data: ``N`` points ``x_n`` evenly spaced on ``[-2 pi, 2 pi]`` and the series
``s_n = sin(x_n) + 0.1 eps_n`` (``eps_n ~ N(0, 1)``, drawn from ``--seed``). A window
of ``W = 10`` steps reads ``s_i .. s_{i+W-1}`` and its targets are the next values
``s_{i+1} .. s_{i+W}``: one prediction per step (many-to-many). The last 10 % of the
windows (in time order, as Keras's ``validation_split``) are the validation set.

The model (``rnnlab.many_to_many(rnnlab.elman(20), 1)``)::

    h_t = tanh(s_t W_ih + h_{t-1} W_hh + b)      W_ih (1, 20), W_hh (20, 20), b (20,)
    y_t = h_t w + c                               w (20, 1), c (1,)

has 20 + 400 + 20 + 20 + 1 = 461 parameters. Training: plain SGD on the MSE over
all steps, minibatches of ``--batch_size`` windows reshuffled every epoch (the
remainder dropped), 20 epochs; train and validation loss after every epoch.

Free-running prediction: the network reads the first validation window, then
its own prediction is fed back as the next input, step after step, to the end
of the series; the plot shows it against the data and against the one-step
(teacher-forced) predictions.

    python -m experiments.examples.sine
    python -m experiments.examples.sine --epochs=100 --learning_rate=0.05
"""

from __future__ import annotations

import functools
import logging
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import rnnlab
from experiments.examples import workdir as workdir_lib

QUICK = {"epochs": 5}  # --quick's settings, for the flags not given on the command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the flags; called only when run as a program, so the examples import together."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_integer("num_points", 100, "Points N of the series on [-2pi, 2pi].", **fv)
  flags.DEFINE_integer("window", 10, "Steps W per window.", **fv)
  flags.DEFINE_float("noise", 0.1, "Standard deviation of the added Gaussian noise.", **fv)
  flags.DEFINE_integer("hidden", 20, "Units of the Elman layer.", **fv)
  flags.DEFINE_integer("epochs", 20, "Passes over the training windows.", **fv)
  flags.DEFINE_integer("batch_size", 4, "Windows per SGD update.", **fv)
  flags.DEFINE_float("learning_rate", 0.1, "SGD learning rate.", **fv)
  flags.DEFINE_float("validation_split", 0.1, "Fraction of windows (the last) held out.", **fv)
  flags.DEFINE_integer("seed", 0, "PRNG seed (noise, initial weights, shuffling).", **fv)
  flags.DEFINE_bool("quick", False, "Smoke run: 5 epochs; flags given explicitly win.", **fv)
  flags.DEFINE_string("workdir", "runs/examples/sine", "Folder for the outputs.", **fv)


class SineData(NamedTuple):
  """The series and its windows (``M`` windows of ``W`` steps, one feature)."""

  x: jax.Array  # (N,) the grid on [-2 pi, 2 pi]
  series: jax.Array  # (N,) sin(x) + noise * eps
  inputs: jax.Array  # (M, W, 1): s_i .. s_{i+W-1}
  targets: jax.Array  # (M, W, 1): s_{i+1} .. s_{i+W}
  num_train: int  # windows 0 .. num_train-1 train, the rest validate


def make_data(key: jax.Array, num_points: int, window: int, noise: float, val_split: float):
  """The noisy sine on ``[-2 pi, 2 pi]`` cut into next-value windows; see the module docstring."""
  x = jnp.linspace(-2 * jnp.pi, 2 * jnp.pi, num_points)
  series = jnp.sin(x) + noise * jax.random.normal(key, (num_points,))
  num_windows = num_points - window
  index_MxW = jnp.arange(num_windows)[:, None] + jnp.arange(window)[None, :]
  num_val = int(round(val_split * num_windows))
  return SineData(
    x, series, series[index_MxW][..., None], series[index_MxW + 1][..., None], num_windows - num_val
  )


def make_model(hidden: int = 20) -> rnnlab.models.SequenceModel:
  """``many_to_many(elman(hidden), 1)``: one forecast per step."""
  return rnnlab.many_to_many(rnnlab.elman(hidden), 1)


def parameter_count(tree: Any) -> int:
  """The number of scalars in a params pytree."""
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def model_summary(params: rnnlab.models.ModelParams) -> tuple[str, int]:
  """A Keras-like summary with per-layer counts; returns ``(text, total)``."""
  rows = []
  for label, part in (("elman (recurrent)", params.encoder), ("dense (readout)", params.readout)):
    shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in part._asdict().items())
    rows.append((label, shapes, parameter_count(part)))
  total = parameter_count(params)
  width = max(len(r[1]) for r in rows)
  lines = [f"{'layer':<18} {'weights':<{width}} {'params':>7}"]
  lines += [f"{label:<18} {shapes:<{width}} {count:>7}" for label, shapes, count in rows]
  lines.append(f"{'total':<18} {'':<{width}} {total:>7}")
  return "\n".join(lines), total


def mse(params, model, inputs, targets) -> jax.Array:
  """Mean squared error over every step and window."""
  return jnp.mean((model.apply(params, inputs) - targets) ** 2)


@functools.partial(jax.jit, static_argnames=("epochs", "batch_size", "num_train"))
def train(
  params0: rnnlab.models.ModelParams,
  key: jax.Array,
  data: SineData,
  learning_rate: float,
  *,
  epochs: int,
  batch_size: int,
  num_train: int,
):
  """SGD on the MSE; the whole run is one ``lax.scan`` over epochs of a scan over batches.

  Args:
    params0: initial params of :func:`make_model`.
    key: shuffles the training windows (epoch ``e`` uses ``fold_in(key, e)``).
    data: from :func:`make_data`.
    learning_rate: SGD step size.
    epochs, batch_size, num_train: static sizes (``num_train`` is ``data.num_train``).

  Returns:
    ``(final params, train losses (epochs,), validation losses (epochs,))``; an epoch's
    train loss is the mean of its minibatch losses (as Keras reports it).
  """
  model = make_model(params0.encoder.w_hh.shape[0])
  opt = optax.sgd(learning_rate)
  train_x, train_y = data.inputs[:num_train], data.targets[:num_train]
  val_x, val_y = data.inputs[num_train:], data.targets[num_train:]
  num_batches = num_train // batch_size
  loss_and_grad = jax.value_and_grad(mse)

  def update(state, batch):
    params, opt_state = state
    loss, grads = loss_and_grad(params, model, *batch)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  def epoch(state, epoch_index):
    order = jax.random.permutation(jax.random.fold_in(key, epoch_index), num_train)
    order = order[: num_batches * batch_size].reshape(num_batches, batch_size)
    state, losses = jax.lax.scan(update, state, (train_x[order], train_y[order]))
    return state, (jnp.mean(losses), mse(state[0], model, val_x, val_y))

  (params, _), (train_losses, val_losses) = jax.lax.scan(
    epoch, (params0, opt.init(params0)), jnp.arange(epochs)
  )
  return params, train_losses, val_losses


@functools.partial(jax.jit, static_argnames=("num_steps",))
def free_run(params: rnnlab.models.ModelParams, seed_W: jax.Array, num_steps: int) -> jax.Array:
  """Reads ``seed_W``, then feeds each prediction back as the next input.

  Returns:
    ``(num_steps,)``: the forecasts of the ``num_steps`` values after the seed.
  """
  cell, readout = rnnlab.elman(params.encoder.w_hh.shape[0]), rnnlab.dense(1)
  hs, h = rnnlab.unroll(cell, params.encoder, seed_W[:, None])
  first = readout.apply(params.readout, hs[-1])

  def step(state, _):
    h, y = state
    h, out = cell.step(params.encoder, h, y)
    return (h, readout.apply(params.readout, out)), y[0]

  _, forecasts = jax.lax.scan(step, (h, first), None, length=num_steps)
  return forecasts


def run(
  *,
  workdir: str,
  num_points: int = 100,
  window: int = 10,
  noise: float = 0.1,
  hidden: int = 20,
  epochs: int = 20,
  batch_size: int = 4,
  learning_rate: float = 0.1,
  val_split: float = 0.1,
  seed: int = 0,
  echo: Any = print,
) -> dict:
  """The whole example; writes ``sine.png`` and ``sine.json`` to ``workdir``.

  Returns:
    The results written to ``sine.json``.
  """
  workdir_lib.check_positive_ints(
    num_points=num_points, window=window, hidden=hidden, epochs=epochs, batch_size=batch_size
  )
  if not 0 < val_split < 1:
    raise ValueError(f"--validation_split must be in (0, 1); got {val_split}")
  if not noise >= 0 or not learning_rate > 0:
    raise ValueError(f"need --noise >= 0 and --learning_rate > 0; got {noise}, {learning_rate}")
  k_data, k_init, k_shuffle = jax.random.split(jax.random.key(seed), 3)
  data = make_data(k_data, num_points, window, noise, val_split)
  num_windows = data.inputs.shape[0]
  num_val = num_windows - data.num_train
  if num_val < 1 or data.num_train < batch_size:
    raise ValueError(
      f"--num_points={num_points} gives {num_windows} windows of {window}: need at least "
      f"--batch_size={batch_size} for training and 1 for validation"
    )
  path = workdir_lib.prepare(workdir)

  model = make_model(hidden)
  params0 = jax.jit(model.init, static_argnums=1)(k_init, 1)
  summary, total = model_summary(params0)
  echo(f"model: many_to_many(elman({hidden}), 1) on windows of {window} steps")
  echo(summary)
  echo(
    f"data: {num_points} points of sin(x) + {noise} * noise on [-2pi, 2pi]; "
    f"{num_windows} windows: {data.num_train} train, {num_val} validation (the last)"
  )
  params, train_losses, val_losses = train(
    params0,
    k_shuffle,
    data,
    learning_rate,
    epochs=epochs,
    batch_size=batch_size,
    num_train=data.num_train,
  )
  train_losses, val_losses = np.asarray(train_losses), np.asarray(val_losses)
  val_before = float(
    jax.jit(mse, static_argnums=1)(
      params0, model, data.inputs[data.num_train :], data.targets[data.num_train :]
    )
  )
  echo(f"SGD lr={learning_rate}, batch {batch_size}; validation MSE at init {val_before:.4f}")
  for e in range(epochs):
    echo(f"epoch {e + 1:3d}  train MSE {train_losses[e]:.4f}  validation MSE {val_losses[e]:.4f}")

  one_step = np.asarray(jax.jit(model.apply)(params, data.inputs))[:, -1, 0]  # predicts s_{i+W}
  start = data.num_train  # the first validation window
  horizon = num_points - start - window
  forecasts = np.asarray(free_run(params, data.series[start : start + window], horizon))
  future = np.asarray(data.series[start + window :])
  clean = np.sin(np.asarray(data.x[start + window :]))
  free_mse = float(np.mean((forecasts - future) ** 2))
  echo(
    f"free-running from the first validation window, {horizon} steps fed back: "
    f"MSE {free_mse:.4f} against the data, {float(np.mean((forecasts - clean) ** 2)):.4f} "
    f"against sin(x) (noise floor {noise**2:.4f})"
  )
  results = dict(
    parameter_count=total,
    train_loss=train_losses.tolist(),
    val_loss=val_losses.tolist(),
    val_loss_at_init=val_before,
    free_run_mse=free_mse,
    free_run=forecasts.tolist(),
    config=dict(
      num_points=num_points,
      window=window,
      noise=noise,
      hidden=hidden,
      epochs=epochs,
      batch_size=batch_size,
      learning_rate=learning_rate,
      validation_split=val_split,
      seed=seed,
    ),
  )
  _plot(data, train_losses, val_losses, one_step, forecasts, start, os.path.join(path, "sine.png"))
  workdir_lib.write_json(os.path.join(path, "sine.json"), results)
  echo(f"wrote sine.png, sine.json to {path}")
  return results


def _plot(data, train_losses, val_losses, one_step, forecasts, start, filename) -> None:
  plt = workdir_lib.pyplot()
  window = data.inputs.shape[1]
  x = np.asarray(data.x)
  fig, (ax_loss, ax_pred) = plt.subplots(1, 2, figsize=(11, 3.4), width_ratios=(1, 2))
  epochs = np.arange(1, len(train_losses) + 1)
  ax_loss.plot(epochs, train_losses, label="train")
  ax_loss.plot(epochs, val_losses, label="validation")
  ax_loss.set(xlabel="epoch", ylabel="MSE", title="loss", yscale="log")
  ax_loss.legend()
  ax_pred.plot(x, np.asarray(data.series), ".", ms=2, color="0.6", label="data")
  ax_pred.plot(x[window:], one_step, lw=1, label="one step ahead")
  ax_pred.plot(x[start + window :], forecasts, lw=2, label="free running")
  ax_pred.axvline(x[start + window], color="k", ls=":", lw=1)
  ax_pred.set(xlabel="x", title="prediction vs data (validation after the dotted line)")
  ax_pred.legend(loc="lower left", fontsize=8)
  workdir_lib.save_figure(fig, filename)


def settings(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """:func:`run`'s arguments from the parsed flags (``--quick`` under the ones not given)."""
  value = workdir_lib.flag_reader(QUICK, flag_values)
  return dict(
    workdir=value("workdir"),
    num_points=value("num_points"),
    window=value("window"),
    noise=value("noise"),
    hidden=value("hidden"),
    epochs=value("epochs"),
    batch_size=value("batch_size"),
    learning_rate=value("learning_rate"),
    val_split=value("validation_split"),
    seed=value("seed"),
  )


@workdir_lib.usage_errors
def main(argv):
  del argv
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  run(**settings())


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=workdir_lib.parse_flags)
