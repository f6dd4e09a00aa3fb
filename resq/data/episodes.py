"""Episodes as padded tensors, and the replay buffer that stores them.

This module alone knows the storage layout. An episode batch of B episodes with room for T steps holds

    obs (B, T+1, N, O)   state (B, T+1, S)   avail (B, T+1, N, A)    rows 0..T: what was observed
    actions (B, T, N)    reward (B, T, 1)    terminated (B, T, 1)    rows 0..T-1: what was done
    filled (B, T, 1)     1 where step t was really taken, 0 in the padding after an episode ended

For continuous-action envs (`spec.action_kind == "continuous"`) actions are float (B, T, N, D) and
avail is (B, T+1, N, 1), all True (every action in the box); everything else is the same.

Observation row t is what the agents saw before acting at step t; row t+1 is what followed. Learners
never slice time themselves: `current(x)` gives the rows that predictions use (0..T-1) and
`following(x)` the rows that targets use (1..T), and `prev_actions` (`prev_actions_onehot` for
discrete actions) gives the last-action input the agent network sees at every observation row.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
import torch.nn.functional as F

from envs import EnvSpec, TimeStep


@dataclass
class EpisodeBatch:
    """B padded episodes (shapes in the module docstring) plus counters from the collector."""

    obs: torch.Tensor
    state: torch.Tensor
    avail: torch.Tensor
    actions: torch.Tensor
    reward: torch.Tensor
    terminated: torch.Tensor
    filled: torch.Tensor
    battle_won: torch.Tensor
    info: dict[str, float] = field(default_factory=dict)

    @classmethod
    def empty(cls, spec: EnvSpec, batch_size: int, max_steps: int | None = None, storage: bool = False) -> EpisodeBatch:
        """Zeros for `batch_size` episodes of up to `max_steps` (default: the episode limit); with `storage`
        obs and state take the spec's storage dtypes (the replay buffer), else float32."""
        b, t = batch_size, max_steps or spec.episode_limit
        n = spec.n_agents
        if spec.discrete:
            actions = torch.zeros(b, t, n, dtype=torch.long)
        else:
            actions = torch.zeros(b, t, n, spec.action_dim)
        obs_dtype, state_dtype = (
            (getattr(torch, spec.obs_storage), getattr(torch, spec.state_storage)) if storage else (torch.float32,) * 2
        )
        return cls(
            obs=torch.zeros(b, t + 1, n, spec.obs_dim, dtype=obs_dtype),
            state=torch.zeros(b, t + 1, spec.state_dim, dtype=state_dtype),
            avail=torch.zeros(b, t + 1, n, spec.avail_dim, dtype=torch.bool),
            actions=actions,
            reward=torch.zeros(b, t, 1),
            terminated=torch.zeros(b, t, 1),
            filled=torch.zeros(b, t, 1),
            battle_won=torch.zeros(b, dtype=torch.bool),
        )

    # ---- sizes -------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return self.actions.shape[0]

    @property
    def max_steps(self) -> int:
        return self.actions.shape[1]

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) number of steps taken in each episode."""
        return self.filled[..., 0].sum(1).long()

    @property
    def n_steps(self) -> int:
        return int(self.filled.sum())

    @property
    def returns(self) -> torch.Tensor:
        """(B,) undiscounted episode returns."""
        return (self.reward * self.filled)[..., 0].sum(1)

    # ---- the t / t+1 alignment ----------------------------------------------------------------
    @staticmethod
    def current(x: torch.Tensor) -> torch.Tensor:
        """Observation-aligned (B, T+1, ...) -> rows 0..T-1, where actions were chosen."""
        return x[:, :-1]

    @staticmethod
    def following(x: torch.Tensor) -> torch.Tensor:
        """Observation-aligned (B, T+1, ...) -> rows 1..T, the observations that followed."""
        return x[:, 1:]

    @property
    def mask(self) -> torch.Tensor:
        """(B, T, 1) float: 1 where step t was taken."""
        return self.filled

    @property
    def continuous(self) -> bool:
        """True when the actions are float vectors (B, T, N, D) of a continuous-action env."""
        return self.actions.is_floating_point()

    @property
    def prev_actions_onehot(self) -> torch.Tensor:
        """(B, T+1, N, A): one-hot of the action taken before each observation row; zeros at row 0.

        Computed once per batch (every head of a learner reads it) and recomputed when `actions` is
        replaced or changed in place (its version counter moves)."""
        self._require_discrete("prev_actions_onehot")
        key = (id(self.actions), self.actions._version, self.avail.shape[-1])
        cached = self.__dict__.get("_prev_actions_onehot")
        if cached is not None and cached[0] == key:
            return cached[1]
        onehot = F.one_hot(self.actions, self.avail.shape[-1]).float()  # (B, T, N, A)
        onehot = F.pad(onehot, (0, 0, 0, 0, 1, 0))  # (B, T+1, N, A)
        self.__dict__["_prev_actions_onehot"] = (key, onehot, self.actions)  # holding actions keeps its id unique
        return onehot

    def prev_actions_onehot_at(self, t: int) -> torch.Tensor:
        """(B, N, A): the last-action input at observation row t, for acting step by step (rows of an
        identity matrix made once per batch: F.one_hot's values, without its per-call range checks)."""
        self._require_discrete("prev_actions_onehot_at")
        if t == 0:
            return torch.zeros_like(self.avail[:, 0], dtype=torch.float32)
        eye = self.__dict__.get("_onehot_rows")
        if eye is None:
            eye = self.__dict__["_onehot_rows"] = torch.eye(self.avail.shape[-1])  # (A, A)
        return eye[self.actions[:, t - 1]]

    @property
    def prev_actions(self) -> torch.Tensor:
        """(B, T+1, N, W): the last-action input at every observation row, zeros at row 0: the one-hot
        (W = A) for discrete actions, the action itself (W = D) for continuous ones."""
        if not self.continuous:
            return self.prev_actions_onehot
        return F.pad(self.actions, (0, 0, 0, 0, 1, 0))  # (B, T+1, N, D)

    def prev_actions_at(self, t: int) -> torch.Tensor:
        """(B, N, W): `prev_actions` at observation row t, for acting step by step."""
        if not self.continuous:
            return self.prev_actions_onehot_at(t)
        if t == 0:
            return torch.zeros_like(self.actions[:, 0])
        return self.actions[:, t - 1].clone()

    def _require_discrete(self, name: str) -> None:
        if self.continuous:
            raise TypeError(f"EpisodeBatch.{name}: continuous actions have no one-hot; use prev_actions "
                            f"(the action vectors themselves)")

    # ---- writing, for the collector ------------------------------------------------------------
    def write_observation(self, t: int, step: TimeStep, rows: torch.Tensor | None = None) -> None:
        """Store what the envs showed at observation row t (for `rows`, default all)."""
        rows = slice(None) if rows is None else rows
        self.obs[rows, t] = step.obs[rows]
        self.state[rows, t] = step.state[rows]
        self.avail[rows, t] = step.avail[rows]

    def write_step(self, t: int, actions: torch.Tensor, step: TimeStep, active: torch.Tensor | None = None) -> None:
        """Store step t, the actions taken and what came back (reward, observation row t+1), for the envs
        still `active` (B,) bool (None: every env, written without masks). `filled` and `terminated` are
        written once per batch by `finish`, from where each episode ended."""
        if active is None:  # the common case, written without masks (the same values)
            self.actions[:, t] = actions
            self.reward[:, t, 0] = step.reward
            self.write_observation(t + 1, step)
            if step.battle_won is not None:
                self.battle_won |= step.battle_won
            return
        self.actions[active, t] = actions[active]
        self.reward[:, t] = step.reward[:, None] * active.float()[:, None]
        self.write_observation(t + 1, step, rows=active)
        if step.battle_won is not None:
            self.battle_won |= step.battle_won & active

    def finish(self, lengths: torch.Tensor | None, terminated: torch.Tensor | None) -> None:
        """Write `filled` and `terminated` once the episodes are over, from each one's length (B,) long
        (steps taken) and whether it ended by termination (B,) bool, which sets `terminated` on its last
        step only (a time-limit end is not terminal: the target bootstraps from the row after it).
        lengths None: every episode took all `max_steps` steps (and `terminated` may be None: none did)."""
        if lengths is None:
            self.filled.fill_(1.0)
            if terminated is not None:
                self.terminated[:, -1, 0] = terminated
            return
        self.filled.copy_((torch.arange(self.max_steps) < lengths[:, None])[..., None])  # (B, T, 1)
        self.terminated[torch.arange(self.batch_size), lengths - 1, 0] = terminated.float()

    def select(self, rows) -> EpisodeBatch:
        """The episodes at `rows` (an index tensor or slice), with the same counters."""
        return EpisodeBatch(**{name: getattr(self, name)[rows] for name in _STORED}, info=dict(self.info))

    def clone(self) -> EpisodeBatch:
        """A copy that owns its tensors (e.g. of a view into shared memory that will be overwritten)."""
        return EpisodeBatch(**{name: getattr(self, name).clone() for name in _STORED}, info=dict(self.info))

    def share_memory_(self) -> EpisodeBatch:
        """Move every tensor's storage to shared memory, in place (a forked process then writes what this
        one reads); returns self."""
        for name in _STORED:
            getattr(self, name).share_memory_()
        return self

    def write_into(self, target: EpisodeBatch, rows: slice) -> None:
        """Copy these episodes into `rows` of `target`, a batch with room for at least as many steps (the
        columns after this batch's last step are left as they were)."""
        for name in _STORED:
            value, dst = getattr(self, name), getattr(target, name)[rows]
            if name == "battle_won":
                dst.copy_(value)
            else:
                dst[:, : value.shape[1]].copy_(value)

    def truncate(self, max_steps: int) -> EpisodeBatch:
        """The same episodes with time cut to `max_steps` steps (drops all-padding columns); itself when
        there is nothing to cut."""
        if max_steps == self.max_steps:
            return self
        return EpisodeBatch(
            obs=self.obs[:, : max_steps + 1],
            state=self.state[:, : max_steps + 1],
            avail=self.avail[:, : max_steps + 1],
            actions=self.actions[:, :max_steps],
            reward=self.reward[:, :max_steps],
            terminated=self.terminated[:, :max_steps],
            filled=self.filled[:, :max_steps],
            battle_won=self.battle_won,
            info=dict(self.info),
        )


_STORED = [f.name for f in fields(EpisodeBatch) if f.name != "info"]


class EpisodeBuffer:
    """A ring buffer of whole episodes, preallocated for `capacity` episodes of up to `spec.episode_limit` steps.

    `sample` draws episodes uniformly and cuts time to the longest episode drawn, so short episodes
    do not pay for the padding of the longest possible one. Observations and states are kept in the
    spec's `obs_storage` / `state_storage` dtype (uint8 for small-integer envs) and sampled as float32.
    """

    def __init__(self, spec: EnvSpec, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"buffer capacity must be >= 1 episode, got {capacity}")
        self.spec = spec
        self.capacity = capacity
        self._storage = EpisodeBatch.empty(spec, capacity, storage=True)
        self._next = 0
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def can_sample(self, batch_size: int) -> bool:
        return self._size >= batch_size

    def insert(self, episodes: EpisodeBatch) -> None:
        b = episodes.batch_size
        if b > self.capacity:
            raise ValueError(f"cannot insert {b} episodes into a buffer of capacity {self.capacity}")
        if self._next + b <= self.capacity:  # one block of rows: plain slices, written in place
            idx = slice(self._next, self._next + b)
        else:  # wrapping around the end of the ring
            idx = (torch.arange(b) + self._next) % self.capacity
        for name in ("obs", "state"):  # all checked before anything is written
            if getattr(self._storage, name).dtype == torch.uint8:
                _check_uint8(name, getattr(episodes, name))
        t = episodes.max_steps
        full = t == self.spec.episode_limit  # no padding columns to clear after the episodes
        for name in _STORED:
            src, dst = getattr(episodes, name), getattr(self._storage, name)
            if name == "battle_won":
                dst[idx] = src
            elif src.shape[1] == t + 1:  # observation-aligned
                dst[idx, : t + 1] = src
                if not full:
                    dst[idx, t + 1 :] = 0
            else:  # step-aligned
                dst[idx, :t] = src
                if not full:
                    dst[idx, t:] = 0
        self._next = int((self._next + b) % self.capacity)
        self._size = min(self._size + b, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> EpisodeBatch:
        if not self.can_sample(batch_size):
            raise ValueError(f"buffer holds {self._size} episodes, cannot sample {batch_size}")
        idx = torch.randperm(self._size, generator=generator)[:batch_size]
        # Copy only the columns up to the longest episode drawn (what `select(idx).truncate(t)` keeps).
        t = int(self._storage.filled[idx, :, 0].sum(1).max())
        storage = self._storage
        return EpisodeBatch(
            obs=storage.obs[idx, : t + 1].float(),  # a no-op for float32 storage
            state=storage.state[idx, : t + 1].float(),
            avail=storage.avail[idx, : t + 1],
            actions=storage.actions[idx, :t],
            reward=storage.reward[idx, :t],
            terminated=storage.terminated[idx, :t],
            filled=storage.filled[idx, :t],
            battle_won=storage.battle_won[idx],
        )

    def state_dict(self) -> dict:
        return {
            "next": self._next,
            "size": self._size,
            **{name: getattr(self._storage, name)[: self._size].clone() for name in _STORED},
        }

    def load_state_dict(self, state: dict) -> None:
        self._next, self._size = int(state["next"]), int(state["size"])
        for name in _STORED:
            getattr(self._storage, name)[: self._size] = state[name]


def _check_uint8(name: str, values: torch.Tensor) -> None:
    """Refuse (before anything is written) a value that uint8 storage would change."""
    bad = (values < 0) | (values > 255) | (values != values.round())  # nan fails the last test too
    if bad.any():
        example = values[bad][0].item()
        raise ValueError(
            f"the replay buffer stores {name} as uint8 (EnvSpec.{name}_storage='uint8' promises integers in 0..255) "
            f"but the env produced {name} value {example!r}. Fix the env's EnvSpec: {name}_storage='float32'"
        )
