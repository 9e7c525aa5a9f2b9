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

import importlib
from typing import TYPE_CHECKING, Any

# The package imports its modules on first use (PEP 562), so that ``import rnnlab.train_config``
# or ``rnnlab.runner.config`` (the config schemas, which a command line reads before JAX may
# start) does not import JAX. ``rnnlab.lstm`` imports rnnlab.cells (and JAX) when first read.
_MODULES = (
  "cells",
  "checkpoint",
  "diagnostics",
  "flossing",
  "initializers",
  "layers",
  "linalg",
  "models",
  "plot",
  "probes",
  "scan",
  "summary",
  "tasks",
  "testing",
  "train",
)
_NAMES = {
  "Cell": "cells",
  "CellParts": "cells",
  "ElmanParams": "cells",
  "ExpRNNParams": "cells",
  "GRUParams": "cells",
  "LayerNormGRUParams": "cells",
  "LayerNormLSTMParams": "cells",
  "LSTMCarry": "cells",
  "LSTMParams": "cells",
  "LRUCarry": "cells",
  "LRUParams": "cells",
  "diagonal": "cells",
  "elman": "cells",
  "exprnn": "cells",
  "gru": "cells",
  "layer_norm_gru": "cells",
  "layer_norm_lstm": "cells",
  "lstm": "cells",
  "lru": "cells",
  "stack_cells": ("cells", "stack"),
  "load": "checkpoint",
  "save": "checkpoint",
  "Layer": "layers",
  "bidirectional": "layers",
  "dense": "layers",
  "embedding": "layers",
  "rnn": "layers",
  "stacked": "layers",
  "variational_dropout": "layers",
  "encoder_decoder": "models",
  "many_to_many": "models",
  "many_to_one": "models",
  "one_to_many": "models",
  "shift_right": "models",
  "unroll": "scan",
  "param_count": "summary",
  "param_summary": "summary",
}

if TYPE_CHECKING:  # what static tools and IDEs see; at run time __getattr__ imports on first use
  from rnnlab import (  # noqa: F401
    cells,
    checkpoint,
    diagnostics,
    flossing,
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
  from rnnlab.cells import (  # noqa: F401
    Cell,
    CellParts,
    ElmanParams,
    ExpRNNParams,
    GRUParams,
    LayerNormGRUParams,
    LayerNormLSTMParams,
    LRUCarry,
    LRUParams,
    LSTMCarry,
    LSTMParams,
    diagonal,
    elman,
    exprnn,
    gru,
    layer_norm_gru,
    layer_norm_lstm,
    lru,
    lstm,
  )
  from rnnlab.cells import stack as stack_cells  # noqa: F401
  from rnnlab.checkpoint import load, save  # noqa: F401
  from rnnlab.layers import (  # noqa: F401
    Layer,
    bidirectional,
    dense,
    embedding,
    rnn,
    stacked,
    variational_dropout,
  )
  from rnnlab.models import (  # noqa: F401
    encoder_decoder,
    many_to_many,
    many_to_one,
    one_to_many,
    shift_right,
  )
  from rnnlab.scan import unroll  # noqa: F401
  from rnnlab.summary import param_count, param_summary  # noqa: F401

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
  if name in _MODULES:
    return importlib.import_module(f"rnnlab.{name}")
  if name in _NAMES:
    module, attr = _NAMES[name] if isinstance(_NAMES[name], tuple) else (_NAMES[name], name)
    value = getattr(importlib.import_module(f"rnnlab.{module}"), attr)
    globals()[name] = value  # later reads skip this function
    return value
  raise AttributeError(f"module 'rnnlab' has no attribute {name!r}")


def __dir__() -> list[str]:
  return sorted(set(globals()) | set(__all__))


__all__ = [
  "Cell",
  "CellParts",
  "ElmanParams",
  "GRUParams",
  "LSTMCarry",
  "ExpRNNParams",
  "LRUCarry",
  "LRUParams",
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
  "exprnn",
  "encoder_decoder",
  "flossing",
  "gru",
  "initializers",
  "layer_norm_gru",
  "layer_norm_lstm",
  "layers",
  "linalg",
  "load",
  "lru",
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
