"""LightningModules: one per genuinely different training step."""

from resq.learners.distributional import DistributionalValueFactorization
from resq.learners.errors import IncompatibleComponentsError, NonFiniteLossError
from resq.learners.qtran import QTRAN
from resq.learners.value_factorization import ValueFactorization

__all__ = [
    "QTRAN",
    "DistributionalValueFactorization",
    "IncompatibleComponentsError",
    "NonFiniteLossError",
    "ValueFactorization",
]
