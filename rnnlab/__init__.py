"""rnnlab: a functional JAX toolkit for recurrent networks and their gradients.

Where things live: the cell updates in :mod:`rnnlab.cells`, the unroll in
:mod:`rnnlab.scan`, sequence layers in :mod:`rnnlab.layers`, the four RNN types
in :mod:`rnnlab.models`, weight schemes in :mod:`rnnlab.initializers`, the
long-dependency tasks in :mod:`rnnlab.tasks`, the training loop in :mod:`rnnlab.train`,
the gradient-flow diagnostics in :mod:`rnnlab.diagnostics` (which find the unrolls of a
loss through the probe-tap scope of :mod:`rnnlab.probes`) and their figures in
:mod:`rnnlab.plot` (loaded on first use of ``rnnlab.plot``: matplotlib costs about
0.4 s to import); saving and loading pytrees (params, a train state) in
:mod:`rnnlab.checkpoint` (``rnnlab.save``, ``rnnlab.load``), parameter tables in
:mod:`rnnlab.summary` (``rnnlab.param_summary``); property checks for any cell, a
user's own included, to call from a test suite in :mod:`rnnlab.testing`.
Exact weight conversion to and from PyTorch, flax and Keras, and flax module wrappers,
are in :mod:`rnnlab.interop` (imported on demand: ``from rnnlab import interop``).
"""

from rnnlab import (
  cells,
  checkpoint,
  diagnostics,
  initializers,
  layers,
  models,
  probes,
  scan,
  summary,
  tasks,
  testing,
  train,
)
from rnnlab.cells import (
  Cell,
  CellParts,
  ElmanParams,
  GRUParams,
  LayerNormGRUParams,
  LayerNormLSTMParams,
  LSTMCarry,
  LSTMParams,
  diagonal,
  elman,
  gru,
  layer_norm_gru,
  layer_norm_lstm,
  lstm,
)
from rnnlab.cells import stack as stack_cells
from rnnlab.checkpoint import load, save
from rnnlab.layers import (
  Layer,
  bidirectional,
  dense,
  embedding,
  rnn,
  stacked,
  variational_dropout,
)
from rnnlab.models import (
  encoder_decoder,
  many_to_many,
  many_to_one,
  one_to_many,
  shift_right,
)
from rnnlab.scan import unroll
from rnnlab.summary import param_count, param_summary

__version__ = "0.1.0"


def __getattr__(name: str):
  if name == "plot":
    import importlib

    return importlib.import_module("rnnlab.plot")
  raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")


__all__ = [
  "Cell",
  "CellParts",
  "ElmanParams",
  "GRUParams",
  "LSTMCarry",
  "LSTMParams",
  "Layer",
  "LayerNormGRUParams",
  "LayerNormLSTMParams",
  "bidirectional",
  "cells",
  "checkpoint",
  "dense",
  "diagnostics",
  "diagonal",
  "elman",
  "embedding",
  "encoder_decoder",
  "gru",
  "initializers",
  "layer_norm_gru",
  "layer_norm_lstm",
  "layers",
  "load",
  "lstm",
  "many_to_many",
  "many_to_one",
  "models",
  "one_to_many",
  "param_count",
  "param_summary",
  "plot",
  "probes",
  "rnn",
  "save",
  "scan",
  "shift_right",
  "stack_cells",
  "stacked",
  "summary",
  "tasks",
  "testing",
  "train",
  "unroll",
  "variational_dropout",
]
