"""Quantile levels and the quantile Huber loss of implicit quantile networks (IQN; Dabney et al.,
ICML 2018, arXiv:1806.06923), used by every distributional method (DDN, DMIX, DAtten, ResZ).

A return distribution Z is represented by its quantile function tau -> F_Z^{-1}(tau) evaluated at
levels tau in (0, 1); values at K levels sit on a trailing axis K.
"""

from __future__ import annotations

import torch


def sample_taus(*shape: int, device: torch.device | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Levels tau ~ U(0, 1) of shape `shape` (*, K), sorted along K.

    Sorting changes no loss (the quantile Huber loss sums over the K levels) but gives every slot k
    a consistent meaning ("the k-th smallest level"), which helps a mixer that reads all K quantiles
    at once (ResZ's central MLP).
    """
    return torch.rand(*shape, device=device, generator=generator).sort(dim=-1).values


def midpoint_taus(k: int, device: torch.device | None = None) -> torch.Tensor:
    """The K midpoints (k + 1/2) / K, (K,): a deterministic quadrature of E[Z] = int_0^1 F^{-1}(tau) dtau.

    Greedy actions, the residual mask and every evaluation use the mean over these levels (IQN samples
    N_hat random levels to act; fixed levels keep the greedy joint action, the mask w_r and the DIGM
    check free of sampling noise between near-ties such as the 8 vs 7.9 of the ResQ game).
    """
    if k < 1:
        raise ValueError(f"the number of quantile levels must be >= 1, got {k}")
    return (torch.arange(k, device=device, dtype=torch.float32) + 0.5) / k


def quantile_huber_loss(
    z: torch.Tensor, tau: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kappa: float = 1.0
) -> torch.Tensor:
    """IQN's loss: sum over the K predicted levels of the mean over the K' target samples of

        rho_tau^kappa(u) = |tau - 1{u < 0}| * L_kappa(u) / kappa,   u = target_j - z_i,
        L_kappa(u) = u^2 / 2 if |u| <= kappa else kappa (|u| - kappa / 2),

    averaged over the steps where `mask` is 1.

    Args:
        z: (B, T, K) predicted quantiles at levels `tau`.
        tau: (B, T, K) the levels of `z`.
        target: (B, T, K') target samples (no gradient flows into them).
        mask: (B, T, 1) 1 where step t was taken.
        kappa: the Huber threshold (1 in IQN and DFAC).
    """
    if kappa <= 0:
        raise ValueError(f"kappa must be > 0, got {kappa}")
    if z.shape != tau.shape:
        raise ValueError(f"z {tuple(z.shape)} and tau {tuple(tau.shape)} must have the same shape (B, T, K)")
    if target.shape[:-1] != z.shape[:-1] or mask.shape != (*z.shape[:-1], 1):
        raise ValueError(
            f"target must be (B, T, K') and mask (B, T, 1) for z {tuple(z.shape)}; "
            f"got {tuple(target.shape)} and {tuple(mask.shape)}"
        )
    u = target.detach().unsqueeze(-2) - z.unsqueeze(-1)  # (B, T, K, K')
    abs_u = u.abs()
    huber = torch.where(abs_u <= kappa, 0.5 * u**2, kappa * (abs_u - 0.5 * kappa))  # (B, T, K, K')
    weight = (tau.unsqueeze(-1) - (u.detach() < 0).float()).abs()  # (B, T, K, K')
    per_step = (weight * huber / kappa).mean(-1).sum(-1, keepdim=True)  # (B, T, 1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)
