"""Paper tables, figures and claim reports from result files.

  python -m analysis table NAME RUNS_DIR     matrix-game table beside the paper's, or final performance
  python -m analysis figure NAME RUNS_DIR    the paper figure's layout (PNG and PDF)
  python -m analysis report RUNS_DIR         every paper claim: the paper's value, ours, holds or not
  python -m analysis curves RUNS_DIR         any runs: a metric against env steps, panels per env/setting
  python -m analysis list                    the NAMEs (= the experiment= presets)

Output goes to --out (default RUNS_DIR/analysis). Runs that failed or did not finish are listed and skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from analysis.experiments import EXPERIMENTS, CurveExperiment, UnknownExperimentError, get_experiment
from analysis.paper import PaperValuesError
from analysis.runs import NoResultsError, Runs, load_runs


class UsageError(ValueError):
    """A command-line value that cannot work, with the fix in the message."""


def out_dir(args) -> Path:
    return Path(args.out) if args.out else Path(args.runs_dir) / "analysis"


def skipped(runs: Runs) -> str:
    if not runs.problems:
        return ""
    return "\nskipped or repaired (not fatal):\n" + "\n".join(runs.problem_lines()) + "\n"


def chosen_metric(args):
    """The experiment of NAME and the stem of its files: with --metric, a curve experiment reads that metric
    (its axis labelled by it, files named NAME_<metric>, so they sit beside the paper metric's)."""
    experiment = get_experiment(args.name)
    metric = getattr(args, "metric", None)
    if metric is None or metric == getattr(experiment, "metric", None):
        return experiment, args.name
    if not isinstance(experiment, CurveExperiment):
        raise UsageError(f"--metric applies to curve figures and final-performance tables; {args.name} is a "
                         f"matrix-game table, which always shows the learned joint values. Drop --metric.")
    from analysis.stats import slug

    title = f"{experiment.title} (drawn for {metric}, not the paper's {experiment.metric})"
    return (dataclasses.replace(experiment, metric=metric, ylabel=metric, y_range=None, title=title),
            f"{args.name}_{slug(metric)}")


def table_command(args) -> str:
    from analysis import tables
    from analysis.render import write_text

    experiment, stem = chosen_metric(args)
    runs = load_runs(args.runs_dir)
    out = out_dir(args)
    if isinstance(experiment, CurveExperiment):
        from analysis.curves import curve_data

        data = curve_data(runs, experiment.metric, experiment, args.panel)
        text = tables.final_markdown(args.name, experiment.title, data, args.last)
        latex = tables.final_latex(args.name, experiment.title, data, args.last)
        if experiment.mtq:
            from analysis.render import latex_table, markdown_table
            from analysis.runs import load_result_json

            finals = experiment.select(load_result_json(runs, "mtq.json"))
            if not finals.empty:
                rows = tables.mtq_rows(data, finals)
                text += "\n## Final deterministic joint actions (mtq.json)\n\n" + "\n".join(markdown_table(*rows)) + "\n"
                latex += latex_table(*rows, caption=f"{experiment.title}: final joint actions")
        written = [write_text(out / f"{stem}_final.md", text), write_text(out / f"{stem}_final.tex", latex)]
    else:
        from analysis.figures import _nan_matrix  # noqa: F401  (matplotlib set up before heatmaps)
        from analysis.tables import heatmap_rows

        summary = tables.summarise_matrix(runs, experiment.table)
        if not summary.rows:
            raise NoResultsError(f"no finished run under {args.runs_dir} played the game of {args.name} "
                                 f"(payoff {experiment.table.payoff}, noise {experiment.table.noise_std:g}) with one "
                                 f"of its methods; run the sweep first: {experiment.sweep}")
        text = tables.matrix_markdown(args.name, summary)
        written = [write_text(out / f"{args.name}.md", text),
                   write_text(out / f"{args.name}.tex", tables.matrix_latex(args.name, summary))]
        from analysis.figures import matrix_figure
        from analysis.stats import slug

        for method, ours, label, paper in heatmap_rows(summary):
            rows = [(method, ours, label, paper)]
            written += matrix_figure(rows, summary.payoff, out / f"{args.name}_{slug(method)}", title=method)[:1]
    return text + skipped(runs) + "\nwritten: " + ", ".join(str(p) for p in written) + "\n"


def figure_command(args) -> str:
    from analysis import figures
    from analysis.curves import curve_data

    experiment, stem = chosen_metric(args)
    runs = load_runs(args.runs_dir, include_unfinished=args.include_unfinished)
    out = out_dir(args)
    note = ""
    if isinstance(experiment, CurveExperiment):
        data = curve_data(runs, experiment.metric, experiment, args.panel)
        if experiment.mtq:
            from analysis.runs import load_result_json

            finals = experiment.select(load_result_json(runs, "mtq.json"))
            written, note = figures.mtq_figure(data, finals, out / stem, title=experiment.title,
                                               ylabel=experiment.ylabel)
        else:
            from analysis.curves import not_drawn

            missing = not_drawn(runs, experiment)
            footnote = "not drawn: " + "; ".join(missing) if missing else ""
            note = footnote
            written = figures.curves_figure(data, out / stem, experiment.title, experiment.ylabel,
                                            experiment.y_range, dict(experiment.names), footnote)
        what = f"{len(data.methods)} method(s) in {len(data.panels)} panel(s): {', '.join(data.panels)}"
    else:
        from analysis.tables import heatmap_rows, summarise_matrix

        summary = summarise_matrix(runs, experiment.table)
        if not summary.rows:
            raise NoResultsError(f"no finished run under {args.runs_dir} played the game of {args.name}; "
                                 f"run the sweep first: {experiment.sweep}")
        written = figures.matrix_figure(heatmap_rows(summary), summary.payoff, out / args.name, experiment.title)
        what = f"{len(summary.rows)} method(s)"
    return (f"{args.name}: {what}\n" + (f"note: {note}\n" if note else "") + skipped(runs)
            + "written: " + ", ".join(str(p) for p in written) + "\n")


def report_command(args) -> str:
    from analysis.render import write_text
    from analysis.report import report_markdown

    runs = load_runs(args.runs_dir)
    text = report_markdown(runs)
    path = write_text(out_dir(args) / "report.md", text)
    return text + f"\nwritten: {path}\n"


def curves_command(args) -> str:
    from analysis import figures, tables
    from analysis.curves import curve_data
    from analysis.render import write_text
    from analysis.stats import slug

    runs = load_runs(args.runs_dir, include_unfinished=args.include_unfinished)
    data = curve_data(runs, args.metric, None, args.panel)
    out = out_dir(args)
    name = f"curves_{slug(args.metric.replace('/', '_'))}"
    written = figures.curves_figure(data, out / name, ylabel=args.metric)
    text = tables.final_markdown(name, f"all runs under {args.runs_dir}", data, args.last)
    written.append(write_text(out / f"{name}_final.md", text))
    return text + skipped(runs) + "\nwritten: " + ", ".join(str(p) for p in written) + "\n"


def list_command(args) -> str:
    lines = []
    for name, experiment in sorted(EXPERIMENTS.items()):
        kind = "curves" if isinstance(experiment, CurveExperiment) else "matrix table"
        lines.append(f"{name:16s} {kind:13s} {experiment.title}")
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    names = ", ".join(sorted(EXPERIMENTS))
    main = argparse.ArgumentParser(prog="python -m analysis", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = main.add_subparsers(dest="command", required=True)

    def common(p, name: bool = True):
        if name:
            p.add_argument("name", metavar="NAME", help=f"an experiment= preset: {names}")
        p.add_argument("runs_dir", metavar="RUNS_DIR", help="a run or multirun directory (searched recursively)")
        p.add_argument("--out", help="where to write (default RUNS_DIR/analysis)")
        p.add_argument("--panel", action="append", metavar="KEY",
                       help="config key that splits panels (repeatable), instead of the automatic choice")

    table = sub.add_parser("table", help="matrix-game table beside the paper's, or final performance")
    common(table)
    table.add_argument("--last", type=int, default=1, help="evaluations per run averaged as its final score")
    figure = sub.add_parser("figure", help="a paper figure's layout, PNG and PDF")
    common(figure)
    for p in (table, figure):
        p.add_argument("--metric", help="curve experiments: plot / table this test metric instead of the paper's "
                                        "(e.g. test/return_mean when a short sweep wins no game)")
    figure.add_argument("--include-unfinished", action="store_true", help="also plot running/unfinished runs")
    report = sub.add_parser("report", help="the papers' claims against our runs (Markdown)")
    report.add_argument("runs_dir", metavar="RUNS_DIR")
    report.add_argument("--out", help="where to write report.md (default RUNS_DIR/analysis)")
    curves = sub.add_parser("curves", help="any runs: a test metric against env steps")
    common(curves, name=False)
    curves.add_argument("--metric", default="test/return_mean")
    curves.add_argument("--last", type=int, default=1)
    curves.add_argument("--include-unfinished", action="store_true")
    sub.add_parser("list", help="the NAMEs table and figure accept")
    return main


def explained(command):
    """Re-raise a NoResultsError with the runs that were skipped, so 'no finished run' says why."""
    def run(args) -> str:
        try:
            return command(args)
        except NoResultsError as error:
            if not getattr(args, "runs_dir", None):
                raise
            try:
                runs = load_runs(args.runs_dir)
            except NoResultsError:
                raise error from None
            if not runs.problems:
                raise
            raise NoResultsError(f"{error.args[0]}\n{skipped(runs).strip()}") from None
    return run


COMMANDS = {"table": explained(table_command), "figure": explained(figure_command), "report": report_command,
            "curves": explained(curves_command), "list": list_command}


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if getattr(args, "last", 1) < 1:
        print(f"error: --last must be at least 1 (got {args.last})", file=sys.stderr)
        return 2
    try:
        print(COMMANDS[args.command](args), end="")
    except (UnknownExperimentError, NoResultsError, PaperValuesError, UsageError) as error:
        print(f"error: {error.args[0] if error.args else error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
