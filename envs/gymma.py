"""Gymnasium multi-agent environments (lbforaging-style) as a `BatchedEnv`: B copies, stepped in this
process or by worker processes in parallel.

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

The copies are stepped at numpy level by `envs.gym_copies.GymCopies`. With `workers=W > 0` they are
split into W + 1 contiguous shares: this process steps the first while W worker processes step the
others in parallel, writing into arrays in shared memory (`envs/gym_worker.py`); this class turns the
arrays into torch tensors, one copy per field and step. The episodes are the same for any number of
workers (copy b is reset with seed + b either way). Workers can only pay off when the env's own step
is much of a step's cost and a core is free for them; with the other core busy (another job) one
worker made lbforaging at 8 copies slower (`docs/performance.md`), hence the default 0. Worker
processes end with `close()`, with the interpreter (a finalizer) or, if this process dies without
either, on their own when their connection to it closes.
"""

from __future__ import annotations

import mmap
import os
import subprocess
import tempfile
import weakref
from multiprocessing.connection import Connection
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
from envs.gym_worker import WorkerConfig, start_worker
from envs.optional import require
from envs.pettingzoo import find_attribute

__all__ = ["GYMMA_INSTALL", "GymMultiAgentEnv", "resolve_workers"]


def _spaces(space, what: str, key: str) -> list:
    spaces = getattr(space, "spaces", None)
    if not isinstance(spaces, (tuple, list)):
        raise TypeError(f"env.key={key}: the {what} space {space} is not a Tuple with one entry per agent; "
                         f"this adapter is for multi-agent gymnasium envs such as lbforaging's")
    return list(spaces)


def resolve_workers(workers: int, n_envs: int) -> int:
    """`env.workers` -> the number of worker processes beside this one: as given, at most n_envs - 1
    (this process always steps a share, so one env never starts a worker)."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"env.workers must be an integer >= 0 (0: step every copy in this process), got {workers!r}")
    return min(workers, n_envs - 1)


class GymMultiAgentEnv(BatchedEnv):
    """B copies of a gymnasium env with per-agent Tuple observation and action spaces.

    Args:
        key: the gymnasium id, e.g. "Foraging-8x8-2p-3f-v3"; "module:id" imports module first
            (lbforaging is imported for ids starting with "Foraging").
        n_envs: B, copies stepped per call.
        seed: copy b is reset with seed + b the first time.
        time_limit: steps per episode; None = the env's own limit (an error if it has none).
        kwargs: keyword arguments of gymnasium.make (the env's constructor arguments).
        workers: worker processes that step shares of the copies in parallel with this process (which
            steps the first share), at most n_envs - 1; 0 = every copy in this process. The episodes are
            the same for any number.
        timeout: seconds to wait for a worker's answer before failing (and closing the workers).
    """

    def __init__(self, key: str, n_envs: int = 1, seed: int = 0, time_limit: int | None = None,
                 kwargs: dict[str, Any] | None = None, workers: int = 0, timeout: float = 300.0) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        n_workers = resolve_workers(workers, n_envs)
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
        # This process's share of the copies (every copy with workers=0); the workers build their own.
        shares = np.array_split(np.arange(n_envs), n_workers + 1)
        try:
            envs = [make_env(env_id, env_kwargs) for _ in shares[0]]
        except gym.error.Error as error:
            raise ValueError(f"env.key={key}: {error}") from error
        except TypeError as error:
            raise ValueError(f"env.key={key}: the env rejected env.kwargs {env_kwargs}: {error}") from error
        self.key = key
        self.n_envs = n_envs
        self.n_workers = n_workers
        self.timeout = float(timeout)
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
        seeds = [seed + b for b in range(n_envs)]
        self._shares = [(int(share[0]), int(share[-1])) for share in shares]  # (first, last) copy of each share
        self._conns: list[Connection] = []
        self._processes: list[subprocess.Popen] = []
        memory_fd = None
        if n_workers == 0:
            self._memory = bytearray(self._layout.nbytes)
        else:  # anonymous shared memory, freed with its last mapping: nothing to leak
            memory_fd = os.memfd_create("resq-gym-copies") if hasattr(os, "memfd_create") else _unlinked_file()
            os.ftruncate(memory_fd, self._layout.nbytes)
            self._memory = mmap.mmap(memory_fd, self._layout.nbytes)
        self._arrays = self._layout.arrays(self._memory)
        self._copies: GymCopies | None = GymCopies(envs, seeds[: len(envs)], self._layout, self._arrays)
        if memory_fd is not None:
            try:
                self._start_workers(memory_fd, env_kwargs, seeds, shares[1:])
            finally:
                os.close(memory_fd)  # the mappings keep the memory

    # ---- worker processes ------------------------------------------------------------------------
    def _start_workers(self, memory_fd: int, env_kwargs: dict[str, Any], seeds: list[int],
                       shares: list[np.ndarray]) -> None:
        self._finalizer = weakref.finalize(self, _shutdown, self._conns, self._processes, 10.0)
        try:
            for share in shares:
                conn, process = start_worker(memory_fd)
                self._conns.append(conn)
                self._processes.append(process)
                conn.send(WorkerConfig(key=self.key, kwargs=env_kwargs, first=int(share[0]),
                                       seeds=tuple(seeds[int(b)] for b in share), layout=self._layout))
        except BaseException:
            self.close()
            raise
        self._wait("start")

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the worker processes (none with workers=0, or once closed)."""
        return [process.pid for process in self._processes]

    def _send(self, request: bytes, what: str) -> None:
        """Send the one-byte `request` to every worker (answered before the next `_wait`)."""
        try:
            for conn in self._conns:
                conn.send_bytes(request)
        except OSError as error:
            self._fail(error, what)

    def _wait(self, what: str) -> None:
        """Wait for every worker's answer. A worker that fails, dies or times out leaves the copies out of
        step with each other: the env is closed and the error raised with the worker's own traceback."""
        try:
            for w, conn in enumerate(self._conns):
                first, last = self._shares[w + 1]
                worker = f"gym worker {w} (copies {first}-{last})"
                if not conn.poll(self.timeout):
                    raise TimeoutError(f"{worker} did not answer {what!r} within {self.timeout:g} s (env.timeout)")
                try:
                    answer = conn.recv_bytes()
                except (EOFError, ConnectionResetError):
                    code = self._processes[w].poll()
                    raise RuntimeError(f"{worker} died (exit code {code}) during {what!r}") from None
                if answer != b"k":
                    raise RuntimeError(f"{worker} failed during {what!r}: {answer[1:].decode(errors='replace')}")
        except (OSError, EOFError, RuntimeError) as error:  # TimeoutError is an OSError
            self._fail(error, what)

    def _fail(self, error: Exception, what: str) -> None:
        self.close()
        raise RuntimeError(f"env.key={self.key}: {error} (the env and its {self.n_workers} gym workers are now "
                           f"closed)") from error

    def _in_step(self, request: bytes, what: str) -> None:
        """reset (b"r") or step (b"s") every copy: the workers' shares in parallel with this process's."""
        if self._copies is None:
            raise RuntimeError(f"GymMultiAgentEnv({self.key!r}) is closed")
        here = self._copies.step if request == b"s" else self._copies.reset
        if not self._conns:
            here()
            return
        self._send(request, what)
        try:
            here()
        except BaseException:
            self.close()  # the workers' copies moved on, this share did not
            raise
        self._wait(what)

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

    def reset(self) -> TimeStep:
        self._in_step(b"r", "reset")
        return self._timestep()

    def step(self, actions: torch.Tensor) -> TimeStep:
        if tuple(actions.shape) != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        self._arrays["actions"][:] = actions.long().numpy()
        self._in_step(b"s", "step")
        return self._timestep()

    def close(self) -> None:
        """Close this process's copies and end the worker processes; closing twice is a no-op."""
        if self._copies is not None:
            self._copies.close()
            self._copies = None
        if self._processes:
            self._finalizer()
            self._conns, self._processes = [], []


def _unlinked_file() -> int:
    """A file descriptor of an already unlinked temporary file (where there is no memfd_create)."""
    with tempfile.TemporaryFile() as file:
        return os.dup(file.fileno())


def _shutdown(conns: list[Connection], processes: list[subprocess.Popen], timeout: float) -> None:
    """Ask every worker to close, wait for it (kill it after `timeout` s), close the connections."""
    for conn in conns:
        try:
            conn.send_bytes(b"c")
        except OSError:
            pass
    for process in processes:
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)
    for conn in conns:
        conn.close()
