r"""A character RNN learns "hello": the forward pass step by step, then BPTT.

The classic first example of a recurrent network. The vocabulary is
``h e l o`` (ids 0 1 2 3), each letter goes in as a one-hot vector ``x_t (4,)``,
and an Elman cell with H = 3 hidden units and a dense readout score the next
letter::

    h_t = tanh(x_t W_ih + h_{t-1} W_hh + b)        h_0 = 0
    y_t = h_t W_out + b_out                         (scores, one per letter)
    p_t = softmax(y_t)

Input ``"hell"``, targets ``"ello"``: after ``"hel"`` the answer is ``l`` but after
``"hell"`` it is ``o``, although both steps read an ``l``: only the hidden state
can tell them apart. The loss is the mean cross-entropy over the 4 steps, and
training is full backpropagation through time (one sequence, exact gradient),
with SGD or Adam, one update per epoch.

Weights (``--weights=path.json`` or ``--weights_inline='{...}'``), so that a
lecture's worked numbers reproduce exactly; a JSON object with the keys

    ==========  ========  =============================================
    key         shape     role
    ==========  ========  =============================================
    ``w_ih``    (4, H)    input -> hidden, rows in vocabulary order h e l o
    ``w_hh``    (H, H)    hidden -> hidden (row = from, column = to)
    ``b``       (H,)      hidden bias
    ``w_out``   (H, 4)    hidden -> scores, columns h e l o
    ``b_out``   (4,)      score bias
    ==========  ========  =============================================

(row vectors times matrices, ``x @ W``: transpose a textbook's ``W x`` matrices).
Without weights they are drawn from ``--seed``. The trained weights are written
in the same layout to ``<workdir>/hello_trained_weights.json``.

    python -m experiments.examples.hello
    python -m experiments.examples.hello --weights=lecture.json --epochs=0   # forward only
    python -m experiments.examples.hello --optimizer=sgd --learning_rate=0.5 --epochs=300
    python -m experiments.examples.hello --until_learned    # stop once it predicts "ello"
"""

from __future__ import annotations

import functools
import json
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

VOCAB = "helo"
INPUT_TEXT = "hell"
TARGET_TEXT = "ello"
OPTIMIZERS = ("sgd", "adam")
WEIGHT_KEYS = ("w_ih", "w_hh", "b", "w_out", "b_out")

QUICK = {"epochs": 60}  # --quick's settings, for the flags not given on the command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the flags; called only when run as a program, so the examples import together."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_integer("epochs", 100, "Training epochs (one full-BPTT update each).", **fv)
  flags.DEFINE_string("optimizer", "adam", "Optimizer: sgd | adam.", **fv)
  flags.DEFINE_float("learning_rate", 0.1, "Learning rate of the optimizer.", **fv)
  flags.DEFINE_integer("hidden", 3, "Hidden units H (with --weights, their shapes decide).", **fv)
  flags.DEFINE_integer("seed", 0, "PRNG seed for the initial weights (without --weights).", **fv)
  flags.DEFINE_string("weights", None, "JSON file of initial weights (see --help).", **fv)
  flags.DEFINE_string(
    "weights_inline", None, "Initial weights as a JSON string, same layout as --weights.", **fv
  )
  flags.DEFINE_bool(
    "until_learned", False, "Stop at the first epoch that predicts 'ello' (at most --epochs).", **fv
  )
  flags.DEFINE_integer("log_every", 1, "Print the loss every this many epochs.", **fv)
  flags.DEFINE_bool(
    "quick", False, "Smoke run: 60 epochs (still learns 'ello'); flags given explicitly win.", **fv
  )
  flags.DEFINE_string("workdir", "runs/examples/hello", "Folder for the outputs.", **fv)


class CharRNNParams(NamedTuple):
  """The elman cell's ``ElmanParams(w_ih (V, H), w_hh (H, H), b (H,))`` and the readout's
  ``DenseParams(w (H, V), b (V,))``."""

  cell: rnnlab.ElmanParams
  readout: rnnlab.layers.DenseParams


class Forward(NamedTuple):
  """One forward pass over a text of T letters (V = 4 letters, H hidden units)."""

  hidden: jax.Array  # (T, H): h_1 .. h_T
  scores: jax.Array  # (T, V): y_t = h_t W_out + b_out
  probs: jax.Array  # (T, V): softmax(y_t)


def encode(text: str) -> jax.Array:
  """Letter ids of ``text`` (each of ``h e l o``)."""
  bad = sorted(set(text) - set(VOCAB))
  if bad:
    raise ValueError(f"text {text!r} has letters {bad} outside the vocabulary {VOCAB!r}")
  return jnp.asarray([VOCAB.index(c) for c in text], jnp.int32)


def one_hot(text: str) -> jax.Array:
  """``(T, V)`` float32 one-hot rows, one per letter."""
  return jax.nn.one_hot(encode(text), len(VOCAB), dtype=jnp.float32)


def init_params(key: jax.Array, hidden_size: int = 3) -> CharRNNParams:
  """Random weights: rnnlab's elman defaults (orthogonal ``w_hh``) and a dense readout."""
  k_cell, k_out = jax.random.split(key)
  return CharRNNParams(
    rnnlab.elman(hidden_size).init(k_cell, len(VOCAB)),
    rnnlab.dense(len(VOCAB)).init(k_out, hidden_size),
  )


def params_from_dict(weights: Any) -> CharRNNParams:
  """:class:`CharRNNParams` from the JSON layout (see the module docstring).

  Raises:
    ValueError: (one line) a missing or unknown key, a non-numeric entry or a wrong shape.
  """
  if not isinstance(weights, dict):
    raise ValueError(f"weights must be a JSON object with keys {WEIGHT_KEYS}; got {weights!r}")
  missing = [k for k in WEIGHT_KEYS if k not in weights]
  unknown = sorted(set(weights) - set(WEIGHT_KEYS))
  if missing or unknown:
    raise ValueError(
      f"weights need exactly the keys {WEIGHT_KEYS}; missing {missing}, unknown {unknown}"
    )
  arrays = {}
  for k in WEIGHT_KEYS:
    try:
      arrays[k] = np.asarray(weights[k], dtype=np.float64)
    except (TypeError, ValueError):
      raise ValueError(f"weights[{k!r}] is not a numeric (nested) list: {weights[k]!r}") from None
    if not np.all(np.isfinite(arrays[k])):
      raise ValueError(f"weights[{k!r}] has non-finite values")
  w_hh = arrays["w_hh"]
  hidden = w_hh.shape[0] if w_hh.ndim == 2 else -1
  expected = {
    "w_ih": (len(VOCAB), hidden),
    "w_hh": (hidden, hidden),
    "b": (hidden,),
    "w_out": (hidden, len(VOCAB)),
    "b_out": (len(VOCAB),),
  }
  for k in WEIGHT_KEYS:
    if hidden < 1 or arrays[k].shape != expected[k]:
      want = expected[k] if hidden >= 1 else "(H, H) with H >= 1"
      raise ValueError(f"weights[{k!r}] has shape {arrays[k].shape}; expected {want}")
  f32 = {k: jnp.asarray(v, jnp.float32) for k, v in arrays.items()}
  return CharRNNParams(
    rnnlab.ElmanParams(f32["w_ih"], f32["w_hh"], f32["b"]),
    rnnlab.layers.DenseParams(f32["w_out"], f32["b_out"]),
  )


def params_to_dict(params: CharRNNParams) -> dict[str, list]:
  """The JSON layout of ``params`` (nested lists of floats)."""
  values = (params.cell.w_ih, params.cell.w_hh, params.cell.b, params.readout.w, params.readout.b)
  return {k: np.asarray(v, np.float64).tolist() for k, v in zip(WEIGHT_KEYS, values, strict=True)}


def forward(params: CharRNNParams, inputs_TxV: jax.Array) -> Forward:
  """The forward pass: ``rnnlab.unroll`` of the elman cell, then the dense readout."""
  cell = rnnlab.elman(params.cell.w_hh.shape[0])
  hidden, _ = rnnlab.unroll(cell, params.cell, inputs_TxV)
  scores = rnnlab.dense(len(VOCAB)).apply(params.readout, hidden)
  return Forward(hidden, scores, jax.nn.softmax(scores, axis=-1))


def loss_fn(params: CharRNNParams, inputs_TxV: jax.Array, targets_T: jax.Array) -> jax.Array:
  """Mean cross-entropy of the next letter over the T steps."""
  scores = forward(params, inputs_TxV).scores
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(scores, targets_T))


def make_optimizer(name: str, learning_rate: float) -> optax.GradientTransformation:
  """``optax.sgd`` or ``optax.adam``."""
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer={name!r} is not supported; expected one of {OPTIMIZERS}")
  return optax.sgd(learning_rate) if name == "sgd" else optax.adam(learning_rate)


@functools.partial(jax.jit, static_argnames=("epochs", "optimizer", "until_learned"))
def train(
  params: CharRNNParams,
  inputs_TxV: jax.Array,
  targets_T: jax.Array,
  learning_rate: float,
  *,
  epochs: int,
  optimizer: str,
  until_learned: bool = False,
) -> tuple[CharRNNParams, jax.Array, jax.Array]:
  """Full BPTT, one update per epoch, all epochs in one ``lax.scan``.

  With ``until_learned`` the params stop changing at the first epoch whose
  forward pass predicts every target (the scan keeps its fixed length; the
  later epochs record the frozen params' loss).

  Returns:
    The final params, the loss at the start of each epoch ``(epochs,)`` and the
    predicted letter ids at the start of each epoch ``(epochs, T)``.
  """
  opt = make_optimizer(optimizer, learning_rate)

  def epoch(state, _):
    params, opt_state = state
    loss, grads = jax.value_and_grad(loss_fn)(params, inputs_TxV, targets_T)
    predicted_T = jnp.argmax(forward(params, inputs_TxV).scores, axis=-1)
    updates, new_opt_state = opt.update(grads, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    if until_learned:
      learned = jnp.all(predicted_T == targets_T)
      new_params, new_opt_state = jax.tree.map(
        lambda old, new: jnp.where(learned, old, new),
        (params, opt_state),
        (new_params, new_opt_state),
      )
    return (new_params, new_opt_state), (loss, predicted_T)

  (params, _), (losses, predicted) = jax.lax.scan(
    epoch, (params, opt.init(params)), None, length=epochs
  )
  return params, losses, predicted


def decode(ids: Any) -> str:
  """The letters of a sequence of ids."""
  return "".join(VOCAB[int(i)] for i in np.asarray(ids).reshape(-1))


def _vector(values: Any) -> str:
  return "[" + " ".join(f"{float(v):+.4f}" for v in np.asarray(values)) + "]"


def format_forward(text: str, targets: str, fwd: Forward) -> str:
  """The forward pass as text, one block per letter (what a lecture writes on the board)."""
  lines = [
    f"vocabulary {' '.join(f'{c}={i}' for i, c in enumerate(VOCAB))}; "
    f"input {text!r}, targets {targets!r}; h_0 = 0",
  ]
  for t, (c, want) in enumerate(zip(text, targets, strict=True)):
    probs = np.asarray(fwd.probs[t])
    best = VOCAB[int(np.argmax(probs))]
    lines += [
      f"t={t + 1} input '{c}'  x_{t + 1} = {_vector(one_hot(c)[0])}",
      f"    {f'h_{t + 1} = tanh(x W_ih + h_{t} W_hh + b)':<36} = {_vector(fwd.hidden[t])}",
      f"    {f'y_{t + 1} = h_{t + 1} W_out + b_out':<36} = {_vector(fwd.scores[t])}  (h e l o)",
      f"    {f'p_{t + 1} = softmax(y_{t + 1})':<36} = {_vector(probs)}"
      f"  -> predicts '{best}' (target '{want}', p = {probs[VOCAB.index(want)]:.4f})",
    ]
  return "\n".join(lines)


def run(
  *,
  workdir: str,
  epochs: int = 100,
  optimizer: str = "adam",
  learning_rate: float = 0.1,
  hidden: int = 3,
  seed: int = 0,
  weights: dict | None = None,
  until_learned: bool = False,
  log_every: int = 1,
  echo: Any = print,
) -> dict:
  """The whole example: forward pass, training, forward pass again; writes the outputs.

  Args:
    workdir: folder for ``hello.json``, ``hello.png`` and ``hello_trained_weights.json``.
    epochs: full-BPTT updates (0: forward pass only).
    optimizer: ``"sgd"`` or ``"adam"``.
    learning_rate: the optimizer's step size.
    hidden: H (ignored when ``weights`` are given: their shapes decide).
    seed: initial weights' seed when ``weights`` is None.
    weights: initial weights in the JSON layout, or None.
    until_learned: stop updating at the first epoch that predicts "ello" (see :func:`train`).
    log_every: print the loss every this many epochs.
    echo: where the text goes (``print``).

  Returns:
    The results written to ``hello.json``.
  """
  for label, value, low in (
    ("epochs", epochs, 0),
    ("hidden", hidden, 1),
    ("log_every", log_every, 1),
  ):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
      raise ValueError(f"{label} must be an int >= {low}; got {value!r}")
  if not learning_rate > 0:
    raise ValueError(f"learning_rate must be > 0; got {learning_rate!r}")
  make_optimizer(optimizer, learning_rate)
  given = None if weights is None else params_from_dict(weights)
  path = workdir_lib.prepare(workdir)
  params = init_params(jax.random.key(seed), hidden) if given is None else given

  inputs_TxV, targets_T = one_hot(INPUT_TEXT), encode(TARGET_TEXT)
  before = forward(params, inputs_TxV)
  echo(f"== forward pass with the initial weights (H = {params.cell.w_hh.shape[0]})")
  echo(format_forward(INPUT_TEXT, TARGET_TEXT, before))
  results: dict[str, Any] = {
    "initial_weights": params_to_dict(params),
    "forward_before": {k: np.asarray(v).tolist() for k, v in before._asdict().items()},
    "loss_before": float(loss_fn(params, inputs_TxV, targets_T)),
  }
  losses = np.zeros((0,), np.float32)
  first_correct = None
  if epochs:
    echo(f"== training: full BPTT, {optimizer} lr={learning_rate}, {epochs} epochs")
    params, losses, predicted = train(
      params,
      inputs_TxV,
      targets_T,
      learning_rate,
      epochs=epochs,
      optimizer=optimizer,
      until_learned=until_learned,
    )
    losses, predicted = np.asarray(losses), np.asarray(predicted)
    correct = np.all(predicted == np.asarray(targets_T), axis=-1)
    first_correct = int(np.argmax(correct)) + 1 if correct.any() else None
    last = first_correct if until_learned and first_correct else epochs
    losses, predicted = losses[:last], predicted[:last]  # until_learned: the epochs that ran
    for e in range(last):
      if (e + 1) % log_every == 0 or e == 0 or e + 1 == last or e + 1 == first_correct:
        mark = "  <- first epoch predicting 'ello'" if e + 1 == first_correct else ""
        mark += " (stopped)" if until_learned and e + 1 == first_correct else ""
        echo(f"epoch {e + 1:4d}  loss {losses[e]:.4f}  predicts {decode(predicted[e])!r}{mark}")
  after = forward(params, inputs_TxV)
  prediction = decode(jnp.argmax(after.scores, axis=-1))
  echo("== forward pass with the trained weights")
  echo(format_forward(INPUT_TEXT, TARGET_TEXT, after))
  learned = prediction == TARGET_TEXT
  echo(
    f"after 'hell' the network predicts {prediction[-1]!r}: "
    + ("it learned 'hello'." if learned else "not yet 'o' (try more --epochs).")
  )
  results.update(
    losses=losses.tolist(),
    loss_after=float(loss_fn(params, inputs_TxV, targets_T)),
    forward_after={k: np.asarray(v).tolist() for k, v in after._asdict().items()},
    prediction=prediction,
    learned=learned,
    first_correct_epoch=first_correct,
    config=dict(
      epochs=epochs,
      optimizer=optimizer,
      learning_rate=learning_rate,
      seed=seed,
      until_learned=until_learned,
    ),
  )
  _plot(losses, before, after, os.path.join(path, "hello.png"))
  workdir_lib.write_json(os.path.join(path, "hello_trained_weights.json"), params_to_dict(params))
  workdir_lib.write_json(os.path.join(path, "hello.json"), results)
  echo(f"wrote hello.json, hello.png, hello_trained_weights.json to {path}")
  return results


def _plot(losses: np.ndarray, before: Forward, after: Forward, filename: str) -> None:
  plt = workdir_lib.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
  axes[0].plot(np.arange(1, len(losses) + 1), losses)
  axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="loss (full BPTT)")
  for ax, fwd, when in ((axes[1], before, "before"), (axes[2], after, "after")):
    ax.imshow(np.asarray(fwd.probs).T, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(len(INPUT_TEXT)), [f"'{c}'" for c in INPUT_TEXT])
    ax.set_yticks(range(len(VOCAB)), list(VOCAB))
    ax.set(xlabel="input letter", ylabel="next letter", title=f"p(next) {when} training")
    for t, want in enumerate(TARGET_TEXT):
      ax.add_patch(plt.Rectangle((t - 0.5, VOCAB.index(want) - 0.5), 1, 1, fill=False, ec="red"))
  workdir_lib.save_figure(fig, filename)


def _load_weights(path: str | None, inline: str | None) -> dict | None:
  if path and inline:
    raise ValueError("give --weights or --weights_inline, not both")
  try:
    if path:
      with open(path) as f:
        return json.load(f)
    if inline:
      return json.loads(inline)
  except OSError as e:
    raise ValueError(f"--weights={path}: cannot read it ({e.strerror})") from None
  except json.JSONDecodeError as e:
    raise ValueError(f"the weights are not valid JSON: {e}") from None
  return None


def settings(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """:func:`run`'s arguments from the parsed flags (``--quick`` under the ones not given)."""
  value = workdir_lib.flag_reader(QUICK, flag_values)
  return dict(
    workdir=value("workdir"),
    epochs=value("epochs"),
    optimizer=value("optimizer"),
    learning_rate=value("learning_rate"),
    hidden=value("hidden"),
    seed=value("seed"),
    weights=_load_weights(value("weights"), value("weights_inline")),
    until_learned=value("until_learned"),
    log_every=value("log_every"),
  )


@workdir_lib.usage_errors
def main(argv):
  del argv
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  # Worked numbers must not depend on the backend's default (e.g. TF32) matmuls.
  jax.config.update("jax_default_matmul_precision", "highest")
  run(**settings())


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=workdir_lib.parse_flags)
