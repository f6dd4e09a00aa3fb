"""QMIX: a monotonic mixing network whose weights come from hypernetworks of the state
(Rashid et al., ICML 2018).

Q_tot = ELU(q W1(s) + b1(s)) W2(s) + V(s) with W1, W2 >= 0 (absolute values), so dQ_tot/dQ_i >= 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.mixers.base import Mixer


def _hypernet(state_dim: int, out_dim: int, layers: int, hidden_dim: int) -> nn.Module:
    if layers == 1:
        return nn.Linear(state_dim, out_dim)
    if layers == 2:
        return nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))
    raise ValueError(f"hypernet_layers must be 1 or 2, got {layers}")


class QMixer(Mixer):
    """Contract: (*, N), (*, S) -> (*, 1).

    Args:
        embed_dim: width of the mixing layer (32 in QMIX and ResQ).
        hypernet_layers: 1 or 2 layers in the weight hypernetworks (ResQ: 2).
        hypernet_embed: hidden width of 2-layer hypernetworks (ResQ: 64).
        nonnegative: take |W1|, |W2| (QMIX). False drops the absolute values, so the mixer is no longer
            monotonic (NQMIX-M, the NQMIX paper's ablation; only NQMIX's sign rule can use it).
    """

    monotonic = True

    def __init__(
        self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_layers: int = 2, hypernet_embed: int = 64,
        nonnegative: bool = True,
    ) -> None:
        super().__init__(n_agents, state_dim)
        self.nonnegative = self.monotonic = bool(nonnegative)
        self.embed_dim = embed_dim
        self.hyper_w1 = _hypernet(state_dim, n_agents * embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_w2 = _hypernet(state_dim, embed_dim, hypernet_layers, hypernet_embed)
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        m = q_taken.shape[0]
        w1, w2 = self.hyper_w1(state), self.hyper_w2(state)
        if self.nonnegative:
            w1, w2 = w1.abs(), w2.abs()
        # per-row products as broadcast multiply-and-sum: bmm of M (1 x N) @ (N x E) products costs
        # 3-4x more on CPU (M = 1600, N = 2, E = 32: 1.0-1.1 ms forward and backward, 0.3-0.36 here)
        w1 = w1.view(m, self.n_agents, self.embed_dim)  # (M, N, E)
        hidden = F.elu((q_taken.unsqueeze(-1) * w1).sum(1) + self.hyper_b1(state))  # (M, E)
        return (hidden * w2).sum(-1, keepdim=True) + self.value(state)  # (M, 1)
