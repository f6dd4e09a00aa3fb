"""A joint value built from an agent network and a mixer: Q(tau, u) = mixer([Q_i(tau_i, u_i)]_i, s)."""

from __future__ import annotations

import torch
from torch import nn

from resq.nn.actors import available_or_all


def gather_actions(q: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Utilities (*, N, A) at actions (*, N) -> (*, N)."""
    return q.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def all_joint_actions(n_agents: int, n_actions: int) -> torch.Tensor:
    """Every joint action, (A**N, N), in row-major order: index j = u_1 A^(N-1) + ... + u_N."""
    index = torch.arange(n_actions**n_agents)
    return torch.stack(torch.unravel_index(index, (n_actions,) * n_agents), dim=-1)


class JointValue(nn.Module):
    """An agent network (utilities per agent) plus a mixer (one joint value).

    `utilities(obs, prev_actions_onehot)` -> (B, T+1, N, A); `forward(q, actions, state, avail=None)`
    mixes the utilities `q` (*, N, A) at `actions` (*, N) with `state` (*, S) -> (*, 1). Mixers that
    declare `extra_inputs` (see `resq.nn.mixers.base`) also get the actions and the agents' greedy values
    max_u Q_i(u) over the actions `avail` (*, N, A) allows (all, when avail is None).

    With `mixer=None` there is no mixing (independent Q-learning): forward returns each agent's own
    value at its action, (*, N).
    """

    def __init__(self, agent: nn.Module, mixer: nn.Module | None) -> None:
        super().__init__()
        self.agent = agent
        self.mixer = mixer

    def utilities(self, obs: torch.Tensor, prev_actions_onehot: torch.Tensor) -> torch.Tensor:
        return self.agent(obs, prev_actions_onehot)[0]

    def forward(
        self, q: torch.Tensor, actions: torch.Tensor, state: torch.Tensor, avail: torch.Tensor | None = None
    ) -> torch.Tensor:
        q_taken = gather_actions(q, actions)  # (*, N)
        if self.mixer is None:
            return q_taken
        wanted = getattr(self.mixer, "extra_inputs", ())
        extra: dict[str, torch.Tensor] = {}
        if "actions" in wanted:
            extra["actions"] = actions
        if "q_greedy" in wanted:
            # rows that allow nothing (padding after an episode's end, a terminal step's next state) allow
            # everything here: their -inf max would turn the advantages into inf and the masked loss into nan
            masked = q if avail is None else q.masked_fill(~available_or_all(avail), float("-inf"))
            extra["q_greedy"] = masked.max(-1).values  # (*, N)
        return self.mixer(q_taken, state, **extra)
