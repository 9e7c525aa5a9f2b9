"""The gallery's flags: in every example an explicit flag wins over ``--quick``.

Each example parses its flags into a fresh absl ``FlagValues`` and resolves them into
its ``run``'s arguments with ``settings`` (what ``main`` runs): no training, no files.
"""

import pytest
from absl import flags

from experiments.examples import classify, dates, generate, hello, sine, tagging

# example -> (module, a flag --quick sets, a value given for it that is neither default)
EXAMPLES = {
  "hello": (hello, "epochs", 7),
  "sine": (sine, "epochs", 7),
  "classify": (classify, "steps", 7),
  "tagging": (tagging, "steps", 7),
  "dates": (dates, "steps", 7),
  "generate": (generate, "hidden", 7),
}


def settings(module, *args):
  """``module.run``'s arguments for the command line ``args``."""
  flag_values = flags.FlagValues()
  module.define_flags(flag_values)
  flag_values(["example", *args])
  return module.settings(flag_values)


@pytest.mark.parametrize("name", EXAMPLES)
def test_an_explicit_flag_wins_over_quick(name):
  module, flag, value = EXAMPLES[name]
  default, quick = settings(module), settings(module, "--quick")
  assert flag in module.QUICK and value not in (default[flag], module.QUICK[flag])
  # --quick alone changes exactly its own settings.
  for key in default:
    expected = module.QUICK.get(key, default[key])
    assert quick[key] == expected, (key, quick[key], expected)
  assert all(default[key] != quick[key] for key in module.QUICK)
  # An explicit flag wins, before or after --quick; the rest of --quick still applies.
  for args in ([f"--{flag}={value}", "--quick"], ["--quick", f"--{flag}={value}"]):
    assert settings(module, *args) == {**quick, flag: value}, args
  # ... even when it gives the default's value.
  assert settings(module, "--quick", f"--{flag}={default[flag]}") == {**quick, flag: default[flag]}
  assert settings(module, f"--{flag}={value}") == {**default, flag: value}
