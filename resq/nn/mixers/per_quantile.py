"""An expected-value mixer applied to every quantile separately:

    Z(tau_k) = mixer([Z_i(tau_k)]_i, s),   k = 1..K.

This is how ResZ takes an expected-value residual function (`algorithm=resz residual_function=ff`,
the ResQ paper's "Zr-FF", Fig. 5e): a residual only has to satisfy Z_r <= 0 per quantile (Theorem 4),
which -|.| guarantees for any function, so an unconstrained mixer is legitimate there. A main function
is never wrapped this way: a monotonic mixer per quantile does not in general keep DIGM (ResQ paper
Sec. 4.2, the sum of squares example), so main functions must be distributional.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from resq.nn.mixers.distributional import DistributionalMixer


class PerQuantileMixer(DistributionalMixer):
    """Contract: (*, N, K), (*, S) -> (*, K).

    Args:
        mixer: factory `mixer(n_agents=, state_dim=)` of an expected-value mixer (*, N), (*, S) -> (*, 1).
    """

    def __init__(self, n_agents: int, state_dim: int, mixer: Callable[..., nn.Module]) -> None:
        super().__init__(n_agents, state_dim)
        self.mixer = mixer(n_agents=n_agents, state_dim=state_dim)
        if getattr(self.mixer, "value_type", None) != "expected":
            raise ValueError(f"PerQuantileMixer wraps an expected-value mixer, got {type(self.mixer).__name__}")
        extra = tuple(getattr(self.mixer, "extra_inputs", ()))
        if set(extra) - {"actions"}:
            raise ValueError(f"{type(self.mixer).__name__} needs {list(extra)}; per quantile only the joint action "
                             f"can be supplied, not per-agent greedy values")
        self.extra_inputs = extra
        self.monotonic = bool(getattr(self.mixer, "monotonic", False))

    def mix(self, z_taken: torch.Tensor, state: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        m, _, k = z_taken.shape
        per_level = z_taken.transpose(1, 2)  # (M, K, N)
        state_k = state.unsqueeze(1).expand(m, k, self.state_dim)  # (M, K, S)
        extra_k = {key: value.unsqueeze(1).expand(m, k, self.n_agents) for key, value in extra.items()}  # (M, K, N)
        return self.mixer(per_level, state_k, **extra_k).squeeze(-1)  # (M, K)
