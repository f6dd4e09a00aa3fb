"""Small environments and policies that make the tests' expectations easy to compute by hand."""

from __future__ import annotations

import os
import signal

import torch

from envs import BatchedEnv, EnvSpec, MatrixGame, TimeStep
from resq.data.episodes import EpisodeBatch


class CountingEnv(BatchedEnv):
    """Env b runs `lengths[b]` steps. obs = state = t (the step index) for every agent; reward at step t
    is t + 1 + 10 * (sum of actions); the end is terminal, or a time limit (truncated) where
    `lengths[b] == limit` and `truncate_at_limit`. All actions are available except the last action of
    agent 0, so masking is visible."""

    def __init__(self, lengths: list[int], limit: int = 6, n_agents: int = 2, n_actions: int = 3,
                 truncate_at_limit: bool = True, n_envs: int | None = None, seed: int = 0) -> None:
        self.lengths = torch.tensor(lengths)
        self.n_envs = len(lengths)
        self.limit = limit
        self.truncate_at_limit = truncate_at_limit
        self.spec = EnvSpec(n_agents=n_agents, n_actions=n_actions, obs_dim=1, state_dim=1, episode_limit=limit)
        self.t = torch.zeros(self.n_envs, dtype=torch.long)

    def _step(self, reward, terminated, truncated) -> TimeStep:
        b, n, a = self.n_envs, self.spec.n_agents, self.spec.n_actions
        avail = torch.ones(b, n, a, dtype=torch.bool)
        avail[:, 0, -1] = False
        return TimeStep(obs=self.t.float()[:, None, None].expand(b, n, 1).clone(), state=self.t.float()[:, None],
                        avail=avail, reward=reward, terminated=terminated, truncated=truncated)

    def reset(self) -> TimeStep:
        self.t.zero_()
        zeros = torch.zeros(self.n_envs, dtype=torch.bool)
        return self._step(torch.zeros(self.n_envs), zeros, zeros)

    def step(self, actions: torch.Tensor) -> TimeStep:
        live = self.t < self.lengths
        reward = torch.where(live, self.t.float() + 1 + 10 * actions.sum(-1).float(), torch.zeros(self.n_envs))
        self.t = torch.where(live, self.t + 1, self.t)
        ended = self.t >= self.lengths
        at_limit = self.lengths >= self.limit
        truncated = ended & at_limit & self.truncate_at_limit
        return self._step(reward, ended & ~truncated, truncated)


class CyclePolicy:
    """Deterministic: agent i at observation row t plays (t + i) mod A (or action 0 if unavailable)."""

    def __init__(self, n_agents: int, n_actions: int) -> None:
        self.n_agents, self.n_actions = n_agents, n_actions
        self.t = 0

    def initial_state(self, batch_size: int):
        self.t = 0

    def act(self, obs, prev_actions_onehot, avail, hidden, epsilon, generator):
        b = obs.shape[0]
        actions = (torch.arange(self.n_agents) + self.t).remainder(self.n_actions).expand(b, -1).clone()
        actions = torch.where(avail.gather(-1, actions[..., None])[..., 0], actions, torch.zeros_like(actions))
        self.t += 1
        return actions, hidden


class NaNRewardGame(MatrixGame):
    """A matrix game whose rewards turn to nan after `nan_after` env steps, to exercise the NaN guard."""

    def __init__(self, payoff, nan_after: int, n_envs: int = 1, noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(payoff, n_envs=n_envs, noise_std=noise_std, seed=seed)
        self.nan_after = nan_after
        self.steps = 0

    def step(self, actions: torch.Tensor) -> TimeStep:
        out = super().step(actions)
        self.steps += self.n_envs
        if self.steps > self.nan_after:
            out.reward = torch.full_like(out.reward, float("nan"))
        return out


# A small spec for learner tests: 3 agents, 4 actions, padded episodes of up to 4 steps.
SPEC = EnvSpec(n_agents=3, n_actions=4, obs_dim=5, state_dim=6, episode_limit=4)


def random_batch(b: int = 5, t: int = 4, seed: int = 0, spec: EnvSpec = SPEC) -> EpisodeBatch:
    """Random episodes of `spec`: episode 0 is padded after step 2 and terminates at step 1; agent 0's
    action 1 is never available (and never taken)."""
    g = torch.Generator().manual_seed(seed)
    batch = EpisodeBatch.empty(spec, b, t)
    batch.obs.normal_(generator=g)
    batch.state.normal_(generator=g)
    batch.avail.fill_(True)
    batch.avail[:, :, 0, 1] = False
    batch.actions.random_(0, spec.n_actions, generator=g)
    batch.actions[..., 0] = torch.where(batch.actions[..., 0] == 1, 0, batch.actions[..., 0])
    batch.reward.normal_(generator=g)
    batch.filled.fill_(1.0)
    batch.filled[0, 2:] = 0
    batch.terminated[0, 1] = 1
    return batch


class InterruptOnceGame(MatrixGame):
    """A matrix game that interrupts its run once: after `after` env steps of the training env whose
    seed is `on_seed`, if the file `marker` does not exist yet, it creates it and then SIGKILLs its own
    process (`how="sigkill"`) or raises (`how="raise"`). A re-run finds the marker and plays on, so
    it exercises resuming; the rewards are MatrixGame's, so its numbers equal an uninterrupted run's."""

    def __init__(self, payoff, after: int, marker: str, on_seed: int = 0, how: str = "sigkill",
                 n_envs: int = 1, noise_std: float = 0.0, seed: int = 0) -> None:
        super().__init__(payoff, n_envs=n_envs, noise_std=noise_std, seed=seed)
        self.after, self.marker, self.how, self.armed = after, marker, how, seed == on_seed
        self.steps = 0

    def step(self, actions: torch.Tensor) -> TimeStep:
        self.steps += self.n_envs
        if self.armed and self.steps > self.after and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            if self.how == "sigkill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"interrupted on purpose after {self.after} env steps")
        return super().step(actions)
