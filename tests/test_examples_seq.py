"""The gallery's sequence-to-sequence and generation examples: tagging, dates, generate.

Each example's ``run`` is called once per module with small settings (a few
seconds of training); the tests read its results and files. The data
generators are checked against independent references (the grammar's rules,
``datetime.strptime``), and the sampler against a greedy loop written here.
"""

import datetime
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.examples import dates, generate, tagging
from rnnlab.tasks import CHAR_VOCAB

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _quiet(*args):
  del args


def _assert_png(path):
  assert os.path.getsize(path) > 1000, path
  with open(path, "rb") as f:
    assert f.read(8) == PNG_MAGIC, path


# --------------------------------------------------------------------------- tagging


@pytest.fixture(scope="module")
def tagging_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("tagging"))
  results = tagging.run(workdir, steps=150, batch_size=32, hidden=32, eval_size=600, log=_quiet)
  return workdir, results


def _class_ids(words):
  return {tagging.WORD_ID[w] for w in words}


def test_tagging_grammar_tags_follow_the_next_word():
  sample = jax.jit(tagging.sample_sentences, static_argnums=1)
  batch, again, other = (sample(jax.random.key(k), 4000) for k in (3, 3, 4))
  for a, b, c in zip(batch, again, other, strict=True):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))  # same key, same sentences
    assert not np.array_equal(np.asarray(a), np.asarray(c))
  tokens, tags, lengths, ambiguous = (np.asarray(x) for x in batch)
  valid = np.arange(tokens.shape[1]) < lengths[:, None]
  assert np.all((tokens != 0) == valid) and np.all(tags[~valid] == 0)
  assert lengths.min() >= 4 and lengths.max() <= tagging.MAX_LEN
  # Entity tags sit on the right word classes.
  assert set(tokens[tags == tagging.B_LOC]) <= _class_ids(tagging.CITIES)
  assert set(tokens[tags == tagging.I_PER]) <= _class_ids(tagging.SURNAMES)
  # An ambiguous word is a name exactly when a surname or a person verb follows.
  rows, cols = np.nonzero(ambiguous)
  assert set(tokens[rows, cols]) <= _class_ids(tagging.AMBIGUOUS)
  following = tokens[rows, cols + 1]
  name_context = np.isin(following, list(_class_ids(tagging.SURNAMES + tagging.PERSON_VERBS)))
  noun_context = np.isin(following, list(_class_ids(tagging.NOUN_NEXT)))
  assert np.all(name_context | noun_context)
  np.testing.assert_array_equal(tags[rows, cols] == tagging.B_PER, name_context)
  # ... and the two readings are equally likely, so left context alone is a coin flip.
  share = np.mean(name_context)
  assert abs(share - 0.5) < 4 * np.sqrt(0.25 / len(rows)), share
  # Same left context for both readings: the word before is a time word or nothing.
  before = np.where(cols > 0, tokens[rows, np.maximum(cols - 1, 0)], -1)
  assert set(before) <= _class_ids(tagging.TIMES) | {-1}


def test_entity_spans_and_f1():
  o, b_per, i_per, b_loc = tagging.O, tagging.B_PER, tagging.I_PER, tagging.B_LOC
  assert tagging.entity_spans([b_per, i_per, o, b_loc, b_per, o], 6) == {
    ("PER", 0, 2),
    ("LOC", 3, 4),
    ("PER", 4, 5),
  }
  assert tagging.entity_spans([o, i_per, b_loc, i_per], 4) == {("LOC", 2, 3)}
  assert tagging.entity_spans([b_per, i_per, b_loc], 2) == {("PER", 0, 2)}
  gold = tagging.Sentences(
    jnp.ones((2, 4), jnp.int32),
    jnp.array([[b_per, i_per, o, b_loc], [o, b_per, o, o]]),
    jnp.array([4, 3]),
    jnp.zeros((2, 4), bool),
  )
  assert tagging.entity_f1(gold.tags, gold) == 1.0
  # One span cut short (PER 0-1 instead of 0-2): 2 of 3 right on both sides.
  predicted = jnp.array([[b_per, o, o, b_loc], [o, b_per, o, o]])
  assert tagging.entity_f1(predicted, gold) == pytest.approx(2 / 3)


def test_tagging_backward_direction_helps(tagging_run):
  workdir, results = tagging_run
  uni, bi = results["uni"], results["bi"]
  # Left context cannot tell "rose said" from "rose garden": the one-directional
  # model stays near the coin flip on those tokens; the bidirectional one reads on.
  assert uni["ambiguous_accuracy"] < 0.7, uni
  assert bi["ambiguous_accuracy"] > 0.9, bi
  assert bi["ambiguous_accuracy"] - uni["ambiguous_accuracy"] > 0.25
  assert bi["token_accuracy"] > uni["token_accuracy"]
  assert bi["entity_f1"] > uni["entity_f1"]
  assert bi["params"] < uni["params"]  # not a bigger model: H/2 per direction
  assert uni["token_accuracy"] > 0.8  # both learn the unambiguous rest
  _assert_png(os.path.join(workdir, "tagging.png"))
  with open(os.path.join(workdir, "results.json")) as f:
    saved = json.load(f)
  assert saved["bi"]["ambiguous_accuracy"] == bi["ambiguous_accuracy"]
  assert len(saved["examples"]) == 2


# --------------------------------------------------------------------------- dates


@pytest.fixture(scope="module")
def dates_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("dates"))
  results = dates.run(workdir, steps=300, batch_size=64, hidden=32, test_size=500, log=_quiet)
  return workdir, results


def test_dates_generator_matches_strptime():
  rng = np.random.default_rng(0)
  days = dates.all_dates()
  assert days[0] == dates.FIRST_DATE and days[-1] == dates.LAST_DATE
  picked = [days[i] for i in rng.integers(0, len(days), 400)] + [datetime.date(2021, 3, 3)] * 8
  formats = np.concatenate([rng.integers(0, len(dates.FORMATS), 400), np.arange(8)])
  for (source, target), f in zip(dates.render(picked, formats), formats, strict=True):
    parsed = datetime.datetime.strptime(source, dates.FORMATS[f].strptime).date()
    assert target == parsed.isoformat(), (source, target)
    if "%A" in dates.FORMATS[f].strptime:  # strptime does not check the weekday
      assert source.split(",")[0] == parsed.strftime("%A")
  examples = [source for source, _ in dates.render(picked[-8:], formats[-8:])]
  assert examples == [f.name for f in dates.FORMATS]
  # Encoding round-trips, and train and test dates are disjoint.
  train, test = dates.split_dates(seed=1, test_size=300)
  assert len(test.sources) == 300 and len(train.sources) + 300 == len(days)
  for pairs in (train, test):
    for i in (0, len(pairs.sources) - 1):
      source = dates.decode(pairs.sources[i], dates.SOURCE_VOCAB)
      assert len(source) == pairs.lengths[i]
      target = dates.decode(pairs.targets[i], dates.TARGET_VOCAB)
      parsed = datetime.datetime.strptime(source, dates.FORMATS[pairs.formats[i]].strptime)
      assert target == parsed.date().isoformat()
  train_targets = {bytes(t) for t in train.targets}
  assert not any(bytes(t) in train_targets for t in test.targets)


def test_dates_learns_beyond_the_majority_baseline(dates_run):
  workdir, results = dates_run
  assert results["final_train_loss"] < results["initial_loss"] / 2, results
  # Writing each position's most frequent character scores ~0.48; the model
  # must read the source to beat it by this much.
  assert results["char_accuracy"] > results["majority_char_accuracy"] + 0.12, results
  _assert_png(os.path.join(workdir, "dates.png"))
  with open(os.path.join(workdir, "translations.txt")) as f:
    lines = f.read().splitlines()
  assert len(lines) == len(dates.FORMATS) and all("->" in line for line in lines)
  with open(os.path.join(workdir, "results.json")) as f:
    assert json.load(f)["char_accuracy"] == results["char_accuracy"]


# --------------------------------------------------------------------------- generate

GEN = {"hidden": 32, "embed": 16, "window": 32}
GEN_LENGTH = 40


@pytest.fixture(scope="module")
def generate_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp("generate"))
  results = generate.run(
    workdir, steps=120, sample_length=GEN_LENGTH, temperatures=(0.0, 0.7), log=_quiet, **GEN
  )
  return workdir, results


def test_generate_learns_writes_and_temperature_zero_is_greedy(generate_run):
  workdir, results = generate_run
  assert results["final_train_loss"] < results["initial_loss"] - 1.0, results
  assert results["held_out_loss"] < results["unigram_baseline"], results
  _assert_png(os.path.join(workdir, "generate.png"))
  with open(os.path.join(workdir, "samples.txt")) as f:
    text = f.read()
  assert "greedy (temperature 0)" in text and "temperature 0.7" in text
  vocab = set(CHAR_VOCAB)
  for sample in results["samples"].values():
    assert sample.startswith("def ") and len(sample) == len("def ") + GEN_LENGTH
    assert set(sample) <= vocab
  _check_temperature_zero_is_greedy(results)


def _check_temperature_zero_is_greedy(results):
  # Part of the test above, so that pytest-xdist never trains the fixture on two workers.
  vocab = CHAR_VOCAB
  lm = generate.make_model(GEN["hidden"], GEN["embed"], len(vocab))
  params = results["params"]
  prompt = generate.encode("def ", vocab)
  # Reference: feed one token at a time through the teacher-forced apply, carrying the state.
  apply = jax.jit(lm.apply)
  logits, carry = apply(params, prompt[None])
  greedy = []
  for _ in range(GEN_LENGTH):
    token = jnp.argmax(logits[:, -1], axis=-1)
    greedy.append(int(token[0]))
    logits, carry = apply(params, token[:, None], carry)
  # The run's temperature-0 sample, and a sample at temperature 1e-4, are that loop.
  np.testing.assert_array_equal(generate.encode(results["samples"]["0.0"][4:], vocab), greedy)
  (cold,) = generate.sample_texts(
    lm, params, jax.random.key(7), prompt, GEN_LENGTH, [1e-4]
  ).values()
  np.testing.assert_array_equal(cold, greedy)
  # ... while a real sample is not.
  assert results["samples"]["0.7"] != results["samples"]["0.0"]


# --------------------------------------------------------------------------- flags


def test_bad_flags_exit_2_with_one_line(tmp_path):
  blocker = tmp_path / "a_file"
  blocker.write_text("")
  workdir = tmp_path / "out"
  cases = [  # (module, flags, what the error line names); run side by side
    ("tagging", ["--hidden=3", f"--workdir={workdir}"], "--hidden=3"),
    ("dates", ["--steps=0", f"--workdir={workdir}"], "--steps must be a positive int; got 0"),
    ("generate", ["--temperatures=0.5,-1", f"--workdir={workdir}"], "--temperatures=0.5,-1"),
    ("generate", ["--quick", f"--workdir={blocker}/sub"], "--workdir="),
    ("tagging", ["--steps=abc", f"--workdir={workdir}"], "--steps"),
  ]
  procs = [
    subprocess.Popen(
      [sys.executable, "-m", f"experiments.examples.{module}", *args],
      stdout=subprocess.PIPE,
      stderr=subprocess.PIPE,
      text=True,
      cwd=REPO_ROOT,
    )
    for module, args, _ in cases
  ]
  for proc, (module, _, message) in zip(procs, cases, strict=True):
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 2, (module, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], (module, stderr)
  assert not workdir.exists()
