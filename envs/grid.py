"""Batched grid worlds for the predator-prey environments: B bounded grids stepped together in torch.

A `Board` numbers the cells of an H x W grid framed by a wall border `border` cells wide, row-major
in the padded (H + 2 border) x (W + 2 border) layout, plus one spare cell at the end. An
entity's position is one long cell index, so a move is an addition, and "is the target free?" is one
gather from the occupancy map (B, cells + 1) long, in which walls are always occupied. Updates that
only some copies make add 0 in the others, so no copy is ever looped over.
Row 0 is the top; "down" adds one to the row.
"""

from __future__ import annotations

import torch

#: (row, col) steps of the moves right, down, left, up, stay (the stag hunt's action order)
MOVES = ((0, 1), (1, 0), (0, -1), (-1, 0), (0, 0))
STAY = 4


def permutations(batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """(B, n) long: an independent uniform random order of 0..n-1 per copy."""
    return torch.rand(batch, n, generator=generator).argsort(dim=-1)


def pick_uniform(allowed: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One allowed option per copy: the floor(u * count)-th allowed one (uniform for u ~ U[0, 1)).

    allowed (B, K) long 0/1, u (B, 1) in [0, 1) -> (B, K) long one-hot of the pick, all 0 where
    nothing is allowed. Every random choice is drawn this way, so a per-copy reference given the same
    u makes the same choice.
    """
    count = allowed.sum(dim=-1, keepdim=True)  # (B, 1)
    rank = torch.minimum((u * count).long(), count - 1)  # (B, 1) floor(u * count); -1 where nothing is allowed
    return allowed * (allowed.cumsum(dim=-1) == rank + 1)  # (B, K)


class Board:
    """Cell numbering, moves, occupancy and views of B copies of one bounded H x W grid.

    Args:
        shape: (H, W).
        border: wall cells around the grid (>= 1; the view radius, so view windows stay inside).
    """

    def __init__(self, shape: tuple[int, int], border: int = 1) -> None:
        height, width = shape
        self.shape, self.border = (height, width), max(int(border), 1)
        self.width = width + 2 * self.border  # padded row length
        self.n_cells = (height + 2 * self.border) * self.width
        rows = torch.arange(height)[:, None] + self.border
        cols = torch.arange(width)[None, :] + self.border
        self.interior = (rows * self.width + cols).reshape(-1)  # (H*W,) grid cells, row-major
        self.walls = torch.ones(self.n_cells + 1, dtype=torch.bool)  # (cells + 1,)
        self.walls[self.interior] = False
        #: cell-index steps of MOVES (right, down, left, up, stay)
        self.moves = torch.tensor([dr * self.width + dc for dr, dc in MOVES])

    # ---- coordinates -------------------------------------------------------------------------
    def cell(self, rowcol: torch.Tensor) -> torch.Tensor:
        """(..., 2) (row, col) -> (...) cell index."""
        return (rowcol[..., 0] + self.border) * self.width + rowcol[..., 1] + self.border

    def rowcol(self, cells: torch.Tensor) -> torch.Tensor:
        """(...) cell index -> (..., 2) (row, col)."""
        return torch.stack((cells // self.width - self.border, cells % self.width - self.border), dim=-1)

    def random_cells(self, batch: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """(B, count): distinct grid cells per copy, uniformly at random."""
        if count > self.interior.numel():
            raise ValueError(f"cannot place {count} entities on a {self.shape[0]}x{self.shape[1]} grid")
        order = torch.rand(batch, self.interior.numel(), generator=generator).argsort(dim=-1)[:, :count]
        return self.interior[order]

    # ---- occupancy ---------------------------------------------------------------------------
    def occupancy(self, *groups: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """(B, cells + 1) long: 1 on walls and on the cells of the present entities of the
        (cells (B, M), present (B, M)) groups, else 0. Entities never share a cell."""
        batch = groups[0][0].shape[0]
        occ = self.walls.long().expand(batch, -1).clone()
        for cells, present in groups:
            occ.scatter_add_(1, cells, present.long())
        return occ

    def move_in_turn(
        self, cells: torch.Tensor, movers: torch.Tensor, steps: torch.Tensor, order: torch.Tensor, occ: torch.Tensor
    ) -> torch.Tensor:
        """Entities move one at a time in `order`; a move onto a wall or an occupied cell is not made.

        cells (B, M); movers (B, M) which entities may move (they must occupy their cells in `occ`);
        steps (B, M) the intended cell-index step of each (0 = stay); order (B, M) a permutation per
        copy; occ the occupancy (B, cells + 1), updated in place. An entity can step into a cell that
        one moving before it has just left. Returns the new cells (B, M). The loop runs over the M
        turns (the rule is sequential); each turn is vectorised over the B copies.
        """
        in_turn = cells.gather(1, order)  # (B, M) cells in the order of the turns
        steps = (steps * movers).gather(1, order)  # (B, M): 0 for those that may not move
        one = torch.ones_like(in_turn[:, :1])  # (B, 1)
        minus_one = -one
        for here, step in zip(in_turn.split(1, dim=1), steps.split(1, dim=1)):  # (B, 1) views, turn by turn
            # A free target holds 0 (a "stay" is blocked by the mover itself).
            step = step * (1 - occ.gather(1, here + step))  # (B, 1) the step made, 0 if blocked
            # Leave the cell and enter the target (the same cell when not moving: no net change).
            occ.scatter_add_(1, here, minus_one)
            here += step  # writes into in_turn
            occ.scatter_add_(1, here, one)
        return torch.empty_like(cells).scatter_(1, order, in_turn)

    # ---- views -------------------------------------------------------------------------------
    def presence(self, cells: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """(B, cells + 1) float: 1 on the cells of present entities, else 0 (absent ones add 0)."""
        grid = torch.zeros(cells.shape[0], self.n_cells + 1)
        return grid.scatter_add_(1, cells, present.float())

    def window_offsets(self, radius: int) -> torch.Tensor:
        """(V*V,) cell-index offsets of the (2r+1)^2 window around a cell, row-major (r <= border)."""
        if radius > self.border:
            raise ValueError(f"a view radius {radius} needs a border of at least {radius}, got {self.border}")
        span = torch.arange(-radius, radius + 1)
        return (span[:, None] * self.width + span[None, :]).reshape(-1)
