"""QTRAN (Son, Kim, Kang, Hostallero, Yi, ICML 2019; `papers/qtran_icml2019.md` Sec. 3).

Three estimators, trained centrally:
    agents + VDN main function -> Q'_jt(tau, u) = sum_i Q_i(tau_i, u_i), the transformed joint value the
                                  agents act on (main_function must be vdn);
    central joint network      -> Q_jt(tau, u), unconstrained (its own recurrent agent network and a
                                  feed-forward mixer on [state, chosen central utilities]);
    state-value network        -> V_jt(s), state -> embed -> ReLU -> embed -> ReLU -> 1.

Losses (masked means), with Q^_jt = Q_jt without gradient and u_bar the agents' greedy joint action:
    loss_jt       = (Q_jt(tau, u) - y)^2, y from the target Q_jt at the next greedy actions  (L_td)
    loss_opt      = (Q'_jt(tau, u_bar) - Q^_jt(tau, u_bar) + V_jt)^2                           (L_opt)
    base: loss_nopt     = min(Q'_jt(tau, u) - Q^_jt(tau, u) + V_jt, 0)^2                      (L_nopt)
    alt:  loss_nopt_min = 1/N sum_i (min_{u_i} D(tau, u_i, u_-i))^2,                          (L_nopt-min)
          D = Q'_jt(tau, u_i, u_-i) - Q^_jt(tau, u_i, u_-i) + V_jt.
The step minimises loss_jt + lambda_opt loss_opt + lambda_nopt loss_nopt(_min) (`loss_weights`).

The counterfactual joint values Q_jt(tau, ., u_-i) of QTRAN-alt are the same joint network evaluated
at the N x A joint actions that change one agent's action, in one batched forward pass (the paper's
counterfactual network computes the same quantities with a per-agent output head over actions).
Deviation, as in common re-implementations: Q_jt and V_jt read the state and their own agent network
instead of sharing the agents' lower layers.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from envs import EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.data.exploration import masked_argmax
from resq.learners.errors import IncompatibleComponentsError
from resq.learners.value_factorization import ValueFactorization, component_class, masked_mean
from resq.nn.joint import gather_actions
from resq.nn.mixers import VDNMixer

VARIANTS = ("base", "alt")


def counterfactual_actions(actions: torch.Tensor, n_actions: int) -> torch.Tensor:
    """(*, N) -> (*, N, A, N): entry [..., i, a, :] is `actions` with agent i's action replaced by a."""
    n = actions.shape[-1]
    cf = actions[..., None, None, :].expand(*actions.shape[:-1], n, n_actions, n).clone()  # (*, N, A, N)
    agent = torch.arange(n, device=actions.device)
    cf[..., agent, :, agent] = torch.arange(n_actions, device=actions.device)  # row i, column i gets a
    return cf


def transformation_gap(
    q_prime: torch.Tensor, q_jt_fixed: torch.Tensor, v_jt: torch.Tensor
) -> torch.Tensor:
    """Theorem 1's left-hand side Q'_jt - Q^_jt + V_jt: 0 at u_bar (4a), >= 0 elsewhere (4b)."""
    return q_prime - q_jt_fixed + v_jt


class QTRAN(ValueFactorization):
    """QTRAN-base or QTRAN-alt as a ValueFactorization whose `losses` add the factorization constraints.

    Args (beyond ValueFactorization's):
        variant: "base" (L_nopt on the taken joint action) or "alt" (L_nopt-min, counterfactual).
        v_hidden_dim: width of the state-value network V_jt (the paper's embed, 64).
    """

    loss_names = ("loss_jt", "loss_opt", "loss_nopt", "loss_nopt_min")

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        main_function: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        central: Callable[..., nn.Module] | None = None,
        residual_function: Callable[..., nn.Module] | None = None,
        variant: str = "base",
        v_hidden_dim: int = 64,
        **kwargs,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"algorithm.variant must be one of {VARIANTS}, got {variant!r}")
        if main_function is None or not issubclass(component_class(main_function), VDNMixer):
            name = "none" if main_function is None else component_class(main_function).__name__
            raise IncompatibleComponentsError(
                f"QTRAN's transformed joint value is Q'_jt = sum_i Q_i, so it needs main_function=vdn, got {name}. "
                f"Use main_function=vdn (the default of algorithm=qtran_base / qtran_alt)."
            )
        if residual_function is not None:
            raise IncompatibleComponentsError(
                "QTRAN has no residual function; use residual_function=none with algorithm=qtran_base/qtran_alt."
            )
        if central is None:
            raise IncompatibleComponentsError("QTRAN needs its joint action-value network: set algorithm.central.")
        super().__init__(spec, agent, main_function, optimizer, central=central, **kwargs)
        self.variant = variant
        self.nets["v_jt"] = nn.Sequential(
            nn.Linear(spec.state_dim, v_hidden_dim), nn.ReLU(),
            nn.Linear(v_hidden_dim, v_hidden_dim), nn.ReLU(),
            nn.Linear(v_hidden_dim, 1),
        )
        # not used for targets; a copy keeps `update_targets` (a full state-dict load) aligned
        self.target_nets["v_jt"] = copy.deepcopy(self.nets["v_jt"]).requires_grad_(False)

    def losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions  # (B, T, 1), (B, T, N)
        state, avail = batch.current(batch.state), batch.current(batch.avail)  # (B, T, S), (B, T, N, A)
        q = self.utilities(self.nets, "main", batch)  # (B, T+1, N, A)
        q_t = batch.current(q)  # (B, T, N, A)
        y = self.td_targets(batch, q.detach())  # (B, T, 1)
        central = self.nets["central"]
        q_c = self.current_utilities(self.nets, "central", batch)  # (B, T, N, A)
        q_jt = central(q_c, actions, state, avail)  # (B, T, 1)
        out: dict[str, torch.Tensor] = {"loss_jt": masked_mean((q_jt - y) ** 2, mask)}

        v_jt = self.nets["v_jt"](state)  # (B, T, 1)
        q_c_fixed = q_c.detach()
        greedy = masked_argmax(q_t.detach(), avail)  # (B, T, N) u_bar
        q_prime_opt = gather_actions(q_t, greedy).sum(-1, keepdim=True)  # Q'_jt(u_bar) (B, T, 1)
        with torch.no_grad():
            q_jt_opt = central(q_c_fixed, greedy, state, avail)  # Q^_jt(u_bar) (B, T, 1)
        out["loss_opt"] = masked_mean(transformation_gap(q_prime_opt, q_jt_opt, v_jt) ** 2, mask)

        if self.variant == "base":
            q_prime = gather_actions(q_t, actions).sum(-1, keepdim=True)  # Q'_jt(u) (B, T, 1)
            gap = transformation_gap(q_prime, q_jt.detach(), v_jt)  # (B, T, 1)
            out["loss_nopt"] = masked_mean(gap.clamp(max=0.0) ** 2, mask)
        else:
            n, a = self.spec.n_agents, self.spec.n_actions
            cf = counterfactual_actions(actions, a)  # (B, T, N, A, N)
            lead = cf.shape[:-1]  # (B, T, N, A)
            q_taken = gather_actions(q_t, actions)  # (B, T, N)
            # Q'_jt(u_i = a, u_-i) = sum_{j != i} Q_j(u_j) + Q_i(a)
            q_prime_cf = q_taken.sum(-1)[..., None, None] - q_taken[..., None] + q_t  # (B, T, N, A)
            with torch.no_grad():
                q_jt_cf = central(
                    q_c_fixed[:, :, None, None].expand(*lead, n, a),
                    cf,
                    state[:, :, None, None].expand(*lead, state.shape[-1]),
                    avail[:, :, None, None].expand(*lead, n, a),
                )[..., 0]  # (B, T, N, A)
            gap = transformation_gap(q_prime_cf, q_jt_cf, v_jt[..., None])  # (B, T, N, A); V_jt (B, T, 1, 1)
            gap = gap.masked_fill(~avail, float("inf"))  # only available counterfactual actions
            min_gap = gap.min(-1).values  # (B, T, N)
            out["loss_nopt_min"] = masked_mean((min_gap**2).mean(-1, keepdim=True), mask)
        out["v_jt_mean"] = masked_mean(v_jt.detach(), mask)
        return out
