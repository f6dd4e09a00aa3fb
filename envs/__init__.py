"""Environments for the suite: one batched torch interface (`BatchedEnv`) and a frozen `EnvSpec`.

Heavy or optional environment packages are imported lazily inside their adapters.
"""

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.matrix import MatrixGame, payoff_tensor
from envs.predator_prey import PredatorPrey
from envs.qtran_games import GaussianSqueeze, ModifiedPredatorPrey

__all__ = [
    "BatchedEnv", "EnvSpec", "GaussianSqueeze", "MatrixGame", "ModifiedPredatorPrey", "PredatorPrey", "TimeStep",
    "payoff_tensor",
]
