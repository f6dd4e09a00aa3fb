"""`python -m analysis report RUNS_DIR`: per claim of paper_values.yaml, the paper's words, our numbers,
and whether the claim holds in our runs ("no runs" where the runs it needs are absent).

Rules (docs/analysis.md repeats them): "final" is each run's last evaluation, averaged over seeds; "most
seeds" is strictly more than half; a method selector that matches several labels (e.g. ablation variants)
must satisfy the check with every one of them; a claim without `panel` must hold in every panel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.curves import CurveData, curve_data
from analysis.experiments import EXPERIMENTS, CurveExperiment, MatrixExperiment, selector
from analysis.paper import CLAIMS, TABLES, Claim
from analysis.render import markdown_table
from analysis.runs import NoResultsError, Runs, load_result_json
from analysis.stats import fmt_mean_se, matches
from analysis.tables import MatrixSummary, joint, summarise_matrix

HOLDS, FAILS, NO_RUNS, UNCHECKED = "holds", "does not hold", "no runs", "not checked"


@dataclass
class Verdict:
    verdict: str
    ours: list[str] = field(default_factory=list)
    expects: str = ""


def describe(selector_spec) -> str:
    if isinstance(selector_spec, str):
        return selector_spec
    return "[" + ", ".join(f"{k}={v}" for k, v in selector_spec.items()) + "]"


def _most(count: int, total: int) -> bool:
    return total > 0 and 2 * count > total


def _tied(a: float, b: float) -> bool:
    """Final means equal up to rounding (six methods ending at exactly 0 are tied, not ranked by a sort)."""
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def combine(results: list[bool], missing: list[str], of: str = "all") -> str:
    if missing:
        return f"{NO_RUNS} (none for {', '.join(missing)})"
    if not results:
        return NO_RUNS
    ok = all(results) if of == "all" else _most(sum(results), len(results))
    return HOLDS if ok else FAILS


class Evaluator:
    """Evaluates claims against one Runs, caching each experiment's tables and curves."""

    def __init__(self, runs: Runs) -> None:
        self.runs = runs
        self._matrix: dict[str, MatrixSummary] = {}
        self._curves: dict[tuple[str, str], CurveData | str] = {}
        self._mtq: pd.DataFrame | None = None

    def matrix(self, name: str) -> MatrixSummary:
        if name not in self._matrix:
            self._matrix[name] = summarise_matrix(self.runs, TABLES[name])
        return self._matrix[name]

    def curves(self, experiment: CurveExperiment, metric: str) -> CurveData | str:
        key = (experiment.name, metric)
        if key not in self._curves:
            try:
                self._curves[key] = curve_data(self.runs, metric, experiment)
            except NoResultsError as error:
                self._curves[key] = str(error)
        return self._curves[key]

    def mtq_finals(self) -> pd.DataFrame:
        if self._mtq is None:
            self._mtq = load_result_json(self.runs, "mtq.json")
        return self._mtq

    # -------------------------------------------------------------------------------------------------

    def evaluate(self, claim: Claim) -> Verdict:
        check = claim.check
        if claim.kind == "text":
            return Verdict(f"{UNCHECKED}: {check.get('reason', 'no machine check')}")
        experiment = EXPERIMENTS.get(claim.experiment)
        if experiment is None:
            return Verdict(f"{UNCHECKED}: no analysis is registered for experiment {claim.experiment!r}")
        if isinstance(experiment, MatrixExperiment):
            return self._matrix_claim(claim, self.matrix(experiment.name))
        if claim.kind in ("near", "nearer"):
            return self._mtq_claim(claim, experiment)
        return self._curve_claim(claim, experiment)

    def _matrix_claim(self, claim: Claim, summary: MatrixSummary) -> Verdict:
        check = claim.check
        results, missing, ours = [], [], []
        for spec in check["methods"]:
            rows = [r for r in summary.rows if matches({**r, "config": {}}, selector(spec))]
            if not rows:
                missing.append(describe(spec))
            for row in rows:
                if claim.kind == "optimal":
                    count = row["optimal"] if check.get("expect", True) else row["seeds"] - row["optimal"]
                else:
                    count = sum(tuple(g) == tuple(check["action"]) for g in row["greedy"])
                results.append(_most(count, row["seeds"]))
                greedy = " ".join(joint(g) for g in row["greedy"])
                ours.append(f"{row['method']}: optimal in {row['optimal']}/{row['seeds']} seeds (greedy {greedy})")
        if claim.kind == "optimal":
            what = "the optimum" if check.get("expect", True) else "not the optimum"
            expects = (f"greedy joint action is {what} in most seeds for "
                       + ("most of " if check.get("of") == "most" else "each of ")
                       + ", ".join(describe(m) for m in check["methods"]))
        else:
            expects = f"greedy joint action {joint(check['action'])} in most seeds for each of " + ", ".join(
                describe(m) for m in check["methods"])
        return Verdict(combine(results, missing, check.get("of", "all")), ours, expects)

    @staticmethod
    def rank_holds(means: list[float], index: int, allowed) -> bool:
        """Whether the method at `index` of `means` (final means, one per method) ranks as allowed (1 = best).
        A method tied with others holds every rank of the tie, so the claim holds only if all of them are
        allowed: tied for first is not "the best"."""
        value = means[index]
        higher = sum(1 for m in means if not _tied(m, value) and m > value)
        tied = sum(1 for m in means if _tied(m, value))
        return all(rank in allowed for rank in range(higher + 1, higher + tied + 1))

    def _panels(self, data: CurveData, panel_selector: dict | None) -> list[str]:
        if panel_selector is None:
            return data.panels
        chosen = [r for r in data.runs.to_dict("records") if matches(r, panel_selector)]
        return sorted({r["panel"] for r in chosen}, key=data.panels.index)

    def _curve_claim(self, claim: Claim, experiment: CurveExperiment) -> Verdict:
        check = claim.check
        data = self.curves(experiment, claim.metric)
        expects = curve_expectation(claim)
        if isinstance(data, str):
            return Verdict(f"{NO_RUNS} ({data})", [], expects)
        panels = self._panels(data, claim.panel)
        if not panels:
            return Verdict(f"{NO_RUNS} (no finished run matches {claim.panel})", [], expects)
        final = data.final()
        stats = data.stats()
        results, missing, ours = [], [], []
        for panel in panels:
            in_panel = data.runs[data.runs["panel"] == panel]
            scores = final[final["panel"] == panel].set_index("method")
            peak = stats[stats["panel"] == panel].groupby("method")["mean"].max()

            def labels(spec, rows=in_panel):
                return sorted({r["method"] for r in rows.to_dict("records") if matches(r, selector(spec))})

            ours.append(f"{panel}: " + "; ".join(
                f"{m} {fmt_mean_se(s['mean'], s['se'], int(s['n']))}" for m, s in
                scores.sort_values("mean", ascending=False).iterrows()))
            kind = claim.kind
            if kind in ("best", "rank"):
                if kind == "best":
                    pool = scores.index.tolist()
                    if "among" in check:
                        pool = sorted({m for spec in check["among"] for m in labels(spec)} | set(labels(check["method"])))
                    targets = {describe(check["method"]): labels(check["method"])}
                    allowed = {describe(check["method"]): [1]}
                else:
                    pool = scores.index.tolist()
                    targets = {describe(m): labels(m) for m in check["ranks"]}
                    allowed = {describe(m): list(r) for m, r in check["ranks"].items()}
                means = scores.loc[pool, "mean"].sort_values(ascending=False, kind="stable")
                ranking = means.index.tolist()
                for name, found in targets.items():
                    if not found:
                        missing.append(f"{name} in {panel}")
                    for label in found:
                        results.append(self.rank_holds(means.tolist(), ranking.index(label), allowed[name]))
                if len(pool) < 2:
                    missing.append(f"a second method in {panel}")
                ours.append(f"{panel}: ranking " + "".join(
                    ("" if i == 0 else " = " if _tied(means.iloc[i - 1], value) else " > ") + label
                    for i, (label, value) in enumerate(means.items())))
            elif kind in ("at_most", "at_least"):
                use_max = check.get("of", "final") == "max"
                for spec in check["methods"]:
                    found = labels(spec)
                    if not found:
                        missing.append(f"{describe(spec)} in {panel}")
                    for label in found:
                        value = float(peak[label]) if use_max else float(scores.loc[label, "mean"])
                        results.append(value <= check["value"] if kind == "at_most" else value >= check["value"])
                        if use_max:
                            ours.append(f"{panel}: {label} max of the mean curve {value:.2f}")
            elif kind == "better":
                pairs = check.get("pairs") or [[m, t] for m in check["methods"] for t in check["than"]]
                for a, b in pairs:
                    found_a, found_b = labels(a), labels(b)
                    for spec, found in ((a, found_a), (b, found_b)):
                        if not found:
                            missing.append(f"{describe(spec)} in {panel}")
                    for la in found_a:
                        for lb in found_b:
                            results.append(float(scores.loc[la, "mean"]) > float(scores.loc[lb, "mean"]))
            elif kind == "lower_in":
                others = self._panels(data, claim.other_panel) if claim.other_panel else []
                others = [p for p in others if p != panel]
                if not others:
                    missing.append(f"a panel matching {claim.other_panel}")
                for other in others:
                    other_scores = final[final["panel"] == other].set_index("method")
                    ours.append(f"{other}: " + "; ".join(
                        f"{m} {fmt_mean_se(s['mean'], s['se'], int(s['n']))}" for m, s in other_scores.iterrows()))
                    for spec in check["methods"]:
                        found = [label for label in labels(spec) if label in other_scores.index]
                        if not found:
                            missing.append(f"{describe(spec)} in {panel} and {other}")
                        for label in found:
                            results.append(float(scores.loc[label, "mean"]) < float(other_scores.loc[label, "mean"]))
        return Verdict(combine(results, sorted(set(missing))), ours, expects)

    def _mtq_claim(self, claim: Claim, experiment: CurveExperiment) -> Verdict:
        check = claim.check
        point = np.asarray(check["point"], dtype=float)
        if claim.kind == "near":
            expects = f"final joint action within {check['tol']:g} of {tuple(check['point'])} in " \
                      f"{'every' if check.get('seeds', 'all') == 'all' else 'most'} seed(s)"
        else:
            expects = f"final joint action nearer {tuple(check['point'])} than {tuple(check['than'])} in " \
                      f"{'every' if check.get('seeds', 'all') == 'all' else 'most'} seed(s)"
        finals = self.mtq_finals()
        if finals.empty:
            return Verdict(f"{NO_RUNS} (no finished run with mtq.json under {self.runs.root}; {experiment.sweep})", [], expects)
        finals = experiment.select(finals)
        results, missing, ours = [], [], []
        for spec in check["methods"]:
            group = finals[[matches(r, selector(spec)) for r in finals.to_dict("records")]]
            if group.empty:
                missing.append(describe(spec))
                continue
            actions = np.array(group["joint_action"].tolist(), dtype=float).reshape(-1, 2)
            dist = np.linalg.norm(actions - point, axis=1)
            ok = dist <= check["tol"] if claim.kind == "near" else \
                dist < np.linalg.norm(actions - np.asarray(check["than"], dtype=float), axis=1)
            results.append(bool(ok.all()) if check.get("seeds", "all") == "all" else _most(int(ok.sum()), len(ok)))
            ends = " ".join(f"({a[0]:.2f},{a[1]:.2f})" for a in actions)
            ours.append(f"{describe(spec)}: {int(ok.sum())}/{len(ok)} seeds; final joint actions {ends}")
        return Verdict(combine(results, missing), ours, expects)


def curve_expectation(claim: Claim) -> str:
    check = claim.check
    where = f" ({claim.metric}, final = last evaluation, mean over seeds)"
    if claim.kind == "best":
        among = f" among {', '.join(describe(s) for s in check['among'])}" if "among" in check else ""
        return f"{describe(check['method'])} has the highest final mean{among}{where}"
    if claim.kind == "rank":
        return "ranks by final mean: " + ", ".join(f"{describe(m)} in {r}" for m, r in check["ranks"].items()) + where
    if claim.kind in ("at_most", "at_least"):
        of = "the maximum of the mean curve" if check.get("of") == "max" else "the final mean"
        sign = "<=" if claim.kind == "at_most" else ">="
        return f"{of} {sign} {check['value']:g} for {', '.join(describe(m) for m in check['methods'])}{where}"
    if claim.kind == "better":
        pairs = check.get("pairs") or [[m, t] for m in check["methods"] for t in check["than"]]
        return "final mean " + "; ".join(f"{describe(a)} > {describe(b)}" for a, b in pairs) + where
    if claim.kind == "lower_in":
        return (f"final mean of {', '.join(describe(m) for m in check['methods'])} in {claim.panel} is below "
                f"theirs in {claim.other_panel}{where}")
    return ""


def table_checks(evaluator: Evaluator) -> list[str]:
    """Each printed table entry: the paper's greedy joint action and entries against ours."""
    lines = []
    for name, table in TABLES.items():
        if not table.methods:
            continue
        summary = evaluator.matrix(name)
        rows = []
        for key, entry in table.methods.items():
            ours = [r for r in summary.rows if r["entry"] is entry]
            if not ours:
                rows.append([key, entry.source, joint(entry.greedy) if entry.greedy else "?", "–", "–", NO_RUNS])
                continue
            for row in ours:
                same = sum(tuple(g) == tuple(entry.greedy) for g in row["greedy"]) if entry.greedy else 0
                quantity = "q_main" if entry.compared == "q_main" and row["q_main"] is not None else "q_joint"
                mean = row[quantity][0]
                paper = np.array([[np.nan if v is None else v for v in r] for r in entry.matrices[entry.compared]])
                gap = np.nanmax(np.abs(mean - paper)) if np.isfinite(paper).any() else math.nan
                verdict = (HOLDS if _most(same, row["seeds"]) else FAILS) if entry.greedy else f"{UNCHECKED}: boldface lost"
                rows.append([row["method"], entry.source, joint(entry.greedy) if entry.greedy else "?",
                             f"{same}/{row['seeds']}", f"{gap:.2f}", verdict])
        lines += [f"### {name}: {table.title}", ""]
        lines += markdown_table(["method", "source", "paper's greedy", "our seeds with that greedy action",
                                 "max |ours - paper| (legible entries)", "greedy action reproduced"], rows)
        lines.append("")
    return lines


def report_markdown(runs: Runs) -> str:
    evaluator = Evaluator(runs)
    verdicts = [(claim, evaluator.evaluate(claim)) for claim in CLAIMS]
    counts = pd.Series([v.verdict.split(" (")[0].split(":")[0] for _, v in verdicts]).value_counts()
    lines = ["# Paper claims against our runs", "",
             f"Runs: {runs.root} ({int(runs.runs['usable'].sum())} usable of {len(runs.runs)} run directories).",
             "Claims and printed values: analysis/paper_values.yaml. "
             + ", ".join(f"{counts.get(k, 0)} {k}" for k in (HOLDS, FAILS, NO_RUNS, UNCHECKED)) + ".", ""]
    summary_rows = [[c.id, c.paper, c.source, v.verdict.split(" (")[0].split(":")[0]] for c, v in verdicts]
    lines += markdown_table(["claim", "paper", "source", "in our runs"], summary_rows)
    lines += ["", "## Claims", ""]
    for claim, verdict in verdicts:
        lines += [f"### {claim.id}: {verdict.verdict}", "",
                  f"- paper ({claim.paper}, {claim.source}): \"{claim.text}\""]
        if verdict.expects:
            lines.append(f"- checked as: {verdict.expects}")
        if claim.note:
            lines.append(f"- note: {claim.note}")
        if verdict.ours:
            lines.append("- ours:")
            lines += [f"  - {o}" for o in verdict.ours]
        lines.append("")
    lines += ["## Printed tables: greedy joint actions and values", ""]
    lines += table_checks(evaluator)
    if runs.problems:
        lines += ["## Skipped runs and dropped rows", ""] + runs.problem_lines() + [""]
    return "\n".join(lines)
