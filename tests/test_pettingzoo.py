"""envs.PettingZooEnv: PettingZoo parallel-API envs behind the BatchedEnv contract."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pettingzoo", reason="the PettingZoo adapter needs pettingzoo: pip install -e '.[pettingzoo]'")

from envs import MissingPackageError, PettingZooEnv
from resq.run import build_learner, check_config
from tests.conftest import compose_config, options

ROOT = Path(__file__).resolve().parents[1]
TOY = "tests.pettingzoo_toy"


def random_actions(avail: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return torch.multinomial(avail.flatten(0, 1).float(), 1, generator=generator).view(avail.shape[:2])


def test_toy_spec_pads_observations_and_masks_missing_actions():
    env = PettingZooEnv(TOY, n_envs=2)
    assert (env.spec.n_agents, env.spec.n_actions, env.spec.obs_dim, env.spec.state_dim, env.spec.episode_limit) == (
        2, 4, 3, 5, 6)  # obs padded to 3; state = 2 + 3 concatenated observations; limit = max_cycles
    first = env.reset()
    assert first.avail[:, 0].tolist() == [[True, True, False, False]] * 2 and first.avail[:, 1].all()
    assert first.obs[0].tolist() == [[0, 0, 0], [0, 0, 7]] and first.state[0].tolist() == [0, 0, 0, 0, 7]


def test_toy_agents_that_leave_and_the_terminal_end():
    env = PettingZooEnv(TOY, n_envs=2, seed=5, kwargs={"end": "terminate"})
    env.reset()
    actions = torch.tensor([[1, 3], [0, 2]])
    steps = [env.step(actions) for _ in range(6)]
    assert [s.reward.tolist() for s in steps] == [[11, 11], [11, 11], [1, 1], [1, 1], [0, 0], [0, 0]]
    assert [bool(s.terminated[0]) for s in steps] == [False, False, False, True, True, True]
    assert not any(s.truncated.any() for s in steps)
    # "b" terminated at step 2 (its final observation is shown), then left: a zero row, only action 0 offered
    assert steps[1].avail[0, 1].tolist() == [True, False, False, False] and steps[1].obs[0, 1].tolist() == [2, 3, 7]
    gone = steps[2]
    assert gone.obs[0, 1].tolist() == [0, 0, 0] and gone.avail[0, 1].tolist() == [True, False, False, False]
    assert gone.avail[0, 0].tolist() == [True, True, False, False]
    assert steps[1].obs[:, 1, 1].tolist() == [3, 2] and steps[3].obs[:, 0].tolist() == [[4, 1, 0], [4, 0, 0]]
    assert torch.equal(steps[5].obs, steps[3].obs)  # frozen after the end
    assert [e.seeds for e in env.envs] == [[5], [6]]  # seeded once, seed + b
    env.reset()
    assert [e.seeds for e in env.envs] == [[5, None], [6, None]]


def test_toy_truncation_and_the_adapters_own_limit():
    env = PettingZooEnv(TOY, n_envs=1, kwargs={"end": "truncate"})
    env.reset()
    steps = [env.step(torch.zeros(1, 2, dtype=torch.long)) for _ in range(4)]
    assert [bool(s.truncated[0]) for s in steps] == [False, False, True, True] and not steps[-1].terminated.any()
    short = PettingZooEnv(TOY, n_envs=1, episode_limit=2, kwargs={"end": "truncate"})
    short.reset()
    out = [short.step(torch.zeros(1, 2, dtype=torch.long)) for _ in range(2)]
    assert short.spec.episode_limit == 2 and out[-1].truncated.all() and not out[0].done.any()


def test_bad_names_say_what_is_wrong():
    with pytest.raises(ValueError, match="no parallel_env"):
        PettingZooEnv("tests.conftest")
    with pytest.raises(ValueError, match="no module `no_such_package`"):
        PettingZooEnv("no_such_package.env_v0")
    with pytest.raises(ValueError, match="rejected env.kwargs"):
        PettingZooEnv(TOY, kwargs={"colour": "red"})


def test_a_missing_pettingzoo_module_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpe2", None)
    with pytest.raises(MissingPackageError, match=r'pip install -e "\.\[pettingzoo\]"'):
        PettingZooEnv("mpe2.simple_spread_v3")


# ---- mpe2 and sisl ------------------------------------------------------------------------------
@pytest.fixture
def mpe2():
    return pytest.importorskip("mpe2", reason="the simple_spread preset needs mpe2: pip install -e '.[pettingzoo]'")


def test_simple_spread_matches_the_env_stepped_by_hand(mpe2):
    cfg = compose_config(["env=pz_simple_spread"])
    env = PettingZooEnv(cfg.env.name, n_envs=3, seed=2, kwargs=dict(cfg.env.kwargs))
    assert (env.spec.n_agents, env.spec.n_actions, env.spec.obs_dim, env.spec.state_dim, env.spec.episode_limit) == (
        3, 5, 18, 54, 25)
    references = [importlib.import_module("mpe2.simple_spread_v3").parallel_env(**cfg.env.kwargs) for _ in range(3)]
    ref_obs = [r.reset(seed=2 + b)[0] for b, r in enumerate(references)]
    step = env.reset()
    g = torch.Generator().manual_seed(0)
    for t in range(27):
        for b, ref in enumerate(references):
            if ref.agents:
                assert torch.equal(step.obs[b], torch.tensor(np.stack([ref_obs[b][a] for a in ref.possible_agents])))
                assert torch.equal(step.state[b], torch.tensor(ref.state()))
        assert step.avail.all()  # truncated agents keep their actions: the target bootstraps over them
        actions = random_actions(step.avail, g)
        expected = torch.zeros(3)
        for b, ref in enumerate(references):
            if ref.agents:
                ref_obs[b], rewards, _, _, _ = ref.step({a: int(actions[b, i]) for i, a in enumerate(ref.possible_agents)})
                expected[b] = sum(rewards.values())
        step = env.step(actions)
        assert torch.allclose(step.reward, expected)
        assert step.truncated.all() == (t >= 24) and not step.terminated.any()  # MPE: 25 steps, then truncated


@pytest.mark.parametrize(("name", "obs_dim", "state_dim", "n_actions"),
                         [("simple_adversary_v3", 10, 28, 5), ("simple_world_comm_v3", 34, 192, 20)])
def test_heterogeneous_mpe_agents(mpe2, name, obs_dim, state_dim, n_actions):
    env = PettingZooEnv(f"mpe2.{name}", n_envs=2)
    assert (env.spec.obs_dim, env.spec.state_dim, env.spec.n_actions) == (obs_dim, state_dim, n_actions)
    step = env.reset()
    if name == "simple_adversary_v3":  # the adversary sees 8 numbers: the rest of its row is padding
        assert (step.obs[:, 0, 8:] == 0).all() and step.avail.all()
    else:  # only the lead adversary has 20 actions
        assert step.avail[:, 0].all() and step.avail[:, 1:, :5].all() and not step.avail[:, 1:, 5:].any()
    env.step(random_actions(step.avail, torch.Generator().manual_seed(1)))


def test_pursuit_preset():
    pytest.importorskip("pymunk", reason="sisl's pursuit needs pymunk: pip install -e '.[pettingzoo]'")
    cfg = compose_config(["env=pz_pursuit"])
    env = PettingZooEnv(cfg.env.name, n_envs=2, kwargs=dict(cfg.env.kwargs))
    assert (env.spec.n_agents, env.spec.n_actions, env.spec.obs_dim, env.spec.state_dim, env.spec.episode_limit) == (
        8, 5, 7 * 7 * 3, 16 * 16 * 3, 500)
    env.reset()
    step = env.step(torch.zeros(2, 8, dtype=torch.long))
    assert step.obs.shape == (2, 8, 147) and step.state.shape == (2, 768)


@pytest.mark.parametrize("algorithm", options("algorithm"))
def test_every_algorithm_builds_on_simple_spread(algorithm, mpe2):
    cfg = compose_config([f"algorithm={algorithm}", "env=pz_simple_spread"])
    check_config(cfg)
    datamodule_env = PettingZooEnv(cfg.env.name, kwargs=dict(cfg.env.kwargs))
    assert build_learner(cfg, datamodule_env.spec).spec.n_agents == 3


def test_a_tiny_run(tmp_path, mpe2):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "resq.run", "env=pz_simple_spread", "t_max=100", "test_interval=50",
         "test_episodes=2", "data.batch_size=2", "logger=none", "trainer.enable_progress_bar=false",
         f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    last = dict(zip(header, rows[-1].split(",")))
    assert len(rows) == 4 and int(last["t_env"]) == 100 and float(last["test/ep_length_mean"]) == 25.0
    assert "test/battle_won_mean" not in header


def test_any_module_from_the_command_line(mpe2):
    from hydra.utils import instantiate

    from resq.run import ConfigError

    cfg = compose_config(["env=pettingzoo", "env.name=mpe2.simple_tag_v3", "+env.kwargs.num_good=2"])
    env = instantiate(cfg.env)(n_envs=2, seed=0)
    assert env.spec.n_agents == 3 + 2 and env.agents[-1] == "agent_1"
    with pytest.raises(ConfigError, match="env.name"):
        check_config(compose_config(["env=pettingzoo"]))
