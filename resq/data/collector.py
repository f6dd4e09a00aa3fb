"""Runs the current policy in B batched environments and returns whole episodes."""

from __future__ import annotations

from typing import Any, Protocol

import torch

from envs import BatchedEnv
from resq.data.episodes import EpisodeBatch
from resq.data.exploration import full_exploration


class Policy(Protocol):
    """What the collector needs from a learner: a recurrent state and an action per agent."""

    def initial_state(self, batch_size: int) -> Any: ...

    def act(
        self,
        obs: torch.Tensor,
        prev_actions_onehot: torch.Tensor,
        avail: torch.Tensor,
        hidden: Any,
        epsilon: float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, Any]:
        """obs (B, N, O), prev_actions_onehot (B, N, A), avail (B, N, A) -> actions (B, N) long, hidden."""
        ...


class EpisodeCollector:
    """Steps `env` with `policy` until every copy's episode has ended (or the episode limit)."""

    def __init__(self, env: BatchedEnv, generator: torch.Generator | None = None) -> None:
        self.env = env
        self.generator = generator

    @torch.no_grad()
    def collect(self, policy: Policy, epsilon: float) -> EpisodeBatch:
        env, spec = self.env, self.env.spec
        episodes = EpisodeBatch.empty(spec, env.n_envs)
        step = env.reset()
        episodes.write_observation(0, step)
        hidden = policy.initial_state(env.n_envs)
        active = torch.ones(env.n_envs, dtype=torch.bool)
        last_t = spec.episode_limit - 1
        for t in range(spec.episode_limit):
            if epsilon >= 1.0:
                # Every action is a uniform draw: the policy's forward pass (and its recurrent state, which
                # only serves greedy actions of this rollout) would be thrown away (the matrix-game protocol
                # explores fully throughout).
                actions = full_exploration(step.avail, self.generator)
            else:
                actions, hidden = policy.act(
                    step.obs, episodes.prev_actions_onehot_at(t), step.avail, hidden, epsilon, self.generator
                )
            step = env.step(actions)
            episodes.write_transition(t, actions, step, active)
            episodes.write_observation(t + 1, step, rows=active)
            active = active & ~step.done
            if not active.any():
                last_t = t
                break
        return episodes.truncate(last_t + 1)
