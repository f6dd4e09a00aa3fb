"""Weightings of the TD loss of a monotonic Q_tot: Weighted QMIX (Rashid, Farquhar, Peng, Whiteson,
NeurIPS 2020).

QMIX projects the joint values onto monotonic functions with equal weight on every joint action, so a
non-monotonic payoff can pull its greedy action away from the optimum. Weighted QMIX trains Q_tot with

    L = sum w(s, u) (Q_tot(s, u) - y)^2,   w = 1 on the joint actions that matter, alpha elsewhere,

where y bootstraps from an unrestricted central Q* (the learner's central network). Two weightings:

- centrally weighted (CW): w = 1 if y > Q*(s, u_greedy) or u = u_greedy (the agents' greedy joint
  action), else alpha;
- optimistically weighted (OW): w = 1 if Q_tot(s, u) < y (an underestimate), else alpha.

Contract: every input is (*, 1) and carries no gradient; the weight w is (*, 1) in {alpha, 1}.
"""

from __future__ import annotations

import torch


class TDWeighting:
    """Base: `alpha` is the weight of the joint actions the weighting plays down, 0 < alpha <= 1."""

    #: True when the weight needs Q*(s, u_greedy) from a central network.
    uses_central = False

    def __init__(self, alpha: float = 0.1) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"the Weighted QMIX weight alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha

    def __call__(
        self, q_tot: torch.Tensor, y: torch.Tensor, taken_greedy: torch.Tensor, q_star_greedy: torch.Tensor | None
    ) -> torch.Tensor:
        """q_tot, y, taken_greedy (1 where the taken joint action is the greedy one), Q*(s, u_greedy)."""
        return torch.where(self.keep(q_tot, y, taken_greedy, q_star_greedy), 1.0, self.alpha).to(q_tot.dtype)

    def keep(self, q_tot, y, taken_greedy, q_star_greedy) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class CentralWeighting(TDWeighting):
    """CW-QMIX: full weight where y > Q*(s, u_greedy) or at the greedy joint action."""

    uses_central = True

    def keep(self, q_tot, y, taken_greedy, q_star_greedy):
        if q_star_greedy is None:
            raise ValueError("CentralWeighting needs Q*(s, u_greedy): the algorithm must have a central network")
        return (y > q_star_greedy) | (taken_greedy > 0)


class OptimisticWeighting(TDWeighting):
    """OW-QMIX: full weight where Q_tot underestimates the target."""

    def keep(self, q_tot, y, taken_greedy, q_star_greedy):
        return q_tot < y
