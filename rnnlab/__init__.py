"""rnnlab: a functional JAX toolkit for recurrent networks and their gradients.

Where things live: the cell updates in :mod:`rnnlab.cells`, the unroll in
:mod:`rnnlab.scan`, sequence layers in :mod:`rnnlab.layers`, the four RNN types
in :mod:`rnnlab.models`, weight schemes in :mod:`rnnlab.initializers`, the
long-dependency tasks in :mod:`rnnlab.tasks`, the training loop in :mod:`rnnlab.train`,
the gradient-flow diagnostics in :mod:`rnnlab.diagnostics` (which find the unrolls of a
loss through the probe-tap scope of :mod:`rnnlab.probes`).
Exact weight conversion to and from PyTorch, flax and Keras, and flax module wrappers,
are in :mod:`rnnlab.interop` (imported on demand: ``from rnnlab import interop``).
"""

from rnnlab import cells, diagnostics, initializers, layers, models, probes, scan, tasks, train
from rnnlab.cells import (
  Cell,
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

__version__ = "0.1.0"

__all__ = [
  "Cell",
  "ElmanParams",
  "GRUParams",
  "LSTMCarry",
  "LSTMParams",
  "Layer",
  "LayerNormGRUParams",
  "LayerNormLSTMParams",
  "bidirectional",
  "cells",
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
  "lstm",
  "many_to_many",
  "many_to_one",
  "models",
  "one_to_many",
  "probes",
  "rnn",
  "scan",
  "shift_right",
  "stack_cells",
  "stacked",
  "tasks",
  "train",
  "unroll",
  "variational_dropout",
]
