"""Gymnasium multi-agent environments (lbforaging-style) as a `BatchedEnv` (B copies in a loop).

These envs are ordinary gymnasium envs whose observation and action spaces are Tuples with one entry
per agent (lbforaging 2.x registers e.g. "Foraging-8x8-2p-3f-v3" when `lbforaging` is imported):

    obs (B, N, O) each agent's observation, flattened (zero-padded to the largest)
    state (B, S) the env's own `state()` / `get_state()` if it has one, else the concatenated observations
    avail (B, N, A) every action available (lbforaging replaces an invalid action by NONE itself)
    reward the team reward: the sum of the agents' rewards
    terminated / truncated: as the env reports them, except that an end at the time limit is `truncated`
        (bootstrapped): lbforaging reports its own step limit as `terminated`

`time_limit` defaults to the env's own limit (its gymnasium spec, or lbforaging's max_episode_steps).
The one case that rule mislabels is an episode that truly ends on exactly its last allowed step (say the
last food collected at step 50): it is bootstrapped from a state where nothing is left to collect.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

import numpy as np
import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.optional import require
from envs.pettingzoo import find_attribute

GYMMA_INSTALL = 'pip install -e ".[lbf]"   (or: pip install "lbforaging>=2,<3" "gymnasium>=1,<2")'


def _spaces(space, what: str, key: str) -> list:
    spaces = getattr(space, "spaces", None)
    if not isinstance(spaces, (tuple, list)):
        raise TypeError(f"env.key={key}: the {what} space {space} is not a Tuple with one entry per agent; "
                         f"this adapter is for multi-agent gymnasium envs such as lbforaging's")
    return list(spaces)


class GymMultiAgentEnv(BatchedEnv):
    """B copies of a gymnasium env with per-agent Tuple observation and action spaces.

    Args:
        key: the gymnasium id, e.g. "Foraging-8x8-2p-3f-v3"; "module:id" imports module first
            (lbforaging is imported for ids starting with "Foraging").
        n_envs: B, copies stepped per call.
        seed: copy b is reset with seed + b the first time.
        time_limit: steps per episode; None = the env's own limit (an error if it has none).
        kwargs: keyword arguments of gymnasium.make (the env's constructor arguments).
    """

    def __init__(self, key: str, n_envs: int = 1, seed: int = 0, time_limit: int | None = None,
                 kwargs: dict[str, Any] | None = None) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        gym = require("gymnasium", GYMMA_INSTALL)
        module, _, env_id = key.rpartition(":") if ":" in key else ("", "", key)
        if module:
            try:
                importlib.import_module(module)
            except ImportError as error:
                raise ValueError(f"env.key={key}: cannot import `{module}` ({error})") from error
        elif env_id.startswith("Foraging"):
            require("lbforaging", GYMMA_INSTALL, why=f"env.key={key} is a level-based foraging env.")
        env_kwargs = dict(kwargs or {})
        try:
            self.envs = [gym.make(env_id, disable_env_checker=True, **env_kwargs) for _ in range(n_envs)]
        except gym.error.Error as error:
            raise ValueError(f"env.key={key}: {error}") from error
        except TypeError as error:
            raise ValueError(f"env.key={key}: the env rejected env.kwargs {env_kwargs}: {error}") from error
        self.key = key
        self.n_envs = n_envs
        first = self.envs[0]
        obs_spaces = _spaces(first.observation_space, "observation", key)
        action_spaces = _spaces(first.action_space, "action", key)
        for i, space in enumerate(action_spaces):
            if not hasattr(space, "n"):
                raise ValueError(f"env.key={key}: agent {i} has a non-discrete action space {space}")
        self._obs_sizes = [int(np.prod(space.shape)) for space in obs_spaces]
        n_valid = [int(space.n) for space in action_spaces]
        limit = time_limit
        if limit is None:
            limit = getattr(first.spec, "max_episode_steps", None) or find_attribute(
                first, ("_max_episode_steps", "max_episode_steps"))
        if limit is None:
            raise ValueError(f"env.key={key} has no time limit of its own: set env.time_limit=<steps>")
        self._state_fns = [self._find_state(env.unwrapped) for env in self.envs]
        state_dim = sum(self._obs_sizes)
        if self._state_fns[0] is not None:
            first.reset(seed=seed)
            state_dim = int(np.asarray(self._state_fns[0](), dtype=np.float32).size)
        self.spec = EnvSpec(n_agents=len(obs_spaces), n_actions=max(n_valid), obs_dim=max(self._obs_sizes),
                            state_dim=state_dim, episode_limit=int(limit))
        b, n, a = n_envs, self.spec.n_agents, self.spec.n_actions
        self._valid = torch.zeros(n, a, dtype=torch.bool)
        for i, count in enumerate(n_valid):
            self._valid[i, :count] = True
        self._seeds: list[int | None] = [seed + b for b in range(n_envs)]
        self._obs = torch.zeros(b, n, self.spec.obs_dim)
        self._state = torch.zeros(b, self.spec.state_dim)
        self._terminated = torch.zeros(b, dtype=torch.bool)
        self._truncated = torch.zeros(b, dtype=torch.bool)
        self._t = torch.zeros(b, dtype=torch.long)

    @staticmethod
    def _find_state(env):
        for name in ("state", "get_state"):
            fn = getattr(env, name, None)
            if callable(fn):
                return fn
        return None

    def _store(self, b: int, obs) -> None:
        rows = np.zeros((self.spec.n_agents, self.spec.obs_dim), dtype=np.float32)
        for i, o in enumerate(obs):
            flat = np.asarray(o, dtype=np.float32).reshape(-1)
            rows[i, : flat.size] = flat
        self._obs[b] = torch.from_numpy(rows)
        if self._state_fns[b] is not None:
            self._state[b] = torch.from_numpy(np.asarray(self._state_fns[b](), dtype=np.float32).reshape(-1))
        else:
            self._state[b] = torch.from_numpy(np.concatenate([rows[i, :size] for i, size in enumerate(self._obs_sizes)]))

    def _timestep(self, reward: torch.Tensor) -> TimeStep:
        avail = self._valid.expand(self.n_envs, -1, -1).clone()
        return TimeStep(obs=self._obs.clone(), state=self._state.clone(), avail=avail, reward=reward,
                        terminated=self._terminated.clone(), truncated=self._truncated.clone())

    def reset(self) -> TimeStep:
        for b, env in enumerate(self.envs):
            seed, self._seeds[b] = self._seeds[b], None
            obs, _ = env.reset(seed=seed)
            self._store(b, obs)
        self._terminated.zero_()
        self._truncated.zero_()
        self._t.zero_()
        return self._timestep(torch.zeros(self.n_envs))

    def step(self, actions: torch.Tensor) -> TimeStep:
        if tuple(actions.shape) != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        rows = actions.long().tolist()
        reward = torch.zeros(self.n_envs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # gymnasium's per-call space checks on tuple rewards
            for b, env in enumerate(self.envs):
                if self._terminated[b] or self._truncated[b]:
                    continue
                obs, rewards, terminated, truncated, _ = env.step(tuple(rows[b]))
                self._t[b] += 1
                reward[b] = float(np.sum(rewards))
                self._store(b, obs)
                terminated, truncated = bool(np.all(terminated)), bool(np.all(truncated))
                at_limit = bool(self._t[b] >= self.spec.episode_limit)
                self._truncated[b] = truncated or at_limit
                self._terminated[b] = terminated and not self._truncated[b]
        return self._timestep(reward)

    def close(self) -> None:
        for env in self.envs:
            env.close()
