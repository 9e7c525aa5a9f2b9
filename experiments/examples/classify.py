r"""Many-to-one classification: sequential 8x8 digits read one pixel per step.

Each 8x8 image (scikit-learn's digits, pixels / 16) is a sequence of 64 steps
of one pixel, row by row; an LSTM or GRU reads it and a dense readout of its
last hidden state scores the 10 classes (``rnnlab.many_to_one``)::

    h_t = cell(h_{t-1}, pixel_t)       t = 1 .. 64
    logits = h_64 W + b                (10,)

Training: Adam on the cross-entropy, batches drawn from the training split
(``rnnlab.tasks.get("digits", 64)``, a fixed 80/20 split); the accuracy and the
confusion matrix are measured on ``--num_test`` sequences drawn from the held-out
split. Without scikit-learn the example says so and falls back to
``--task=temporal_order_2bit`` (Hochreiter & Schmidhuber's temporal order: 4 classes),
which can also be asked for directly.

    python -m experiments.examples.classify                    # LSTM, digits
    python -m experiments.examples.classify --cell=gru --steps=3000
    python -m experiments.examples.classify --task=temporal_order_2bit --length=20
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags

import rnnlab
from experiments.examples import workdir as workdir_lib

CELLS = {"lstm": rnnlab.lstm, "gru": rnnlab.gru, "elman": rnnlab.elman}
TASKS = ("digits", "digits_permuted", "temporal_order_2bit", "temporal_order_3bit")
FALLBACK_TASK = "temporal_order_2bit"

QUICK = {"hidden": 32, "steps": 200}  # --quick's settings, for the flags not given


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the flags; called only when run as a program, so the examples import together."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_string("task", "digits", f"Task of rnnlab.tasks: {' | '.join(TASKS)}.", **fv)
  flags.DEFINE_integer("length", None, "Sequence length T (digits: 64; default 20 else).", **fv)
  flags.DEFINE_string("cell", "lstm", "Recurrent cell: lstm | gru | elman.", **fv)
  flags.DEFINE_integer("hidden", 64, "Hidden units.", **fv)
  flags.DEFINE_integer("steps", 1500, "Adam updates.", **fv)
  flags.DEFINE_integer("batch_size", 32, "Sequences per update.", **fv)
  flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.", **fv)
  flags.DEFINE_integer("num_test", 1000, "Test sequences drawn from the held-out split.", **fv)
  flags.DEFINE_integer("seed", 0, "PRNG seed (weights, batches, test draws).", **fv)
  flags.DEFINE_bool(
    "quick", False, "Smoke run: 32 units, 200 updates; flags given explicitly win.", **fv
  )
  flags.DEFINE_string("workdir", "runs/examples/classify", "Folder for the outputs.", **fv)


def has_sklearn() -> bool:
  """Whether scikit-learn (which ships the digits) can be imported."""
  return importlib.util.find_spec("sklearn") is not None


def make_task(name: str, length: int | None, split: str = "train") -> rnnlab.tasks.Task:
  """The classification task ``name`` (digits get ``split``; their length is 64)."""
  if name not in TASKS:
    raise ValueError(f"--task={name!r} is not supported here; expected one of {TASKS}")
  if name.startswith("digits"):
    return rnnlab.tasks.get(name, 64 if length is None else length, split=split)
  return rnnlab.tasks.get(name, 20 if length is None else length)


def labels_of(batch: rnnlab.tasks.Batch) -> jax.Array:
  """``(B,)`` class ids: each sequence's target at its (single) masked step."""
  return jnp.sum(jnp.where(batch.mask > 0, batch.targets, 0), axis=-1).astype(jnp.int32)


def make_model(cell: str, hidden: int, num_classes: int) -> rnnlab.models.SequenceModel:
  """``many_to_one(cell(hidden), num_classes)``."""
  if cell not in CELLS:
    raise ValueError(f"--cell={cell!r} is not supported; expected one of {tuple(CELLS)}")
  return rnnlab.many_to_one(CELLS[cell](hidden), num_classes)


@functools.partial(
  jax.jit, static_argnames=("task_name", "length", "cell", "num_steps", "batch_size")
)
def train(
  params: rnnlab.models.ModelParams,
  key: jax.Array,
  learning_rate: float,
  *,
  task_name: str,
  length: int | None,
  cell: str,
  num_steps: int,
  batch_size: int,
) -> tuple[rnnlab.models.ModelParams, jax.Array]:
  """Adam on the cross-entropy of the last state's logits; one ``lax.scan`` over updates.

  Update ``s`` samples its batch from ``fold_in(key, s)``. Returns the final
  params and the loss of every update ``(num_steps,)``.
  """
  task = make_task(task_name, length)
  model = make_model(cell, params.encoder.w_hh.shape[0], task.output_size)
  opt = optax.adam(learning_rate)

  def loss_fn(params, batch):
    logits = model.apply(params, batch.inputs, lengths=batch.lengths)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels_of(batch)))

  def update(state, step):
    params, opt_state = state
    batch = task.sample(jax.random.fold_in(key, step), batch_size)
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = opt.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  (params, _), losses = jax.lax.scan(update, (params, opt.init(params)), jnp.arange(num_steps))
  return params, losses


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
  """``C[i, j]`` = how many sequences of class ``i`` were predicted ``j``."""
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (np.asarray(labels), np.asarray(predicted)), 1)
  return matrix


def run(
  *,
  workdir: str,
  task: str = "digits",
  length: int | None = None,
  cell: str = "lstm",
  hidden: int = 64,
  steps: int = 1500,
  batch_size: int = 32,
  learning_rate: float = 3e-3,
  num_test: int = 1000,
  seed: int = 0,
  echo: Any = print,
) -> dict:
  """The whole example; writes ``classify.png`` (confusion matrix, loss) and ``classify.json``.

  Returns:
    The results written to ``classify.json``.
  """
  workdir_lib.check_positive_ints(
    hidden=hidden, steps=steps, batch_size=batch_size, num_test=num_test
  )
  if not learning_rate > 0:
    raise ValueError(f"--learning_rate must be > 0; got {learning_rate}")
  if task.startswith("digits") and not has_sklearn():
    echo(
      f"scikit-learn is missing, and it ships the digits (pip install 'rnnlab[digits]'); "
      f"falling back to --task={FALLBACK_TASK}"
    )
    task, length = FALLBACK_TASK, None
  if cell not in CELLS:
    raise ValueError(f"--cell={cell!r} is not supported; expected one of {tuple(CELLS)}")
  if task not in TASKS:
    raise ValueError(f"--task={task!r} is not supported here; expected one of {TASKS}")
  train_task = make_task(task, length)
  test_task = make_task(task, length, split="test")
  model = make_model(cell, hidden, train_task.output_size)
  path = workdir_lib.prepare(workdir)

  k_init, k_train, k_test = jax.random.split(jax.random.key(seed), 3)
  params = model.init(k_init, train_task.input_size)
  num_classes = train_task.output_size
  echo(
    f"many_to_one({cell}({hidden}), {num_classes}) on {task} (T = {train_task.length}, "
    f"{num_classes} classes); Adam lr={learning_rate}, {steps} updates of {batch_size}"
  )
  params, losses = train(
    params,
    k_train,
    learning_rate,
    task_name=task,
    length=length,
    cell=cell,
    num_steps=steps,
    batch_size=batch_size,
  )
  losses = np.asarray(losses)
  for s in sorted({0, steps // 4, steps // 2, 3 * steps // 4, steps - 1}):
    window = losses[max(0, s - 19) : s + 1]
    echo(f"update {s + 1:5d}  loss {window.mean():.4f} (mean of the last {len(window)})")

  test = test_task.sample(k_test, num_test)
  labels = np.asarray(labels_of(test))
  predicted = np.asarray(
    jnp.argmax(jax.jit(model.apply)(params, test.inputs, lengths=test.lengths), -1)
  )
  matrix = confusion_matrix(labels, predicted, num_classes)
  accuracy = float(np.mean(labels == predicted))
  chance = float(np.max(np.bincount(labels, minlength=num_classes)) / num_test)
  echo(
    f"test accuracy {accuracy:.3f} on {num_test} sequences drawn from the held-out split "
    f"(the majority class scores {chance:.3f})"
  )
  echo("confusion matrix (rows: true class, columns: predicted):")
  echo("\n".join("  " + " ".join(f"{v:4d}" for v in row) for row in matrix))
  results = dict(
    task=task,
    accuracy=accuracy,
    majority_baseline=chance,
    confusion_matrix=matrix.tolist(),
    class_counts=np.bincount(labels, minlength=num_classes).tolist(),
    losses=losses.tolist(),
    config=dict(
      cell=cell,
      hidden=hidden,
      steps=steps,
      batch_size=batch_size,
      learning_rate=learning_rate,
      num_test=num_test,
      seed=seed,
      length=train_task.length,
    ),
  )
  _plot(losses, matrix, accuracy, task, os.path.join(path, "classify.png"))
  workdir_lib.write_json(os.path.join(path, "classify.json"), results)
  echo(f"wrote classify.png, classify.json to {path}")
  return results


def _plot(losses: np.ndarray, matrix: np.ndarray, accuracy: float, task: str, filename: str):
  plt = workdir_lib.pyplot()
  fig, (ax_loss, ax_cm) = plt.subplots(1, 2, figsize=(9, 3.6), width_ratios=(1.2, 1))
  ax_loss.plot(np.arange(1, len(losses) + 1), losses, lw=0.5, color="0.7")
  smooth = np.convolve(losses, np.ones(20) / 20, mode="valid") if len(losses) >= 20 else losses
  ax_loss.plot(np.arange(len(losses) - len(smooth) + 1, len(losses) + 1), smooth)
  ax_loss.set(xlabel="update", ylabel="cross-entropy", title="training loss")
  ax_cm.imshow(matrix, cmap="Blues")
  n = matrix.shape[0]
  for i in range(n):
    for j in range(n):
      if matrix[i, j]:
        color = "white" if matrix[i, j] > matrix.max() / 2 else "black"
        ax_cm.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
  ax_cm.set_xticks(range(n))
  ax_cm.set_yticks(range(n))
  ax_cm.set(xlabel="predicted", ylabel="true", title=f"{task}: test accuracy {accuracy:.3f}")
  workdir_lib.save_figure(fig, filename)


def settings(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """:func:`run`'s arguments from the parsed flags (``--quick`` under the ones not given)."""
  value = workdir_lib.flag_reader(QUICK, flag_values)
  names = ("workdir", "task", "length", "cell", "hidden", "steps", "batch_size")
  names += ("learning_rate", "num_test", "seed")  # run's keywords are the flags' names
  return {name: value(name) for name in names}


@workdir_lib.usage_errors
def main(argv):
  del argv
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  run(**settings())


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=workdir_lib.parse_flags)
