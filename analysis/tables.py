"""Tables in Markdown and LaTeX: matrix-game reconstructions beside a paper's, and final performance
(mean ± s.e. over seeds of each run's last evaluations) per method and panel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from analysis.curves import CurveData
from analysis.paper import PaperEntry, PaperTable
from analysis.render import latex_escape, latex_table, markdown_table
from analysis.runs import Runs, last_evaluation, load_result_json
from analysis.stats import fmt_mean_se, mean_se, method_labels, variant_values

TOLERANCE = 0.5  # |joint value - payoff| within which a learned table counts as recovered


def action(i: int) -> str:
    return chr(ord("A") + int(i))


def joint(actions) -> str:
    return "(" + ",".join(action(a) for a in actions) + ")"


def fmt(value) -> str:
    return "?" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


# ---------------------------------------------------------------------------------------------- matrix


@dataclass
class MatrixSummary:
    table: PaperTable
    rows: list[dict]          # one per method label
    skipped_other_game: int   # runs on another payoff / noise level
    skipped_other_method: int  # runs of algorithms the table does not list

    @property
    def payoff(self) -> np.ndarray:
        return np.asarray(self.table.payoff, dtype=float)


def select_matrix_runs(games: pd.DataFrame, table: PaperTable) -> tuple[pd.DataFrame, int, int]:
    """The runs played on the table's payoff and reward noise (any env name), by the algorithms it lists
    when it says `only_listed`; returns them and how many were left out for each reason. Files without
    noise_std are noise-free."""
    if games.empty:
        return games, 0, 0
    target = np.asarray(table.payoff, dtype=float)
    same = games["payoff"].apply(lambda p: np.asarray(p, dtype=float).shape == target.shape
                                 and np.allclose(np.asarray(p, dtype=float), target))
    noise = games["noise_std"].fillna(0.0) if "noise_std" in games else pd.Series(0.0, index=games.index)
    same &= np.isclose(noise.astype(float), table.noise_std)
    listed = games["algorithm"].isin(table.algorithms) if table.only_listed else pd.Series(True, index=games.index)
    return games[same & listed].copy(), int((~same).sum()), int((same & ~listed).sum())


def _stack(column: pd.Series | None) -> np.ndarray | None:
    if column is None or column.isna().any():
        return None
    return np.stack(column.apply(lambda t: np.asarray(t, dtype=float)).tolist())


def summarise_matrix(runs: Runs, table: PaperTable) -> MatrixSummary:
    games = load_result_json(runs, "matrix_game.json")
    chosen, other_game, other_method = select_matrix_runs(games, table)
    rows = []
    if not chosen.empty:
        chosen["method"] = method_labels(chosen)
        chosen["variant"] = variant_values(chosen)
        chosen["optimal"] = chosen.apply(lambda r: list(r["greedy_joint_action"]) == list(r["optimal_joint_action"]), axis=1)
        chosen["recovered"] = chosen["optimal"] & (chosen["max_abs_error"] <= TOLERANCE)
        chosen["igm_violation"] = chosen["run_dir"].apply(lambda d: last_evaluation(runs.metrics, d, "test/igm_violation"))
        order = [e.algorithm for e in table.methods.values()] + list(table.also) + sorted(table.words)

        def rank(method: str) -> tuple:
            algorithm = chosen.loc[chosen["method"] == method, "algorithm"].iloc[0]
            return (order.index(algorithm) if algorithm in order else len(order), method)

        groups = dict(list(chosen.sort_values("seed").groupby("method", sort=False)))
        for method in sorted(groups, key=rank):
            group = groups[method]
            q_joint = _stack(group["q_joint"])
            q_main = _stack(group.get("q_main"))
            names = group["joint_value_name"].dropna().unique() if "joint_value_name" in group else []
            value_name = str(names[0]) if len(names) == 1 else "joint value"
            rows.append({
                "method": method,
                "algorithm": group["algorithm"].iloc[0],
                "main_function": group["main_function"].iloc[0],
                "residual_function": group["residual_function"].iloc[0],
                "entry": table.entry_for(group["algorithm"].iloc[0], group["variant"].iloc[0]),
                "seeds": len(group),
                "seed_list": [None if pd.isna(s) else int(s) for s in group["seed"]],
                "optimal": int(group["optimal"].sum()),
                "recovered": int(group["recovered"].sum()),
                "greedy": [tuple(int(a) for a in g) for g in group["greedy_joint_action"]],
                "max_abs_error": group["max_abs_error"].astype(float).tolist(),
                "igm_violation": mean_se(group["igm_violation"])[0],
                "steps": sorted({int(t) for t in group.get("t_env", pd.Series(dtype=float)).dropna()}),
                "value_name": value_name,
                # the main function is a table of its own only beside a central joint value
                "has_main": q_main is not None and value_name in ("Q_jt", "E[Z_jt]"),
                "q_joint": (q_joint.mean(0), _se(q_joint)),
                "q_main": (q_main.mean(0), _se(q_main)) if q_main is not None else None,
            })
    return MatrixSummary(table, rows, other_game, other_method)


def _se(stack: np.ndarray) -> np.ndarray:
    n = stack.shape[0]
    return stack.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.full(stack.shape[1:], np.nan)


def paper_says(table: PaperTable, row: dict) -> str:
    entry: PaperEntry | None = row["entry"]
    if entry is not None:
        return joint(entry.greedy) if entry.greedy is not None else "? (boldface lost)"
    return table.words.get(row["algorithm"], "not reported")


def summary_rows(summary: MatrixSummary) -> tuple[list[str], list[list[str]]]:
    header = ["method", "joint value", "seeds", "greedy = optimum", f"... and max error <= {TOLERANCE}",
              "max error (median / worst)", "IGM violation (last eval, mean)", "env steps", "paper's greedy"]
    rows = []
    for row in summary.rows:
        errors = row["max_abs_error"]
        rows.append([row["method"], row["value_name"], str(row["seeds"]), f"{row['optimal']}/{row['seeds']}",
                     f"{row['recovered']}/{row['seeds']}", f"{np.median(errors):.2f} / {max(errors):.2f}",
                     fmt(row["igm_violation"]), ", ".join(str(s) for s in row["steps"]) or "?",
                     paper_says(summary.table, row)])
    return header, rows


def _paper_matrices(row: dict) -> tuple[list | None, list | None]:
    """The paper's matrices to put beside our joint value and beside our main function."""
    entry: PaperEntry | None = row["entry"]
    if entry is None:
        return None, None
    if row["has_main"]:
        return entry.matrices.get("q_joint"), entry.matrices.get("q_main")
    return entry.matrices.get("q_joint", entry.matrices.get("q_main")), None


def value_rows(mean: np.ndarray, se: np.ndarray | None, payoff: np.ndarray, paper: list | None) -> tuple[list[str], list[list[str]]]:
    cols = range(payoff.shape[1])
    header = ["u1 \\ u2", *[action(j) for j in cols]]
    if paper is not None:
        header += [f"paper {action(j)}" for j in cols]
    header.append("payoff")
    rows = []
    for i in range(payoff.shape[0]):
        ours = [f"{mean[i, j]:.2f}" + (f" ({se[i, j]:.2f})" if se is not None and np.isfinite(se[i, j]) else "")
                for j in cols]
        theirs = [fmt(v) for v in paper[i]] if paper is not None else []
        rows.append([action(i), *ours, *theirs, " ".join(f"{v:g}" for v in payoff[i])])
    return header, rows


def matrix_markdown(name: str, summary: MatrixSummary) -> str:
    table = summary.table
    lines = [f"# {name}: {table.title}", "", f"Source: {table.source} ({table.paper}).", ""]
    if summary.skipped_other_game:
        lines += [f"({summary.skipped_other_game} run(s) under RUNS_DIR used another payoff or reward noise and are left out.)", ""]
    if summary.skipped_other_method:
        lines += [(f"({summary.skipped_other_method} run(s) of algorithms this table does not list are left out: "
                   f"it lists {', '.join(sorted(table.algorithms))}.)"), ""]
    header, rows = summary_rows(summary)
    lines += markdown_table(header, rows)
    lines += ["", ("Max error: max over joint actions of |learned joint value - payoff|. IGM violation: fraction of "
                   "test states where the joint value's argmax is not the agents' greedy joint action. "
                   "Tables: mean (standard error) over seeds.")]
    for row in summary.rows:
        entry = row["entry"]
        lines += ["", f"## {row['method']}" + (f", beside {entry.label}" if entry else " (not in the paper's table)"), ""]
        if not entry and row["algorithm"] in table.words:
            lines.append(f"paper says: {table.words[row['algorithm']]}")
        greedy = " ".join(f"{s}:{joint(g)}" for s, g in zip(row["seed_list"], row["greedy"]))
        lines.append(f"greedy joint action by seed: {greedy}"
                     + (f"; paper: {joint(entry.greedy)}" if entry and entry.greedy is not None else ""))
        if entry and entry.note:
            lines.append(f"paper note: {entry.note}")
        beside_joint, beside_main = _paper_matrices(row)
        lines += ["", f"{row['value_name']}, mean (s.e.) over {row['seeds']} seeds:", ""]
        lines += markdown_table(*value_rows(*row["q_joint"], summary.payoff, beside_joint))
        if row["has_main"]:
            lines += ["", "its main function's value (what the agents factorize), mean (s.e.) over seeds:", ""]
            lines += markdown_table(*value_rows(*row["q_main"], summary.payoff, beside_main))
    return "\n".join(lines) + "\n"


def matrix_latex(name: str, summary: MatrixSummary) -> str:
    table = summary.table
    parts = [f"% {name}: {table.title} (generated by python -m analysis table {name})\n",
             latex_table(*summary_rows(summary), caption=f"{table.title}. Source: {table.source}.", label=f"tab:{name}")]
    for row in summary.rows:
        beside_joint, beside_main = _paper_matrices(row)
        what = f"{row['method']}: {row['value_name']}, mean (s.e.) over {row['seeds']} seeds"
        if row["entry"] is not None:
            what += f", beside {row['entry'].label}"
        parts.append(latex_table(*value_rows(*row["q_joint"], summary.payoff, beside_joint), caption=what,
                                 label=f"tab:{name}:{row['method']}"))
        if row["has_main"]:
            parts.append(latex_table(*value_rows(*row["q_main"], summary.payoff, beside_main),
                                     caption=f"{row['method']}: main function, mean (s.e.) over seeds"))
    return "\n".join(parts)


def heatmap_rows(summary: MatrixSummary) -> list[tuple[str, np.ndarray, str, np.ndarray | None]]:
    """(method, our matrix beside the paper's headline one, the paper's label, its matrix)."""
    from analysis.figures import _nan_matrix

    rows = []
    for row in summary.rows:
        entry = row["entry"]
        if entry is not None and entry.compared == "q_main" and row["q_main"] is not None:
            ours = row["q_main"][0]
        else:
            ours = row["q_joint"][0]
        paper = _nan_matrix(entry.matrices[entry.compared]) if entry is not None else None
        rows.append((row["method"], ours, entry.label if entry else "", paper))
    return rows


# ------------------------------------------------------------------------------------ final performance


def final_rows(data: CurveData, last: int = 1) -> tuple[list[str], list[list[str]]]:
    final = data.final(last)
    panels = data.panels
    header = ["method", *panels]
    rows = []
    for method in data.methods:
        cells = [method]
        for panel in panels:
            hit = final[(final["method"] == method) & (final["panel"] == panel)]
            cells.append(fmt_mean_se(hit["mean"].iloc[0], hit["se"].iloc[0], int(hit["n"].iloc[0])) if len(hit) else "–")
        rows.append(cells)
    return header, rows


def final_markdown(name: str, title: str, data: CurveData, last: int = 1) -> str:
    what = "its last evaluation" if last == 1 else f"the mean of its last {last} evaluations"
    lines = [f"# {name}: final {data.metric}", "", title, "",
             f"Per run {what}; mean ± standard error over seeds (n = seeds)."
             + (f" Panels split by {', '.join(data.setting_keys)}." if data.setting_keys else ""), ""]
    lines += markdown_table(*final_rows(data, last))
    return "\n".join(lines) + "\n"


def final_latex(name: str, title: str, data: CurveData, last: int = 1) -> str:
    return (f"% {name}: final {data.metric} (generated by python -m analysis table {name})\n"
            + latex_table(*final_rows(data, last), caption=f"{title}: final {data.metric}, mean ± s.e. over seeds",
                          label=f"tab:{name}"))


def mtq_rows(data: CurveData, finals: pd.DataFrame, optimum=(5.0, 5.0), tol: float = 0.5) -> tuple[list[str], list[list[str]]]:
    """Per method: final joint action (mean ± s.e. of each agent's action), reward there, seeds near the
    optimum."""
    header = ["method", "final a_1", "final a_2", "reward there (unscaled)", f"seeds within {tol:g} of {tuple(optimum)}"]
    rows = []
    labels = data.runs.set_index("run_dir")["method"]
    finals = finals[finals["run_dir"].isin(labels.index)].copy()
    finals["method"] = finals["run_dir"].map(labels)
    for method in data.methods:
        group = finals[finals["method"] == method]
        actions = np.array([a for a in group["joint_action"]], dtype=float).reshape(-1, 2)
        near = int((np.linalg.norm(actions - np.asarray(optimum), axis=1) <= tol).sum()) if len(actions) else 0
        rows.append([method, fmt_mean_se(*mean_se(actions[:, 0])) if len(actions) else "–",
                     fmt_mean_se(*mean_se(actions[:, 1])) if len(actions) else "–",
                     fmt_mean_se(*mean_se(group["reward"].astype(float))) if "reward" in group and len(group) else "–",
                     f"{near}/{len(actions)}"])
    return header, rows


__all__ = ["TOLERANCE", "final_latex", "final_markdown", "latex_escape", "matrix_latex", "matrix_markdown",
           "mtq_rows", "summarise_matrix"]
