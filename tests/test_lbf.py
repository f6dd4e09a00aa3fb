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


class ToyMultiAgent(gymnasium.Env):
    """Two agents (obs sizes 1 and 2, 2 and 3 actions) with a state() of its own; both finish after
    3 steps, terminated (a list per agent) unless `truncate`, in which case the env truncates itself."""

    def __init__(self, truncate: bool = False):
        self.truncate = truncate
        self.observation_space = gymnasium.spaces.Tuple((gymnasium.spaces.Box(0, 9, (1,)),
                                                         gymnasium.spaces.Box(0, 9, (2,))))
        self.action_space = gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(3)))

    def _obs(self):
        return (np.array([self.t], dtype=np.float32), np.array([self.t, 5], dtype=np.float32))

    def state(self):
        return np.array([100 + self.t, 1, 2], dtype=np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, actions):
        self.t += 1
        end = self.t >= 3
        return self._obs(), [1.0, 2.0], [end and not self.truncate] * 2, end and self.truncate, {}


gymnasium.register(id="ToyMultiAgent-v0", entry_point=ToyMultiAgent)


@pytest.mark.parametrize("truncate", [False, True])
def test_an_env_with_its_own_state_and_flags(truncate):
    env = GymMultiAgentEnv("ToyMultiAgent-v0", n_envs=2, time_limit=10, kwargs={"truncate": truncate})
    assert (env.spec.obs_dim, env.spec.state_dim, env.spec.n_actions, env.spec.episode_limit) == (2, 3, 3, 10)
    first = env.reset()
    assert first.state[0].tolist() == [100, 1, 2] and first.obs[0].tolist() == [[0, 0], [0, 5]]
    assert first.avail[0].tolist() == [[True, True, False], [True, True, True]]
    steps = [env.step(torch.zeros(2, 2, dtype=torch.long)) for _ in range(4)]
    assert [s.reward[0].item() for s in steps] == [3.0, 3.0, 3.0, 0.0]
    assert steps[2].state[0].tolist() == [103, 1, 2] and torch.equal(steps[3].state, steps[2].state)
    assert steps[2].terminated.all() != truncate and steps[2].truncated.all() == truncate
    assert not steps[1].done.any()
