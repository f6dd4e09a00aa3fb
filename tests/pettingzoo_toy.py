"""A tiny PettingZoo-style parallel env whose every number is known, for tests/test_pettingzoo.py.

Agents "a" (obs size 2, 2 actions) and "b" (obs size 3, 4 actions). Each step "a" earns 1 and "b" 10;
observations are [t, last action] (padded with the agent's index for "b"). With end="terminate", "b"
terminates after step 2 and leaves env.agents, "a" terminates after step 4; with end="truncate" both are
truncated after step 3. No state(): the adapter concatenates the observations. Needs only gymnasium's
spaces (installed with pettingzoo).
"""

from __future__ import annotations

import numpy as np
from gymnasium.spaces import Box, Discrete


class ToyParallelEnv:
    def __init__(self, end: str = "terminate", max_cycles: int = 6) -> None:
        self.possible_agents = ["a", "b"]
        self.metadata = {"name": "toy_v0"}
        self.end = end
        self.max_cycles = max_cycles
        self.agents: list[str] = []
        self.seeds: list[int | None] = []

    def observation_space(self, agent):
        return Box(-1e3, 1e3, shape=(2,) if agent == "a" else (3,))

    def action_space(self, agent):
        return Discrete(2 if agent == "a" else 4)

    def _obs(self, agent, action=0):
        return np.array([self.t, action] + ([] if agent == "a" else [7.0]), dtype=np.float32)

    def reset(self, seed=None, options=None):
        self.seeds.append(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return {agent: self._obs(agent) for agent in self.agents}, {agent: {} for agent in self.agents}

    def step(self, actions):
        assert set(actions) == set(self.agents), f"actions for {sorted(actions)}, live agents {self.agents}"
        for agent, action in actions.items():
            assert self.action_space(agent).contains(action), (agent, action)
        self.t += 1
        obs = {agent: self._obs(agent, actions[agent]) for agent in self.agents}
        rewards = {agent: 1.0 if agent == "a" else 10.0 for agent in self.agents}
        if self.end == "terminate":
            terminations = {agent: (agent == "b" and self.t >= 2) or (agent == "a" and self.t >= 4)
                            for agent in self.agents}
            truncations = {agent: False for agent in self.agents}
        else:
            terminations = {agent: False for agent in self.agents}
            truncations = {agent: self.t >= 3 for agent in self.agents}
        self.agents = [a for a in self.agents if not (terminations[a] or truncations[a])]
        return obs, rewards, terminations, truncations, {agent: {} for agent in obs}

    def close(self):
        pass


def parallel_env(**kwargs):
    return ToyParallelEnv(**kwargs)
