"""Actors: the policy networks of actor-critic methods (NQMIX, MADDPG, FacMADDPG; FOP, COMA, DOP).

Every actor follows one contract, which `resq.learners.ActorCritic` relies on:

    initial_state(B)                          -> hidden (B, N, H)
    forward(obs (B, T, N, O), prev_actions (B, T, N, W), hidden=None)
                                              -> params (B, T, N, P), hidden (B, N, H)
    params(features (*, N, H))                -> params (*, N, P), from encoder features already at hand
    mode(params (*, N, P), avail (*, N, A))   -> the greedy / deterministic actions
    sample(params, avail, generator)          -> behaviour actions (stochastic actors draw; deterministic
                                                 ones return `mode`, the learner adds exploration noise)

with class attributes `action_kind` ("discrete" or "continuous") and `stochastic`. Discrete actors'
params are logits (P = A) and their actions (*, N) long; continuous actors' actions are (*, N, D) float
inside the action box. W is the last-action input width (A one-hot, or D).

An actor reads its observation history through a recurrent encoder, the `features` of an `RNNAgent`
(fc -> GRU; last action and agent id appended). NQMIX's policies read the GRU state of the critic's
agent network instead: pass that network as `encoder` with `detach_encoder=True`, so the actor's loss
leaves the critic's weights alone. The head on the features is shared by the agents (agent id in the
input tells them apart) or, with `per_agent=True`, one set of weights per agent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.agents import RNNAgent


class PerAgentLinear(nn.Module):
    """N independent linear layers applied at once: (*, N, in) -> (*, N, out), weight (N, in, out).

    Initialised per agent as `nn.Linear` is: uniform in +-1/sqrt(in).
    """

    def __init__(self, n_agents: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(n_agents, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_agents, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("...ni,nio->...no", x, self.weight) + self.bias


def mlp_head(n_agents: int, in_dim: int, out_dim: int, hidden: Sequence[int], per_agent: bool,
             relu_first: bool = False) -> nn.Sequential:
    """(*, N, in) -> (*, N, out): [ReLU ->] (Linear -> ReLU) per hidden width -> Linear; shared weights or
    one set per agent."""
    def linear(i: int, o: int) -> nn.Module:
        return PerAgentLinear(n_agents, i, o) if per_agent else nn.Linear(i, o)

    layers: list[nn.Module] = [nn.ReLU()] if relu_first else []
    width = in_dim
    for h in hidden:
        layers += [linear(width, h), nn.ReLU()]
        width = h
    layers.append(linear(width, out_dim))
    return nn.Sequential(*layers)


def available_or_all(avail: torch.Tensor) -> torch.Tensor:
    """avail (*, A) with rows that allow nothing (padding after an episode's end) allowing everything,
    so log-probabilities stay finite there (those rows are masked out of every loss)."""
    return avail | ~avail.any(-1, keepdim=True)


class RecurrentActor(nn.Module):
    """The shared part of every actor: an encoder's GRU features and a head on them.

    Args:
        n_agents, obs_dim: the env's N and O.
        action_input_dim: W, the last-action input width (A, or D for continuous actions).
        out_dim: P, the head's output width.
        hidden_dim: the encoder's width (64), when it builds its own encoder.
        head_hidden: widths of hidden layers in the head (none: one linear layer).
        per_agent: one head per agent (NQMIX: "agents can't reuse the actor policy network") or shared.
        relu_first: a ReLU on the GRU features before the head (NQMIX appendix B).
        encoder: an existing `RNNAgent` to read features from (NQMIX: the critic's), else a new one.
        detach_encoder: stop the actor's gradients at the encoder's features.
    """

    action_kind = ""
    stochastic = False

    def __init__(self, n_agents: int, obs_dim: int, action_input_dim: int, out_dim: int, hidden_dim: int = 64,
                 head_hidden: Sequence[int] = (), per_agent: bool = False, relu_first: bool = False,
                 encoder: RNNAgent | None = None, detach_encoder: bool = False) -> None:
        super().__init__()
        if encoder is None:
            encoder = RNNAgent(n_agents, action_input_dim, obs_dim, hidden_dim=hidden_dim)
            encoder.fc_out = nn.Identity()  # this encoder serves `features` only
        self.encoder = encoder
        self.detach_encoder = detach_encoder
        self.n_agents = n_agents
        self.head = mlp_head(n_agents, encoder.hidden_dim, out_dim, head_hidden, per_agent, relu_first)

    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.encoder.initial_state(batch_size)

    def features(self, obs: torch.Tensor, prev_actions: torch.Tensor, hidden: torch.Tensor | None = None):
        features, hidden = self.encoder.features(obs, prev_actions, hidden)  # (B, T, N, H), (B, N, H)
        return (features.detach() if self.detach_encoder else features), hidden

    def params(self, features: torch.Tensor) -> torch.Tensor:
        """The head on encoder features (*, N, H) -> params (*, N, P) (for learners that hold the features)."""
        return self.head(features)

    def forward(self, obs: torch.Tensor, prev_actions: torch.Tensor, hidden: torch.Tensor | None = None):
        features, hidden = self.features(obs, prev_actions, hidden)
        return self.params(features), hidden  # (B, T, N, P), (B, N, H)


class CategoricalActor(RecurrentActor):
    """A stochastic policy over A discrete actions: params are logits (*, N, A); unavailable actions get
    probability 0. Args as `RecurrentActor`, with `n_actions` for both W and P."""

    action_kind = "discrete"
    stochastic = True

    def __init__(self, n_agents: int, n_actions: int, obs_dim: int, **kwargs) -> None:
        super().__init__(n_agents, obs_dim, action_input_dim=n_actions, out_dim=n_actions, **kwargs)
        self.n_actions = n_actions

    @staticmethod
    def log_probs(logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """log pi(u | tau) (*, N, A), -inf at unavailable actions."""
        return torch.log_softmax(logits.masked_fill(~available_or_all(avail), float("-inf")), dim=-1)

    @classmethod
    def probs(cls, logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """pi(u | tau) (*, N, A), 0 at unavailable actions."""
        return cls.log_probs(logits, avail).exp()

    def mode(self, logits: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """The most likely available action (*, N); ties go to the smallest index."""
        return logits.masked_fill(~available_or_all(avail), float("-inf")).argmax(-1)

    def sample(self, logits: torch.Tensor, avail: torch.Tensor, generator: torch.Generator | None = None):
        probs = self.probs(logits, avail)
        flat = probs.reshape(-1, probs.shape[-1])
        return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])

    def relaxed_sample(self, logits: torch.Tensor, avail: torch.Tensor, temperature: float = 1.0,
                       hard: bool = False) -> torch.Tensor:
        """A Gumbel-softmax sample (*, N, A), differentiable in the logits (MADDPG's discrete actions);
        `hard` gives one-hots with the soft sample's gradient (straight-through)."""
        masked = logits.masked_fill(~available_or_all(avail), float("-inf"))
        return F.gumbel_softmax(masked, tau=temperature, hard=hard, dim=-1)


class DeterministicActor(RecurrentActor):
    """A deterministic policy mu(tau) in the box [low, high]^D: mid + half-range * tanh(head output).

    The head's last layer starts near zero (uniform in +-`final_init`, as DDPG), so every agent's first
    actions sit at the middle of the box (the FOP paper starts MTQ's policies at (0, 0)).
    """

    action_kind = "continuous"
    stochastic = False

    def __init__(self, n_agents: int, action_dim: int, obs_dim: int, action_low: Sequence[float],
                 action_high: Sequence[float], final_init: float = 3e-3, **kwargs) -> None:
        super().__init__(n_agents, obs_dim, action_input_dim=action_dim, out_dim=action_dim, **kwargs)
        low, high = torch.as_tensor(action_low, dtype=torch.float32), torch.as_tensor(action_high, dtype=torch.float32)
        if low.shape != (action_dim,) or high.shape != (action_dim,) or not (low < high).all():
            raise ValueError(f"DeterministicActor needs action_low < action_high with {action_dim} entries each, "
                             f"got {low.tolist()}, {high.tolist()}")
        self.register_buffer("mid", (high + low) / 2.0)
        self.register_buffer("half_range", (high - low) / 2.0)
        last = self.head[-1]
        if final_init > 0:
            with torch.no_grad():
                last.weight.uniform_(-final_init, final_init)
                last.bias.uniform_(-final_init, final_init)

    def params(self, features: torch.Tensor) -> torch.Tensor:
        return self.mid + self.half_range * torch.tanh(self.head(features))  # (*, N, D) inside the box

    def mode(self, actions: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
        return actions

    def sample(self, actions: torch.Tensor, avail: torch.Tensor | None = None, generator=None) -> torch.Tensor:
        return actions
