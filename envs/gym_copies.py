"""Copies of a gymnasium multi-agent env stepped at numpy level: the part of `envs.GymMultiAgentEnv`
that touches the gymnasium envs.

`GymCopies` steps its copies with actions read from a numpy array and writes what came back into numpy
arrays (obs, state, reward, done flags) laid out by `Layout`; `GymMultiAgentEnv` turns those arrays
into torch tensors, one copy per field and step. Per copy and step that is the env's own step plus a
few numpy writes: no torch indexing, no per-step warnings context, no wrapper layers that do nothing
(`step_function`).

This module imports numpy and (when an env is built) gymnasium only, never torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

import numpy as np

GYMMA_INSTALL = 'pip install -e ".[lbf]"   (or: pip install "lbforaging>=2,<3" "gymnasium>=1,<2")'


def split_key(key: str) -> tuple[str, str]:
    """"module:id" -> (module, id); a plain id -> ("", id)."""
    module, _, env_id = key.rpartition(":") if ":" in key else ("", "", key)
    return module, env_id


def import_env_module(key: str) -> str:
    """Import what registers `key` ("module:id": the module; lbforaging for "Foraging*" ids); returns the id.
    Raises ImportError (the caller words the message)."""
    module, env_id = split_key(key)
    if module:
        importlib.import_module(module)
    elif env_id.startswith("Foraging"):
        importlib.import_module("lbforaging")
    return env_id


def make_env(env_id: str, kwargs: dict[str, Any]):
    import gymnasium

    return gymnasium.make(env_id, disable_env_checker=True, **kwargs)


def find_state(env) -> Any:
    """The env's own `state()` / `get_state()`, or None."""
    for name in ("state", "get_state"):
        fn = getattr(env, name, None)
        if callable(fn):
            return fn
    return None


def step_function(env) -> Any:
    """`env.unwrapped.step` when the only wrappers are gymnasium's OrderEnforcing (what `gymnasium.make`
    adds with the env checker off): that wrapper only refuses a step before the first reset, which
    `GymCopies` never does, and calling through it costs ~8 us of lbforaging's ~80 us step. Any other
    wrapper may change what a step returns, so then the wrapped `env.step`."""
    import gymnasium

    order_enforcing = getattr(gymnasium.wrappers, "OrderEnforcing", None)
    layer = env
    while isinstance(layer, gymnasium.Wrapper):
        if order_enforcing is None or type(layer) is not order_enforcing:
            return env.step
        layer = layer.env
    return layer.step


@dataclass(frozen=True)
class Layout:
    """Sizes of the numpy arrays `GymCopies` writes: B copies of N agents, observations padded to O."""

    n_envs: int
    n_agents: int
    obs_dim: int
    state_dim: int
    obs_sizes: tuple[int, ...]
    own_state: bool  # the env has state(): the state array is written; else the state is the observations
    episode_limit: int

    def arrays(self, buffer) -> dict[str, np.ndarray]:
        """actions (B, N) int64, obs (B, N, O) float32, state (B, S) float32, reward (B,) float32,
        terminated and truncated (B,) bool, as views of `buffer` (at least `nbytes` long)."""
        out, offset = {}, 0
        for name, shape, dtype in self._fields():
            count = int(np.prod(shape))
            out[name] = np.frombuffer(buffer, dtype=dtype, count=count, offset=offset).reshape(shape)
            offset += _aligned(count * np.dtype(dtype).itemsize)
        return out

    @property
    def nbytes(self) -> int:
        return sum(_aligned(int(np.prod(shape)) * np.dtype(dtype).itemsize) for _, shape, dtype in self._fields())

    def _fields(self) -> list[tuple[str, tuple[int, ...], Any]]:
        b, n = self.n_envs, self.n_agents
        return [("actions", (b, n), np.int64), ("obs", (b, n, self.obs_dim), np.float32),
                ("state", (b, self.state_dim), np.float32), ("reward", (b,), np.float32),
                ("terminated", (b,), np.bool_), ("truncated", (b,), np.bool_)]


def _aligned(nbytes: int) -> int:
    return (nbytes + 63) // 64 * 64


class GymCopies:
    """Copies `first .. first + len(envs) - 1` of the env, writing rows `first ..` of `arrays`.

    `reset()` resets every copy (copy b with seed `seeds[b - first]` the first time, unseeded after);
    `step()` steps every copy whose episode has not ended with its row of `arrays["actions"]`. A copy
    whose episode has ended keeps its last observation, zero reward and its done flags. The team reward
    is the sum of the agents' rewards (numpy's sum, as `np.sum(rewards)`); an end at the time limit is
    `truncated`, another end `terminated`.
    """

    def __init__(self, envs: list, seeds: list[int], layout: Layout, arrays: dict[str, np.ndarray], first: int = 0) -> None:
        rows = slice(first, first + len(envs))
        self.envs = envs
        self.layout = layout
        self._seeds: list[int | None] = list(seeds)
        self._step = [step_function(env) for env in envs]
        self._state = [find_state(env.unwrapped) for env in envs] if layout.own_state else None
        self.actions, self.obs, self.state = arrays["actions"][rows], arrays["obs"][rows], arrays["state"][rows]
        self.reward, self.terminated, self.truncated = arrays["reward"][rows], arrays["terminated"][rows], arrays["truncated"][rows]
        self._agents = list(enumerate(layout.obs_sizes))  # (agent, its observation's size)
        self._t = [0] * len(envs)
        self._ended = [False] * len(envs)
        self._started = False

    def _write(self, i: int, obs) -> None:
        rows = self.obs[i]
        for agent, size in self._agents:
            o = obs[agent]
            rows[agent, :size] = o if getattr(o, "ndim", 0) == 1 else np.ravel(o)
        if self._state is not None:
            self.state[i] = np.ravel(np.asarray(self._state[i](), dtype=np.float32))

    def reset(self) -> None:
        for i, env in enumerate(self.envs):
            seed, self._seeds[i] = self._seeds[i], None
            obs, _ = env.reset(seed=seed)
            self._write(i, obs)
        self.reward[:] = 0.0
        self.terminated[:] = False
        self.truncated[:] = False
        self._t = [0] * len(self.envs)
        self._ended = [False] * len(self.envs)
        self._started = True

    def step(self) -> None:
        if not self._started:
            raise RuntimeError("GymCopies.step() before the first reset()")
        rows = self.actions.tolist()
        limit = self.layout.episode_limit
        stepped, rewards = [], []
        for i, step in enumerate(self._step):
            if self._ended[i]:
                continue
            obs, reward, terminated, truncated, _ = step(tuple(rows[i]))
            self._t[i] += 1
            self._write(i, obs)
            terminated = terminated if terminated.__class__ is bool else bool(np.all(terminated))
            truncated = truncated if truncated.__class__ is bool else bool(np.all(truncated))
            truncated = truncated or self._t[i] >= limit
            terminated = terminated and not truncated
            self.terminated[i], self.truncated[i] = terminated, truncated
            self._ended[i] = terminated or truncated
            stepped.append(i)
            rewards.append(reward)
        self.reward[:] = 0.0
        if stepped:
            # One numpy sum over the copies' reward rows: each row is summed as np.sum(row) would (the
            # reduction runs along the contiguous last axis), in the rewards' own dtype.
            self.reward[stepped] = np.asarray(rewards).reshape(len(stepped), -1).sum(axis=1)

    def close(self) -> None:
        for env in self.envs:
            env.close()


