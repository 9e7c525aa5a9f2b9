"""Weight initialisation schemes for recurrent cells, all explicit and named.

Every initialiser is a function ``init(key, shape, dtype) -> array`` (the
``jax.nn.initializers`` signature), so any ``jax.nn.initializers`` function can
be passed wherever a name is accepted. Peers disagree on defaults (flax:
LeCun-normal input, orthogonal recurrent, zero bias; PyTorch: everything
``U(-1/sqrt(H), 1/sqrt(H))``; Keras: Glorot-uniform input, orthogonal
recurrent), so rnnlab never relies on one silently: each cell states its own.

Recurrent schemes (``recurrent_init=``, scaled by ``gain=g``; for gated cells
each gate's ``(H, H)`` block is initialised separately):

=============  ==============================  =================================
name           distribution                    what it gives
=============  ==============================  =================================
orthogonal     ``g * Q``, Q Haar-orthogonal    every singular value equals g
gaussian       ``N(0, g**2 / H)``              spectral radius about g (circle
                                               law), largest singular value ~2g
identity       ``g * I``                       IRNN (Le et al. 2015)
uniform        ``U(-g/sqrt(H), g/sqrt(H))``    PyTorch's default (g = 1)
=============  ==============================  =================================

Input schemes (``input_init=``): ``lecun_normal`` (flax's default),
``glorot_uniform`` (Keras' default), ``uniform`` (PyTorch's, bound
``1/sqrt(H)`` with H the hidden size, not the fan-in), ``zeros``.
Bias schemes (``bias_init=``): ``zeros`` or ``uniform`` (PyTorch's).

``chrono(t_max)`` is the gate-bias scheme of Tallec & Ollivier (2018):
``b ~ log U[1, t_max - 1]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from rnnlab import linalg

Array = jax.Array
Initializer = Callable[[jax.Array, tuple, Any], Array]
InitSpec = str | Initializer

RECURRENT_SCHEMES = ("orthogonal", "gaussian", "identity", "uniform")
INPUT_SCHEMES = ("lecun_normal", "glorot_uniform", "uniform", "zeros")
BIAS_SCHEMES = ("zeros", "uniform")


def _float_for_sampling(dtype) -> Any:
  # Sample (and run QR) in at least float32: bfloat16 has no QR and poor samples.
  return jnp.promote_types(dtype, jnp.float32)


def orthogonal(gain: float = 1.0) -> Initializer:
  """``gain * Q`` with Q drawn from the Haar measure on orthogonal matrices.

  For a non-square ``(m, n)`` shape the rows (m <= n) or columns are orthonormal.
  """

  def init(key, shape, dtype=jnp.float32):
    sample_dtype = _float_for_sampling(dtype)
    q = linalg.orthogonal(scale=gain)(key, shape, sample_dtype)  # loops its QR on the CPU
    return q.astype(dtype)

  return init


def gaussian(gain: float = 1.0) -> Initializer:
  """``N(0, gain**2 / n)`` with n the last dimension: spectral radius about ``gain``."""

  def init(key, shape, dtype=jnp.float32):
    sample_dtype = _float_for_sampling(dtype)
    w = jax.random.normal(key, shape, sample_dtype) * (gain / jnp.sqrt(shape[-1]))
    return w.astype(dtype)

  return init


def identity(gain: float = 1.0) -> Initializer:
  """``gain * I`` (the IRNN of Le et al. 2015); needs a square shape."""

  def init(key, shape, dtype=jnp.float32):
    del key
    if len(shape) != 2 or shape[0] != shape[1]:
      raise ValueError(f"identity init needs a square (H, H) shape; got {shape}")
    return (gain * jnp.eye(shape[0], dtype=_float_for_sampling(dtype))).astype(dtype)

  return init


def uniform(bound: float) -> Initializer:
  """``U(-bound, bound)``; PyTorch uses ``bound = 1 / sqrt(hidden_size)``."""

  def init(key, shape, dtype=jnp.float32):
    sample_dtype = _float_for_sampling(dtype)
    w = jax.random.uniform(key, shape, sample_dtype, minval=-bound, maxval=bound)
    return w.astype(dtype)

  return init


def chrono(t_max: float) -> Initializer:
  """Chrono gate bias (Tallec & Ollivier 2018): ``log U[1, t_max - 1]``.

  Applied to a forget (LSTM) or keep (GRU update) gate it spreads the memory
  time constants ``1 / (1 - sigmoid(b))`` between about 1 and ``t_max`` steps.
  """
  if not isinstance(t_max, jax.core.Tracer) and not t_max > 2:  # a traced one: checked before
    raise ValueError(f"chrono needs t_max > 2 (the longest dependency in steps); got {t_max}")

  def init(key, shape, dtype=jnp.float32):
    sample_dtype = _float_for_sampling(dtype)
    u = jax.random.uniform(key, shape, sample_dtype, minval=1.0, maxval=t_max - 1.0)
    return jnp.log(u).astype(dtype)

  return init


def zeros(key, shape, dtype=jnp.float32) -> Array:
  """All zeros."""
  del key
  return jnp.zeros(shape, dtype)


def _named(spec: InitSpec, kind: str, names: tuple[str, ...], table: dict) -> Initializer:
  if callable(spec):
    return spec
  if spec not in table:
    raise ValueError(
      f"{kind}={spec!r} is not a known scheme; expected one of {names} or a callable "
      "init(key, shape, dtype)"
    )
  return table[spec]


def recurrent(spec: InitSpec, hidden_size: int, gain: float = 1.0) -> Initializer:
  """Resolves a recurrent scheme name (see the module docstring) to an initializer."""
  bound = gain / hidden_size**0.5
  table = {
    "orthogonal": orthogonal(gain),
    "gaussian": gaussian(gain),
    "identity": identity(gain),
    "uniform": uniform(bound),
  }
  return _named(spec, "recurrent_init", RECURRENT_SCHEMES, table)


def input_weights(spec: InitSpec, hidden_size: int) -> Initializer:
  """Resolves an input-weight scheme name to an initializer (fan-in is ``shape[0]``)."""
  table = {
    "lecun_normal": jax.nn.initializers.lecun_normal(),
    "glorot_uniform": jax.nn.initializers.glorot_uniform(),
    "uniform": uniform(1.0 / hidden_size**0.5),
    "zeros": zeros,
  }
  return _named(spec, "input_init", INPUT_SCHEMES, table)


def bias(spec: InitSpec, hidden_size: int) -> Initializer:
  """Resolves a bias scheme name to an initializer."""
  table = {"zeros": zeros, "uniform": uniform(1.0 / hidden_size**0.5)}
  return _named(spec, "bias_init", BIAS_SCHEMES, table)


def per_gate(init: Initializer, key: jax.Array, rows: int, hidden_size: int, gates: int, dtype):
  """``(rows, gates * H)`` weights with each gate's ``(rows, H)`` block drawn separately.

  Keeps, e.g., every gate's recurrent block orthogonal with singular values ``gain``
  (initialising the fused ``(H, 4H)`` matrix at once would not).
  """
  keys = jax.random.split(key, gates)
  return jnp.concatenate([init(k, (rows, hidden_size), dtype) for k in keys], axis=-1)


__all__ = [
  "BIAS_SCHEMES",
  "INPUT_SCHEMES",
  "InitSpec",
  "Initializer",
  "RECURRENT_SCHEMES",
  "bias",
  "chrono",
  "gaussian",
  "identity",
  "input_weights",
  "orthogonal",
  "per_gate",
  "recurrent",
  "uniform",
  "zeros",
]
