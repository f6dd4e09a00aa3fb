"""Real SMAC (StarCraft II) as a `BatchedEnv`: B `StarCraft2Env` instances, each in its own process.

Every copy lives in a worker process (a fresh `python -m envs.sc2_worker` on a socket pair, like
pymarl's parallel runner's pipes) that owns one StarCraft II game; the workers step in parallel and
send numpy arrays back, which become torch tensors here.

    obs (B, N, O) = get_obs()      state (B, S) = get_state()      avail (B, N, A) = get_avail_actions()
    reward = SMAC's (scaled) team reward      battle_won = info["battle_won"]
    a time-out (info["episode_limit"]) is `truncated` (bootstrapped); a win or a loss is `terminated`

A copy whose episode has ended is not stepped again until `reset()`: it keeps returning its last
observation with zero reward and its done flags, as `envs.base` requires.

`smac` is installed from its git repository (`pip install "smac @ git+https://github.com/oxwhirl/smac.git"`;
the PyPI package named `smac` is SMAC3, a different project) and needs the StarCraft II binary at
$SC2PATH (default ~/StarCraftII) with the SMAC maps under Maps/SMAC_Maps. Both are checked before any
worker starts, so a run without them stops at once with the fix. Tests inject a stand-in through
`factory` (any picklable callable taking StarCraft2Env's keyword arguments).
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep, shutdown_workers
from envs.optional import MissingPackageError, require
from envs.sc2_worker import starcraft2_env, start_worker
from envs.smax import SMAC_TO_SMAX, smax_config_names

SMAC_INSTALL = 'pip install "smac @ git+https://github.com/oxwhirl/smac.git"   (or: pip install -e ".[smac]")'
SMAC3_WARNING = (
    "The PyPI package named `smac` is SMAC3 (hyperparameter optimisation), not the StarCraft Multi-Agent "
    "Challenge: if `pip show smac` names SMAC3, `pip uninstall smac` first."
)


class StarCraftUnavailableError(RuntimeError):
    """StarCraft II or the SMAC maps are not where SMAC looks for them; the message says what to install."""


def _smax_alternatives(map_name: str) -> str:
    here = SMAC_TO_SMAX.get(map_name)
    same = f" This map runs without StarCraft II as env={here}." if here else ""
    return (f"{same} SMAX maps that run here on the CPU (pip install -e \".[smax]\"): "
            f"{', '.join('env=' + name for name in smax_config_names())}.")


def sc2_path() -> Path:
    """Where SMAC (through pysc2) looks for StarCraft II: $SC2PATH, else ~/StarCraftII."""
    return Path(os.environ.get("SC2PATH") or Path.home() / "StarCraftII").expanduser()


def check_starcraft(map_name: str) -> Path:
    """Raise StarCraftUnavailableError unless StarCraft II and the SMAC map file are installed."""
    root = sc2_path()
    versions = root / "Versions"
    map_file = root / "Maps" / "SMAC_Maps" / f"{map_name}.SC2Map"
    problems = []
    if not versions.is_dir() or not any(versions.glob("Base*")):
        problems.append(f"no StarCraft II installation at {root} (expected {versions}/Base*)")
    if not map_file.is_file():
        problems.append(f"no map file {map_file}")
    if problems:
        raise StarCraftUnavailableError(
            f"SMAC map {map_name!r} cannot start: {'; '.join(problems)}. Install the StarCraft II Linux "
            f"package (SC2.4.10, or 4.6.2 as the ResQ paper) and unpack it at $SC2PATH (now {root}; default "
            f"~/StarCraftII), then put the SMAC maps (SMAC_Maps.zip from the smac repository) under "
            f"$SC2PATH/Maps/SMAC_Maps.{_smax_alternatives(map_name)}"
        )
    return root


def _ask_to_close(conn) -> None:
    conn.send(("close", None))


class SMACEnv(BatchedEnv):
    """B StarCraft II games (SMAC maps), each in its own worker process.

    Args:
        map_name: a SMAC map, e.g. "MMM2", "3s_vs_5z" (as in Maps/SMAC_Maps).
        n_envs: B, games stepped together (one process each).
        seed: copy b is seeded with seed + b.
        factory: builds one game from StarCraft2Env's keyword arguments inside its worker; None = the real
            `smac.env.StarCraft2Env` (after checking that smac, StarCraft II and the map are installed).
            Must be picklable (a module-level class or function, or a functools.partial of one).
        timeout: seconds to wait for a worker's answer (launching StarCraft II is slow) before failing.
        **env_kwargs: passed to StarCraft2Env (difficulty, reward_scale_rate, state_last_action, ...).
    """

    def __init__(
        self,
        map_name: str,
        n_envs: int = 1,
        seed: int = 0,
        factory: Callable[..., Any] | None = None,
        timeout: float = 600.0,
        **env_kwargs: Any,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        if factory is None:
            try:
                require("smac.env", SMAC_INSTALL, why=SMAC3_WARNING)
            except MissingPackageError as error:
                raise MissingPackageError(f"{error}\n{_smax_alternatives(map_name).strip()}") from error
            check_starcraft(map_name)
            factory = starcraft2_env
        self.map_name = map_name
        self.n_envs = n_envs
        self.timeout = float(timeout)
        self._conns, self._processes = [], []
        for b in range(n_envs):
            conn, process = start_worker(factory, {**env_kwargs, "map_name": map_name, "seed": seed + b})
            self._conns.append(conn)
            self._processes.append(process)
        self._finalizer = weakref.finalize(self, shutdown_workers, self._conns, self._processes, 10.0, _ask_to_close)
        info = self._ask_all([("info", None)] * n_envs)[0]
        self.spec = EnvSpec(
            n_agents=int(info["n_agents"]),
            n_actions=int(info["n_actions"]),
            obs_dim=int(info["obs_shape"]),
            state_dim=int(info["state_shape"]),
            episode_limit=int(info["episode_limit"]),
            reports_battle_won=True,
        )
        b, n, a = n_envs, self.spec.n_agents, self.spec.n_actions
        self._obs = torch.zeros(b, n, self.spec.obs_dim)
        self._state = torch.zeros(b, self.spec.state_dim)
        self._avail = torch.zeros(b, n, a, dtype=torch.bool)
        self._terminated = torch.zeros(b, dtype=torch.bool)
        self._truncated = torch.zeros(b, dtype=torch.bool)
        self._won = torch.zeros(b, dtype=torch.bool)
        self._t = torch.zeros(b, dtype=torch.long)

    # ---- worker messaging ------------------------------------------------------------------------
    def _ask_all(self, requests: list[tuple[str, Any] | None]) -> list[Any]:
        """Send request b to worker b (None = skip it), then collect the answers in order. A worker that
        fails, dies or times out leaves the games out of step with each other: the env is closed."""
        if not self._processes:
            raise RuntimeError(f"SMACEnv({self.map_name!r}) is closed")
        try:
            return self._exchange(requests)
        except Exception as error:
            self.close()
            raise RuntimeError(f"{error} (all {self.n_envs} SMAC workers are now closed)") from error

    def _exchange(self, requests: list[tuple[str, Any] | None]) -> list[Any]:
        for conn, request in zip(self._conns, requests):
            if request is not None:
                conn.send(request)
        answers = []
        for b, (conn, request) in enumerate(zip(self._conns, requests)):
            if request is None:
                answers.append(None)
                continue
            if not conn.poll(self.timeout):
                raise TimeoutError(f"SMAC worker {b} ({self.map_name}) did not answer {request[0]!r} "
                                   f"within {self.timeout:.0f} s (env.timeout)")
            try:
                status, payload = conn.recv()
            except EOFError:
                code = self._processes[b].poll()
                raise RuntimeError(f"SMAC worker {b} ({self.map_name}) died (exit code {code}) during "
                                   f"{request[0]!r}") from None
            if status == "error":
                raise RuntimeError(f"SMAC worker {b} ({self.map_name}) failed during {request[0]!r}: {payload}")
            answers.append(payload)
        return answers

    def _timestep(self, reward: torch.Tensor) -> TimeStep:
        return TimeStep(
            obs=self._obs.clone(), state=self._state.clone(), avail=self._avail.clone(), reward=reward,
            terminated=self._terminated.clone(), truncated=self._truncated.clone(), battle_won=self._won.clone(),
        )

    def _store(self, b: int, obs: np.ndarray, state: np.ndarray, avail: np.ndarray) -> None:
        self._obs[b] = torch.from_numpy(obs)
        self._state[b] = torch.from_numpy(state)
        self._avail[b] = torch.from_numpy(avail)

    # ---- BatchedEnv ------------------------------------------------------------------------------
    def reset(self) -> TimeStep:
        for b, (obs, state, avail) in enumerate(self._ask_all([("reset", None)] * self.n_envs)):
            self._store(b, obs, state, avail)
        for flags in (self._terminated, self._truncated, self._won):
            flags.zero_()
        self._t.zero_()
        return self._timestep(torch.zeros(self.n_envs))

    def step(self, actions: torch.Tensor) -> TimeStep:
        if tuple(actions.shape) != (self.n_envs, self.spec.n_agents):
            raise ValueError(f"actions must have shape {(self.n_envs, self.spec.n_agents)}, got {tuple(actions.shape)}")
        live = ~(self._terminated | self._truncated)
        rows = actions.long().tolist()
        answers = self._ask_all([("step", rows[b]) if live[b] else None for b in range(self.n_envs)])
        reward = torch.zeros(self.n_envs)
        for b, answer in enumerate(answers):
            if answer is None:
                continue
            r, ended, info, obs, state, avail = answer
            self._store(b, obs, state, avail)
            self._t[b] += 1
            reward[b] = r
            time_out = bool(info.get("episode_limit", False)) or (not ended and self._t[b] >= self.spec.episode_limit)
            self._truncated[b] = time_out
            self._terminated[b] = ended and not time_out
            self._won[b] = bool(info.get("battle_won", False))
        return self._timestep(reward)

    def close(self) -> None:
        if self._processes:
            self._finalizer()
            self._conns, self._processes = [], []
