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

The copies are stepped at numpy level by `envs.gym_copies.GymCopies`; this class turns its arrays into
torch tensors, one copy per field and step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.gym_copies import (
    GYMMA_INSTALL,
    GymCopies,
    Layout,
    find_state,
    import_env_module,
    make_env,
    split_key,
)
from envs.optional import require
from envs.pettingzoo import find_attribute

__all__ = ["GYMMA_INSTALL", "GymMultiAgentEnv"]


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
        module, env_id = split_key(key)
        if module:
            try:
                import_env_module(key)
            except ImportError as error:
                raise ValueError(f"env.key={key}: cannot import `{module}` ({error})") from error
        elif env_id.startswith("Foraging"):
            require("lbforaging", GYMMA_INSTALL, why=f"env.key={key} is a level-based foraging env.")
        env_kwargs = dict(kwargs or {})
        try:
            envs = [make_env(env_id, env_kwargs) for _ in range(n_envs)]
        except gym.error.Error as error:
            raise ValueError(f"env.key={key}: {error}") from error
        except TypeError as error:
            raise ValueError(f"env.key={key}: the env rejected env.kwargs {env_kwargs}: {error}") from error
        self.key = key
        self.n_envs = n_envs
        first = envs[0]
        obs_spaces = _spaces(first.observation_space, "observation", key)
        action_spaces = _spaces(first.action_space, "action", key)
        for i, space in enumerate(action_spaces):
            if not hasattr(space, "n"):
                raise ValueError(f"env.key={key}: agent {i} has a non-discrete action space {space}")
        obs_sizes = tuple(int(np.prod(space.shape)) for space in obs_spaces)
        n_valid = [int(space.n) for space in action_spaces]
        limit = time_limit
        if limit is None:
            limit = getattr(first.spec, "max_episode_steps", None) or find_attribute(
                first, ("_max_episode_steps", "max_episode_steps"))
        if limit is None:
            raise ValueError(f"env.key={key} has no time limit of its own: set env.time_limit=<steps>")
        state_fn = find_state(first.unwrapped)
        state_dim = sum(obs_sizes)
        if state_fn is not None:
            first.reset(seed=seed)
            state_dim = int(np.asarray(state_fn(), dtype=np.float32).size)
        self.spec = EnvSpec(n_agents=len(obs_spaces), n_actions=max(n_valid), obs_dim=max(obs_sizes),
                            state_dim=state_dim, episode_limit=int(limit))
        n, a = self.spec.n_agents, self.spec.n_actions
        self._layout = Layout(n_envs=n_envs, n_agents=n, obs_dim=self.spec.obs_dim, state_dim=state_dim,
                              obs_sizes=obs_sizes, own_state=state_fn is not None, episode_limit=self.spec.episode_limit)
        valid = torch.zeros(n, a, dtype=torch.bool)
        for i, count in enumerate(n_valid):
            valid[i, :count] = True
        self._avail = valid.expand(n_envs, n, a).contiguous()  # (B, N, A), the same every step
        # Without state(), the state is the observations concatenated: obs (B, N*O) at these columns.
        self._state_columns = None if state_fn is not None or len(set(obs_sizes)) == 1 else np.concatenate(
            [agent * self.spec.obs_dim + np.arange(size) for agent, size in enumerate(obs_sizes)])
        self._memory = bytearray(self._layout.nbytes)
        self._arrays = self._layout.arrays(self._memory)
        self._copies: GymCopies | None = GymCopies(envs, [seed + b for b in range(n_envs)], self._layout, self._arrays)

    def _timestep(self) -> TimeStep:
        """Fresh tensors of the arrays the copies wrote (one copy per field)."""
        arrays = self._arrays
        obs = arrays["obs"].copy()
        if self._layout.own_state:
            state = arrays["state"].copy()
        elif self._state_columns is None:
            state = obs.reshape(self.n_envs, -1).copy()
        else:
            state = obs.reshape(self.n_envs, -1)[:, self._state_columns]
        return TimeStep(obs=torch.from_numpy(obs), state=torch.from_numpy(state), avail=self._avail.clone(),
                        reward=torch.from_numpy(arrays["reward"].copy()),
                        terminated=torch.from_numpy(arrays["terminated"].copy()),
                        truncated=torch.from_numpy(arrays["truncated"].copy()))

    def _live_copies(self) -> GymCopies:
        if self._copies is None:
            raise RuntimeError(f"GymMultiAgentEnv({self.key!r}) is closed")
        return self._copies

    def reset(self) -> TimeStep:
        self._live_copies().reset()
        return self._timestep()

    def step(self, actions: torch.Tensor) -> TimeStep:
        if tuple(actions.shape) != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        copies = self._live_copies()
        self._arrays["actions"][:] = actions.long().numpy()
        copies.step()
        return self._timestep()

    def close(self) -> None:
        if self._copies is not None:
            self._copies.close()
            self._copies = None
