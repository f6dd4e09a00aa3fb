"""Epsilon-greedy exploration on a linear schedule over environment steps."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class LinearSchedule:
    """epsilon(t) goes linearly from `start` to `finish` over `anneal_steps` env steps, then stays."""

    start: float = 1.0
    finish: float = 0.05
    anneal_steps: int = 100_000

    def __post_init__(self) -> None:
        for name in ("start", "finish"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"exploration.epsilon_{name} must be in [0, 1], got {value}")
        if self.anneal_steps < 0:
            raise ValueError(f"exploration.epsilon_anneal_steps must be >= 0, got {self.anneal_steps}")

    def __call__(self, t_env: int) -> float:
        if self.anneal_steps == 0:
            return self.finish
        if t_env >= self.anneal_steps:
            return self.finish
        return self.start + max(t_env, 0) / self.anneal_steps * (self.finish - self.start)


def masked_argmax(q: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
    """Greedy actions (..., N) from utilities (..., N, A), never choosing an unavailable action.

    Ties go to the smallest action index (the ResQ paper's convention; torch.argmax does this).
    """
    return q.masked_fill(~avail, float("-inf")).argmax(-1)


def epsilon_greedy(
    q: torch.Tensor, avail: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Actions (B, N): greedy on q (B, N, A) except with probability epsilon a uniform available action."""
    greedy = masked_argmax(q, avail)
    if epsilon <= 0.0:
        return greedy
    b, n, a = avail.shape
    random = torch.multinomial(avail.reshape(b * n, a).float(), 1, generator=generator).view(b, n)
    explore = torch.rand(b, n, generator=generator) < epsilon
    return torch.where(explore, random, greedy)


def full_exploration(avail: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`epsilon_greedy` at epsilon = 1 without utilities: a uniform available action per agent (B, N).

    It draws from `generator` exactly what `epsilon_greedy(q, avail, 1.0, generator)` draws, so a rollout
    gives the same actions whichever of the two made them.
    """
    b, n, a = avail.shape
    random = torch.multinomial(avail.reshape(b * n, a).float(), 1, generator=generator).view(b, n)
    torch.rand(b, n, generator=generator)  # epsilon_greedy's explore draw, always true at epsilon = 1
    return random
