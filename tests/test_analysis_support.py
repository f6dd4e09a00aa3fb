"""Writers of synthetic result folders for the analysis tests (the files resq.run writes, by hand)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

RESQ_PAYOFF = [[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]]
QTRAN_PAYOFF = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


def write_run(root: Path, name: str, *, env: str, algorithm: str, seed: int, evaluations: list[dict],
              main_function: str = "none", residual_function: str = "none", t_max: int | None = None,
              test_interval: int = 1000, config: dict | None = None, status: str | None = None,
              matrix_game: dict | None = None, mtq: dict | None = None, error: str | None = None,
              truncate_last: bool = False, write_config: bool = True, run_json: dict | None = None) -> Path:
    """One run directory. `evaluations`: rows of {t_env, metric: value}. t_max defaults to the last t_env
    (a finished run). `config` is merged into the resolved config (nested dicts). `run_json`: more fields
    of run.json (e.g. `command`, `job`), which is then written with status `status` or "finished"."""
    run = root / name
    run.mkdir(parents=True)
    columns = {"env": env, "algorithm": algorithm, "main_function": main_function,
               "residual_function": residual_function, "seed": seed}
    resolved = {"seed": seed, "t_max": t_max if t_max is not None else max(e["t_env"] for e in evaluations),
                "test_interval": test_interval, "exploration": {"epsilon_start": 1.0, "epsilon_finish": 0.05},
                "env": {"seed": seed}, "algorithm": {"gamma": 0.99}, "data": {"seed": seed}}
    _merge(resolved, config or {})
    if write_config:
        (run / "config.yaml").write_text(yaml.safe_dump(resolved))
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text("this: is not the resolved config\n")
    metrics = sorted({k for e in evaluations for k in e if k != "t_env"})
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["t_env", *metrics, *columns])
        writer.writeheader()
        for row in evaluations:
            writer.writerow({**row, **columns})
    if truncate_last:  # a crash while the last row was being written
        text = (run / "metrics.csv").read_text().rstrip("\n")
        (run / "metrics.csv").write_text(text[: text.rfind("\n") + 4])
    if status is not None or run_json is not None:
        record = {"status": status or "finished", "seed": seed, "config": resolved, **(run_json or {})}
        (run / "run.json").write_text(json.dumps(record))
    if error is not None:
        (run / "error.txt").write_text(error)
    if matrix_game is not None:
        (run / "matrix_game.json").write_text(json.dumps({**columns, **matrix_game}))
    if mtq is not None:
        (run / "mtq.json").write_text(json.dumps({**columns, **mtq}))
    return run


def _merge(into: dict, extra: dict) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def curve(values: list[float], metric: str = "test/return_mean", interval: int = 1000, jitter: int = 0) -> list[dict]:
    """Evaluations at t_env = 0, interval, 2 interval, ... (+ jitter, as episodes overshoot the grid)."""
    return [{"t_env": i * interval + (jitter if i else 0), metric: v} for i, v in enumerate(values)]


def matrix_run(root: Path, name: str, algorithm: str, seed: int, q_joint, greedy, payoff=RESQ_PAYOFF, env="matrix_resq",
               main_function="qmix", residual_function="none", igm=0.0, config=None, **extra) -> Path:
    error = max(abs(q - p) for qr, pr in zip(q_joint, payoff) for q, p in zip(qr, pr))
    game = {"payoff": payoff, "q_joint": q_joint, "q_agents": [[0, 0, 0], [0, 0, 0]],
            "greedy_joint_action": greedy, "optimal_joint_action": [0, 0], "max_abs_error": error, "t_env": 2000,
            **extra}
    final = 8.0 if greedy == [0, 0] else 7.9
    evaluations = [{"t_env": 0, "test/return_mean": -12.0, "test/igm_violation": 0.5},
                   {"t_env": 1000, "test/return_mean": 7.9, "test/igm_violation": igm},
                   {"t_env": 2000, "test/return_mean": final, "test/igm_violation": igm}]
    return write_run(root, name, env=env, algorithm=algorithm, seed=seed, evaluations=evaluations,
                     main_function=main_function, residual_function=residual_function, config=config,
                     matrix_game=game)
