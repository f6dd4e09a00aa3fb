"""The buffer alone owns padding, the filled mask and the t / t+1 alignment: check all three."""

import pytest
import torch
import torch.nn.functional as F

from resq.data import EpisodeBuffer, EpisodeCollector, epsilon_greedy
from resq.data.episodes import EpisodeBatch
from tests.helpers import CountingEnv, CyclePolicy


def collect(lengths, limit=6, truncate=True):
    env = CountingEnv(lengths, limit=limit, truncate_at_limit=truncate)
    return EpisodeCollector(env).collect(CyclePolicy(2, 3), epsilon=0.0), env


def test_collected_episodes_are_aligned_and_masked():
    batch, _ = collect([2, 4, 1])
    assert batch.max_steps == 4  # cut to the longest episode
    assert batch.obs.shape == (3, 5, 2, 1) and batch.actions.shape == (3, 4, 2)
    assert batch.filled[..., 0].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]
    assert batch.lengths.tolist() == [2, 4, 1]
    for b, length in enumerate([2, 4, 1]):
        # observation row t is the state before step t; rows 0..length are real
        assert batch.state[b, : length + 1, 0].tolist() == list(range(length + 1))
        for t in range(length):
            expected_actions = [(t + i) % 3 if (i != 0 or (t + i) % 3 != 2) else 0 for i in range(2)]
            assert batch.actions[b, t].tolist() == expected_actions
            assert batch.reward[b, t, 0].item() == t + 1 + 10 * sum(expected_actions)
        # padding is zero
        assert (batch.reward[b, length:] == 0).all() and (batch.actions[b, length:] == 0).all()
        assert (batch.obs[b, length + 1 :] == 0).all()
    # a terminal end sets `terminated` on its last step only
    assert batch.terminated[..., 0].tolist() == [[0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 0]]


def test_a_time_limit_end_is_not_terminal():
    batch, _ = collect([3, 6], limit=6, truncate=True)
    assert batch.terminated[1, :, 0].sum() == 0 and batch.filled[1].sum() == 6
    assert batch.terminated[0, 2, 0] == 1
    # the observation after the last step is stored, so the target can bootstrap from it
    assert batch.state[1, 6, 0] == 6


def test_current_and_following_give_t_and_t_plus_1():
    batch, _ = collect([3, 2])
    now, nxt = batch.current(batch.state), batch.following(batch.state)
    assert now.shape[1] == nxt.shape[1] == batch.max_steps
    assert torch.equal(nxt[:, :-1], now[:, 1:])
    assert now[0, :, 0].tolist() == [0, 1, 2] and nxt[0, :, 0].tolist() == [1, 2, 3]


def test_prev_actions_onehot_is_the_last_action_and_zero_at_the_start():
    batch, _ = collect([3, 2])
    onehot = batch.prev_actions_onehot
    assert onehot.shape == (2, 4, 2, 3)
    assert (onehot[:, 0] == 0).all()
    assert torch.equal(onehot[:, 1:], F.one_hot(batch.actions, 3).float())
    for t in range(4):
        assert torch.equal(batch.prev_actions_onehot_at(t), onehot[:, t])


def test_unavailable_actions_are_recorded():
    batch, _ = collect([2])
    assert not batch.avail[0, 0, 0, 2] and batch.avail[0, 0, 1, 2]


def test_buffer_round_trip_pads_and_cuts_to_the_longest_sampled_episode():
    spec = CountingEnv([1]).spec
    buffer = EpisodeBuffer(spec, capacity=10)
    long_batch, _ = collect([5, 5])
    short_batch, _ = collect([1, 2, 1])
    buffer.insert(long_batch)
    buffer.insert(short_batch)
    assert len(buffer) == 5
    stored = buffer._storage
    # the short episodes are zero-padded to the buffer's full width
    assert (stored.filled[2:5, 2:] == 0).all() and (stored.obs[2:5, 3:] == 0).all()
    g = torch.Generator().manual_seed(0)
    sample = buffer.sample(5, g)
    assert sample.max_steps == 5 and sorted(sample.lengths.tolist()) == [1, 1, 2, 5, 5]
    # sampling only the short ones cuts time to their longest episode
    only_short = EpisodeBuffer(spec, capacity=3)
    only_short.insert(short_batch)
    assert only_short.sample(3, g).max_steps == 2


def test_buffer_is_a_ring_that_overwrites_the_oldest_episodes():
    spec = CountingEnv([1]).spec
    buffer = EpisodeBuffer(spec, capacity=3)
    for length in (1, 2, 3, 4):
        batch, _ = collect([length])
        buffer.insert(batch)
    assert len(buffer) == 3
    assert sorted(buffer._storage.lengths.tolist()) == [2, 3, 4]
    # the slot that held the length-4 episode has no stale steps from the length-1 episode it replaced
    slot = buffer._storage.lengths.tolist().index(4)
    assert buffer._storage.filled[slot, :, 0].tolist() == [1, 1, 1, 1, 0, 0]


def test_buffer_state_dict_round_trip():
    spec = CountingEnv([1]).spec
    a = EpisodeBuffer(spec, capacity=4)
    batch, _ = collect([2, 3])
    a.insert(batch)
    b = EpisodeBuffer(spec, capacity=4)
    b.load_state_dict(a.state_dict())
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    s1, s2 = a.sample(2, g1), b.sample(2, g2)
    assert torch.equal(s1.obs, s2.obs) and torch.equal(s1.actions, s2.actions)


def test_empty_batch_layout():
    spec = CountingEnv([1], limit=4).spec
    batch = EpisodeBatch.empty(spec, 2)
    assert batch.obs.shape == (2, 5, 2, 1) and batch.reward.shape == (2, 4, 1) and batch.n_steps == 0


class EpsilonGreedyPolicy:
    """Random utilities, epsilon-greedy: counts its calls."""

    def __init__(self, n_agents: int, n_actions: int) -> None:
        self.n_agents, self.n_actions, self.calls = n_agents, n_actions, 0

    def initial_state(self, batch_size: int):
        return None

    def act(self, obs, prev_actions_onehot, avail, hidden, epsilon, generator):
        self.calls += 1
        return epsilon_greedy(torch.randn(obs.shape[0], self.n_agents, self.n_actions), avail, epsilon, generator), hidden


@pytest.mark.parametrize("epsilon", [1.0, 0.5])
def test_full_exploration_skips_the_policy_and_draws_what_it_would(epsilon):
    """At epsilon = 1 the collector does not run the policy, yet gives the same episodes (same generator
    draws) as the policy's own epsilon-greedy; below 1 it runs the policy every step."""
    lengths = [3, 5, 2, 5]
    policy = EpsilonGreedyPolicy(2, 3)
    fast = EpisodeCollector(CountingEnv(lengths), torch.Generator().manual_seed(7)).collect(policy, epsilon)
    assert policy.calls == (0 if epsilon == 1.0 else 5)
    reference = torch.Generator().manual_seed(7)
    env = CountingEnv(lengths)
    step = env.reset()
    for t in range(5):
        actions = epsilon_greedy(torch.randn(4, 2, 3), step.avail, 1.0, reference)
        if epsilon == 1.0:
            assert torch.equal(fast.actions[:, t][fast.filled[:, t, 0] > 0], actions[fast.filled[:, t, 0] > 0])
        step = env.step(actions)
    assert (fast.actions[..., 0] != 2).all()  # agent 0's last action is never available
