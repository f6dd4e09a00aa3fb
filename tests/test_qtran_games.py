"""QTRAN's games (papers/qtran_icml2019.md Sec. 4.1): rewards on hand-computed cases, episode ends and
layouts of Gaussian Squeeze, Multi-domain Gaussian Squeeze and the modified predator-prey."""

import math

import pytest
import torch

from envs import GaussianSqueeze, ModifiedPredatorPrey
from envs.qtran_games import MPPNoise
from tests.conftest import compose_config

RIGHT, DOWN, LEFT, UP, STAY = range(5)
GS = [[8.0, 0.5]]
MGS = [[5.0, 1.0], [8.0, 0.5]]


def squeeze(domains, resources, n_envs=1):
    env = GaussianSqueeze(n_envs=n_envs, domains=domains)
    env.reset()
    env.resources = torch.as_tensor(resources, dtype=torch.float).expand(n_envs, 10).clone()
    return env


# ---- Gaussian squeeze ----------------------------------------------------------------------------
@pytest.mark.parametrize(("levels", "gs", "mgs"), [
    ([8] * 10, 8.0, 8.0 + 8.0 * math.exp(-9.0)),  # x = 8: GS's optimum
    ([5] * 10, 5.0 * math.exp(-36.0), 5.0 + 5.0 * math.exp(-36.0)),  # x = 5: MGS's pitfall
    ([8] * 5 + [7] * 5, 7.5 * math.exp(-1.0), 7.5 * math.exp(-6.25) + 7.5 * math.exp(-1.0)),  # x = 7.5
    ([0] * 10, 0.0, 0.0),
])
def test_squeeze_rewards_by_hand(levels, gs, mgs):
    """s_i = 0.1 for all ten agents, so x = 0.1 sum_i u_i; G = sum_k x exp(-(x - mu_k)^2 / sigma_k^2)."""
    actions = torch.tensor([levels])
    assert squeeze(GS, [0.1] * 10).step(actions).reward.item() == pytest.approx(gs, rel=1e-5, abs=1e-12)
    assert squeeze(MGS, [0.1] * 10).step(actions).reward.item() == pytest.approx(mgs, rel=1e-5, abs=1e-12)


def test_squeeze_weighs_each_agents_resource():
    resources = [0.2, 0.0] + [0.05] * 8  # x = 0.2 * 9 + 0 * 9 + 0.05 * (4 * 8) = 1.8 + 1.6 = 3.4
    actions = torch.tensor([[9, 9] + [4] * 8])
    expected = 3.4 * math.exp(-(3.4 - 5.0) ** 2) + 3.4 * math.exp(-((3.4 - 8.0) ** 2) / 0.25)
    assert squeeze(MGS, resources).step(actions).reward.item() == pytest.approx(expected, rel=1e-5)


def test_squeeze_is_one_step_with_the_resources_in_every_observation():
    env = GaussianSqueeze(n_envs=64, seed=3)
    spec = env.spec
    assert (spec.n_agents, spec.n_actions, spec.obs_dim, spec.state_dim, spec.episode_limit) == (10, 10, 10, 10, 1)
    start = env.reset()
    s = env.resources
    assert ((s >= 0) & (s <= 0.2)).all() and s.std() > 0.03  # U[0, 0.2], drawn per episode
    assert torch.equal(start.state, s) and torch.equal(start.obs, s[:, None].expand(64, 10, 10))
    assert start.avail.all() and not start.done.any()
    end = env.step(torch.randint(10, (64, 10)))
    assert end.terminated.all() and not end.truncated.any()
    assert env.step(torch.zeros(64, 10, dtype=torch.long)).reward.abs().sum() == 0  # finished: no reward
    assert not torch.equal(env.reset().state, s)


def test_mgs_pays_at_least_what_gs_pays_on_the_same_draws():
    gs, mgs = GaussianSqueeze(n_envs=256, seed=1, domains=GS), GaussianSqueeze(n_envs=256, seed=1, domains=MGS)
    gs.reset(), mgs.reset()
    actions = torch.randint(10, (256, 10), generator=torch.Generator().manual_seed(0))
    assert torch.equal(gs.resources, mgs.resources)
    assert (mgs.step(actions).reward >= gs.step(actions).reward).all()


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"domains": []}, "non-empty list of \\[mu, sigma\\] pairs"),
    ({"domains": [[8.0]]}, "non-empty list of \\[mu, sigma\\] pairs"),
    ({"domains": [[8.0, 0.0]]}, "sigma.*> 0"),
    ({"domains": [[float("nan"), 1.0]]}, "mu.*finite"),
    ({"resource_max": -0.1}, "resource_max must be > 0"),
])
def test_squeeze_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianSqueeze(**kwargs)


def test_squeeze_refuses_actions_out_of_range():
    env = GaussianSqueeze()
    env.reset()
    with pytest.raises(ValueError, match="0..9"):
        env.step(torch.full((1, 10), 10))


# ---- modified predator-prey ------------------------------------------------------------------------
def mpp(n_predators=2, n_prey=1, grid_size=5, penalty=0.5, n_envs=1, **kwargs):
    return ModifiedPredatorPrey(n_envs=n_envs, n_predators=n_predators, n_prey=n_prey, grid_size=grid_size,
                                penalty=penalty, **kwargs)


def still(env, respawn=0.0):
    """Draws in which every prey stays and a caught prey respawns on the floor(u * k)-th free cell."""
    b, n, p = env.n_envs, env.n_predators, env.n_prey
    return MPPNoise(predator_order=torch.arange(n).expand(b, n), prey_order=torch.arange(p).expand(b, p),
                    prey_action=torch.full((b, p), STAY), respawn=torch.full((b, p), respawn))


def test_two_adjacent_predators_catch_the_prey_which_respawns_on_a_free_cell():
    env = mpp()
    env.place(predators=[[0, 1], [1, 0]], prey=[[0, 0]])
    step = env.step(torch.tensor([[STAY, STAY]]), still(env, respawn=0.0))
    assert step.reward.tolist() == [1.0]
    # row-major, (0, 0) is the prey's own cell (still taken when it respawns), (0, 1) a predator
    assert env.prey[0, 0].tolist() == [0, 2]


def test_one_adjacent_predator_costs_the_penalty_and_the_prey_stays():
    env = mpp(penalty=1.5)
    env.place(predators=[[0, 1], [4, 4]], prey=[[0, 0]])
    assert env.step(torch.tensor([[STAY, STAY]]), still(env)).reward.tolist() == [-1.5]
    assert env.prey[0, 0].tolist() == [0, 0]
    env.place(predators=[[1, 1], [4, 4]], prey=[[0, 0]])  # diagonal: not within the horizon
    assert env.step(torch.tensor([[STAY, STAY]]), still(env)).reward.tolist() == [0.0]


def test_four_predators_two_prey_sum_the_rewards():
    env = mpp(n_predators=4, n_prey=2, grid_size=7, penalty=1.0)
    env.place(predators=[[2, 1], [2, 3], [5, 4], [0, 6]], prey=[[2, 2], [5, 5]])
    step = env.step(torch.tensor([[STAY] * 4]), still(env, respawn=0.99))
    assert step.reward.tolist() == [1.0 - 1.0]  # prey 0 caught by two, prey 1 next to one
    assert env.prey[0, 0].tolist() == [6, 6]  # last free cell
    env.place(predators=[[2, 1], [2, 3], [5, 4], [5, 6]], prey=[[2, 2], [5, 5]])
    step = env.step(torch.tensor([[STAY] * 4]), still(env, respawn=0.0))
    assert step.reward.tolist() == [2.0]
    assert env.prey[0].tolist() == [[0, 0], [0, 1]]  # respawned in turn onto distinct free cells


def test_catching_happens_after_everyone_moved():
    env = mpp()
    env.place(predators=[[0, 2], [2, 0]], prey=[[1, 1]])
    noise = still(env)
    noise.prey_action[:] = UP  # prey goes to (0, 1): then (0, 2) is next to it, (2, 0) -> (1, 0) is not
    step = env.step(torch.tensor([[STAY, UP]]), noise)
    assert env.prey[0, 0].tolist() == [0, 1] and env.predators[0].tolist() == [[0, 2], [1, 0]]
    assert step.reward.tolist() == [-0.5]


def test_moves_into_walls_or_occupied_cells_are_not_made():
    env = mpp()
    env.place(predators=[[0, 0], [0, 1]], prey=[[4, 4]])
    noise = still(env)
    env.step(torch.tensor([[UP, LEFT]]), noise)  # a wall; the other predator
    assert env.predators[0].tolist() == [[0, 0], [0, 1]]
    noise.predator_order[:] = torch.tensor([1, 0])
    env.step(torch.tensor([[RIGHT, RIGHT]]), noise)  # predator 1 moves first, so 0 can follow
    assert env.predators[0].tolist() == [[0, 1], [0, 2]]


def test_mpp_layout_and_fixed_length():
    env = mpp(n_predators=4, n_prey=2, grid_size=7, n_envs=3)
    assert (env.spec.n_agents, env.spec.n_actions, env.spec.obs_dim, env.spec.episode_limit) == (4, 5, 12, 100)
    step = env.place(predators=[[0, 0], [0, 6], [6, 0], [3, 3]], prey=[[6, 6], [1, 2]])
    expected = [(v - 3.5) / 7 for cell in ([0, 0], [0, 6], [6, 0], [3, 3], [6, 6], [1, 2]) for v in cell]
    assert step.state[0].tolist() == pytest.approx(expected)
    assert torch.equal(step.obs[:, 1], step.state) and step.avail.all()
    env.reset()
    flags = [env.step(torch.randint(5, (3, 4))) for _ in range(100)]
    assert not any(f.terminated.any() for f in flags)
    assert [bool(f.truncated.all()) for f in flags] == [False] * 99 + [True]
    for copy in torch.cat([env.predators, env.prey], 1).tolist():
        assert len({tuple(c) for c in copy}) == 6 and all(0 <= v < 7 for c in copy for v in c)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"penalty": -0.5}, "penalty must be >= 0"),
    ({"grid_size": 1}, "grid_size must be an int >= 2"),
    ({"n_predators": 3, "n_prey": 1, "grid_size": 2}, "larger env.grid_size"),
])
def test_mpp_refuses_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModifiedPredatorPrey(**kwargs)


# ---- the configs -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("env", "expected"), [
    ("gaussian_squeeze", {"domains": GS}),
    ("mgs", {"domains": MGS}),
    ("qtran_pp", {"n_predators": 2, "n_prey": 1, "grid_size": 5}),
    ("qtran_pp_n4", {"n_predators": 4, "n_prey": 2, "grid_size": 7}),
])
def test_env_configs_carry_the_papers_settings(env, expected):
    cfg = compose_config([f"env={env}"])
    for key, value in expected.items():
        assert cfg.env[key] == value, key


def test_the_seed_fixes_every_draw():
    def run(seed):
        env = mpp(n_envs=4, seed=seed)
        states = [env.reset().state] + [env.step(torch.full((4, 2), STAY)).state for _ in range(10)]
        squeeze_env = GaussianSqueeze(n_envs=4, seed=seed)
        return torch.stack(states), squeeze_env.reset().state
    (a, s), (b, t), (c, u) = run(2), run(2), run(3)
    assert torch.equal(a, b) and torch.equal(s, t) and not torch.equal(a, c) and not torch.equal(s, u)
