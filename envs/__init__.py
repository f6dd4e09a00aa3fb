"""Environments for the suite: one batched torch interface (`BatchedEnv`) and a frozen `EnvSpec`.

Heavy or optional environment packages are imported lazily inside their adapters.
"""

from envs.base import ACTION_KINDS, CONTINUOUS, DISCRETE, BatchedEnv, EnvSpec, TimeStep
from envs.matrix import MatrixGame, payoff_tensor
from envs.mtq import MaxOfTwoQuadratics, max_of_two_quadratics

__all__ = [
    "ACTION_KINDS",
    "CONTINUOUS",
    "DISCRETE",
    "BatchedEnv",
    "EnvSpec",
    "MatrixGame",
    "MaxOfTwoQuadratics",
    "TimeStep",
    "max_of_two_quadratics",
    "payoff_tensor",
]
