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
