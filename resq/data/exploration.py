"""Exploration: epsilon-greedy on a linear schedule over environment steps, and its continuous-action
counterpart (Gaussian noise and uniform draws from the action box)."""

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
    return torch.where(avail, q, float("-inf")).argmax(-1)  # = q.masked_fill(~avail, -inf), one op fewer


def uniform_available(avail: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """A uniform available action per agent (B, N) from avail (B, N, A): exactly
    `torch.multinomial(avail.reshape(B * N, A).float(), 1, generator=generator).view(B, N)`, the same
    draws from `generator` and the same result, computed as torch's CPU multinomial computes a single
    sample, argmax(p / q) with q ~ Exp(1) (an exponential race), without its input checks (a row of
    avail with no available action, which multinomial refuses, gives action 0 here, as masked_argmax
    does). Those checks are ~10 tensor ops and host syncs: half of a small batch's exploration step."""
    b, n, a = avail.shape
    probs = avail.reshape(b * n, a).float()
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return torch.div(probs, race, out=race).argmax(-1).view(b, n)


def epsilon_greedy(
    q: torch.Tensor, avail: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Actions (B, N): greedy on q (B, N, A) except with probability epsilon a uniform available action."""
    return epsilon_uniform(masked_argmax(q, avail), avail, epsilon, generator)


def full_exploration(avail: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """`epsilon_greedy` at epsilon = 1 without utilities: a uniform available action per agent (B, N).

    It draws from `generator` exactly what `epsilon_greedy(q, avail, 1.0, generator)` draws, so a rollout
    gives the same actions whichever of the two made them.
    """
    random = uniform_available(avail, generator)
    torch.rand(avail.shape[:2], generator=generator)  # epsilon_greedy's explore draw, always true at epsilon = 1
    return random


def epsilon_uniform(
    actions: torch.Tensor, avail: torch.Tensor, epsilon: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Discrete `actions` (B, N) (e.g. sampled from a policy), each replaced with probability epsilon by a
    uniform available action (avail (B, N, A)). At epsilon <= 0 the actions come back unchanged."""
    if epsilon <= 0.0:
        return actions
    random = uniform_available(avail, generator)
    explore = torch.rand(avail.shape[:2], generator=generator) < epsilon
    return torch.where(explore, random, actions)


def box_exploration(
    actions: torch.Tensor,
    low: torch.Tensor,
    high: torch.Tensor,
    epsilon: float = 0.0,
    noise_std: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Continuous `actions` (B, N, D) with Gaussian noise of std `noise_std` * (high - low) / 2 added, each
    agent's action replaced with probability epsilon by a uniform draw from the box, then clipped to
    [low, high] (D,)."""
    half_range = (high - low) / 2.0  # (D,)
    if noise_std > 0.0:
        actions = actions + noise_std * half_range * torch.randn(actions.shape, generator=generator)
    if epsilon > 0.0:
        uniform = low + (high - low) * torch.rand(actions.shape, generator=generator)  # (B, N, D)
        explore = torch.rand(actions.shape[:-1], generator=generator) < epsilon  # (B, N)
        actions = torch.where(explore[..., None], uniform, actions)
    return torch.maximum(torch.minimum(actions, high), low)
