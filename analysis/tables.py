"""`python -m analysis table NAME RUNS_DIR`: our learned matrix-game tables beside a paper's."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from analysis.paper import TABLES, PaperEntry, PaperTable  # noqa: E402
from analysis.runs import last_evaluation, load_matrix_games, method_labels  # noqa: E402

TOLERANCE = 0.5  # |Q_jt - payoff| within which a table counts as recovered (ResQ Table 2b reading)


def action(i: int) -> str:
    return chr(ord("A") + i)


def joint(actions) -> str:
    return "(" + ",".join(action(int(a)) for a in actions) + ")"


def fmt(value) -> str:
    return "?" if value is None or (isinstance(value, float) and np.isnan(value)) else f"{value:.2f}"


def get_table(name: str) -> PaperTable:
    if name not in TABLES:
        raise KeyError(f"unknown table {name!r}; available: {', '.join(sorted(TABLES))}")
    return TABLES[name]


def select_runs(frame: pd.DataFrame, table: PaperTable) -> tuple[pd.DataFrame, int]:
    """The runs played on the table's payoff and reward noise (any env name); returns them and how many
    were skipped. Result files without `noise_std` are noise-free games."""
    target = np.asarray(table.payoff, dtype=float)
    same = frame["payoff"].apply(lambda p: np.asarray(p, dtype=float).shape == target.shape
                                 and np.allclose(np.asarray(p, dtype=float), target))
    noise = frame["noise_std"].fillna(0.0) if "noise_std" in frame else pd.Series(0.0, index=frame.index)
    same &= np.isclose(noise.astype(float), table.noise_std)
    return frame[same].copy(), int((~same).sum())


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per method: seeds, seeds at the optimum, seeds at the optimum AND within tolerance, errors."""
    runs = runs.assign(method=method_labels(runs))
    runs["optimal"] = runs.apply(lambda r: list(r["greedy_joint_action"]) == list(r["optimal_joint_action"]), axis=1)
    runs["recovered"] = runs["optimal"] & (runs["max_abs_error"] <= TOLERANCE)
    runs["igm_violation"] = runs["run_dir"].apply(lambda d: last_evaluation(d, "test/igm_violation"))
    rows = []
    for method, group in runs.groupby("method", sort=False):
        greedy = group["greedy_joint_action"].apply(joint)
        rows.append({
            "method": method,
            "algorithm": group["algorithm"].iloc[0],
            "seeds": len(group),
            "optimal": int(group["optimal"].sum()),
            "optimal_and_within_tol": int(group["recovered"].sum()),
            "max_abs_error_median": float(group["max_abs_error"].median()),
            "max_abs_error_max": float(group["max_abs_error"].max()),
            "igm_violation_mean": float(group["igm_violation"].mean()),
            "joint_value_name": _value_name(group),
            "q_main_mean": _mean_table(group.get("q_main")),
            "greedy_by_seed": " ".join(f"{s}:{g}" for s, g in zip(group["seed"], greedy)),
            "q_joint_mean": np.mean(np.stack(group["q_joint"].apply(np.asarray).tolist()), axis=0),
            "q_joint_std": np.std(np.stack(group["q_joint"].apply(np.asarray).tolist()), axis=0),
        })
    return pd.DataFrame(rows)


def _mean_table(column: pd.Series | None) -> np.ndarray | None:
    """Mean over seeds of a per-run table column (None when any run lacks it)."""
    if column is None or column.isna().any():
        return None
    return np.mean(np.stack(column.apply(lambda t: np.asarray(t, dtype=float)).tolist()), axis=0)


def _value_name(group: pd.DataFrame) -> str:
    """The learned joint value's name (Q_jt, E[Z_jt], ...) as the runs recorded it."""
    if "joint_value_name" not in group:
        return "joint value"
    names = group["joint_value_name"].dropna().unique()
    return str(names[0]) if len(names) == 1 else "joint value"


def paper_says(table: PaperTable, algorithm: str) -> str:
    entry = table.methods.get(algorithm)
    if entry:
        return joint(entry.greedy)
    return table.claims.get(algorithm, "not reported")


def markdown(name: str, table: PaperTable, summary: pd.DataFrame, skipped: int) -> str:
    lines = [f"# {name}: {table.title}", ""]
    if skipped:
        lines += [f"({skipped} run(s) under RUNS_DIR used another payoff or reward noise and are left out.)", ""]
    lines += [
        (f"| method | joint value | seeds | greedy = optimum | ... and max error <= {TOLERANCE} "
         "| max error (median / worst) | IGM violation (last eval, mean) | paper's greedy |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in summary.itertuples():
        paper = paper_says(table, row.algorithm)
        lines.append(f"| {row.method} | {row.joint_value_name} | {row.seeds} | {row.optimal}/{row.seeds} "
                     f"| {row.optimal_and_within_tol}/{row.seeds} | {row.max_abs_error_median:.2f} / {row.max_abs_error_max:.2f} "
                     f"| {fmt(row.igm_violation_mean)} | {paper} |")
    lines += ["", ("Max error: max over joint actions of |learned joint value - payoff|. IGM violation: fraction of "
                   "test states where the joint value's argmax is not the agents' greedy joint action.")]
    payoff = np.asarray(table.payoff)
    for row in summary.itertuples():
        entry = table.methods.get(row.algorithm)
        lines += ["", f"## {row.method}" + (f", beside {entry.label}" if entry else " (not in the paper's table)"), ""]
        if not entry and row.algorithm in table.claims:
            lines.append(f"paper says: {table.claims[row.algorithm]}")
        lines.append(f"greedy joint action by seed: {row.greedy_by_seed}" + (f"; paper: {joint(entry.greedy)}" if entry else ""))
        if entry and entry.note:
            lines.append(f"paper note: {entry.note}")
        has_main = row.q_main_mean is not None and row.joint_value_name in ("Q_jt", "E[Z_jt]")
        compare_main = bool(entry) and entry.value == "q_main" and has_main
        lines += ["", f"{row.joint_value_name}, mean (std) over {row.seeds} seeds:", ""]
        lines += value_table(row.q_joint_mean, row.q_joint_std, payoff, None if compare_main else entry)
        if has_main:
            lines += ["", "its main function's value (what the agents factorize), mean over seeds:", ""]
            lines += value_table(row.q_main_mean, None, payoff, entry if compare_main else None)
    return "\n".join(lines) + "\n"


def value_table(mean: np.ndarray, std: np.ndarray | None, payoff: np.ndarray, entry: PaperEntry | None) -> list[str]:
    """Markdown rows: our mean (std) table, the paper's beside it when given, and the payoff."""
    cols = range(payoff.shape[1])
    header = "| u1 \\ u2 | " + " | ".join(action(j) for j in cols)
    header += (" | paper " + " | paper ".join(action(j) for j in cols)) if entry else ""
    lines = [header + " | payoff |", "|---" * (1 + payoff.shape[1] * (2 if entry else 1) + 1) + "|"]
    for i in range(payoff.shape[0]):
        ours = [f"{mean[i, j]:.2f}" + (f" ({std[i, j]:.2f})" if std is not None else "") for j in cols]
        theirs = [fmt(v) for v in entry.q_joint[i]] if entry else []
        pay = " ".join(f"{v:g}" for v in payoff[i])
        lines.append(f"| {action(i)} | " + " | ".join(ours + theirs) + f" | {pay} |")
    return lines


def heatmap(path: Path, method: str, mean: np.ndarray, payoff: np.ndarray, entry: PaperEntry | None) -> None:
    panels = [("ours (mean over seeds)", mean), ("payoff", payoff)]
    if entry is not None:
        panels.insert(1, (entry.label, np.array([[np.nan if v is None else v for v in r] for r in entry.q_joint])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    lim = float(np.nanmax(np.abs(np.concatenate([p.ravel() for _, p in panels]))))
    labels = [action(j) for j in range(payoff.shape[0])]
    for ax, (title, values) in zip(axes[0], panels):
        sns.heatmap(values, annot=True, fmt=".2f", cmap="RdBu", vmin=-lim, vmax=lim, cbar=False, ax=ax,
                    xticklabels=labels, yticklabels=labels, square=True)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("agent 2")
        ax.set_ylabel("agent 1")
    fig.suptitle(method)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def table_command(name: str, runs_dir: str, out: str | None = None) -> str:
    """Print the Markdown comparison, write it and one heatmap PNG per method to `out`."""
    table = get_table(name)
    runs, skipped = select_runs(load_matrix_games(runs_dir), table)
    if runs.empty:
        raise SystemExit(f"no run under {runs_dir} played the payoff of {name} ({table.payoff})")
    summary = summarise(runs)
    text = markdown(name, table, summary, skipped)
    out_dir = Path(out) if out else Path(runs_dir) / "analysis"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(text)
    payoff = np.asarray(table.payoff, dtype=float)
    for row in summary.itertuples():
        safe = "".join(c if c.isalnum() or c in "_-" else "_" for c in row.method)
        entry = table.methods.get(row.algorithm)
        ours = row.q_main_mean if entry and entry.value == "q_main" and row.q_main_mean is not None else row.q_joint_mean
        heatmap(out_dir / f"{name}_{safe}.png", row.method, ours, payoff, entry)
    return text + f"\nwritten: {out_dir / (name + '.md')} and {len(summary)} heatmap(s) in {out_dir}\n"
