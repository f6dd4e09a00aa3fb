"""DMIX: the mean-shape decomposition of DFAC (Sun et al., ICML 2021, arXiv:2102.07936; ResQ paper
Theorem 3):

    Z_tot(tau) = Z_mean + Z_shape(tau),
    Z_mean      = QMIX(E[Z_1], ..., E[Z_N], s),
    Z_shape(tau) = sum_i Z_i(tau) - sum_i E[Z_i],          so E[Z_shape] = 0,

where E[Z_i] is the mean over the K levels at hand. Over those same levels E[Z_tot] = QMIX of the
agents' means, so the greedy joint action of E[Z_tot] is the agents' greedy actions (DIGM).
"""

from __future__ import annotations

import torch

from resq.nn.mixers.distributional import DistributionalMixer
from resq.nn.mixers.qmix import QMixer


class DMixMixer(DistributionalMixer):
    """Contract: (*, N, K), (*, S) -> (*, K).

    Args:
        embed_dim, hypernet_layers, hypernet_embed: the QMIX mixer of the means (see `QMixer`).
    """

    monotonic = True

    def __init__(
        self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_layers: int = 2, hypernet_embed: int = 64
    ) -> None:
        super().__init__(n_agents, state_dim)
        self.mean_mixer = QMixer(n_agents, state_dim, embed_dim, hypernet_layers, hypernet_embed)

    def mix(self, z_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        z_mean = z_taken.mean(-1)  # (M, N): E[Z_i] over the K levels
        z_shape = z_taken.sum(1) - z_mean.sum(-1, keepdim=True)  # (M, K), mean 0 over K
        return self.mean_mixer(z_mean, state) + z_shape  # (M, 1) + (M, K) -> (M, K)
