"""The contract every distributional mixer follows, checked in one place.

A distributional mixer maps the chosen quantiles of N agents, all at the same K levels tau_1..tau_K
(IQN agents share one draw of levels per sample), and the global state to K joint quantiles:

    z_taken (*, N, K), state (*, S) -> (*, K)

for any leading shape (* = (B, T) in training, (B, T, J) when evaluating J joint actions). Subclasses
implement `mix` on flattened (M, N, K), (M, S) inputs. `fixed_quantiles` is None for mixers that work
quantile by quantile (any K), or the one K a mixer was built for (ResZ's central MLP reads all K at once).

A mixer that also reads the joint action (ResZ's attention residual with `action_input`) lists
"actions" in `extra_inputs`, as expected-value mixers do (`resq.nn.mixers.base`); it is then called
`mixer(z_taken, state, actions=...)` with actions (*, N) long, and `mix` gets them flattened to (M, N).
"""

from __future__ import annotations

import torch
from torch import nn


class DistributionalMixer(nn.Module):
    """Base class: validates shapes, flattens leading dims, calls `mix`, restores the shape."""

    value_type = "distributional"
    #: True when dZ_tot(tau_k)/dZ_i(tau_k) >= 0 holds by construction (DDN, DMIX, DAtten).
    monotonic = False
    fixed_quantiles: int | None = None
    #: the inputs beyond z_taken and state this mixer needs: () or ("actions",).
    extra_inputs: tuple[str, ...] = ()

    @property
    def igm(self) -> bool:
        """DIGM by construction: E[Z_tot]'s argmax is the joint action of the agents' greedy means. Each
        monotonic mixer here keeps it (DDN and DAtten are nonnegative sums per level, DMIX's mean is a
        QMIX of the means)."""
        return self.monotonic

    def __init__(self, n_agents: int, state_dim: int) -> None:
        super().__init__()
        if n_agents < 1 or state_dim < 1:
            raise ValueError(f"a mixer needs n_agents >= 1 and state_dim >= 1, got {n_agents}, {state_dim}")
        self.n_agents, self.state_dim = n_agents, state_dim

    def forward(self, z_taken: torch.Tensor, state: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        if z_taken.dim() < 2 or z_taken.shape[-2] != self.n_agents:
            raise ValueError(f"{name}: z_taken must end in (N={self.n_agents}, K), got {tuple(z_taken.shape)}")
        lead, k = z_taken.shape[:-2], z_taken.shape[-1]
        if self.fixed_quantiles is not None and k != self.fixed_quantiles:
            raise ValueError(f"{name}: z_taken must have K={self.fixed_quantiles} quantiles (the size it was "
                             f"built for), got {k}")
        if state.shape != (*lead, self.state_dim):
            raise ValueError(f"{name}: state must have shape {(*lead, self.state_dim)}, got {tuple(state.shape)}")
        if set(extra) != set(self.extra_inputs):
            raise ValueError(f"{name} takes the extra inputs {list(self.extra_inputs)} (keyword arguments), got "
                             f"{sorted(extra)}; call it through resq.nn.QuantileJointValue, which supplies them")
        flat = {}
        for key, value in extra.items():
            if value.shape != (*lead, self.n_agents):
                raise ValueError(f"{name}: {key} must have shape {(*lead, self.n_agents)}, got {tuple(value.shape)}")
            flat[key] = value.reshape(-1, self.n_agents)  # (M, N)
        out = self.mix(z_taken.reshape(-1, self.n_agents, k), state.reshape(-1, self.state_dim), **flat)  # (M, K)
        if out.shape != (lead.numel(), k):
            raise RuntimeError(f"{name}.mix returned {tuple(out.shape)}, expected (M, K) = {(lead.numel(), k)}")
        return out.reshape(*lead, k)

    def mix(self, z_taken: torch.Tensor, state: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """(M, N, K), (M, S) [, actions (M, N)] -> (M, K)."""
        raise NotImplementedError
