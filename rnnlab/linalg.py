r"""QR, eigenvalues and singular values that cannot hang XLA's CPU thread pool.

jaxlib 0.10's CPU LAPACK kernels (``geqrf``, ``geev``, ``gesdd``, ``trsm``, ``getrf`` ...) split a batch
of matrices over XLA's intra-op thread pool and block until the pieces are done.
When every thread of that pool is such a blocked kernel, nobody runs the pieces
and the process hangs for good: two CPU devices on a 2-core machine (the
runner's default) each running a batched QR of 128 x 128 matrices is enough
(``tests/test_linalg.py`` holds the smallest such program; jaxlib 0.11.1
compiles the parallel path out of its open-source builds). The runner vmaps
every member's init (orthogonal weights), diagnostics (eigenvalues, the
Lyapunov exponents' QR) and, with a cell or a loss that needs one, training
over a block of members, so each of those calls is batched.

On the CPU these functions therefore call LAPACK one matrix at a time: a batch
in the input is a loop (``lax.map``), and so is a batch added by ``jax.vmap``
(:func:`jax.custom_batching.sequential_vmap`). Each matrix goes through the
same LAPACK routine as in a batched call, so the values are bitwise the same.
Other backends take ``jnp.linalg`` directly.

:func:`qr` is differentiable (forward and reverse mode): its JVP is the thin-QR
rule of ``jax.lax.linalg`` (J. Townsend's derivation), computed from the
looped factorisation and a looped inverse of ``r`` with matmuls, so its
gradients (of any order) call LAPACK one matrix at a time too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = ["eigvals", "expm", "orthogonal", "qr", "svdvals"]


def _one_at_a_time(fn: Callable, num_outputs: int) -> Callable:
  """``fn`` on a stack of matrices ``(..., m, n)``: one call per matrix on the CPU."""

  def looped(a: Array):
    batch = a.shape[:-2]
    if not batch or jax.default_backend() != "cpu":
      return fn(a)
    outs = jax.lax.map(fn, a.reshape((-1, *a.shape[-2:])))
    outs = (outs,) if num_outputs == 1 else outs
    outs = tuple(o.reshape(batch + o.shape[1:]) for o in outs)
    return outs[0] if num_outputs == 1 else outs

  return jax.custom_batching.sequential_vmap(looped)


def _qr_reduced(a: Array) -> tuple[Array, Array]:
  q, r = jnp.linalg.qr(a, mode="reduced")
  return q, r


_qr_looped = _one_at_a_time(_qr_reduced, 2)


@jax.custom_jvp
def qr(a: Array) -> tuple[Array, Array]:
  """Reduced QR ``a = q @ r`` of ``(..., m, n)`` with ``m >= n``: ``q (..., m, n)``, ``r (..., n, n)``.

  ``jnp.linalg.qr(a, mode="reduced")`` on one matrix at a time (module doc).
  """
  m, n = a.shape[-2:]
  if m < n:
    raise ValueError(f"rnnlab.linalg.qr: expected a tall (..., m, n) matrix, m >= n; got {a.shape}")
  return _qr_looped(a)


def _upper_inverse(r: Array) -> Array:
  eye = jnp.broadcast_to(jnp.eye(r.shape[-1], dtype=r.dtype), r.shape)
  return jax.lax.linalg.triangular_solve(r, eye, left_side=True, lower=False)


_upper_inverse_looped = _one_at_a_time(_upper_inverse, 1)


@jax.custom_jvp
def _inverse_upper(r: Array) -> Array:
  """``r^-1`` of upper-triangular ``(..., n, n)``, looped; its JVP ``-r^-1 dr r^-1`` is matmuls."""
  return _upper_inverse_looped(r)


@_inverse_upper.defjvp
def _inverse_upper_jvp(primals, tangents):
  (r,), (dr,) = primals, tangents
  r_inv = _inverse_upper(r)
  return r_inv, -r_inv @ dr @ r_inv


@qr.defjvp
def _qr_jvp(primals, tangents):
  (a,), (da,) = primals, tangents
  q, r = qr(a)
  # jax.lax.linalg's thin-QR JVP: dq = q (do - C) + da r^-1, dr = (C - do) r, C = q^H da r^-1,
  # with r^-1 from the looped triangular solve (a batched one blocks like the QR; module doc).
  da_rinv = da @ _inverse_upper(r)
  c = jnp.swapaxes(q, -1, -2).conj() @ da_rinv
  lower = jnp.tril(c, -1)
  do = lower - jnp.swapaxes(lower, -1, -2).conj()  # skew-symmetric
  do = do + jnp.eye(c.shape[-1], dtype=c.dtype) * (c - c.real.astype(c.dtype))  # complex inputs
  return (q, r), (q @ (do - c) + da_rinv, (c - do) @ r)


def _eigvals(a: Array) -> Array:
  return jnp.linalg.eigvals(a)


def _svdvals(a: Array) -> Array:
  return jnp.linalg.svd(a, compute_uv=False)


_eigvals_looped = _one_at_a_time(_eigvals, 1)
_svdvals_looped = _one_at_a_time(_svdvals, 1)


def eigvals(a: Array) -> Array:
  """Eigenvalues (complex) of square ``(..., n, n)`` matrices: ``jnp.linalg.eigvals``, looped.

  Not differentiable (neither is ``jnp.linalg.eigvals`` on the CPU for a
  non-symmetric matrix).
  """
  return _eigvals_looped(a)


def svdvals(a: Array) -> Array:
  """Singular values ``(..., min(m, n))``, descending: ``jnp.linalg.svd(compute_uv=False)``, looped."""
  return _svdvals_looped(a)


def orthogonal(scale: float = 1.0, column_axis: int = -1) -> Callable[..., Array]:
  """``jax.nn.initializers.orthogonal`` with its QR from :func:`qr`: bitwise the same matrices.

  ``scale * Q`` with ``Q`` Haar-distributed (Mezzadri 2007): jax's normal sample
  of shape ``(max(r, c), min(r, c))``, its QR, the signs of ``diag(R)`` moved
  into ``Q``, transposed when ``r < c`` (``r`` the product of the other axes,
  ``c = shape[column_axis]``).
  """

  def init(key: Array, shape, dtype=jnp.float32) -> Array:
    if len(shape) < 2:
      raise ValueError(f"orthogonal: expected a shape of 2 or more dimensions; got {shape}")
    if 0 in shape:
      return jnp.zeros(shape, dtype)
    n_rows, n_cols = math.prod(shape) // shape[column_axis], shape[column_axis]
    z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
    q, r = qr(z)
    q = q * jnp.expand_dims(jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1)), -2)
    if n_rows < n_cols:
      q = q.T
    rest = tuple(d for i, d in enumerate(shape) if i != column_axis % len(shape))
    q = jnp.moveaxis(jnp.reshape(q, (*rest, n_cols)), -1, column_axis)
    return jnp.array(scale, dtype) * q

  return init


# Taylor coefficients 1/j! of exp, j = 0..18 (degree 18: below float64's rounding for ||A||_1 <= 1).
_EXPM_DEGREE = 18
_EXPM_BLOCK = 6  # Paterson-Stockmeyer block: X^1..X^6, then Horner in X^6 (7 matmuls in all)
_EXPM_COEFFS = tuple(1.0 / math.factorial(j) for j in range(_EXPM_DEGREE + 1))


def _mm(a: Array, b: Array) -> Array:
  # Full precision on every backend (TF32/bf16 passes would break orthogonality at 1e-5).
  return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _taylor18(x: Array) -> Array:
  """``sum_{j<=18} x^j / j!`` of ``(n, n)`` by Paterson-Stockmeyer: ``B0 + X6 (B1 + X6 (B2 + c X6))``."""
  eye = jnp.eye(x.shape[-1], dtype=x.dtype)
  powers = [eye, x]
  for _ in range(_EXPM_BLOCK - 1):
    powers.append(_mm(powers[-1], x))
  x6 = powers[_EXPM_BLOCK]
  c = _EXPM_COEFFS

  def block(q: int) -> Array:
    return sum(c[_EXPM_BLOCK * q + r] * powers[r] for r in range(_EXPM_BLOCK))

  acc = block(2) + c[3 * _EXPM_BLOCK] * x6
  acc = block(1) + _mm(x6, acc)
  return block(0) + _mm(x6, acc)


def expm(a: Array, *, max_squarings: int = 16) -> Array:
  r"""The matrix exponential ``exp(a)`` of square ``(..., n, n)`` matrices, by matmuls only.

  Scaling and squaring with a degree-18 Taylor polynomial (as
  ``torch.linalg.matrix_exp``, Bader, Blanes & Casas 2019, "Computing the matrix
  exponential with an optimized Taylor polynomial approximation"; here evaluated by
  Paterson-Stockmeyer):

  .. math::  e^{A} = \big(T_{18}(A / 2^s)\big)^{2^s}, \qquad
     s = \min(\max(0, \lceil \log_2 \|A\|_1 \rceil), s_{\max})

  so ``||A / 2^s||_1 <= 1``, where the truncation error ``1/19!`` is below
  float64's rounding. No LAPACK call (``jax.scipy.linalg.expm`` solves with LU,
  whose batched CPU kernel can hang the runner; module doc), so it is vmappable
  and differentiable in forward and reverse mode, to any order. ``s`` is chosen
  from the norm at run time; each of the ``max_squarings`` static squarings runs
  under ``lax.cond`` (a select under ``vmap``), so reverse mode works. Matrices
  with ``||A||_1 > 2**max_squarings`` are squared only ``max_squarings`` times
  and lose accuracy. Matmuls run at ``Precision.HIGHEST``.

  Args:
    a: ``(..., n, n)``, floating.
    max_squarings: the static cap on ``s`` (default 16: ``||A||_1`` up to 65536).

  Returns:
    ``exp(a)``, of ``a``'s shape and dtype.
  """
  a = jnp.asarray(a)
  if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
    raise ValueError(f"rnnlab.linalg.expm: expected square (..., n, n) matrices; got {a.shape}")
  if not jnp.issubdtype(a.dtype, jnp.floating):
    raise ValueError(f"rnnlab.linalg.expm: expected a floating array; got {a.dtype}")
  if a.ndim > 2:
    return jax.vmap(partial(expm, max_squarings=max_squarings))(a)
  norm = jnp.max(jnp.sum(jnp.abs(a), axis=-2))  # the 1-norm: largest column sum
  # The number of squarings is a value, not a shape: no gradient flows through it.
  norm = jax.lax.stop_gradient(norm)
  s = jnp.clip(jnp.ceil(jnp.log2(jnp.where(norm > 0, norm, 1.0))), 0, max_squarings)
  s = jnp.where(jnp.isfinite(s), s, max_squarings).astype(jnp.int32)
  x = _taylor18(a * jnp.exp2(-s.astype(a.dtype)))
  for i in range(max_squarings):
    x = jax.lax.cond(i < s, lambda x: _mm(x, x), lambda x: x, x)
  return x
