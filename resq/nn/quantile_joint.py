"""A distributional joint value: an IQN agent network plus a distributional mixer,

    Z(tau, u)(tau_k) = mixer([Z_i(tau_i, u_i)(tau_k)]_i, s),

the counterpart of `JointValue` with a trailing quantile axis K.
"""

from __future__ import annotations

import torch
from torch import nn


def gather_action_quantiles(z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Quantiles (*, N, A, K) at actions (*, N) -> (*, N, K)."""
    index = actions[..., None, None].expand(*actions.shape, 1, z.shape[-1])  # (*, N, 1, K)
    return z.gather(-2, index).squeeze(-2)


class QuantileJointValue(nn.Module):
    """`features(obs, prev_actions_onehot)` -> GRU features (B, T+1, N, H); `quantiles(features, tau)`
    -> (B, T', N, A, K); `forward(z, actions, state, avail=None)` mixes the quantiles z (*, N, A, K) at `actions`
    (*, N) with `state` (*, S) -> (*, K).
    """

    def __init__(self, agent: nn.Module, mixer: nn.Module) -> None:
        super().__init__()
        self.agent = agent
        self.mixer = mixer

    def features(self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor) -> torch.Tensor:
        return self.agent.features(obs, prev_actions_onehot)[0]

    def quantiles(self, features: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        return self.agent.quantiles(features, tau)

    def forward(
        self, z: torch.Tensor, actions: torch.Tensor, state: torch.Tensor, avail: torch.Tensor | None = None
    ) -> torch.Tensor:
        """`avail` is accepted for `JointValue`'s call signature; no distributional mixer reads it. A mixer
        that lists "actions" in its `extra_inputs` gets the joint action too."""
        extra = {"actions": actions} if "actions" in getattr(self.mixer, "extra_inputs", ()) else {}
        return self.mixer(gather_action_quantiles(z, actions), state, **extra)
