"""The shortcuts of the hot paths (benchmarks/, docs/performance.md) give what the plain code gives."""

import torch

from tests.helpers import random_batch


def test_prev_actions_onehot_is_cached_until_the_actions_change():
    batch = random_batch()
    first = batch.prev_actions_onehot
    assert batch.prev_actions_onehot is first  # every head of a learner reads the same tensor
    batch.actions[1, 0] = (batch.actions[1, 0] + 1) % 4  # in place: the version counter moves
    changed = batch.prev_actions_onehot
    assert changed is not first
    assert torch.equal(changed[1, 1], torch.nn.functional.one_hot(batch.actions[1, 0], 4).float())
    batch.actions = batch.actions.clone()  # replaced
    assert batch.prev_actions_onehot is not changed
    assert torch.equal(batch.prev_actions_onehot, changed)


def test_heads_that_need_rows_0_to_t_minus_1_or_1_to_t_see_only_those():
    from functools import partial

    from resq.learners import ValueFactorization
    from resq.nn import FeedForwardMixer, MLPAgent, QMixer, RNNAgent
    from tests.helpers import SPEC

    batch = random_batch(t=4)
    for agent in (RNNAgent, MLPAgent):
        torch.manual_seed(0)
        model = ValueFactorization(SPEC, agent=agent, main_function=QMixer, optimizer=torch.optim.RMSprop,
                                   residual_function=FeedForwardMixer, central=partial(FeedForwardMixer))
        for head in ("main", "residual", "central"):
            full = model.utilities(model.nets, head, batch)  # (B, T+1, N, A)
            assert torch.equal(model.current_utilities(model.nets, head, batch), batch.current(full))
            assert torch.allclose(model.following_utilities(model.nets, head, batch), batch.following(full))


def test_sample_and_insert_match_the_plain_gather_and_index_writes():
    from resq.data.episodes import _STORED, EpisodeBuffer
    from tests.helpers import SPEC

    buffer = EpisodeBuffer(SPEC, capacity=7)
    reference = {name: getattr(buffer._storage, name).clone() for name in _STORED}
    for i, (b, t) in enumerate([(3, 4), (3, 2), (3, 3), (2, 2)]):  # the third and fourth wrap around
        episodes = random_batch(b=b, t=t, seed=i)
        idx = (torch.arange(b) + buffer._next) % buffer.capacity
        buffer.insert(episodes)
        for name in _STORED:
            src, ref = getattr(episodes, name), reference[name]
            width = src.shape[1] if src.dim() > 1 else None
            if width is None:
                ref[idx] = src
            else:
                ref[idx] = 0
                ref[idx, :width] = src
            assert torch.equal(getattr(buffer._storage, name), ref), name
    for seed in range(5):
        batch = buffer.sample(4, torch.Generator().manual_seed(seed))
        idx = torch.randperm(len(buffer), generator=torch.Generator().manual_seed(seed))[:4]
        plain = buffer._storage.select(idx)
        plain = plain.truncate(int(plain.lengths.max()))
        for name in _STORED:
            assert torch.equal(getattr(batch, name), getattr(plain, name)), name


def test_acting_one_step_with_the_gru_cell_gives_nn_grus_numbers():
    from resq.nn import RNNAgent

    def act(agent, obs, prev, grad):
        hidden, rows = agent.initial_state(obs.shape[0]), []
        with torch.set_grad_enabled(grad):  # with grad: nn.GRU on one row; without: the cell
            for t in range(obs.shape[1]):
                q, hidden = agent(obs[:, t : t + 1], prev[:, t : t + 1], hidden)
                rows.append(q.detach())
        return torch.cat(rows, 1)

    for seed, (b, n) in enumerate([(1, 2), (8, 2), (8, 8), (3, 5), (32, 2)]):
        torch.manual_seed(seed)
        agent = RNNAgent(n_agents=n, n_actions=6, obs_dim=11)
        obs, prev = torch.randn(b, 6, n, 11), torch.zeros(b, 6, n, 6)
        assert torch.equal(act(agent, obs, prev, grad=False), act(agent, obs, prev, grad=True))


def test_unmasked_writes_of_an_all_active_step_equal_the_masked_ones():
    from envs import TimeStep
    from resq.data.episodes import _STORED, EpisodeBatch
    from tests.helpers import SPEC

    g = torch.Generator().manual_seed(0)
    b, n = 4, SPEC.n_agents
    step = TimeStep(obs=torch.randn(b, n, 5, generator=g), state=torch.randn(b, 6, generator=g),
                    avail=torch.rand(b, n, 4, generator=g) > 0.3, reward=torch.randn(b, generator=g),
                    terminated=torch.tensor([False, True, False, True]), truncated=torch.zeros(b, dtype=torch.bool),
                    battle_won=torch.tensor([True, False, False, True]))
    actions = torch.randint(0, 4, (b, n), generator=g)
    masked, unmasked = EpisodeBatch.empty(SPEC, b), EpisodeBatch.empty(SPEC, b)
    masked.write_transition(1, actions, step, torch.ones(b, dtype=torch.bool))
    masked.write_observation(2, step, rows=torch.ones(b, dtype=torch.bool))
    unmasked.write_transition(1, actions, step, None)
    unmasked.write_observation(2, step, rows=None)
    for name in _STORED:
        assert torch.equal(getattr(masked, name), getattr(unmasked, name)), name


def test_uint8_storage_keeps_small_integer_observations_exactly_in_a_quarter_of_the_bytes():
    import dataclasses

    import pytest

    from resq.data.episodes import _STORED, EpisodeBuffer
    from tests.helpers import SPEC

    narrow = dataclasses.replace(SPEC, obs_storage="uint8", state_storage="uint8")
    wide_buffer, narrow_buffer = EpisodeBuffer(SPEC, 6), EpisodeBuffer(narrow, 6)
    for seed in range(3):
        episodes = random_batch(b=2, seed=seed)
        episodes.obs = (episodes.obs.abs() * 40).round()  # integers 0..255
        episodes.state = (episodes.state > 0).float()  # flags
        wide_buffer.insert(episodes)
        narrow_buffer.insert(episodes)
    assert narrow_buffer._storage.obs.dtype == torch.uint8
    assert narrow_buffer._storage.obs.nbytes * 4 == wide_buffer._storage.obs.nbytes
    wide, narrow_batch = (b.sample(4, torch.Generator().manual_seed(1)) for b in (wide_buffer, narrow_buffer))
    for name in _STORED:
        assert getattr(narrow_batch, name).dtype == getattr(wide, name).dtype, name
        assert torch.equal(getattr(narrow_batch, name), getattr(wide, name)), name
    restored = EpisodeBuffer(narrow, 6)
    restored.load_state_dict(narrow_buffer.state_dict())
    assert torch.equal(restored._storage.obs, narrow_buffer._storage.obs)

    before = {name: getattr(narrow_buffer._storage, name).clone() for name in _STORED}
    for bad in (0.5, -1.0, 256.0, float("nan")):
        episodes = random_batch(b=2, seed=9)
        episodes.obs = (episodes.obs.abs() * 40).round()
        episodes.state = (episodes.state > 0).float()
        episodes.state[1, 1, 2] = bad
        with pytest.raises(ValueError, match=r"state_storage='float32'"):
            narrow_buffer.insert(episodes)
    for name in _STORED:  # a refused insert writes nothing
        assert torch.equal(getattr(narrow_buffer._storage, name), before[name]), name
    with pytest.raises(ValueError, match="obs_storage must be one of"):
        dataclasses.replace(SPEC, obs_storage="int8")


def test_acting_one_step_gives_the_full_forward_pass_numbers():
    from resq.nn import MLPAgent, RNNAgent

    for seed, (b, n) in enumerate([(1, 2), (8, 2), (64, 8), (3, 5)]):
        torch.manual_seed(seed)
        for agent in (MLPAgent(n_agents=n, n_actions=6, obs_dim=11), RNNAgent(n_agents=n, n_actions=6, obs_dim=11)):
            obs, prev = torch.randn(b, n, 11), torch.rand(b, n, 6)
            hidden = torch.randn(b, n, agent.hidden_dim) if isinstance(agent, RNNAgent) else agent.initial_state(b)
            with torch.no_grad():
                q, h = agent(obs[:, None], prev[:, None], hidden)
                q_step, h_step = agent.act_step(obs, prev, hidden)
            assert torch.equal(q_step, q[:, 0]) and torch.equal(h_step, h), type(agent).__name__


def test_the_uniform_available_draw_is_torch_multinomials_draw():
    from resq.data.exploration import masked_argmax, uniform_available

    for seed, (b, n, a) in enumerate([(1, 2, 6), (8, 3, 5), (64, 8, 5), (512, 2, 3), (7, 1, 1), (3, 4, 40)]):
        avail = torch.rand(b, n, a, generator=torch.Generator().manual_seed(seed)) < 0.5
        avail[..., seed % a] = True  # every agent has an available action
        avail[0, 0] = False
        avail[0, 0, a - 1] = True  # and one agent exactly one
        ours, theirs = torch.Generator().manual_seed(100 + seed), torch.Generator().manual_seed(100 + seed)
        for _ in range(20):
            expected = torch.multinomial(avail.reshape(b * n, a).float(), 1, generator=theirs).view(b, n)
            assert torch.equal(uniform_available(avail, ours), expected)
        assert torch.equal(ours.get_state(), theirs.get_state())  # the same draws, so the same stream after
        q = torch.randn(b, n, a)
        assert torch.equal(masked_argmax(q, avail), q.masked_fill(~avail, float("-inf")).argmax(-1))
