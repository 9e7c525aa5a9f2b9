"""README.md, BUILD.md and the guides in docs/: every file they point at is inside the repository."""

import glob
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Written at build time (API stubs, benchmark wrappers) or built: not documents of their own.
GENERATED = ("docs/_build/", "docs/api/generated/", "docs/benchmarks/")
GUIDES = sorted(
  p
  for p in (
    os.path.relpath(f, ROOT)
    for f in glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
  )
  if not p.startswith(GENERATED)
)
DOCS = ("README.md", "BUILD.md", *GUIDES)
# Top-level folders of the repository: a path in backticks starting with one must exist.
REPO_FOLDERS = ("rnnlab", "experiments", "tests", "benchmarks", "docs", ".ci")


def test_the_guides_are_found():
  assert {"docs/index.md", "docs/getting-started.md", "docs/runner.md"} <= set(GUIDES)


@pytest.mark.parametrize("name", DOCS)
def test_docs_point_only_at_files_in_the_repo(name):
  with open(os.path.join(ROOT, name)) as f:
    text = f.read()
  here = os.path.dirname(os.path.join(ROOT, name))
  links = [t for t in re.findall(r"\]\(([^)\s#]+)", text) if "://" not in t]
  outside = [
    t for t in links if not os.path.abspath(os.path.join(here, t)).startswith(ROOT + os.sep)
  ]
  assert not outside, f"{name} points outside the repository: {outside}"
  absolute = re.findall(r"(?<![\w=.:/])/(?:work|home|Users|root|mnt)/[\w./-]*", text)
  assert not absolute, f"{name} names absolute paths: {absolute}"
  paths = [
    p for p in re.findall(r"`([\w.-]+(?:/[\w.-]+)+/?)`", text) if p.split("/")[0] in REPO_FOLDERS
  ]
  if name in ("README.md", "BUILD.md"):
    assert paths  # the pattern still finds what the documents hold
  missing = [p for p in links if not os.path.exists(os.path.join(here, p))]
  missing += [p for p in paths if not os.path.exists(os.path.join(ROOT, p))]
  assert not missing, f"{name} points at files the repository lacks: {missing}"
