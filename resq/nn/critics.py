"""Critics of the actor-critic methods: per-agent action values mixed into a joint Q (NQMIX, FacMADDPG),
or one centralised Q of the state and the joint action (MADDPG).

Every critic follows one contract, which `resq.learners.NQMIX` and `resq.learners.MADDPG` rely on:

    features(obs (B, T, N, O), prev_actions (B, T, N, W)) -> per-agent history features (B, T, N, H)
                                                            (H = 0 for a critic without agent networks)
    forward(features (*, N, H), state (*, S), action_inputs (*, N, W)) -> Q (*, 1)

`action_inputs` are one-hot vectors (or Gumbel-softmax relaxations of them) for discrete actions, the
action vectors for continuous ones (`ActorCritic.action_inputs`). Features depend on the history only,
so one pass over a batch serves every joint action evaluated at it.
"""

from __future__ import annotations

import torch
from torch import nn

from resq.nn.agents import RNNAgent
from resq.nn.mixers.base import Mixer
from resq.nn.mixers.feedforward import FeedForwardMixer


class AgentQ(nn.Module):
    """Per-agent action values Q_a(tau_a, u_a) from a shared recurrent agent network (`RNNAgent`: fc -> GRU).

    Discrete (action_dim 0): the agent network's utilities over its A actions; the value at an action
    input (one-hot or relaxed) is their dot product with it. Continuous (action_dim = D): a head on the
    GRU features and the action, [h, u] -> q_hidden_dim -> ReLU -> 1, so Q_a is differentiable in u (the
    agent network, built with its last-action width D, then serves its features only).

    Contract: features (*, N, H), action_inputs (*, N, W) -> values (*, N).
    """

    def __init__(self, agent: RNNAgent, action_dim: int = 0, q_hidden_dim: int = 64) -> None:
        super().__init__()
        self.agent = agent
        self.discrete = action_dim == 0
        self.hidden_dim = agent.hidden_dim
        if not self.discrete:
            agent.fc_out = nn.Identity()  # the head below reads the features and the action instead
            self.q_head = nn.Sequential(nn.Linear(agent.hidden_dim + action_dim, q_hidden_dim), nn.ReLU(),
                                        nn.Linear(q_hidden_dim, 1))

    def features(self, obs: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
        return self.agent.features(obs, prev_actions)[0]  # (B, T, N, H)

    def utilities(self, features: torch.Tensor) -> torch.Tensor:
        """Q_a(tau_a, .) (*, N, A) over every discrete action."""
        if not self.discrete:
            raise TypeError("AgentQ.utilities: continuous actions have no table of utilities; use values")
        return self.agent.fc_out(features)

    def values(self, features: torch.Tensor, action_inputs: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return (self.utilities(features) * action_inputs).sum(-1)  # (*, N)
        return self.q_head(torch.cat([features, action_inputs], dim=-1))[..., 0]  # (*, N)


class FactoredCritic(nn.Module):
    """Q_tot = mixer([Q_a(tau_a, u_a)]_a, s): `AgentQ` values mixed by an expected-value `Mixer` (QMIX for
    FacMADDPG, NQMIX's unconstrained MLP, QMIX without |w| for NQMIX-M). Contract in the module docstring."""

    def __init__(self, agent_q: AgentQ, mixer: Mixer) -> None:
        super().__init__()
        self.agent_q = agent_q
        self.mixer = mixer

    def features(self, obs: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
        return self.agent_q.features(obs, prev_actions)

    def agent_values(self, features: torch.Tensor, action_inputs: torch.Tensor) -> torch.Tensor:
        """Q_a (*, N) at the action inputs."""
        return self.agent_q.values(features, action_inputs)

    def forward(self, features: torch.Tensor, state: torch.Tensor, action_inputs: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.agent_values(features, action_inputs), state)  # (*, 1)


class CentralCritic(nn.Module):
    """MADDPG's centralised critic Q(s, u_1, ..., u_N): a feed-forward net on [state, every agent's action
    input] (a `FeedForwardMixer` over the N * W action entries), `hidden_dim` x `n_layers` with ReLU.

    It has no agent networks: `features` are empty (H = 0).
    """

    def __init__(self, n_agents: int, state_dim: int, action_input_dim: int, hidden_dim: int = 64,
                 n_layers: int = 2) -> None:
        super().__init__()
        self.net = FeedForwardMixer(n_agents * action_input_dim, state_dim, hidden_dim=hidden_dim, n_layers=n_layers)

    def features(self, obs: torch.Tensor, prev_actions: torch.Tensor) -> torch.Tensor:
        return obs.new_zeros(*obs.shape[:-1], 0)  # (B, T, N, 0)

    def forward(self, features: torch.Tensor, state: torch.Tensor, action_inputs: torch.Tensor) -> torch.Tensor:
        return self.net(action_inputs.flatten(-2), state)  # (*, 1)


def counterfactual_joint_actions(taken: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """(*, N, W), (*, N, W) -> (*, N, N, W): row i is the joint action with agent i's entry from `own` (its
    policy's action) and every other agent's from `taken` (the replay buffer), MADDPG's policy gradient."""
    n = taken.shape[-2]
    diagonal = torch.eye(n, dtype=torch.bool, device=taken.device)[..., None]  # (N, N, 1)
    return torch.where(diagonal, own[..., None, :, :], taken[..., None, :, :])
