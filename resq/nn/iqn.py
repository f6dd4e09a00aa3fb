"""The recurrent IQN agent (implicit quantile network; Dabney et al., ICML 2018) as DFAC (Sun et al.,
ICML 2021) and ResZ (ResQ paper Sec. 4.3, Fig. 2c) use it, shared by all agents.

    h_i      = GRU features of agent i (the `RNNAgent` body: fc -> ReLU -> GRU)
    phi(tau) = ReLU(Linear(cos(pi * j * tau), j = 0..E-1))          (E = 64)
    Z_i(tau, u) = fc_out(h_i * phi(tau))[u]                          (elementwise product)

The levels tau are one draw per sample (per episode and time step), shared by all N agents, so the
agents' quantiles at slot k are the same level and can be mixed quantile by quantile. The GRU
features do not depend on tau: a learner computes them once and evaluates the head at as many
levels as it needs (N for the loss, N' for targets, N_hat for means).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.agents import RNNAgent


class IQNAgent(RNNAgent):
    """Contract: obs (B, T, N, O), prev_actions_onehot (B, T, N, A), tau (B, T, K), hidden (B, N, H) or
    None -> quantiles (B, T, N, A, K), hidden (B, N, H).

    Args:
        quantile_embed_dim: E, the number of cosine features cos(pi j tau), j = 0..E-1 (64).
        (the rest as `RNNAgent`)
    """

    value_type = "distributional"
    act_step = None  # quantiles, not utilities: the distributional learners act through forward

    def __init__(
        self,
        n_agents: int,
        n_actions: int,
        obs_dim: int,
        hidden_dim: int = 64,
        quantile_embed_dim: int = 64,
        last_action: bool = True,
        agent_id: bool = True,
    ) -> None:
        super().__init__(n_agents, n_actions, obs_dim, hidden_dim, last_action, agent_id)
        if quantile_embed_dim < 1:
            raise ValueError(f"quantile_embed_dim must be >= 1, got {quantile_embed_dim}")
        self.quantile_embed_dim = quantile_embed_dim
        self.register_buffer("frequencies", math.pi * torch.arange(quantile_embed_dim, dtype=torch.float32),
                             persistent=False)
        self.phi = nn.Linear(quantile_embed_dim, hidden_dim)

    def embed(self, tau: torch.Tensor) -> torch.Tensor:
        """phi(tau): levels (*, K) -> (*, K, H).

        Levels broadcast along a leading axis (an `expand`, stride 0: the N_hat midpoints shared by every
        row, or target levels drawn once per episode) are embedded once and broadcast the same way."""
        compact = tau
        for dim in range(tau.dim() - 1):
            if tau.stride(dim) == 0:
                compact = compact.narrow(dim, 0, 1)
        cosines = torch.cos(compact.unsqueeze(-1) * self.frequencies)  # (*', K, E)
        phi = F.relu(self.phi(cosines))  # (*', K, H)
        return phi.expand(*tau.shape, phi.shape[-1])  # (*, K, H)

    def quantiles(self, features: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """GRU features (B, T, N, H) at levels tau (B, T, K) shared by the agents -> (B, T, N, A, K)."""
        b, t = features.shape[:2]
        if tau.dim() != 3 or tau.shape[:2] != (b, t):
            raise ValueError(f"tau must be (B, T, K) = ({b}, {t}, K) for features {tuple(features.shape)}, "
                             f"got {tuple(tau.shape)}")
        phi = self.embed(tau)  # (B, T, K, H)
        x = features.unsqueeze(3) * phi.unsqueeze(2)  # (B, T, N, K, H)
        return self.fc_out(x).transpose(-1, -2)  # (B, T, N, A, K)

    def forward(
        self,
        obs: torch.Tensor,
        prev_actions_onehot: torch.Tensor,
        hidden: torch.Tensor | None = None,
        tau: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if tau is None:
            raise ValueError("IQNAgent needs the quantile levels: forward(obs, prev_actions_onehot, hidden, tau=(B, T, K))")
        features, hidden = self.features(obs, prev_actions_onehot, hidden)
        return self.quantiles(features, tau), hidden  # (B, T, N, A, K), (B, N, H)
