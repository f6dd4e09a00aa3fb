"""Value factorization as one LightningModule, composed from parts:

    agent network  -> per-agent utilities Q_i (B, T+1, N, A)
    main function  -> Q_tot = mixer(Q_i at the taken actions, s)              (VDN, QMIX, ...)
    residual       -> Q_r = -|mixer_r(Q^r_i at the taken actions, s)| <= 0   (optional: ResQ)
    central Q_jt   -> Q_jt = mixer_c(Q^c_i at the taken actions, s)          (optional: ResQ)

Target: TD(lambda) return y from the target copy of the bootstrap head (Q_jt when there is a central
network, else Q_tot), evaluated at the greedy actions of the current agents (double Q).
Losses (masked means over filled steps):
    loss_td = (Q_tot + w_r Q_r - y)^2, with w_r = 0 where every agent took its greedy action, else 1
              (plain (Q_tot - y)^2 without a residual; times a weight w(s, u) with a `td_weighting`)
    loss_jt = (Q_jt - y)^2, only with a central network.
The step minimises sum_k loss_weights[k] * loss_k (weights default to 1).
VDN and QMIX are this module without residual and central; ResQ is it with both
(`papers/resq_neurips2022.md` Sec. 4.3, SPEC.md "ResQ"); Weighted QMIX is QMIX with a central Q* and a
`td_weighting`; IQL is it without a main function (each agent regresses its own Q_i on the team target).
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn

from envs import EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.data.exploration import epsilon_greedy, masked_argmax
from resq.learners.errors import IncompatibleComponentsError, NonFiniteLossError
from resq.learners.evaluation import AnnealedLearningRate, TestMetrics
from resq.nn.joint import JointValue, all_joint_actions, gather_actions
from resq.nn.returns import td_lambda_returns
from resq.nn.weighting import TDWeighting


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of x over the entries where mask is 1 (mask broadcasts against x)."""
    mask = mask.expand_as(x)
    return (x * mask).sum() / mask.sum().clamp_min(1.0)


def residual_mask(actions: torch.Tensor, greedy: torch.Tensor) -> torch.Tensor:
    """w_r (*, 1): 0 where every agent's action equals its greedy action, else 1. No gradient flows."""
    return (actions != greedy).any(dim=-1, keepdim=True).float()


def build_mixer(factory: Callable[..., nn.Module], spec: EnvSpec) -> nn.Module:
    """`factory(n_agents=, state_dim=)`, plus `n_actions=` for mixers whose constructor takes it (QPLEX)."""
    kwargs = {"n_agents": spec.n_agents, "state_dim": spec.state_dim}
    cls = component_class(factory)
    if "n_actions" in inspect.signature(cls).parameters and "n_actions" not in getattr(factory, "keywords", {}):
        kwargs["n_actions"] = spec.n_actions
    return factory(**kwargs)


def component_class(factory: Callable) -> type:
    return factory.func if isinstance(factory, functools.partial) else factory


def check_value_type(expected: str, role: str, factory: Callable) -> None:
    """Expected-value and distributional parts do not mix; fail before training with the fix."""
    cls = component_class(factory)
    found = getattr(cls, "value_type", None)
    if found != expected:
        raise IncompatibleComponentsError(
            f"{role}={cls.__name__} is {'an' if found in ('expected', None) else 'a'} {found or 'unknown'}-value "
            f"component but this algorithm needs {expected}-value parts; expected-value and distributional parts do not mix. "
            f"Fix: {_VALUE_TYPE_FIXES.get(expected, f'pick a {role} from the {expected} options (see conf/{role}/)')}."
        )


# What to do when a part of the other value type is picked, keyed by the algorithm's value type.
_VALUE_TYPE_FIXES = {
    "expected": "keep this algorithm with expected-value parts (e.g. algorithm=resq main_function=qmix, "
                "agent=rnn), or use the part with a distributional algorithm (algorithm=resz, datten, dmix "
                "or ddn, e.g. algorithm=resz main_function=dmix)",
    "distributional": "keep this algorithm with distributional parts (main_function=datten, ddn or dmix; "
                      "agent=iqn; e.g. algorithm=resz main_function=dmix), or use the part with an "
                      "expected-value algorithm (e.g. algorithm=resq main_function=qmix)",
}


class ValueFactorization(TestMetrics, AnnealedLearningRate, pl.LightningModule):
    """Agents + main function (+ residual) (+ central Q_jt), trained by TD(lambda) with target networks.

    Args:
        spec: the environment's facts.
        agent: factory `agent(n_agents=, n_actions=, obs_dim=)` for every recurrent utility network.
        main_function: factory `mixer(n_agents=, state_dim=)` (plus `n_actions=` when the mixer's
            constructor takes it) for Q_tot, or None for independent learners (IQL): no mixing, each
            agent's Q_i is trained on the team target and the joint value is sum_i Q_i.
        optimizer: factory `optimizer(params)`.
        residual_function: factory for the Q_r mixer, or None. Needs `central`.
        central: factory for the Q_jt mixer, or None.
        td_weighting: a weight w(s, u) on loss_td (Weighted QMIX, `resq.nn.weighting`), or None.
        loss_weights: weight of each named loss term in the total (missing names weigh 1).
        gamma, td_lambda: discount and TD(lambda) mixing.
        target_update_interval: episodes between hard target-network updates.
        double_q: pick bootstrap actions with the current agents (True) or the target agents.
        grad_clip: max gradient norm.
        lr_final_fraction: the learning rate falls linearly over env steps from its configured value
            to this fraction of it at t_max (1.0: constant, the papers' default).
        igm_max_states: test states per evaluation on which `test/igm_violation` is measured.
        igm_max_joint_actions: enumerate joint actions up to this many, else sample this many.
    """

    value_type = "expected"
    #: the loss terms `losses` can return; `loss_weights` may name only these.
    loss_names: tuple[str, ...] = ("loss_td", "loss_jt")
    #: how a head is built from an agent network and a mixer (distributional learners swap it)
    joint_value_class: type[nn.Module] = JointValue

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        main_function: Callable[..., nn.Module],
        optimizer: Callable[..., torch.optim.Optimizer],
        residual_function: Callable[..., nn.Module] | None = None,
        central: Callable[..., nn.Module] | None = None,
        gamma: float = 0.99,
        td_lambda: float = 0.6,
        target_update_interval: int = 200,
        double_q: bool = True,
        grad_clip: float = 10.0,
        lr_final_fraction: float = 1.0,
        igm_max_states: int = 256,
        igm_max_joint_actions: int = 4096,
        td_weighting: TDWeighting | None = None,
        loss_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        if residual_function is not None and central is None:
            raise IncompatibleComponentsError(
                "residual_function is set but the algorithm has no central Q_jt for Q_tot + w_r Q_r to track. "
                "Use algorithm=resq (or another algorithm with a central network), or residual_function=none."
            )
        if main_function is None and (residual_function is not None or central is not None):
            raise IncompatibleComponentsError(
                "main_function=none (independent Q-learning) has no Q_tot for a residual or central network to "
                "work with. Use residual_function=none with algorithm=iql, or pick a main_function (qmix, vdn, ...)."
            )
        if td_weighting is not None and td_weighting.uses_central and central is None:
            raise IncompatibleComponentsError(
                f"{type(td_weighting).__name__} needs Q*(s, u_greedy) from a central network, and this algorithm "
                f"has none. Use algorithm=cw_qmix, or set algorithm.central."
            )
        for role, factory in (("agent", agent), ("main_function", main_function),
                              ("residual_function", residual_function), ("central", central)):
            if factory is not None:
                check_value_type(self.value_type, role, factory)
        self.spec = spec
        self.gamma, self.td_lambda = gamma, td_lambda
        self.target_update_interval = target_update_interval
        self.double_q = double_q
        self.grad_clip = grad_clip
        if not 0.0 < lr_final_fraction <= 1.0:
            raise ValueError(f"algorithm.lr_final_fraction must be in (0, 1], got {lr_final_fraction}")
        self.lr_final_fraction = lr_final_fraction
        self.igm_max_states, self.igm_max_joint_actions = igm_max_states, igm_max_joint_actions
        self.optimizer_factory = optimizer
        self.td_weighting = td_weighting
        self.loss_weights = {str(k): float(v) for k, v in (loss_weights or {}).items()}
        unknown = sorted(set(self.loss_weights) - set(self.loss_names))
        if unknown:
            raise ValueError(f"algorithm.loss_weights names unknown loss terms {unknown}; "
                             f"{type(self).__name__} has {list(self.loss_names)}")

        def joint(mixer_factory: Callable[..., nn.Module] | None) -> nn.Module:
            return self.joint_value_class(
                agent(n_agents=spec.n_agents, n_actions=spec.n_actions, obs_dim=spec.obs_dim),
                None if mixer_factory is None else build_mixer(mixer_factory, spec),
            )

        self.nets = nn.ModuleDict({"main": joint(main_function)})
        main_mixer = self.nets["main"].mixer
        if main_mixer is not None and not getattr(main_mixer, "igm", False):
            raise IncompatibleComponentsError(
                f"main_function={type(main_mixer).__name__} (with these arguments) does not keep the agents' greedy "
                f"joint action at the argmax of Q_tot (IGM), so greedy agents would not follow it. Use a monotonic "
                f"main_function (qmix, vdn, qatten with softmax=true, or qplex; datten, ddn or dmix for a "
                f"distributional algorithm)."
            )
        if residual_function is not None:
            self.nets["residual"] = joint(residual_function)
        if central is not None:
            self.nets["central"] = joint(central)
        self.target_nets = copy.deepcopy(self.nets).requires_grad_(False)
        self._last_target_update = 0

        self.init_test_metrics()

    # ---- heads -------------------------------------------------------------------------------
    @property
    def joint_head(self) -> str:
        """The network whose value is the method's joint value: Q_jt if there is one, else Q_tot."""
        return "central" if "central" in self.nets else "main"

    @property
    def joint_value_name(self) -> str:
        """What `joint_values`' q_joint is, for result files: Q_jt, Q_tot, or sum_i Q_i (no mixer)."""
        if self.joint_head == "central":
            return "Q_jt"
        return "Q_tot" if self.nets["main"].mixer is not None else "sum_i Q_i"

    def utilities(self, nets: nn.ModuleDict, head: str, batch: EpisodeBatch) -> torch.Tensor:
        """(B, T+1, N, A) utilities of `head`'s agent network over the whole batch."""
        return nets[head].utilities(batch.obs, batch.prev_actions_onehot)

    def current_utilities(self, nets: nn.ModuleDict, head: str, batch: EpisodeBatch) -> torch.Tensor:
        """(B, T, N, A) = `batch.current(utilities(...))`, without running the agent on row T: an agent's
        utility at row t depends on rows <= t only (recurrent or feed-forward agents alike)."""
        return nets[head].utilities(batch.current(batch.obs), batch.current(batch.prev_actions_onehot))

    def following_utilities(self, nets: nn.ModuleDict, head: str, batch: EpisodeBatch) -> torch.Tensor:
        """(B, T, N, A) = `batch.following(utilities(...))`; a feed-forward agent (`recurrent = False`)
        skips row 0, a recurrent one needs it for its hidden state."""
        if getattr(getattr(nets[head], "agent", None), "recurrent", True):
            return batch.following(self.utilities(nets, head, batch))
        return nets[head].utilities(batch.following(batch.obs), batch.following(batch.prev_actions_onehot))

    def residual_value(
        self, q_r: torch.Tensor, actions: torch.Tensor, state: torch.Tensor, avail: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Q_r = -|mixer_r(...)| <= 0 (*, 1)."""
        return -self.nets["residual"](q_r, actions, state, avail).abs()

    # ---- acting (the collector's Policy) -----------------------------------------------------
    def initial_state(self, batch_size: int) -> torch.Tensor:
        return self.nets["main"].agent.initial_state(batch_size)

    def act(self, obs, prev_actions_onehot, avail, hidden, epsilon, generator):
        if torch.is_grad_enabled():  # the collector acts under no_grad already; a decorator would cost ~5 us a step
            with torch.no_grad():
                return self.act(obs, prev_actions_onehot, avail, hidden, epsilon, generator)
        agent = self.nets["main"].agent
        if getattr(agent, "act_step", None) is not None:  # one step without the time axis (the same numbers)
            q, hidden = agent.act_step(obs, prev_actions_onehot, hidden)  # (B, N, A)
        else:
            q, hidden = agent(obs[:, None], prev_actions_onehot[:, None], hidden)  # (B, 1, N, A)
            q = q[:, 0]
        return epsilon_greedy(q, avail, epsilon, generator), hidden

    # ---- training ----------------------------------------------------------------------------
    @torch.no_grad()
    def td_targets(self, batch: EpisodeBatch, q_main: torch.Tensor) -> torch.Tensor:
        """y (B, T, 1): TD(lambda) from the target bootstrap head at the greedy next actions."""
        head = self.joint_head
        if self.double_q:
            chooser = batch.following(q_main)  # (B, T, N, A)
        else:
            chooser = self.following_utilities(self.target_nets, "main", batch)  # (B, T, N, A)
        greedy_next = masked_argmax(chooser, batch.following(batch.avail))  # (B, T, N)
        q_next = self.following_utilities(self.target_nets, head, batch)  # (B, T, N, A)
        next_value = self.target_nets[head](
            q_next, greedy_next, batch.following(batch.state), batch.following(batch.avail)
        )  # (B, T, 1), or (B, T, N) for independent learners
        return td_lambda_returns(batch.reward, batch.terminated, batch.mask, next_value, self.gamma, self.td_lambda)

    def losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions  # (B, T, 1), (B, T, N)
        state, avail = batch.current(batch.state), batch.current(batch.avail)  # (B, T, S), (B, T, N, A)
        q = self.utilities(self.nets, "main", batch)  # (B, T+1, N, A)
        q_t = batch.current(q)  # (B, T, N, A)
        q_tot = self.nets["main"](q_t, actions, state, avail)  # (B, T, 1), or (B, T, N) without a mixer
        y = self.td_targets(batch, q.detach())  # like q_tot
        out: dict[str, torch.Tensor] = {}
        q_pred = q_tot
        # the agents' greedy actions (B, T, N): only the residual mask and a TD weighting read them
        greedy = masked_argmax(q_t.detach(), avail) if "residual" in self.nets or self.td_weighting is not None else None
        if "residual" in self.nets:
            w_r = residual_mask(actions, greedy)  # (B, T, 1)
            q_r = self.residual_value(self.current_utilities(self.nets, "residual", batch), actions, state, avail)
            q_pred = q_tot + w_r * q_r
            out["q_r_mean"] = masked_mean(q_r.detach(), mask)
        td_error_sq = (q_pred - y) ** 2
        q_central = None
        if "central" in self.nets:
            q_central = self.current_utilities(self.nets, "central", batch)  # (B, T, N, A)
            q_jt = self.nets["central"](q_central, actions, state, avail)  # (B, T, 1)
            out["loss_jt"] = masked_mean((q_jt - y) ** 2, mask)
        if self.td_weighting is not None:
            with torch.no_grad():
                q_star_greedy = None
                if self.td_weighting.uses_central:
                    q_star_greedy = self.nets["central"](q_central, greedy, state, avail)  # (B, T, 1)
                taken_greedy = 1.0 - residual_mask(actions, greedy)  # (B, T, 1)
                w = self.td_weighting(q_pred.detach(), y, taken_greedy, q_star_greedy)  # (B, T, 1)
            out["td_weight_mean"] = masked_mean(w, mask)
            td_error_sq = w * td_error_sq
        out["loss_td"] = masked_mean(td_error_sq, mask)
        return out

    def total_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_k loss_weights[k] * terms[k] over the terms named `loss_*` (other terms are diagnostics)."""
        return sum(self.loss_weights.get(k, 1.0) * v for k, v in terms.items() if k.startswith("loss_"))

    def training_step(self, batch: EpisodeBatch, batch_idx: int) -> torch.Tensor:
        episodes = int(batch.info.get("episodes", 0))
        if episodes - self._last_target_update >= self.target_update_interval:
            self.update_targets()
            self._last_target_update = episodes
        terms = self.losses(batch)
        loss = self.total_loss(terms)
        if not torch.isfinite(loss):
            bad = next((k for k, v in terms.items() if k.startswith("loss_") and not torch.isfinite(v)), "total")
            value = float(terms.get(bad, loss).detach())
            raise NonFiniteLossError(bad, value, int(batch.info.get("t_env", -1)), self.global_step)
        if self.global_step % self.trainer.log_every_n_steps == 0:  # self.log costs ~0.2 ms a call
            self.log_train(batch, {"loss": loss, **terms})
        return loss

    def log_train(self, batch: EpisodeBatch, terms: dict[str, torch.Tensor]) -> None:
        b, info = batch.batch_size, batch.info
        self.log_dict({f"train/{k}": v.detach() for k, v in terms.items()}, batch_size=b)
        self.log_dict(
            {"train/epsilon": info.get("epsilon", math.nan), "train/return_mean": info.get("return_mean", math.nan),
             "t_env": info.get("t_env", 0.0)},
            batch_size=b, prog_bar=True,
        )

    def update_targets(self) -> None:
        self.target_nets.load_state_dict(self.nets.state_dict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.nets.parameters())

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Networks, target networks and the optimizer are Lightning's; these two are the module's own
        # state: the episode count of the last target update and the last evaluation's snapshot (a run
        # resumed from its final checkpoint writes matrix_game.json from it).
        checkpoint["last_target_update"] = self._last_target_update
        checkpoint["snapshot"] = self.snapshot

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._last_target_update = int(checkpoint.get("last_target_update", 0))
        self.snapshot = checkpoint.get("snapshot", {})

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def joint_values(self, batch: EpisodeBatch, rows: torch.Tensor, joint_actions: torch.Tensor) -> dict:
        """Values of joint actions at the observation `rows` (M, 2) of `batch` (pairs b, t).

        `joint_actions` is (J, N), shared by all states. Returns q_agents (M, N, A) (main utilities),
        greedy (M, N) (the agents' greedy joint action), q_joint (M, J) (the joint head's value: Q_jt
        when there is a central network, else Q_tot, or sum_i Q_i without a mixer (IQL); -inf where an
        action is unavailable), q_main
        (M, J) (Q_tot), and q_greedy (M,) (the joint head's value at the greedy joint action).
        """
        b, t = rows.unbind(-1)
        state, avail = batch.state[b, t], batch.avail[b, t]  # (M, S), (M, N, A)
        m = state.shape[0]
        out: dict[str, torch.Tensor] = {}
        for head in dict.fromkeys(["main", self.joint_head]):
            q = self.utilities(self.nets, head, batch)[b, t]  # (M, N, A), or (M, N, A, K) quantiles
            if head == "main":
                q_mean = self.expected_utilities(q)  # (M, N, A)
                out["q_agents"], out["greedy"] = q_mean, masked_argmax(q_mean, avail)
                acts = torch.cat([joint_actions.expand(m, -1, -1), out["greedy"][:, None]], dim=1)  # (M, J+1, N)
                j = acts.shape[1]
                state_j = state[:, None].expand(m, j, state.shape[-1])  # (M, J+1, S)
                avail_j = avail[:, None].expand(m, j, *avail.shape[1:])  # (M, J+1, N, A)
                feasible = gather_actions(avail_j, acts).all(-1)  # (M, J+1)
            value = self.expected_joint(self.nets[head](q[:, None].expand(m, j, *q.shape[1:]), acts, state_j, avail_j))
            value = value.masked_fill(~feasible, float("-inf"))
            key = "q_main" if head == "main" else "q_joint"
            out[key] = value[:, :-1]
            if head == self.joint_head:
                out["q_greedy"] = value[:, -1]
        out.setdefault("q_joint", out["q_main"])
        return out

    @staticmethod
    def expected_utilities(q: torch.Tensor) -> torch.Tensor:
        """The agents' expected utilities (M, N, A) from what `utilities` returns (identity here)."""
        return q

    @staticmethod
    def expected_joint(value: torch.Tensor) -> torch.Tensor:
        """A head's output (M, J, 1) -> its joint value (M, J); without a mixer (IQL) the output is the
        agents' chosen utilities (M, J, N) and the joint value is their sum."""
        return value.sum(-1)

    @torch.no_grad()
    def igm_violation(self, batch: EpisodeBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per test state 1/0: does the joint value's argmax differ from the agents' greedy joint action?

        Joint actions are enumerated when there are at most `igm_max_joint_actions`, else that many are
        sampled (the greedy joint action is always evaluated). Up to `igm_max_states` filled states are
        used. Ties within a relative 1e-5 count as agreement.
        """
        n, a = self.spec.n_agents, self.spec.n_actions
        rows = batch.mask[..., 0].nonzero()  # (M, 2) filled (b, t)
        if rows.shape[0] > self.igm_max_states:
            rows = rows[torch.randperm(rows.shape[0], generator=generator)[: self.igm_max_states]]
        if a**n <= self.igm_max_joint_actions:
            candidates = all_joint_actions(n, a)
        else:
            candidates = torch.randint(a, (self.igm_max_joint_actions, n), generator=generator)
        values = self.joint_values(batch, rows, candidates)
        best, at_greedy = values["q_joint"].max(-1).values, values["q_greedy"]
        return (best > at_greedy + 1e-5 * (1.0 + at_greedy.abs())).float()

    def _snapshot(self, batch: EpisodeBatch) -> dict:
        """Utilities and joint values at the first state of the first test episode (matrix games)."""
        n, a = self.spec.n_agents, self.spec.n_actions
        if a**n > self.igm_max_joint_actions:
            return {}
        values = self.joint_values(batch, torch.zeros(1, 2, dtype=torch.long), all_joint_actions(n, a))
        shape = (a,) * n
        return {
            "q_agents": values["q_agents"][0].tolist(),
            "q_joint": values["q_joint"][0].reshape(shape).tolist(),
            "q_main": values["q_main"][0].reshape(shape).tolist(),
            "greedy_joint_action": values["greedy"][0].tolist(),
        }

