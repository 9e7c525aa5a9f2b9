r"""Gradient flossing (Engelken, NeurIPS 2023): the top Lyapunov exponents pushed toward 0.

The penalty on a cell ``c_t = f_theta(c_{t-1}, x_t)`` driven by input sequences:

.. math::
   Q_t R_t = J_t Q_{t-1}, \quad J_t = \partial c_t / \partial c_{t-1}, \qquad
   \lambda_i = \frac{1}{T - T_0} \sum_{t > T_0} \log |R_t[i, i]|, \qquad
   L_\text{floss}(\theta) = \frac{1}{k} \sum_{i=1}^{k} \lambda_i^2

(:func:`rnnlab.diagnostics.lyapunov_spectrum`: ``Q_0`` a random orthonormal
``(n, k)`` frame, ``k`` jvps of the step per step, ``T_0`` the transient), averaged
over the sequences. Every step of it is differentiable (the QR through
:func:`rnnlab.linalg.qr`'s JVP rule), so ``jax.grad`` of the penalty is the exact
gradient of the finite-time exponents. Since gradients over a lag ``l`` scale like
``exp(lambda_i l)``, exponents near 0 keep the long-lag gradients from vanishing or
exploding; Engelken (2023) shows it lets tanh RNNs learn longer delays (delayed XOR, copy).

The reference code (github.com/RainerEngelken/GradientFlossing, Julia; and the minimal
PyTorch script in RainerEngelken/SurrogateGradientFlossing): the loss is
``mean((lambda - target)^2)`` with target 0; the QR runs at every step; ``Q_0`` is
drawn from a fixed seed (the same frame at every flossing update); the exponents are
taken on one sequence (batch 1) of fresh task inputs at each flossing update; the
Julia script leaves out ``10 + ceil(T_p / 10)`` steps of its ``T_p = 55`` (29 %) as
transient, the PyTorch script none (it starts from zeros on the second half of a
1024-step input); the Julia script flosses before training (50 updates on the
flossing loss alone, "preflossing") and during it (50 updates every 10 epochs, twice),
with ``k = 75`` of ``N = 80`` units; the PyTorch script ``k = 16`` of 64. The flossed
parameters are the recurrent cell's (input weights, recurrent weights, biases), not
the readout. ``config.floss`` of :mod:`rnnlab.train` follows that: see its comments.

References:
  R. Engelken, "Gradient Flossing: Improving Gradient Descent through Dynamic Control
  of Jacobians", NeurIPS 2023 (arXiv:2312.17306).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from rnnlab import diagnostics as diag_lib
from rnnlab.cells import Cell

Array = jax.Array
PyTree = Any

__all__ = ["flossing_loss", "penalty"]


def penalty(exponents: Array) -> Array:
  """``mean(lambda_i^2)`` over every axis of ``exponents`` (the sequences and the ``k``)."""
  return jnp.mean(jnp.square(exponents))


def flossing_loss(
  cell: Cell,
  params: PyTree,
  xs: Array,
  carry: PyTree | None = None,
  *,
  num_exponents: int,
  transient: int = 0,
  key: Array | None = None,
  time_major: bool = False,
) -> Array:
  r"""The flossing loss ``mean_i lambda_i^2`` of the top-k Lyapunov exponents (module doc).

  Differentiable in ``params`` (and ``xs``, ``carry``): use it with ``jax.grad``.
  For a model's stacked layers pass :func:`rnnlab.cells.stack` of its cells and the
  tuple of their params: the exponents are then those of the whole stacked state.

  Args:
    cell, params, xs, carry, time_major: as :func:`rnnlab.diagnostics.lyapunov_spectrum`
      (``xs`` ``(*batch, T, I)``; ``carry`` defaults to the cell's initial carry).
    num_exponents: k, at most the state size n.
    transient: the first steps left out of the exponents' mean.
    key: PRNG key for the frame ``Q_0`` (default ``key(0)``; keep it fixed across
      updates, as the reference does, so the penalty is a function of the params alone).

  Returns:
    A scalar: ``mean`` over the sequences and the ``k`` exponents of ``lambda_i^2``.
  """
  exponents = diag_lib.lyapunov_spectrum(
    cell,
    params,
    xs,
    carry,
    num_exponents=num_exponents,
    transient=transient,
    key=key,
    time_major=time_major,
  )
  return penalty(exponents)
