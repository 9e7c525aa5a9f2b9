r"""The command line of an ml_collections config file: any field, in any order, one-line errors.

``config_flags.DEFINE_config_file`` takes ``--config=<file>[:<arg>]`` and
``--config.<field>=<value>`` overrides, but only overrides given after
``--config``, only fields whose default is not ``None``, and it reports a typo as
a traceback. :func:`parse_flags` puts the command line in the order
ml_collections needs, checks every override against the config's fields and
types first (an unknown field names the nearest; a bad value names the field's
type), and turns every flag error into one line and exit status 2. Fields where
``None`` means something are declared in the config file as
``FieldReference(default, field_type=T | None)``; their parsers are registered
here with ``config_flags.register_flag_parser_for_type``.
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import os
import re
import sys
import types
import typing
from typing import Any, NoReturn

import ml_collections
from absl import flags
from ml_collections.config_flags import config_flags, tuple_parser


class _DictParser(flags.ArgumentParser):
  """A dict literal, as ml_collections parses a ``ConfigDict`` field (``task.kwargs``).

  Also the parser of a plain ``dict`` field (``sweep.axes``, whose keys are dotted
  paths), registered with ml_collections, which has none for it.
  """

  def parse(self, argument: Any) -> dict:
    value = ast.literal_eval(argument) if isinstance(argument, str) else argument
    if not isinstance(value, dict):
      raise ValueError(f"{argument!r} is not a dict")
    return value

  def flag_type(self) -> str:
    return "dict"


class _OrNone(flags.ArgumentParser):
  """The parser of a field typed ``T | None``: ``None``, or whatever T's parser takes."""

  def __init__(self, parser: flags.ArgumentParser):
    self.parser = parser

  def parse(self, argument: Any) -> Any:
    if argument is None or (isinstance(argument, str) and argument.strip() == "None"):
      return None
    return self.parser.parse(argument)

  def flag_type(self) -> str:
    return f"{self.parser.flag_type()} or None"


# A field's type -> the parser of its --config.<field>=<value>: ml_collections' own choices
# (config_flags._FIELD_TYPE_TO_PARSER), which parse_flags uses to check a value before absl
# applies it, and `T | None` for the fields where None means something (the config file
# declares them with FieldReference(default, field_type=T | None)), registered with
# ml_collections so that it parses them too.
_PARSERS: dict[Any, flags.ArgumentParser] = {
  int: flags.IntegerParser(),
  float: flags.FloatParser(),
  bool: flags.BooleanParser(),
  str: flags.ArgumentParser(),
  tuple: tuple_parser.TupleParser(),
  ml_collections.ConfigDict: _DictParser(),
  dict: _DictParser(),
}
config_flags.register_flag_parser_for_type(dict, _PARSERS[dict])
for _base in (int, float, bool, str, tuple):
  _PARSERS[_base | None] = _OrNone(_PARSERS[_base])
  config_flags.register_flag_parser_for_type(_base | None, _PARSERS[_base | None])
_EXPECTED = {
  int: "an int",
  float: "a float",
  bool: "True or False",
  str: "a string",
  tuple: "a tuple such as (1, 2)",
  ml_collections.ConfigDict: "a dict such as {'key': 1}",
  dict: "a dict such as {'model.hidden_size': (32, 64)}",
}
_NAMES = {ml_collections.ConfigDict: "dict", dict: "dict"}


def _optional_base(field_type: Any) -> Any:
  """``T`` for a field typed ``T | None`` (or ``Optional[T]``), else None."""
  if typing.get_origin(field_type) in (typing.Union, types.UnionType):
    others = [t for t in typing.get_args(field_type) if t is not type(None)]
    return others[0] if len(others) == 1 else None
  return None


def _expected(field_type: Any) -> str:
  """What a value of ``field_type`` looks like, for error messages: ``an int or None``."""
  base = _optional_base(field_type)
  if base is not None:
    return f"{_expected(base)} or None"
  return _EXPECTED.get(field_type, getattr(field_type, "__name__", str(field_type)))


def _type_name(field_type: Any) -> str:
  """A field type for --help: ``int``, ``tuple or None``."""
  base = _optional_base(field_type)
  if base is not None:
    return f"{_type_name(base)} or None"
  return _NAMES.get(field_type, getattr(field_type, "__name__", str(field_type)))


def config_fields(config: ml_collections.ConfigDict, prefix: str = "") -> dict[str, Any]:
  """Every field of ``config`` by dotted path, with its type: ``{"train.clip": float, ...}``.

  A section (a ``ConfigDict`` with fields) is not a field; an empty one (``task.kwargs``) is.
  """
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict) and len(value):
      out.update(config_fields(value, f"{prefix}{key}."))
    else:
      out[f"{prefix}{key}"] = config.get_type(key)
  return out


def load_config(spec: str) -> ml_collections.ConfigDict:
  """``get_config(arg)`` of the config file of ``spec`` (``path[:arg]``), as ml_collections calls it.

  Raises:
    ValueError: one line: the file cannot be read, or its ``get_config`` refused ``arg``.
  """
  path, *arg = spec.split(":", 1)
  if not os.path.isfile(path):
    raise ValueError(f"no config file {path!r} (from --config={spec})")
  loader = importlib.machinery.SourceFileLoader("config_config", path)  # ml_collections' name
  module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
  sys.modules[loader.name] = module  # as ml_collections does (dataclasses look their module up)
  try:
    loader.exec_module(module)
    return module.get_config(*arg)
  except ValueError as e:  # get_config refused its argument
    raise ValueError(str(e)) from None
  except (TypeError, AttributeError, SyntaxError) as e:
    raise ValueError(f"config file {path!r}: {type(e).__name__}: {e}") from None


# The files whose `config.<field> = ...  # comment` lines document the fields an experiment
# config file inherits (the training config, the runner's sections); the file's own win.
SCHEMA_SOURCES = ("rnnlab.train_config", "rnnlab.runner.config")


def _comments(path: str, fields: dict[str, Any]) -> dict[str, list[str]]:
  """``{field: comment lines}`` of the ``  config.<field> = ...  # comment`` lines of a file."""
  comments: dict[str, list[str]] = {}
  pattern = re.compile(r"^  config\.([\w.]+) = .*?(?:  # (.+))?$")
  last = None
  with open(path) as f:
    for line in f:
      match = pattern.match(line.rstrip())
      if match:
        last = match.group(1) if match.group(1) in fields else None
        if last is not None:
          comments[last] = [match.group(2)] if match.group(2) else []
      elif last is not None and line.startswith("  # "):  # a comment continued below
        comments[last].append(line.strip()[2:])
      else:
        last = None
  return comments


def help_fields(spec: str) -> str:
  """The config's fields for --help: ``--config.<field>=<default> (<type>): <comment>``.

  ``spec`` is ``path[:arg]``, as ``--config`` takes it (the defaults are those of
  ``get_config(arg)``).

  Every field, in the config's order, with the comment of its line in the config file
  or, where it has none there, in the schema it inherits (:data:`SCHEMA_SOURCES`).
  """
  config = load_config(spec)
  path = spec.partition(":")[0] if not os.path.isfile(spec) else spec
  fields = config_fields(config)
  comments: dict[str, list[str]] = {}
  for module in SCHEMA_SOURCES:
    spec = importlib.util.find_spec(module)
    if spec is not None and spec.origin and os.path.isfile(spec.origin):
      comments.update(_comments(spec.origin, fields))
  own = _comments(path, fields)
  comments.update({k: v for k, v in own.items() if v or k not in comments})
  lines = []
  for name in fields:
    words = comments.get(name, [])
    value = config
    for key in name.split("."):
      value = value[key]
    if isinstance(value, ml_collections.ConfigDict):
      value = value.to_dict()
    shown = value if isinstance(value, str) else repr(value)
    lines.append(f"  --config.{name}={shown} ({_type_name(fields[name])}): {' '.join(words)}")
  return "\n".join(lines)


HELP = ("--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml")
_CONFIG_FLAG = re.compile(r"--?config")
_OVERRIDE_FLAG = re.compile(r"--?(no)?config\.(.+)")


def _config_spec(args: list[str], default: str) -> tuple[str, set[int]]:
  """The ``--config`` value among ``args`` (the default if none), and where it is."""
  specs, where = [], set()
  for i, arg in enumerate(args):
    if arg == "--":
      break
    name, eq, value = arg.partition("=")
    if _CONFIG_FLAG.fullmatch(name) and i not in where:
      if not eq:  # --config <file>
        if i + 1 == len(args):
          raise ValueError(f"{arg} needs a value: a config file such as {default}")
        value = args[i + 1]
        where.add(i + 1)
      specs.append(value)
      where.add(i)
  if len(specs) > 1:
    raise ValueError(f"--config given {len(specs)} times ({', '.join(specs)}); give it once")
  return (specs[0] if specs else default), where


def _check_override(fields: dict[str, Any], arg: str, path: str, value: str) -> None:
  """Checks ``--config.<path>=<value>`` against the config's fields; raises one line if bad."""
  if path not in fields:
    if any(field.startswith(f"{path}.") for field in fields):
      raise ValueError(
        f"{path!r} in {arg} is a section of the config, not a field; set its fields "
        f"(--config.{path}.<field>=<value>, listed by --help)"
      )
    close = difflib.get_close_matches(path, list(fields), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "--help lists the fields"
    raise ValueError(f"unknown config field {path!r} in {arg}; {hint}")
  field_type = fields[path]
  if field_type is type(None):
    raise ValueError(
      f"config field {path!r} in {arg} is None and has no type; declare it in the config file "
      "with ml_collections.FieldReference(None, field_type=...)"
    )
  parser = _PARSERS.get(field_type)
  if parser is None:
    return  # a type only ml_collections knows (an enum, a dataclass): it checks the value
  try:
    parser.parse(value)
  except (ValueError, TypeError, SyntaxError):
    raise ValueError(
      f"bad value {value!r} for config field {path!r} in {arg}; expected {_expected(field_type)}"
    ) from None


def _arrange(argv: list[str], default: str) -> list[str]:
  """``argv`` with ``--config=<file>`` first, then every override, checked, then the rest.

  ml_collections applies only overrides that come after ``--config``: in this order
  any order parses. Each override is written ``--config.<field>=<value>`` (a bare
  bool field ``=true``, ``--noconfig.<field>`` ``=false``, ``--config.<field> <value>``
  joined).

  Raises:
    ValueError: one line naming the bad argument and, for a bad value, the field's type.
  """
  args = argv[1:]
  spec, taken = _config_spec(args, default)
  fields = config_fields(load_config(spec))
  overrides, rest = [], []
  i = 0
  while i < len(args):
    arg, i = args[i], i + 1
    if i - 1 in taken:
      continue
    if arg == "--":  # what follows is positional
      rest += args[i - 1 :]
      break
    name, eq, value = arg.partition("=")
    match = _OVERRIDE_FLAG.fullmatch(name)
    if not match:
      rest.append(arg)
      continue
    negated, path = match.group(1) == "no", match.group(2)
    is_bool = fields.get(path) in (bool, bool | None)
    if negated and path in fields and (eq or not is_bool):
      raise ValueError(f"{arg}: only a bool field takes the 'no' prefix, without a value")
    if not eq and (negated or is_bool):
      value = "false" if negated else "true"
    elif not eq and path in fields:
      if i == len(args):
        raise ValueError(f"{arg} needs a value: {arg}=<value>")
      value, i = args[i], i + 1
      arg = f"{arg} {value}"
    _check_override(fields, arg, path, value)
    overrides.append(f"--config.{path}={value}")
  return [argv[0], f"--config={spec}", *overrides, *rest]


def _document_fields(argv: list[str], default_config: str) -> None:
  """Appends the fields of the ``--config`` on ``argv`` to the docstring absl prints as --help.

  The config named on the command line (with its preset and arguments), else the
  default; one that cannot be loaded is named, and the default's fields listed.
  """
  main = sys.modules.get("__main__")
  if main is None:
    return
  try:
    spec, _ = _config_spec(argv[1:], default_config)
    fields = help_fields(spec)
  except Exception as e:  # noqa: BLE001  (help is printed whatever the config file does)
    message = (str(e).strip().splitlines() or [type(e).__name__])[-1]
    note = f"\n(--config could not be loaded: {message}; the default's fields follow)"
    spec, fields = default_config, help_fields(default_config)
  else:
    note = ""
  path, _, arg = spec.partition(":")
  shown = os.path.relpath(path) if os.path.isabs(path) else path
  preset = f"get_config({arg!r})" if arg else "its default preset"
  main.__doc__ = (
    f"{main.__doc__ or ''}{note}\nConfig fields of {shown} (defaults of {preset}):\n{fields}\n"
  )


def parse_flags(
  argv: list[str],
  flag_values: flags.FlagValues,
  config_argv: list[str],
  default_config: str,
  prog: str = "run",
) -> list[str]:
  """absl flag parsing where a bad flag or config argument is one line and exit status 2.

  Flags may come in any order (``--config.<field>`` before ``--config``); ``--help``
  (``-h``, ``--helpshort``, ``--helpfull``) prints the flags and exits with status 0.

  Args:
    argv: the command line.
    flag_values: where ``--config`` (``config_flags.DEFINE_config_file(...,
      sys_argv=config_argv)``) and the other flags are defined.
    config_argv: the list that ``DEFINE_config_file`` reads the overrides from; it
      gets the command line in the order ml_collections needs.
    default_config: the config file when no ``--config`` is given.
    prog: the name the error lines start with.
  """

  def fail(error: Exception | str) -> NoReturn:
    text = str(error).strip()
    message = text.splitlines()[-1] if text else type(error).__name__
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)

  helps = ["--help" if a == "-h" else a for a in argv[1:] if a.split("=")[0] in HELP]
  if helps:
    _document_fields(argv, default_config)
    try:  # absl prints the help and exits with 1: asking for help is no error
      flag_values([argv[0], *helps])
    except SystemExit:
      sys.exit(0)
  try:
    argv = [argv[0], *flag_values.read_flags_from_files(argv[1:], force_gnu=False)]
    argv = _arrange(argv, default_config)
  except (flags.Error, ValueError) as e:
    fail(e)
  config_argv[:] = argv
  try:
    rest = flag_values(argv)
  except (flags.Error, ValueError, TypeError, KeyError, AttributeError) as e:
    fail(e)
  if len(rest) > 1:
    fail(f"unexpected arguments {rest[1:]}; every option is a --flag")
  return rest
