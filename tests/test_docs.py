"""README.md and BUILD.md: every file they point at is inside the repository."""

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "BUILD.md")
# Top-level folders of the repository: a path in backticks starting with one must exist.
REPO_FOLDERS = ("rnnlab", "experiments", "tests", "benchmarks", "docs", ".ci")


@pytest.mark.parametrize("name", DOCS)
def test_docs_point_only_at_files_in_the_repo(name):
  with open(os.path.join(ROOT, name)) as f:
    text = f.read()
  outside = re.findall(r"\.\./[\w./-]*", text)  # a sibling checkout is no part of a clone
  assert not outside, f"{name} points outside the repository: {outside}"
  absolute = re.findall(r"(?<![\w=.:/])/(?:work|home|Users|root|mnt)/[\w./-]*", text)
  assert not absolute, f"{name} names absolute paths: {absolute}"
  links = [t for t in re.findall(r"\]\(([^)\s#]+)", text) if "://" not in t]
  paths = [
    p for p in re.findall(r"`([\w.-]+(?:/[\w.-]+)+/?)`", text) if p.split("/")[0] in REPO_FOLDERS
  ]
  assert paths  # the pattern still finds what the documents hold
  missing = [p for p in links + paths if not os.path.exists(os.path.join(ROOT, p))]
  assert not missing, f"{name} points at files the repository lacks: {missing}"
