import pytest
import torch

from envs import EnvSpec, MatrixGame, payoff_tensor

RESQ = [[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]]


def test_matrix_game_pays_the_payoff_of_every_joint_action_and_ends():
    env = MatrixGame(RESQ, n_envs=9)
    first = env.reset()
    assert first.obs.shape == (9, 2, 1) and first.state.shape == (9, 1) and first.avail.shape == (9, 2, 3)
    assert not first.done.any() and (first.reward == 0).all()
    actions = torch.cartesian_prod(torch.arange(3), torch.arange(3))  # (9, 2)
    out = env.step(actions)
    expected = torch.tensor([RESQ[i][j] for i, j in actions.tolist()], dtype=torch.float32)
    assert torch.equal(out.reward, expected)
    assert out.terminated.all() and not out.truncated.any()
    assert env.spec == EnvSpec(n_agents=2, n_actions=3, obs_dim=1, state_dim=1, episode_limit=1)


def test_matrix_game_after_its_end_pays_nothing_until_reset():
    env = MatrixGame(RESQ, n_envs=2)
    env.reset()
    env.step(torch.zeros(2, 2, dtype=torch.long))
    assert (env.step(torch.zeros(2, 2, dtype=torch.long)).reward == 0).all()
    env.reset()
    assert (env.step(torch.zeros(2, 2, dtype=torch.long)).reward == 8).all()


def test_three_agent_payoff_gives_three_agents():
    payoff = torch.arange(8.0).reshape(2, 2, 2).tolist()
    env = MatrixGame(payoff, n_envs=1)
    assert env.spec.n_agents == 3 and env.spec.n_actions == 2
    env.reset()
    assert env.step(torch.tensor([[1, 0, 1]])).reward.item() == 5.0
    assert env.optimal_joint_action == (1, 1, 1)


def test_optimal_joint_action_breaks_ties_by_smallest_index():
    assert MatrixGame([[1, 1], [1, 0]]).optimal_joint_action == (0, 0)
    assert MatrixGame(RESQ).optimal_joint_action == (0, 0)


def test_noise_has_the_requested_spread_and_is_seeded():
    def rewards(seed):
        env = MatrixGame(RESQ, n_envs=4000, noise_std=1.0, seed=seed)
        env.reset()
        return env.step(torch.zeros(4000, 2, dtype=torch.long)).reward
    r = rewards(0)
    assert abs(r.mean().item() - 8.0) < 0.1 and abs(r.std().item() - 1.0) < 0.1
    assert torch.equal(r, rewards(0)) and not torch.equal(r, rewards(1))


@pytest.mark.parametrize(
    ("payoff", "message"),
    [
        ([[1, 2], [3]], "rows of different lengths"),
        ([[1, 2, 3], [4, 5, 6]], "same number of actions"),
        ([1, 2, 3], "one axis per agent"),
        ([[1, "x"], [3, 4]], "must be a number"),
        ([[1, float("nan")], [3, 4]], "finite"),
        ([[1, [2]], [3, 4]], "mixes numbers and lists"),
        ([[1]], "at least 2 actions"),
        ([], "empty"),
    ],
)
def test_malformed_payoff_is_a_clear_error(payoff, message):
    with pytest.raises(ValueError, match=message) as info:
        payoff_tensor(payoff)
    assert "env.payoff" in str(info.value)


def test_negative_noise_is_rejected():
    with pytest.raises(ValueError, match="noise_std"):
        MatrixGame(RESQ, noise_std=-1.0)


def test_env_spec_rejects_nonsense():
    with pytest.raises(ValueError, match="n_agents"):
        EnvSpec(n_agents=0, n_actions=3, obs_dim=1, state_dim=1, episode_limit=1)
