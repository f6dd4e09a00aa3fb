"""Result files, the contract that `analysis` and users rely on.

Each run directory holds:
  metrics.csv        one row per evaluation: t_env, every test/* metric, and the run's
                     env / algorithm / main_function / residual_function / seed columns
  matrix_game.json   one-step matrix games only: payoff, noise_std, q_joint (the joint value:
                     Q_jt / Q_tot, or E[Z_jt] / E[Z_tot] for distributional methods, named by
                     joint_value_name), q_main, q_agents, greedy_joint_action,
                     optimal_joint_action, and the same run columns; actor-critic methods add
                     `policy` (each agent's action probabilities; greedy = the most likely action)
  mtq.json           MTQ only (envs.MaxOfTwoQuadratics): the final deterministic joint_action, its
                     unscaled reward, distance_to_global_optimum, t_env and the run columns
  config.yaml        the resolved config
  run.json           the run record (`RunRecord`): status "running" | "finished" | "failed", the
                     resolved config, git commit and dirty flag, package versions, seed, host, times
  checkpoints/       last.ckpt, the newest checkpoint (`resq.checkpoint`), while checkpointing is on
  error.txt          only if the run failed: the error, the env step it happened at

A sweep directory also holds `failures.jsonl`: one line per failed job (which job, why), written by the
job itself when it raises and by the sweep's launcher when the job's process died (killed, cancelled).

Rows are appended and flushed one evaluation at a time, so a crash never loses what was written; after
a resume, metrics.csv is rewritten from the checkpoint's rows before training goes on, so every
evaluation appears exactly once.
"""

from __future__ import annotations

import csv
import datetime
import importlib.metadata
import json
import logging
import math
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

log = logging.getLogger(__name__)

RUN_COLUMNS = ("env", "algorithm", "main_function", "residual_function", "seed")


class MetricsCSV(pl.Callback):
    """Appends one row to `metrics.csv` after every evaluation (Lightning validation)."""

    def __init__(self, path: str | os.PathLike, run_columns: dict[str, Any]) -> None:
        self.path = Path(path)
        self.run_columns = dict(run_columns)
        self.fieldnames: list[str] | None = None
        self.rows: list[dict[str, Any]] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")}
        t_env = getattr(trainer.datamodule, "t_env", None)
        row = {"t_env": int(t_env) if t_env is not None else trainer.global_step, **metrics, **self.run_columns}
        self.append(row)
        log.info("t_env %d: %s", row["t_env"], "  ".join(f"{k} {v:.3f}" for k, v in metrics.items()))

    def append(self, row: dict[str, Any]) -> None:
        new_file = self.fieldnames is None
        if new_file:
            self.fieldnames = list(row)
        extra = [k for k in row if k not in self.fieldnames]
        if extra:  # a metric that appeared later (rare): rewrite the file with the wider header
            self.fieldnames += extra
            new_file = True
        self.rows.append(row)
        tmp = self.path.with_suffix(".csv.tmp")
        if new_file:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=self.fieldnames)
                writer.writeheader()
                writer.writerows(self.rows)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        else:
            with open(self.path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=self.fieldnames).writerow(row)
                f.flush()
                os.fsync(f.fileno())

    @property
    def last(self) -> dict[str, Any]:
        return self.rows[-1] if self.rows else {}

    # Lightning saves these in every checkpoint; a resumed run rewrites metrics.csv from them, dropping
    # rows of evaluations after the checkpoint (they are run again, identically).
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(row) for row in self.rows], "fieldnames": list(self.fieldnames or [])}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows, self.fieldnames = [], None
        for row in state["rows"]:
            self.append(row)
        if not self.rows and self.path.exists():
            self.path.unlink()


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    """Write JSON atomically (a temp file then rename), so a crash never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ---- run records ----------------------------------------------------------------------------------
RUN_RECORD = "run.json"
FAILURES = "failures.jsonl"
# Environment packages recorded when installed (looked up without importing them).
ENV_PACKAGES = ("smac", "pysc2", "jaxmarl", "jax", "pettingzoo", "mpe2", "lbforaging", "gymnasium", "vmas")
CORE_PACKAGES = ("torch", "pytorch-lightning", "hydra-core", "omegaconf", "torchmetrics", "resq-suite")
# StarCraft II builds (the Versions/Base<build> folder) of the versions SMAC papers use.
SC2_BUILDS = {"69232": "4.6.2", "75689": "4.10"}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_run_record(output_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run.json of `output_dir`, or None if there is none (or it is unreadable)."""
    path = Path(output_dir) / RUN_RECORD
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def package_versions() -> dict[str, str]:
    """Versions of the core packages and of every environment package that is installed."""
    versions = {}
    for name in CORE_PACKAGES + ENV_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            if name in CORE_PACKAGES:
                versions[name] = None
    sc2 = starcraft2_version()
    if sc2 is not None:
        versions["StarCraftII"] = sc2
    return versions


def starcraft2_version() -> str | None:
    """The newest StarCraft II build under $SC2PATH (default ~/StarCraftII), as a version when known."""
    versions = Path(os.environ.get("SC2PATH", Path.home() / "StarCraftII")) / "Versions"
    builds = sorted((p.name[len("Base"):] for p in versions.glob("Base*")), key=lambda b: int(b) if b.isdigit() else 0)
    if not builds:
        return None
    build = builds[-1]
    return f"{SC2_BUILDS[build]} (build {build})" if build in SC2_BUILDS else f"build {build}"


def git_state(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The commit of the checkout the code runs from and whether tracked files differ from it."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parents[1]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=20, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": None if status is None else bool(status)}


class RunRecord:
    """run.json: written when a run starts ("running"), and when it ends ("finished" with the last
    evaluation's row as `result`, or "failed" with the error). A resumed run keeps the first start time
    and counts its attempts."""

    def __init__(self, output_dir: str | os.PathLike, payload: dict[str, Any]) -> None:
        self.path = Path(output_dir) / RUN_RECORD
        self.payload = payload

    @classmethod
    def start(cls, output_dir: str | os.PathLike, config: dict[str, Any], columns: dict[str, Any],
              job: dict[str, Any] | None = None, resumed_from: str | None = None) -> RunRecord:
        previous = read_run_record(output_dir) or {}
        attempt = int(previous.get("attempt", 0)) + 1
        payload = {
            "status": "running",
            **columns,
            "attempt": attempt,
            "resumed_from": resumed_from,
            "start_time": previous.get("start_time") if resumed_from else None,
            "attempt_start_time": now(),
            "end_time": None,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job_id": slurm_job_id(),
            "command": sys.argv,
            "job": job,
            "git": git_state(),
            "python": sys.version.split()[0],
            "versions": package_versions(),
            "config": config,
        }
        payload["start_time"] = payload["start_time"] or payload["attempt_start_time"]
        record = cls(output_dir, payload)
        record.write()
        return record

    def write(self) -> None:
        write_json(self.path, self.payload)

    def update(self, **fields: Any) -> None:
        self.payload.update(fields)
        self.write()

    def finish(self, result: dict[str, Any], t_env: int) -> None:
        self.update(status="finished", end_time=now(), t_env=t_env, result=result, error=None)

    def fail(self, error: BaseException | str) -> None:
        self.update(status="failed", end_time=now(), error=error_text(error))


def slurm_job_id() -> str | None:
    """The SLURM job this process runs in, as squeue/sacct/scancel name it ("<array>_<task>" in an array)."""
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return f"{array}_{task}" if array and task else os.environ.get("SLURM_JOB_ID")


def error_text(error: BaseException | str) -> str:
    return error if isinstance(error, str) else f"{type(error).__name__}: {error}"


def mark_failed(output_dir: str | os.PathLike, error: BaseException | str, **fields: Any) -> None:
    """Set run.json's status to "failed" from outside the run (its process died), creating a minimal
    record if the job never started. A finished record is never touched."""
    record = read_run_record(output_dir) or {}
    if record.get("status") == "finished":
        return
    record.update(status="failed", end_time=now(), error=error_text(error), **fields)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(output_dir) / RUN_RECORD, record)


def append_failure(sweep_dir: str | os.PathLike, job: int | None, job_dir: str | os.PathLike,
                   overrides: list[str], error: BaseException | str, kind: str) -> None:
    """One line in `<sweep dir>/failures.jsonl` (a single O_APPEND write, so parallel jobs can share it).
    `kind` is "exception" (the job raised) or "died" (its process ended without a result)."""
    entry = {"time": now(), "job": job, "dir": str(job_dir), "overrides": list(overrides), "kind": kind,
             "error": error_text(error)}
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    line = (json.dumps(entry, default=_jsonable) + "\n").encode()
    fd = os.open(Path(sweep_dir) / FAILURES, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
