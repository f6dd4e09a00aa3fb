"""COMA: counterfactual multi-agent policy gradients (Foerster et al., AAAI 2018), as plain modules and
functions (no Lightning, no Hydra).

A centralised critic gives, for each agent a, the joint action-values of all of a's actions with the
other agents' actions held fixed, Q(s, (u_-a, .)) (*, N, A), in one pass. The counterfactual baseline
marginalises a's own action under its policy,

    b_a(s, u_-a) = sum_u' pi_a(u' | tau_a) Q(s, (u_-a, u')),     A_a = Q(s, u) - b_a,

and each actor follows grad log pi_a(u_a | tau_a) A_a. The critic regresses Q(s, u) on TD(lambda)
returns of the target critic at the actions taken (lambda = 0.8 in COMA).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.returns import td_lambda_returns


class AgentCritic(nn.Module):
    """A centralised per-agent critic: MLP([s, o_a, one-hot id a (, u_-a)]) -> A values (*, N, A).

    With `others_actions` (COMA) the input also holds the one-hot joint action with agent a's own entry
    zeroed, so the output row of agent a is Q(s, (u_-a, .)). Without it (DOP's individual critics) the
    row is Q_a(s, o_a, .). Parameters are shared across agents, told apart by the id.

    Contract: state (*, S), obs (*, N, O), actions_onehot (*, N, A) (only with others_actions) -> (*, N, A).
    """

    def __init__(self, n_agents: int, n_actions: int, state_dim: int, obs_dim: int, hidden_dim: int = 128,
                 others_actions: bool = True) -> None:
        super().__init__()
        self.n_agents, self.n_actions, self.state_dim, self.obs_dim = n_agents, n_actions, state_dim, obs_dim
        self.others_actions = others_actions
        in_dim = state_dim + obs_dim + n_agents + (n_agents * n_actions if others_actions else 0)
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, n_actions),
        )

    def inputs(self, state: torch.Tensor, obs: torch.Tensor, actions_onehot: torch.Tensor | None) -> torch.Tensor:
        """(*, S), (*, N, O), (*, N, A) -> (*, N, in_dim)."""
        lead, n = state.shape[:-1], self.n_agents
        if obs.shape != (*lead, n, self.obs_dim):
            raise ValueError(f"{type(self).__name__}: obs must have shape {(*lead, n, self.obs_dim)}, got {tuple(obs.shape)}")
        eye = torch.eye(n, device=state.device, dtype=state.dtype)
        parts = [state[..., None, :].expand(*lead, n, self.state_dim), obs, eye.expand(*lead, n, n)]
        if self.others_actions:
            if actions_onehot is None or actions_onehot.shape != (*lead, n, self.n_actions):
                got = None if actions_onehot is None else tuple(actions_onehot.shape)
                raise ValueError(f"{type(self).__name__}: actions_onehot must have shape {(*lead, n, self.n_actions)}, got {got}")
            joint = actions_onehot[..., None, :, :] * (1.0 - eye)[:, :, None]  # (*, N, N, A): row a without agent a
            parts.append(joint.reshape(*lead, n, n * self.n_actions))
        return torch.cat(parts, dim=-1)

    def forward(self, state: torch.Tensor, obs: torch.Tensor, actions_onehot: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(self.inputs(state, obs, actions_onehot))  # (*, N, A)


def counterfactual_baseline(q_all: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """b_a = sum_u' pi_a(u') Q(s, (u_-a, u')): (*, N, A), (*, N, A) -> (*, N)."""
    if q_all.shape != pi.shape:
        raise ValueError(f"q_all and pi must share a shape (*, N, A), got {tuple(q_all.shape)} and {tuple(pi.shape)}")
    return (pi * q_all).sum(-1)


def coma_advantages(q_all: torch.Tensor, pi: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """A_a = Q(s, u) - b_a(s, u_-a) (*, N) from the critic's rows (*, N, A), pi (*, N, A), actions (*, N) long."""
    q_taken = q_all.gather(-1, actions[..., None]).squeeze(-1)  # (*, N)
    return q_taken - counterfactual_baseline(q_all, pi)


def coma_actor_loss(log_pi_taken: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """-E[sum_a A_a log pi_a(u_a)] over filled steps: (B, T, N), (B, T, N) (detached), mask (B, T, 1)."""
    per_step = -(advantages.detach() * log_pi_taken).sum(-1, keepdim=True)  # (B, T, 1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


def coma_critic_targets(reward: torch.Tensor, terminated: torch.Tensor, mask: torch.Tensor,
                        next_q_taken: torch.Tensor, gamma: float, td_lambda: float) -> torch.Tensor:
    """TD(lambda) targets (B, T, N) for every agent's row of the critic at the taken joint actions.

    next_q_taken (B, T, N) is the target critic's Q(s_{t+1}, u_{t+1}) (row a, action u_{a,t+1}); where
    step t+1 was not taken there is no u_{t+1}: the caller passes 0 there, so an episode's last step
    bootstraps nothing (as COMA's on-policy critic does, also at a time limit).
    """
    return td_lambda_returns(reward, terminated, mask, next_q_taken, gamma, td_lambda)


def onehot(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """(*, N) long -> (*, N, A) float."""
    return F.one_hot(actions, n_actions).float()
