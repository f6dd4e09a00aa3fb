"""PettingZoo parallel-API environments as a `BatchedEnv` (B copies stepped in a loop).

`name` is an import path whose module has `parallel_env(**kwargs)`, e.g. "mpe2.simple_spread_v3" or
"pettingzoo.sisl.pursuit_v5". The agents are `possible_agents` in order:

    obs (B, N, O) each agent's observation, flattened (zero-padded to the largest agent's size)
    state (B, S) `state()` flattened (the concatenated observations where the env has no state())
    avail (B, N, A) every action available (these envs give no mask); agents with fewer actions than the
        largest action space get only theirs, agents that terminated (left the episode) only action 0
    reward the team reward: the sum of the agents' rewards
    terminated: an agent terminated and the episode is over      truncated: every agent truncated,
        or `episode_limit` steps passed (bootstrapped)

The episode is over when no agent is left in `env.agents`. A copy whose episode has ended is not
stepped again until `reset()` and keeps returning its last observation with zero reward.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.optional import MissingPackageError

PETTINGZOO_INSTALL = 'pip install -e ".[pettingzoo]"   (pettingzoo[sisl] + mpe2)'


def find_attribute(env: Any, names: tuple[str, ...], depth: int = 6) -> Any:
    """The first of `names` found on env or on the envs it wraps (.env, .aec_env, .unwrapped, .raw_env)."""
    seen, frontier = set(), [env]
    for _ in range(depth):
        following = []
        for candidate in frontier:
            if candidate is None or id(candidate) in seen:
                continue
            seen.add(id(candidate))
            for name in names:
                value = getattr(candidate, name, None)
                if value is not None and not callable(value):
                    return value
            following += [getattr(candidate, inner, None) for inner in ("env", "aec_env", "unwrapped", "raw_env")]
        frontier = following
    return None


def _import_parallel_env(name: str):
    if not isinstance(name, str) or not name:
        raise ValueError(f"env.name must be an import path such as mpe2.simple_spread_v3, got {name!r}")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as error:
        root = name.split(".")[0]
        if error.name is not None and (error.name == root or name.startswith(error.name)):
            if root in ("pettingzoo", "mpe2"):
                raise MissingPackageError(
                    f"env.name={name}: module `{error.name}` is not installed. Install it with:\n"
                    f"    {PETTINGZOO_INSTALL}") from error
            raise ValueError(f"env.name={name}: no module `{error.name}` (is it installed? e.g. "
                             f"mpe2.simple_spread_v3, pettingzoo.sisl.pursuit_v5)") from error
        raise MissingPackageError(
            f"env.name={name} needs the module `{error.name}`, which is not installed. For the presets:\n"
            f"    {PETTINGZOO_INSTALL}") from error
    if not hasattr(module, "parallel_env"):
        raise ValueError(f"env.name={name}: the module has no parallel_env(); give a PettingZoo environment "
                         f"module such as mpe2.simple_spread_v3")
    return module.parallel_env


class PettingZooEnv(BatchedEnv):
    """B copies of a PettingZoo parallel environment with discrete actions.

    Args:
        name: import path of the environment module (it must define `parallel_env`).
        n_envs: B, copies stepped per call.
        seed: copy b is reset with seed + b the first time (later resets continue its generator).
        episode_limit: the time limit in steps; None = the env's own `max_cycles` (an error if it has none).
        kwargs: keyword arguments of `parallel_env` (max_cycles, N, continuous_actions=False, ...).
    """

    def __init__(self, name: str, n_envs: int = 1, seed: int = 0, episode_limit: int | None = None,
                 kwargs: dict[str, Any] | None = None) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        make = _import_parallel_env(name)
        self.name = name
        self.n_envs = n_envs
        env_kwargs = dict(kwargs or {})
        try:
            self.envs = [make(**env_kwargs) for _ in range(n_envs)]
        except TypeError as error:
            raise ValueError(f"env.name={name}: parallel_env rejected env.kwargs {env_kwargs}: {error}") from error
        first = self.envs[0]
        self.agents = list(first.possible_agents)
        spaces = [first.action_space(agent) for agent in self.agents]
        for agent, space in zip(self.agents, spaces):
            if not hasattr(space, "n"):
                raise ValueError(f"env.name={name}: agent {agent} has a non-discrete action space {space}; "
                                 f"this adapter needs Discrete actions (for MPE: env.continuous_actions=false)")
        self._n_valid = [int(space.n) for space in spaces]
        obs_sizes = [int(np.prod(first.observation_space(agent).shape)) for agent in self.agents]
        limit = episode_limit if episode_limit is not None else find_attribute(first, ("max_cycles",))
        if limit is None:
            raise ValueError(f"env.name={name} exposes no max_cycles: set the time limit with env.episode_limit=<steps>")
        self._seeds = [seed + b for b in range(n_envs)]
        state_dim = self._state_size(first, seed)
        self._has_state = state_dim is not None
        self.spec = EnvSpec(
            n_agents=len(self.agents),
            n_actions=max(self._n_valid),
            obs_dim=max(obs_sizes),
            state_dim=state_dim if self._has_state else sum(obs_sizes),
            episode_limit=int(limit),
        )
        b, n, a = n_envs, self.spec.n_agents, self.spec.n_actions
        self._valid = torch.zeros(n, a, dtype=torch.bool)
        for i, count in enumerate(self._n_valid):
            self._valid[i, :count] = True
        self._obs = torch.zeros(b, n, self.spec.obs_dim)
        self._state = torch.zeros(b, self.spec.state_dim)
        self._avail = self._valid.expand(b, n, a).clone()
        self._terminated = torch.zeros(b, dtype=torch.bool)
        self._truncated = torch.zeros(b, dtype=torch.bool)
        self._departed = torch.zeros(b, n, dtype=torch.bool)
        self._t = torch.zeros(b, dtype=torch.long)

    @staticmethod
    def _state_size(env, seed: int) -> int | None:
        """Size of state(), from state_space where the env declares one, else by calling it after a
        reset; None where the env has no state()."""
        if not callable(getattr(env, "state", None)):
            return None
        space = getattr(env, "state_space", None)
        if getattr(space, "shape", None):
            return int(np.prod(space.shape))
        try:
            env.reset(seed=seed)
            return int(np.asarray(env.state()).size)
        except NotImplementedError:
            return None

    def _store(self, b: int, env, obs: dict) -> None:
        rows = np.zeros((self.spec.n_agents, self.spec.obs_dim), dtype=np.float32)
        for i, agent in enumerate(self.agents):
            if agent in obs:
                flat = np.asarray(obs[agent], dtype=np.float32).reshape(-1)
                rows[i, : flat.size] = flat
        self._obs[b] = torch.from_numpy(rows)
        if self._has_state:
            self._state[b] = torch.from_numpy(np.asarray(env.state(), dtype=np.float32).reshape(-1))
        else:
            self._state[b] = torch.from_numpy(np.concatenate(
                [rows[i, : int(np.prod(env.observation_space(agent).shape))] for i, agent in enumerate(self.agents)]))
        # An agent that terminated (left the episode) may only "act" 0, which is ignored; one that was
        # truncated keeps its actions, so that the target bootstraps over them.
        departed = self._departed[b]
        self._avail[b] = self._valid
        self._avail[b, departed] = False
        self._avail[b, departed, 0] = True

    def _timestep(self, reward: torch.Tensor) -> TimeStep:
        return TimeStep(obs=self._obs.clone(), state=self._state.clone(), avail=self._avail.clone(), reward=reward,
                        terminated=self._terminated.clone(), truncated=self._truncated.clone())

    def reset(self) -> TimeStep:
        self._departed.zero_()
        for b, env in enumerate(self.envs):
            seed, self._seeds[b] = self._seeds[b], None
            obs, _ = env.reset(seed=seed)
            self._store(b, env, obs)
        self._terminated.zero_()
        self._truncated.zero_()
        self._t.zero_()
        return self._timestep(torch.zeros(self.n_envs))

    def step(self, actions: torch.Tensor) -> TimeStep:
        if tuple(actions.shape) != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        rows = actions.long().tolist()
        reward = torch.zeros(self.n_envs)
        for b, env in enumerate(self.envs):
            if self._terminated[b] or self._truncated[b]:
                continue
            acting = {agent: rows[b][i] for i, agent in enumerate(self.agents) if agent in env.agents}
            obs, rewards, terminations, truncations, _ = env.step(acting)
            self._t[b] += 1
            reward[b] = float(sum(rewards.values()))
            for i, agent in enumerate(self.agents):
                if terminations.get(agent, False):
                    self._departed[b, i] = True
            self._store(b, env, obs)
            if not env.agents or self._t[b] >= self.spec.episode_limit:
                terminal = any(terminations.get(agent, False) for agent in acting) and not all(
                    truncations.get(agent, False) for agent in acting)
                self._terminated[b] = terminal
                self._truncated[b] = not terminal
        return self._timestep(reward)

    def close(self) -> None:
        for env in self.envs:
            env.close()
