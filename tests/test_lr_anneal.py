"""The learning-rate anneal every learner shares (lr_final_fraction < 1: linear to that fraction by t_max)."""

from types import SimpleNamespace

import pytest
import torch

from resq.learners.actor_critic import ActorCritic
from resq.learners.evaluation import AnnealedLearningRate
from resq.learners.value_factorization import ValueFactorization


class Annealed(AnnealedLearningRate):
    def __init__(self, fraction, optimizers):
        self.lr_final_fraction = fraction
        self.trainer = SimpleNamespace(optimizers=optimizers)


def batch_at(t_env, t_max=1000.0):
    return SimpleNamespace(info={"t_env": float(t_env), "t_max": t_max})


@pytest.mark.parametrize(("t_env", "expected"), [(0, 1e-3), (500, 0.55e-3), (1000, 1e-4), (3000, 1e-4)])
def test_every_optimizer_falls_linearly_to_the_final_fraction(t_env, expected):
    params = [torch.nn.Parameter(torch.zeros(1))]
    optimizers = [torch.optim.SGD(params, lr=1e-3), torch.optim.Adam(params, lr=1e-3)]
    learner = Annealed(0.1, optimizers)
    learner.on_train_batch_start(batch_at(250), 0)  # an earlier step must not compound
    learner.on_train_batch_start(batch_at(t_env), 0)
    for optimizer in optimizers:
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_a_fraction_of_one_leaves_the_learning_rate_alone():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    Annealed(1.0, [optimizer]).on_train_batch_start(batch_at(900), 0)
    assert optimizer.param_groups[0]["lr"] == 1e-3 and "base_lr" not in optimizer.param_groups[0]


@pytest.mark.parametrize("learner", [ValueFactorization, ActorCritic])
def test_both_learner_families_anneal(learner):
    assert issubclass(learner, AnnealedLearningRate)
