"""The QTRAN paper's games (Son et al., ICML 2019, Sec. 4.1), batched in torch.

`GaussianSqueeze` covers Gaussian Squeeze (K = 1 domain) and Multi-domain Gaussian Squeeze (K = 2);
`ModifiedPredatorPrey` is the paper's modified predator-prey (MPP). The paper leaves the details to
its supplementary material, which we do not have; each class says where the paper is silent and
what we chose (mostly the facts of the authors' public code, github.com/Sonkyunghwan/QTRAN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.grid import MOVES, Board, permutations, pick_uniform


def _check_number(name: str, value, low: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"env.{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ValueError(f"env.{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"env.{name} must be an int >= {low}, got {value!r}")
    return value


class GaussianSqueeze(BatchedEnv):
    """(Multi-domain) Gaussian Squeeze, one step per episode.

    Paper: ten agents; agent i picks u_i in {0, ..., 9}; each has a unit-level resource s_i in [0, 0.2]
    "given by the environment a priori"; x(u) = sum_i s_i u_i and the team reward is
    G(u) = sum_k x exp(-(x - mu_k)^2 / sigma_k^2) over the K domains.

    Where the paper is silent (our choices, from the authors' code):
    - s_i ~ U[0, resource_max] is drawn anew for every episode (the code: U[0, 2] divided by the 10
      agents, i.e. U[0, 0.2]); MGS uses the same draws as GS, so its reward is never below GS's.
    - Every agent observes the whole vector s (the code feeds s to every agent, with its id); the state
      is s too.
    - Domains (mu_k, sigma_k): GS (8, 0.5); MGS (5, 1) and (8, 0.5), the code's values (it writes the
      denominators sigma^2 = 0.25 and 1). The "pitfall" x = 5 then pays about 5, the optimum x = 8
      about 8 (the paper: "only half as rewarding").
    - The code's agents have 11 actions (0..10); we follow the paper's 0..9.

    Args:
        n_envs: B. seed: seeds the resource draws.
        domains: [[mu_1, sigma_1], ...], K >= 1 pairs with sigma > 0.
        n_agents, n_actions: 10, 10 (u_i in 0..n_actions-1).
        resource_max: the upper end of s_i's range (0.2).
    """

    def __init__(
        self,
        n_envs: int = 1,
        seed: int = 0,
        domains: Sequence[Sequence[float]] = ((8.0, 0.5),),
        n_agents: int = 10,
        n_actions: int = 10,
        resource_max: float = 0.2,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.n_envs = n_envs
        pairs = [list(d) for d in domains] if not isinstance(domains, (str, bytes)) else []
        if not pairs or any(len(d) != 2 for d in pairs):
            raise ValueError(f"env.domains must be a non-empty list of [mu, sigma] pairs, e.g. [[5,1],[8,0.5]]; got {domains!r}")
        self.mu = torch.tensor([_check_number(f"domains[{k}][0] (mu)", d[0]) for k, d in enumerate(pairs)])
        self.sigma = torch.tensor([_check_number(f"domains[{k}][1] (sigma)", d[1], 0.0, strict=True)
                                   for k, d in enumerate(pairs)])
        self.resource_max = _check_number("resource_max", resource_max, 0.0, strict=True)
        n_agents, n_actions = _check_int("n_agents", n_agents, 1), _check_int("n_actions", n_actions, 2)
        self.spec = EnvSpec(n_agents=n_agents, n_actions=n_actions, obs_dim=n_agents, state_dim=n_agents, episode_limit=1)
        self._generator = torch.Generator().manual_seed(seed)
        self.resources = torch.zeros(n_envs, n_agents)  # (B, N) s_i
        self.done = torch.ones(n_envs, dtype=torch.bool)

    def reward(self, actions: torch.Tensor, resources: torch.Tensor) -> torch.Tensor:
        """G(u) (B,) for actions (B, N) and resources s (B, N)."""
        x = (resources * actions.float()).sum(-1, keepdim=True)  # (B, 1)
        return (x * torch.exp(-((x - self.mu) ** 2) / self.sigma**2)).sum(-1)  # (B,)

    def _timestep(self, reward: torch.Tensor, terminated: torch.Tensor) -> TimeStep:
        b, n, a = self.n_envs, self.spec.n_agents, self.spec.n_actions
        return TimeStep(
            obs=self.resources[:, None, :].expand(b, n, n).clone(),
            state=self.resources.clone(),
            avail=torch.ones(b, n, a, dtype=torch.bool),
            reward=reward,
            terminated=terminated,
            truncated=torch.zeros(b, dtype=torch.bool),
        )

    def reset(self) -> TimeStep:
        self.resources = torch.rand(self.n_envs, self.spec.n_agents, generator=self._generator) * self.resource_max
        self.done = torch.zeros(self.n_envs, dtype=torch.bool)
        return self._timestep(torch.zeros(self.n_envs), self.done.clone())

    def step(self, actions: torch.Tensor) -> TimeStep:
        shape = (self.n_envs, self.spec.n_agents)
        if tuple(actions.shape) != shape:
            raise ValueError(f"actions must have shape {shape}, got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or ((actions < 0) | (actions >= self.spec.n_actions)).any():
            raise ValueError(f"actions must be integer resource levels in 0..{self.spec.n_actions - 1}")
        reward = torch.where(self.done, 0.0, self.reward(actions, self.resources))
        self.done = torch.ones(self.n_envs, dtype=torch.bool)
        return self._timestep(reward, self.done.clone())


@dataclass
class MPPNoise:
    """The random draws of one MPP step: predator_order (B, N), prey_order (B, P) (move orders),
    prey_action (B, P) long in 0..4 (each prey's move: right, down, left, up, stay) and respawn (B, P)
    in [0, 1) (a caught prey j reappears on the floor(u * k)-th of the k free cells, row-major)."""

    predator_order: torch.Tensor
    prey_order: torch.Tensor
    prey_action: torch.Tensor
    respawn: torch.Tensor


class ModifiedPredatorPrey(BatchedEnv):
    """QTRAN's modified predator-prey (MPP).

    Paper: N predators hunt prey on a grid; a prey is "caught" by a predator that has it within its
    observation horizon. The team gets +1 when two or more predators catch a prey at the same time,
    and -P when only one does; a prey caught by more than one predator reappears at a random
    position. N = 2 with one prey or N = 4 with two; P in {0.5, 1, 1.5}; a fixed 100 steps.

    Where the paper is silent (our choices; facts from the authors' code unless said otherwise):
    - Grid 5x5 for N = 2 and 7x7 for N = 4 (the code's run scripts), bounded.
    - "Within the observation horizon" = on one of the 4 cells next to the prey (the code's test).
    - Actions: right, down, left, up, stay, always available (moves into a wall do nothing).
    - Prey move uniformly at random over the same 5 actions (the code's prey policy).
    - Each step predators move one at a time in a random order, then the prey in a random order; a
      move onto a wall or an occupied cell is not made. (The code moves entities in index order and
      lets a blocked mover wait for the entity in its way; we use the stag hunt's random-order rule.)
    - After the moves, every prey with at least 2 adjacent predators pays +1 and respawns on a
      uniformly random free cell (prey in index order); every prey with exactly one pays -P.
    - Observation of every agent = state = all positions, (row - size/2) / size and
      (col - size/2) / size, predators then prey: 2 (N + P) values (the code's fully observed input).
    - The 100-step end is a time limit (truncated, bootstrapped): nothing in the state marks time.

    Args:
        n_envs: B. seed: seeds placements and every random draw.
        n_predators, n_prey, grid_size, penalty (P >= 0), catch_reward (1), episode_limit (100).
    """

    n_actions = 5

    def __init__(
        self,
        n_envs: int = 1,
        seed: int = 0,
        n_predators: int = 2,
        n_prey: int = 1,
        grid_size: int = 5,
        penalty: float = 0.5,
        catch_reward: float = 1.0,
        episode_limit: int = 100,
    ) -> None:
        if n_envs < 1:
            raise ValueError(f"n_envs must be >= 1, got {n_envs}")
        self.n_envs = n_envs
        self.n_predators = _check_int("n_predators", n_predators, 1)
        self.n_prey = _check_int("n_prey", n_prey, 1)
        size = _check_int("grid_size", grid_size, 2)
        if n_predators + n_prey >= size * size:
            raise ValueError(f"env.n_predators + env.n_prey = {n_predators + n_prey} need a free cell to spare on "
                             f"the {size}x{size} grid; use a larger env.grid_size")
        self.shape = (size, size)
        self.penalty = _check_number("penalty", penalty, 0.0)
        self.catch_reward = _check_number("catch_reward", catch_reward)
        n_entities = n_predators + n_prey
        self.spec = EnvSpec(n_agents=n_predators, n_actions=self.n_actions, obs_dim=2 * n_entities,
                            state_dim=2 * n_entities, episode_limit=_check_int("episode_limit", episode_limit, 1))
        self.board = Board(self.shape, border=1)
        self._generator = torch.Generator().manual_seed(seed)
        self.predator_cells = torch.zeros(n_envs, n_predators, dtype=torch.long)  # (B, N) board cells
        self.prey_cells = torch.zeros(n_envs, n_prey, dtype=torch.long)  # (B, P)
        self.t = torch.zeros(n_envs, dtype=torch.long)
        self.done = torch.ones(n_envs, dtype=torch.bool)

    @property
    def predators(self) -> torch.Tensor:
        """(B, N, 2) (row, col) of every predator."""
        return self.board.rowcol(self.predator_cells)

    @property
    def prey(self) -> torch.Tensor:
        """(B, P, 2) (row, col) of every prey."""
        return self.board.rowcol(self.prey_cells)

    def reset(self) -> TimeStep:
        cells = self.board.random_cells(self.n_envs, self.n_predators + self.n_prey, self._generator)
        self.predator_cells, self.prey_cells = cells[:, : self.n_predators].clone(), cells[:, self.n_predators :].clone()
        self.t = torch.zeros(self.n_envs, dtype=torch.long)
        self.done = torch.zeros(self.n_envs, dtype=torch.bool)
        return self._timestep(torch.zeros(self.n_envs), self.done.clone())

    def place(self, predators: torch.Tensor, prey: torch.Tensor) -> TimeStep:
        """Start every copy's episode from given (row, col) positions, (N, 2) / (P, 2) or batched (B, N, 2)."""
        b, size = self.n_envs, self.shape[0]
        predators = torch.as_tensor(predators, dtype=torch.long).expand(b, self.n_predators, 2)
        prey = torch.as_tensor(prey, dtype=torch.long).expand(b, self.n_prey, 2)
        everything = torch.cat([predators, prey], 1)
        if ((everything < 0) | (everything >= size)).any():
            raise ValueError(f"positions must lie on the {size}x{size} grid")
        cells = self.board.cell(everything)  # (B, N+P)
        if (self.board.occupancy((cells, torch.ones_like(cells, dtype=torch.bool))) > 1).any():
            raise ValueError("two entities share a cell")
        self.predator_cells, self.prey_cells = cells[:, : self.n_predators].clone(), cells[:, self.n_predators :].clone()
        self.t = torch.zeros(b, dtype=torch.long)
        self.done = torch.zeros(b, dtype=torch.bool)
        return self._timestep(torch.zeros(b), self.done.clone())

    def sample_noise(self) -> MPPNoise:
        """The draws of the next step, from the env's generator."""
        b, g = self.n_envs, self._generator
        return MPPNoise(
            predator_order=permutations(b, self.n_predators, g),
            prey_order=permutations(b, self.n_prey, g),
            prey_action=torch.randint(len(MOVES), (b, self.n_prey), generator=g),
            respawn=torch.rand(b, self.n_prey, generator=g),
        )

    def step(self, actions: torch.Tensor, noise: MPPNoise | None = None) -> TimeStep:
        """Apply `actions` (B, N) with the draws `noise` (default: fresh ones from the generator)."""
        shape = (self.n_envs, self.n_predators)
        if tuple(actions.shape) != shape:
            raise ValueError(f"actions must have shape {shape}, got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or actions.dtype == torch.bool or (
                (actions < 0) | (actions >= self.n_actions)).any():
            raise ValueError(f"actions must be integer indices in 0..{self.n_actions - 1} (right, down, left, up, stay)")
        noise = self.sample_noise() if noise is None else noise
        board, b = self.board, self.n_envs
        live = ~self.done  # (B,)
        occ = board.occupancy((self.predator_cells, torch.ones_like(self.predator_cells, dtype=torch.bool)),
                              (self.prey_cells, torch.ones_like(self.prey_cells, dtype=torch.bool)))
        predators_move = live[:, None].expand(b, self.n_predators)
        self.predator_cells = board.move_in_turn(self.predator_cells, predators_move, board.moves[actions.long()],
                                                 noise.predator_order, occ)
        self.prey_cells = board.move_in_turn(self.prey_cells, live[:, None].expand(b, self.n_prey),
                                             board.moves[noise.prey_action], noise.prey_order, occ)

        neighbours = self.prey_cells[:, :, None] + board.moves[:4]  # (B, P, 4)
        adjacent = (neighbours[:, :, :, None] == self.predator_cells[:, None, None, :]).sum((2, 3))  # (B, P)
        caught = (adjacent >= 2) & live[:, None]  # (B, P)
        alone = (adjacent == 1) & live[:, None]  # (B, P)
        reward = self.catch_reward * caught.sum(-1) - self.penalty * alone.sum(-1)  # (B,)

        interior = board.interior  # (H*W,)
        for j in range(self.n_prey):  # in turn, so two caught prey never land on one cell
            pick = pick_uniform(1 - occ[:, interior], noise.respawn[:, j : j + 1])  # (B, H*W); a free cell exists
            new = (pick * interior).sum(-1)  # (B,)
            respawns = caught[:, j].long()  # (B,)
            old = self.prey_cells[:, j]
            occ.scatter_add_(1, old[:, None], -respawns[:, None])
            occ.scatter_add_(1, new[:, None], respawns[:, None])
            self.prey_cells[:, j] = torch.where(caught[:, j], new, old)

        self.t = self.t + live.long()
        truncated = live & (self.t >= self.spec.episode_limit)
        self.done = self.done | truncated
        return self._timestep(reward, truncated)

    def positions(self) -> torch.Tensor:
        """(B, 2 (N + P)): every position, (coordinate - size/2) / size, predators then prey."""
        size = float(self.shape[0])
        everything = torch.cat([self.predators, self.prey], dim=1).float()  # (B, N+P, 2)
        return ((everything - size / 2) / size).reshape(self.n_envs, -1)

    def _timestep(self, reward: torch.Tensor, truncated: torch.Tensor) -> TimeStep:
        b, n = self.n_envs, self.n_predators
        state = self.positions()
        return TimeStep(
            obs=state[:, None, :].expand(b, n, state.shape[-1]).clone(),
            state=state,
            avail=torch.ones(b, n, self.n_actions, dtype=torch.bool),
            reward=reward,
            terminated=torch.zeros(b, dtype=torch.bool),
            truncated=truncated,
        )
