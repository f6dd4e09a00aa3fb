"""envs.SMACEnv against a stand-in StarCraft2Env (tests/smac_standin.py) in real subprocess workers,
and the messages a run gets without smac or without StarCraft II."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from envs import MissingPackageError, SMACEnv, StarCraftUnavailableError
from envs.smac import check_starcraft
from envs.smax import SMAC_TO_SMAX
from resq.data.collector import EpisodeCollector
from resq.run import build_learner, check_config
from tests.conftest import compose_config, options
from tests.smac_standin import N_NON_ATTACK, SMAC_ENV_INFO, StandInStarCraft2Env

ROOT = Path(__file__).resolve().parents[1]
# issue 6's SMAC maps: config name -> SMAC map name
PAPER_MAPS = {"mmm2": "MMM2", "mmm": "MMM", "3s_vs_5z": "3s_vs_5z", "bane_vs_bane": "bane_vs_bane",
              "2s_vs_1sc": "2s_vs_1sc", "1c3s5z": "1c3s5z", "2c_vs_64zg": "2c_vs_64zg", "8m_vs_9m": "8m_vs_9m",
              "27m_vs_30m": "27m_vs_30m", "3s_vs_3z": "3s_vs_3z", "5m_vs_6m": "5m_vs_6m"}


def first_available(avail: torch.Tensor) -> torch.Tensor:
    """(B, N) the last available action of every agent (an attack when one is in range)."""
    index = torch.arange(avail.shape[-1]).expand_as(avail)
    return torch.where(avail, index, -1).amax(-1)


@pytest.fixture(scope="module")
def three_games():
    """3s_vs_5z, copies seeded 0, 1, 2: a win after 3 steps, a loss after 4, a time-out at 250."""
    env = SMACEnv("3s_vs_5z", n_envs=3, seed=0, factory=StandInStarCraft2Env, difficulty="7")
    yield env
    env.close()


@pytest.mark.parametrize("map_name", ["3s_vs_5z", "MMM2", "27m_vs_30m", "2c_vs_64zg", "2s_vs_1sc"])
def test_spec_and_shapes_come_from_each_worker_game(map_name):
    n_agents, n_actions, obs_dim, state_dim, limit = SMAC_ENV_INFO[map_name]
    env = SMACEnv(map_name, n_envs=2, seed=5, factory=StandInStarCraft2Env)
    try:
        assert (env.spec.n_agents, env.spec.n_actions, env.spec.obs_dim, env.spec.state_dim,
                env.spec.episode_limit) == (n_agents, n_actions, obs_dim, state_dim, limit)
        assert env.spec.reports_battle_won
        first = env.reset()
        assert first.obs.shape == (2, n_agents, obs_dim) and first.obs.dtype == torch.float32
        assert first.state.shape == (2, state_dim) and first.avail.shape == (2, n_agents, n_actions)
        assert first.avail.dtype == torch.bool and first.battle_won.shape == (2,)
        assert not first.done.any() and (first.reward == 0).all()
        # each copy is its own game, seeded seed + b, in its own process, which never loaded torch
        assert first.obs[:, 0, 2].tolist() == [5.0, 6.0]
        pids = first.obs[:, 0, 3].long().tolist()
        assert len(set(pids)) == 2 and os.getpid() not in pids
        assert pids == [p.pid for p in env._processes]
        assert (first.obs[:, :, 4] == 0).all()
    finally:
        env.close()


def test_actions_reach_the_right_game_and_agent(three_games):
    env = three_games
    step = env.reset()
    actions = torch.tensor([[1, 2, 3], [4, 5, 1], [2, 2, 2]])
    out = env.step(actions)
    assert torch.equal(out.obs[:, :, 1].long(), actions)
    assert (out.obs[:, :, 0] == 1).all() and (out.state[:, 0] == 1).all()
    assert step.avail[:, :, 1].all() and not step.avail[:, :, 0].any()  # alive: stop, not no-op


def test_wins_losses_time_outs_and_frozen_copies(three_games):
    env = three_games
    step = env.reset()
    rewards, history = [], []
    for _ in range(env.spec.episode_limit):
        step = env.step(first_available(step.avail))
        rewards.append(step.reward)
        history.append(step)
    reward = torch.stack(rewards)  # (T, B)
    # copy 0 wins at step 3, copy 1 loses at step 4, copy 2 times out at 250
    assert reward[:3, 0].tolist() == pytest.approx([0.1, 0.2, 0.3 + 5.0])
    assert reward[:4, 1].tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert (reward[3:, 0] == 0).all() and (reward[4:, 1] == 0).all()
    assert reward[-1, 2] == pytest.approx(25.0)
    last = history[-1]
    assert last.terminated.tolist() == [True, True, False]
    assert last.truncated.tolist() == [False, False, True]  # SMAC's episode_limit: bootstrapped
    assert last.battle_won.tolist() == [True, False, False]
    # the ended copies keep their last observation and flags until reset
    assert torch.equal(history[2].obs[0], last.obs[0]) and torch.equal(history[3].obs[1], last.obs[1])
    assert all(h.terminated[0] for h in history[2:]) and not any(h.done[2] for h in history[:-1])
    again = env.reset()
    assert not again.done.any() and not again.battle_won.any() and (again.obs[:, :, 0] == 0).all()


def test_avail_follows_the_game_dead_agents_may_only_no_op(three_games):
    env = three_games
    step = env.reset()
    for t in range(3):
        attacks = step.avail[:, :, N_NON_ATTACK:]
        expected = torch.tensor([(t + j) % 2 == 0 for j in range(attacks.shape[-1])])
        assert (attacks[:, 1:] == expected).all()
        step = env.step(first_available(step.avail))
    dead = step.avail[2, 0]  # agent 0 of the still-running copy died after step 2
    assert dead.tolist() == [True] + [False] * (env.spec.n_actions - 1)


def test_collected_episodes_have_the_games_lengths_wins_and_terminal_flags(three_games):
    class AttackPolicy:
        def initial_state(self, batch_size):
            return None

        def act(self, obs, prev_actions_onehot, avail, hidden, epsilon, generator):
            return first_available(avail), hidden

    batch = EpisodeCollector(three_games).collect(AttackPolicy(), epsilon=0.0)
    assert batch.lengths.tolist() == [3, 4, 250]
    assert batch.battle_won.tolist() == [True, False, False]
    ends = batch.terminated[torch.arange(3), batch.lengths - 1, 0]
    assert ends.tolist() == [1.0, 1.0, 0.0]  # the time-out is not terminal
    assert batch.returns.tolist() == pytest.approx([5.6, 1.0, sum(t / 10 for t in range(1, 251))])


def test_a_failing_game_names_its_worker_and_the_error_and_closes_the_env():
    env = SMACEnv("3s_vs_5z", n_envs=2, seed=0, factory=StandInStarCraft2Env)
    processes = list(env._processes)
    env.reset()
    bad = torch.ones(2, 3, dtype=torch.long)
    bad[1, 2] = 0  # no-op is unavailable to a live agent: SMAC asserts
    with pytest.raises(RuntimeError, match=r"worker 1 \(3s_vs_5z\) failed during 'step'.*cannot perform action 0"):
        env.step(bad)
    assert all(p.poll() is not None for p in processes)
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()


def test_close_ends_the_workers():
    env = SMACEnv("2s_vs_1sc", n_envs=2, seed=0, factory=StandInStarCraft2Env)
    processes = list(env._processes)
    assert all(p.poll() is None for p in processes)
    env.close()
    assert all(p.poll() is not None for p in processes)
    with pytest.raises(RuntimeError, match="closed"):
        env.reset()
    env.close()  # idempotent


def test_wrong_action_shape_is_refused(three_games):
    with pytest.raises(ValueError, match=r"actions must have shape \(3, 3\)"):
        three_games.step(torch.zeros(3, 2, dtype=torch.long))


# ---- without smac or StarCraft II ----------------------------------------------------------------
def test_without_smac_the_message_says_what_to_install_and_names_smax(monkeypatch):
    monkeypatch.setitem(sys.modules, "smac", None)  # `import smac.env` now fails
    with pytest.raises(MissingPackageError) as info:
        SMACEnv("3s_vs_5z")
    message = str(info.value)
    assert "git+https://github.com/oxwhirl/smac.git" in message and "SMAC3" in message
    assert "env=smax_3s_vs_5z" in message and "env=smax_27m_vs_30m" in message


@pytest.fixture
def fake_smac(monkeypatch):
    """A `smac.env` module that imports (the real one is not installed in CI)."""
    package, module = types.ModuleType("smac"), types.ModuleType("smac.env")
    module.StarCraft2Env = StandInStarCraft2Env
    package.env = module
    monkeypatch.setitem(sys.modules, "smac", package)
    monkeypatch.setitem(sys.modules, "smac.env", module)


def test_without_starcraft_the_message_names_sc2path_the_maps_folder_and_smax(fake_smac, monkeypatch, tmp_path):
    monkeypatch.setenv("SC2PATH", str(tmp_path / "nowhere"))
    with pytest.raises(StarCraftUnavailableError) as info:
        SMACEnv("MMM2")
    message = str(info.value)
    assert "$SC2PATH" in message and str(tmp_path / "nowhere") in message
    assert "Maps/SMAC_Maps" in message and "MMM2.SC2Map" in message
    assert "env=smax_3s_vs_5z" in message and "env=smax_MMM2" not in message


def test_the_starcraft_check_passes_on_an_installation_and_wants_the_map(monkeypatch, tmp_path):
    (tmp_path / "Versions" / "Base75689").mkdir(parents=True)
    (tmp_path / "Maps" / "SMAC_Maps").mkdir(parents=True)
    (tmp_path / "Maps" / "SMAC_Maps" / "3s_vs_5z.SC2Map").write_bytes(b"")
    monkeypatch.setenv("SC2PATH", str(tmp_path))
    assert check_starcraft("3s_vs_5z") == tmp_path
    with pytest.raises(StarCraftUnavailableError, match="no map file .*8m_vs_9m.SC2Map") as info:
        check_starcraft("8m_vs_9m")
    assert "no StarCraft II installation" not in str(info.value)
    assert "runs without StarCraft II as env=smax_8m_vs_9m" in str(info.value)


def run_cli(args, cwd, **env):
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run([sys.executable, "-m", "resq.run", *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=300, check=False)


def test_a_run_without_starcraft_stops_before_training(tmp_path):
    out = run_cli(["env=3s_vs_5z", f"hydra.run.dir={tmp_path}/run", "logger=none"], tmp_path,
                  SC2PATH=str(tmp_path / "no_sc2"))
    assert out.returncode != 0
    # smac missing (CI) or StarCraft II missing (a machine with smac): either way, what to install
    assert ("git+https://github.com/oxwhirl/smac.git" in out.stderr) or ("$SC2PATH" in out.stderr)
    assert "env=smax_3s_vs_5z" in out.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()


def test_a_tiny_run_on_the_stand_in_logs_the_win_rate(tmp_path):
    # seed 1: the training game (seeded 1) loses after 4 steps, the test game (seeded 1 + 10007) wins after 3
    out = run_cli(["env=3s_vs_5z", "+env.factory._target_=tests.smac_standin.StandInStarCraft2Env",
                   "+env.factory._partial_=true", "seed=1", "t_max=30", "test_interval=15", "test_episodes=2",
                   "data.batch_size=2", "logger=none", "trainer.enable_progress_bar=false",
                   f"hydra.run.dir={tmp_path}/run"], tmp_path)
    assert out.returncode == 0, out.stderr
    rows = (tmp_path / "run" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "test/battle_won_mean" in header and len(rows) == 4  # t_env 0, 16, 32 (4-step episodes)
    last = dict(zip(header, rows[-1].split(",")))
    assert last["env"] == "3s_vs_5z" and int(last["t_env"]) == 32
    assert float(last["test/battle_won_mean"]) == 1.0 and float(last["test/ep_length_mean"]) == 3.0


# ---- configs -------------------------------------------------------------------------------------
def test_every_issue_map_has_a_config_with_the_paper_settings():
    assert set(PAPER_MAPS) <= set(options("env"))
    for name, map_name in PAPER_MAPS.items():
        cfg = compose_config([f"env={name}"])
        env = cfg.env
        assert env._target_ == "envs.SMACEnv" and env.map_name == map_name in SMAC_ENV_INFO
        assert (env.difficulty, env.reward_only_positive, env.reward_scale, env.reward_scale_rate,
                env.reward_win, env.reward_death_value, env.state_last_action) == ("7", True, True, 20, 200, 10, True)
        assert (cfg.test_interval, cfg.test_episodes) == (10_000, 32) and cfg.t_max in (1_000_000, 2_000_000)
    assert set(SMAC_TO_SMAX) <= set(PAPER_MAPS)


@pytest.fixture(scope="module")
def stand_in_spec():
    env = SMACEnv("8m_vs_9m", n_envs=1, factory=StandInStarCraft2Env)
    env.close()
    return env.spec


@pytest.mark.parametrize("algorithm", options("algorithm"))
def test_every_algorithm_builds_on_a_smac_map(algorithm, stand_in_spec):
    cfg = compose_config([f"algorithm={algorithm}", "env=8m_vs_9m"])
    check_config(cfg)
    learner = build_learner(cfg, stand_in_spec)
    assert learner.spec.n_actions == 15 and learner.spec.reports_battle_won
