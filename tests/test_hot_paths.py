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
