"""The batched environment contract every environment in the suite implements.

One call steps B environments at once and returns torch tensors:

    obs    (B, N, O) float     state (B, S) float     avail (B, N, A) bool
    reward (B,) float          terminated (B,) bool   truncated (B,) bool
    battle_won (B,) bool or None (only environments that report wins)

`reset()` returns a `TimeStep` whose reward is zero and whose done flags are False. An environment
whose episode has ended keeps returning its last observation with zero reward until the next
`reset()`; the collector masks those rows, so environments never auto-reset mid-batch.

`terminated` means a true end (no bootstrap); `truncated` means a time limit (bootstrap from the next
state). This module knows torch only: no Lightning, no Hydra, nothing from `resq`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class EnvSpec:
    """Static facts about an environment, passed explicitly to every network and buffer."""

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int
    reports_battle_won: bool = False

    def __post_init__(self) -> None:
        for name in ("n_agents", "n_actions", "obs_dim", "state_dim", "episode_limit"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"EnvSpec.{name} must be a positive int, got {value!r}")

    @property
    def n_joint_actions(self) -> int:
        return self.n_actions**self.n_agents


@dataclass
class TimeStep:
    """What B environments return from `reset()` or `step()`; shapes in the module docstring."""

    obs: torch.Tensor
    state: torch.Tensor
    avail: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    battle_won: torch.Tensor | None = None

    @property
    def done(self) -> torch.Tensor:
        return self.terminated | self.truncated


class BatchedEnv(ABC):
    """B copies of one environment stepped together. Subclasses set `spec` and `n_envs`."""

    spec: EnvSpec
    n_envs: int

    @abstractmethod
    def reset(self) -> TimeStep:
        """Start a new episode in every copy."""

    @abstractmethod
    def step(self, actions: torch.Tensor) -> TimeStep:
        """Apply `actions` (B, N) long; copies whose episode has ended ignore theirs."""

    def state_dict(self) -> dict:
        """The environment's random state for checkpoints: by default the state of every
        `torch.Generator` attribute. Episodes restart at every `reset()`, so that is all a resumed run
        needs; environments with other random state (numpy, subprocesses) override this pair."""
        return {name: g.get_state() for name, g in vars(self).items() if isinstance(g, torch.Generator)}

    def load_state_dict(self, state: dict) -> None:
        for name, g_state in state.items():
            getattr(self, name).set_state(g_state)

    def close(self) -> None:  # noqa: B027 - optional hook, most envs hold no resources
        """Release processes or sockets (StarCraft II adapters); a no-op by default."""
