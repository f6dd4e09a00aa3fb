"""QPLEX: duplex dueling mixing (Wang, Ren, Liu, Yu, Zhang, ICLR 2021).

Each agent's utility is split like a dueling network, Q_i = V_i + A_i with V_i = max_u Q_i(u) and
A_i = Q_i - V_i <= 0. A transformation with state-dependent weights w_i(s) > 0 and biases b_i(s)
(here Qatten's coefficients, as in the authors' Qatten-based QPLEX) maps them to the joint level,

    Q'_i = w_i Q_i + b_i,   V'_i = w_i V_i + b_i,   A'_i = Q'_i - V'_i = w_i A_i <= 0,

and the joint value is a dueling sum with positive, joint-action-dependent importance weights:

    Q_tot(s, u) = sum_i V'_i + sum_i lambda_i(s, u) A'_i,   lambda_i > 0,
    lambda_i(s, u) = sum_k |key_k(s)| sigmoid(agent_k(s))_i sigmoid(action_k(s, u))_i   (K kernels).

At the agents' greedy joint action every A'_i is 0, elsewhere the sum of lambda_i A'_i is < 0, so
argmax_u Q_tot is the greedy joint action for any parameters (IGM by construction) while Q_tot is not
monotonic in the Q_i. As in the authors' implementation, the advantage term is written
Q_tot = sum_i Q'_i + sum_i (lambda_i - 1) sg[A'_i] (equal in value): the lambda network learns from the
advantage term, the utilities and the transformation from sum_i Q'_i.

Sizes follow SPEC.md: 4 kernels, 2-layer adversarial hypernetworks of 64; the transformation is a
QattenMixer (4 heads of 32, hypernet 64).

Contract: q_taken (*, N), state (*, S), actions (*, N) long, q_greedy (*, N) -> (*, 1).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.mixers.base import Mixer
from resq.nn.mixers.qatten import QattenMixer


def _mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(in_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
    raise ValueError(f"adv_hypernet_layers must be 1 or 2, got {layers}")


class QplexMixer(Mixer):
    """Contract: (*, N), (*, S), actions (*, N), q_greedy (*, N) -> (*, 1).

    Args:
        n_actions: actions per agent (the lambda network reads the one-hot joint action).
        n_kernels: K, kernels of the importance weights lambda (4).
        adv_hypernet_layers: 1 or 2 layers in the key/agent/action networks of lambda (2).
        adv_hypernet_embed: their hidden width (64).
        n_heads, embed_dim, hypernet_embed, unit_dim: the Qatten transformation (see QattenMixer).
    """

    monotonic = False
    igm = True
    extra_inputs = ("actions", "q_greedy")

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        n_actions: int,
        n_kernels: int = 4,
        adv_hypernet_layers: int = 2,
        adv_hypernet_embed: int = 64,
        n_heads: int = 4,
        embed_dim: int = 32,
        hypernet_embed: int = 64,
        unit_dim: int | None = None,
    ) -> None:
        super().__init__(n_agents, state_dim)
        if n_actions < 1 or n_kernels < 1:
            raise ValueError(f"QplexMixer needs n_actions >= 1 and n_kernels >= 1, got {n_actions}, {n_kernels}")
        self.n_actions, self.n_kernels = n_actions, n_kernels
        self.transform = QattenMixer(n_agents, state_dim, n_heads, embed_dim, hypernet_embed, unit_dim)
        h, k, n = adv_hypernet_embed, n_kernels, n_agents
        self.key = _mlp(state_dim, h, k, adv_hypernet_layers)
        self.agent_weight = _mlp(state_dim, h, k * n, adv_hypernet_layers)
        self.action_weight = _mlp(state_dim + n * n_actions, h, k * n, adv_hypernet_layers)

    def importance(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """lambda (M, N) > 0 from state (M, S) and the joint action (M, N)."""
        m, n, k = state.shape[0], self.n_agents, self.n_kernels
        onehot = F.one_hot(actions, self.n_actions).float().reshape(m, n * self.n_actions)  # (M, N*A)
        key = self.key(state).abs().view(m, k, 1) + 1e-10  # (M, K, 1)
        agent = torch.sigmoid(self.agent_weight(state)).view(m, k, n)  # (M, K, N)
        action = torch.sigmoid(self.action_weight(torch.cat([state, onehot], dim=-1))).view(m, k, n)  # (M, K, N)
        return (key * agent * action).sum(1)  # (M, N)

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor, actions: torch.Tensor, q_greedy: torch.Tensor) -> torch.Tensor:
        w, c = self.transform.coefficients(state)  # (M, N) >= 0, (M, 1)
        w = w + 1e-10
        b = c / self.n_agents  # (M, 1), the state term shared out over the agents
        q_joint_i = w * q_taken + b  # Q'_i (M, N)
        advantage = (w * (q_taken - q_greedy)).detach()  # sg[A'_i] <= 0 (M, N)
        lam = self.importance(state, actions.long())  # (M, N)
        return q_joint_i.sum(-1, keepdim=True) + ((lam - 1.0) * advantage).sum(-1, keepdim=True)  # (M, 1)
