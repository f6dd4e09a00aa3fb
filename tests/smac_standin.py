"""A stand-in for `smac.env.StarCraft2Env` with its public interface and SPEC.md's get_env_info numbers.

It needs neither smac nor StarCraft II, so CI can drive `envs.SMACEnv` (and its subprocess workers)
through `factory=StandInStarCraft2Env`. The game is scripted so that tests can predict every number:

- copy seeded s ends by `("win", "loss", "timeout")[s % 3]`: a win or a loss after `3 + s % 4` steps,
  a time-out at the map's episode limit (info["episode_limit"] = True, as SMAC reports it);
- the reward of step t is t / 10 (plus 5 on a win); info carries battle_won, dead_allies, dead_enemies;
- agent 0 dies after step 2 (then, as in SMAC, only no-op is available to it); a live agent may stop,
  move, and attack enemy j only when (t + j) is even, so the masks change every step;
- observation row i is [t, last action of agent i, seed, pid of the process running the game,
  1 if torch is loaded in that process, 0...];
  the state is [t, seed, pid, 0...];
- like SMAC, an unavailable action is an error, and so is stepping before reset().
"""

from __future__ import annotations

import os
import sys

import numpy as np

# agents / actions / obs / state / episode limit, as SMAC's get_env_info reports them (SPEC.md)
SMAC_ENV_INFO = {
    "MMM": (10, 16, 160, 290, 150),
    "MMM2": (10, 18, 176, 322, 180),
    "3s_vs_5z": (3, 11, 48, 68, 250),
    "bane_vs_bane": (24, 30, 336, 984, 200),
    "2s_vs_1sc": (2, 7, 17, 27, 300),
    "1c3s5z": (9, 15, 162, 270, 180),
    "2c_vs_64zg": (2, 70, 332, 342, 400),
    "8m_vs_9m": (8, 15, 85, 179, 120),
    "27m_vs_30m": (27, 36, 285, 1170, 180),
    "3s_vs_3z": (3, 9, 36, 54, 150),
    "5m_vs_6m": (5, 12, 55, 98, 70),
}
N_NON_ATTACK = 6  # no-op, stop, north, south, east, west


class StandInStarCraft2Env:
    def __init__(self, map_name: str = "8m_vs_9m", seed: int | None = None, **kwargs) -> None:
        if map_name not in SMAC_ENV_INFO:
            raise ValueError(f"stand-in knows no map {map_name!r}")
        self.map_name = map_name
        self.kwargs = kwargs  # difficulty, reward_scale_rate, ...: accepted as StarCraft2Env accepts them
        self.n_agents, self.n_actions, self.obs_shape, self.state_shape, self.episode_limit = SMAC_ENV_INFO[map_name]
        self.seed = seed or 0
        self.outcome = ("win", "loss", "timeout")[self.seed % 3]
        self.end_step = 3 + self.seed % 4
        self._t = None
        self.closed = False

    def get_env_info(self) -> dict:
        return {"state_shape": self.state_shape, "obs_shape": self.obs_shape, "n_actions": self.n_actions,
                "n_agents": self.n_agents, "episode_limit": self.episode_limit}

    def reset(self):
        self._t = 0
        self._last = np.zeros(self.n_agents, dtype=np.int64)
        return self.get_obs(), self.get_state()

    def _dead(self, i: int) -> bool:
        return i == 0 and self.n_agents > 1 and self._t >= 2

    def get_avail_agent_actions(self, i: int) -> list[int]:
        if self._dead(i):
            return [1] + [0] * (self.n_actions - 1)
        attacks = [int((self._t + j) % 2 == 0) for j in range(self.n_actions - N_NON_ATTACK)]
        return [0, 1, 1, 1, 1, 1] + attacks

    def get_avail_actions(self) -> list[list[int]]:
        return [self.get_avail_agent_actions(i) for i in range(self.n_agents)]

    def step(self, actions):
        if self._t is None:
            raise RuntimeError("step() before reset()")
        actions = [int(a) for a in actions]
        if len(actions) != self.n_agents:
            raise ValueError(f"expected {self.n_agents} actions, got {len(actions)}")
        for i, a in enumerate(actions):
            if not self.get_avail_agent_actions(i)[a]:
                raise AssertionError(f"Agent {i} cannot perform action {a}")
        self._t += 1
        self._last = np.asarray(actions)
        reward, terminated = self._t / 10, False
        info = {"battle_won": False, "dead_allies": int(self._dead(0)), "dead_enemies": 0}
        if self.outcome != "timeout" and self._t == self.end_step:
            terminated = True
            if self.outcome == "win":
                reward += 5.0
                info.update(battle_won=True, dead_enemies=self.n_actions - N_NON_ATTACK)
        if self._t >= self.episode_limit:
            terminated = True
            info["episode_limit"] = True
        return reward, terminated, info

    def get_obs(self) -> list[np.ndarray]:
        rows = []
        for i in range(self.n_agents):
            row = np.zeros(self.obs_shape, dtype=np.float32)
            row[:5] = [self._t, self._last[i], self.seed, os.getpid(), "torch" in sys.modules]
            rows.append(row)
        return rows

    def get_state(self) -> np.ndarray:
        state = np.zeros(self.state_shape, dtype=np.float32)
        state[:3] = [self._t, self.seed, os.getpid()]
        return state

    def close(self) -> None:
        self.closed = True
