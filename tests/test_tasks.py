"""Tests for rnnlab.tasks: each trivial predictor scores its stated baseline on 10k samples,
each task's layout matches its paper's code (markers, windows, targets, padding), and
sampling is deterministic, jit-, vmap- and scan-safe. Trivial predictors and reference
layouts are written here by hand, in NumPy, from the papers' code."""

import functools
import math
import os
import sys
import sysconfig

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnlab import tasks

N = 10_000  # samples for the baseline checks
KEY = jax.random.key(0)
NEEDS_SKLEARN = {"digits", "digits_permuted"}
# One length and option set per task, shared by every test so each sampler compiles once.
CANON = {
  "adding_hs97": (40, {}),
  "adding": (41, {}),
  "adding_pascanu": (40, {}),
  "multiplication": (40, {}),
  "copy": (15, {}),
  "temporal_order_2bit": (40, {}),
  "temporal_order_3bit": (40, {}),
  "random_permutation": (20, {}),
  "noiseless_memorization": (12, {}),
  "digits": (64, {}),
  "digits_permuted": (64, {}),
  "sine": (30, {"dx": 0.3, "horizon": 2}),
  "char_lm": (20, {}),
}


def _have_sklearn() -> bool:
  try:
    import sklearn  # noqa: F401
  except ImportError:
    return False
  return True


def task_names():
  """All tasks, the digits ones skipped cleanly without scikit-learn."""
  skip = pytest.mark.skipif(not _have_sklearn(), reason="scikit-learn (rnnlab[digits]) missing")
  return [pytest.param(n, marks=skip) if n in NEEDS_SKLEARN else n for n in tasks.TASKS]


@functools.cache
def get_task(name, length=None, **kwargs):
  if length is None:
    length, kwargs = CANON[name]
  return tasks.get(name, length, **kwargs)


@functools.cache
def canon(name, split="train"):
  """``(task, batch)``: the canonical task and N samples of it as NumPy arrays (key 0)."""
  length, kwargs = CANON[name]
  if split != "train":
    kwargs = {**kwargs, "split": split}
  task = get_task(name, length, **kwargs)
  sample = jitted_sampler(name) if split == "train" else jax.jit(task.sample, static_argnums=1)
  batch = sample(KEY, N)
  return task, tasks.Batch(*(np.asarray(x) for x in batch))


def as_jnp(batch):
  return tasks.Batch(*(jnp.asarray(x) for x in batch))


@functools.cache
def evaluator(name):
  """``(outputs, batch) -> (loss, metric)`` jitted once per task (eager would compile
  every op on its own)."""
  task = get_task(name)
  return jax.jit(lambda outputs, batch: (task.loss(outputs, batch), task.metric(outputs, batch)))


def evaluate(name, outputs, batch):
  loss, metric = evaluator(name)(jnp.asarray(outputs, jnp.float32), as_jnp(batch))
  return float(loss), float(metric)


def one_hot_logits(ids, num_classes, scale=50.0):
  return scale * np.eye(num_classes, dtype=np.float32)[ids]


def within_sampling_error(per_sequence, expected, num_se=4.0):
  """Asserts that the mean of i.i.d. per-sequence values is ``expected`` within ``num_se`` SE."""
  per_sequence = np.asarray(per_sequence, np.float64)
  mean = per_sequence.mean()
  se = per_sequence.std(ddof=1) / math.sqrt(len(per_sequence))
  assert abs(mean - expected) <= num_se * se + 1e-6, (mean, expected, se)
  return mean


def per_sequence_masked_mean(values_BxT, mask_BxT):
  return (values_BxT * mask_BxT).sum(1) / mask_BxT.sum(1)


def log_probs_outputs(log_probs_BxTxC):
  """Logits whose softmax is ``exp(log_probs)`` (-inf entries replaced by -1e9)."""
  return jnp.asarray(np.maximum(log_probs_BxTxC, -1e9), jnp.float32)


# --------------------------------------------------------------------------- baselines


REGRESSION_TRIVIAL = {  # the constant a trivial predictor says (the mean target)
  "adding_hs97": 0.5,
  "adding": 1.0,
  "adding_pascanu": 0.5,
  "multiplication": 0.25,
  "sine": 0.0,
}


@pytest.mark.parametrize("name", sorted(REGRESSION_TRIVIAL))
def test_regression_baseline(name):
  task, batch = canon(name)
  outputs = np.full(batch.targets.shape, REGRESSION_TRIVIAL[name], np.float32)
  squared_BxT = ((outputs - batch.targets) ** 2).mean(-1)
  per_sequence = per_sequence_masked_mean(squared_BxT, batch.mask)
  within_sampling_error(per_sequence, task.baseline)
  loss, metric = evaluate(name, outputs, batch)
  np.testing.assert_allclose(loss, per_sequence.mean(), rtol=1e-4)
  assert not bool(task.solved(loss, metric))


def test_stated_baseline_values():
  """The stated numbers are the formulas of SCIENCE.md and the papers."""
  assert tasks.get("adding", 40).baseline == pytest.approx(1 / 6)
  assert tasks.get("adding_pascanu", 40).baseline == pytest.approx(1 / 24)
  assert tasks.get("multiplication", 40).baseline == pytest.approx(0.0486, abs=1e-4)
  assert tasks.get("adding_hs97", 40).baseline == pytest.approx((0.9 + 1) / 3 / 16)
  assert tasks.get("adding_hs97", 40, zero_first_x1=False).baseline == pytest.approx(1 / 24)
  assert tasks.get("copy", 100).baseline == pytest.approx(10 * math.log(8) / 120)
  assert tasks.get("temporal_order_2bit", 40).baseline == pytest.approx(math.log(4))
  assert tasks.get("temporal_order_3bit", 40).baseline == pytest.approx(math.log(8))
  assert tasks.get("random_permutation", 40).baseline == pytest.approx(math.log(2))
  assert tasks.get("noiseless_memorization", 40).baseline == pytest.approx(10 * math.log(5) / 60)
  assert tasks.get("sine", 40, noise=0.2).baseline == pytest.approx(0.5 + 0.04, abs=1e-3)


def test_hs97_baseline_is_not_one_24th():
  """The X1 := 0 rule is in the data: the trivial MSE is 19/480, measurably below 1/24."""
  _, batch = canon("adding_hs97")
  per_sequence = per_sequence_masked_mean((0.5 - batch.targets[..., 0]) ** 2, batch.mask)
  se = per_sequence.std() / math.sqrt(N)
  assert abs(per_sequence.mean() - 1 / 24) > 3 * se


def test_sine_naive_forecast():
  """Repeating the last input scores mean_k(1 - cos(dx (k+1))) + 2 noise^2; `solved` is
  the line between it and the noise floor."""
  task, batch = canon("sine")
  noise, dx, horizon = 0.1, 0.3, 2
  outputs = np.repeat(batch.inputs, horizon, axis=-1)
  per_sequence = ((outputs - batch.targets) ** 2).mean(axis=(1, 2))
  expected = np.mean([1 - math.cos(dx * (k + 1)) for k in range(horizon)]) + 2 * noise**2
  within_sampling_error(per_sequence, expected)
  assert bool(task.solved(noise**2 * 1.5, 0.0)) and not bool(task.solved(expected * 1.1, 0.0))


def uniform_over(classes, num_classes, shape):
  log_probs = np.full((*shape, num_classes), -np.inf)
  log_probs[..., classes] = -math.log(len(classes))
  return log_probs


def _blank_then(blank, symbols, num_classes, num_recall):
  """Memoryless recall: the blank for sure, then uniform over the symbols."""

  def build(num_steps, batch_size):
    before = uniform_over([blank], num_classes, (batch_size, num_steps - num_recall))
    after = uniform_over(symbols, num_classes, (batch_size, num_recall))
    return np.concatenate([before, after], 1)

  return build


SYMBOL_TRIVIAL = {
  "copy": _blank_then(0, list(range(1, 9)), 9, 10),
  "noiseless_memorization": _blank_then(5, list(range(5)), 6, 10),
  "random_permutation": lambda T, B: uniform_over([0, 1], 100, (B, T)),
  "temporal_order_2bit": lambda T, B: uniform_over(list(range(4)), 4, (B, T)),
  "temporal_order_3bit": lambda T, B: uniform_over(list(range(8)), 8, (B, T)),
}


@pytest.mark.parametrize("name", sorted(SYMBOL_TRIVIAL))
def test_symbol_baseline_exact(name):
  """These trivial predictors give every sequence exactly the baseline, and a loss of order
  1e9 if any target sat where the paper's layout says it cannot."""
  task, batch = canon(name)
  outputs = log_probs_outputs(SYMBOL_TRIVIAL[name](batch.mask.shape[1], N))
  loss, metric = evaluate(name, outputs, batch)
  np.testing.assert_allclose(loss, task.baseline, rtol=1e-5)
  assert not bool(task.solved(loss, metric))


def test_digits_baseline():
  datasets = pytest.importorskip("sklearn.datasets")
  labels = datasets.load_digits().target
  order = np.random.default_rng(0).permutation(len(labels))
  train_labels = labels[order[tasks.DIGITS_TEST_SIZE :]]
  prior = np.bincount(train_labels, minlength=10) / len(train_labels)
  for name in ("digits", "digits_permuted"):
    task, batch = canon(name)
    within_sampling_error(-np.log(prior[batch.targets[:, -1]]), task.baseline)
    assert task.baseline == pytest.approx(math.log(10), abs=0.01)
    frequencies = np.bincount(batch.targets[:, -1], minlength=10) / N
    assert np.abs(frequencies - prior).max() < 4 * math.sqrt(0.1 * 0.9 / N)


def test_char_lm_baseline():
  train, _ = canon("char_lm")
  tokens = np.asarray(train.stream.tokens)
  counts = np.bincount(tokens, minlength=len(tasks.CHAR_VOCAB)) + 1.0
  log_unigram = np.log(counts / counts.sum())
  for split in ("train", "test"):
    task, batch = canon("char_lm", split)
    per_sequence = -log_unigram[batch.targets].mean(1)
    within_sampling_error(per_sequence, task.baseline)
  # Below the uniform ln 98 and well above zero: a real text.
  assert 2.0 < train.baseline < math.log(len(tasks.CHAR_VOCAB)) - 0.5


# --------------------------------------------------------------------------- invariants


def positions(mask_BxT):
  """Per sequence, the sorted steps where ``mask`` is set (as a list of arrays)."""
  return [np.flatnonzero(row) for row in mask_BxT]


def test_adding_arjovsky_layout():
  task, batch = canon("adding")
  T = task.length
  values, markers = batch.inputs[..., 0], batch.inputs[..., 1]  # adding_problem.py order
  assert set(np.unique(markers)) == {0.0, 1.0}
  assert ((values >= 0) & (values < 1)).all()
  marked = positions(markers)
  assert all(len(p) == 2 for p in marked)
  first, second = np.array([p[0] for p in marked]), np.array([p[1] for p in marked])
  assert first.min() == 0 and first.max() == T // 2 - 1
  assert second.min() == T // 2 and second.max() == 2 * (T // 2) - 1  # the code's halves
  np.testing.assert_allclose(batch.targets[:, -1, 0], (values * markers).sum(1), rtol=1e-6)
  assert (batch.targets[:, :-1] == 0).all()
  assert (batch.mask[:, -1] == 1).all() and batch.mask.sum() == N
  assert (batch.lengths == T).all()


def test_adding_hs97_layout():
  task, batch = canon("adding_hs97")
  T = task.length
  values, markers = batch.inputs[..., 0], batch.inputs[..., 1]
  lengths = batch.lengths
  assert set(np.unique(lengths)) == set(range(T, T + T // 10 + 1))  # [T, T + T/10]
  steps = np.arange(batch.inputs.shape[1])[None, :]
  assert (batch.inputs[steps >= lengths[:, None]] == 0).all()
  assert ((values >= -1) & (values < 1)).all()
  marked = positions(markers == 1)
  assert all(len(p) == 2 for p in marked)
  # X1 among the first 10 pairs, X2 among the first T/2 - 1 unmarked: all marks before T/2.
  assert all(p[0] < 10 for p in marked)
  assert max(p[1] for p in marked) == T // 2 - 1
  # -1 at the first (unless marked) and the final pair, nowhere else.
  rows = np.arange(N)
  minus = markers == -1
  assert minus[rows, lengths - 1].all()
  assert (minus[:, 0] != (markers[:, 0] == 1)).all()
  assert minus.sum() == (markers[:, 0] != 1).sum() + N
  target = 0.5 + (values * (markers == 1)).sum(1) / 4
  np.testing.assert_allclose(batch.targets[rows, lengths - 1, 0], target, rtol=1e-6)
  np.testing.assert_array_equal(batch.mask, steps == (lengths - 1)[:, None])
  # The paper's rule: X1 at the first pair (probability 1/10) has its value set to 0.
  within_sampling_error((markers[:, 0] == 1) & (values[:, 0] == 0), 0.1)


@pytest.mark.parametrize("name", ["adding_pascanu", "multiplication"])
def test_pascanu_pairs_layout(name):
  task, batch = canon(name)
  T = task.length
  markers, values = batch.inputs[..., 0], batch.inputs[..., 1]  # addition.py: marker first
  lengths = batch.lengths
  assert set(np.unique(lengths)) == set(range(T, T + int(T * 0.1)))
  steps = np.arange(batch.inputs.shape[1])[None, :]
  assert (batch.inputs[steps >= lengths[:, None]] == 0).all()
  marked = positions(markers)
  assert all(len(p) == 2 for p in marked)
  for (p0, p1), l in zip(marked, lengths, strict=True):
    assert 0 <= p0 < int(l * 0.1) <= p1 < int(l * 0.1) + int(l * 0.4)
  rows = np.arange(N)
  x1 = values[rows, [p[0] for p in marked]]
  x2 = values[rows, [p[1] for p in marked]]
  expected = (x1 + x2) / 2 if name == "adding_pascanu" else x1 * x2
  np.testing.assert_allclose(batch.targets[rows, lengths - 1, 0], expected, rtol=1e-6)
  np.testing.assert_array_equal(batch.mask, steps == (lengths - 1)[:, None])


def test_copy_layout():
  task, batch = canon("copy")
  T = task.length
  assert batch.inputs.shape == (N, T + 20, 10)
  assert (batch.inputs.sum(-1) == 1).all()  # one-hot
  ids = batch.inputs.argmax(-1)
  symbols = ids[:, :10]
  assert symbols.min() == 1 and symbols.max() == 8
  assert (ids[:, 10 : 10 + T - 1] == 0).all()
  assert (ids[:, 10 + T - 1] == 9).all()
  assert (ids[:, T + 10 :] == 0).all()
  assert (batch.targets[:, : T + 10] == 0).all()
  np.testing.assert_array_equal(batch.targets[:, T + 10 :], symbols)
  assert (batch.mask == 1).all()
  frequencies = np.bincount(symbols.ravel(), minlength=9)[1:] / symbols.size
  assert np.abs(frequencies - 1 / 8).max() < 4 * math.sqrt(1 / 8 * 7 / 8 / symbols.size)


def test_noiseless_memorization_layout():
  task, batch = canon("noiseless_memorization")
  T = task.length
  assert batch.inputs.shape == (N, T + 20, 7)
  assert (batch.inputs.sum(-1) == 1).all()
  ids = batch.inputs.argmax(-1)
  pattern = ids[:, :10]
  assert set(np.unique(pattern)) == set(range(5))
  expected_rest = np.full(T + 10, 5)
  expected_rest[T] = 6  # the trigger at step T + n
  assert (ids[:, 10:] == expected_rest).all()
  assert (batch.targets[:, : T + 10] == 5).all()
  np.testing.assert_array_equal(batch.targets[:, T + 10 :], pattern)
  assert (batch.mask == 1).all()


@pytest.mark.parametrize(
  "name, windows", [("temporal_order_2bit", (0.1, 0.5)), ("temporal_order_3bit", (0.1, 0.3, 0.6))]
)
def test_temporal_order_layout(name, windows):
  task, batch = canon(name)
  T = task.length
  ids = batch.inputs.argmax(-1)
  assert (batch.inputs.sum(-1) == 1).all()
  relevant = positions(ids < 2)
  num_bits = len(windows)
  assert all(len(p) == num_bits for p in relevant)
  for k, lo in enumerate(windows):
    pos = np.array([p[k] for p in relevant])
    assert pos.min() == int(T * lo) and pos.max() == int(T * lo) + int(T * 0.1) - 1
  rows = np.arange(N)
  bits = [ids[rows, [p[k] for p in relevant]] for k in range(num_bits)]
  expected = sum(bits[k] * 2**k for k in range(num_bits))  # the first symbol is bit 0
  np.testing.assert_array_equal(batch.targets[:, -1], expected)
  assert (batch.targets[:, :-1] == 0).all() and (batch.mask[:, -1] == 1).all()
  assert batch.mask.sum() == N
  assert set(np.unique(ids[ids >= 2])) == {2, 3, 4, 5}
  frequencies = np.bincount(expected, minlength=2**num_bits) / N
  p = 2.0**-num_bits
  assert np.abs(frequencies - p).max() < 4 * math.sqrt(p * (1 - p) / N)


def test_random_permutation_layout():
  _, batch = canon("random_permutation")
  ids = batch.inputs.argmax(-1)
  assert set(np.unique(ids[:, 0])) == {0, 1}
  assert ids[:, 1:].min() == 2 and ids[:, 1:].max() == 99
  np.testing.assert_array_equal(batch.targets[:, -1], ids[:, 0])
  within_sampling_error(ids[:, 0], 0.5)


def test_digits_layout():
  datasets = pytest.importorskip("sklearn.datasets")
  images = datasets.load_digits().data / 16.0
  _, plain = canon("digits")
  _, permuted = canon("digits_permuted")
  assert plain.inputs.shape == (N, 64, 1)
  # Each sequence is one of the data set's images, pixel by pixel in row-major order.
  known = {row.astype(np.float32).tobytes() for row in images}
  assert all(row.tobytes() in known for row in plain.inputs[:500, :, 0])
  # Same key, same images: the permuted variant reads the pixels in one fixed other order.
  perm = np.random.default_rng(0).permutation(64)
  np.testing.assert_array_equal(permuted.inputs[..., 0], plain.inputs[:, perm, 0])
  np.testing.assert_array_equal(permuted.targets, plain.targets)
  assert (plain.mask[:, -1] == 1).all() and plain.mask.sum() == N
  _, test = canon("digits", "test")
  train_rows = {row.tobytes() for row in plain.inputs[..., 0]}
  held_out = [np.asarray(row).tobytes() not in train_rows for row in test.inputs[:500, :, 0]]
  assert np.mean(held_out) > 0.95  # (a few images of the data set are duplicates)


def test_sine_layout():
  _, batch = canon("sine")
  s = batch.inputs[..., 0]
  for k in range(2):  # targets[t, k] = s[t + 1 + k], the same float32 numbers
    np.testing.assert_array_equal(batch.targets[:, : 29 - k, k], s[:, 1 + k :])
  # A sine obeys x[t+1] + x[t-1] = 2 cos(dx) x[t]; the residual of s has variance
  # noise^2 (2 + 4 cos^2 dx).
  s = s.astype(np.float64)
  residual = s[:, 2:] + s[:, :-2] - 2 * math.cos(0.3) * s[:, 1:-1]
  within_sampling_error(residual[:, 0] ** 2, 0.01 * (2 + 4 * math.cos(0.3) ** 2))


def test_char_lm_text_and_stream():
  task, batch = canon("char_lm")
  stream = task.stream
  text = stream.decode(stream.tokens)
  path = os.path.join(sysconfig.get_paths()["stdlib"], tasks.CHAR_LM_MODULES[0] + ".py")
  with open(path, encoding="utf-8") as f:
    source = f.read()
  expected = "".join(c if c in tasks.CHAR_VOCAB[1:] else "\x00" for c in source[:5000])
  assert text[:5000] == expected
  ids = batch.inputs.argmax(-1)
  np.testing.assert_array_equal(batch.targets[:, :-1], ids[:, 1:])
  for row_ids, row_targets in zip(ids[:20], batch.targets[:20], strict=True):
    assert stream.decode(np.concatenate([row_ids, row_targets[-1:]])) in text
  # Truncated-BPTT windows: consecutive pieces of B parallel rows, jit-safe in the start.
  streams = stream.parallel(4)
  assert streams.shape == (4, stream.tokens.shape[0] // 4)
  window = jax.jit(stream.window, static_argnums=2)
  first, second = window(streams, 0, 16), window(streams, jnp.int32(16), 16)
  tokens = np.asarray(streams)
  np.testing.assert_array_equal(first.inputs.argmax(-1), tokens[:, :16])
  np.testing.assert_array_equal(first.targets, tokens[:, 1:17])
  np.testing.assert_array_equal(second.inputs.argmax(-1), tokens[:, 16:32])
  assert (np.asarray(second.mask) == 1).all() and (np.asarray(second.lengths) == 16).all()
  assert stream.num_windows(4, 16) == (streams.shape[1] - 1) // 16
  with pytest.raises(ValueError, match="start"):
    stream.window(streams, streams.shape[1] - 16, 16)
  test, _ = canon("char_lm", "test")
  assert test.stream.tokens.shape[0] < stream.tokens.shape[0] / 5
  assert stream.decode(test.stream.tokens[:200]) not in text


# --------------------------------------------------------------------------- generic


@functools.cache
def jitted_sampler(name):
  return jax.jit(get_task(name).sample, static_argnums=1)


@functools.cache
def vmapped_sampler(name):
  return jax.jit(jax.vmap(get_task(name).sample, in_axes=(0, None)), static_argnums=1)


@pytest.mark.parametrize("name", task_names())
def test_sampling_is_deterministic_and_vmappable(name):
  """Same key -> the same batch; vmap over keys == separate calls (at the canonical batch
  size, so the jitted sampler compiles once per task)."""
  _, canonical = canon(name)
  again = jitted_sampler(name)(KEY, N)
  for a, c in zip(again, canonical, strict=True):
    np.testing.assert_array_equal(np.asarray(a), c)
  keys = jnp.stack([KEY, jax.random.key(1)])
  other = jitted_sampler(name)(keys[1], N)
  assert not np.array_equal(np.asarray(other.inputs), canonical.inputs)
  vmapped = vmapped_sampler(name)(keys, N)
  for i, single in enumerate((canonical, other)):
    for a, v in zip(single, vmapped, strict=True):
      np.testing.assert_array_equal(np.asarray(v[i]), np.asarray(a))


# Eager (op-by-op) runs compile every op on its own: a few tasks by default, all with --runslow.
EAGER_FAST = ("adding_hs97", "sine")


def eager_names():
  skip = pytest.mark.skipif(not _have_sklearn(), reason="scikit-learn (rnnlab[digits]) missing")
  params = []
  for name in tasks.TASKS:
    marks = [] if name in EAGER_FAST else [pytest.mark.slow]
    params.append(pytest.param(name, marks=marks + ([skip] if name in NEEDS_SKLEARN else [])))
  return params


@pytest.mark.parametrize("name", eager_names())
def test_jit_equals_eager_and_scan(name):
  """jit == no jit (bitwise, except sine's Gaussian, which XLA fuses differently), and
  sampling inside lax.scan gives the same batches."""
  task, canonical = canon(name)
  eager = task.sample(KEY, N)
  for e, c in zip(eager, canonical, strict=True):
    if name == "sine":
      np.testing.assert_allclose(np.asarray(e), c, rtol=0, atol=1e-6)
    else:
      np.testing.assert_array_equal(np.asarray(e), c)
  keys = jnp.stack([jax.random.key(1), KEY])
  scan = jax.jit(lambda ks: jax.lax.scan(lambda c, k: (c, task.sample(k, N)), 0, ks)[1])
  scanned = scan(keys)
  for s, c in zip(scanned, canonical, strict=True):
    np.testing.assert_array_equal(np.asarray(s[1]), c)


@pytest.mark.parametrize("name", task_names())
def test_batch_contract(name):
  task, batch = canon(name)
  num_steps = batch.inputs.shape[1]
  assert batch.inputs.shape == (N, num_steps, task.input_size)
  assert batch.inputs.dtype == np.float32 and batch.mask.dtype == np.float32
  assert batch.lengths.dtype == np.int32 and batch.lengths.shape == (N,)
  if task.kind == "regression":
    assert batch.targets.shape == (N, num_steps, task.output_size)
    assert batch.targets.dtype == np.float32
  else:
    assert task.kind == "classification"
    assert batch.targets.shape == (N, num_steps) and batch.targets.dtype == np.int32
    assert batch.targets.min() >= 0 and batch.targets.max() < task.output_size
  assert set(np.unique(batch.mask)) <= {0.0, 1.0}
  assert (batch.mask.sum(1) >= 1).all()
  past = np.arange(num_steps)[None, :] >= batch.lengths[:, None]
  assert (batch.mask[past] == 0).all() and (batch.inputs[past] == 0).all()
  assert (batch.targets[batch.mask == 0] == 0).all()
  assert batch.lengths.max() == num_steps
  assert isinstance(task.baseline, float) and task.baseline > 0
  assert task.baseline_formula and task.reference and task.metric_name


@pytest.mark.parametrize("name", task_names())
def test_perfect_predictor_is_solved(name):
  task, batch = canon(name)
  if task.kind == "regression":
    outputs, wrong = batch.targets, batch.targets + 0.5
  else:
    outputs = one_hot_logits(batch.targets, task.output_size)
    # Every output one class off: wrong everywhere the loss is taken.
    wrong = one_hot_logits((batch.targets + 1) % task.output_size, task.output_size)
  loss, metric = evaluate(name, outputs, batch)
  assert loss < 1e-6 and metric < 1e-6
  assert bool(task.solved(loss, metric))
  wrong_loss, wrong_metric = evaluate(name, wrong, batch)
  assert wrong_loss > task.baseline / 10 and wrong_metric > 0.01
  assert not bool(task.solved(wrong_loss, wrong_metric))
  # solved works elementwise on vmapped results.
  flags = task.solved(jnp.array([0.0, 1e3]), jnp.array([0.0, 1.0]))
  assert flags.shape == (2,) and flags.dtype == jnp.bool_
  assert flags.tolist() == [True, False]


def test_metrics_count_errors():
  """Pascanu's error: squared error > 0.04; H&S's: absolute error >= 0.04; copy: per symbol."""
  for name, margin in (("adding_pascanu", 0.2), ("adding_hs97", 0.04)):
    _, batch = canon(name)
    shift = np.where(np.arange(N) < N // 4, margin * 1.01, margin * 0.99)
    assert evaluate(name, batch.targets + shift[:, None, None], batch)[1] == 0.25
  _, batch = canon("copy")
  targets = batch.targets.copy()
  targets[0, -1] = (targets[0, -1] % 8) + 1  # one wrong symbol out of N * 10
  _, metric = evaluate("copy", one_hot_logits(targets, 9), batch)
  assert metric == pytest.approx(1 / (10 * N))


def test_loss_ignores_steps_outside_the_mask():
  for name in ("adding_pascanu", "copy"):
    task, batch = canon(name)
    if task.kind == "regression":
      outputs = batch.targets.copy()
    else:
      outputs = one_hot_logits(batch.targets, task.output_size)
    outputs[:, 0] = np.inf if name == "adding_pascanu" else 0.0
    loss, _ = evaluate(name, outputs, batch)
    assert (loss == 0.0) if name == "adding_pascanu" else (loss > 0.0)


# --------------------------------------------------------------------------- errors


def test_bad_names_lengths_and_options():
  with pytest.raises(ValueError, match="unknown task 'addition'.*adding_hs97"):
    tasks.get("addition", 10)
  for bad in (0, -3, 2.5, True, "10"):
    with pytest.raises(ValueError, match="length"):
      tasks.get("adding", bad)
  with pytest.raises(ValueError, match=">= 10; got 9"):
    tasks.get("temporal_order_2bit", 9)
  with pytest.raises(ValueError, match="must be 64, got 65"):
    tasks.get("digits", 65)
  with pytest.raises(ValueError, match="unknown option.*horizn.*horizon"):
    tasks.get("sine", 10, horizn=2)
  with pytest.raises(ValueError, match="split"):
    tasks.get("char_lm", 10, split="valid")
  with pytest.raises(ValueError, match="noise"):
    tasks.get("sine", 10, noise=-1.0)
  with pytest.raises(ValueError, match="zero_first_x1"):
    tasks.get("adding_hs97", 40, zero_first_x1=1)
  with pytest.raises(ValueError, match="num_symbols"):
    tasks.get("copy", 10, num_symbols=0)
  task, batch = canon("adding")
  with pytest.raises(ValueError, match="batch_size"):
    task.sample(KEY, 0)
  with pytest.raises(ValueError, match=r"outputs have shape \(10000, 41, 2\); expected"):
    task.loss(jnp.zeros((N, 41, 2)), as_jnp(batch))


def test_digits_without_sklearn_names_the_extra(monkeypatch):
  monkeypatch.setitem(sys.modules, "sklearn", None)
  monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
  tasks._load_digits.cache_clear()
  try:
    with pytest.raises(ImportError, match=r"rnnlab\[digits\]"):
      tasks.get("digits", 64)
  finally:
    tasks._load_digits.cache_clear()
