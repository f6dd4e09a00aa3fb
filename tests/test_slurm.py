"""A real SLURM sweep (`hydra/launcher=slurm`) through the single-node cluster that `ci/slurm_up.sh`
starts (`.ci/run` does, as root): 2 algorithms x 2 seeds, one job cancelled with scancel. Every other
job's results arrive, the cancelled one is recorded as failed, and re-running the command submits only
that one again. Skipped, with the reason, where no cluster answers `sinfo`."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_run import read_csv

ROOT = Path(__file__).resolve().parents[1]


def cluster_problem() -> str | None:
    """Why this machine has no usable SLURM cluster, or None if it has one."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return "no SLURM client (sinfo, sbatch) installed; as root, ci/slurm_up.sh installs and starts a cluster"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return f"sinfo failed: {error}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s.rstrip("*") in ("idle", "mixed", "allocated") for s in states):
        return f"no SLURM node is up (sinfo: {(out.stderr or out.stdout).strip()[:200]}); start one with ci/slurm_up.sh"
    if subprocess.run(["sacct", "-n", "-X", "-S", "now"], capture_output=True, timeout=30, check=False).returncode:
        return "SLURM accounting (slurmdbd) does not answer: cancelled jobs could not be detected"
    return None


pytestmark = pytest.mark.skipif(cluster_problem() is not None, reason=str(cluster_problem()))


def sweep(args, cwd, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "resq.run", "-m", *args]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600, check=False)


def record(job_dir):
    try:
        return json.loads((job_dir / "run.json").read_text())
    except (OSError, ValueError):
        return {}


T_MAX, INTERVAL = 24000, 8000


def test_a_slurm_sweep_with_a_cancelled_job(tmp_path):
    sweep_dir = tmp_path / "sweep"
    # Long enough (10-30 s a job) that the victim is still running when scancel arrives: at 1,600 steps a
    # job on an idle machine finished between its "running" record and the scancel.
    args = ["algorithm=resq,qmix", "seed=0,1", f"t_max={T_MAX}", f"test_interval={INTERVAL}", "logger=none",
            "trainer.enable_progress_bar=false", "hydra/launcher=slurm", "hydra.launcher.timeout_min=20",
            "hydra.launcher.poll_s=1", "hydra.launcher.mem_gb=1", f"hydra.sweep.dir={sweep_dir}"]
    running = sweep(args, tmp_path, wait=False)
    victim = sweep_dir / "1"
    deadline = time.monotonic() + 300
    while record(victim).get("status") != "running" and running.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    slurm_job = record(victim).get("slurm_job_id")
    assert slurm_job, f"job 1 never started: {running.poll()}"
    subprocess.run(["scancel", slurm_job], check=True)
    output, _ = running.communicate(timeout=600)
    assert running.returncode == 0, output

    for num in (0, 2, 3):  # every other job's results arrived
        job = sweep_dir / str(num)
        assert record(job)["status"] == "finished", output
        assert [int(r["t_env"]) for r in read_csv(job / "metrics.csv")] == list(range(0, T_MAX + 1, INTERVAL))
        assert (job / "matrix_game.json").exists()
    assert {record(sweep_dir / str(n))["algorithm"] for n in range(4)} == {"resq", "qmix"}
    cancelled = record(victim)
    assert cancelled["status"] == "failed" and "CANCELLED" in cancelled["error"], cancelled.get("error")
    failures = [json.loads(line) for line in (sweep_dir / "failures.jsonl").read_text().splitlines()]
    assert [(f["job"], f["kind"]) for f in failures] == [(1, "died")]
    assert "CANCELLED" in failures[0]["error"] and "seed=1" in failures[0]["overrides"]
    assert "1 of 4 jobs did not finish (#1)" in output

    again = sweep(args, tmp_path)
    assert again.returncode == 0, again.stdout
    assert "4 jobs, 3 finished already (skipped), launching 1" in again.stdout
    assert record(victim)["status"] == "finished" and record(victim)["attempt"] == 2
    assert [int(r["t_env"]) for r in read_csv(victim / "metrics.csv")] == list(range(0, T_MAX + 1, INTERVAL))
