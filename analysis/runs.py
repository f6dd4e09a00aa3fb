"""Read the result files that `resq.run` writes (see resq/results.py for the contract)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

GROUP_COLUMNS = ["algorithm", "main_function", "residual_function"]


class NoResultsError(FileNotFoundError):
    """RUNS_DIR holds none of the files a command needs."""


def load_matrix_games(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run: the run columns plus payoff, q_joint, q_agents, greedy and optimal actions."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise NoResultsError(f"{runs_dir} is not a directory of runs")
    rows = []
    for path in sorted(runs_dir.rglob("matrix_game.json")):
        record = json.loads(path.read_text())
        record["run_dir"] = str(path.parent)
        rows.append(record)
    if not rows:
        raise NoResultsError(
            f"no matrix_game.json under {runs_dir}; run a matrix-game sweep first, e.g. "
            f"python -m resq.run -m algorithm=resq,qmix,vdn env=matrix_resq seed=0,1,2,3,4"
        )
    frame = pd.DataFrame(rows)
    for column in GROUP_COLUMNS:
        frame[column] = frame[column].fillna("none").astype(str)
    return frame


def last_evaluation(run_dir: str | Path, metric: str) -> float:
    """`metric` in the last evaluation row of a run's metrics.csv (nan if the file or column is absent)."""
    path = Path(run_dir) / "metrics.csv"
    if not path.exists():
        return float("nan")
    frame = pd.read_csv(path)
    if metric not in frame.columns or frame.empty:
        return float("nan")
    return float(frame[metric].iloc[-1])


def load_metrics(runs_dir: str | Path) -> pd.DataFrame:
    """Every evaluation row of every run under `runs_dir` (tidy: one row per run and t_env)."""
    runs_dir = Path(runs_dir)
    frames = []
    for path in sorted(runs_dir.rglob("metrics.csv")):
        frame = pd.read_csv(path)
        frame["run_dir"] = str(path.parent)
        frames.append(frame)
    if not frames:
        raise NoResultsError(f"no metrics.csv under {runs_dir}; point the command at a run or multirun directory")
    frame = pd.concat(frames, ignore_index=True)
    for column in GROUP_COLUMNS:
        frame[column] = frame[column].fillna("none").astype(str)
    return frame


def method_labels(frame: pd.DataFrame) -> pd.Series:
    """`algorithm`, or `algorithm[main=..., residual=...]` where one algorithm ran with several parts."""
    combos = frame.groupby("algorithm")[["main_function", "residual_function"]].nunique().max(axis=1)
    def label(row) -> str:
        if combos[row["algorithm"]] <= 1:
            return row["algorithm"]
        return f"{row['algorithm']}[main={row['main_function']},residual={row['residual_function']}]"
    return frame.apply(label, axis=1)
