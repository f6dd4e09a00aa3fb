"""Checkpoints, resume and guards: a run killed mid-way and re-run with the same command ends with the
metrics of an uninterrupted run; the same seed gives the same files; bad configs and nan stop early."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from resq.checkpoint import FiniteStateGuard, checkpoint_path
from resq.learners.errors import NonFiniteLossError, NonFiniteStateError
from resq.run import ConfigError, build_datamodule, build_learner, train
from tests.conftest import compose_run

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["logger=none", "trainer.enable_progress_bar=false"]


def run_cli(args, cwd, wait=True):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "resq.run", *args]
    if not wait:
        return subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)


def status(run_dir):
    return json.loads((run_dir / "run.json").read_text())["status"]


def test_sigkill_mid_run_then_the_same_command_resumes_to_the_uninterrupted_metrics(tmp_path):
    args = QUICK + ["t_max=2400", "test_interval=400", "seed=7", "env=matrix_resq_noisy"]
    reference = run_cli(args + [f"hydra.run.dir={tmp_path}/reference"], tmp_path, wait=False)
    run_dir = tmp_path / "killed"
    killed = run_cli(args + [f"hydra.run.dir={run_dir}"], tmp_path, wait=False)
    deadline = time.monotonic() + 300
    while not checkpoint_path(run_dir).exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    rows_at_kill = (run_dir / "metrics.csv").read_text().splitlines()
    assert status(run_dir) == "running" and 2 <= len(rows_at_kill) < 8  # header + t_env 0, 400, ...

    resumed = run_cli(args + [f"hydra.run.dir={run_dir}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert reference.wait(timeout=600) == 0, reference.stderr.read()
    assert (run_dir / "metrics.csv").read_text() == (tmp_path / "reference" / "metrics.csv").read_text()
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == list(range(0, 2401, 400))
    assert (run_dir / "matrix_game.json").read_text() == (tmp_path / "reference" / "matrix_game.json").read_text()
    record = json.loads((run_dir / "run.json").read_text())
    assert record["status"] == "finished" and record["attempt"] == 2 and record["t_env"] == 2400


@pytest.mark.parametrize("algorithm", ["resq", "resz"])  # resz draws its quantile levels from torch's global RNG
def test_a_run_interrupted_in_process_resumes_to_the_same_files(tmp_path, algorithm):
    common = QUICK + ["t_max=960", "test_interval=320", f"algorithm={algorithm}", "env=matrix_resq_noisy",
                      "env._target_=tests.helpers.InterruptOnceGame", "+env.after=700", "+env.how=raise"]
    cfg, choices = compose_run(common + [f"+env.marker={tmp_path}/never"])
    open(tmp_path / "never", "w").close()  # the reference is never interrupted
    train(cfg, tmp_path / "reference", choices)

    cfg, choices = compose_run(common + [f"+env.marker={tmp_path}/once"])
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        train(cfg, tmp_path / "run", choices)
    assert status(tmp_path / "run") == "failed"
    torch.manual_seed(12345)  # the resumed run must restore the global generator, not inherit it
    train(cfg, tmp_path / "run", choices)
    for name in ("metrics.csv", "matrix_game.json"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "reference" / name).read_text(), name


@pytest.mark.parametrize("overrides", [
    ["algorithm=resq", "env=matrix_resq_noisy"],
    ["algorithm=dmix", "env=matrix_resq"],
])
def test_the_same_seed_twice_gives_identical_metrics_files(tmp_path, overrides):
    cfg, choices = compose_run(QUICK + overrides + ["t_max=640", "test_interval=320", "seed=3"])
    for name in ("a", "b"):
        train(cfg, tmp_path / name, choices)
    assert (tmp_path / "a" / "metrics.csv").read_text() == (tmp_path / "b" / "metrics.csv").read_text()
    cfg, choices = compose_run(QUICK + overrides + ["t_max=640", "test_interval=320", "seed=4"])
    train(cfg, tmp_path / "c", choices)
    assert (tmp_path / "c" / "metrics.csv").read_text() != (tmp_path / "a" / "metrics.csv").read_text()


def test_a_finished_run_is_skipped_and_another_config_in_its_directory_is_refused(tmp_path):
    cfg, choices = compose_run(QUICK + ["t_max=320", "test_interval=320"])
    train(cfg, tmp_path, choices)
    before = (tmp_path / "run.json").read_text(), (tmp_path / "metrics.csv").stat().st_mtime_ns
    last = train(cfg, tmp_path, choices)
    assert ((tmp_path / "run.json").read_text(), (tmp_path / "metrics.csv").stat().st_mtime_ns) == before
    assert last["t_env"] == 320
    cfg, choices = compose_run(QUICK + ["t_max=640", "test_interval=320"])
    with pytest.raises(ConfigError, match=r"different config \(.*t_max: 320 -> 640.*hydra.run.dir"):
        train(cfg, tmp_path, choices)
    assert (tmp_path / "run.json").read_text() == before[0]


@pytest.mark.parametrize(("overrides", "message"), [
    (["data.batch_size=64", "data.buffer_size=32"], r"data.batch_size \(64\) exceeds data.buffer_size \(32"),
    (["test_interval=0"], r"test_interval must be a positive integer, got 0"),
    (["t_max=-5"], r"t_max must be a positive integer, got -5"),
    (["algorithm.target_update_interval=0"], r"algorithm.target_update_interval must be a positive integer"),
    (["t_max=100", "test_interval=200"], r"t_max \(100\) is shorter than one epoch .* test_interval=100"),
    (["test_interval=200", "checkpoint_interval=300"],
     r"checkpoint_interval \(300\) must be a multiple of test_interval \(200\).* checkpoint_interval=200"),
    (["checkpoint_interval=0"], r"checkpoint_interval must be a positive number of env steps .* or null"),
])
def test_configs_that_cannot_work_fail_before_training(tmp_path, overrides, message):
    cfg, choices = compose_run(QUICK + overrides)
    with pytest.raises(ConfigError, match=message):
        train(cfg, tmp_path, choices)
    assert not (tmp_path / "metrics.csv").exists() and status(tmp_path) == "failed"


def test_checkpoints_can_be_turned_off(tmp_path):
    cfg, choices = compose_run(QUICK + ["t_max=640", "test_interval=320", "checkpoint_interval=null"])
    train(cfg, tmp_path, choices)
    assert status(tmp_path) == "finished" and not checkpoint_path(tmp_path).exists()


def test_a_nan_loss_keeps_the_last_good_checkpoint(tmp_path):
    cfg, choices = compose_run(QUICK + ["t_max=2000", "test_interval=400", "+env.nan_after=1000",
                                        "env._target_=tests.helpers.NaNRewardGame"])
    with pytest.raises(NonFiniteLossError, match=r"loss_(td|jt) loss \(from .*\) became nan at env step \d+"):
        train(cfg, tmp_path, choices)
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and "NonFiniteLossError" in record["error"]
    checkpoint = torch.load(checkpoint_path(tmp_path), weights_only=True)
    assert checkpoint["RolloutDataModule"]["t_env"] == 800  # the last epoch before the nan at 1000 < t <= 1400
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values() if v.is_floating_point())


def test_a_non_finite_parameter_stops_the_run_before_its_checkpoint():
    cfg, _ = compose_run(QUICK)
    datamodule = build_datamodule(cfg)
    learner = build_learner(cfg, datamodule.spec)
    trainer = SimpleNamespace(datamodule=SimpleNamespace(t_env=1234), optimizers=[])
    FiniteStateGuard().on_train_epoch_end(trainer, learner)  # finite: nothing happens
    with torch.no_grad():
        next(learner.nets["central"].mixer.parameters()).fill_(float("inf"))
    with pytest.raises(NonFiniteStateError, match=r"nets.central.mixer.* \(the central Q_jt's mixer\) holds nan or "
                                                  r"inf at env step 1234") as info:
        FiniteStateGuard().on_train_epoch_end(trainer, learner)
    assert info.value.t_env == 1234
