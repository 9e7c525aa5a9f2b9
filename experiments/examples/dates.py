r"""Encoder-decoder "translation": human-readable dates to ISO 8601.

Sources are dates between 1970 and 2049 written in eight human formats
(:data:`FORMATS`), generated with the standard library's :mod:`datetime`;
targets are ``date.isoformat()``::

    Wednesday, March 3, 2021   ->   2021-03-03
    03/03/21                   ->   2021-03-03
    3 mar 2021                 ->   2021-03-03

Both sides are character sequences. The model (:func:`rnnlab.encoder_decoder`)
reads the source with a bidirectional GRU; a learned bridge
``c_0 = tanh(W [h^f_last, h^b_first] + b)`` starts a GRU decoder, which is
trained with teacher forcing (decoder input ``shift_right(target) =
[<s>, y_0, ..., y_8]``, loss ``-sum_t log p(y_t | y_<t, source)``) and decoded
greedily (``y_t = argmax p(. | y_<t, source)``, fed back). Held-out *dates*
(never seen in training in any format) are scored by exact match and per
character, against a baseline that writes each position's most frequent
training character.

    python -m experiments.examples.dates             # ~1 min on a laptop CPU
    python -m experiments.examples.dates --quick     # seconds (smoke test)
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from matplotlib.figure import Figure

import rnnlab
from experiments.examples import workdir as workdir_lib

QUICK = {"steps": 300}  # --quick's settings, for the flags not given on the command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command-line flags. Called only when run as a program: absl flags are
  process-global, so the gallery's modules import side by side (tests, notebooks)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_bool("quick", False, "Smoke-test mode: 300 steps; flags given explicitly win.", **fv)
  flags.DEFINE_string(
    "workdir",
    "runs/examples/dates",
    "Where the plot, translations and results.json are written.",
    **fv,
  )
  flags.DEFINE_integer("steps", 3000, "Adam updates.", **fv)
  flags.DEFINE_integer("batch_size", 64, "Dates per update.", **fv)
  flags.DEFINE_integer("hidden", 64, "GRU units (encoder per direction, and decoder).", **fv)
  flags.DEFINE_integer("embed", 16, "Character embedding size (source and target).", **fv)
  flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.", **fv)
  flags.DEFINE_integer("test_size", 1000, "Held-out dates scored at the end.", **fv)
  flags.DEFINE_integer("seed", 0, "PRNG seed (same seed, same numbers).", **fv)


# --------------------------------------------------------------------------- the data

FIRST_DATE, LAST_DATE = datetime.date(1970, 1, 1), datetime.date(2049, 12, 31)
# English names, independent of the machine's locale.
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August")
MONTHS += ("September", "October", "November", "December")
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class DateFormat(NamedTuple):
  """A human format: ``render(date) -> str``, and the ``strptime`` format that reads it back."""

  name: str
  strptime: str
  render: Callable[[datetime.date], str]


def _month(d: datetime.date) -> str:
  return MONTHS[d.month - 1]


FORMATS = (
  DateFormat("3 March 2021", "%d %B %Y", lambda d: f"{d.day} {_month(d)} {d.year}"),
  DateFormat("Mar 3, 2021", "%b %d, %Y", lambda d: f"{_month(d)[:3]} {d.day}, {d.year}"),
  DateFormat("03/03/21", "%m/%d/%y", lambda d: f"{d.month:02d}/{d.day:02d}/{d.year % 100:02d}"),
  DateFormat(
    "Wednesday, March 3, 2021",
    "%A, %B %d, %Y",
    lambda d: f"{WEEKDAYS[d.weekday()]}, {_month(d)} {d.day}, {d.year}",
  ),
  DateFormat("03.03.2021", "%d.%m.%Y", lambda d: f"{d.day:02d}.{d.month:02d}.{d.year}"),
  DateFormat("3 mar 2021", "%d %b %Y", lambda d: f"{d.day} {_month(d)[:3].lower()} {d.year}"),
  DateFormat("March 3 2021", "%B %d %Y", lambda d: f"{_month(d)} {d.day} {d.year}"),
  DateFormat(
    "03 MAR 21", "%d %b %y", lambda d: f"{d.day:02d} {_month(d)[:3].upper()} {d.year % 100:02d}"
  ),
)


def _source_alphabet() -> str:
  names = "".join(MONTHS) + "".join(WEEKDAYS)
  return "".join(sorted(set(names + names.lower() + names.upper() + "0123456789 ,./")))


PAD = 0  # source padding, and the decoder's start token <s> on the target side
SOURCE_VOCAB = "\x00" + _source_alphabet()
TARGET_VOCAB = "\x00" + "0123456789-"
TARGET_LEN = 10  # YYYY-MM-DD
# The longest weekday and month names meet on Wednesday, 29 September 2021.
SOURCE_LEN = max(len(f.render(datetime.date(2021, 9, 29))) for f in FORMATS)


class Pairs(NamedTuple):
  """Encoded (source, target) pairs.

  Attributes:
    sources: ``(N, SOURCE_LEN)`` int32 ids in :data:`SOURCE_VOCAB`, ``PAD`` past ``lengths``.
    lengths: ``(N,)`` int32 source lengths.
    targets: ``(N, TARGET_LEN)`` int32 ids in :data:`TARGET_VOCAB`.
    formats: ``(N,)`` int32 index into :data:`FORMATS`.
  """

  sources: np.ndarray
  lengths: np.ndarray
  targets: np.ndarray
  formats: np.ndarray


def all_dates() -> list[datetime.date]:
  """Every day from :data:`FIRST_DATE` to :data:`LAST_DATE`."""
  days = (LAST_DATE - FIRST_DATE).days + 1
  return [FIRST_DATE + datetime.timedelta(days=i) for i in range(days)]


def render(dates: list[datetime.date], formats: np.ndarray) -> list[tuple[str, str]]:
  """``[(source, target)]``: each date in its format, and its ``isoformat()``."""
  return [(FORMATS[f].render(d), d.isoformat()) for d, f in zip(dates, formats, strict=True)]


def encode(text: str, vocab: str, length: int) -> np.ndarray:
  ids = [vocab.index(ch) for ch in text]
  return np.array(ids + [PAD] * (length - len(ids)), np.int32)


def decode(ids: Any, vocab: str) -> str:
  return "".join(vocab[int(i)] for i in np.asarray(ids) if int(i) != PAD)


def make_pairs(dates: list[datetime.date], rng: np.random.Generator) -> Pairs:
  """Each date once, in a format drawn uniformly by ``rng``, encoded."""
  formats = rng.integers(0, len(FORMATS), len(dates)).astype(np.int32)
  texts = render(dates, formats)
  return Pairs(
    np.stack([encode(src, SOURCE_VOCAB, SOURCE_LEN) for src, _ in texts]),
    np.array([len(src) for src, _ in texts], np.int32),
    np.stack([encode(tgt, TARGET_VOCAB, TARGET_LEN) for _, tgt in texts]),
    formats,
  )


def split_dates(seed: int, test_size: int) -> tuple[Pairs, Pairs]:
  """Train and test pairs on disjoint dates (a seeded shuffle of all days)."""
  rng = np.random.default_rng(seed)
  dates = all_dates()
  order = rng.permutation(len(dates))
  test = [dates[i] for i in np.sort(order[:test_size])]
  train = [dates[i] for i in np.sort(order[test_size:])]
  return make_pairs(train, rng), make_pairs(test, rng)


# --------------------------------------------------------------------------- model and training


def make_model(hidden: int, embed: int):
  """Bidirectional GRU encoder, GRU decoder, character embeddings on both sides."""
  return rnnlab.encoder_decoder(
    rnnlab.bidirectional(rnnlab.gru(hidden)),
    rnnlab.gru(hidden),
    len(TARGET_VOCAB),
    target_embed_size=embed,
    source_embed_size=embed,
  )


def teacher_forced_loss(model, params, sources, lengths, targets) -> jax.Array:
  """Mean cross-entropy of every target character given the true previous ones."""
  logits = model.apply(
    params, sources, rnnlab.shift_right(targets, start_token=PAD), source_lengths=lengths
  )
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, targets))


def make_train(model, train_pairs: Pairs, *, steps: int, batch_size: int, learning_rate: float):
  """``train(key) -> (params, losses (steps,))``: Adam on random minibatches, one jitted scan."""
  optimizer = optax.adam(learning_rate)
  data = jax.tree.map(jnp.asarray, train_pairs)
  num_pairs = train_pairs.sources.shape[0]

  @jax.jit
  def loop(params, k_data):
    def update(state, step):
      params, opt_state = state
      index = jax.random.randint(jax.random.fold_in(k_data, step), (batch_size,), 0, num_pairs)
      batch = (data.sources[index], data.lengths[index], data.targets[index])
      loss, grads = jax.value_and_grad(lambda p: teacher_forced_loss(model, p, *batch))(params)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(update, (params, optimizer.init(params)), jnp.arange(steps))
    return params, losses

  def train(key):
    # The init runs op by op: compiling its orthogonal QR into the loop costs more than the loop.
    k_init, k_data = jax.random.split(key)
    return loop(model.init(k_init, len(SOURCE_VOCAB)), k_data)

  return train


def translate(model, params, pairs: Pairs) -> np.ndarray:
  """``(N, TARGET_LEN)`` greedy decodes (jitted)."""

  @jax.jit
  def greedy(params, sources, lengths):
    return model.greedy_decode(params, sources, TARGET_LEN, start_token=PAD, source_lengths=lengths)

  return np.asarray(greedy(params, pairs.sources, pairs.lengths))


def majority_baseline(train: Pairs, test: Pairs) -> float:
  """Per-character accuracy on ``test`` of writing each position's most frequent training id."""
  mode = np.array(
    [np.bincount(col, minlength=len(TARGET_VOCAB)).argmax() for col in train.targets.T]
  )
  return float(np.mean(test.targets == mode))


def scores(decoded: np.ndarray, test: Pairs) -> dict[str, Any]:
  right = decoded == test.targets
  exact = np.all(right, axis=1)
  return {
    "exact_match": float(np.mean(exact)),
    "char_accuracy": float(np.mean(right)),
    "exact_match_by_format": {
      f.name: float(np.mean(exact[test.formats == i])) for i, f in enumerate(FORMATS)
    },
  }


def run(
  workdir: str,
  *,
  steps: int,
  batch_size: int = 64,
  hidden: int = 64,
  embed: int = 16,
  learning_rate: float = 3e-3,
  test_size: int = 1000,
  seed: int = 0,
  log=print,
) -> dict[str, Any]:
  """Trains, translates the held-out dates, writes ``dates.png``, ``translations.txt`` and
  ``results.json`` to ``workdir``; returns the results."""
  os.makedirs(workdir, exist_ok=True)
  train_pairs, test_pairs = split_dates(seed, test_size)
  model = make_model(hidden, embed)
  params, losses = make_train(
    model, train_pairs, steps=steps, batch_size=batch_size, learning_rate=learning_rate
  )(jax.random.key(seed))
  losses = np.asarray(losses)
  decoded = translate(model, params, test_pairs)
  results = {
    "steps": steps,
    "train_dates": int(train_pairs.sources.shape[0]),
    "test_dates": int(test_pairs.sources.shape[0]),
    "initial_loss": float(losses[0]),
    "final_train_loss": float(np.mean(losses[-20:])),
    **scores(decoded, test_pairs),
    "majority_char_accuracy": majority_baseline(train_pairs, test_pairs),
  }
  lines = []
  pick = np.random.default_rng(seed + 1)
  for i in range(len(FORMATS)):
    rows = np.nonzero(test_pairs.formats == i)[0]
    if not len(rows):
      continue
    row = int(pick.choice(rows))
    source = decode(test_pairs.sources[row], SOURCE_VOCAB)
    guess, truth = decode(decoded[row], TARGET_VOCAB), decode(test_pairs.targets[row], TARGET_VOCAB)
    mark = "ok" if guess == truth else f"wrong (true {truth})"
    lines.append(f"{source:>26s}  ->  {guess:10s}  {mark}")
  log(
    f"held-out dates: exact match {results['exact_match']:.3f}, per character "
    f"{results['char_accuracy']:.3f} (majority baseline {results['majority_char_accuracy']:.3f})"
  )
  for line in lines:
    log(line)
  plot(losses, results, os.path.join(workdir, "dates.png"))
  with open(os.path.join(workdir, "translations.txt"), "w") as f:
    f.write("\n".join(lines) + "\n")
  workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
  return results


def plot(losses: np.ndarray, results: dict[str, Any], path: str) -> None:
  fig = Figure(figsize=(10, 4), layout="constrained")
  ax_loss, ax_bars = fig.subplots(1, 2)
  ax_loss.plot(losses)
  ax_loss.set(
    xlabel="update", ylabel="cross-entropy per character", yscale="log", title="teacher forcing"
  )
  by_format = results["exact_match_by_format"]
  bars = ax_bars.barh(range(len(by_format)), list(by_format.values()))
  ax_bars.bar_label(bars, fmt="%.2f")
  ax_bars.set_yticks(range(len(by_format)), list(by_format))
  ax_bars.invert_yaxis()
  ax_bars.set(
    xlim=(0, 1.15),
    xlabel="exact match (greedy decoding)",
    title=f"held-out dates: {results['exact_match']:.3f} exact match",
  )
  workdir_lib.save_figure(fig, path)


# --------------------------------------------------------------------------- entry point


def settings(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """:func:`run`'s arguments from the parsed flags (``--quick`` under the ones not given)."""
  value = workdir_lib.flag_reader(QUICK, flag_values)
  names = ("workdir", "steps", "batch_size", "hidden", "embed", "learning_rate", "test_size")
  return {name: value(name) for name in (*names, "seed")}


@workdir_lib.usage_errors
def main(argv):
  # The backend probe's INFO lines (no TPU here, ...) are noise in a course example.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  del argv
  s = settings()
  sizes = ("steps", "batch_size", "hidden", "embed", "test_size")
  workdir_lib.check_positive_ints(**{k: s[k] for k in sizes})
  num_days = (LAST_DATE - FIRST_DATE).days + 1
  if s["test_size"] >= num_days // 2:
    raise ValueError(
      f"--test_size={s['test_size']}; expected fewer than {num_days // 2} held-out dates"
    )
  if not s["learning_rate"] > 0:
    raise ValueError(f"--learning_rate={s['learning_rate']}; expected a positive number")
  workdir_lib.prepare(s["workdir"])
  run(**s)
  print(f"wrote {os.path.join(s['workdir'], 'dates.png')}, translations.txt and results.json")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=workdir_lib.parse_flags)
