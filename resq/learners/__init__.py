"""LightningModules: one per genuinely different training step."""

from resq.learners.actor_critic import ActorCritic
from resq.learners.distributional import DistributionalValueFactorization
from resq.learners.errors import IncompatibleComponentsError, NonFiniteLossError
from resq.learners.maddpg import MADDPG
from resq.learners.nqmix import NQMIX
from resq.learners.qtran import QTRAN
from resq.learners.value_factorization import ValueFactorization

__all__ = [
    "MADDPG",
    "NQMIX",
    "QTRAN",
    "ActorCritic",
    "DistributionalValueFactorization",
    "IncompatibleComponentsError",
    "NonFiniteLossError",
    "ValueFactorization",
]
