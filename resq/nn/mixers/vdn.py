"""VDN: Q_tot = sum_i Q_i (Sunehag et al., AAMAS 2018)."""

from __future__ import annotations

import torch

from resq.nn.mixers.base import Mixer


class VDNMixer(Mixer):
    """Additive mixing; ignores the state. Contract: (*, N), (*, S) -> (*, 1)."""

    monotonic = True

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return q_taken.sum(-1, keepdim=True)  # (M, 1)
