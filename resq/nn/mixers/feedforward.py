"""A plain feed-forward mixer on [state, q_taken]: no monotonicity, any function class.

ResQ uses it twice (ResQ paper Sec. 4.3 and the authors' code): as the residual function Q_r
(3 x 128, then -|x| applied by the learner) and as the mixer of the central Q_jt (3 x 128 plus a
state value V(s): state -> 128 -> ReLU -> 1).
"""

from __future__ import annotations

import torch
from torch import nn

from resq.nn.mixers.base import Mixer


class FeedForwardMixer(Mixer):
    """Contract: (*, N), (*, S) -> (*, 1).

    Args:
        hidden_dim: width of every hidden layer (128).
        n_layers: number of hidden ReLU layers (3).
        state_value: add V(s), a separate state -> hidden -> ReLU -> 1 head.
    """

    def __init__(
        self, n_agents: int, state_dim: int, hidden_dim: int = 128, n_layers: int = 3, state_value: bool = False
    ) -> None:
        super().__init__(n_agents, state_dim)
        if n_layers < 1:
            raise ValueError(f"n_layers must be >= 1, got {n_layers}")
        layers: list[nn.Module] = []
        width = state_dim + n_agents
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)
        self.value = (
            nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1)) if state_value else None
        )

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        out = self.net(torch.cat([state, q_taken], dim=-1))  # (M, 1)
        if self.value is not None:
            out = out + self.value(state)
        return out
