"""One-step cooperative matrix games (QTRAN Table 1, ResQ Table 2), batched in torch.

N agents each pick one of A actions; the team receives `payoff[u_1, ..., u_N]` (plus optional
Gaussian noise, the ResQ paper's distributional matrix game) and the episode ends. Observations and
state are a constant 1: the game has one state, so only the joint action matters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep

_EXAMPLE = "env.payoff=[[8,-12,-12],[-12,0,0],[-12,0,7.9]]"


def payoff_tensor(payoff: Sequence) -> torch.Tensor:
    """Validate a nested-list payoff and return it as an (A,) * N float64 tensor (exact config values).

    Every agent must have the same number of actions (the tensor is a hypercube), at least two
    agents and two actions, and every entry a finite number.
    """
    if isinstance(payoff, torch.Tensor):
        table = payoff.detach().to(torch.float64).clone()
    else:
        _check_nested(payoff, path="payoff")
        table = torch.tensor(_to_list(payoff), dtype=torch.float64)
    if table.dim() < 2:
        raise ValueError(
            f"env.payoff must have one axis per agent (at least 2 agents), got a {table.dim()}-d value. "
            f"Example: {_EXAMPLE}"
        )
    if len(set(table.shape)) != 1:
        raise ValueError(
            f"env.payoff must give every agent the same number of actions (a square matrix for 2 agents), "
            f"got shape {tuple(table.shape)}. Example: {_EXAMPLE}"
        )
    if table.shape[0] < 2:
        raise ValueError(f"env.payoff needs at least 2 actions per agent, got shape {tuple(table.shape)}")
    if not torch.isfinite(table).all():
        raise ValueError("env.payoff entries must be finite numbers (no nan or inf)")
    return table


def _to_list(value):
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return [_to_list(v) for v in value]
    return value


def _check_nested(value, path: str) -> None:
    """Walk the nested lists, naming the first ragged row or non-number it meets."""
    if isinstance(value, (str, bytes)):
        raise ValueError(f"env.{path} must be a number or a list, got the string {value!r}. Example: {_EXAMPLE}")
    if hasattr(value, "__iter__"):
        items = list(value)
        if not items:
            raise ValueError(f"env.{path} is empty. Example: {_EXAMPLE}")
        kinds = {hasattr(v, "__iter__") and not isinstance(v, (str, bytes)) for v in items}
        if len(kinds) > 1:
            raise ValueError(f"env.{path} mixes numbers and lists. Example: {_EXAMPLE}")
        if kinds == {True}:
            lengths = [len(list(v)) for v in items]
            if len(set(lengths)) != 1:
                raise ValueError(
                    f"env.{path} has rows of different lengths {lengths}; every row needs one entry per "
                    f"action of the next agent. Example: {_EXAMPLE}"
                )
        for i, v in enumerate(items):
            _check_nested(v, f"{path}[{i}]")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"env.{path} must be a number, got {value!r}. Example: {_EXAMPLE}")
    if not math.isfinite(float(value)):
        raise ValueError(f"env.{path} must be finite, got {value!r}")


class MatrixGame(BatchedEnv):
    """B copies of a one-step matrix game.

    Args:
        payoff: nested list (or tensor) of shape (A,) * N; entry [u_1, ..., u_N] is the team reward.
        n_envs: B, the number of copies stepped per call.
        noise_std: standard deviation of Gaussian noise added to every reward (0 = deterministic).
        seed: seeds the noise generator.
    """

    def __init__(self, payoff: Sequence, n_envs: int = 1, noise_std: float = 0.0, seed: int = 0) -> None:
        self.payoff = payoff_tensor(payoff)
        if noise_std < 0 or not math.isfinite(noise_std):
            raise ValueError(f"env.noise_std must be a finite number >= 0, got {noise_std}")
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.noise_std = float(noise_std)
        self.n_envs = n_envs
        n_agents, n_actions = self.payoff.dim(), self.payoff.shape[0]
        self.spec = EnvSpec(n_agents=n_agents, n_actions=n_actions, obs_dim=1, state_dim=1, episode_limit=1)
        self._generator = torch.Generator().manual_seed(seed)
        self._done = torch.zeros(n_envs, dtype=torch.bool)

    @property
    def optimal_joint_action(self) -> tuple[int, ...]:
        """argmax of the payoff; ties go to the smallest index, as in the ResQ paper."""
        flat = int(torch.argmax(self.payoff.flatten()))
        return tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), self.payoff.shape))

    def _timestep(self, reward: torch.Tensor, done: torch.Tensor) -> TimeStep:
        b, n, a = self.n_envs, self.spec.n_agents, self.spec.n_actions
        return TimeStep(
            obs=torch.ones(b, n, 1),
            state=torch.ones(b, 1),
            avail=torch.ones(b, n, a, dtype=torch.bool),
            reward=reward,
            terminated=done.clone(),
            truncated=torch.zeros(b, dtype=torch.bool),
        )

    def reset(self) -> TimeStep:
        self._done.zero_()
        return self._timestep(torch.zeros(self.n_envs), self._done)

    def step(self, actions: torch.Tensor) -> TimeStep:
        if actions.shape != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        reward = self.payoff[tuple(actions.long().unbind(-1))].float()  # (B,)
        if self.noise_std > 0:
            reward = reward + self.noise_std * torch.randn(self.n_envs, generator=self._generator)
        reward = torch.where(self._done, torch.zeros_like(reward), reward)
        self._done.fill_(True)
        return self._timestep(reward, self._done)
