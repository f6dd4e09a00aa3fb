"""The contract every expected-value mixer follows, checked in one place.

A mixer maps the chosen utilities of N agents and the global state to one joint value:

    q_taken (*, N), state (*, S) -> (*, 1)

for any leading shape (* = (B, T) in training, (B, T, J) when evaluating J joint actions).
Subclasses implement `mix` on flattened (M, N), (M, S) inputs.

Richer call. A mixer that needs more than the chosen utilities (QPLEX's advantages need each agent's
greedy value and the joint action) lists the extra per-agent inputs it takes in `extra_inputs`, from

    actions  (*, N) long   the joint action whose value is wanted
    q_greedy (*, N) float  max over available actions of each agent's utilities, V_i = max_u Q_i(u)

and is called `mixer(q_taken, state, actions=..., q_greedy=...)`; `JointValue` supplies them. The
same check validates every extra input's shape, and `mix` receives them flattened to (M, N).
"""

from __future__ import annotations

import torch
from torch import nn

EXTRA_INPUTS = ("actions", "q_greedy")


class Mixer(nn.Module):
    """Base class: validates shapes, flattens leading dims, calls `mix`, restores the shape."""

    value_type = "expected"
    #: True when dQ_tot/dQ_i >= 0 holds by construction (VDN, QMIX, QAtten), i.e. IGM by construction.
    monotonic = False
    #: the per-agent inputs beyond q_taken this mixer needs (a subset of EXTRA_INPUTS).
    extra_inputs: tuple[str, ...] = ()

    def __init__(self, n_agents: int, state_dim: int) -> None:
        super().__init__()
        if n_agents < 1 or state_dim < 1:
            raise ValueError(f"a mixer needs n_agents >= 1 and state_dim >= 1, got {n_agents}, {state_dim}")
        unknown = set(self.extra_inputs) - set(EXTRA_INPUTS)
        if unknown:
            raise TypeError(f"{type(self).__name__}.extra_inputs has unknown names {sorted(unknown)}; "
                            f"known: {EXTRA_INPUTS}")
        self.n_agents, self.state_dim = n_agents, state_dim

    @property
    def igm(self) -> bool:
        """True when argmax_u Q_tot(u) is the agents' greedy joint action by construction (IGM): every
        monotonic mixer, and QPLEX's duplex dueling. Agents that act greedily need such a main function."""
        return self.monotonic

    def forward(self, q_taken: torch.Tensor, state: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        name = type(self).__name__
        lead = q_taken.shape[:-1]
        if q_taken.shape[-1] != self.n_agents:
            raise ValueError(f"{name}: q_taken must end in N={self.n_agents}, got {tuple(q_taken.shape)}")
        if state.shape != (*lead, self.state_dim):
            raise ValueError(f"{name}: state must have shape {(*lead, self.state_dim)}, got {tuple(state.shape)}")
        if set(extra) != set(self.extra_inputs):
            raise ValueError(
                f"{name} takes the extra inputs {list(self.extra_inputs)} (keyword arguments), got {sorted(extra)}; "
                f"call it through resq.nn.JointValue, which supplies them"
            )
        flat = {}
        for key, value in extra.items():
            if value.shape != q_taken.shape:
                raise ValueError(f"{name}: {key} must have shape {tuple(q_taken.shape)}, got {tuple(value.shape)}")
            flat[key] = value.reshape(-1, self.n_agents)  # (M, N)
        out = self.mix(q_taken.reshape(-1, self.n_agents), state.reshape(-1, self.state_dim), **flat)  # (M, 1)
        if out.shape != (q_taken[..., 0].numel(), 1):
            raise RuntimeError(f"{name}.mix returned {tuple(out.shape)}, expected (M, 1)")
        return out.reshape(*lead, 1)

    def mix(self, q_taken: torch.Tensor, state: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        """(M, N), (M, S) [, extra inputs (M, N)] -> (M, 1)."""
        raise NotImplementedError
