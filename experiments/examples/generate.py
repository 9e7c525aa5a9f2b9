r"""Text generation (one-to-many): a character LSTM that writes Python, sampled with temperature.

The corpus is on every machine: the source of 21 standard-library modules
(``rnnlab.tasks.get("char_lm", T)``, 98 characters; its ``stream`` is the text
as token ids). The model (:func:`rnnlab.one_to_many`) embeds each character,
runs an LSTM and reads out next-character scores::

    x_t = E[c_t],   (h_t, s_t) = LSTM((h_{t-1}, s_{t-1}), x_t),   p(c_{t+1}) = softmax(W h_t + b)

It is trained with truncated backpropagation through time: the stream is cut
into ``B`` parallel rows read window by window (``k`` characters each); the
LSTM state is carried from one window to the next with its gradient stopped,
so each update backpropagates ``k`` steps but the model sees context from
earlier windows. Generation starts from a prompt and feeds each sampled
character back: ``c_{t+1} ~ softmax(logits / temperature)``, where temperature
0 is greedy argmax, below 1 sharpens and above 1 flattens the distribution.

    python -m experiments.examples.generate            # ~1 min on a laptop CPU
    python -m experiments.examples.generate --quick    # seconds (smoke test)
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from matplotlib.figure import Figure

import rnnlab
from experiments.examples import workdir as workdir_lib

QUICK = {"steps": 150, "hidden": 64}  # --quick's settings, for the flags not given


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command-line flags. Called only when run as a program: absl flags are
  process-global, so the gallery's modules import side by side (tests, notebooks)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_bool(
    "quick", False, "Smoke-test mode: 150 steps, 64 units; flags given explicitly win.", **fv
  )
  flags.DEFINE_string(
    "workdir",
    "runs/examples/generate",
    "Where the plot, samples.txt and results.json are written.",
    **fv,
  )
  flags.DEFINE_integer("steps", 2000, "Adam updates.", **fv)
  flags.DEFINE_integer("batch_size", 32, "Parallel rows of the stream.", **fv)
  flags.DEFINE_integer("window", 64, "TBPTT window k: characters per update and row.", **fv)
  flags.DEFINE_integer("hidden", 128, "LSTM units.", **fv)
  flags.DEFINE_integer("embed", 32, "Character embedding size.", **fv)
  flags.DEFINE_float(
    "learning_rate", 3e-3, "Adam learning rate (gradients clipped at norm 1).", **fv
  )
  flags.DEFINE_string("prompt", "def ", "Text the samples start from.", **fv)
  flags.DEFINE_integer("sample_length", 300, "Characters generated per sample.", **fv)
  flags.DEFINE_list(
    "temperatures",
    ["0", "0.5", "0.8", "1.0"],
    "Sampling temperatures (0 = greedy argmax).",
    **fv,
  )
  flags.DEFINE_integer("seed", 0, "PRNG seed (same seed, same numbers and samples).", **fv)


EVAL_ROWS = 8  # parallel rows of the held-out stream
EVAL_WINDOWS = 16  # windows of each row scored at the end


def make_model(hidden: int, embed: int, vocab_size: int) -> rnnlab.models.Generator:
  """``one_to_many(lstm(hidden), vocab_size, embed)``."""
  return rnnlab.one_to_many(rnnlab.lstm(hidden), vocab_size, embed)


def zero_state(params, batch_size: int) -> rnnlab.LSTMCarry:
  """The LSTM's zero carry ``(h, c)`` for ``batch_size`` rows."""
  zeros_BxH = jnp.zeros((batch_size, params.cell.w_hh.shape[0]), params.cell.w_hh.dtype)
  return rnnlab.LSTMCarry(zeros_BxH, zeros_BxH)


def _window_loss(lm, params, streams_BxS, start, window, carry):
  tokens_BxW = jax.lax.dynamic_slice_in_dim(streams_BxS, start, window + 1, axis=1)
  logits, carry = lm.apply(params, tokens_BxW[:, :-1], carry)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, tokens_BxW[:, 1:])
  return jnp.mean(ce), carry


def make_train(lm, stream, *, steps: int, batch_size: int, window: int, learning_rate: float):
  """``train(key) -> (params, losses (steps,))``: TBPTT over ``stream``, one jitted ``lax.scan``.

  Update ``s`` reads window ``w = s mod num_windows`` of every row; the LSTM
  state is carried across windows (gradient stopped) and reset when the rows
  wrap around to their start.
  """
  streams_BxS = stream.parallel(batch_size)
  num_windows = stream.num_windows(batch_size, window)
  if num_windows < 1:
    raise ValueError(f"window={window} is longer than the rows of {streams_BxS.shape[1]} tokens")
  optimizer = optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))

  @jax.jit
  def loop(params):
    zero_carry = zero_state(params, batch_size)

    def update(state, step):
      params, opt_state, carry = state
      w = step % num_windows
      carry = jax.tree.map(lambda c, z: jnp.where(w == 0, z, c), carry, zero_carry)
      (loss, carry), grads = jax.value_and_grad(
        lambda p: _window_loss(lm, p, streams_BxS, w * window, window, carry), has_aux=True
      )(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      carry = jax.lax.stop_gradient(carry)
      return (optax.apply_updates(params, updates), opt_state, carry), loss

    init = (params, optimizer.init(params), zero_carry)
    (params, _, _), losses = jax.lax.scan(update, init, jnp.arange(steps))
    return params, losses

  def train(key):
    # The init runs op by op: compiling its orthogonal QR into the loop costs more than the loop.
    return loop(lm.init(key))

  return train


def held_out_loss(lm, params, stream, window: int) -> float:
  """Mean next-character cross-entropy (nats) over the first windows of the held-out rows."""
  streams_BxS = stream.parallel(EVAL_ROWS)
  num_windows = min(EVAL_WINDOWS, stream.num_windows(EVAL_ROWS, window))

  @jax.jit
  def score(params):
    def one(carry, w):
      loss, carry = _window_loss(lm, params, streams_BxS, w * window, window, carry)
      return carry, loss

    _, losses = jax.lax.scan(one, zero_state(params, EVAL_ROWS), jnp.arange(num_windows))
    return jnp.mean(losses)

  return float(score(params))


def encode(text: str, vocab: str) -> jnp.ndarray:
  """Token ids of ``text``; characters outside ``vocab`` map to id 0."""
  return jnp.array([vocab.index(ch) if ch in vocab[1:] else 0 for ch in text], jnp.int32)


def sample_texts(
  lm, params, key, prompt_ids, num_steps: int, temperatures: list[float]
) -> dict[float, np.ndarray]:
  """``{temperature: (num_steps,) token ids}``, one sample per temperature, each its own key."""
  out = {}
  for i, temperature in enumerate(temperatures):
    generate = jax.jit(
      lambda p, k, t=temperature: lm.generate(p, k, prompt_ids, num_steps, temperature=t)
    )
    out[temperature] = np.asarray(generate(params, jax.random.fold_in(key, i)))
  return out


def run(
  workdir: str,
  *,
  steps: int,
  batch_size: int = 32,
  window: int = 64,
  hidden: int = 128,
  embed: int = 32,
  learning_rate: float = 3e-3,
  prompt: str = "def ",
  sample_length: int = 300,
  temperatures: tuple[float, ...] = (0.0, 0.5, 0.8, 1.0),
  seed: int = 0,
  log=print,
) -> dict[str, Any]:
  """Trains, scores the held-out split, samples; writes ``generate.png``, ``samples.txt`` and
  ``results.json`` to ``workdir`` and returns the results (with the params under ``"params"``,
  not written)."""
  os.makedirs(workdir, exist_ok=True)
  train_task = rnnlab.tasks.get("char_lm", window)
  test_task = rnnlab.tasks.get("char_lm", window, split="test")
  vocab = train_task.stream.vocab
  lm = make_model(hidden, embed, len(vocab))
  k_init, k_sample = jax.random.split(jax.random.key(seed))
  params, losses = make_train(
    lm,
    train_task.stream,
    steps=steps,
    batch_size=batch_size,
    window=window,
    learning_rate=learning_rate,
  )(k_init)
  losses = np.asarray(losses)
  results: dict[str, Any] = {
    "steps": steps,
    "hidden": hidden,
    "initial_loss": float(losses[0]),
    "uniform_loss": math.log(len(vocab)),
    "final_train_loss": float(np.mean(losses[-20:])),
    "held_out_loss": held_out_loss(lm, params, test_task.stream, window),
    "unigram_baseline": test_task.baseline,
  }
  log(
    f"next-character cross-entropy (nats): start {results['initial_loss']:.3f} "
    f"(uniform {results['uniform_loss']:.3f}), train {results['final_train_loss']:.3f}, "
    f"held-out {results['held_out_loss']:.3f} (unigram baseline {test_task.baseline:.3f})"
  )
  prompt_ids = encode(prompt, vocab)
  samples = sample_texts(lm, params, k_sample, prompt_ids, sample_length, list(temperatures))
  results["samples"] = {}
  lines = []
  for temperature, ids in samples.items():
    text = prompt + train_task.stream.decode(ids)
    results["samples"][str(temperature)] = text
    title = "greedy (temperature 0)" if temperature == 0 else f"temperature {temperature}"
    lines += [f"--- {title} ---", text, ""]
  for line in lines:
    log(line)
  plot(losses, results, os.path.join(workdir, "generate.png"))
  with open(os.path.join(workdir, "samples.txt"), "w") as f:
    f.write("\n".join(lines))
  workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
  results["params"] = params
  return results


def plot(losses: np.ndarray, results: dict[str, Any], path: str) -> None:
  fig = Figure(figsize=(7, 4), layout="constrained")
  ax = fig.subplots()
  ax.plot(losses, alpha=0.4, label="training window loss")
  smooth = max(len(losses) // 50, 1)
  if len(losses) >= 2 * smooth > 1:
    running = np.convolve(losses, np.ones(smooth) / smooth, mode="valid")
    ax.plot(np.arange(smooth - 1, len(losses)), running, label=f"running mean ({smooth})")
  ax.axhline(results["uniform_loss"], color="gray", linestyle=":", label="uniform (ln 98)")
  ax.axhline(results["unigram_baseline"], color="black", linestyle="--", label="unigram baseline")
  ax.plot(
    [len(losses) - 1], [results["held_out_loss"]], "o", color="red", label="held-out (test split)"
  )
  ax.set(xlabel="update (TBPTT window)", ylabel="cross-entropy (nats / character)")
  ax.set_title("character LSTM on Python standard-library source")
  ax.legend()
  workdir_lib.save_figure(fig, path)


# --------------------------------------------------------------------------- entry point


def settings(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """:func:`run`'s arguments from the parsed flags (``--quick`` under the ones not given).

  Raises:
    ValueError: for ``--temperatures`` that are not numbers >= 0.
  """
  value = workdir_lib.flag_reader(QUICK, flag_values)
  names = ("workdir", "steps", "batch_size", "window", "hidden", "embed", "learning_rate")
  out = {name: value(name) for name in (*names, "prompt", "sample_length", "seed")}
  try:
    temperatures = tuple(float(t) for t in value("temperatures"))
  except ValueError:
    temperatures = (-1.0,)
  if not temperatures or any(not (t >= 0 and math.isfinite(t)) for t in temperatures):
    raise ValueError(f"--temperatures={','.join(value('temperatures'))}; expected numbers >= 0")
  return {**out, "temperatures": temperatures}


@workdir_lib.usage_errors
def main(argv):
  # The backend probe's INFO lines (no TPU here, ...) are noise in a course example.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  del argv
  s = settings()
  sizes = ("steps", "batch_size", "window", "hidden", "embed", "sample_length")
  workdir_lib.check_positive_ints(**{k: s[k] for k in sizes})
  if not s["learning_rate"] > 0:
    raise ValueError(f"--learning_rate={s['learning_rate']}; expected a positive number")
  if not s["prompt"]:
    raise ValueError("--prompt is empty; expected at least one character")
  stream = rnnlab.tasks.get("char_lm", 1).stream
  row_length = stream.tokens.shape[0] // s["batch_size"]
  if s["window"] >= row_length:
    raise ValueError(
      f"--window={s['window']}; expected fewer than {row_length} characters (the stream's "
      f"rows at --batch_size={s['batch_size']})"
    )
  workdir_lib.prepare(s["workdir"])
  run(**s)
  print(f"wrote {os.path.join(s['workdir'], 'generate.png')}, samples.txt and results.json")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=workdir_lib.parse_flags)
