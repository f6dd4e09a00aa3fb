"""data.rollout_worker=true: training rollouts in a forked process, overlapping the updates. Every number
must be the in-process loop's: the learner's final weights, the data module's state (t_env, generator,
replay buffer), the metrics; a failure in the worker is raised in the run with its traceback; no worker
outlives its run.

Each check runs in a fresh interpreter (`in_fresh_process`): a pytest worker that ran the SMAX tests has
JAX loaded, and the rollout worker refuses to fork a process running JAX (tested last)."""

import multiprocessing as mp
import sys
import traceback
import types
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from resq.data.rollout_worker import RolloutWorkerError
from resq.run import train
from tests.conftest import compose_run

QUICK = ["logger=none", "trainer.enable_progress_bar=false", "checkpoint_interval=null"]
SMALL_PP = ["env=predator_prey", "env.n_predators=2", "env.n_prey=2", "env.grid_size=5", "env.episode_limit=20",
            "data.n_envs=4", "data.batch_size=8", "test_episodes=4"]
ACTING = ["exploration.epsilon_start=0.3", "exploration.epsilon_finish=0.1", "exploration.epsilon_anneal_steps=500"]


def _call(conn, fn, args) -> None:
    try:
        conn.send((True, fn(*args)))
    except BaseException:  # noqa: BLE001 - pytest.fail and skip are BaseExceptions: all go back to the test
        conn.send((False, traceback.format_exc()))


def in_fresh_process(fn, *args):
    """fn(*args) in a new interpreter (spawn, not a daemon: the rollout worker is its child); its
    assertion errors fail the test with their traceback."""
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_call, args=(send, fn, args))
    process.start()
    send.close()
    try:
        ok, value = receive.recv()
    except EOFError:
        ok, value = False, "the test's process died"
    process.join()
    if not ok:
        pytest.fail(value, pytrace=False)
    return value


class FinalState(pl.Callback):
    """The learner's and the data module's state when fit ends (the worker, if any, still running)."""

    def on_fit_end(self, trainer, pl_module) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.data = trainer.datamodule.state_dict()


def run(tmp_path: Path, name: str, overrides: list[str], rollout_worker: bool):
    cfg, choices = compose_run(QUICK + overrides + [f"data.rollout_worker={rollout_worker}"])
    final = FinalState()
    train(cfg, tmp_path / name, choices, callbacks=[final])
    return final, (tmp_path / name / "metrics.csv").read_text()


def same_numbers_with_and_without_the_worker(tmp_path: Path, overrides: list[str], env_workers: bool) -> int:
    local, local_metrics = run(tmp_path, "local", overrides + (["env.workers=0"] if env_workers else []), False)
    remote, remote_metrics = run(tmp_path, "worker", overrides + (["env.workers=1"] if env_workers else []), True)
    assert remote_metrics == local_metrics
    assert local.weights.keys() == remote.weights.keys()
    for key, value in local.weights.items():
        assert torch.equal(value, remote.weights[key]), key
    assert remote.data["t_env"] == local.data["t_env"] > 0
    assert remote.data["episodes"] == local.data["episodes"]
    assert torch.equal(remote.data["generator"], local.data["generator"])
    for key, value in local.data["buffer"].items():
        assert (torch.equal(value, remote.data["buffer"][key]) if torch.is_tensor(value)
                else value == remote.data["buffer"][key]), key
    assert not mp.active_children()  # the run closed its worker
    return int(local.data["t_env"])


@pytest.mark.parametrize("overrides", [
    # the policy acts (epsilon < 1), two updates per rollout, three epochs (evaluation draws between them)
    ["algorithm=qmix", *SMALL_PP, "data.updates_per_rollout=2", "t_max=1200", "test_interval=400", *ACTING],
    # ResZ draws its quantile levels from torch's global generator during updates
    ["algorithm=resz", "env=matrix_resq", "t_max=480", "test_interval=240", *ACTING],
    # an actor-critic learner (its own act), and a multi-step env whose episodes end at different steps
    ["algorithm=coma", *SMALL_PP, "t_max=1600", "test_interval=800"],
    # continuous actions
    ["algorithm=maddpg", "env=mtq", "data.n_envs=4", "data.batch_size=8", "t_max=320", "test_interval=160",
     "test_episodes=4"],
], ids=["qmix-2-updates", "resz", "coma-predator-prey", "maddpg-mtq"])
def test_the_rollout_worker_gives_the_in_process_numbers(tmp_path, overrides):
    assert in_fresh_process(same_numbers_with_and_without_the_worker, tmp_path, overrides, False) > 0


def test_the_worker_drives_env_worker_processes_to_the_same_numbers(tmp_path):
    """lbforaging with its copies split between the rollout worker and an env worker process
    (data.rollout_worker=true env.workers=1) against everything in the run's process."""
    pytest.importorskip("lbforaging", reason="needs lbforaging: pip install -e '.[lbf]'")
    common = ["env=lbf", "agent=mlp", "env.time_limit=10", "data.n_envs=2", "t_max=400", "test_interval=200",
              "test_episodes=4", "data.batch_size=4", "exploration.epsilon_anneal_steps=200"]
    assert in_fresh_process(same_numbers_with_and_without_the_worker, tmp_path, common, True) > 0


def a_failing_worker(tmp_path: Path) -> None:
    cfg, choices = compose_run(QUICK + [
        "t_max=960", "test_interval=320", "data.rollout_worker=true", *ACTING,
        "env._target_=tests.helpers.InterruptOnceGame", "+env.after=500", "+env.how=raise",
        f"+env.marker={tmp_path}/marker"])
    with pytest.raises(RolloutWorkerError, match=r"(?s)the rollout worker failed:.*interrupted on purpose"):
        train(cfg, tmp_path / "run", choices)
    assert not mp.active_children()


def test_a_failure_in_the_worker_is_raised_with_its_traceback_and_leaves_no_process(tmp_path):
    in_fresh_process(a_failing_worker, tmp_path)


def an_interrupted_run_with_the_worker(tmp_path: Path) -> None:
    common = QUICK[:-1] + ["t_max=960", "test_interval=320", "algorithm=resq", "env=matrix_resq_noisy", *ACTING,
                           "env._target_=tests.helpers.InterruptOnceGame", "+env.after=700", "+env.how=raise"]
    cfg, choices = compose_run(common + [f"+env.marker={tmp_path}/never"])
    open(tmp_path / "never", "w").close()  # the reference (in process) is never interrupted
    train(cfg, tmp_path / "reference", choices)

    cfg, choices = compose_run(common + [f"+env.marker={tmp_path}/once", "data.rollout_worker=true"])
    with pytest.raises(RuntimeError, match="interrupted on purpose"):
        train(cfg, tmp_path / "run", choices)
    train(cfg, tmp_path / "run", choices)
    for name in ("metrics.csv", "matrix_game.json"):
        assert (tmp_path / "run" / name).read_text() == (tmp_path / "reference" / name).read_text(), name


def test_a_run_with_the_worker_resumes_to_the_uninterrupted_files(tmp_path):
    in_fresh_process(an_interrupted_run_with_the_worker, tmp_path)


def test_a_process_running_jax_is_not_forked(tmp_path, monkeypatch):
    """SMAX runs JAX, whose threads do not survive a fork: the worker is refused with the fix, before training."""
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    cfg, choices = compose_run(QUICK + ["t_max=640", "test_interval=320", "data.rollout_worker=true"])
    with pytest.raises(RolloutWorkerError, match=r"runs JAX .* set data.rollout_worker=false"):
        train(cfg, tmp_path, choices)
    assert not mp.active_children()
