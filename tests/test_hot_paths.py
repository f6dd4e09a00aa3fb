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
