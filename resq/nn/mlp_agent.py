"""Feed-forward agent: no recurrence, each observation row on its own (EPyMARL's `mlp` agent)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.agents import RNNAgent


class MLPAgent(nn.Module):
    """fc(in -> H) + ReLU -> fc(H -> H) + ReLU -> fc(H -> A), one set of weights for every agent.

    The input at each observation row is built as `RNNAgent`'s: the agent's observation, the one-hot of
    its last action (`last_action`) and the one-hot of its agent id (`agent_id`). Without recurrence a
    utility depends on its own row only, so a whole batch (B, T+1, N) is three matrix products.

    Tensor contract (the same as `RNNAgent`'s, so learners and the collector take either):
    obs (B, T, N, O), prev_actions_onehot (B, T, N, A), hidden (B, N, 0) or None
    -> utilities (B, T, N, A), hidden (B, N, 0). The hidden state is empty: it only keeps the contract.
    `act_step` is one step of it while acting.
    """

    value_type = "expected"
    recurrent = False  # learners may evaluate any subset of rows on its own (targets skip row 0)
    inputs = RNNAgent.inputs  # the same (obs, last action, agent id) input layout

    def __init__(
        self,
        n_agents: int,
        n_actions: int,
        obs_dim: int,
        hidden_dim: int = 64,
        last_action: bool = True,
        agent_id: bool = True,
    ) -> None:
        super().__init__()
        self.n_agents, self.n_actions, self.hidden_dim = n_agents, n_actions, hidden_dim
        self.last_action, self.agent_id = last_action, agent_id
        input_dim = obs_dim + (n_actions if last_action else 0) + (n_agents if agent_id else 0)
        self.fc_in = nn.Linear(input_dim, hidden_dim)
        self.fc_hidden = nn.Linear(hidden_dim, hidden_dim)
        self.fc_out = nn.Linear(hidden_dim, n_actions)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)  # the id one-hots, made once

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, self.n_agents, 0, device=self.fc_in.weight.device)

    def features(
        self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Last hidden layer (B, T, N, H) and the (empty) hidden state (B, N, 0)."""
        x = F.relu(self.fc_in(self.inputs(obs, prev_actions_onehot)))  # (B, T, N, H)
        x = F.relu(self.fc_hidden(x))  # (B, T, N, H)
        return x, obs.new_zeros(obs.shape[0], self.n_agents, 0)

    def forward(
        self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, hidden = self.features(obs, prev_actions_onehot, hidden)
        return self.fc_out(features), hidden  # (B, T, N, A), (B, N, 0)

    def act_step(
        self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step while acting, without autograd: obs (B, N, O), prev_actions_onehot (B, N, A) ->
        utilities (B, N, A), hidden unchanged. The numbers of `forward` on one row (each layer is the same
        addmm over the B*N rows) without the time axis and module calls (~3 us each at this size)."""
        x = F.linear(self.inputs(obs, prev_actions_onehot), self.fc_in.weight, self.fc_in.bias).relu_()  # (B, N, H)
        x = F.linear(x, self.fc_hidden.weight, self.fc_hidden.bias).relu_()  # (B, N, H)
        return F.linear(x, self.fc_out.weight, self.fc_out.bias), hidden  # (B, N, A)
