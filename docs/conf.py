"""Sphinx configuration of rnnlab's documentation site.

Build (from the repository root; BUILD.md, "Documentation"):

    python -m sphinx -W --keep-going -b html docs docs/_build/html

``-W`` turns every warning (a broken reference, a docstring that does not parse, a page
outside every toctree) into an error, as CI runs it. Nothing here reaches the network:
no intersphinx inventories, and the equations are typeset by MathJax in the reader's
browser.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout being documented, not an installed copy

project = "rnnlab"
author = "rnnlab authors"
copyright = "2026, rnnlab authors"  # noqa: A001
release = version = "0.1.0"

extensions = [
  "myst_parser",
  "sphinx.ext.autodoc",
  "sphinx.ext.autosummary",
  "sphinx.ext.napoleon",
  "sphinx.ext.mathjax",
  "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "**/README.md"]

# The API reference: one page per public module, its members read from ``__all__``.
# The stub pages are written here at every build (api/generated/, not committed), so a new
# module gets its page; api/index.md lists them, and a module missing there is a page in no
# toctree, which fails the strict build.
autosummary_generate = False
autodoc_default_options = {
  "members": True,
  "undoc-members": True,
  "show-inheritance": True,
  "member-order": "bysource",
}
autodoc_typehints = "description"  # signatures stay short; the types go under Args
autodoc_typehints_description_target = "documented"  # no second, bare list of parameters
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True  # show `forget_bias=1.0`, not an evaluated repr
autodoc_inherit_docstrings = False  # a NamedTuple's fields, not tuple.count
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

# Markdown pages (the guides): $...$ and $$...$$ maths, ::: fences, heading anchors.
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3


def public_modules():
  """Every public module of rnnlab: no part of its dotted name starts with ``_``."""
  import pkgutil  # noqa: PLC0415

  import rnnlab  # noqa: PLC0415

  names = [
    m.name
    for m in pkgutil.walk_packages(rnnlab.__path__, "rnnlab.")
    if not any(part.startswith("_") for part in m.name.split("."))
  ]
  return sorted(names)


def write_api_stubs():
  """docs/api/generated/<module>.rst for every public module, and the package's page."""
  import rnnlab  # noqa: PLC0415

  out = os.path.join(ROOT, "docs", "api", "generated")
  os.makedirs(out, exist_ok=True)
  pages = {}
  for name in public_modules():
    title = f"``{name}``"
    pages[name] = f"{title}\n{'=' * len(title)}\n\n.. automodule:: {name}\n"
  top = [n for n in rnnlab.__all__ if n not in rnnlab._MODULES]  # noqa: SLF001
  rows = []
  for n in top:
    where = rnnlab._NAMES[n]  # noqa: SLF001
    module, attr = where if isinstance(where, tuple) else (where, n)
    rows.append(f"   * - ``rnnlab.{n}``\n     - :py:obj:`rnnlab.{module}.{attr}`")
  pages["rnnlab"] = (
    "``rnnlab``\n==========\n\n.. automodule:: rnnlab\n   :no-members:\n\n"
    "The names at the top level are the objects of the modules, imported on first use\n"
    "(``rnnlab.lstm is rnnlab.cells.lstm``):\n\n.. list-table::\n   :header-rows: 1\n\n"
    "   * - name\n     - documented as\n" + "\n".join(rows) + "\n"
  )
  for name, text in pages.items():
    path = os.path.join(out, f"{name}.rst")
    old = open(path).read() if os.path.exists(path) else None  # noqa: SIM115
    if old != text:  # unchanged stubs keep their time stamps: no needless rebuilds
      with open(path, "w") as f:
        f.write(text)
  for stale in set(os.listdir(out)) - {f"{n}.rst" for n in pages}:
    os.remove(os.path.join(out, stale))


write_api_stubs()


def write_benchmark_pages():
  """docs/benchmarks/<name>.md including benchmarks/<name>.md, for the performance page."""
  source = os.path.join(ROOT, "benchmarks")
  out = os.path.join(ROOT, "docs", "benchmarks")
  os.makedirs(out, exist_ok=True)
  names = sorted(f for f in os.listdir(source) if f.endswith(".md"))
  for name in names:
    with open(os.path.join(source, name)) as f:
      titled = f.readline().startswith("# ")
    title = "" if titled else f"# {name[:-3]}\n\n"  # the earliest runs have no heading
    text = f"{title}```{{include}} ../../benchmarks/{name}\n```\n"
    path = os.path.join(out, name)
    if not os.path.exists(path) or open(path).read() != text:  # noqa: SIM115
      with open(path, "w") as f:
        f.write(text)
  for stale in set(os.listdir(out)) - set(names):
    os.remove(os.path.join(out, stale))


write_benchmark_pages()


def results_toctree(app, docname, source):
  """The results page lists docs/results/<experiment>/*.md, or says that none is there yet.

  (An empty toctree glob is a warning, and Sphinx 8.2 gives it no type to suppress.)
  """
  if docname != "results":
    return
  folder = os.path.join(ROOT, "docs", "results")
  reports = sorted(
    f"results/{experiment}/{page[:-3]}"
    for experiment in (os.listdir(folder) if os.path.isdir(folder) else ())
    if os.path.isdir(os.path.join(folder, experiment))
    for page in os.listdir(os.path.join(folder, experiment))
    if page.endswith(".md")
  )
  listing = (
    "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(reports) + "\n```"
    if reports
    else "No experiment's report is published here yet."
  )
  source[0] = source[0].replace("<!-- results -->", listing)


def skip_field_aliases(app, what, name, obj, skip, options):
  """A NamedTuple's fields are described in its docstring (Attributes), not as "Alias for field"."""
  if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
    return True
  return None


def setup(app):
  app.connect("source-read", results_toctree)
  app.connect("autodoc-skip-member", skip_field_aliases)


html_theme = "furo"
html_title = "rnnlab"
html_static_path = []
