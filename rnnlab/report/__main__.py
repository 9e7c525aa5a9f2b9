"""``python -m rnnlab.report WORKDIR [FORMAT ...]``: redraw a workdir's figures and report.md."""

from __future__ import annotations

import sys

from rnnlab.report import write_report


def main(argv: list[str]) -> int:
  if len(argv) < 1 or argv[0] in ("-h", "--help"):
    print("usage: python -m rnnlab.report WORKDIR [FORMAT ...]  (formats: png svg by default)")
    return 0 if argv else 2
  formats = argv[1:] or ("png", "svg")
  try:
    paths = write_report(argv[0], formats=formats)
  except (FileNotFoundError, ValueError) as e:
    print(f"report: error: {e}", file=sys.stderr)
    return 2
  print(f"wrote {len(paths)} files; read {paths[-1]}")
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
