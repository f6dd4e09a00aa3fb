"""Each update of the deterministic-policy actor-critic methods (MADDPG, FacMADDPG, NQMIX, NQMIX-M) reduces
its own loss on a fixed batch, discrete and continuous. (FOP, COMA and DOP have theirs in their own files,
with their temperature and on-policy specifics.)"""

import pytest
import torch

from tests.ac_helpers import build, fixed_batch, loss_before_and_after


@pytest.mark.parametrize("algorithm", ["maddpg", "facmaddpg", "nqmix", "nqmix_m"])
@pytest.mark.parametrize("env", ["matrix_qtran", "mtq"])
@pytest.mark.parametrize("name", ["critic", "actor"])
def test_each_update_reduces_its_own_loss_on_a_fixed_batch(algorithm, env, name):
    torch.manual_seed(0)
    learner, datamodule = build(algorithm, env)
    batch = fixed_batch(learner, datamodule)
    before, after = loss_before_and_after(learner, batch, name)
    assert after < before - 1e-3 * abs(before), (before, after)
