"""Environments for the suite: one batched torch interface (`BatchedEnv`) and a frozen `EnvSpec`.

Names are imported on first use (PEP 562), so `import envs.sc2_worker` in a StarCraft worker process
loads neither torch nor any adapter, and optional environment packages (smac, jax/jaxmarl,
pettingzoo, gymnasium, lbforaging) are imported only when their adapter is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "ACTION_KINDS": "envs.base",
    "CONTINUOUS": "envs.base",
    "DISCRETE": "envs.base",
    "BatchedEnv": "envs.base",
    "EnvSpec": "envs.base",
    "TimeStep": "envs.base",
    "MatrixGame": "envs.matrix",
    "payoff_tensor": "envs.matrix",
    "MaxOfTwoQuadratics": "envs.mtq",
    "max_of_two_quadratics": "envs.mtq",
    "PredatorPrey": "envs.predator_prey",
    "GaussianSqueeze": "envs.qtran_games",
    "ModifiedPredatorPrey": "envs.qtran_games",
    "MissingPackageError": "envs.optional",
    "SMACEnv": "envs.smac",
    "StarCraftUnavailableError": "envs.smac",
    "SMAXEnv": "envs.smax",
    "PettingZooEnv": "envs.pettingzoo",
    "GymMultiAgentEnv": "envs.gymma",
}

__all__ = [
    "ACTION_KINDS",
    "CONTINUOUS",
    "DISCRETE",
    "BatchedEnv",
    "EnvSpec",
    "GaussianSqueeze",
    "GymMultiAgentEnv",
    "MatrixGame",
    "MaxOfTwoQuadratics",
    "MissingPackageError",
    "ModifiedPredatorPrey",
    "PettingZooEnv",
    "PredatorPrey",
    "SMACEnv",
    "SMAXEnv",
    "StarCraftUnavailableError",
    "TimeStep",
    "max_of_two_quadratics",
    "payoff_tensor",
]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'envs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from envs.base import ACTION_KINDS, CONTINUOUS, DISCRETE, BatchedEnv, EnvSpec, TimeStep
    from envs.gymma import GymMultiAgentEnv
    from envs.matrix import MatrixGame, payoff_tensor
    from envs.mtq import MaxOfTwoQuadratics, max_of_two_quadratics
    from envs.optional import MissingPackageError
    from envs.pettingzoo import PettingZooEnv
    from envs.predator_prey import PredatorPrey
    from envs.qtran_games import GaussianSqueeze, ModifiedPredatorPrey
    from envs.smac import SMACEnv, StarCraftUnavailableError
    from envs.smax import SMAXEnv
