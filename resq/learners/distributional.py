"""Distributional value factorization: `ValueFactorization` with IQN agents and quantile targets.

    agent network  -> per-agent quantiles Z_i(tau) (B, T+1, N, A, K), levels tau shared by the agents
    main function  -> Z_tot = mixer(Z_i at the taken actions, s)                 (DDN, DMIX, DAtten)
    residual       -> Z_r = -|mixer_r(Z^r_i at the taken actions, s)| <= 0 per quantile   (ResZ)
    central Z_jt   -> Z_jt = mixer_c(Z^c_i at the taken actions, s)                       (ResZ)

Target: y(tau') = TD(lambda) return from the target copy of the bootstrap head (Z_jt when there is a
central network, else Z_tot) at N' fresh levels tau', evaluated at the greedy actions of the current
agents' means (double Q). Losses, quantile Huber (kappa 1) averaged over filled steps:
    loss_td = rho(Z_tot(tau) + w_r Z_r(tau), y)   (plain rho(Z_tot, y) without a residual)
    loss_jt = rho(Z_jt(tau_jt), y), with its own levels tau_jt (only with a central network).
w_r = 0 where every agent's action at step t equals its greedy action at step t (argmax of the mean of
its quantiles), else 1 (ResQ paper eq. 11 and Theorem 4).

DDN, DMIX and DAtten are this module without residual and central; ResZ is it with both
(`papers/resq_neurips2022.md` Sec. 4.2-4.3, SPEC.md "ResZ"). Everything else (buffer, collector
protocol, target-network updates, lr schedule, gradient clipping, evaluation and the IGM metric, here
on expectations: DIGM) is `ValueFactorization`'s.

Three defects of the authors' ResZ code (SPEC.md) are not reproduced: the mask compares the actions at
t with the greedy actions at t (not t+1); the central loss draws its own levels instead of reusing the
main agents'; the attention sizes are explicit constructor arguments (`QattenMixer`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from envs import EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.data.exploration import epsilon_greedy, masked_argmax
from resq.learners.errors import IncompatibleComponentsError
from resq.learners.value_factorization import ValueFactorization, component_class, masked_mean, residual_mask
from resq.nn.mixers.per_quantile import PerQuantileMixer
from resq.nn.quantile_joint import QuantileJointValue
from resq.nn.quantiles import midpoint_taus, quantile_huber_loss, sample_taus
from resq.nn.returns import td_lambda_returns


class DistributionalValueFactorization(ValueFactorization):
    """IQN agents + distributional main function (+ residual) (+ central Z_jt).

    Args (beyond `ValueFactorization`'s):
        agent: factory of a distributional agent network (`IQNAgent`).
        main_function: factory of a distributional mixer (DDN, DMIX, DAtten).
        residual_function: a distributional mixer, or an expected-value one, which is then applied to
            every quantile separately (`PerQuantileMixer`; ResQ paper Fig. 5e "Zr-FF"). Needs `central`.
        central: factory of the distributional mixer of Z_jt, or None.
        n_quantiles: N, levels per sample for the loss (8).
        n_target_quantiles: N', levels per sample for the targets (8).
        n_mean_quantiles: N_hat, levels of the mean that picks greedy actions (acting, targets, the mask,
            evaluation) (32). These are the fixed midpoints (k + 1/2) / N_hat (see `midpoint_taus`).
        kappa: the quantile Huber threshold (1).
    """

    value_type = "distributional"
    joint_value_class = QuantileJointValue

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        main_function: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        residual_function: Callable[..., nn.Module] | None = None,
        central: Callable[..., nn.Module] | None = None,
        n_quantiles: int = 8,
        n_target_quantiles: int = 8,
        n_mean_quantiles: int = 32,
        kappa: float = 1.0,
        **kwargs,
    ) -> None:
        for name, value in (("n_quantiles", n_quantiles), ("n_target_quantiles", n_target_quantiles),
                            ("n_mean_quantiles", n_mean_quantiles)):
            if value < 1:
                raise ValueError(f"algorithm.{name} must be >= 1, got {value}")
        if kappa <= 0:
            raise ValueError(f"algorithm.kappa must be > 0, got {kappa}")
        if residual_function is not None and getattr(component_class(residual_function), "value_type", None) == "expected":
            residual_function = functools.partial(PerQuantileMixer, mixer=residual_function)
        super().__init__(spec, agent, main_function, optimizer, residual_function, central, **kwargs)
        self.n_quantiles, self.n_target_quantiles, self.n_mean_quantiles = n_quantiles, n_target_quantiles, n_mean_quantiles
        self.kappa = kappa
        if "central" in self.nets:
            fixed = self.nets["central"].mixer.fixed_quantiles
            if fixed is not None and not fixed == n_quantiles == n_target_quantiles:
                raise IncompatibleComponentsError(
                    f"the central mixer reads and writes K={fixed} quantiles, but algorithm.n_quantiles="
                    f"{n_quantiles} and algorithm.n_target_quantiles={n_target_quantiles}; set all three equal "
                    f"(its n_quantiles follows ${{algorithm.n_quantiles}} in conf/algorithm/resz.yaml)."
                )

    # ---- levels --------------------------------------------------------------------------------
    def mean_levels(self, head: str) -> int:
        """How many midpoint levels estimate E[Z] of `head`: N_hat, or the K a fixed-size mixer reads."""
        fixed = getattr(self.nets[head].mixer, "fixed_quantiles", None)
        return fixed if fixed is not None else self.n_mean_quantiles

    def midpoints(self, features: torch.Tensor, k: int) -> torch.Tensor:
        """The midpoint levels (B, T, K) for GRU features (B, T, N, H)."""
        b, t = features.shape[:2]
        return midpoint_taus(k, device=features.device).expand(b, t, k)

    def sample(self, features: torch.Tensor, k: int, per_step: bool = True) -> torch.Tensor:
        """Fresh levels for features (B, T, N, H): (B, T, K), or one draw per episode (B, 1, K) expanded."""
        b, t = features.shape[:2]
        return sample_taus(b, t if per_step else 1, k, device=features.device).expand(b, t, k)

    # ---- heads -------------------------------------------------------------------------------
    @property
    def joint_value_name(self) -> str:
        return "E[Z_jt]" if self.joint_head == "central" else "E[Z_tot]"

    def utilities(self, nets: nn.ModuleDict, head: str, batch: EpisodeBatch) -> torch.Tensor:
        """(B, T+1, N, A, K) quantiles of `head`'s agents at its K midpoint levels (for evaluation)."""
        features = nets[head].features(batch.obs, batch.prev_actions_onehot)  # (B, T+1, N, H)
        return nets[head].quantiles(features, self.midpoints(features, self.mean_levels(head)))

    @staticmethod
    def expected_utilities(q: torch.Tensor) -> torch.Tensor:
        """E[Z_i] (*, N, A) from quantiles (*, N, A, K) at midpoint levels."""
        return q.mean(-1)

    @staticmethod
    def expected_joint(value: torch.Tensor) -> torch.Tensor:
        """E[Z] (M, J) from a head's quantiles (M, J, K) at midpoint levels."""
        return value.mean(-1)

    def mean_utilities(self, net: nn.Module, features: torch.Tensor) -> torch.Tensor:
        """E[Z_i] (B, T, N, A) over the N_hat midpoint levels, from GRU features (B, T, N, H)."""
        return net.quantiles(features, self.midpoints(features, self.n_mean_quantiles)).mean(-1)

    # ---- acting (the collector's Policy) -----------------------------------------------------
    @torch.no_grad()
    def act(self, obs, prev_actions_onehot, avail, hidden, epsilon, generator):
        agent = self.nets["main"].agent
        features, hidden = agent.features(obs[:, None], prev_actions_onehot[:, None], hidden)  # (B, 1, N, H)
        q = self.mean_utilities(self.nets["main"], features)  # (B, 1, N, A)
        return epsilon_greedy(q[:, 0], avail, epsilon, generator), hidden

    # ---- training ----------------------------------------------------------------------------
    @torch.no_grad()
    def td_targets(self, batch: EpisodeBatch, q_main: torch.Tensor) -> torch.Tensor:
        """y (B, T, K'): TD(lambda) from the target bootstrap head at N' fresh levels tau', at the greedy
        next actions of `q_main` (B, T+1, N, A), the current agents' means (double Q).

        tau' is one draw per episode, so a lambda-return adds up values at the same level k along it.
        """
        head = self.joint_head
        if not self.double_q:
            main = self.target_nets["main"]
            q_main = self.mean_utilities(main, main.features(batch.obs, batch.prev_actions_onehot))
        greedy_next = masked_argmax(batch.following(q_main), batch.following(batch.avail))  # (B, T, K)
        net = self.target_nets[head]
        features = batch.following(net.features(batch.obs, batch.prev_actions_onehot))  # (B, T, N, H)
        tau_next = self.sample(features, self.n_target_quantiles, per_step=False)  # (B, T, K')
        z_next = net(net.quantiles(features, tau_next), greedy_next, batch.following(batch.state))  # (B, T, K')
        return td_lambda_returns(batch.reward, batch.terminated, batch.mask, z_next, self.gamma, self.td_lambda)

    def residual_weights(self, batch: EpisodeBatch, q_main: torch.Tensor) -> torch.Tensor:
        """w_r (B, T, 1): 0 where every agent's action at step t is its greedy action at observation row t
        (the argmax of its mean utilities `q_main` (B, T+1, N, A)), else 1."""
        greedy = masked_argmax(batch.current(q_main), batch.current(batch.avail))  # (B, T, K)
        return residual_mask(batch.actions, greedy)

    def losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions  # (B, T, 1), (B, T, N)
        state = batch.current(batch.state)  # (B, T, S)
        main = self.nets["main"]
        features = main.features(batch.obs, batch.prev_actions_onehot)  # (B, T+1, N, H)
        with torch.no_grad():
            q_main = self.mean_utilities(main, features)  # (B, T+1, N, A)
        y = self.td_targets(batch, q_main)  # (B, T, K')
        features_t = batch.current(features)  # (B, T, N, H)
        tau = self.sample(features_t, self.n_quantiles)  # (B, T, K): one draw per sample, shared by the agents
        z_tot = main(main.quantiles(features_t, tau), actions, state)  # (B, T, K)
        out: dict[str, torch.Tensor] = {}
        z_pred = z_tot
        if "residual" in self.nets:
            w_r = self.residual_weights(batch, q_main)  # (B, T, 1)
            residual = self.nets["residual"]
            # rows 0..T-1 only: a recurrent agent's row t depends on rows <= t
            features_r = residual.features(batch.current(batch.obs), batch.current(batch.prev_actions_onehot))  # (B, T, N, H)
            z_r = self.residual_value(residual.quantiles(features_r, tau), actions, state)  # (B, T, K), <= 0
            z_pred = z_tot + w_r * z_r
            out["q_r_mean"] = masked_mean(z_r.detach().mean(-1, keepdim=True), mask)
            out["w_r_mean"] = masked_mean(w_r, mask)
        out["loss_td"] = quantile_huber_loss(z_pred, tau, y, mask, self.kappa)
        if "central" in self.nets:
            central = self.nets["central"]
            features_c = central.features(batch.current(batch.obs), batch.current(batch.prev_actions_onehot))  # (B, T, N, H)
            tau_jt = self.sample(features_c, self.n_quantiles)  # (B, T, K): its own levels
            z_jt = central(central.quantiles(features_c, tau_jt), actions, state)  # (B, T, K)
            out["loss_jt"] = quantile_huber_loss(z_jt, tau_jt, y, mask, self.kappa)
        return out
