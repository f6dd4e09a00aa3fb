"""`python -m analysis table NAME RUNS_DIR` and `python -m analysis curves RUNS_DIR`."""

from __future__ import annotations

import argparse
import sys

from analysis.paper import TABLES
from analysis.runs import NoResultsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m analysis", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    table = sub.add_parser("table", help="learned matrix-game tables beside a paper's")
    table.add_argument("name", help=f"one of: {', '.join(sorted(TABLES))}")
    table.add_argument("runs_dir", help="a run or multirun directory (searched recursively)")
    table.add_argument("--out", help="where to write the Markdown and heatmaps (default RUNS_DIR/analysis)")
    curves = sub.add_parser("curves", help="test metric against env steps, mean and standard error over seeds")
    curves.add_argument("runs_dir")
    curves.add_argument("--metric", default="test/return_mean")
    curves.add_argument("--out")
    args = parser.parse_args(argv)
    try:
        if args.command == "table":
            from analysis.tables import table_command
            print(table_command(args.name, args.runs_dir, args.out))
        else:
            from analysis.curves import curves_command
            print(curves_command(args.runs_dir, args.metric, args.out))
    except (KeyError, NoResultsError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
