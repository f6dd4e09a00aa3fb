"""The contract every expected-value mixer follows, checked in one place.

A mixer maps the chosen utilities of N agents and the global state to one joint value:

    q_taken (*, N), state (*, S) -> (*, 1)

for any leading shape (* = (B, T) in training, (B, T, J) when evaluating J joint actions).
Subclasses implement `mix` on flattened (M, N), (M, S) inputs.
"""

from __future__ import annotations

import torch
from torch import nn


class Mixer(nn.Module):
    """Base class: validates shapes, flattens leading dims, calls `mix`, restores the shape."""

    value_type = "expected"
    #: True when dQ_tot/dQ_i >= 0 holds by construction (VDN, QMIX, QAtten), i.e. IGM by construction.
    monotonic = False

    def __init__(self, n_agents: int, state_dim: int) -> None:
        super().__init__()
        if n_agents < 1 or state_dim < 1:
            raise ValueError(f"a mixer needs n_agents >= 1 and state_dim >= 1, got {n_agents}, {state_dim}")
        self.n_agents, self.state_dim = n_agents, state_dim

    def forward(self, q_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        lead = q_taken.shape[:-1]
        if q_taken.shape[-1] != self.n_agents:
            raise ValueError(f"{type(self).__name__}: q_taken must end in N={self.n_agents}, got {tuple(q_taken.shape)}")
        if state.shape != (*lead, self.state_dim):
            raise ValueError(
                f"{type(self).__name__}: state must have shape {(*lead, self.state_dim)}, got {tuple(state.shape)}"
            )
        out = self.mix(q_taken.reshape(-1, self.n_agents), state.reshape(-1, self.state_dim))  # (M, 1)
        if out.shape != (q_taken[..., 0].numel(), 1):
            raise RuntimeError(f"{type(self).__name__}.mix returned {tuple(out.shape)}, expected (M, 1)")
        return out.reshape(*lead, 1)

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """(M, N), (M, S) -> (M, 1)."""
        raise NotImplementedError
