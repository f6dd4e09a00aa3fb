"""The stag-hunt predator-prey of the ResQ paper (Sec. 5.4; the DCG paper's game), batched in torch.

Rules (SPEC.md "Environments"; where it is silent, the DCG/WQMIX/ResQ code it names decides, noted *):
- A 10x10 grid, bounded (not toroidal); 8 predators and 8 prey on distinct random cells.
- Actions: right, down, left, up, stay, catch. Moves off the grid are unavailable; a move onto an
  occupied cell is available but not made. Catch is available only next to (4-neighbourhood) a live
  prey. A frozen predator may only stay.*
- Each step the predators move one at a time in a random order. Then the live prey are handled one
  at a time in a random order*: a prey with at least 2 adjacent unfrozen predators that chose catch is
  captured (+10); those catchers are frozen and, like the prey, removed from the grid (they no longer
  block, are not seen, and see nothing: their observation is zeros*). A prey with exactly one such
  catcher is not captured and the team gets the punishment p (0, -2 or -4), once per prey. A prey
  that is not captured steps to a uniformly random free neighbour cell (it stays if it has none).
  Because prey are handled in turn, a predator frozen by one prey's capture no longer counts for
  the prey after it, and a prey can step into a cell freed earlier in the same step.*
- The episode terminates when every prey is caught or every predator is frozen* (nothing can happen
  after that: every later reward is 0), and is truncated (a time limit, bootstrapped) at 200 steps.
- Observation of a predator: the 5x5 window around it, 3 features per cell (unfrozen predators incl.
  itself, prey, hares), row-major with features last: 75 values; cells off the grid are zeros.
  There are no hares in this game (the ResQ/WQMIX setting); the feature stays for the paper's
  obs size. State: the whole 10x10x3 grid, 300 values.

Every random draw of a step comes from one `StepNoise`, drawn from the env's generator before the
step's rules run; `step(actions, noise)` applies the rules to given draws, so a slow per-copy
reference fed the same draws must give the same result (tests/test_predator_prey.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from envs.base import BatchedEnv, EnvSpec, TimeStep
from envs.grid import STAY, Board, permutations, pick_uniform

ACTIONS = ("right", "down", "left", "up", "stay", "catch")
CATCH = 5
_FEATURES = 3  # predators, prey, hares


@dataclass
class StepNoise:
    """The random draws of one step of B copies.

    predator_order (B, N): the order in which predators move; prey_order (B, P): the order in which
    prey are resolved; prey_move (B, P) in [0, 1): prey j steps to the floor(u * k)-th of its k free
    neighbours, listed in the order right, down, left, up.
    """

    predator_order: torch.Tensor
    prey_order: torch.Tensor
    prey_move: torch.Tensor


class PredatorPrey(BatchedEnv):
    """B copies of the stag hunt (module docstring).

    Args:
        n_envs: B. seed: seeds the generator of placements and every random draw.
        punishment: p <= 0, the reward when a single predator tries to catch a prey.
        capture_reward: reward per captured prey (10).
        grid_size, n_predators, n_prey, view_radius, episode_limit: 10, 8, 8, 2 (5x5 view), 200.
        catchers_needed: adjacent catching predators needed for a capture (2).
    """

    def __init__(
        self,
        n_envs: int = 1,
        seed: int = 0,
        punishment: float = -2.0,
        capture_reward: float = 10.0,
        grid_size: int = 10,
        n_predators: int = 8,
        n_prey: int = 8,
        view_radius: int = 2,
        episode_limit: int = 200,
        catchers_needed: int = 2,
    ) -> None:
        if isinstance(n_envs, bool) or not isinstance(n_envs, int) or n_envs < 1:
            raise ValueError(f"n_envs must be an int >= 1, got {n_envs!r}")
        for name, value in (("punishment", punishment), ("capture_reward", capture_reward)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"env.{name} must be a finite number, got {value!r}")
        if punishment > 0:
            raise ValueError(f"env.punishment is a punishment: it must be <= 0 (the ResQ paper uses 0, -2, -4), "
                             f"got {punishment}")
        for name, value, low in (("grid_size", grid_size, 2), ("n_predators", n_predators, 1), ("n_prey", n_prey, 1),
                                 ("view_radius", view_radius, 0), ("episode_limit", episode_limit, 1),
                                 ("catchers_needed", catchers_needed, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"env.{name} must be an int >= {low}, got {value!r}")
        if n_predators + n_prey > grid_size**2:
            raise ValueError(f"env.n_predators + env.n_prey = {n_predators + n_prey} do not fit on a "
                             f"{grid_size}x{grid_size} grid ({grid_size**2} cells)")
        self.n_envs = n_envs
        self.punishment, self.capture_reward = float(punishment), float(capture_reward)
        self.n_predators, self.n_prey = n_predators, n_prey
        self.view_radius, self.catchers_needed = view_radius, catchers_needed
        view = 2 * view_radius + 1
        self.spec = EnvSpec(
            n_agents=n_predators, n_actions=len(ACTIONS), obs_dim=view * view * _FEATURES,
            state_dim=grid_size * grid_size * _FEATURES, episode_limit=episode_limit,
        )
        self.board = Board((grid_size, grid_size), border=view_radius)
        self._steps = torch.cat([self.board.moves, torch.zeros(1, dtype=torch.long)])  # (6,): catch does not move
        self._neighbours = self.board.moves[:4]  # (4,) right, down, left, up
        self._window = self.board.window_offsets(view_radius)  # (V*V,)
        self._only_stay = torch.arange(len(ACTIONS)) == STAY  # (6,)
        self._generator = torch.Generator().manual_seed(seed)
        b = n_envs
        self.predator_cells = torch.zeros(b, n_predators, dtype=torch.long)  # (B, N) board cells
        self.active = torch.zeros(b, n_predators, dtype=torch.bool)  # (B, N) not frozen
        self.prey_cells = torch.zeros(b, n_prey, dtype=torch.long)  # (B, P)
        self.alive = torch.zeros(b, n_prey, dtype=torch.bool)  # (B, P)
        self.t = torch.zeros(b, dtype=torch.long)  # (B,) steps taken
        self.done = torch.ones(b, dtype=torch.bool)  # (B,) episode over
        self._avail: torch.Tensor | None = None

    @property
    def predators(self) -> torch.Tensor:
        """(B, N, 2) (row, col) of every predator (a frozen one keeps its last cell)."""
        return self.board.rowcol(self.predator_cells)

    @property
    def prey(self) -> torch.Tensor:
        """(B, P, 2) (row, col) of every prey (a captured one keeps its last cell)."""
        return self.board.rowcol(self.prey_cells)

    # ---- interaction -------------------------------------------------------------------------
    def reset(self) -> TimeStep:
        b = self.n_envs
        cells = self.board.random_cells(b, self.n_predators + self.n_prey, self._generator)
        self.predator_cells, self.prey_cells = cells[:, : self.n_predators].clone(), cells[:, self.n_predators :].clone()
        self.active = torch.ones(b, self.n_predators, dtype=torch.bool)
        self.alive = torch.ones(b, self.n_prey, dtype=torch.bool)
        self.t = torch.zeros(b, dtype=torch.long)
        self.done = torch.zeros(b, dtype=torch.bool)
        return self._timestep(torch.zeros(b), self.done.clone(), self.done.clone())

    def place(
        self,
        predators: torch.Tensor,
        prey: torch.Tensor,
        active: torch.Tensor | None = None,
        alive: torch.Tensor | None = None,
    ) -> TimeStep:
        """Start every copy's episode from given positions (tests, worked examples) instead of random ones.

        predators (B, N, 2) / prey (B, P, 2) (row, col), or (N, 2) / (P, 2) for all copies; active (B, N)
        and alive (B, P) default to all True. Present entities must be on the grid on distinct cells.
        """
        b = self.n_envs
        predators = torch.as_tensor(predators, dtype=torch.long).expand(b, self.n_predators, 2)
        prey = torch.as_tensor(prey, dtype=torch.long).expand(b, self.n_prey, 2)
        active = torch.ones(b, self.n_predators, dtype=torch.bool) if active is None else torch.as_tensor(active).expand(b, -1)
        alive = torch.ones(b, self.n_prey, dtype=torch.bool) if alive is None else torch.as_tensor(alive).expand(b, -1)
        size = self.board.shape[0]
        if ((predators < 0) | (predators >= size)).any() or ((prey < 0) | (prey >= size)).any():
            raise ValueError(f"positions must lie on the {size}x{size} grid")
        cells = torch.cat([self.board.cell(predators), self.board.cell(prey)], 1)  # (B, N+P)
        present = torch.cat([active, alive], 1)
        occ = self.board.occupancy((cells, present))
        if (occ > 1).any():
            raise ValueError("two present entities share a cell")
        self.predator_cells, self.prey_cells = cells[:, : self.n_predators].clone(), cells[:, self.n_predators :].clone()
        self.active, self.alive = active.clone(), alive.clone()
        self.t = torch.zeros(b, dtype=torch.long)
        self.done = torch.zeros(b, dtype=torch.bool)
        return self._timestep(torch.zeros(b), self.done.clone(), self.done.clone())

    def sample_noise(self) -> StepNoise:
        """The draws of the next step, from the env's generator."""
        b, g = self.n_envs, self._generator
        return StepNoise(
            predator_order=permutations(b, self.n_predators, g),
            prey_order=permutations(b, self.n_prey, g),
            prey_move=torch.rand(b, self.n_prey, generator=g),
        )

    def step(self, actions: torch.Tensor, noise: StepNoise | None = None) -> TimeStep:
        """Apply `actions` (B, N) with the draws `noise` (default: fresh ones from the generator)."""
        self._check_actions(actions)
        noise = self.sample_noise() if noise is None else noise
        board, b = self.board, self.n_envs
        actions = actions.long()
        live = ~self.done  # (B,) copies whose episode runs; the others ignore their actions
        occ = board.occupancy((self.predator_cells, self.active), (self.prey_cells, self.alive))  # (B, cells+1)

        # Predators move one at a time in random order (frozen ones, and finished copies, do not).
        self.predator_cells = board.move_in_turn(
            self.predator_cells, self.active & live[:, None], self._steps[actions], noise.predator_order, occ)

        # Prey are resolved one at a time in random order: captured, punished, or stepping away. A prey
        # moves only in its own turn, so who is next to it is decided by the predators' cells now.
        # Masks are 0/1 longs here: the loop then needs no dtype conversions.
        order = noise.prey_order  # (B, P)
        in_turn = self.prey_cells.gather(1, order)  # (B, P) prey cells in the order of their turns
        resolving = (self.alive & live[:, None]).long().gather(1, order)  # (B, P)
        tried = ((actions == CATCH) & self.active).long()  # (B, N) unfrozen predators that chose catch
        catching = tried.clone()  # those not yet frozen by an earlier prey of this step
        any_catch = bool(tried.any())  # without a catcher in any copy the capture bookkeeping is skipped
        if any_catch:
            neighbours = in_turn[:, :, None] + self._neighbours  # (B, P, 4)
            adjacent = (self.predator_cells[:, :, None, None] == neighbours[:, None]).any(-1).long()  # (B, N, P)
        one = torch.ones_like(in_turn[:, :1])  # (B, 1)
        minus_one = -one
        captured, n_catchers = [], []
        turns = zip(in_turn.split(1, dim=1), resolving.split(1, dim=1), noise.prey_move.gather(1, order).split(1, dim=1))
        for k, (here, resolves, u) in enumerate(turns):  # (B, 1) views, prey by prey
            stays = resolves
            if any_catch:
                catchers = catching * adjacent[:, :, k]  # (B, N)
                n_catchers.append(catchers.sum(-1, keepdim=True))  # (B, 1)
                caught = resolves * (n_catchers[-1] >= self.catchers_needed)  # (B, 1)
                captured.append(caught)
                frozen = catchers * caught  # (B, N): frozen and removed with the prey
                catching -= frozen
                occ.scatter_add_(1, self.predator_cells, -frozen)
                occ.scatter_add_(1, here, -caught)
                stays = resolves - caught
            targets = here + self._neighbours  # (B, 4) right, down, left, up
            pick = pick_uniform(1 - occ.gather(1, targets), u)  # (B, 4) one-hot, or 0 without a free cell
            step = (pick * self._neighbours).sum(-1, keepdim=True) * stays  # (B, 1) the step made
            occ.scatter_add_(1, here, minus_one)  # leave and enter (the same cell when not moving)
            here += step  # writes into in_turn
            occ.scatter_add_(1, here, one)

        reward = torch.zeros(b)
        if any_catch:
            captured, n_catchers = torch.cat(captured, 1), torch.cat(n_catchers, 1)  # (B, P) in turn order
            punished = resolving * (n_catchers > 0) * (1 - captured)  # (B, P)
            reward = self.capture_reward * captured.sum(-1) + self.punishment * punished.sum(-1)  # (B,)
            self.active = self.active & ~(tried - catching).bool()  # minus the catchers frozen this step
            self.alive = self.alive & ~torch.zeros_like(captured).scatter_(1, order, captured).bool()
        self.prey_cells = torch.empty_like(self.prey_cells).scatter_(1, order, in_turn)

        self.t = self.t + live.long()
        terminated = live & (~self.alive.any(-1) | ~self.active.any(-1))  # (B,)
        truncated = live & ~terminated & (self.t >= self.spec.episode_limit)  # (B,)
        self.done = self.done | terminated | truncated
        return self._timestep(reward, terminated, truncated)

    # ---- views -------------------------------------------------------------------------------
    def _check_actions(self, actions: torch.Tensor) -> None:
        if self._avail is None:
            raise RuntimeError("PredatorPrey.step called before reset()")
        shape = (self.n_envs, self.n_predators)
        if tuple(actions.shape) != shape:
            raise ValueError(f"actions must have shape {shape}, got {tuple(actions.shape)}")
        if actions.dtype.is_floating_point or actions.dtype == torch.bool or (
                (actions < 0) | (actions >= len(ACTIONS))).any():
            raise ValueError(f"actions must be integer indices in 0..{len(ACTIONS) - 1} ({', '.join(ACTIONS)})")
        bad = ~self._avail.gather(2, actions.long()[..., None])[..., 0] & ~self.done[:, None]  # (B, N)
        if bad.any():
            env, agent = (int(i) for i in bad.nonzero()[0])
            allowed = [a for a, ok in zip(ACTIONS, self._avail[env, agent].tolist()) if ok]
            raise ValueError(
                f"predator {agent} of env {env} chose {ACTIONS[int(actions[env, agent])]!r}, which is unavailable "
                f"(available: {allowed}); pick actions from TimeStep.avail"
            )

    def _timestep(self, reward: torch.Tensor, terminated: torch.Tensor, truncated: torch.Tensor) -> TimeStep:
        board, b, n = self.board, self.n_envs, self.n_predators
        predators = board.presence(self.predator_cells, self.active)  # (B, cells+1)
        prey = board.presence(self.prey_cells, self.alive)  # (B, cells+1)
        # Observations: each predator's window of (predators, prey, hares), features last; zeros when frozen.
        window = (self.predator_cells[:, :, None] + self._window).reshape(b, -1)  # (B, N*V*V)
        seen = torch.stack([predators.gather(1, window), prey.gather(1, window)], dim=-1)  # (B, N*V*V, 2)
        seen = torch.cat([seen, torch.zeros_like(seen[..., :1])], dim=-1).view(b, n, -1)  # (B, N, V*V*3)
        obs = seen * self.active[..., None]
        state = torch.stack([predators[:, board.interior], prey[:, board.interior]], dim=-1)  # (B, H*W, 2)
        state = torch.cat([state, torch.zeros_like(state[..., :1])], dim=-1).view(b, -1)  # (B, H*W*3)
        # Available actions: moves that stay on the grid, stay, catch next to a live prey; frozen: stay.
        around = self.predator_cells[:, :, None] + self._neighbours  # (B, N, 4)
        on_grid = ~board.walls[around]  # (B, N, 4)
        can_catch = (prey.gather(1, around.view(b, -1)) > 0).view(b, n, 4).any(-1, keepdim=True)  # (B, N, 1)
        avail = torch.cat([on_grid, torch.ones_like(can_catch), can_catch], dim=-1)  # (B, N, 6)
        self._avail = avail & (self.active[..., None] | self._only_stay)
        return TimeStep(obs=obs, state=state, avail=self._avail, reward=reward, terminated=terminated,
                        truncated=truncated)
