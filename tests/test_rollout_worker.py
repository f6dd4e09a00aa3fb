"""data.rollout_worker=true: training rollouts in a forked process, overlapping the updates. Every number
must be the in-process loop's: the learner's final weights, the data module's state (t_env, generator,
replay buffer), the metrics; a failure in the worker is raised in the run with its traceback; no worker
outlives its run."""

import multiprocessing as mp
import sys
import types

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


class FinalState(pl.Callback):
    """The learner's and the data module's state when fit ends (the worker, if any, still running)."""

    def on_fit_end(self, trainer, pl_module) -> None:
        self.weights = {k: v.detach().clone() for k, v in pl_module.state_dict().items()}
        self.data = trainer.datamodule.state_dict()


def run(tmp_path, name, overrides, rollout_worker):
    cfg, choices = compose_run(QUICK + overrides + [f"data.rollout_worker={rollout_worker}"])
    final = FinalState()
    train(cfg, tmp_path / name, choices, callbacks=[final])
    return final, (tmp_path / name / "metrics.csv").read_text()


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
    local, local_metrics = run(tmp_path, "local", overrides, False)
    remote, remote_metrics = run(tmp_path, "worker", overrides, True)
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


def test_a_failure_in_the_worker_is_raised_with_its_traceback_and_leaves_no_process(tmp_path):
    cfg, choices = compose_run(QUICK + [
        "t_max=960", "test_interval=320", "data.rollout_worker=true", *ACTING,
        "env._target_=tests.helpers.InterruptOnceGame", "+env.after=500", "+env.how=raise",
        f"+env.marker={tmp_path}/marker"])
    with pytest.raises(RolloutWorkerError, match=r"(?s)the rollout worker failed:.*interrupted on purpose"):
        train(cfg, tmp_path / "run", choices)
    assert not mp.active_children()


def test_a_run_with_the_worker_resumes_to_the_uninterrupted_files(tmp_path):
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


def test_the_worker_drives_env_worker_processes_to_the_same_numbers(tmp_path):
    """lbforaging with its copies split between the rollout worker and an env worker process
    (data.rollout_worker=true env.workers=1) against everything in the run's process."""
    pytest.importorskip("lbforaging", reason="needs lbforaging: pip install -e '.[lbf]'")
    common = ["env=lbf", "agent=mlp", "env.time_limit=10", "data.n_envs=2", "t_max=400", "test_interval=200",
              "test_episodes=4", "data.batch_size=4", "exploration.epsilon_anneal_steps=200"]
    local, local_metrics = run(tmp_path, "local", common + ["env.workers=0"], False)
    remote, remote_metrics = run(tmp_path, "worker", common + ["env.workers=1"], True)
    assert remote_metrics == local_metrics
    for key, value in local.weights.items():
        assert torch.equal(value, remote.weights[key]), key
    assert not mp.active_children()


def test_a_process_running_jax_is_not_forked(tmp_path, monkeypatch):
    """SMAX runs JAX, whose threads do not survive a fork: the worker is refused with the fix, before training."""
    monkeypatch.setitem(sys.modules, "jax", types.ModuleType("jax"))
    cfg, choices = compose_run(QUICK + ["t_max=640", "test_interval=320", "data.rollout_worker=true"])
    with pytest.raises(RolloutWorkerError, match=r"runs JAX .* set data.rollout_worker=false"):
        train(cfg, tmp_path, choices)
    assert not mp.active_children()
