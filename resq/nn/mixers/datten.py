"""DAtten: Qatten applied quantile by quantile (ResQ paper Sec. 4.3 and 5.5, "designed by us"; Qatten:
Yang et al. 2020, arXiv:2002.03939):

    Z_tot(tau) = sum_i k_i(s) Z_i(tau) + c(s),   k_i(s) = sum_h |w_h(s)| lambda_{i,h}(s) >= 0,

with the coefficients of `QattenMixer.coefficients` (computed once per state, shared by every
quantile). With the softmax it is ResZ's main function, a nonnegative weighted sum of the agents'
distributions (Theorem 4). Without it (`softmax=False`) the weights may be negative: ResZ's residual
"attention without softmax", on which the learner applies -|.| per quantile. As a residual it may also
read the joint action (`action_input=True`, see `QattenMixer`): Z_r(tau, u) = -|sum_i k_i(s, u) Z^r_i(tau) + c(s, u)|.
"""

from __future__ import annotations

import torch

from resq.nn.mixers.distributional import DistributionalMixer
from resq.nn.mixers.qatten import QattenMixer


class DAttenMixer(DistributionalMixer):
    """Contract: (*, N, K), (*, S) -> (*, K).

    Args:
        n_heads, embed_dim, hypernet_embed, unit_dim, softmax, n_actions, action_input: as `QattenMixer`.
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
        self.attention = QattenMixer(n_agents, state_dim, n_heads, embed_dim, hypernet_embed, unit_dim, softmax,
                                     n_actions, action_input)
        self.monotonic = self.attention.monotonic
        self.extra_inputs = self.attention.extra_inputs

    def mix(self, z_taken: torch.Tensor, state: torch.Tensor, actions: torch.Tensor | None = None) -> torch.Tensor:
        k, c = self.attention.coefficients(state, actions)  # (M, N), (M, 1)
        return (k.unsqueeze(-1) * z_taken).sum(1) + c  # (M, K)
