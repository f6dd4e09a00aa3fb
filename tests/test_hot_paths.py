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


def plain_collect(env, policy, epsilon: float, generator: torch.Generator):
    """The collector written plainly (what `EpisodeCollector` did before its shortcuts): every step writes
    every field through the `active` mask, the last-action input is F.one_hot of the stored actions."""
    import torch.nn.functional as F

    from resq.data.episodes import EpisodeBatch

    spec, b = env.spec, env.n_envs
    episodes = EpisodeBatch.empty(spec, b)
    step = env.reset()
    episodes.obs[:, 0], episodes.state[:, 0], episodes.avail[:, 0] = step.obs, step.state, step.avail
    hidden, active, last_t = policy.initial_state(b), torch.ones(b, dtype=torch.bool), spec.episode_limit - 1
    for t in range(spec.episode_limit):
        if spec.discrete:
            prev = (torch.zeros(b, spec.n_agents, spec.n_actions) if t == 0
                    else F.one_hot(episodes.actions[:, t - 1], spec.n_actions).float())
        else:
            prev = torch.zeros_like(episodes.actions[:, 0]) if t == 0 else episodes.actions[:, t - 1].clone()
        actions, hidden = policy.act(step.obs, prev, step.avail, hidden, epsilon, generator)
        step = env.step(actions)
        act = active.float()[:, None]
        episodes.actions[active, t] = actions[active]
        episodes.reward[:, t] = step.reward[:, None] * act
        episodes.terminated[:, t] = step.terminated.float()[:, None] * act
        episodes.filled[:, t] = act
        episodes.obs[active, t + 1] = step.obs[active]
        episodes.state[active, t + 1] = step.state[active]
        episodes.avail[active, t + 1] = step.avail[active]
        if step.battle_won is not None:
            episodes.battle_won |= step.battle_won & active
        active = active & ~step.done
        if not active.any():
            last_t = t
            break
    return episodes.truncate(last_t + 1)


def collector_cases():
    from functools import partial

    from envs import MatrixGame, PredatorPrey, payoff_tensor
    from resq.learners import ValueFactorization
    from resq.nn import MLPAgent, QMixer, RNNAgent
    from tests.helpers import CountingEnv, CyclePolicy

    def learner(spec, agent):
        torch.manual_seed(0)
        return ValueFactorization(spec, agent=agent, main_function=QMixer, optimizer=torch.optim.RMSprop)

    counting = partial(CountingEnv, [3, 6, 1, 6, 4], truncate_at_limit=True)
    return [
        ("cycle policy, unequal ends", counting, lambda spec: CyclePolicy(2, 3), 0.0),
        ("RNN learner, unequal ends", counting, lambda spec: learner(spec, RNNAgent), 0.3),
        ("MLP learner, all at the limit", partial(CountingEnv, [6, 6, 6]), lambda spec: learner(spec, MLPAgent), 0.5),
        ("MLP learner, all terminated at once", partial(CountingEnv, [4, 4, 4]), lambda spec: learner(spec, MLPAgent),
         0.5),
        ("RNN learner, a one-step matrix game", partial(MatrixGame, payoff_tensor([[8, -12], [-12, 0]]), n_envs=8),
         lambda spec: learner(spec, RNNAgent), 0.5),
        ("RNN learner, predator-prey", partial(PredatorPrey, n_envs=6, seed=3),
         lambda spec: learner(spec, RNNAgent), 0.2),
    ]


def test_the_collector_gives_the_plain_collectors_episodes():
    from resq.data import EpisodeCollector
    from resq.data.episodes import _STORED

    for name, make_env, make_policy, epsilon in collector_cases():
        episodes = {}
        for how in ("collector", "plain"):
            env = make_env()
            policy, g = make_policy(env.spec), torch.Generator().manual_seed(5)
            runs = []
            for _ in range(3):  # consecutive rollouts: the env and generator state carry over
                if how == "collector":
                    runs.append(EpisodeCollector(env, g).collect(policy, epsilon))
                else:
                    with torch.no_grad():
                        runs.append(plain_collect(env, policy, epsilon, g))
            episodes[how] = runs
        for ours, plain in zip(episodes["collector"], episodes["plain"]):
            for field in _STORED:
                assert torch.equal(getattr(ours, field), getattr(plain, field)), (name, field)
                # the rollout ran in inference mode, but what it returns is ordinary tensors (version counters,
                # in-place writes: the learners' caches and the buffer need both)
                assert not getattr(ours, field).is_inference(), (name, field)
            assert (ours.filled.sum() < ours.filled.numel()) == ("unequal" in name), name


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


def test_td_lambda_returns_in_numpy_equal_the_torch_loop():
    from resq.nn.returns import td_lambda_returns

    for seed, (b, t, k) in enumerate([(32, 50, 1), (8, 200, 1), (4, 7, 3), (1, 1, 1), (16, 2, 2)]):
        g = torch.Generator().manual_seed(seed)
        reward, value = 10 * torch.randn(b, t, k, generator=g), 5 * torch.randn(b, t, k, generator=g)
        terminated = (torch.rand(b, t, 1, generator=g) < 0.05).float()
        mask = (torch.rand(b, t, 1, generator=g) < 0.9).float().cummin(1).values  # episodes of different lengths
        for dtype in (torch.float32, torch.float64):
            args = [x.to(dtype) for x in (reward, terminated, mask, value)]
            for td_lambda in (0.6, 1.0, 0.3):
                fast = td_lambda_returns(*args, 0.99, td_lambda)  # no input needs a gradient: numpy
                plain = td_lambda_returns(args[0].clone().requires_grad_(True), *args[1:], 0.99, td_lambda)  # torch
                assert fast.dtype == plain.dtype and torch.equal(fast, plain.detach()), (seed, dtype, td_lambda)
