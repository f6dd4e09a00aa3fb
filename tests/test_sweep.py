"""Sweeps that survive: with `hydra/launcher=local`, a job killed by SIGKILL fails alone, is recorded in
the sweep directory, and re-running the same command runs (resumes) only that job."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.test_run import read_csv

ROOT = Path(__file__).resolve().parents[1]


def sweep(args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "resq.run", "-m", *args], cwd=cwd, env=env, check=False,
                          capture_output=True, text=True, timeout=600)


def record(job_dir):
    return json.loads((job_dir / "run.json").read_text())


def test_a_killed_job_fails_alone_and_a_rerun_finishes_only_it(tmp_path):
    sweep_dir = tmp_path / "sweep"
    args = ["t_max=800", "test_interval=200", "logger=none", "trainer.enable_progress_bar=false", "seed=0,1,2",
            "env._target_=tests.helpers.InterruptOnceGame", "+env.after=500", "+env.on_seed=1",
            f"+env.marker={tmp_path}/killed", "hydra/launcher=local", "hydra.launcher.n_jobs=2",
            f"hydra.sweep.dir={sweep_dir}"]
    first = sweep(args, tmp_path)
    assert first.returncode == 0, first.stderr
    jobs = [sweep_dir / str(i) for i in range(3)]
    for job in (jobs[0], jobs[2]):  # the others completed
        assert record(job)["status"] == "finished"
        assert [int(r["t_env"]) for r in read_csv(job / "metrics.csv")] == [0, 200, 400, 600, 800]
    killed = record(jobs[1])
    assert killed["status"] == "failed" and "SIGKILL" in killed["error"]
    failures = [json.loads(line) for line in (sweep_dir / "failures.jsonl").read_text().splitlines()]
    assert [(f["job"], f["kind"]) for f in failures] == [(1, "died")]
    assert "SIGKILL" in failures[0]["error"] and "seed=1" in failures[0]["overrides"]
    assert (jobs[1] / "checkpoints" / "last.ckpt").exists()  # killed after its checkpoint at t_env 400
    assert "1 of 3 jobs did not finish (#1)" in first.stderr + first.stdout
    finished_before = {job: record(job) for job in (jobs[0], jobs[2])}

    second = sweep(args, tmp_path)
    assert second.returncode == 0, second.stderr
    assert "3 jobs, 2 finished already (skipped), launching 1" in second.stderr + second.stdout
    for job, before in finished_before.items():  # not run again
        assert record(job) == before
    resumed = record(jobs[1])
    assert resumed["status"] == "finished" and resumed["attempt"] == 2
    assert resumed["resumed_from"].endswith("last.ckpt")
    assert [int(r["t_env"]) for r in read_csv(jobs[1] / "metrics.csv")] == [0, 200, 400, 600, 800]
    assert len((sweep_dir / "failures.jsonl").read_text().splitlines()) == 1
