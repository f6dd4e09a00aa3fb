"""The Max-of-Two-Quadratics (MTQ) differential game (Panait et al. 2007; Wei et al. 2018), as the FOP
paper (`papers/fop_icml2021.md` Sec. 5.1) uses it, batched in torch.

Two agents each pick one bounded continuous action u_i in [-10, 10]; the team receives

    f1 = 0.8 * (-((u1 + 5) / 3)^2 - ((u2 + 5) / 3)^2)
    f2 = 1.0 * (-((u1 - 5) / 1)^2 - ((u2 - 5) / 1)^2) + 10
    r  = max(f1, f2)

times `reward_scale` (0.1 in the FOP paper: "both agents scaled their reward by 0.1"), and the episode
ends. The local optimum 0 at (-5, -5) has a wide basin; the global optimum 10 at (5, 5) a narrow one.
Observations and state are a constant 1: the game has one state, only the joint action matters.
"""

from __future__ import annotations

import math

import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep

#: the global optimum (5, 5) with reward 10, and the local one (-5, -5) with reward 0
GLOBAL_OPTIMUM, LOCAL_OPTIMUM = (5.0, 5.0), (-5.0, -5.0)


def max_of_two_quadratics(actions: torch.Tensor) -> torch.Tensor:
    """The unscaled MTQ reward r(u1, u2) for joint actions (..., 2) -> (...)."""
    if actions.shape[-1] != 2:
        raise ValueError(f"max_of_two_quadratics takes joint actions (..., 2), got shape {tuple(actions.shape)}")
    u1, u2 = actions.unbind(-1)
    f1 = 0.8 * (-((u1 + 5.0) / 3.0) ** 2 - ((u2 + 5.0) / 3.0) ** 2)
    f2 = 1.0 * (-((u1 - 5.0) / 1.0) ** 2 - ((u2 - 5.0) / 1.0) ** 2) + 10.0
    return torch.maximum(f1, f2)


class MaxOfTwoQuadratics(BatchedEnv):
    """B copies of the one-step MTQ game.

    Args:
        n_envs: B, the copies stepped per call.
        reward_scale: multiplies the reward the agents receive (0.1 in the FOP paper).
        action_low, action_high: the box of each agent's action ([-10, 10], the game of Wei et al. 2018).
            Actions outside it are clipped to it before the reward is computed.
        seed: unused (the game is deterministic); accepted like every env's.
    """

    #: the result file a run on this env writes (see `result`)
    result_file = "mtq.json"

    def __init__(self, n_envs: int = 1, reward_scale: float = 0.1, action_low: float = -10.0,
                 action_high: float = 10.0, seed: int = 0) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if not (math.isfinite(reward_scale) and reward_scale > 0):
            raise ValueError(f"env.reward_scale must be a finite number > 0, got {reward_scale}")
        self.n_envs = n_envs
        self.reward_scale = float(reward_scale)
        self.spec = EnvSpec.continuous(n_agents=2, action_dim=1, action_low=action_low, action_high=action_high,
                                       obs_dim=1, state_dim=1, episode_limit=1)
        self._low = torch.tensor(self.spec.action_low)
        self._high = torch.tensor(self.spec.action_high)
        self._done = torch.zeros(n_envs, dtype=torch.bool)

    def _timestep(self, reward: torch.Tensor, done: torch.Tensor) -> TimeStep:
        b = self.n_envs
        return TimeStep(
            obs=torch.ones(b, 2, 1),
            state=torch.ones(b, 1),
            avail=torch.ones(b, 2, 1, dtype=torch.bool),
            reward=reward,
            terminated=done.clone(),
            truncated=torch.zeros(b, dtype=torch.bool),
        )

    def reset(self) -> TimeStep:
        self._done.zero_()
        return self._timestep(torch.zeros(self.n_envs), self._done)

    def step(self, actions: torch.Tensor) -> TimeStep:
        if actions.shape != (self.n_envs, 2, 1) or not actions.is_floating_point():
            raise ValueError(f"MTQ actions must be float with shape {(self.n_envs, 2, 1)}, got "
                             f"{actions.dtype} {tuple(actions.shape)}")
        joint = torch.maximum(torch.minimum(actions[..., 0], self._high), self._low)  # (B, 2)
        reward = self.reward_scale * max_of_two_quadratics(joint).float()  # (B,)
        reward = torch.where(self._done, torch.zeros_like(reward), reward)
        self._done.fill_(True)
        return self._timestep(reward, self._done)

    def result(self, joint_action) -> dict:
        """What `mtq.json` records about a joint action [[u1], [u2]]: the action and its unscaled reward."""
        joint = torch.as_tensor(joint_action, dtype=torch.float64).reshape(2)
        return {
            "joint_action": joint.tolist(),
            "reward": float(max_of_two_quadratics(joint)),
            "reward_scale": self.reward_scale,
            "global_optimum": list(GLOBAL_OPTIMUM),
            "distance_to_global_optimum": float((joint - torch.tensor(GLOBAL_OPTIMUM, dtype=torch.float64)).norm()),
        }
