"""Environments for the suite: one batched torch interface (`BatchedEnv`) and a frozen `EnvSpec`.

Heavy or optional environment packages are imported lazily inside their adapters.
"""

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.matrix import MatrixGame, payoff_tensor

__all__ = ["BatchedEnv", "EnvSpec", "MatrixGame", "TimeStep", "payoff_tensor"]
