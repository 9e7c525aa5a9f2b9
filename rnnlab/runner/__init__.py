"""The experiment runner: a sweep over any fields of the training config (issue 18).

:mod:`rnnlab.runner.tables` defines the tables a sweep writes (``summary.csv``,
``metrics.csv``, ``gradients.csv``, ``gain_scan.csv``): one schema for the writer,
the reader (:mod:`rnnlab.report`) and the tests.
"""

__all__ = [
  "config",
  "devices",
  "grid",
  "programs",
  "progress",
  "run",
  "tables",
]
