"""Qatten: multi-head attention over agents (Yang et al., 2020, arXiv:2002.03939).

    Q_tot = sum_h |w_h(s)| sum_i lambda_{i,h}(s) Q_i + c(s),
    lambda_{i,h} = softmax_i( (W_k^h e_i) . (W_q^h f(s)) / sqrt(d) ),

so Q_tot = sum_i k_i(s) Q_i + c(s) with k_i >= 0: monotonic, IGM by construction. The coefficients do
not depend on the utilities, which lets DAtten (ResQ paper Sec. 4.3) apply the same k_i(s) to every
quantile of Z_i; `coefficients()` exposes them.

Agent features e_i: with `unit_dim` set, each agent's slice of the state (pymarl2's convention for
SMAC, whose state starts with the N ally units' features); without it (matrix games, any env whose
state has no per-agent layout), a learned embedding of the agent's id. Sizes follow SPEC.md: query
state -> 64 -> 32, key e_i -> 32, 4 heads, |w_h| state -> 64 -> 4, c(s) state -> 32 -> 1.

With `action_input=True` the query, the head weights and c read [s, one-hot joint action u] instead
of s, so the coefficients k_i(s, u) depend on the joint action. This is for residual functions only
(the ResQ paper, Sec. 4.3: "Q_r(tau, u) ... takes action-observation history tau, agents' utilities Q_i,
and action [u_i] as input"): joint-action-dependent weights break IGM, so such a mixer is not monotonic
and the learner refuses it as a main function. Without it, attention without softmax in a state is
-|f_1(u_1) + ... + f_N(u_N)| after the learner's -|.|: additive over the agents inside the absolute
value, which on the ResQ matrix game (one state) leaves the training stuck far from a fit
(docs/methods/resz.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.mixers.base import Mixer


class QattenMixer(Mixer):
    """Contract: (*, N), (*, S) -> (*, 1).

    Args:
        n_heads: attention heads (4).
        embed_dim: query/key width per head (32).
        hypernet_embed: hidden width of the query and head-weight networks (64).
        unit_dim: per-agent feature width at the start of the state, or None for id embeddings.
        softmax: normalise the attention over agents (Qatten). False keeps the raw scores: ResZ's
            residual "attention without softmax" (not monotonic; only for residual functions).
    """

    monotonic = True

    def __init__(
        self,
        n_agents: int,
        state_dim: int,
        n_heads: int = 4,
        embed_dim: int = 32,
        hypernet_embed: int = 64,
        unit_dim: int | None = None,
        softmax: bool = True,
        n_actions: int = 0,
        action_input: bool = False,
    ) -> None:
        super().__init__(n_agents, state_dim)
        if unit_dim is not None and unit_dim * n_agents > state_dim:
            raise ValueError(f"unit_dim={unit_dim} x {n_agents} agents exceeds state_dim={state_dim}")
        if action_input and n_actions < 1:
            raise ValueError(f"action_input=True needs n_actions >= 1 (actions per agent), got {n_actions}")
        self.n_heads, self.embed_dim, self.unit_dim, self.softmax = n_heads, embed_dim, unit_dim, softmax
        self.n_actions, self.action_input = n_actions, action_input
        self.monotonic = softmax and not action_input
        self.extra_inputs = ("actions",) if action_input else ()
        feature_dim = unit_dim if unit_dim is not None else n_agents
        context_dim = state_dim + (n_agents * n_actions if action_input else 0)  # [s] or [s, one-hot u]
        self.query = nn.Sequential(
            nn.Linear(context_dim, hypernet_embed), nn.ReLU(), nn.Linear(hypernet_embed, n_heads * embed_dim)
        )
        self.key = nn.Linear(feature_dim, n_heads * embed_dim, bias=False)
        self.head_weights = nn.Sequential(nn.Linear(context_dim, hypernet_embed), nn.ReLU(), nn.Linear(hypernet_embed, n_heads))
        self.constant = nn.Sequential(nn.Linear(context_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def agent_features(self, state: torch.Tensor) -> torch.Tensor:
        """(M, S) -> (M, N, F)."""
        m = state.shape[0]
        if self.unit_dim is not None:
            return state[:, : self.n_agents * self.unit_dim].reshape(m, self.n_agents, self.unit_dim)
        return torch.eye(self.n_agents, device=state.device).expand(m, -1, -1)

    def coefficients(
        self, state: torch.Tensor, actions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-agent weights k (M, N) (>= 0 with softmax) and the term c (M, 1), from state (M, S) (and,
        with `action_input`, the joint action (M, N) long)."""
        m, h, d = state.shape[0], self.n_heads, self.embed_dim
        context = state
        if self.action_input:
            if actions is None:
                raise ValueError("QattenMixer(action_input=True) needs the joint action: call it with actions=")
            context = torch.cat([state, F.one_hot(actions, self.n_actions).flatten(-2).to(state.dtype)], -1)  # (M, S+N*A)
        query = self.query(context).view(m, h, 1, d)  # (M, H, 1, d)
        key = self.key(self.agent_features(state)).view(m, self.n_agents, h, d).transpose(1, 2)  # (M, H, N, d)
        scores = (query * key).sum(-1) / math.sqrt(d)  # (M, H, N)
        attention = F.softmax(scores, dim=-1) if self.softmax else scores  # (M, H, N)
        k = (self.head_weights(context).abs().unsqueeze(-1) * attention).sum(1)  # (M, N)
        return k, self.constant(context)

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        k, c = self.coefficients(state, actions)
        return (k * q_taken).sum(-1, keepdim=True) + c  # (M, 1)
