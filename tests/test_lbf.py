"""envs.GymMultiAgentEnv on level-based foraging (lbforaging 2.x, gymnasium)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lbforaging", reason="the LBF adapter needs lbforaging: pip install -e '.[lbf]'")  # registers ids

import gymnasium

from envs import GymMultiAgentEnv
from resq.run import build_learner, check_config
from tests.conftest import compose_config, options

ROOT = Path(__file__).resolve().parents[1]
KEY = "Foraging-8x8-2p-3f-v3"


def random_actions(avail: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(avail.flatten(0, 1).float(), 1, generator=generator).view(avail.shape[:2])


def test_spec_of_the_preset():
    cfg = compose_config(["env=lbf"])
    env = GymMultiAgentEnv(cfg.env.key, n_envs=2, seed=0)
    assert cfg.env.key == KEY
    assert (env.spec.n_agents, env.spec.n_actions, env.spec.obs_dim, env.spec.state_dim, env.spec.episode_limit) == (
        2, 6, 15, 30, 50)  # state = both observations; LBF's own 50-step limit
    first = env.reset()
    assert first.obs.shape == (2, 2, 15) and first.avail.all() and not first.done.any()
    assert torch.equal(first.state, first.obs.flatten(1))


def test_rewards_and_observations_match_the_env_stepped_by_hand():
    env = GymMultiAgentEnv(KEY, n_envs=3, seed=7)
    references = [gymnasium.make(KEY, disable_env_checker=True) for _ in range(3)]
    ref_obs = [r.reset(seed=7 + b)[0] for b, r in enumerate(references)]
    step, g, ended = env.reset(), torch.Generator().manual_seed(0), [False] * 3
    total = torch.zeros(3)
    for _ in range(52):
        for b in range(3):
            if not ended[b]:
                assert torch.equal(step.obs[b], torch.tensor(np.stack(ref_obs[b])))
        actions = random_actions(step.avail, g)
        expected = torch.zeros(3)
        for b, ref in enumerate(references):
            if not ended[b]:
                ref_obs[b], rewards, terminated, truncated, _ = ref.step(tuple(actions[b].tolist()))
                expected[b] = float(sum(rewards))
                ended[b] = terminated or truncated
        step = env.step(actions)
        total += step.reward
        assert torch.allclose(step.reward, expected)
    assert all(ended) and step.done.all()
    assert total.gt(0).any()  # random play picks up some food


def test_the_time_limit_is_truncation_and_an_early_end_is_terminal():
    # a 5x5 field with one food: random play clears it in some episodes before the 50-step limit
    env = GymMultiAgentEnv("Foraging-5x5-2p-1f-v3", n_envs=16, seed=0)
    step, g = env.reset(), torch.Generator().manual_seed(0)
    lengths = torch.zeros(16, dtype=torch.long)
    for t in range(1, 51):
        before = step.done
        step = env.step(random_actions(step.avail, g))
        lengths[step.done & ~before] = t
        if t < 50:
            assert not step.truncated.any()
    assert step.done.all() and not (step.terminated & step.truncated).any()
    assert torch.equal(step.truncated, lengths == 50) and torch.equal(step.terminated, lengths < 50)
    assert step.terminated.any() and step.truncated.any()


def test_a_shorter_time_limit_and_frozen_copies():
    env = GymMultiAgentEnv(KEY, n_envs=2, seed=0, time_limit=4)
    step = env.reset()
    steps = [env.step(torch.ones(2, 2, dtype=torch.long)) for _ in range(6)]
    assert env.spec.episode_limit == 4 and steps[3].truncated.all() and not steps[2].done.any()
    assert all(torch.equal(s.obs, steps[3].obs) and (s.reward == 0).all() for s in steps[4:])
    assert step.obs.shape == (2, 2, 15)


def test_bad_keys_and_kwargs_are_clear():
    with pytest.raises(ValueError, match="env.key=Foraging-99x99"):
        GymMultiAgentEnv("Foraging-99x99-2p-3f-v3")
    with pytest.raises(TypeError, match="not a Tuple"):
        GymMultiAgentEnv("CartPole-v1")
    with pytest.raises(ValueError, match="rejected env.kwargs"):
        GymMultiAgentEnv(KEY, kwargs={"colour": "red"})


def test_the_env_is_stepped_directly_only_through_order_enforcing():
    from envs.gym_copies import step_function

    env = gymnasium.make(KEY, disable_env_checker=True)  # OrderEnforcing(ForagingEnv)
    assert step_function(env) == env.unwrapped.step
    wrapped = gymnasium.wrappers.TransformReward(env, lambda r: r)  # a wrapper that may change what step returns
    assert step_function(wrapped) == wrapped.step


def test_step_before_reset_and_after_close_are_clear():
    env = GymMultiAgentEnv(KEY, n_envs=2)
    with pytest.raises(RuntimeError, match="before the first reset"):
        env.step(torch.zeros(2, 2, dtype=torch.long))
    env.reset()
    env.close()
    with pytest.raises(RuntimeError, match="is closed"):
        env.reset()


@pytest.mark.parametrize("algorithm", options("algorithm"))
def test_every_algorithm_builds_on_lbf(algorithm):
    cfg = compose_config([f"algorithm={algorithm}", "env=lbf"])
    check_config(cfg)
    assert build_learner(cfg, GymMultiAgentEnv(cfg.env.key).spec).spec.n_actions == 6


def test_a_tiny_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "resq.run", "env=lbf", "env.time_limit=10", "t_max=40", "test_interval=20",
         "test_episodes=2", "data.batch_size=2", "logger=none", "trainer.enable_progress_bar=false",
         f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert len(rows) == 4 and last["env"] == "lbf" and float(last["test/ep_length_mean"]) <= 10


def test_without_lbforaging_the_message_says_what_to_install(monkeypatch):
    from envs import MissingPackageError

    monkeypatch.setitem(sys.modules, "lbforaging", None)
    with pytest.raises(MissingPackageError, match=r'pip install -e "\.\[lbf\]"'):
        GymMultiAgentEnv(KEY)


TOY = "tests.gym_toy:ToyMultiAgent-v0"  # registered when tests.gym_toy is imported (here or in a worker)


@pytest.mark.parametrize("workers", [0, 1])
@pytest.mark.parametrize("truncate", [False, True])
def test_an_env_with_its_own_state_and_flags(truncate, workers):
    env = GymMultiAgentEnv(TOY, n_envs=2, time_limit=10, kwargs={"truncate": truncate}, workers=workers)
    assert (env.spec.obs_dim, env.spec.state_dim, env.spec.n_actions, env.spec.episode_limit) == (2, 3, 3, 10)
    first = env.reset()
    assert first.state[0].tolist() == [100, 1, 2] and first.obs[0].tolist() == [[0, 0], [0, 5]]
    assert first.avail[0].tolist() == [[True, True, False], [True, True, True]]
    steps = [env.step(torch.zeros(2, 2, dtype=torch.long)) for _ in range(4)]
    assert [s.reward[0].item() for s in steps] == [3.0, 3.0, 3.0, 0.0]
    assert steps[2].state[0].tolist() == [103, 1, 2] and torch.equal(steps[3].state, steps[2].state)
    assert steps[2].terminated.all() != truncate and steps[2].truncated.all() == truncate
    assert not steps[1].done.any()
    env.close()


@pytest.mark.parametrize("workers", [0, 1])
def test_without_a_state_the_state_is_the_observations_concatenated(workers):
    env = GymMultiAgentEnv("tests.gym_toy:ToyMultiAgentNoState-v0", n_envs=2, time_limit=10, workers=workers)
    assert (env.spec.obs_dim, env.spec.state_dim) == (2, 3)
    first, second = env.reset(), env.step(torch.zeros(2, 2, dtype=torch.long))
    assert first.state.tolist() == [[0, 0, 5]] * 2 and second.state.tolist() == [[1, 1, 5]] * 2
    assert second.obs.tolist() == [[[1, 0], [1, 5]]] * 2  # agent 0's observation zero-padded to 2
    env.close()


# ---- worker processes (env.workers) ------------------------------------------------------------------
def rollouts(env: GymMultiAgentEnv, episodes: int, seed: int = 0) -> list:
    """Every TimeStep of `episodes` batches of episodes with seeded random actions, stepped a little past
    the limit (ended copies must stay frozen)."""
    g, out = torch.Generator().manual_seed(seed), []
    for _ in range(episodes):
        step = env.reset()
        out.append(step)
        for _ in range(env.spec.episode_limit + 2):
            step = env.step(random_actions(step.avail, g))
            out.append(step)
    return out


def gone(pid: int) -> bool:
    """The process has exited (no such process, or a zombie whose parent has not reaped it yet)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_until_gone(pids: list[int], seconds: float = 60.0) -> bool:
    import time

    deadline = time.monotonic() + seconds
    while not all(gone(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.mark.parametrize(("key", "n_envs", "workers", "time_limit"), [
    (KEY, 5, 1, None),                         # uneven shares (3 copies here, 2 in the worker)
    ("Foraging-5x5-2p-1f-v3", 5, 3, None),     # early ends (terminated) beside time-limit ends
    (KEY, 3, 2, 7),                            # a shorter time limit, one copy per process
])
def test_workers_give_the_episodes_of_one_process(key, n_envs, workers, time_limit):
    here = GymMultiAgentEnv(key, n_envs=n_envs, seed=11, time_limit=time_limit, workers=0)
    there = GymMultiAgentEnv(key, n_envs=n_envs, seed=11, time_limit=time_limit, workers=workers)
    assert len(there.worker_pids) == workers and not here.worker_pids and there.spec == here.spec
    expected, got = rollouts(here, 3), rollouts(there, 3)
    for a, b in zip(expected, got, strict=True):
        for name in ("obs", "state", "avail", "reward", "terminated", "truncated"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
            assert getattr(a, name).dtype == getattr(b, name).dtype
    assert any(s.terminated.any() for s in expected) == (key != KEY)
    assert sum(float(s.reward.sum()) for s in expected) > 0
    here.close()
    there.close()


def test_workers_are_gone_after_close_and_a_closed_env_says_so():
    env = GymMultiAgentEnv(KEY, n_envs=4, workers=2)
    pids, processes = env.worker_pids, list(env._processes)
    assert len(pids) == 2
    env.reset()
    env.close()
    assert all(p.poll() is not None for p in processes) and all(gone(pid) for pid in pids)
    assert env.worker_pids == []
    env.close()  # twice: nothing left to do
    with pytest.raises(RuntimeError, match="is closed"):
        env.step(torch.zeros(4, 2, dtype=torch.long))


@pytest.mark.parametrize("end", ["return", "exception", "SIGKILL"])
def test_workers_end_with_their_parent(tmp_path, end):
    """However the process that started them ends (normally without close(), by an uncaught exception, or
    killed, when no finalizer runs), the workers do not outlive it."""
    script, pid_file, log = tmp_path / "parent.py", tmp_path / "pids", tmp_path / "parent.log"
    script.write_text(f"""
import os, pathlib, signal
from envs import GymMultiAgentEnv
env = GymMultiAgentEnv({KEY!r}, n_envs=4, workers=2)
env.reset()
pathlib.Path({str(pid_file)!r}).write_text(" ".join(map(str, env.worker_pids)))
if {end!r} == "exception":
    raise SystemError("the parent crashes")
if {end!r} == "SIGKILL":
    os.kill(os.getpid(), signal.SIGKILL)
""")
    with open(log, "w") as out:  # not a pipe: the workers share the parent's stdout and stderr
        subprocess.run([sys.executable, str(script)], env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=out,
                       stderr=subprocess.STDOUT, timeout=300, check=False)
    assert pid_file.exists(), log.read_text()
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 2
    assert wait_until_gone(pids), f"gym workers {pids} outlived their parent ({end})"


@pytest.mark.parametrize(("failing_copy", "message"), [
    (3, r"gym worker 1 \(copies 3-3\) failed during 'step': ArithmeticError: the toy env fails at step 2"),
    (0, r"^the toy env fails at step 2"),  # in this process's own share
])
def test_a_failing_copy_raises_its_error_and_closes_every_worker(failing_copy, message):
    env = GymMultiAgentEnv(TOY, n_envs=4, time_limit=10, kwargs={"fail_at": 2, "fail_seed": failing_copy}, workers=2)
    processes = list(env._processes)
    assert env._shares == [(0, 1), (2, 2), (3, 3)]
    env.reset()
    env.step(torch.zeros(4, 2, dtype=torch.long))
    with pytest.raises((RuntimeError, ArithmeticError), match=message):
        env.step(torch.zeros(4, 2, dtype=torch.long))
    assert env.worker_pids == [] and all(p.poll() is not None for p in processes)
    with pytest.raises(RuntimeError, match="is closed"):
        env.reset()


def test_bad_keys_and_kwargs_are_clear_before_any_worker_starts():
    with pytest.raises(ValueError, match="env.key=Foraging-99x99"):
        GymMultiAgentEnv("Foraging-99x99-2p-3f-v3", n_envs=4, workers=2)
    with pytest.raises(ValueError, match="rejected env.kwargs"):
        GymMultiAgentEnv(KEY, n_envs=4, workers=2, kwargs={"colour": "red"})
    with pytest.raises(ValueError, match="cannot import `no_such_module`"):
        GymMultiAgentEnv("no_such_module:Thing-v0", n_envs=4, workers=2)


def test_the_workers_option():
    from hydra.utils import instantiate

    from envs.gymma import resolve_workers

    assert [resolve_workers(1, n) for n in (1, 2, 8)] == [0, 1, 1]  # this process steps a share too
    assert resolve_workers(0, 8) == 0 and resolve_workers(5, 3) == 2
    for bad in (-1, "two", 1.5, True):
        with pytest.raises(ValueError, match="env.workers must be an integer >= 0"):
            resolve_workers(bad, 4)
    factory = instantiate(compose_config(["env=lbf", "env.workers=-1"]).env)
    with pytest.raises(ValueError, match="env.workers must be"):
        factory(n_envs=2, seed=0)


def test_a_run_with_workers_logs_what_a_run_without_them_logs(tmp_path):
    """The same fixed-seed run (2 envs) with the copies in worker processes and in the run's own process."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    metrics = {}
    for workers in (0, 1):
        out = subprocess.run(
            [sys.executable, "-m", "resq.run", "env=lbf", "env.time_limit=10", f"env.workers={workers}",
             "data.n_envs=2", "t_max=80", "test_interval=40", "test_episodes=4", "data.batch_size=2",
             "exploration.epsilon_anneal_steps=60", "logger=none", "trainer.enable_progress_bar=false",
             f"hydra.run.dir={tmp_path}/run{workers}"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert out.returncode == 0, out.stderr
        metrics[workers] = (tmp_path / f"run{workers}" / "metrics.csv").read_text()
    assert metrics[0] == metrics[1] and len(metrics[0].splitlines()) == 4
