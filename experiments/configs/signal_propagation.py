r"""The signal-propagation experiment: the curse of memory (Zucchet & Orvieto 2024) in one command.

    python -m experiments.signal_propagation --workdir=runs/signal_propagation      # default
    python -m experiments.signal_propagation \
      --config=experiments/configs/signal_propagation.py:quick --workdir=/tmp/sp

Nothing is trained. For the diagonal linear recurrence ``h_{t+1} = lam h_t + x_t``
driven by white noise it measures, by Monte Carlo over sequences (and over the
last ``window`` steps of each), the sensitivity ``E[(dh_t/dlam)^2]`` and the
forward variance ``E[h_t^2]`` at every ``|lam|`` of a grid, and compares them
with their closed forms; then the same two quantities for the Elman, LSTM and
GRU cells at initialisation, with ``|lam|`` the cell's memory knob (see
``experiments/signal_propagation.py``).

Presets: ``quick`` (seconds: the CI smoke run) and ``default`` (the published
numbers, a few minutes on 2 CPU cores). Every field can be overridden with
``--config.<field>=<value>``, e.g. ``--config.diagonal.sequences=2048``.
"""

from __future__ import annotations

import ml_collections
import numpy as np

PRESETS = ("quick", "default")
CELLS = ("elman_linear", "elman_tanh", "lstm", "gru")


def lam_grid(decades: float, n: int, start: float = 0.0) -> tuple[float, ...]:
  """``n`` values ``1 - 10**-s`` for ``s`` evenly spaced in ``[start, decades]`` (s=0: lam=0).

  Evenly spaced in ``log(1 - lam)``, i.e. in the log of the memory time ``1/(1 - lam)``.
  """
  s = np.linspace(start, decades, n)
  return tuple(round(float(1.0 - 10.0**-v), 6) for v in s)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The experiment's config for the preset ``arg`` (``quick`` or ``default``; None: default)."""
  preset = (arg or "default").strip()
  if preset not in PRESETS:
    raise ValueError(f"unknown preset {preset!r} in the config argument; expected one of {PRESETS}")
  config = ml_collections.ConfigDict()
  config.preset = preset  # the preset that filled the defaults: quick | default
  config.seed = 0  # the one PRNG seed: inputs and initialisations derive from it

  config.diagonal = ml_collections.ConfigDict()
  config.diagonal.lams = lam_grid(3.0, 25)  # the |lam| grid of the diagonal recurrence, in [0, 1)
  config.diagonal.T = 8000  # steps per sequence; needs T >> 1/(1 - max |lam|) for stationarity
  config.diagonal.window = 2000  # the measurement averages the last `window` steps of each sequence
  config.diagonal.sequences = 4096  # independent white-noise sequences (the Monte-Carlo samples)
  config.diagonal.phase = 1.0  # the phase (radians) of the complex lam = |lam| exp(i phase)

  config.cells = ml_collections.ConfigDict()
  config.cells.names = CELLS  # the cells at initialisation (elman_linear, elman_tanh, lstm, gru)
  config.cells.lams = lam_grid(2.0, 12, start=0.3)  # their |lam| grid (definitions: report.md)
  config.cells.hidden_size = 16  # H (the input size is H too)
  config.cells.T = 1500  # steps per sequence
  config.cells.window = 500  # the measurement averages the last `window` steps
  config.cells.sequences = 256  # sequences per |lam| (each with its own random tangent)

  config.dpi = 200  # resolution of the PNG figure

  if preset == "quick":
    config.diagonal.lams = lam_grid(1.0, 6)
    config.diagonal.T = 300
    config.diagonal.window = 100
    config.diagonal.sequences = 512
    config.cells.lams = lam_grid(1.0, 3, start=0.3)
    config.cells.hidden_size = 4
    config.cells.T = 80
    config.cells.window = 20
    config.cells.sequences = 16
    config.dpi = 100
  return config
