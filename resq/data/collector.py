"""Runs the current policy in B batched environments and returns whole episodes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import nn

from envs import BatchedEnv
from resq.data.episodes import EpisodeBatch
from resq.data.exploration import full_exploration


class Policy(Protocol):
    """What the collector needs from a learner: a recurrent state and an action per agent.

    Discrete envs: prev_actions_onehot (B, N, A) is the one-hot of the last actions, avail (B, N, A),
    and `act` returns actions (B, N) long. Continuous envs: prev_actions_onehot holds the last actions
    themselves (B, N, D), avail is (B, N, 1) all True, and `act` returns actions (B, N, D) float inside
    the spec's box. `epsilon` is the exploration schedule's value in training rollouts and 0 in
    evaluation rollouts; a policy that is an nn.Module is in train mode for training rollouts and in eval
    mode for evaluation ones (actor-critic learners act greedily / deterministically in eval mode).
    """

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
        """obs (B, N, O), prev_actions_onehot (B, N, W), avail (B, N, A) -> actions, hidden (shapes above)."""
        ...


@contextmanager
def policy_mode(policy: Policy, training: bool) -> Iterator[None]:
    """Put an nn.Module policy in train or eval mode for a rollout, and restore its mode after. (Lightning
    switches modes around its loops, but the rollout of a batch may run before the switch.)"""
    if not isinstance(policy, nn.Module) or policy.training == training:
        yield
        return
    policy.train(training)
    try:
        yield
    finally:
        policy.train(not training)


class EpisodeCollector:
    """Steps `env` with `policy` until every copy's episode has ended (or the episode limit)."""

    def __init__(self, env: BatchedEnv, generator: torch.Generator | None = None) -> None:
        self.env = env
        self.generator = generator

    def collect(self, policy: Policy, epsilon: float, training: bool = True) -> EpisodeBatch:
        """One batch of episodes, with the policy in train (`training`) or eval mode, restored after.

        The rollout runs in inference mode (each small op ~10% cheaper than under no_grad); the batch is
        made before it, so what comes back is ordinary tensors written in place."""
        episodes = EpisodeBatch.empty(self.env.spec, self.env.n_envs)
        with torch.inference_mode(), policy_mode(policy, training):
            return self._collect(policy, epsilon, episodes)

    def _collect(self, policy: Policy, epsilon: float, episodes: EpisodeBatch) -> EpisodeBatch:
        env, spec = self.env, self.env.spec
        step = env.reset()
        episodes.write_observation(0, step)
        hidden = policy.initial_state(env.n_envs)
        active = None  # (B,) bool once some episode has ended and others run on; None while every env runs
        lengths = terminated = None  # (B,) steps taken and whether each ended by termination, once known
        steps = spec.episode_limit
        skip_policy = epsilon >= 1.0 and spec.discrete
        prev = None if skip_policy else episodes.prev_actions_at(0)
        for t in range(spec.episode_limit):
            if skip_policy:
                # Every action is a uniform draw: the policy's forward pass (and its recurrent state, which
                # only serves greedy actions of this rollout) would be thrown away (the matrix-game protocol
                # explores fully throughout).
                actions = full_exploration(step.avail, self.generator)
            else:
                actions, hidden = policy.act(step.obs, prev, step.avail, hidden, epsilon, self.generator)
            step = env.step(actions)
            episodes.write_step(t, actions, step, active)
            done = step.done
            if done.any():  # some episode ended at step t (this step's one host sync)
                if active is None and done.all():  # every episode ended here: the common case, no masks
                    steps, terminated = t + 1, step.terminated
                    break
                if active is None:
                    active = torch.ones(env.n_envs, dtype=torch.bool)
                    lengths = torch.full((env.n_envs,), spec.episode_limit)
                    terminated = torch.zeros(env.n_envs, dtype=torch.bool)
                ended = done & active
                lengths[ended] = t + 1
                terminated |= step.terminated & ended
                active &= ~done
                if not active.any():
                    steps = t + 1
                    break
            if not skip_policy:
                prev = episodes.prev_actions_at(t + 1)
        episodes = episodes.truncate(steps)
        episodes.finish(lengths, terminated)
        return episodes
