"""Tests for rnnlab.summary: parameter counts per sub-tree against hand-computed values."""

import jax
import jax.numpy as jnp
import pytest

import rnnlab
from rnnlab import train as rt

I, H, O = 2, 16, 1  # the adding problem's input and output sizes, 16 units


def lstm_config(num_layers=2):
  c = rt.default_config()
  c.model.cell = "lstm"
  c.model.hidden_size = H
  c.model.num_layers = num_layers
  return c


def lstm_params():
  """Two stacked LSTM layers and a dense readout, traced (nothing computed)."""
  model = rt.make_model(lstm_config())
  return jax.eval_shape(model.init, jax.random.key(0))


# An LSTM layer: w_ih (in, 4H), w_hh (H, 4H), b (4H,) -- gates i, f, g, o fused.
LAYER_0 = I * 4 * H + H * 4 * H + 4 * H  # 1,216
LAYER_1 = H * 4 * H + H * 4 * H + 4 * H  # 2,112
READOUT = H * O + O  # 17


def test_lstm_counts_per_layer_and_total():
  summary = rnnlab.param_summary(lstm_params())
  assert [(r.name, r.kind, r.count) for r in summary.rows] == [
    ("encoder[0]", "LSTMParams", LAYER_0),
    ("encoder[1]", "LSTMParams", LAYER_1),
    ("readout", "DenseParams", READOUT),
  ]
  assert summary.total == rnnlab.param_count(lstm_params()) == LAYER_0 + LAYER_1 + READOUT
  assert summary.bytes == 4 * summary.total and summary.num_arrays == 8
  assert summary.rows[0].leaves == (
    ("w_ih", (I, 4 * H), jnp.float32),
    ("w_hh", (H, 4 * H), jnp.float32),
    ("b", (4 * H,), jnp.float32),
  )
  lines = str(summary).splitlines()
  assert lines[0].split() == ["sub-tree", "leaves", "params"]
  assert [line.split()[-1] for line in lines[1:]] == ["1,216", "2,112", "17", "3,345"]
  assert lines[1].startswith("encoder[0] (LSTMParams)") and "w_ih (2, 64)" in lines[1]
  assert lines[-1].startswith("total") and "8 arrays, 13.1 KiB" in lines[-1]
  # Real arrays count the same as their shapes.
  params = rt.make_model(lstm_config(1)).init(jax.random.key(0))
  assert rnnlab.param_count(params) == LAYER_0 + READOUT


def test_depth_groups_by_path_prefix_and_dtypes_show():
  params = lstm_params()
  by_top = rnnlab.param_summary(params, depth=1)
  assert [(r.name, r.count) for r in by_top.rows] == [
    ("encoder", LAYER_0 + LAYER_1),
    ("readout", READOUT),
  ]
  assert by_top.rows[0].leaves[3][0] == "[1].w_ih"
  (whole,) = rnnlab.param_summary(params, depth=0).rows
  assert (whole.name, whole.kind, whole.count) == ("(root)", "ModelParams", 3345)
  # A train state: the Adam moments double the params; scalars are counted too.
  state = jax.eval_shape(rt.make_trainer(lstm_config()).init, jax.random.key(0))
  assert rnnlab.param_count(state.opt_state) == 2 * 3345 + 1 + 5 + 1 + 1  # + counts, hparams
  mixed = rnnlab.param_summary({"w": jnp.zeros((2, 3), jnp.bfloat16), "n": jnp.int32(0)})
  assert "['w'] (2, 3) bfloat16" in str(mixed) and "['n'] () int32" in str(mixed)
  assert mixed.bytes == 2 * 6 + 4
  with pytest.raises(ValueError, match="depth=-1 is invalid"):
    rnnlab.param_summary(params, depth=-1)
