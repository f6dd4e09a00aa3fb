"""DDN: Z_tot(tau) = sum_i Z_i(tau), quantile by quantile (Sun et al., "DFAC Framework", ICML 2021,
arXiv:2102.07936): VDN's sum applied to every quantile of agents that share the levels tau.
"""

from __future__ import annotations

import torch

from resq.nn.mixers.distributional import DistributionalMixer


class DDNMixer(DistributionalMixer):
    """Additive per quantile; ignores the state. Contract: (*, N, K), (*, S) -> (*, K)."""

    monotonic = True

    def mix(self, z_taken: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        return z_taken.sum(1)  # (M, K)
