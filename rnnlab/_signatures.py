"""One calling convention for every ``init`` in rnnlab, and one-line errors for others.

Every object's ``init`` takes the key, then the sizes the object does not know
(``init(key, input_size)`` for a layer or a sequence model; nothing for an embedding
or a generator, which know their vocabulary), then keyword-only options
(``dtype=``, ``gain=``)::

    layer.init(key, input_size, dtype=jnp.bfloat16)
    embedding.init(key, dtype=jnp.bfloat16)
    generator.init(key)

:func:`init_signature` wraps such an ``init`` so that the old form with the dtype
after the sizes, ``init(key, input_size, jnp.bfloat16)``, keeps working (a dtype
cannot be mistaken for anything else), while any other extra or missing positional
argument (a vocabulary size given to a model that knows it; a gain given
positionally) is a one-line ``TypeError`` that shows the call to make.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import jax.numpy as jnp
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


def _is_dtype(value: Any) -> bool:
  """Whether ``value`` names a dtype (``jnp.float32``, ``np.dtype``, ``"bfloat16"``)."""
  if isinstance(value, np.dtype):  # before the shape test: a dtype has a .shape too
    return True
  if value is None or isinstance(value, (bool, int, float, complex, np.ndarray)):
    return False
  if hasattr(value, "shape"):  # an array, not a dtype
    return False
  try:
    jnp.dtype(value)
  except Exception:  # whatever jnp.dtype refuses is no dtype
    return False
  return True


def _describe(value: Any) -> str:
  """A value in a few words, never an array's multi-line repr."""
  shape = getattr(value, "shape", None)
  if shape is not None and not isinstance(value, type):
    return f"an array of shape {tuple(shape)}"
  text = repr(value)
  return text if len(text) <= 40 else f"a {type(value).__name__}"


def _default_text(value: Any) -> str:
  if isinstance(value, type):  # jnp.float32 and friends
    return f"jnp.{value.__name__}"
  return repr(value)


def usage(init: Callable[..., Any]) -> str:
  """``init``'s call form, e.g. ``init(key, input_size, *, dtype=jnp.float32)``."""
  parameters = list(inspect.signature(init).parameters.values())
  parts = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
  options = [p for p in parameters if p.kind is p.KEYWORD_ONLY]
  if options:
    parts.append("*")
    parts.extend(f"{p.name}={_default_text(p.default)}" for p in options)
  return f"init({', '.join(parts)})"


def init_signature(where: str, note: str = "") -> Callable[[F], F]:
  """Checks the positional arguments of ``init(key, *sizes, *, options)``.

  One positional argument past the sizes that is a dtype goes to ``dtype=`` when
  ``init`` takes one (the old form); any other count of positional arguments raises
  a one-line ``TypeError``: ``"{where}.init: ...; call init(key, ...){note}"``.

  Args:
    where: the object's name in the message (``"embedding"``, ``"one_to_many"``).
    note: appended to the message (``" (vocab_size=98 is the model's own)"``).
  """

  def decorate(init: F) -> F:
    parameters = inspect.signature(init).parameters.values()
    sizes = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    options = {p.name for p in parameters if p.kind is p.KEYWORD_ONLY}
    form = usage(init)

    @functools.wraps(init)
    def checked(*args: Any, **kwargs: Any) -> Any:
      if len(args) > len(sizes):
        extra = args[len(sizes)]
        old_dtype = len(args) == len(sizes) + 1 and "dtype" in options and "dtype" not in kwargs
        if old_dtype and _is_dtype(extra):
          return init(*args[:-1], dtype=extra, **kwargs)
        raise TypeError(
          f"{where}.init: unexpected positional argument {_describe(extra)}; call {form}{note}"
        )
      missing = [name for name in sizes[len(args) :] if name not in kwargs]
      if missing:
        raise TypeError(f"{where}.init: missing {', '.join(missing)}; call {form}{note}")
      return init(*args, **kwargs)

    return checked  # type: ignore[return-value]

  return decorate
