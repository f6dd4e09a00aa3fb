"""NQMIX's mixer (Chen, arXiv:2104.01939, appendix B): an unconstrained MLP on [Q_1, ..., Q_N, s] of two
fully-connected layers, 32 (N + 4) - N units then 1 (sized so its parameter count is close to QMIX's
mixer). No |w|: dQ_tot/dQ_a may be negative, which NQMIX's sign rule handles; not IGM, so the value
factorization learners refuse it as a main function.
"""

from __future__ import annotations

from resq.nn.mixers.feedforward import FeedForwardMixer


class NQMIXMixer(FeedForwardMixer):
    """Contract: (*, N), (*, S) -> (*, 1). `hidden_dim` None = the paper's 32 (N + 4) - N (ReLU)."""

    def __init__(self, n_agents: int, state_dim: int, hidden_dim: int | None = None) -> None:
        super().__init__(n_agents, state_dim, hidden_dim=hidden_dim or 32 * (n_agents + 4) - n_agents, n_layers=1)
