"""The gallery's first three examples: hello (character RNN), sine (many-to-many), classify.

Each example's quick settings run in-process (or, for the command line, in a
subprocess) and must write their outputs and learn something; the "hello"
forward pass is checked against a NumPy reference written here from the equations.
"""

import json
import os
import re
import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments.examples import classify, hello, sine
from experiments.examples import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A lecture's worked weights: two decimals, as written on a board (H = 3).
LECTURE_WEIGHTS = {
  "w_ih": [[0.5, -0.3, 0.1], [-0.2, 0.8, 0.4], [0.3, 0.1, -0.6], [0.7, -0.5, 0.2]],
  "w_hh": [[0.1, 0.4, -0.3], [-0.5, 0.2, 0.6], [0.3, -0.1, 0.2]],
  "b": [0.05, -0.1, 0.0],
  "w_out": [[1.0, -0.5, 0.3, 0.2], [-0.4, 0.9, -0.2, 0.1], [0.2, 0.3, -0.7, 0.6]],
  "b_out": [0.1, 0.0, -0.1, 0.05],
}


def quiet(*args):
  del args


def numpy_hello_forward(weights, text):
  """h_t = tanh(x_t W_ih + h_{t-1} W_hh + b), y_t = h_t W_out + b_out, p_t = softmax(y_t)."""
  w = {k: np.asarray(v, np.float64) for k, v in weights.items()}
  h = np.zeros(w["w_hh"].shape[0])
  hs, ys, ps = [], [], []
  for letter in text:
    x = np.zeros(4)
    x["helo".index(letter)] = 1.0
    h = np.tanh(x @ w["w_ih"] + h @ w["w_hh"] + w["b"])
    y = h @ w["w_out"] + w["b_out"]
    p = np.exp(y - y.max()) / np.exp(y - y.max()).sum()
    hs.append(h)
    ys.append(y)
    ps.append(p)
  return np.array(hs), np.array(ys), np.array(ps)


def run_example(module, *flags):
  return subprocess.run(
    [sys.executable, "-m", f"experiments.examples.{module}", *flags],
    cwd=ROOT,
    capture_output=True,
    text=True,
    timeout=300,
  )


# --------------------------------------------------------------------------- hello


def test_hello_forward_equals_numpy_reference():
  params = hello.params_from_dict(LECTURE_WEIGHTS)
  fwd = hello.forward(params, hello.one_hot("hell"))
  hs, ys, ps = numpy_hello_forward(LECTURE_WEIGHTS, "hell")
  np.testing.assert_allclose(fwd.hidden, hs, atol=1e-6)
  np.testing.assert_allclose(fwd.scores, ys, atol=1e-6)
  np.testing.assert_allclose(fwd.probs, ps, atol=1e-6)
  text = hello.format_forward("hell", "ello", fwd)
  for t in range(4):  # the printed step-by-step numbers are the reference's
    assert f"{hs[t, 1]:+.4f}" in text.splitlines()[1 + 4 * t + 1]
    assert f"{ps[t, 3]:+.4f}" in text.splitlines()[1 + 4 * t + 3]


def test_hello_weights_round_trip_and_errors():
  params = hello.params_from_dict(LECTURE_WEIGHTS)
  back = hello.params_to_dict(params)
  assert set(back) == set(LECTURE_WEIGHTS)
  for k, v in LECTURE_WEIGHTS.items():
    np.testing.assert_allclose(back[k], v, rtol=1e-7)  # float32 of two-decimal numbers
  bad_shape = dict(LECTURE_WEIGHTS, w_out=[[1.0, 2.0, 3.0]] * 3)
  with pytest.raises(ValueError, match=r"weights\['w_out'\] has shape \(3, 3\); expected \(3, 4\)"):
    hello.params_from_dict(bad_shape)
  with pytest.raises(ValueError, match=r"missing \['b_out'\]"):
    hello.params_from_dict({k: v for k, v in LECTURE_WEIGHTS.items() if k != "b_out"})
  with pytest.raises(ValueError, match="not a numeric"):
    hello.params_from_dict(dict(LECTURE_WEIGHTS, b=["a", "b", "c"]))
  with pytest.raises(ValueError, match="outside the vocabulary"):
    hello.encode("hallo")


def test_hello_cli_trains_from_given_weights(tmp_path):
  weights_file = tmp_path / "lecture.json"
  weights_file.write_text(json.dumps(LECTURE_WEIGHTS))
  workdir = tmp_path / "hello"
  out = run_example("hello", "--quick", f"--weights={weights_file}", f"--workdir={workdir}")
  assert out.returncode == 0, out.stderr
  results = json.loads((workdir / "hello.json").read_text())
  hs, ys, ps = numpy_hello_forward(LECTURE_WEIGHTS, "hell")
  np.testing.assert_allclose(results["forward_before"]["hidden"], hs, atol=1e-6)
  np.testing.assert_allclose(results["forward_before"]["probs"], ps, atol=1e-6)
  assert np.argmax(ps[-1]) != 3  # the lecture weights do not yet predict 'o' after "hell"
  assert results["prediction"] == "ello" and results["learned"]
  losses = results["losses"]
  assert len(losses) == 60 and losses[-1] < 0.5 * losses[0]
  assert f"epoch   60  loss {losses[-1]:.4f}" in out.stdout
  assert (workdir / "hello.png").stat().st_size > 1000
  # The trained weights reproduce the trained forward pass when fed back.
  trained = json.loads((workdir / "hello_trained_weights.json").read_text())
  _, _, ps_after = numpy_hello_forward(trained, "hell")
  assert "".join("helo"[i] for i in np.argmax(ps_after, -1)) == "ello"
  np.testing.assert_allclose(results["forward_after"]["probs"], ps_after, atol=1e-5)


# --------------------------------------------------------------------------- sine


def test_sine_has_461_parameters():
  # The shapes of the params pytree that init builds (traced, nothing computed).
  params = jax.eval_shape(lambda: sine.make_model(20).init(jax.random.key(0), 1))
  assert sine.parameter_count(params) == 461
  summary, total = sine.model_summary(params)
  assert total == 461
  assert summary.splitlines()[1].split()[-1] == "440"  # elman: 20 + 400 + 20
  assert summary.splitlines()[2].split()[-1] == "21"  # dense: 20 + 1


def test_sine_quick_run(tmp_path):
  results = sine.run(workdir=str(tmp_path), num_points=100, epochs=5, echo=quiet)
  assert results["parameter_count"] == 461
  val = results["val_loss"]
  assert len(val) == 5 and np.all(np.isfinite(val))
  assert val[-1] < results["val_loss_at_init"] / 10  # decreased from the untrained model
  assert results["train_loss"][-1] < results["train_loss"][0]
  horizon = 100 - (100 - 10 - round(0.1 * 90)) - 10  # from the first validation window
  assert len(results["free_run"]) == horizon and np.all(np.isfinite(results["free_run"]))
  assert (tmp_path / "sine.png").stat().st_size > 1000
  assert json.loads((tmp_path / "sine.json").read_text())["val_loss"] == val


def test_sine_free_run_starts_with_the_teacher_forced_forecast():
  model = sine.make_model(8)
  params = model.init(jax.random.key(1), 1)
  seed_W = np.sin(np.linspace(0, 1, 10)).astype(np.float32)
  forecasts = np.asarray(sine.free_run(params, seed_W, 3))
  teacher = np.asarray(model.apply(params, seed_W[:, None]))[:, 0]
  np.testing.assert_allclose(forecasts[0], teacher[-1], atol=1e-6)
  # The second forecast is what the model says after reading its own first forecast.
  fed = np.asarray(model.apply(params, np.append(seed_W, forecasts[0])[:, None]))[:, 0]
  np.testing.assert_allclose(forecasts[1], fed[-1], atol=1e-6)


# --------------------------------------------------------------------------- classify


def test_classify_quick_digits(tmp_path):
  pytest.importorskip("sklearn", reason="the digits need scikit-learn (pip install rnnlab[digits])")
  num_test = 500
  results = classify.run(
    workdir=str(tmp_path), cell="gru", hidden=32, steps=150, num_test=num_test, echo=quiet
  )
  assert results["accuracy"] > 0.2  # chance is ~0.1 for 10 balanced classes
  matrix = np.asarray(results["confusion_matrix"])
  assert matrix.shape == (10, 10) and matrix.sum() == num_test
  # Rows sum to the class counts of the test draws, recomputed here from the same key.
  k_test = jax.random.split(jax.random.key(0), 3)[2]
  batch = classify.make_task("digits", None, split="test").sample(k_test, num_test)
  counts = np.bincount(np.asarray(classify.labels_of(batch)), minlength=10)
  np.testing.assert_array_equal(matrix.sum(axis=1), counts)
  assert np.trace(matrix) == round(results["accuracy"] * num_test)
  assert (tmp_path / "classify.png").stat().st_size > 1000


def test_confusion_matrix_counts():
  matrix = classify.confusion_matrix(np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 2, 0, 2]), 3)
  np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])


@pytest.mark.slow
def test_classify_falls_back_without_sklearn(tmp_path, monkeypatch):
  monkeypatch.setattr(classify, "has_sklearn", lambda: False)
  lines = []
  results = classify.run(workdir=str(tmp_path), hidden=8, steps=5, num_test=20, echo=lines.append)
  assert results["task"] == "temporal_order_2bit"
  assert "scikit-learn is missing" in lines[0]


# --------------------------------------------------------------------------- command lines


def test_bad_settings_raise_before_writing(tmp_path):
  workdir = tmp_path / "out"
  cases = [
    (hello.run, dict(epochs=-1), "epochs must be an int >= 0; got -1"),
    (hello.run, dict(optimizer="rms"), "optimizer='rms' is not supported"),
    (sine.run, dict(hidden=0), "--hidden must be a positive int; got 0"),
    (sine.run, dict(num_points=15, batch_size=8), "need at least --batch_size=8"),
    (classify.run, dict(cell="rnn"), "--cell='rnn' is not supported"),
    (classify.run, dict(task="adding"), "--task='adding' is not supported"),
  ]
  for run, kwargs, message in cases:
    with pytest.raises(ValueError, match=re.escape(message)):
      run(workdir=str(workdir), echo=quiet, **kwargs)
    assert not workdir.exists()  # nothing half-written
  a_file = tmp_path / "file"
  a_file.write_text("")
  with pytest.raises(ValueError, match="is not a folder"):
    workdir_lib.prepare(str(a_file))


@pytest.mark.parametrize(
  "module, flag, message",
  [
    ("hello", "--weights_inline={", "not valid JSON"),
    ("classify", "--cell=rnn", "--cell='rnn' is not supported"),
    ("sine", "--epochs=abc", "flag --epochs=abc: invalid literal"),
  ],
)
def test_bad_flags_exit_2_with_one_line(tmp_path, module, flag, message):
  workdir = tmp_path / "out"
  out = run_example(module, flag, f"--workdir={workdir}")
  assert out.returncode == 2
  assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1
  assert not workdir.exists()  # nothing half-written


def test_hello_until_learned_freezes_at_the_first_correct_epoch():
  params = hello.params_from_dict(LECTURE_WEIGHTS)
  args = (params, hello.one_hot("hell"), hello.encode("ello"), 0.1)
  _, losses, predicted = hello.train(*args, epochs=30, optimizer="adam")
  _, stopped, predicted_stopped = hello.train(
    *args, epochs=30, optimizer="adam", until_learned=True
  )
  correct = np.all(np.asarray(predicted) == np.asarray(hello.encode("ello")), axis=-1)
  assert correct.any() and not correct[0]
  first = int(np.argmax(correct))
  np.testing.assert_allclose(stopped[: first + 1], losses[: first + 1], rtol=1e-6)
  assert np.all(np.asarray(stopped[first:]) == float(stopped[first]))  # frozen from then on
  assert not np.all(np.asarray(losses[first:]) == float(losses[first]))  # the full run goes on
  # Same inputs, same numbers (bitwise).
  _, again, _ = hello.train(*args, epochs=30, optimizer="adam", until_learned=True)
  np.testing.assert_array_equal(again, stopped)
