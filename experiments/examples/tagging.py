r"""Many-to-many tagging: why a bidirectional GRU beats a one-directional one.

A synthetic named-entity task, generated from a PRNG key by a small grammar
(:func:`sample_sentences`): sentences like ``yesterday anna smith met omar in
lima`` tagged ``O B-PER I-PER O B-PER O B-LOC``. Some person names are also
ordinary words (``rose``, ``will``, ``mark``, ``hope`` ...), and the grammar puts
them where only the NEXT word tells the reading apart::

    then  rose  said    that the letter was lovely     rose: B-PER
    then  rose  garden  was  quiet                     rose: O

Both readings are equally likely after the same left context, so a model that
reads left to right can do no better than a coin flip (50 %) on these tokens,
whatever its size; a bidirectional model also reads the word after, and tags
them almost perfectly. Two many-to-many models are trained with the same
budget (data, steps, optimizer, seed) and the same readout width ``H``:

* unidirectional: ``h_t = GRU(h_{t-1}, e(w_t))`` with ``H`` units,
* bidirectional: ``[h^f_t, h^b_t]``, two GRUs of ``H/2`` units (fewer parameters),

each followed by ``softmax(W y_t + b)`` over the tags O, B-PER, I-PER, B-LOC and
trained on the masked per-token cross-entropy. Printed and plotted side by
side: per-token accuracy, accuracy on the ambiguous tokens, entity-level F1.

    python -m experiments.examples.tagging                 # ~20 s on a laptop CPU
    python -m experiments.examples.tagging --quick         # seconds (smoke test)
"""

from __future__ import annotations

import logging
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from matplotlib.figure import Figure

import rnnlab
from experiments.examples import workdir as workdir_lib

QUICK = {"steps": 200}  # --quick's settings, for the flags not given on the command line


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
  """Defines the command-line flags. Called only when run as a program: absl flags are
  process-global, so the gallery's modules import side by side (tests, notebooks)."""
  fv = {"flag_values": flag_values}
  flags.DEFINE_bool("quick", False, "Smoke-test mode: 200 steps; flags given explicitly win.", **fv)
  flags.DEFINE_string(
    "workdir", "runs/examples/tagging", "Where the plot and results.json are written.", **fv
  )
  flags.DEFINE_integer("steps", 1500, "Adam updates per model.", **fv)
  flags.DEFINE_integer("batch_size", 32, "Sentences per update.", **fv)
  flags.DEFINE_integer(
    "hidden", 32, "Features per token H: GRU(H) vs two GRU(H/2) (even, >= 2).", **fv
  )
  flags.DEFINE_integer("embed", 16, "Word embedding size.", **fv)
  flags.DEFINE_float("learning_rate", 1e-2, "Adam learning rate.", **fv)
  flags.DEFINE_integer("eval_size", 1000, "Held-out sentences scored at the end.", **fv)
  flags.DEFINE_integer("seed", 0, "PRNG seed (same seed, same numbers).", **fv)


# --------------------------------------------------------------------------- the grammar

TAGS = ("O", "B-PER", "I-PER", "B-LOC")
O, B_PER, I_PER, B_LOC = range(4)
MAX_LEN = 10


def _words(text: str) -> tuple[str, ...]:
  return tuple(text.split())


FIRST_NAMES = _words(
  "anna maria james john peter paul sarah laura david daniel emma olivia liam noah lucas sofia "
  "elena ivan omar fatima yuki kenji carlos diego ahmed leila hans greta pierre claire marco "
  "giulia nina tom lisa eric helen victor amir chen"
)
# Names that are also ordinary words: only the next word tells which.
AMBIGUOUS = _words(
  "rose grace hope will mark bill faith joy dawn may june april summer jack sky ruby amber iris "
  "holly heather"
)
SURNAMES = _words(
  "smith jones garcia muller rossi tanaka kim silva novak dubois khan ivanova brown lee martin "
  "lopez weber costa sato ali"
)
CITIES = _words(
  "paris london berlin madrid rome tokyo cairo lima oslo vienna prague dublin lisbon athens "
  "delhi seoul boston denver sydney nairobi"
)
TIMES = _words("yesterday today later then suddenly meanwhile again finally tonight earlier")
PERSON_VERBS = _words(
  "said smiled laughed arrived left called wrote waved shouted whispered nodded agreed replied "
  "sang cried"
)
NOUN_NEXT = _words(
  "garden prices season petals bush report festival colours light market rules trees weather "
  "stones fields"
)
PREDICATES = _words("was seemed looked became stayed")
OBJECTS = _words("letter book song plan joke story news answer trip dinner")
ADJECTIVES = _words("lovely quiet closed busy cold bright expensive green late wonderful")

# Word classes: (words, tag, ambiguous). A class with one word is a literal.
_CLASSES: dict[str, tuple[tuple[str, ...], int, bool]] = {
  "pad": (("<pad>",), O, False),
  "time": (TIMES, O, False),
  "first": (FIRST_NAMES, B_PER, False),
  "amb_per": (AMBIGUOUS, B_PER, True),
  "amb_o": (AMBIGUOUS, O, True),
  "surname": (SURNAMES, I_PER, False),
  "city": (CITIES, B_LOC, False),
  "pverb": (PERSON_VERBS, O, False),
  "noun_next": (NOUN_NEXT, O, False),
  "pred": (PREDICATES, O, False),
  "obj": (OBJECTS, O, False),
  "adj": (ADJECTIVES, O, False),
}
for _literal in ("that", "the", "met", "in", "visited", "with", "from", "was"):
  _CLASSES[_literal] = ((_literal,), O, False)

# Templates: (slot class, optional) per position, and a weight. The two
# ambiguous templates share their left context and weight, so after "then rose"
# both readings are equally likely.
_TEMPLATES: tuple[tuple[float, tuple[tuple[str, bool], ...]], ...] = (
  (
    1.0,
    (("time", True), ("first", False), ("surname", True), ("pverb", False), ("that", False))
    + (("the", False), ("obj", False), ("was", False), ("adj", False)),
  ),
  (
    2.0,
    (("time", True), ("amb_per", False), ("surname", True), ("pverb", False), ("that", False))
    + (("the", False), ("obj", False), ("was", False), ("adj", False)),
  ),
  (2.0, (("time", True), ("amb_o", False), ("noun_next", False), ("pred", False), ("adj", False))),
  (
    1.0,
    (("time", True), ("first", False), ("surname", True), ("met", False), ("first", False))
    + (("surname", True), ("in", False), ("city", False)),
  ),
  (
    1.0,
    (("time", True), ("first", False), ("surname", True), ("visited", False), ("city", False))
    + (("with", False), ("first", False), ("surname", True)),
  ),
  (1.0, (("time", True), ("the", False), ("obj", False), ("from", False), ("city", False))),
)


def _build_vocab() -> tuple[str, ...]:
  words: dict[str, None] = {}
  for class_words, _, _ in _CLASSES.values():
    words.update(dict.fromkeys(class_words))
  return tuple(words)


VOCAB = _build_vocab()  # VOCAB[0] == "<pad>"
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
_CLASS_NAMES = tuple(_CLASSES)
_widest = max(len(words) for words, _, _ in _CLASSES.values())
_CLASS_WORDS = np.array(
  [[WORD_ID[w] for w in words] + [0] * (_widest - len(words)) for words, _, _ in _CLASSES.values()],
  np.int32,
)
_CLASS_SIZES = np.array([len(words) for words, _, _ in _CLASSES.values()], np.int32)
_CLASS_TAGS = np.array([tag for _, tag, _ in _CLASSES.values()], np.int32)
_CLASS_AMBIGUOUS = np.array([amb for _, _, amb in _CLASSES.values()], bool)
_SLOTS = np.zeros((len(_TEMPLATES), MAX_LEN), np.int32)  # class 0 ("pad") past the end
_OPTIONAL = np.zeros((len(_TEMPLATES), MAX_LEN), bool)
_VALID = np.zeros((len(_TEMPLATES), MAX_LEN), bool)
for _t, (_, _slots) in enumerate(_TEMPLATES):
  for _i, (_name, _optional) in enumerate(_slots):
    _SLOTS[_t, _i] = _CLASS_NAMES.index(_name)
    _OPTIONAL[_t, _i] = _optional
    _VALID[_t, _i] = True
_WEIGHTS = np.array([w for w, _ in _TEMPLATES], np.float32) / sum(w for w, _ in _TEMPLATES)


class Sentences(NamedTuple):
  """A batch of tagged sentences.

  Attributes:
    tokens: ``(B, T)`` int32 word ids (:data:`VOCAB`), 0 past ``lengths``.
    tags: ``(B, T)`` int32 tag ids (:data:`TAGS`), 0 past ``lengths``.
    lengths: ``(B,)`` int32.
    ambiguous: ``(B, T)`` bool, the name-or-word tokens whose tag only the next word decides.
  """

  tokens: jax.Array
  tags: jax.Array
  lengths: jax.Array
  ambiguous: jax.Array


def sample_sentences(key: jax.Array, batch_size: int) -> Sentences:
  """``batch_size`` sentences from the grammar; a pure function of ``key`` (jit/vmap/scan safe).

  One uniform draw per sentence picks the template (by weight), one per slot
  drops the optional slots (probability 1/2), one per slot picks the word.
  """
  u_BxU = jax.random.uniform(key, (batch_size, 1 + 2 * MAX_LEN))
  template_B = jnp.minimum(
    jnp.searchsorted(jnp.asarray(np.cumsum(_WEIGHTS)), u_BxU[:, 0]), len(_TEMPLATES) - 1
  )
  drop_u_BxT, word_u_BxT = u_BxU[:, 1 : 1 + MAX_LEN], u_BxU[:, 1 + MAX_LEN :]
  slots_BxT = jnp.asarray(_SLOTS)[template_B]
  dropped_BxT = jnp.asarray(_OPTIONAL)[template_B] & (drop_u_BxT < 0.5)
  keep_BxT = jnp.asarray(_VALID)[template_B] & ~dropped_BxT
  sizes_BxT = jnp.asarray(_CLASS_SIZES)[slots_BxT]
  choice_BxT = jnp.minimum(jnp.floor(word_u_BxT * sizes_BxT).astype(jnp.int32), sizes_BxT - 1)
  words_BxT = jnp.asarray(_CLASS_WORDS)[slots_BxT, choice_BxT]
  # Compact the kept slots to the front of each row; dropped ones scatter out of range.
  position_BxT = jnp.where(keep_BxT, jnp.cumsum(keep_BxT, axis=1) - 1, MAX_LEN)
  rows_BxT = jnp.broadcast_to(jnp.arange(batch_size)[:, None], position_BxT.shape)

  def compact(values_BxT):
    return jnp.zeros_like(values_BxT).at[rows_BxT, position_BxT].set(values_BxT, mode="drop")

  return Sentences(
    compact(words_BxT),
    compact(jnp.asarray(_CLASS_TAGS)[slots_BxT]),
    jnp.sum(keep_BxT, axis=1).astype(jnp.int32),
    compact(jnp.asarray(_CLASS_AMBIGUOUS)[slots_BxT]),
  )


def decode(tokens: Any, length: int) -> list[str]:
  """The words of one sentence."""
  return [VOCAB[int(i)] for i in np.asarray(tokens)[:length]]


# --------------------------------------------------------------------------- models and training


def make_tagger(direction: str, hidden: int, embed: int):
  """A many-to-many GRU tagger whose readout sees ``hidden`` features per token.

  ``"uni"``: ``GRU(hidden)``; ``"bi"``: a forward and a backward ``GRU(hidden // 2)``,
  concatenated. Both embed words in ``embed`` dimensions.
  """
  if direction == "uni":
    encoder = rnnlab.gru(hidden)
  elif direction == "bi":
    encoder = rnnlab.bidirectional(rnnlab.gru(hidden // 2))
  else:
    raise ValueError(f"direction must be 'uni' or 'bi'; got {direction!r}")
  return rnnlab.many_to_many(encoder, len(TAGS), embed_size=embed)


def masked_cross_entropy(logits_BxTxK: jax.Array, batch: Sentences) -> jax.Array:
  """Mean per-token cross-entropy over the valid tokens."""
  mask_BxT = jnp.arange(batch.tokens.shape[1]) < batch.lengths[:, None]
  ce_BxT = optax.softmax_cross_entropy_with_integer_labels(logits_BxTxK, batch.tags)
  return jnp.sum(jnp.where(mask_BxT, ce_BxT, 0.0)) / jnp.sum(mask_BxT)


def make_train(model, *, steps: int, batch_size: int, learning_rate: float):
  """``train(key) -> (params, losses (steps,))``: Adam on fresh batches, one jitted ``lax.scan``.

  The init and data keys come from ``key`` the same way for every model, so two
  models trained from one key see the same sentences in the same order.
  """
  optimizer = optax.adam(learning_rate)

  def loss_fn(params, batch):
    return masked_cross_entropy(model.apply(params, batch.tokens, lengths=batch.lengths), batch)

  @jax.jit
  def loop(params, k_data):
    def update(state, step):
      params, opt_state = state
      batch = sample_sentences(jax.random.fold_in(k_data, step), batch_size)
      loss, grads = jax.value_and_grad(loss_fn)(params, batch)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), loss

    (params, _), losses = jax.lax.scan(update, (params, optimizer.init(params)), jnp.arange(steps))
    return params, losses

  def train(key):
    # The init runs op by op: compiling its orthogonal QR into the loop costs more than the loop.
    k_init, k_data = jax.random.split(key)
    return loop(model.init(k_init, len(VOCAB)), k_data)

  return train


def entity_spans(tags: Any, length: int) -> set[tuple[str, int, int]]:
  """``{(type, start, end)}``: B-X opens a span, I-X continues one of the same type."""
  spans, current = set(), None
  for t, tag in enumerate(list(np.asarray(tags)[:length]) + [O]):
    name = TAGS[int(tag)]
    if current is not None and name != "I-" + current[0]:
      spans.add((current[0], current[1], t))
      current = None
    if name.startswith("B-"):
      current = (name[2:], t)
  return spans


def entity_f1(predicted_BxT: Any, batch: Sentences) -> float:
  """Entity-level F1: a predicted span counts only if its type, start and end are all right."""
  true_positive = num_predicted = num_true = 0
  for pred, gold, length in zip(
    np.asarray(predicted_BxT), np.asarray(batch.tags), np.asarray(batch.lengths), strict=True
  ):
    p, g = entity_spans(pred, int(length)), entity_spans(gold, int(length))
    true_positive, num_predicted, num_true = (
      true_positive + len(p & g),
      num_predicted + len(p),
      num_true + len(g),
    )
  return 2 * true_positive / max(num_predicted + num_true, 1)


def predict(model, params, batch: Sentences) -> jax.Array:
  """``(B, T)`` the most likely tag of every token (jitted per model)."""
  return jnp.argmax(model.apply(params, batch.tokens, lengths=batch.lengths), axis=-1)


def evaluate(predicted_BxT: jax.Array, batch: Sentences) -> dict[str, float]:
  """Per-token accuracy (all tokens and the ambiguous ones) and entity F1 of predicted tags."""
  mask = jnp.arange(batch.tokens.shape[1]) < batch.lengths[:, None]
  right = (predicted_BxT == batch.tags) & mask
  ambiguous = batch.ambiguous & mask
  return {
    "token_accuracy": float(jnp.sum(right) / jnp.sum(mask)),
    "ambiguous_accuracy": float(jnp.sum(right & ambiguous) / jnp.sum(ambiguous)),
    "entity_f1": entity_f1(predicted_BxT, batch),
  }


def count_params(params) -> int:
  return int(sum(np.size(leaf) for leaf in jax.tree.leaves(params)))


def run(
  workdir: str,
  *,
  steps: int,
  batch_size: int = 32,
  hidden: int = 32,
  embed: int = 16,
  learning_rate: float = 1e-2,
  eval_size: int = 1000,
  seed: int = 0,
  log=print,
) -> dict[str, Any]:
  """Trains both taggers, scores them on held-out sentences, writes ``tagging.png`` and
  ``results.json`` to ``workdir`` and returns the results."""
  os.makedirs(workdir, exist_ok=True)
  key = jax.random.key(seed)
  k_train, k_eval = jax.random.split(key)
  test = jax.jit(sample_sentences, static_argnums=1)(k_eval, eval_size)
  results: dict[str, Any] = {"steps": steps, "batch_size": batch_size, "hidden": hidden}
  predicted, losses = {}, {}
  for direction in ("uni", "bi"):
    model = make_tagger(direction, hidden, embed)
    params, loss_curve = make_train(
      model, steps=steps, batch_size=batch_size, learning_rate=learning_rate
    )(k_train)
    losses[direction] = np.asarray(loss_curve)
    predicted[direction] = jax.jit(predict, static_argnums=0)(model, params, test)
    scores = evaluate(predicted[direction], test)
    results[direction] = {"params": count_params(params), **scores}
    results[direction]["final_train_loss"] = float(np.mean(losses[direction][-20:]))

  log(f"{'':22s}{'unidirectional':>16s}{'bidirectional':>16s}")
  for name in ("params", "token_accuracy", "ambiguous_accuracy", "entity_f1", "final_train_loss"):
    uni, bi = results["uni"][name], results["bi"][name]
    fmt = "{:>16d}" if name == "params" else "{:>16.3f}"
    log(f"{name:22s}" + fmt.format(uni) + fmt.format(bi))
  results["examples"] = []
  for i in _example_rows(test):
    length = int(test.lengths[i])
    rows = {
      "words": decode(test.tokens[i], length),
      "gold": [TAGS[int(t)] for t in test.tags[i, :length]],
      **{d: [TAGS[int(t)] for t in predicted[d][i, :length]] for d in ("uni", "bi")},
    }
    results["examples"].append(rows)
    log("")
    log(f"{'word':12s}{'gold':8s}{'uni':8s}{'bi':8s}")
    for word, gold, uni, bi in zip(*rows.values(), strict=True):
      log(f"{word:12s}{gold:8s}{uni:8s}{bi:8s}")
  plot(losses, results, os.path.join(workdir, "tagging.png"))
  workdir_lib.write_json(os.path.join(workdir, "results.json"), results)
  return results


def _example_rows(test: Sentences) -> list[int]:
  """One sentence of each ambiguous reading (name, then ordinary word)."""
  rows = []
  for reading in (B_PER, O):
    hits = np.nonzero(np.any(np.asarray(test.ambiguous & (test.tags == reading)), axis=1))[0]
    rows += [int(hits[0])] if len(hits) else []
  return rows


def plot(losses: dict[str, np.ndarray], results: dict[str, Any], path: str) -> None:
  fig = Figure(figsize=(10, 4), layout="constrained")
  ax_loss, ax_bars = fig.subplots(1, 2)
  labels = {"uni": "unidirectional GRU", "bi": "bidirectional GRU"}
  for direction, curve in losses.items():
    ax_loss.plot(curve, label=labels[direction])
  ax_loss.set(xlabel="update", ylabel="training cross-entropy", yscale="log", title="training")
  ax_loss.legend()
  metrics = ("token_accuracy", "ambiguous_accuracy", "entity_f1")
  x = np.arange(len(metrics))
  for offset, direction in ((-0.2, "uni"), (0.2, "bi")):
    values = [results[direction][m] for m in metrics]
    bars = ax_bars.bar(x + offset, values, 0.4, label=labels[direction])
    ax_bars.bar_label(bars, fmt="%.2f")
  ax_bars.axhline(0.5, color="gray", linestyle=":", linewidth=1)
  ax_bars.set_xticks(
    x, ["token accuracy", "ambiguous tokens\n(rose said / rose garden)", "entity F1"]
  )
  ax_bars.set(ylim=(0, 1.25), title="held-out sentences")
  ax_bars.legend(loc="upper center", ncols=2)
  workdir_lib.save_figure(fig, path)


# --------------------------------------------------------------------------- entry point


def settings(flag_values: flags.FlagValues = flags.FLAGS) -> dict[str, Any]:
  """:func:`run`'s arguments from the parsed flags (``--quick`` under the ones not given)."""
  value = workdir_lib.flag_reader(QUICK, flag_values)
  names = ("workdir", "steps", "batch_size", "hidden", "embed", "learning_rate", "eval_size")
  return {name: value(name) for name in (*names, "seed")}


@workdir_lib.usage_errors
def main(argv):
  # The backend probe's INFO lines (no TPU here, ...) are noise in a course example.
  logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
  del argv
  s = settings()
  workdir_lib.check_positive_ints(
    **{k: s[k] for k in ("steps", "batch_size", "embed", "eval_size")}
  )
  if s["hidden"] < 2 or s["hidden"] % 2:
    raise ValueError(f"--hidden={s['hidden']}; expected an even integer >= 2")
  if not s["learning_rate"] > 0:
    raise ValueError(f"--learning_rate={s['learning_rate']}; expected a positive number")
  workdir_lib.prepare(s["workdir"])
  run(**s)
  print(f"wrote {os.path.join(s['workdir'], 'tagging.png')} and results.json")


if __name__ == "__main__":
  define_flags()
  app.run(main, flags_parser=workdir_lib.parse_flags)
