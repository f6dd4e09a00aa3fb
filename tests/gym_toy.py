"""A tiny gymnasium multi-agent env whose every number is known, for tests/test_lbf.py; importing this
module registers it as "ToyMultiAgent-v0", so `GymMultiAgentEnv("tests.gym_toy:ToyMultiAgent-v0")`
works in worker processes too (they import the module named before the colon). Needs only gymnasium.

Two agents (obs sizes 1 and 2, 2 and 3 actions) with a state() of its own; both finish after 3 steps,
terminated (a list per agent) unless `truncate`, in which case the env truncates itself. With
`fail_at=k` the k-th step of an episode raises (for worker error handling), in every copy, or with
`fail_seed=s` only in the copy first reset with seed s (copy s of a GymMultiAgentEnv with seed 0).
"""

from __future__ import annotations

import gymnasium
import numpy as np


class ToyMultiAgent(gymnasium.Env):
    def __init__(self, truncate: bool = False, fail_at: int | None = None, fail_seed: int | None = None):
        self.truncate = truncate
        self.fail_at, self.fail_seed, self.first_seed = fail_at, fail_seed, None
        self.observation_space = gymnasium.spaces.Tuple((gymnasium.spaces.Box(0, 9, (1,)),
                                                         gymnasium.spaces.Box(0, 9, (2,))))
        self.action_space = gymnasium.spaces.Tuple((gymnasium.spaces.Discrete(2), gymnasium.spaces.Discrete(3)))

    def _obs(self):
        return (np.array([self.t], dtype=np.float32), np.array([self.t, 5], dtype=np.float32))

    def state(self):
        return np.array([100 + self.t, 1, 2], dtype=np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if self.first_seed is None:
            self.first_seed = seed
        self.t = 0
        return self._obs(), {}

    def step(self, actions):
        self.t += 1
        if self.t == self.fail_at and self.fail_seed in (None, self.first_seed):
            raise ArithmeticError(f"the toy env fails at step {self.t} on purpose")
        end = self.t >= 3
        return self._obs(), [1.0, 2.0], [end and not self.truncate] * 2, end and self.truncate, {}


if "ToyMultiAgent-v0" not in gymnasium.registry:
    gymnasium.register(id="ToyMultiAgent-v0", entry_point=ToyMultiAgent)


class ToyWithoutState(ToyMultiAgent):
    """The same without a state(): the adapter's state is the observations concatenated."""

    state = None


if "ToyMultiAgentNoState-v0" not in gymnasium.registry:
    gymnasium.register(id="ToyMultiAgentNoState-v0", entry_point=ToyWithoutState)
