"""TD(lambda) returns over padded episodes (step-aligned inputs; the buffer did the alignment)."""

from __future__ import annotations

import numpy as np
import torch


def td_lambda_returns(
    reward: torch.Tensor,
    terminated: torch.Tensor,
    mask: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    td_lambda: float,
) -> torch.Tensor:
    """lambda-returns G_t = r_t + gamma (1 - d_t) [(1 - lambda) V_{t+1} + lambda G_{t+1}].

    Args:
        reward, terminated, mask: (B, T, *) step-aligned; `mask` is 1 where step t was taken.
        next_value: (B, T, *) the target value of the observation after step t (row t+1).
        gamma, td_lambda: discount and lambda (lambda = 0: one-step targets; 1: Monte Carlo with
            bootstrap only at a time-limit end).

    Where step t+1 was not taken (the episode ended at t, or t is the last column), G_{t+1} is
    replaced by V_{t+1}: a terminated end then contributes nothing (1 - d_t = 0) and a time-limit end
    bootstraps r_t + gamma V_{t+1}. Entries on padding are meaningless and must be masked by the caller.
    """
    if not 0.0 <= td_lambda <= 1.0:
        raise ValueError(f"td_lambda must be in [0, 1], got {td_lambda}")
    if not (reward.shape[:2] == terminated.shape[:2] == mask.shape[:2] == next_value.shape[:2]):
        raise ValueError("reward, terminated, mask and next_value must share (B, T)")
    # The per-step factors, computed once for all t (the loop in _recursion is the cost of long episodes).
    discount = gamma * (1.0 - terminated)  # (B, T, *)
    blend = (1.0 - td_lambda) * next_value  # (B, T, *)
    if td_lambda == 0.0:  # one-step targets: r_t + gamma (1 - d_t) V_{t+1}, no recursion
        return reward + discount * blend
    taken_next = mask[:, 1:] > 0  # (B, T-1, *): step t+1 was taken, so G_{t+1} is a real return
    tensors = (reward, discount, blend, next_value, taken_next)
    if all(x.device.type == "cpu" and not x.requires_grad for x in tensors):  # targets: no gradient
        # the same loop in numpy: ~1 us per operation on these small (B, *) slices instead of torch's ~5 us
        return torch.from_numpy(_recursion(*(x.numpy() for x in tensors), td_lambda, np))
    return _recursion(*tensors, td_lambda, torch)


def _recursion(reward, discount, blend, next_value, taken_next, td_lambda: float, lib):
    """The backward loop of `td_lambda_returns` on numpy arrays or torch tensors (`lib` is numpy or
    torch: both give `where` and `empty_like`); the same elementwise operations in the same order and
    dtype either way, each rounded once, so both give the same numbers."""
    steps = reward.shape[1]
    returns = lib.empty_like(next_value)  # each G_t is stored in V's dtype
    g_next = next_value[:, -1]
    for t in reversed(range(steps)):
        if t + 1 < steps:
            g_next = lib.where(taken_next[:, t], g_next, next_value[:, t])
        g_next = reward[:, t] + discount[:, t] * (blend[:, t] + td_lambda * g_next)
        returns[:, t] = g_next
    return returns
