r"""Long-dependency tasks as pure functions of a PRNG key, each with its baseline.

``task = rnnlab.tasks.get(name, length)`` returns a :class:`Task`;
``task.sample(key, batch_size)`` returns a :class:`Batch` of static shape, so data
generation runs inside ``jit``, ``vmap`` and ``lax.scan`` with the model::

    task = rnnlab.tasks.get("adding", 100)
    batch = jax.jit(task.sample, static_argnums=1)(key, 64)  # inputs (64, 100, 2)
    loss = task.loss(outputs, batch)                           # outputs (64, 100, 1)

Every task says its loss, its metric (always an *error*: lower is better, 0 is
perfect), the loss of its trivial predictor (``baseline``, with the formula) and
its success criterion (``solved(loss, metric)``). Definitions follow the papers'
own code where it exists (Pascanu's ``trainingRNNs``, Arjovsky's ``complex_RNN``),
their text otherwise; channel orders follow each paper's code.

=======================  ============================================================  ==============================
name                     definition (T = ``length``)                                   baseline (trivial predictor)
=======================  ============================================================  ==============================
adding_hs97              H&S 1997 exp. 4: (value U[-1,1], marker) pairs, length         19/480 (predict 0.5; 1/24
                         in [T, T + T//10]; X1 among the first 10, X2 among the         without the X1 := 0 rule)
                         first T//2 - 1 unmarked; target 0.5 + (X1 + X2)/4
adding                   Arjovsky 2016 code (Le 2015): (value U[0,1], marker), one      1/6 (predict 1)
                         marker in each half; target X1 + X2
adding_pascanu           Pascanu 2013 ``addition.py``: (marker, value U[0,1]), length    1/24 (predict 1/2)
                         in [T, T + int(T/10)); markers in [0, 10 %) and [10, 50 %);
                         target (X1 + X2)/2
multiplication           Pascanu 2013 ``multiplication.py``: as adding_pascanu,          1/9 - 1/16 (predict 1/4)
                         target X1 * X2
copy                     Arjovsky 2016: 10 symbols from 8, T-1 blanks, delimiter, 10     10 ln 8 / (T + 20)
                         blanks; recall the symbols in the last 10 of T + 20 steps
temporal_order_2bit      Pascanu ``tempOrder.py``: distractors c-f, A/B at [10, 20 %)     ln 4
                         and [50, 60 %); 4 classes at the end
temporal_order_3bit      Pascanu ``tempOrder3bit.py``: A/B at [10, 20), [30, 40),         ln 8
                         [60, 70 %); 8 classes at the end
random_permutation       Pascanu ``permutation.py``: first symbol in {0, 1}, then        ln 2
                         T-1 of 98 others; recall the first at the end
noiseless_memorization   Pascanu ``memorization.py``: 10 symbols from 5, T blanks, a       10 ln 5 / (T + 20)
                         trigger; recall the pattern from the trigger on
digits                   sklearn ``load_digits``: 64 steps of one pixel; 10 classes       H(class prior) ~ ln 10
digits_permuted          the same with a fixed pixel permutation                          H(class prior) ~ ln 10
sine                     windows of the series sin(0.1 n) + 0.1 noise; predict the        ~1/2 + noise^2 (predict 0)
                         next value(s) at every step
char_lm                  next-character prediction on Python standard-library sources     unigram cross-entropy
=======================  ============================================================  ==============================

Randomness: each sampler makes one ``jax.random.bits`` draw and derives every
value from it (uniforms from the top 23 bits as ``jax.random.uniform`` does;
integers in ``[0, n)`` by ``bits % n``, a bias below ``n / 2**32``). The same key
gives bitwise the same batch, jitted or not, vmapped or inside ``lax.scan`` (one
exception: sine's Gaussian noise, whose ``erf_inv`` XLA fuses differently from
op-by-op execution, differs between jitted and eager runs in the last bit).

Conventions: ``inputs`` are ``(B, T, I)`` float32 (one-hot for symbols);
``targets`` are ``(B, T, O)`` float32 for regression and ``(B, T)`` int32 class
ids for classification; ``mask`` ``(B, T)`` is 1 where the loss is taken;
``lengths`` ``(B,)`` are the true lengths (right padding with zeros past them,
for the variable-length adding variants). Losses are masked means: mean squared
error (averaged over the ``O`` outputs) or softmax cross-entropy of logits.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sysconfig
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

REGRESSION = "regression"
CLASSIFICATION = "classification"


class Batch(NamedTuple):
  """One batch of a task.

  Attributes:
    inputs: ``(B, T, I)`` float32.
    targets: ``(B, T, O)`` float32 (regression) or ``(B, T)`` int32 class ids
      (classification); zero where ``mask`` is 0.
    mask: ``(B, T)`` float32, 1 where the loss is taken.
    lengths: ``(B,)`` int32 true lengths; inputs are zero past them.
  """

  inputs: Array
  targets: Array
  mask: Array
  lengths: Array


class Stream(NamedTuple):
  """A long token stream for truncated BPTT (the ``char_lm`` task's ``stream``).

  The usual recipe (as for Penn Treebank): cut the stream into ``B`` contiguous
  parallel streams, then walk them window by window, carrying the RNN state::

    streams_BxS = task.stream.parallel(batch_size)
    for w in range(task.stream.num_windows(batch_size, k)):
      batch = task.stream.window(streams_BxS, w * k, k)  # start may be traced

  Attributes:
    tokens: ``(N,)`` int32, the whole split in reading order.
    vocab: the alphabet, ``vocab[id]`` is the character (``"\\x00"`` stands for
      any character outside it).
  """

  tokens: Array
  vocab: str

  def parallel(self, batch_size: int) -> Array:
    """``(B, N // B)`` int32: the stream cut into ``B`` contiguous rows (the tail dropped)."""
    batch_size = _check_batch_size(batch_size)
    per_row = self.tokens.shape[0] // batch_size
    if per_row < 2:
      raise ValueError(
        f"Stream.parallel: {self.tokens.shape[0]} tokens cannot fill {batch_size} rows of "
        "at least 2 tokens"
      )
    return self.tokens[: batch_size * per_row].reshape(batch_size, per_row)

  def num_windows(self, batch_size: int, length: int) -> int:
    """How many whole windows of ``length`` steps fit in :meth:`parallel` rows."""
    return (self.tokens.shape[0] // _check_batch_size(batch_size) - 1) // length

  def window(self, streams_BxS: Array, start: Array | int, length: int) -> Batch:
    """The batch that reads ``streams[:, start : start + length]`` and predicts the next tokens.

    Args:
      streams_BxS: rows from :meth:`parallel`.
      start: first position (an int or a traced scalar, so windows can be taken
        inside ``lax.scan``); ``start + length + 1 <= S`` is checked when concrete.
      length: window length (static).

    Returns:
      A :class:`Batch`: one-hot inputs ``(B, length, V)``, next-token targets
      ``(B, length)``, mask and lengths full.
    """
    per_row = streams_BxS.shape[1]
    if not isinstance(start, jax.core.Tracer) and not 0 <= int(start) <= per_row - length - 1:
      raise ValueError(
        f"Stream.window: start={int(start)} with length={length} needs start in "
        f"[0, {per_row - length - 1}] for rows of {per_row} tokens"
      )
    tokens_BxW = jax.lax.dynamic_slice_in_dim(streams_BxS, start, length + 1, axis=1)
    return _next_token_batch(tokens_BxW, len(self.vocab))

  def decode(self, ids: Any) -> str:
    """The text of a sequence of token ids."""
    return "".join(self.vocab[int(i)] for i in np.asarray(ids).reshape(-1))


class Task(NamedTuple):
  """A task: a sampler plus everything needed to read its results.

  Attributes:
    name: the registry name.
    length: T, the dependency-length knob (the batch's time axis can be longer:
      ``T + 20`` for copy and memorisation, ``T + T//10`` for padded variants).
    input_size: I.
    output_size: O (number of outputs or of classes).
    kind: ``"regression"`` or ``"classification"``.
    sample: ``sample(key, batch_size) -> Batch``; ``batch_size`` is static.
    loss: ``loss(outputs (B, T, O), batch) -> scalar``, masked mean MSE or
      cross-entropy of logits.
    metric: ``metric(outputs, batch) -> scalar``, an error (lower is better).
    metric_name: what ``metric`` measures.
    baseline: the trivial predictor's expected loss.
    baseline_formula: how ``baseline`` is computed.
    solved: ``solved(loss, metric) -> bool array``, the success criterion
      (elementwise, so it works on vmapped results).
    reference: the paper and variant.
    stream: a :class:`Stream` for ``char_lm`` (truncated BPTT), else ``None``.
  """

  name: str
  length: int
  input_size: int
  output_size: int
  kind: str
  sample: Callable[[Array, int], Batch]
  loss: Callable[[Array, Batch], Array]
  metric: Callable[[Array, Batch], Array]
  metric_name: str
  baseline: float
  baseline_formula: str
  solved: Callable[[Array, Array], Array]
  reference: str
  stream: Stream | None = None


# --------------------------------------------------------------------------- helpers


def _check_batch_size(batch_size: Any) -> int:
  if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
    raise ValueError(
      f"batch_size must be a static positive int; got {batch_size!r} "
      "(jit sample with static_argnums=1)"
    )
  if batch_size <= 0:
    raise ValueError(f"batch_size must be a positive int; got {batch_size}")
  return int(batch_size)


def _random_words(key: Array, batch_size: int, sizes: tuple[int, ...]) -> list[Array]:
  """One draw of uint32 words per example, cut into pieces of the given sizes.

  Every sampler draws all its randomness with one ``jax.random.bits`` call: each
  PRNG call costs a separate threefry computation to compile, and a sampler is
  compiled into every training loop that uses it.
  """
  words_BxW = jax.random.bits(key, (batch_size, sum(sizes)), jnp.uint32)
  offsets = np.cumsum((0, *sizes))
  return [words_BxW[:, lo:hi] for lo, hi in zip(offsets[:-1], offsets[1:], strict=True)]


def _uniform(words: Array) -> Array:
  """float32 in ``[0, 1)`` from the top 23 bits (as ``jax.random.uniform``)."""
  mantissa = (words >> jnp.uint32(9)) | jnp.uint32(0x3F800000)
  return jax.lax.bitcast_convert_type(mantissa, jnp.float32) - 1.0


def _below_n(words: Array, n: Array | int) -> Array:
  """int32 uniform in ``[0, n)`` (``n`` may be an array; modulo bias below ``n / 2**32``)."""
  return (words % jnp.asarray(n).astype(jnp.uint32)).astype(jnp.int32)


def _normal(words: Array) -> Array:
  """float32 standard normal by inverting the CDF (as ``jax.random.normal``)."""
  lowest = np.nextafter(np.float32(-1), np.float32(0))
  return np.float32(math.sqrt(2)) * jax.lax.erf_inv(
    jnp.maximum(2.0 * _uniform(words) - 1.0, lowest)
  )


def _steps(num_steps: int) -> Array:
  return jnp.arange(num_steps, dtype=jnp.int32)


def _at_step(values_B: Array, steps_B: Array, num_steps: int) -> Array:
  """``(B, T)``: ``values_B[b]`` at step ``steps_B[b]``, zero elsewhere."""
  hit_BxT = _steps(num_steps)[None, :] == steps_B[:, None]
  return jnp.where(hit_BxT, values_B[:, None], jnp.zeros((), values_B.dtype))


def _last_step_mask(lengths_B: Array, num_steps: int) -> Array:
  return (_steps(num_steps)[None, :] == (lengths_B - 1)[:, None]).astype(jnp.float32)


def _full(batch_size: int, value: int) -> Array:
  return jnp.full((batch_size,), value, jnp.int32)


def _check_outputs(name: str, outputs: Array, batch: Batch, output_size: int) -> None:
  expected = (*batch.mask.shape, output_size)
  if tuple(outputs.shape) != expected:
    raise ValueError(
      f"{name}: outputs have shape {tuple(outputs.shape)}; expected (B, T, O) = {expected}"
    )


def _squared_errors(outputs: Array, batch: Batch) -> Array:
  """``(B, T, O)`` squared errors."""
  return (outputs.astype(jnp.float32) - batch.targets) ** 2


def _masked_mean(values_BxT: Array, mask_BxT: Array) -> Array:
  # where, not only a product: an inf output at a step the mask leaves out must not give inf * 0.
  return jnp.sum(jnp.where(mask_BxT > 0, values_BxT * mask_BxT, 0.0)) / jnp.sum(mask_BxT)


def _nll(outputs: Array, batch: Batch) -> Array:
  """``(B, T)`` negative log-likelihood of the target class under softmax(outputs)."""
  log_probs = jax.nn.log_softmax(outputs.astype(jnp.float32), axis=-1)
  return -jnp.take_along_axis(log_probs, batch.targets[..., None], axis=-1)[..., 0]


def _wrong_class(outputs: Array, batch: Batch) -> Array:
  return jnp.argmax(outputs, axis=-1) != batch.targets


def _sequence_error_rate(wrong_BxT: Array, mask_BxT: Array) -> Array:
  """Fraction of sequences with at least one wrong step where the mask is 1."""
  return jnp.mean(jnp.any(wrong_BxT & (mask_BxT > 0), axis=-1).astype(jnp.float32))


def _losses(name: str, kind: str, output_size: int):
  """The masked-mean loss for ``kind``, with a shape check on the outputs."""

  def loss(outputs: Array, batch: Batch) -> Array:
    _check_outputs(name, outputs, batch, output_size)
    if kind == REGRESSION:
      return _masked_mean(jnp.mean(_squared_errors(outputs, batch), axis=-1), batch.mask)
    return _masked_mean(_nll(outputs, batch), batch.mask)

  return loss


def _error_metric(name: str, output_size: int, wrong: Callable[[Array, Batch], Array]):
  """Metric: the fraction of sequences with any masked step ``wrong``."""

  def metric(outputs: Array, batch: Batch) -> Array:
    _check_outputs(name, outputs, batch, output_size)
    return _sequence_error_rate(wrong(outputs, batch), batch.mask)

  return metric


def _below(threshold: float):
  def solved(loss: Array, metric: Array) -> Array:
    del loss
    return jnp.asarray(metric) < threshold

  return solved


def _loss_below(threshold: float):
  def solved(loss: Array, metric: Array) -> Array:
    del metric
    return jnp.asarray(loss) < threshold

  return solved


def _one_hot(ids: Array, size: int) -> Array:
  return jax.nn.one_hot(ids, size, dtype=jnp.float32)


def _classification_batch(input_ids_BxT: Array, size: int, target_ids_BxT, mask_BxT) -> Batch:
  batch_size, num_steps = input_ids_BxT.shape
  return Batch(
    _one_hot(input_ids_BxT, size),
    target_ids_BxT.astype(jnp.int32),
    mask_BxT.astype(jnp.float32),
    _full(batch_size, num_steps),
  )


def _next_token_batch(tokens_BxW: Array, vocab_size: int) -> Batch:
  inputs_BxT = tokens_BxW[:, :-1]
  return _classification_batch(
    inputs_BxT, vocab_size, tokens_BxW[:, 1:], jnp.ones(inputs_BxT.shape, jnp.float32)
  )


# --------------------------------------------------------------------------- adding family


def _adding_arjovsky(length: int) -> Task:
  r"""Adding problem of Le et al. 2015 as coded by Arjovsky et al. 2016 (``adding_problem.py``).

  Inputs ``(B, T, 2)``: channel 0 the values ``U[0, 1)``, channel 1 the marker,
  1 at one step of the first half ``[0, T//2)`` and one of ``[T//2, 2 (T//2))``
  (Le 2015 places the two markers anywhere; Arjovsky's code, followed here, puts
  one in each half). Target at the last step: :math:`X_1 + X_2`. The trivial
  predictor says 1 (the mean): MSE :math:`\operatorname{Var}(X_1 + X_2) = 2/12 = 1/6`.
  """
  num_steps, half = length, length // 2
  name = "adding"
  loss = _losses(name, REGRESSION, 1)

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    w_values, w_first, w_second = _random_words(key, batch_size, (num_steps, 1, 1))
    values_BxT = _uniform(w_values)
    first_B = _below_n(w_first[:, 0], half)
    second_B = half + _below_n(w_second[:, 0], half)
    t_1xT = _steps(num_steps)[None, :]
    marked_BxT = (t_1xT == first_B[:, None]) | (t_1xT == second_B[:, None])
    target_B = jnp.sum(jnp.where(marked_BxT, values_BxT, 0.0), axis=1)
    lengths_B = _full(batch_size, num_steps)
    inputs = jnp.stack([values_BxT, marked_BxT.astype(jnp.float32)], axis=-1)
    targets = _at_step(target_B, lengths_B - 1, num_steps)[..., None]
    return Batch(inputs, targets, _last_step_mask(lengths_B, num_steps), lengths_B)

  return Task(
    name=name,
    length=length,
    input_size=2,
    output_size=1,
    kind=REGRESSION,
    sample=sample,
    loss=loss,
    metric=lambda outputs, batch: loss(outputs, batch) / (1 / 6),
    metric_name="normalised_mse (MSE / (1/6))",
    baseline=1 / 6,
    baseline_formula="Var(X1 + X2) = 2/12 = 1/6 (predict 1)",
    solved=_loss_below(1 / 60),
    reference=(
      "Le et al. 2015 (IRNN) / Arjovsky et al. 2016 (uRNN, adding_problem.py): values U[0,1], "
      "one marker in each half, target X1 + X2; solved (rnnlab convention, no paper "
      "criterion): MSE below a tenth of the baseline"
    ),
  )


def _adding_hs97(length: int, zero_first_x1: bool = True) -> Task:
  r"""Adding problem of Hochreiter & Schmidhuber 1997 (LSTM paper, experiment 4).

  Each step is a pair (value ``U[-1, 1)``, marker), channel 0 the value,
  channel 1 the marker. The length ``l`` is an integer drawn uniformly from
  ``[T, T + T//10]`` (per sequence; padded with zeros to ``T + T//10``). X1 is
  one of the first 10 pairs; X2 one of the first ``T//2 - 1`` pairs still
  unmarked. Markers are 1 at X1 and X2, -1 at the first and final pair (unless
  marked), 0 elsewhere; when X1 is the first pair its value is set to 0 (the
  paper's rule; ``zero_first_x1=False`` drops it). Target at step ``l - 1``: :math:`0.5 + (X_1 + X_2) / 4`;
  "correct" means an absolute error below 0.04.

  Trivial predictor 0.5: MSE :math:`(E X_1^2 + E X_2^2) / 16 = (0.9/3 + 1/3) / 16 = 19/480`
  (1/24 without the X1 := 0 rule, since ``P(X1 first) = 1/10``).
  """
  if not isinstance(zero_first_x1, bool):
    raise ValueError(f"adding_hs97: zero_first_x1 must be a bool; got {zero_first_x1!r}")
  num_extra, num_second = length // 10, length // 2 - 1
  num_steps = length + num_extra
  name = "adding_hs97"

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    w_len, w_values, w_first, w_second = _random_words(key, batch_size, (1, num_steps, 1, 1))
    lengths_B = length + _below_n(w_len[:, 0], num_extra + 1)
    first_B = _below_n(w_first[:, 0], 10)
    draw_B = _below_n(w_second[:, 0], num_second)
    # Uniform over the first T//2 - 1 positions other than X1's.
    second_B = draw_B + (draw_B >= first_B)
    t_1xT = _steps(num_steps)[None, :]
    valid_BxT = t_1xT < lengths_B[:, None]
    values_BxT = 2.0 * _uniform(w_values) - 1.0
    first_zero_BxT = (t_1xT == 0) & (first_B[:, None] == 0) & zero_first_x1
    values_BxT = jnp.where(valid_BxT & ~first_zero_BxT, values_BxT, 0.0)
    marked_BxT = (t_1xT == first_B[:, None]) | (t_1xT == second_B[:, None])
    ends_BxT = (t_1xT == 0) | (t_1xT == lengths_B[:, None] - 1)
    markers_BxT = jnp.where(marked_BxT, 1.0, jnp.where(ends_BxT & valid_BxT, -1.0, 0.0))
    x_sum_B = jnp.sum(jnp.where(marked_BxT, values_BxT, 0.0), axis=1)
    target_B = 0.5 + x_sum_B / 4.0
    inputs = jnp.stack([values_BxT, markers_BxT.astype(jnp.float32)], axis=-1)
    targets = _at_step(target_B, lengths_B - 1, num_steps)[..., None]
    return Batch(inputs, targets, _last_step_mask(lengths_B, num_steps), lengths_B)

  loss = _losses(name, REGRESSION, 1)

  def solved(loss_value: Array, metric: Array) -> Array:
    return (jnp.asarray(loss_value) < 0.01) & (jnp.asarray(metric) == 0.0)

  return Task(
    name=name,
    length=length,
    input_size=2,
    output_size=1,
    kind=REGRESSION,
    sample=sample,
    loss=loss,
    metric=_error_metric(
      name, 1, lambda outputs, batch: jnp.abs(outputs - batch.targets)[..., 0] >= 0.04
    ),
    metric_name="error_rate (|error| >= 0.04 at the end)",
    baseline=19 / 480 if zero_first_x1 else 1 / 24,
    baseline_formula=(
      "(0.9/3 + 1/3) / 16 = 19/480 (predict 0.5; X1 := 0 at the first pair)"
      if zero_first_x1
      else "(1/3 + 1/3) / 16 = 1/24 (predict 0.5)"
    ),
    solved=solved,
    reference=(
      "Hochreiter & Schmidhuber 1997, experiment 4 (adding); solved = their stopping "
      "criterion: mean squared error < 0.01 and no sequence wrong (evaluate >= 2000)"
    ),
  )


def _pascanu_pairs(name: str, length: int, combine, baseline: float, formula: str, ref: str):
  """Pascanu 2013's ``addition.py`` / ``multiplication.py`` generator.

  ``l = T + randint(int(T * .1))`` (drawn per sequence and padded to the longest; the
  code draws one per batch); marker 1 at ``p0 = randint(int(l * .1))`` and at
  ``p1 = int(l * .1) + randint(int(l * .4))``; channel 0 the marker, channel 1 the
  values ``U[0, 1)``. Python's ``int(l * .1)`` is tabulated per ``l`` so the
  rounding is the code's. Error: squared error > 0.04; solved: < 1 % errors.
  """
  num_extra = int(length * 0.1)
  num_steps = length + num_extra - 1
  candidate_lengths = range(length, length + num_extra)
  first_span = jnp.asarray([int(l * 0.1) for l in candidate_lengths], jnp.int32)
  second_span = jnp.asarray([int(l * 0.4) for l in candidate_lengths], jnp.int32)

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    w_len, w_values, w_first, w_second = _random_words(key, batch_size, (1, num_steps, 1, 1))
    offset_B = _below_n(w_len[:, 0], num_extra)
    lengths_B = length + offset_B
    first_B = _below_n(w_first[:, 0], first_span[offset_B])
    second_B = first_span[offset_B] + _below_n(w_second[:, 0], second_span[offset_B])
    t_1xT = _steps(num_steps)[None, :]
    valid_BxT = t_1xT < lengths_B[:, None]
    values_BxT = jnp.where(valid_BxT, _uniform(w_values), 0.0)
    x1_B = jnp.take_along_axis(values_BxT, first_B[:, None], axis=1)[:, 0]
    x2_B = jnp.take_along_axis(values_BxT, second_B[:, None], axis=1)[:, 0]
    marked_BxT = (t_1xT == first_B[:, None]) | (t_1xT == second_B[:, None])
    inputs = jnp.stack([marked_BxT.astype(jnp.float32), values_BxT], axis=-1)
    targets = _at_step(combine(x1_B, x2_B), lengths_B - 1, num_steps)[..., None]
    return Batch(inputs, targets, _last_step_mask(lengths_B, num_steps), lengths_B)

  return Task(
    name=name,
    length=length,
    input_size=2,
    output_size=1,
    kind=REGRESSION,
    sample=sample,
    loss=_losses(name, REGRESSION, 1),
    metric=_error_metric(
      name, 1, lambda outputs, batch: jnp.sum(_squared_errors(outputs, batch), axis=-1) > 0.04
    ),
    metric_name="error_rate (squared error > 0.04 at the end)",
    baseline=baseline,
    baseline_formula=formula,
    solved=_below(0.01),
    reference=ref,
  )


def _adding_pascanu(length: int) -> Task:
  return _pascanu_pairs(
    "adding_pascanu",
    length,
    lambda x1, x2: (x1 + x2) / 2.0,
    1 / 24,
    "Var((X1 + X2)/2) = (2/12)/4 = 1/24 (predict 1/2)",
    "Pascanu, Mikolov & Bengio 2013 (trainingRNNs/addition.py): target (X1 + X2)/2, "
    "length in [T, 1.1T); solved: < 1 % of sequences with squared error > 0.04",
  )


def _multiplication(length: int) -> Task:
  return _pascanu_pairs(
    "multiplication",
    length,
    lambda x1, x2: x1 * x2,
    1 / 9 - 1 / 16,
    "Var(X1 X2) = 1/9 - 1/16 = 7/144 (predict 1/4)",
    "Pascanu, Mikolov & Bengio 2013 (trainingRNNs/multiplication.py): target X1 * X2, "
    "length in [T, 1.1T); solved: < 1 % of sequences with squared error > 0.04",
  )


# --------------------------------------------------------------------------- symbol tasks


def _copy(length: int, num_symbols: int = 8, num_copy: int = 10) -> Task:
  r"""Copy memory of Arjovsky et al. 2016 (``memory_problem.py``).

  Input ids (one-hot over ``num_symbols + 2``): ``num_copy`` symbols from
  ``1..num_symbols``, ``T - 1`` blanks (0), the delimiter ``num_symbols + 1``,
  ``num_copy`` blanks; ``T + 2 num_copy`` steps. Targets (``num_symbols + 1``
  classes): blanks for ``T + num_copy`` steps, then the symbols. Loss: mean
  cross-entropy over all steps. The memoryless predictor (blank, then uniform
  over the symbols) scores :math:`n \ln k / (T + 2n)` = ``10 ln 8 / (T + 20)``.
  """
  _check_positive("copy", num_symbols=num_symbols, num_copy=num_copy)
  num_steps = length + 2 * num_copy
  name = "copy"
  recall_1xT = (_steps(num_steps) >= length + num_copy)[None, :]

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    (words,) = _random_words(key, batch_size, (num_copy,))
    symbols_BxN = 1 + _below_n(words, num_symbols)
    blanks = jnp.zeros((batch_size, length - 1), jnp.int32)
    delimiter = jnp.full((batch_size, 1), num_symbols + 1, jnp.int32)
    tail = jnp.zeros((batch_size, num_copy), jnp.int32)
    input_ids = jnp.concatenate([symbols_BxN, blanks, delimiter, tail], axis=1)
    target_ids = jnp.concatenate(
      [jnp.zeros((batch_size, length + num_copy), jnp.int32), symbols_BxN], 1
    )
    mask = jnp.ones((batch_size, num_steps), jnp.float32)
    return _classification_batch(input_ids, num_symbols + 2, target_ids, mask)

  def metric(outputs: Array, batch: Batch) -> Array:
    _check_outputs(name, outputs, batch, num_symbols + 1)
    wrong_BxT = _wrong_class(outputs, batch)
    return _masked_mean(wrong_BxT.astype(jnp.float32), recall_1xT * batch.mask)

  baseline = num_copy * math.log(num_symbols) / num_steps
  return Task(
    name=name,
    length=length,
    input_size=num_symbols + 2,
    output_size=num_symbols + 1,
    kind=CLASSIFICATION,
    sample=sample,
    loss=_losses(name, CLASSIFICATION, num_symbols + 1),
    metric=metric,
    metric_name=f"symbol_error_rate (over the last {num_copy} steps)",
    baseline=baseline,
    baseline_formula=f"{num_copy} ln {num_symbols} / (T + {2 * num_copy})",
    solved=_loss_below(baseline / 10),
    reference=(
      "Arjovsky, Shah & Bengio 2016 (uRNN, memory_problem.py): copy memory, mean CE over "
      "T + 20 steps; solved (rnnlab convention): CE below a tenth of the baseline"
    ),
  )


def _temporal_order(name: str, length: int, windows: tuple[float, ...], ref: str) -> Task:
  """Pascanu's ``tempOrder.py`` (2 bits) / ``tempOrder3bit.py`` (3 bits).

  One-hot over 6 symbols: A=0, B=1 the relevant ones, c..f = 2..5 distractors at
  every other step. Relevant symbol ``k`` (A or B, uniform) sits at
  ``int(T * lo_k) + randint(int(T * .1))``; class ``sum_k v_k 2^k`` at the last step.
  """
  num_steps, num_bits = length, len(windows)
  starts = [int(length * lo) for lo in windows]
  width = int(length * 0.1)
  num_classes = 2**num_bits

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    w_symbols, w_pos, w_bits = _random_words(key, batch_size, (num_steps, num_bits, num_bits))
    symbols_BxT = 2 + _below_n(w_symbols, 4)
    offsets_BxK = _below_n(w_pos, width)
    bits_BxK = _below_n(w_bits, 2)
    t_1xT = _steps(num_steps)[None, :]
    for k, start in enumerate(starts):
      at_k = t_1xT == (start + offsets_BxK[:, k])[:, None]
      symbols_BxT = jnp.where(at_k, bits_BxK[:, k : k + 1], symbols_BxT)
    class_B = jnp.sum(bits_BxK * (2 ** jnp.arange(num_bits, dtype=jnp.int32)), axis=1)
    lengths_B = _full(batch_size, num_steps)
    targets = _at_step(class_B, lengths_B - 1, num_steps)
    return _classification_batch(symbols_BxT, 6, targets, _last_step_mask(lengths_B, num_steps))

  return Task(
    name=name,
    length=length,
    input_size=6,
    output_size=num_classes,
    kind=CLASSIFICATION,
    sample=sample,
    loss=_losses(name, CLASSIFICATION, num_classes),
    metric=_error_metric(name, num_classes, _wrong_class),
    metric_name="error_rate (wrong class at the end)",
    baseline=math.log(num_classes),
    baseline_formula=f"ln {num_classes}",
    solved=_below(0.01),
    reference=ref,
  )


def _temporal_order_2bit(length: int) -> Task:
  return _temporal_order(
    "temporal_order_2bit",
    length,
    (0.1, 0.5),
    "Hochreiter & Schmidhuber 1997 exp. 6a; Pascanu et al. 2013 (trainingRNNs/tempOrder.py): "
    "A/B in [10, 20) % and [50, 60) % of T; solved: < 1 % errors",
  )


def _temporal_order_3bit(length: int) -> Task:
  return _temporal_order(
    "temporal_order_3bit",
    length,
    (0.1, 0.3, 0.6),
    "Hochreiter & Schmidhuber 1997 exp. 6b; Pascanu et al. 2013 "
    "(trainingRNNs/tempOrder3bit.py): A/B in [10, 20), [30, 40), [60, 70) % of T; "
    "solved: < 1 % errors",
  )


def _random_permutation(length: int) -> Task:
  """Pascanu's ``permutation.py``: one-hot over 100 symbols; step 0 shows ``v`` in
  {0, 1}, steps 1..T-1 symbols from 2..99; predict ``v`` (100 classes) at the end."""
  name, size = "random_permutation", 100

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    w_symbols, w_bit = _random_words(key, batch_size, (length, 1))
    symbols_BxT = 2 + _below_n(w_symbols, size - 2)
    bit_B = _below_n(w_bit[:, 0], 2)
    symbols_BxT = symbols_BxT.at[:, 0].set(bit_B)
    lengths_B = _full(batch_size, length)
    targets = _at_step(bit_B, lengths_B - 1, length)
    return _classification_batch(symbols_BxT, size, targets, _last_step_mask(lengths_B, length))

  return Task(
    name=name,
    length=length,
    input_size=size,
    output_size=size,
    kind=CLASSIFICATION,
    sample=sample,
    loss=_losses(name, CLASSIFICATION, size),
    metric=_error_metric(name, size, _wrong_class),
    metric_name="error_rate (wrong class at the end)",
    baseline=math.log(2),
    baseline_formula="ln 2",
    solved=_below(0.01),
    reference=(
      "Pascanu et al. 2013 (trainingRNNs/permutation.py), the Martens & Sutskever 2011 "
      "suite after Hochreiter & Schmidhuber 1997 exp. 2; solved: < 1 % errors"
    ),
  )


def _noiseless_memorization(length: int, num_values: int = 5, num_positions: int = 10) -> Task:
  r"""Pascanu's ``memorization.py`` (after Hochreiter & Schmidhuber's noiseless task).

  ``T + 2n`` steps (``n = num_positions``); inputs one-hot over ``num_values + 2``:
  the pattern (``n`` values) for ``n`` steps, then the blank ``num_values``, except
  the trigger ``num_values + 1`` at step ``T + n``. Targets (``num_values + 1``
  classes): blank until step ``T + n``, then the pattern. Loss: mean CE over all
  steps; error: a sequence with any wrong step. Memoryless predictor:
  :math:`n \ln k / (T + 2n)`.
  """
  _check_positive("noiseless_memorization", num_values=num_values, num_positions=num_positions)
  name, n = "noiseless_memorization", num_positions
  num_steps = length + 2 * n
  blank, trigger = num_values, num_values + 1

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    (words,) = _random_words(key, batch_size, (n,))
    pattern_BxN = _below_n(words, num_values)
    rest = jnp.full((batch_size, length + n), blank, jnp.int32).at[:, length].set(trigger)
    input_ids = jnp.concatenate([pattern_BxN, rest], axis=1)
    target_ids = jnp.concatenate([jnp.full((batch_size, length + n), blank), pattern_BxN], 1)
    mask = jnp.ones((batch_size, num_steps), jnp.float32)
    return _classification_batch(input_ids, num_values + 2, target_ids, mask)

  baseline = n * math.log(num_values) / num_steps
  return Task(
    name=name,
    length=length,
    input_size=num_values + 2,
    output_size=num_values + 1,
    kind=CLASSIFICATION,
    sample=sample,
    loss=_losses(name, CLASSIFICATION, num_values + 1),
    metric=_error_metric(name, num_values + 1, _wrong_class),
    metric_name="error_rate (sequences with any wrong step)",
    baseline=baseline,
    baseline_formula=f"{n} ln {num_values} / (T + {2 * n})",
    solved=_below(0.01),
    reference=(
      "Pascanu et al. 2013 (trainingRNNs/memorization.py), the Martens & Sutskever 2011 "
      "noiseless memorisation after Hochreiter & Schmidhuber 1997; solved: < 1 % of "
      "sequences with an error"
    ),
  )


# --------------------------------------------------------------------------- data sets


@functools.lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
  try:
    from sklearn.datasets import load_digits
  except ImportError as e:
    raise ImportError(
      "the digits tasks need scikit-learn, which ships the 8x8 digits: pip install 'rnnlab[digits]'"
    ) from e
  images, labels = load_digits(return_X_y=True)
  return (images / 16.0).astype(np.float32), labels.astype(np.int32)


DIGITS_TEST_SIZE = 360  # of sklearn's 1797 images: a fixed 20 % held out


def _digits(length: int, split: str = "train", permuted: bool = False, permutation_seed: int = 0):
  name = "digits_permuted" if permuted else "digits"
  if length != 64:
    raise ValueError(
      f"{name}: an 8x8 image is 64 steps of one pixel; length must be 64, got {length}"
    )
  _check_split(name, split)
  images, labels = _load_digits()
  order = np.random.default_rng(0).permutation(len(labels))
  rows = order[DIGITS_TEST_SIZE:] if split == "train" else order[:DIGITS_TEST_SIZE]
  pixels_NxT = images[rows]
  if permuted:
    pixels_NxT = pixels_NxT[:, np.random.default_rng(permutation_seed).permutation(64)]
  train_labels = labels[order[DIGITS_TEST_SIZE:]]
  prior = np.bincount(train_labels, minlength=10) / len(train_labels)
  baseline = float(-np.sum(prior * np.log(prior)))
  pixels_NxT, labels_N = jnp.asarray(pixels_NxT), jnp.asarray(labels[rows])
  num_images = len(rows)

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    (words,) = _random_words(key, batch_size, (1,))
    index_B = _below_n(words[:, 0], num_images)
    lengths_B = _full(batch_size, 64)
    targets = _at_step(labels_N[index_B], lengths_B - 1, 64)
    return Batch(pixels_NxT[index_B][..., None], targets, _last_step_mask(lengths_B, 64), lengths_B)

  order_text = (
    "a fixed pixel permutation (numpy default_rng(permutation_seed))"
    if permuted
    else "row-major pixel order"
  )
  return Task(
    name=name,
    length=length,
    input_size=1,
    output_size=10,
    kind=CLASSIFICATION,
    sample=sample,
    loss=_losses(name, CLASSIFICATION, 10),
    metric=_error_metric(name, 10, _wrong_class),
    metric_name="error_rate (wrong class at the end)",
    baseline=baseline,
    baseline_formula="H(training class prior) ~ ln 10",
    solved=_loss_below(baseline / 10),
    reference=(
      f"sequential 8x8 digits (sklearn load_digits, pixels / 16, {order_text}; split "
      f"{split!r} of a fixed 80/20 split), the small analogue of Le et al. 2015's "
      "pixel MNIST; solved (rnnlab convention): CE below a tenth of the baseline"
    ),
  )


def _digits_plain(length: int, split: str = "train") -> Task:
  return _digits(length, split=split)


def _digits_permuted(length: int, split: str = "train", permutation_seed: int = 0) -> Task:
  return _digits(length, split=split, permuted=True, permutation_seed=permutation_seed)


SINE_NUM_STARTS = 10_000  # windows start at a uniform step of the first 10k of the series


def _sine(length: int, noise: float = 0.1, dx: float = 0.1, horizon: int = 1) -> Task:
  r"""Noisy-sine forecasting (many-to-many): windows of one long noisy sine.

  The series is :math:`x_n = \sin(dx \cdot n)`, ``n = 0, 1, ...``; a window starts at
  ``n0 ~ U{0 .. 9999}`` and reads ``s_t = x_{n0+t} + noise eps_t`` (``eps_t ~ N(0, 1)``)
  for ``t = 0 .. T + horizon - 1``. Inputs ``s_0 .. s_{T-1}``; targets
  ``targets[t, k] = s_{t+1+k}`` for ``k < horizon``; loss at every step.

  Predicting 0 scores :math:`\overline{x^2} + \sigma^2 \approx 1/2 + \sigma^2` (the
  baseline, exact over the windows); the noise floor is :math:`\sigma^2`; the naive
  forecast (repeat ``s_t``) scores about
  :math:`\mathrm{mean}_k (1 - \cos(dx (k+1))) + 2\sigma^2`, and ``solved`` means
  beating it. The clean series is a table built at ``get()`` time, so inputs and
  targets are the same float32 numbers, shifted.
  """
  if not noise >= 0 or not dx > 0:
    raise ValueError(f"sine: need noise >= 0 and dx > 0; got noise={noise}, dx={dx}")
  _check_positive("sine", horizon=horizon)
  name = "sine"
  num_points = length + horizon
  series_np = np.sin(dx * np.arange(SINE_NUM_STARTS + num_points)).astype(np.float32)
  windows_np = np.lib.stride_tricks.sliding_window_view(series_np, num_points)[:SINE_NUM_STARTS]
  windows_np = windows_np.astype(np.float64)
  future = np.stack([windows_np[:, 1 + k : 1 + k + length] for k in range(horizon)], -1)
  baseline = float(np.mean(future**2) + noise**2)
  naive = float(np.mean((future - windows_np[:, :length, None]) ** 2) + 2 * noise**2)
  series = jnp.asarray(series_np)

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    w_start, w_noise = _random_words(key, batch_size, (1, num_points))
    start_B = _below_n(w_start[:, 0], SINE_NUM_STARTS)
    clean_BxP = series[start_B[:, None] + jnp.arange(num_points)[None, :]]
    eps_BxP = _normal(w_noise)
    signal_BxP = clean_BxP + noise * eps_BxP
    targets_BxTxH = jnp.stack(
      [signal_BxP[:, 1 + k : 1 + k + length] for k in range(horizon)], axis=-1
    )
    return Batch(
      signal_BxP[:, :length, None],
      targets_BxTxH,
      jnp.ones((batch_size, length), jnp.float32),
      _full(batch_size, length),
    )

  loss = _losses(name, REGRESSION, horizon)
  return Task(
    name=name,
    length=length,
    input_size=1,
    output_size=horizon,
    kind=REGRESSION,
    sample=sample,
    loss=loss,
    metric=lambda outputs, batch: loss(outputs, batch) / baseline,
    metric_name="normalised_mse (MSE / baseline)",
    baseline=baseline,
    baseline_formula="mean x^2 + noise^2 ~ 1/2 + noise^2 (predict 0)",
    solved=_loss_below(naive),
    reference=(
      f"noisy-sine forecasting (dx={dx}, noise={noise}, horizon={horizon}); solved "
      f"(rnnlab convention): MSE below the naive forecast's {naive:.4f} "
      "(~ mean_k(1 - cos(dx (k+1))) + 2 noise^2)"
    ),
  )


# The corpus: standard-library modules present as single files in every CPython >= 3.10.
CHAR_LM_MODULES = (
  "argparse",
  "ast",
  "bisect",
  "calendar",
  "contextlib",
  "copy",
  "csv",
  "dataclasses",
  "difflib",
  "enum",
  "fractions",
  "functools",
  "heapq",
  "inspect",
  "random",
  "shlex",
  "statistics",
  "string",
  "textwrap",
  "tokenize",
  "typing",
)
# id 0 = any other character, then tab, newline and the 95 printable ASCII characters.
CHAR_VOCAB = "\x00\t\n" + "".join(chr(c) for c in range(32, 127))
CHAR_LM_TEST_FRACTION = 0.1


@functools.lru_cache(maxsize=1)
def _char_corpus() -> np.ndarray:
  """The token ids of the corpus modules' sources, concatenated in the listed order."""
  stdlib = sysconfig.get_paths()["stdlib"]
  lookup = np.zeros(128, np.int32)
  for i, ch in enumerate(CHAR_VOCAB[1:], start=1):
    lookup[ord(ch)] = i
  pieces = []
  for module in CHAR_LM_MODULES:
    path = os.path.join(stdlib, module + ".py")
    if not os.path.exists(path):
      continue
    with open(path, encoding="utf-8") as f:
      codes = np.frombuffer(f.read().encode("utf-32-le"), np.uint32)
    pieces.append(np.where(codes < 128, lookup[np.minimum(codes, 127)], 0).astype(np.int32))
  if not pieces:
    raise RuntimeError(f"char_lm: none of the corpus modules were found under {stdlib}")
  return np.concatenate(pieces)


def _char_lm(length: int, split: str = "train") -> Task:
  r"""Character-level language modelling on Python standard-library sources.

  The corpus is the source of :data:`CHAR_LM_MODULES` read from
  ``sysconfig.get_paths()["stdlib"]`` (no download; its text depends on the
  Python version, so the baseline is computed from the stream itself). Characters
  map to :data:`CHAR_VOCAB` (98 ids). The first 90 % of the stream is ``"train"``,
  the last 10 % ``"test"``. ``sample`` takes windows of ``T + 1`` tokens at uniform
  random starts: one-hot inputs ``(B, T, 98)``, next-token targets ``(B, T)``.
  For truncated BPTT use ``task.stream`` (a :class:`Stream`). Baseline: the
  cross-entropy of the training unigram (add-one) on this split; metric: bits
  per character.
  """
  _check_split("char_lm", split)
  corpus = _char_corpus()
  cut = int(len(corpus) * (1 - CHAR_LM_TEST_FRACTION))
  tokens_np = corpus[:cut] if split == "train" else corpus[cut:]
  if len(tokens_np) < length + 1:
    raise ValueError(
      f"char_lm: the {split} stream has {len(tokens_np)} tokens, fewer than length + 1 = "
      f"{length + 1}"
    )
  vocab_size = len(CHAR_VOCAB)
  counts = np.bincount(corpus[:cut], minlength=vocab_size) + 1.0
  log_unigram = np.log(counts / counts.sum())
  baseline = float(-np.mean(log_unigram[tokens_np]))
  tokens = jnp.asarray(tokens_np)
  num_starts = len(tokens_np) - length

  def sample(key: Array, batch_size: int) -> Batch:
    batch_size = _check_batch_size(batch_size)
    (words,) = _random_words(key, batch_size, (1,))
    starts_B = _below_n(words[:, 0], num_starts)
    windows_BxW = jax.vmap(lambda s: jax.lax.dynamic_slice_in_dim(tokens, s, length + 1))(starts_B)
    return _next_token_batch(windows_BxW, vocab_size)

  name = "char_lm"
  loss = _losses(name, CLASSIFICATION, vocab_size)
  return Task(
    name=name,
    length=length,
    input_size=vocab_size,
    output_size=vocab_size,
    kind=CLASSIFICATION,
    sample=sample,
    loss=loss,
    metric=lambda outputs, batch: loss(outputs, batch) / math.log(2),
    metric_name="bits_per_character",
    baseline=baseline,
    baseline_formula="cross-entropy of the training unigram (add-one) on the split",
    solved=_loss_below(baseline / 2),
    reference=(
      f"character-level LM on {len(CHAR_LM_MODULES)} standard-library modules ({split} "
      "split); solved (rnnlab convention): CE below half the unigram baseline"
    ),
    stream=Stream(tokens, CHAR_VOCAB),
  )


# --------------------------------------------------------------------------- registry


def _check_positive(name: str, **values: Any) -> None:
  for key, value in values.items():
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value <= 0:
      raise ValueError(f"{name}: {key} must be a positive int; got {value!r}")


def _check_split(name: str, split: Any) -> None:
  if split not in ("train", "test"):
    raise ValueError(f"{name}: split must be 'train' or 'test'; got {split!r}")


# name -> (builder, smallest length for which the definition makes sense)
_BUILDERS: dict[str, tuple[Callable[..., Task], int]] = {
  "adding_hs97": (_adding_hs97, 10),
  "adding": (_adding_arjovsky, 2),
  "adding_pascanu": (_adding_pascanu, 10),
  "multiplication": (_multiplication, 10),
  "copy": (_copy, 1),
  "temporal_order_2bit": (_temporal_order_2bit, 10),
  "temporal_order_3bit": (_temporal_order_3bit, 10),
  "random_permutation": (_random_permutation, 1),
  "noiseless_memorization": (_noiseless_memorization, 1),
  "digits": (_digits_plain, 64),
  "digits_permuted": (_digits_permuted, 64),
  "sine": (_sine, 1),
  "char_lm": (_char_lm, 1),
}

TASKS: tuple[str, ...] = tuple(_BUILDERS)


def get(name: str, length: int, **kwargs: Any) -> Task:
  """The task ``name`` with dependency length ``length`` (T).

  Args:
    name: one of :data:`TASKS`.
    length: T, a positive int (at least 10 for the Pascanu and H&S tasks, whose
      marker windows are 10 % of T; exactly 64 for the digits).
    **kwargs: task options: ``adding_hs97(zero_first_x1=True)``,
      ``copy(num_symbols=8, num_copy=10)``,
      ``noiseless_memorization(num_values=5, num_positions=10)``,
      ``digits(split="train")``, ``digits_permuted(split="train", permutation_seed=0)``,
      ``sine(noise=0.1, dx=0.1, horizon=1)``, ``char_lm(split="train")``.

  Returns:
    A :class:`Task`.
  """
  if name not in _BUILDERS:
    raise ValueError(f"unknown task {name!r}; expected one of {', '.join(TASKS)}")
  builder, min_length = _BUILDERS[name]
  if isinstance(length, bool) or not isinstance(length, int | np.integer):
    raise ValueError(f"task {name!r}: length must be a positive int; got {length!r}")
  if length < min_length:
    raise ValueError(f"task {name!r}: length must be >= {min_length}; got {length}")
  options = list(inspect.signature(builder).parameters)[1:]
  unknown = sorted(set(kwargs) - set(options))
  if unknown:
    raise ValueError(
      f"task {name!r}: unknown option(s) {', '.join(unknown)}; expected "
      f"{', '.join(options) if options else 'none'}"
    )
  return builder(int(length), **kwargs)


__all__ = [
  "Batch",
  "CHAR_LM_MODULES",
  "CHAR_LM_TEST_FRACTION",
  "CHAR_VOCAB",
  "CLASSIFICATION",
  "DIGITS_TEST_SIZE",
  "REGRESSION",
  "SINE_NUM_STARTS",
  "Stream",
  "TASKS",
  "Task",
  "get",
]
