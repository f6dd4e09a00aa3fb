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
  error.txt          only if the run failed: the error, the env step it happened at

Rows are appended and flushed one evaluation at a time, so a crash never loses what was written.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
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
