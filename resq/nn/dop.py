"""DOP: off-policy multi-agent decomposed policy gradients (Wang et al., ICLR 2021), stochastic version,
as plain modules and functions (no Lightning, no Hydra).

The critic is linearly decomposed (FOP eq. 1):

    Q_tot(s, u) = sum_i k_i(s) Q_i(s, u_i) + b(s),    k_i(s) >= 0,

so E_{u ~ pi}[Q_tot] = sum_i k_i E_{pi_i}[Q_i] + b costs N sums over A, not A^N. That makes the
off-policy target cheap: the critic learns from replayed episodes with tree-backup returns (DOP's
stochastic version), whose traces are the current joint policy's probabilities of the replayed actions.

The decomposed policy gradient (FOP eq. 2) for agent i is k_i(s) grad log pi_i(u_i) (Q_i(u_i) - b_i),
b_i = sum_u pi_i(u) Q_i(u). We take its expectation over agent i's own action exactly,

    g = sum_i k_i(s) sum_u grad pi_i(u | tau_i) (Q_i(s, u) - b_i),

which has the same mean as the sampled form and needs no on-policy actions, so replayed states serve.
For continuous actions the gradient goes through the critic instead (FOP eq. 3): sum_i k_i grad_u Q_i
at u_i = mu_i(tau_i) (a reparameterised draw for a stochastic policy).
"""

from __future__ import annotations

import torch
from torch import nn

from resq.nn.mixers.base import Mixer


class DOPMixer(Mixer):
    """Q_tot = sum_i k_i(s) Q_i + b(s), k_i(s) = |MLP(s)|_i >= 0: linear in the Q_i (DOP; FOP eq. 1).

    Contract: q_taken (*, N), state (*, S) -> (*, 1) (the Mixer base checks it); `coefficients(state)`
    gives k (*, N) for the policy gradient. Monotonic (dQ_tot/dQ_i = k_i >= 0), hence IGM.

    Args:
        hidden_dim: width of the hidden layer of k(s) and of b(s).
    """

    monotonic = True

    def __init__(self, n_agents: int, state_dim: int, hidden_dim: int = 64) -> None:
        super().__init__(n_agents, state_dim)
        self.k = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, n_agents))
        self.b = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def coefficients(self, state: torch.Tensor) -> torch.Tensor:
        """k(s) (*, N) >= 0 from state (*, S)."""
        if state.shape[-1] != self.state_dim:
            raise ValueError(f"DOPMixer: state must end in S={self.state_dim}, got {tuple(state.shape)}")
        return self.k(state).abs()

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return (self.coefficients(state) * q_taken).sum(-1, keepdim=True) + self.b(state)  # (M, 1)


def tree_backup_targets(reward: torch.Tensor, terminated: torch.Tensor, mask: torch.Tensor,
                        next_q_taken: torch.Tensor, next_v: torch.Tensor, next_pi_taken: torch.Tensor,
                        gamma: float, tb_lambda: float) -> torch.Tensor:
    """Tree-backup(lambda) returns (B, T, *) for an off-policy critic (Precup et al. 2000; DOP's stochastic critic).

        G_t = r_t + gamma (1 - d_t) [V_{t+1} + lambda c_{t+1} (G_{t+1} - Q_{t+1})]

    where Q_{t+1} = Q^target(s_{t+1}, u_{t+1}) at the replayed next action, V_{t+1} = E_{u ~ pi} Q^target(s_{t+1}, u)
    and c_{t+1} = pi(u_{t+1} | s_{t+1}) (the joint policy's probability of it). Where step t+1 was not taken
    (the episode ended at t) the correction vanishes: G_t = r_t + gamma (1 - d_t) V_{t+1}, so a time-limit end
    bootstraps from V. lambda = 0 is expected SARSA; with pi(u_{t+1}) = 1 and V = Q (a deterministic policy)
    it is TD(lambda). All inputs are step-aligned (B, T, *); entries on padding are meaningless.
    """
    if not 0.0 <= tb_lambda <= 1.0:
        raise ValueError(f"tb_lambda must be in [0, 1], got {tb_lambda}")
    shapes = {tuple(x.shape[:2]) for x in (reward, terminated, mask, next_q_taken, next_v, next_pi_taken)}
    if len(shapes) != 1:
        raise ValueError("reward, terminated, mask, next_q_taken, next_v and next_pi_taken must share (B, T)")
    steps = reward.shape[1]
    returns = torch.zeros_like(next_v)
    for t in reversed(range(steps)):
        bootstrap = next_v[:, t]
        if t + 1 < steps:
            correction = tb_lambda * next_pi_taken[:, t] * (returns[:, t + 1] - next_q_taken[:, t])
            bootstrap = bootstrap + torch.where(mask[:, t + 1] > 0, correction, torch.zeros_like(correction))
        returns[:, t] = reward[:, t] + gamma * (1.0 - terminated[:, t]) * bootstrap
    return returns


def dop_actor_loss(pi: torch.Tensor, q_i: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Discrete decomposed policy gradient as a loss: -E_s[sum_i k_i(s) sum_u pi_i(u) Q_i(s, u)].

    Its gradient is the decomposed policy gradient sum_i k_i sum_u grad pi_i(u) (Q_i(u) - b_i) for any
    baseline b_i (sum_u grad pi_i(u) = 0), and its value falls as the policies move to higher Q_i, so it
    can be watched. pi (B, T, N, A) carries the gradient; q_i (B, T, N, A) and k (B, T, N) are detached
    here. mask (B, T, 1).
    """
    per_agent = (pi * q_i.detach()).sum(-1)  # (B, T, N)
    per_step = -(k.detach() * per_agent).sum(-1, keepdim=True)  # (B, T, 1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


def dop_deterministic_actor_loss(q_at_policy: torch.Tensor, k: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Continuous decomposed gradient (FOP eq. 3) as a loss: -E[sum_i k_i(s) Q_i(s, u_i)], u_i from the policy.

    q_at_policy (B, T, N) carries the gradient to the actions (and through them to the policies; the
    caller keeps the critic out of the actor optimiser); k (B, T, N) is detached here.
    """
    per_step = -(k.detach() * q_at_policy).sum(-1, keepdim=True)  # (B, T, 1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


class AgentActionCritic(nn.Module):
    """DOP's individual critic for continuous actions: Q_i(s, o_i, u_i) = MLP([s, o_i, one-hot id, u_i]) (*, N).

    The action enters scaled into [-1, 1]. Weights shared by the agents, told apart by the id.
    Contract: state (*, S), obs (*, N, O), actions (*, N, D) -> (*, N).
    """

    def __init__(self, n_agents: int, action_dim: int, state_dim: int, obs_dim: int, action_low, action_high,
                 hidden_dim: int = 128) -> None:
        super().__init__()
        self.n_agents, self.action_dim, self.state_dim, self.obs_dim = n_agents, action_dim, state_dim, obs_dim
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        self.register_buffer("mid", (high + low) / 2)
        self.register_buffer("half_range", (high - low) / 2)
        self.net = nn.Sequential(
            nn.Linear(state_dim + obs_dim + n_agents + action_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, state: torch.Tensor, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        lead, n = state.shape[:-1], self.n_agents
        if obs.shape != (*lead, n, self.obs_dim) or actions.shape != (*lead, n, self.action_dim):
            raise ValueError(f"AgentActionCritic: obs and actions must be {(*lead, n, self.obs_dim)} and "
                             f"{(*lead, n, self.action_dim)}, got {tuple(obs.shape)} and {tuple(actions.shape)}")
        ids = torch.eye(n, device=state.device, dtype=state.dtype).expand(*lead, n, n)
        scaled = (actions - self.mid) / self.half_range
        x = torch.cat([state[..., None, :].expand(*lead, n, self.state_dim), obs, ids, scaled], dim=-1)
        return self.net(x)[..., 0]
