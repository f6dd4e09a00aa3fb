"""Per-agent utility networks, shared by all agents (parameter sharing, as in pymarl)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RNNAgent(nn.Module):
    """Recurrent agent: fc(in -> H) + ReLU -> GRU(H) -> fc(H -> A) (QMIX, ResQ; pymarl's `rnn` agent).

    The input at each observation row is the agent's observation, the one-hot of its last action and
    the one-hot of its agent id. One set of weights serves every agent.

    Tensor contract: obs (B, T, N, O), prev_actions_onehot (B, T, N, A), hidden (B, N, H) or None
    -> utilities (B, T, N, A), hidden (B, N, H). `act_step` is one step of it while acting.
    """

    value_type = "expected"

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
        self.rnn = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.fc_out = nn.Linear(hidden_dim, n_actions)
        self.register_buffer("agent_ids", torch.eye(n_agents), persistent=False)  # the id one-hots, made once

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return torch.zeros(batch_size, self.n_agents, self.hidden_dim, device=self.fc_in.weight.device)

    def inputs(self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor) -> torch.Tensor:
        """(*, N, O) + (*, N, A) -> (*, N, input_dim), e.g. * = (B, T), or (B,) while acting."""
        parts = [obs]
        if self.last_action:
            parts.append(prev_actions_onehot)
        if self.agent_id:
            parts.append(self.agent_ids.expand(*obs.shape[:-1], self.n_agents))
        return torch.cat(parts, dim=-1)

    def features(
        self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GRU features (B, T, N, H) and the final hidden state (B, N, H)."""
        b, t, n, _ = obs.shape
        x = F.relu(self.fc_in(self.inputs(obs, prev_actions_onehot)))  # (B, T, N, H)
        if t == 1 and hidden is not None and not torch.is_grad_enabled():
            # One step while acting: the GRU cell itself, without nn.GRU's per-call checks (the same numbers).
            rnn = self.rnn
            h = torch.gru_cell(x.reshape(b * n, self.hidden_dim), hidden.reshape(b * n, self.hidden_dim),
                               rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)  # (B*N, H)
            return h.reshape(b, 1, n, self.hidden_dim), h.reshape(b, n, self.hidden_dim)
        x = x.transpose(1, 2).reshape(b * n, t, self.hidden_dim)  # (B*N, T, H)
        h0 = None if hidden is None else hidden.reshape(1, b * n, self.hidden_dim)
        out, h = self.rnn(x, h0)  # (B*N, T, H), (1, B*N, H)
        out = out.reshape(b, n, t, self.hidden_dim).transpose(1, 2)  # (B, T, N, H)
        return out, h.reshape(b, n, self.hidden_dim)

    def forward(
        self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        features, hidden = self.features(obs, prev_actions_onehot, hidden)
        return self.fc_out(features), hidden  # (B, T, N, A), (B, N, H)

    def act_step(
        self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor, hidden: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step while acting, without autograd: obs (B, N, O), prev_actions_onehot (B, N, A), hidden
        (B, N, H) -> utilities (B, N, A), hidden (B, N, H). The numbers of `forward` on one row (every
        linear layer is the same addmm over the B*N rows), without the time axis and module calls:
        an acting step costs ~20 small tensor ops, so each one saved counts."""
        b, n, _ = obs.shape
        x = F.linear(self.inputs(obs, prev_actions_onehot), self.fc_in.weight, self.fc_in.bias).relu_()  # (B, N, H)
        rnn = self.rnn
        h = torch.gru_cell(x.view(b * n, self.hidden_dim), hidden.reshape(b * n, self.hidden_dim),
                           rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0)  # (B*N, H)
        q = F.linear(h, self.fc_out.weight, self.fc_out.bias)  # (B*N, A)
        return q.view(b, n, -1), h.view(b, n, self.hidden_dim)
