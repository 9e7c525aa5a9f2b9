"""The code examples of README.md and of the guides in docs/ run as written (issue 20).

Every fenced ```` ```python ```` block of those files is collected; the blocks of one file
run in order in one namespace (a guide's later block uses its earlier names), in a
temporary working folder (the figures and checkpoints they write land there). Shell
commands are ```` ```bash ```` blocks and output plain ```` ``` ```` blocks: neither runs.
A Python block that must not run is preceded by a ``<!-- skip: reason -->`` line;
``SKIPPED`` below counts them per file, so a new one shows in the diff of this test.

Running them takes a minute or two of compilation, so it is marked slow: CI runs it in
its slow step (``python -m pytest -n 2 --runslow -m slow``).
"""

import glob
import os
import re
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Written at build time (API stubs, benchmark wrappers) or built: not documents of their own.
GENERATED = ("docs/_build/", "docs/api/generated/", "docs/benchmarks/")
SKIP = re.compile(r"^\s*<!--\s*skip:\s*(\S.*?)\s*-->\s*$")
OPEN = re.compile(r"^(\s*)```(\w*)\s*$")
# Python blocks that do not run, per file; each has a <!-- skip: reason --> line above it.
SKIPPED = {}


def documents():
  found = [
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
  ]
  found = [p for p in found if not p.startswith(GENERATED)]
  return ["README.md", *sorted(found)]


def python_blocks(path):
  """[(first line number, source, skip reason or None)] of the file's ```python blocks."""
  with open(os.path.join(ROOT, path)) as f:
    lines = f.read().split("\n")
  blocks, i, previous = [], 0, ""
  while i < len(lines):
    match = OPEN.match(lines[i])
    if not match:
      if lines[i].strip():
        previous = lines[i]
      i += 1
      continue
    indent, language = match.groups()
    start, i = i + 1, i + 1
    while i < len(lines) and lines[i].strip() != "```":
      i += 1
    if language == "python":
      source = textwrap.dedent("\n".join(lines[start:i]))
      skip = SKIP.match(previous)
      blocks.append((start + 1, source, skip.group(1) if skip else None))
    previous, i = "", i + 1
  return blocks


DOCUMENTS = documents()


def test_the_collector_finds_the_examples():
  counts = {path: len(python_blocks(path)) for path in DOCUMENTS}
  assert counts["README.md"] >= 1  # the ten lines
  for guide in ("getting-started", "cells", "own-cell", "diagnostics", "training", "interop"):
    assert counts[f"docs/{guide}.md"] >= 1, guide
  skipped = {
    path: n for path in DOCUMENTS if (n := sum(b[2] is not None for b in python_blocks(path)))
  }
  assert skipped == SKIPPED, "a python block is skipped (or no longer): update SKIPPED"


@pytest.mark.slow
@pytest.mark.parametrize("path", [p for p in DOCUMENTS if python_blocks(p)])
def test_examples_run(path, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  namespace = {"__name__": "doc_example"}
  for line, source, skip in python_blocks(path):
    if skip is not None:
      continue
    code = compile(source, f"{path}, the block at line {line}", "exec")
    exec(code, namespace)  # noqa: S102
