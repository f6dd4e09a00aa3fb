"""The batched environment contract every environment in the suite implements.

One call steps B environments at once and returns torch tensors:

    obs    (B, N, O) float     state (B, S) float     avail (B, N, A) bool
    reward (B,) float          terminated (B,) bool   truncated (B,) bool
    battle_won (B,) bool or None (only environments that report wins)

Actions come in one of two kinds, which `EnvSpec.action_kind` states:

    discrete    `step(actions (B, N) long)`, each in 0..n_actions-1; avail (B, N, A) marks the legal ones
    continuous  `step(actions (B, N, D) float)`, each agent's action in the box [action_low, action_high]
                (D = action_dim); avail is (B, N, 1) and all True: every action in the box is allowed

`reset()` returns a `TimeStep` whose reward is zero and whose done flags are False. An environment
whose episode has ended keeps returning its last observation with zero reward until the next
`reset()`; the collector masks those rows, so environments never auto-reset mid-batch.

`terminated` means a true end (no bootstrap); `truncated` means a time limit (bootstrap from the next
state). This module knows torch only: no Lightning, no Hydra, nothing from `resq`.
"""

from __future__ import annotations

import math
import subprocess
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch

DISCRETE, CONTINUOUS = "discrete", "continuous"
ACTION_KINDS = (DISCRETE, CONTINUOUS)
STORAGE_DTYPES = ("float32", "uint8")  # EnvSpec.obs_storage / state_storage


@dataclass(frozen=True)
class EnvSpec:
    """Static facts about an environment, passed explicitly to every network and buffer.

    Discrete envs give `n_actions` (A, per agent). Continuous envs set `action_kind="continuous"`,
    `action_dim` (D, per agent) and the box bounds `action_low`, `action_high` (D floats each, the same
    box for every agent), and leave `n_actions` 0; `EnvSpec.continuous(...)` builds one.

    `obs_storage` and `state_storage` name the dtype the replay buffer keeps observations and states
    in: "float32" (the default) or "uint8" for envs whose every value is an integer in 0..255 (grid
    counts and flags), a quarter of the bytes; the buffer refuses a value that would not survive it and
    hands out float32 either way.
    """

    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    episode_limit: int
    reports_battle_won: bool = False
    action_kind: str = DISCRETE
    action_dim: int = 0
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    obs_storage: str = "float32"
    state_storage: str = "float32"

    def __post_init__(self) -> None:
        for name in ("n_agents", "obs_dim", "state_dim", "episode_limit"):
            _positive_int(name, getattr(self, name))
        for name in ("obs_storage", "state_storage"):
            if getattr(self, name) not in STORAGE_DTYPES:
                raise ValueError(f"EnvSpec.{name} must be one of {STORAGE_DTYPES}, got {getattr(self, name)!r}")
        if self.action_kind == DISCRETE:
            _positive_int("n_actions", self.n_actions)
            if self.action_dim or self.action_low or self.action_high:
                raise ValueError("EnvSpec: a discrete spec takes n_actions only, not action_dim / action_low / "
                                 "action_high (those describe a continuous box)")
        elif self.action_kind == CONTINUOUS:
            _positive_int("action_dim", self.action_dim)
            if self.n_actions != 0:
                raise ValueError(f"EnvSpec: a continuous spec has n_actions 0 (its actions are a box of "
                                 f"action_dim={self.action_dim} floats), got n_actions={self.n_actions}")
            low, high = tuple(map(float, self.action_low)), tuple(map(float, self.action_high))
            if len(low) != self.action_dim or len(high) != self.action_dim:
                raise ValueError(f"EnvSpec: action_low and action_high need action_dim={self.action_dim} "
                                 f"entries each, got {len(low)} and {len(high)}")
            if not all(math.isfinite(lo) and math.isfinite(hi) and lo < hi for lo, hi in zip(low, high)):
                raise ValueError(f"EnvSpec: every bound must be finite with action_low < action_high, "
                                 f"got low={low}, high={high}")
            object.__setattr__(self, "action_low", low)
            object.__setattr__(self, "action_high", high)
        else:
            raise ValueError(f"EnvSpec.action_kind must be one of {ACTION_KINDS}, got {self.action_kind!r}")

    @classmethod
    def continuous(cls, n_agents: int, action_dim: int, action_low, action_high, obs_dim: int,
                   state_dim: int, episode_limit: int, reports_battle_won: bool = False) -> EnvSpec:
        """A continuous-action spec; scalar bounds are repeated over the action_dim entries."""
        def box(bound) -> tuple[float, ...]:
            return tuple(float(bound) for _ in range(action_dim)) if isinstance(bound, (int, float)) else tuple(bound)

        return cls(n_agents=n_agents, n_actions=0, obs_dim=obs_dim, state_dim=state_dim,
                   episode_limit=episode_limit, reports_battle_won=reports_battle_won, action_kind=CONTINUOUS,
                   action_dim=action_dim, action_low=box(action_low), action_high=box(action_high))

    @property
    def discrete(self) -> bool:
        return self.action_kind == DISCRETE

    @property
    def avail_dim(self) -> int:
        """Width of `avail`'s last axis: A for discrete actions, 1 (all True) for continuous ones."""
        return self.n_actions if self.discrete else 1

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Per-agent action shape: () for a discrete index, (D,) for a continuous vector."""
        return () if self.discrete else (self.action_dim,)

    @property
    def action_input_dim(self) -> int:
        """Width of an agent's last-action input: the one-hot (A) or the action itself (D)."""
        return self.n_actions if self.discrete else self.action_dim

    @property
    def n_joint_actions(self) -> int:
        if not self.discrete:
            raise ValueError("a continuous action space has no finite number of joint actions")
        return self.n_actions**self.n_agents

    def describe_actions(self) -> str:
        """One phrase for error messages: 'discrete actions (3 per agent)' or 'continuous actions (...)'."""
        if self.discrete:
            return f"discrete actions ({self.n_actions} per agent)"
        bounds = ", ".join(f"[{lo:g}, {hi:g}]" for lo, hi in zip(self.action_low, self.action_high))
        return f"continuous actions ({self.action_dim} per agent in {bounds})"


def _positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"EnvSpec.{name} must be a positive int, got {value!r}")


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
        """Apply `actions` ((B, N) long, or (B, N, D) float for continuous envs); copies whose episode has
        ended ignore theirs."""

    def state_dict(self) -> dict:
        """The environment's random state for checkpoints: by default the state of every
        `torch.Generator` attribute. Episodes restart at every `reset()`, so that is all a resumed run
        needs; environments with other random state (numpy, subprocesses) override this pair."""
        return {name: g.get_state() for name, g in vars(self).items() if isinstance(g, torch.Generator)}

    def load_state_dict(self, state: dict) -> None:
        for name, g_state in state.items():
            getattr(self, name).set_state(g_state)

    def close(self) -> None:
        """Release processes or sockets (StarCraft II adapters); a no-op by default."""


def shutdown_workers(
    conns: list, processes: list[subprocess.Popen], timeout: float, ask_to_close: Callable[[object], None]
) -> None:
    """Ask every env worker process to close (`ask_to_close(conn)`, its own protocol's message), wait for
    it (kill it after `timeout` s), close the connections. A worker that is gone already is fine."""
    for conn in conns:
        try:
            ask_to_close(conn)
        except (OSError, EOFError):  # BrokenPipeError, ConnectionResetError: the worker went away
            pass
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for conn in conns:
        conn.close()
