"""End to end: `resq.run` writes the result files, survives bad jobs, and stops on a nan loss."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from resq.learners import NonFiniteLossError
from resq.run import train
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
CHOICES = {"env": "matrix_resq", "algorithm": "resq", "main_function": "qmix", "residual_function": "ff"}
QUICK = ["t_max=640", "test_interval=320", "trainer.enable_progress_bar=false", "logger=none"]


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_train_writes_metrics_and_the_matrix_table(tmp_path, capsys):
    cfg = compose_config(QUICK + ["seed=3"])
    last = train(cfg, tmp_path, CHOICES)
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["t_env"]) for r in rows] == [0, 320, 640]
    assert {"test/return_mean", "test/igm_violation", "env", "algorithm", "main_function",
            "residual_function", "seed"} <= set(rows[0])
    assert rows[-1]["algorithm"] == "resq" and rows[-1]["seed"] == "3"
    assert float(rows[-1]["test/return_mean"]) == last["test/return_mean"]
    matrix = json.loads((tmp_path / "matrix_game.json").read_text())
    assert matrix["payoff"] == [[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]]
    assert len(matrix["q_joint"]) == 3 and len(matrix["q_joint"][0]) == 3
    assert len(matrix["q_agents"]) == 2 and len(matrix["q_agents"][0]) == 3
    assert matrix["optimal_joint_action"] == [0, 0]
    greedy = [max(range(3), key=lambda a: q[a]) for q in matrix["q_agents"]]
    assert matrix["greedy_joint_action"] == greedy
    assert matrix["joint_value_name"] == "Q_jt"
    assert (tmp_path / "config.yaml").exists()
    assert "learned Q_jt" in capsys.readouterr().out


def test_nan_loss_stops_with_the_env_step_and_keeps_written_metrics(tmp_path):
    cfg = compose_config(QUICK + [
        "t_max=2000", "test_interval=400",
        "+env.nan_after=1000", "env._target_=tests.helpers.NaNRewardGame",
    ])
    with pytest.raises(NonFiniteLossError, match=r"at env step \d+") as info:
        train(cfg, tmp_path, CHOICES)
    assert 1000 < info.value.t_env <= 1400
    rows = read_csv(tmp_path / "metrics.csv")
    assert [int(r["t_env"]) for r in rows] == [0, 400, 800]  # every evaluation before the nan survives
    assert all(r["test/return_mean"] not in ("", "nan") for r in rows)


def run_cli(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "resq.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_cli_run_prints_the_table(tmp_path):
    out = run_cli(QUICK + [f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert out.returncode == 0, out.stderr
    assert "learned Q_jt" in out.stdout and "greedy joint action" in out.stdout
    assert (tmp_path / "run" / "metrics.csv").exists()


def test_a_failing_job_does_not_sink_the_sweep(tmp_path):
    out = run_cli(["-m", *QUICK, "t_max=320", "env.noise_std=0.0,-1.0", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    good, bad = tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"
    assert (good / "metrics.csv").exists() and (good / "matrix_game.json").exists()
    assert "noise_std" in (bad / "error.txt").read_text()
    assert json.loads((good / "run.json").read_text())["status"] == "finished"
    record = json.loads((bad / "run.json").read_text())
    assert record["status"] == "failed" and "noise_std" in record["error"]
    [failure] = [json.loads(line) for line in (tmp_path / "sweep" / "failures.jsonl").read_text().splitlines()]
    assert failure["job"] == 1 and failure["kind"] == "exception" and "env.noise_std=-1.0" in failure["overrides"]


def test_run_json_records_config_code_versions_and_times(tmp_path):
    cfg = compose_config(QUICK + ["t_max=320", "seed=5"])
    train(cfg, tmp_path, CHOICES)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "finished" and record["seed"] == 5 and record["algorithm"] == "resq"
    assert record["config"]["t_max"] == 320 and record["config"]["data"]["t_max"] == 320  # resolved
    if (ROOT / ".git").exists():  # a checkout (CI's clean clone); an unpacked archive has no commit
        assert len(record["git"]["commit"]) == 40 and isinstance(record["git"]["dirty"], bool)
    assert {"torch", "pytorch-lightning", "hydra-core"} <= set(record["versions"])
    assert record["host"] and record["start_time"] <= record["end_time"]
    assert record["result"]["t_env"] == 320 and record["attempt"] == 1


def test_cli_unknown_env_lists_the_options(tmp_path):
    out = run_cli(["env=nope"], tmp_path)
    assert out.returncode != 0
    assert "Available options in 'env'" in out.stderr and "matrix_resq" in out.stderr


def test_an_ablation_run_carries_its_parts_into_the_result_files(tmp_path):
    overrides = ["algorithm=resq", "main_function=qatten", "residual_function=vdn"]
    cfg = compose_config(QUICK + overrides)
    choices = {**CHOICES, "main_function": "qatten", "residual_function": "vdn"}
    train(cfg, tmp_path, choices)
    rows = read_csv(tmp_path / "metrics.csv")
    assert {(r["main_function"], r["residual_function"]) for r in rows} == {("qatten", "vdn")}
    assert json.loads((tmp_path / "matrix_game.json").read_text())["main_function"] == "qatten"


@pytest.mark.parametrize("experiment", ["resq_table2", "qtran_table1"])
def test_each_experiment_runs_a_tiny_version_of_itself(tmp_path, experiment):
    """Every algorithm of the experiment's sweep trains (one seed, 64 env steps) and writes its table."""
    out = run_cli(["-m", f"experiment={experiment}", "seed=0", "t_max=64", "test_interval=64",
                   "hydra.launcher.n_jobs=1", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert out.returncode == 0, out.stderr
    runs = sorted((tmp_path / "sweep").glob("*/matrix_game.json"))
    algorithms = {json.loads(p.read_text())["algorithm"] for p in runs}
    pinned = compose_config([f"experiment={experiment}"], return_hydra_config=True).hydra.sweeper.params
    assert algorithms == set(pinned.algorithm.split(","))
    assert {"qtran_base", "vdn", "qmix"} <= algorithms
    assert not list((tmp_path / "sweep").glob("*/error.txt"))
