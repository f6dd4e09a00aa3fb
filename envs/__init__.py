"""Environments for the suite: one batched torch interface (`BatchedEnv`) and a frozen `EnvSpec`.

Heavy or optional environment packages are imported lazily inside their adapters.
"""

from envs.base import ACTION_KINDS, CONTINUOUS, DISCRETE, BatchedEnv, EnvSpec, TimeStep
from envs.matrix import MatrixGame, payoff_tensor
from envs.mtq import MaxOfTwoQuadratics, max_of_two_quadratics
from envs.predator_prey import PredatorPrey
from envs.qtran_games import GaussianSqueeze, ModifiedPredatorPrey

__all__ = [
    "ACTION_KINDS",
    "CONTINUOUS",
    "DISCRETE",
    "BatchedEnv",
    "EnvSpec",
    "GaussianSqueeze",
    "MatrixGame",
    "MaxOfTwoQuadratics",
    "ModifiedPredatorPrey",
    "PredatorPrey",
    "TimeStep",
    "max_of_two_quadratics",
    "payoff_tensor",
]
