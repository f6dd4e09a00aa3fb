"""Learning-curve data: the selected runs' evaluations with a method and a panel label per row."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analysis.experiments import CurveExperiment, groups_of
from analysis.runs import NoResultsError, Runs
from analysis.stats import (
    DEFAULT_PANEL_PREFIXES,
    curve_stats,
    final_scores,
    method_labels,
    natural_key,
    panel_labels,
    summarise_scores,
)


@dataclass
class CurveData:
    metric: str
    frame: pd.DataFrame       # evaluations: run columns, t_env, step, metrics, method, panel (, group)
    runs: pd.DataFrame        # the selected runs: run columns, config, method, panel (, group: the figure's
                              # panel group, for experiments with groups; claims select panels by it)
    setting_keys: list[str]   # config keys that split panels
    descending: bool = False  # panel order (ResQ Fig. 4 goes p = 0, -2, -4)

    @property
    def methods(self) -> list[str]:
        return sorted(self.frame["method"].unique())

    @property
    def panels(self) -> list[str]:
        return sorted(self.runs["panel"].unique(), key=natural_key, reverse=self.descending)

    def final(self, last: int = 1) -> pd.DataFrame:
        """mean, se, n over seeds of each run's mean over its last `last` evaluations, per panel and method."""
        return summarise_scores(final_scores(self.frame, self.metric, last), ["panel", "method"])

    def stats(self) -> pd.DataFrame:
        return curve_stats(self.frame, self.metric, ["panel", "method"])


def curve_data(runs: Runs, metric: str, experiment: CurveExperiment | None = None,
               panel_keys: list[str] | None = None) -> CurveData:
    """Evaluations of the experiment's runs (all usable runs without one), labelled for plotting."""
    selected = runs.usable()
    if experiment is not None:
        selected = experiment.select(selected)
    if selected.empty:
        wanted = f" with env matching {', '.join(experiment.envs)}" if experiment else ""
        hint = f"; run the sweep first: {experiment.sweep}" if experiment else ""
        others = experiment.select(runs.usable(), own_preset=False) if experiment is not None else selected
        if len(others):
            counts = others["experiment"].value_counts().sort_index()
            hint = (f"; {len(others)} finished run(s){wanted} were made by another preset "
                    f"({', '.join(f'{name}: {n}' for name, n in counts.items())}), and {experiment.name} reads only "
                    f"runs of experiment={experiment.name} or of no preset{hint}")
        raise NoResultsError(f"no finished run{wanted} under {runs.root}{hint}")
    selected = selected.copy()
    selected["method"] = method_labels(selected)
    prefixes = experiment.panel_prefixes if experiment else DEFAULT_PANEL_PREFIXES
    selected["panel"], keys = panel_labels(selected, prefixes, panel_keys)
    if experiment is not None and experiment.groups:  # a run is drawn in each group it belongs to
        records = selected.to_dict("records")
        selected["group"] = [groups_of(r, experiment.groups) for r in records]
        selected["panel"] = [[f"{g}: {r['panel']}" for g in groups] for r, groups in zip(records, selected["group"])]
        selected = selected[selected["panel"].map(len) > 0]
        if selected.empty:
            raise NoResultsError(f"no run under {runs.root} belongs to a panel of {experiment.name} "
                                 f"({'; '.join(g for g, _ in experiment.groups)})")
    frame = runs.metrics[runs.metrics["run_dir"].isin(selected["run_dir"])]
    if metric not in frame.columns or frame[metric].isna().all():
        available = sorted(c for c in runs.metrics.columns if c.startswith("test/"))
        raise NoResultsError(f"metric {metric!r} is not in these runs' metrics.csv; available: {', '.join(available)}")
    grouped = experiment is not None and bool(experiment.groups)
    labels = selected.set_index("run_dir")[["method", "panel", *(["group"] if grouped else [])]]
    frame = frame.join(labels, on="run_dir")
    frame = frame.explode(["panel", "group"]) if grouped else frame
    selected = selected.explode(["panel", "group"]) if grouped else selected
    return CurveData(metric, frame.reset_index(drop=True), selected, keys,
                     descending=bool(experiment and experiment.descending_panels))


def not_drawn(runs: Runs, experiment: CurveExperiment) -> list[str]:
    """The experiment's runs (its envs, its preset or none) that a figure leaves out, per method label:
    e.g. "qplex: 2 failed (NonFiniteLossError)", so a method that failed in every seed is not silently
    missing from the legend."""
    chosen = experiment.select(runs.runs)
    if chosen.empty:
        return []
    chosen = chosen.copy()
    chosen["method"] = method_labels(chosen)
    left_out = chosen[~chosen["usable"]]
    lines = []
    for method, group in left_out.groupby("method"):
        parts = []
        for status, rows in group.groupby("status"):
            kinds = sorted({str(r).split(": ", 2)[1].split(":")[0] for r in rows["reason"]
                            if str(r).startswith("run.json says failed: ")})
            parts.append(f"{len(rows)} {status}" + (f" ({', '.join(kinds)})" if kinds else ""))
        lines.append(f"{method}: {', '.join(parts)}")
    return lines
