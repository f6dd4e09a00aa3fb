"""Read the result files that `resq.run` writes (resq/results.py states the contract) into tidy frames.

A run directory is any directory holding one of RUN_FILES; the loader walks RUNS_DIR (a single run, a
multirun sweep, or any nesting of them), skipping hidden directories (Hydra's `.hydra/`) and Lightning's
`lightning_logs/` (whose own metrics.csv is not ours). It only reads.

Every run gets a status:
  finished    run.json says "finished"; or, without run.json (older runs), its last t_env >= t_max
  running     run.json says "running" (a live run, or one that was killed)
  failed      run.json says "failed", or error.txt exists
  unfinished  no run.json, and the last evaluation is short of t_max (or there is none)
Only finished runs reach the tables and figures; the others are listed in `Runs.problems`, which the
commands print.

Every run also gets `experiment`: the `experiment=` preset that made it (from run.json: the sweep job's
overrides, else the command line), or "none". A curve analysis reads its own preset's runs and runs made
without a preset, so two presets that share envs (ResQ Fig. 3 on SMAX and Fig. 5) do not mix. A half-written metrics.csv (a last line without its newline, or a row with the wrong
number of fields) loses that row only, with a note.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

RUN_COLUMNS = ["env", "algorithm", "main_function", "residual_function", "seed"]
GROUP_COLUMNS = ["algorithm", "main_function", "residual_function"]
RUN_FILES = ("metrics.csv", "config.yaml", "run.json", "error.txt", "matrix_game.json", "mtq.json")
SKIP_DIRS = {"lightning_logs", "__pycache__"}
STATUSES = ("finished", "running", "failed", "unfinished")


class NoResultsError(FileNotFoundError):
    """RUNS_DIR holds none of the files a command needs."""


@dataclass(frozen=True)
class Problem:
    """A run that was skipped (or a row that was dropped), and why."""

    run_dir: str
    status: str
    reason: str

    def __str__(self) -> str:
        return f"{self.run_dir}: {self.status} ({self.reason})"


@dataclass
class Runs:
    """Everything under one RUNS_DIR.

    runs     one row per run directory: run_dir, status, reason, the run columns, experiment (the preset),
             t_max, test_interval, last_t_env, evaluations, and `config` (the resolved config flattened)
    metrics  one row per evaluation of the usable runs: the run columns, t_env, every metric, run_dir,
             status, and `step` (t_env rounded to the run's evaluation grid, so seeds line up)
    problems skipped runs and dropped rows, for the commands to print
    """

    root: Path
    runs: pd.DataFrame
    metrics: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)

    def usable(self) -> pd.DataFrame:
        return self.runs[self.runs["usable"]]

    def config(self, run_dir: str) -> dict[str, Any]:
        row = self.runs.loc[self.runs["run_dir"] == run_dir]
        return row["config"].iloc[0] if len(row) else {}

    def problem_lines(self) -> list[str]:
        return [f"- {p}" for p in self.problems]


def find_run_dirs(root: Path) -> list[Path]:
    """Directories holding a run's files, outermost first; a run directory is not searched further."""
    found = []
    for current, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        if any(name in files for name in RUN_FILES):
            found.append(Path(current))
            dirs[:] = []
    return found


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become tuples (hashable), empty dicts are dropped."""
    if isinstance(node, dict):
        flat: dict[str, Any] = {}
        for key, value in node.items():
            flat.update(flatten(value, f"{prefix}{key}."))
        return flat
    if isinstance(node, list):
        node = tuple(_freeze(v) for v in node)
    return {prefix[:-1]: node} if prefix else {}


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


def read_metrics_csv(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """metrics.csv as a frame, dropping a half-written last line and malformed rows (with notes)."""
    text = path.read_text()
    notes = []
    if text and not text.endswith("\n"):
        text, _, tail = text.rpartition("\n")
        text += "\n" if text else ""
        notes.append(f"dropped a half-written last line {tail[:40]!r}")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        return pd.DataFrame(), notes
    header, body = rows[0], rows[1:]
    good = [r for r in body if len(r) == len(header)]
    if len(good) < len(body):
        notes.append(f"dropped {len(body) - len(good)} row(s) with the wrong number of fields")
    frame = pd.read_csv(io.StringIO("\n".join([",".join(header)] + [_csv_line(r) for r in good]) + "\n"))
    if "t_env" not in frame.columns:
        notes.append("no t_env column")
        return pd.DataFrame(), notes
    frame = frame[pd.to_numeric(frame["t_env"], errors="coerce").notna()].copy()
    frame["t_env"] = frame["t_env"].astype(int)
    if frame["t_env"].duplicated().any():  # a resumed run may repeat an evaluation: the last one counts
        notes.append("repeated evaluations at the same t_env: kept the last")
        frame = frame.drop_duplicates("t_env", keep="last")
    return frame.sort_values("t_env").reset_index(drop=True), notes


def _csv_line(row: list[str]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(row)
    return buffer.getvalue()


def read_json(path: Path) -> tuple[dict | None, str]:
    if not path.exists():
        return None, ""
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        return None, f"{path.name} is not valid JSON ({error})"
    return (value, "") if isinstance(value, dict) else (None, f"{path.name} does not hold a JSON object")


def read_config(run_dir: Path, run_json: dict | None) -> tuple[dict, str]:
    config_path = run_dir / "config.yaml"
    if config_path.exists():
        try:
            config = yaml.safe_load(config_path.read_text()) or {}
        except yaml.YAMLError as error:
            return {}, f"config.yaml does not parse ({error})"
        return (config, "") if isinstance(config, dict) else ({}, "config.yaml is not a mapping")
    if run_json and isinstance(run_json.get("config"), dict):
        return run_json["config"], ""
    return {}, ""


def preset_of(run_json: dict | None) -> str:
    """The `experiment=` preset a run was made with: the last `experiment=NAME` (`+` or `++` allowed) of its
    sweep job's overrides, else of its command line; "none" without one (or without run.json)."""
    if not run_json:
        return "none"
    job = run_json.get("job") if isinstance(run_json.get("job"), dict) else {}
    for arguments in (job.get("overrides"), run_json.get("command")):
        if not isinstance(arguments, list):
            continue
        names = [str(a).split("=", 1)[1] for a in arguments if str(a).lstrip("+").startswith("experiment=")]
        if names:
            return "none" if names[-1] in ("", "null") else names[-1]
    return "none"


def _number(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def run_status(run_json: dict | None, has_error: bool, last_t_env: float, t_max: float) -> tuple[str, str]:
    """(status, reason) by the rules in this module's docstring."""
    if run_json is not None and "status" in run_json:
        status = str(run_json["status"])
        if status not in ("finished", "running", "failed"):
            return "unfinished", f"run.json has an unknown status {status!r}"
        reason = {"finished": "", "running": "run.json says running (live, or killed before it finished)",
                  "failed": "run.json says failed"}[status]
        if status == "failed" and run_json.get("error"):
            reason += f": {str(run_json['error']).splitlines()[0][:120]}"
        return status, reason
    if has_error:
        return "failed", "error.txt present"
    if math.isnan(last_t_env):
        return "unfinished", "no evaluation in metrics.csv"
    if math.isnan(t_max):
        return "unfinished", "no run.json and no t_max in config.yaml, so cannot tell whether it finished"
    if last_t_env >= t_max:
        return "finished", ""
    return "unfinished", f"last evaluation at t_env {int(last_t_env)} < t_max {int(t_max)}"


def load_runs(runs_dir: str | Path, include_unfinished: bool = False) -> Runs:
    """Every run under `runs_dir`. With include_unfinished, running/unfinished runs' evaluations are kept
    too (failed ones never are); they are still listed as problems."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise NoResultsError(f"{root} is not a directory; point the command at a run or multirun directory")
    records, frames, problems = [], [], []
    for run_dir in find_run_dirs(root):
        record, frame, notes = _load_one(run_dir)
        usable = record["status"] == "finished" or (include_unfinished and record["status"] in ("running", "unfinished"))
        record["usable"] = usable and not frame.empty
        records.append(record)
        if record["status"] != "finished":
            problems.append(Problem(record["run_dir"], record["status"],
                                    record["reason"] + ("" if usable else "; skipped")))
        elif frame.empty:
            problems.append(Problem(record["run_dir"], record["status"], "no evaluation in metrics.csv; skipped"))
        problems += [Problem(record["run_dir"], record["status"], note) for note in notes]
        if record["usable"]:
            frames.append(frame)
    if not records:
        raise NoResultsError(f"no run directory (with {', '.join(RUN_FILES[:3])}, ...) under {root}; "
                             f"point the command at a run or multirun directory")
    runs = pd.DataFrame(records)
    metrics = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=[*RUN_COLUMNS, "t_env", "step", "run_dir", "status"])
    return Runs(root, runs, metrics, problems)


def _load_one(run_dir: Path) -> tuple[dict, pd.DataFrame, list[str]]:
    notes: list[str] = []
    run_json, problem = read_json(run_dir / "run.json")
    if problem:
        notes.append(problem)
    config, problem = read_config(run_dir, run_json)
    if problem:
        notes.append(problem)
    flat = flatten(config)
    frame = pd.DataFrame()
    if (run_dir / "metrics.csv").exists():
        frame, csv_notes = read_metrics_csv(run_dir / "metrics.csv")
        notes += [f"metrics.csv: {n}" for n in csv_notes]
    t_max = _number(flat.get("t_max"))
    test_interval = _number(flat.get("test_interval"))
    last_t_env = float(frame["t_env"].iloc[-1]) if not frame.empty else math.nan
    status, reason = run_status(run_json, (run_dir / "error.txt").exists(), last_t_env, t_max)
    columns = _run_columns(frame, run_json, run_dir, flat)
    record = {"run_dir": str(run_dir), "status": status, "reason": reason, **columns,
              "experiment": preset_of(run_json), "t_max": t_max,
              "test_interval": test_interval, "last_t_env": last_t_env, "evaluations": len(frame),
              "config": flat}
    if not frame.empty:
        for column, value in columns.items():
            frame[column] = frame[column].where(frame[column].notna(), value) if column in frame else value
        frame[GROUP_COLUMNS + ["env"]] = frame[GROUP_COLUMNS + ["env"]].fillna("none").astype(str)
        frame["seed"] = pd.to_numeric(frame["seed"], errors="coerce")
        grid = test_interval if test_interval > 0 else math.nan
        frame["step"] = frame["t_env"] if math.isnan(grid) else (frame["t_env"] / grid).round().astype(int) * int(grid)
        frame["run_dir"] = str(run_dir)
        frame["status"] = status
    return record, frame, notes


def _run_columns(frame: pd.DataFrame, run_json: dict | None, run_dir: Path, flat: dict) -> dict[str, Any]:
    """The run columns from metrics.csv, else run.json, else a result file; "none" when unknown."""
    sources = []
    if not frame.empty:
        sources.append(frame.iloc[0].to_dict())
    if run_json:
        sources.append(run_json)
        sources.append(run_json.get("choices") or {})
    for name in ("matrix_game.json", "mtq.json"):
        value, _ = read_json(run_dir / name)
        if value:
            sources.append(value)
    if "seed" in flat:
        sources.append({"seed": flat["seed"]})
    columns: dict[str, Any] = {}
    for column in RUN_COLUMNS:
        value = next((s[column] for s in sources if s.get(column) is not None and s.get(column) == s.get(column)), None)
        columns[column] = value if column == "seed" else ("none" if value is None else str(value))
    columns["seed"] = _number(columns["seed"])
    return columns


def load_result_json(runs: Runs, name: str) -> pd.DataFrame:
    """One row per usable run holding `name` (matrix_game.json, mtq.json): its fields, the run columns
    (from the run's record where the file lacks them), run_dir and the flattened config."""
    rows = []
    for record in runs.usable().to_dict("records"):
        value, problem = read_json(Path(record["run_dir"]) / name)
        if problem:
            runs.problems.append(Problem(record["run_dir"], record["status"], f"{problem}; skipped"))
        if not value:
            continue
        for column in RUN_COLUMNS:
            if value.get(column) is None:
                value[column] = record[column]
        value["run_dir"], value["config"], value["experiment"] = record["run_dir"], record["config"], record["experiment"]
        rows.append(value)
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame[GROUP_COLUMNS + ["env"]] = frame[GROUP_COLUMNS + ["env"]].fillna("none").astype(str)
    return frame


def last_evaluation(metrics: pd.DataFrame, run_dir: str, metric: str) -> float:
    """`metric` at a run's last evaluation (nan when the run or the column is absent)."""
    if metric not in metrics.columns:
        return math.nan
    rows = metrics[metrics["run_dir"] == run_dir]
    return float(rows.sort_values("t_env")[metric].iloc[-1]) if len(rows) else math.nan
