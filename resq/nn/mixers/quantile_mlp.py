"""ResZ's central mixer of Z_jt (ResQ paper Sec. 4.3; SPEC.md "ResZ"): an unconstrained MLP on the state
and all N x K chosen quantiles of the central IQN agents,

    Z_jt = MLP([s, Z^c_1(tau_1..tau_K), ..., Z^c_N(tau_1..tau_K)]) in R^K,   hidden 128 -> 128,

the distributional counterpart of ResQ's feed-forward Q_jt. It reads all K quantiles at once, so it
is built for one K (`fixed_quantiles`): the learner's N and N' must both equal it.
"""

from __future__ import annotations

import torch
from torch import nn

from resq.nn.mixers.distributional import DistributionalMixer


class QuantileMLPMixer(DistributionalMixer):
    """Contract: (*, N, K), (*, S) -> (*, K), for the K given at construction.

    Args:
        n_quantiles: K, the number of levels it reads and writes (8).
        hidden_dim: width of every hidden ReLU layer (128).
        n_layers: number of hidden layers (2).
    """

    def __init__(self, n_agents: int, state_dim: int, n_quantiles: int, hidden_dim: int = 128, n_layers: int = 2) -> None:
        super().__init__(n_agents, state_dim)
        if n_quantiles < 1 or n_layers < 1:
            raise ValueError(f"n_quantiles and n_layers must be >= 1, got {n_quantiles}, {n_layers}")
        self.fixed_quantiles = n_quantiles
        layers: list[nn.Module] = []
        width = state_dim + n_agents * n_quantiles
        for _ in range(n_layers):
            layers += [nn.Linear(width, hidden_dim), nn.ReLU()]
            width = hidden_dim
        layers.append(nn.Linear(width, n_quantiles))
        self.net = nn.Sequential(*layers)

    def mix(self, z_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        flat = z_taken.reshape(z_taken.shape[0], -1)  # (M, N*K), agent-major
        return self.net(torch.cat([state, flat], dim=-1))  # (M, K)
