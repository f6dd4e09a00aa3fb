"""The base LightningModule of the actor-critic methods (NQMIX, MADDPG, FacMADDPG; FOP, COMA, DOP).

It owns what those methods share and leaves each its losses:

    actor   a policy network from `resq.nn.actors` (stochastic or deterministic; discrete or continuous)
    critic  any nn.Module (an nn.ModuleDict for several parts), read only by the subclass's losses
    targets a copy of both, `target_nets`, moved towards the live networks by soft updates
            theta' <- tau theta + (1 - tau) theta' every `target_update_interval` training steps
    updates manual optimisation: per training step, for each name in `update_order` (("critic", "actor")
            by default): terms = self.<name>_losses(batch); loss = sum of the weighted `loss_*` terms;
            zero_grad, backward, clip the gradient norm to `grad_clip`, step that name's optimiser.
            The actor updates every `actor_update_interval` steps.
    acting  the collector's `Policy`: in training rollouts stochastic actors sample, deterministic
            continuous ones add Gaussian noise (`exploration_noise` x half the box), and with
            probability epsilon an agent acts uniformly at random (the data module's schedule); in
            evaluation rollouts (the module in eval mode) every actor acts greedily / deterministically.
    testing the value factorization family's test metrics (`test/return_mean`, `test/return_std`,
            `test/ep_length_mean`, `test/igm_violation`, `test/battle_won_mean`), plus
            `test/joint_action_<i>` (continuous envs: agent i's deterministic action at the first test
            state); a snapshot for `matrix_game.json` (discrete one-step games) and `result_files`
            for an env's own result file (MTQ's `mtq.json`).

A subclass implements (see docs/architecture.md, "Actor-critic methods"):

    __init__          build the actor and critic, then call super().__init__(spec, actor, critic, ...)
    critic_losses(batch) -> dict[str, Tensor]   terms named `loss_*` are minimised, others are logged
    actor_losses(batch)  -> dict[str, Tensor]
and, unless its critic follows the `resq.nn.critics` contract (features, forward), for which the
defaults work:
    joint_q(batch, rows, joint_actions) -> (M, J)   the method's joint Q at the observation rows (M, 2)
                      (pairs b, t) of `batch` for J joint actions per state, (M, J, N) long (discrete)
                      or (M, J, N, D) float (continuous)
It may override `agent_q` (per-agent utilities for the matrix table), `parameter_groups` (which
parameters each optimiser steps), `policy_params` (how the actor reads a batch) and, for an extra
update (a learned temperature), add a name to `update_order` with its optimiser factory in
`optimizer_factories` and a `<name>_losses` method.

Time alignment stays in the buffer: losses read `batch.current(x)` / `batch.following(x)`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from envs import CONTINUOUS, DISCRETE, EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.data.exploration import box_exploration, epsilon_uniform
from resq.learners.action_kinds import check_action_kind
from resq.learners.errors import IncompatibleComponentsError, NonFiniteLossError
from resq.learners.evaluation import AnnealedLearningRate, TestMetrics
from resq.nn.joint import all_joint_actions, gather_actions


class ActorCritic(TestMetrics, AnnealedLearningRate, pl.LightningModule):
    """Actor + critic with target copies, trained by manual optimisation with one optimiser each.

    Args:
        spec: the environment's facts.
        actor: the policy network (the `resq.nn.actors` contract).
        critic: the critic module(s).
        actor_optimizer, critic_optimizer: factories `optimizer(params)` (Hydra `_partial_`).
        gamma: discount.
        tau: soft target-update rate (1.0: copy).
        target_update_interval: training steps between target updates.
        actor_update_interval: training steps between actor updates (the critic updates every step).
        grad_clip: max gradient norm of every update.
        exploration_noise: Gaussian noise std of deterministic continuous actors in training rollouts,
            as a fraction of half the action box.
        lr_final_fraction: every learning rate falls linearly over env steps to this fraction of its
            configured value at t_max (1.0: constant).
        loss_weights: weight of each named `loss_*` term (missing names weigh 1).
        igm_max_states: test states per evaluation for `test/igm_violation`.
        igm_max_joint_actions: enumerate joint actions up to this many (discrete), else sample this many
            (uniformly over available actions, or over the box for continuous actions).
    """

    value_type = "expected"
    #: the action kinds a subclass's losses handle; the run is refused on an env of another kind
    action_kinds: tuple[str, ...] = (DISCRETE, CONTINUOUS)
    #: the updates of one training step, in order; each needs an optimiser and a `<name>_losses` method
    update_order: tuple[str, ...] = ("critic", "actor")
    #: the loss terms the methods return, for validating `loss_weights`
    loss_names: tuple[str, ...] = ()
    #: what `joint_q` is, for result files
    joint_value_name = "Q_jt"

    def __init__(
        self,
        spec: EnvSpec,
        actor: nn.Module,
        critic: nn.Module,
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        gamma: float = 0.99,
        tau: float = 0.001,
        target_update_interval: int = 1,
        actor_update_interval: int = 1,
        grad_clip: float = 10.0,
        exploration_noise: float = 0.1,
        lr_final_fraction: float = 1.0,
        loss_weights: dict[str, float] | None = None,
        igm_max_states: int = 256,
        igm_max_joint_actions: int = 4096,
    ) -> None:
        super().__init__()
        check_action_kind(type(self), spec)
        if getattr(actor, "action_kind", None) != spec.action_kind:
            raise IncompatibleComponentsError(
                f"{type(self).__name__}: the actor {type(actor).__name__} acts in the "
                f"{getattr(actor, 'action_kind', None) or 'unknown'} action kind but the env has "
                f"{spec.describe_actions()}; build a {spec.action_kind} actor for it."
            )
        if not 0.0 < tau <= 1.0:
            raise ValueError(f"algorithm.tau must be in (0, 1], got {tau}")
        for name, value in (("target_update_interval", target_update_interval),
                            ("actor_update_interval", actor_update_interval)):
            if value < 1:
                raise ValueError(f"algorithm.{name} must be >= 1, got {value}")
        if not 0.0 < lr_final_fraction <= 1.0:
            raise ValueError(f"algorithm.lr_final_fraction must be in (0, 1], got {lr_final_fraction}")
        if exploration_noise < 0 or not math.isfinite(exploration_noise):
            raise ValueError(f"algorithm.exploration_noise must be a finite number >= 0, got {exploration_noise}")
        self.automatic_optimization = False
        self.spec = spec
        self.gamma, self.tau = gamma, tau
        self.target_update_interval, self.actor_update_interval = target_update_interval, actor_update_interval
        self.grad_clip = grad_clip
        self.exploration_noise = exploration_noise
        self.lr_final_fraction = lr_final_fraction
        self.igm_max_states, self.igm_max_joint_actions = igm_max_states, igm_max_joint_actions
        self.loss_weights = {str(k): float(v) for k, v in (loss_weights or {}).items()}
        unknown = sorted(set(self.loss_weights) - set(self.loss_names))
        if unknown:
            raise ValueError(f"algorithm.loss_weights names unknown loss terms {unknown}; "
                             f"{type(self).__name__} has {list(self.loss_names)}")
        self.optimizer_factories: dict[str, Callable[..., torch.optim.Optimizer]] = {
            "critic": critic_optimizer, "actor": actor_optimizer}

        self.nets = nn.ModuleDict({"actor": actor, "critic": critic})
        # One deepcopy of both, so a module the actor shares with the critic (NQMIX's agent network)
        # stays shared in the targets.
        self.target_nets = copy.deepcopy(self.nets).requires_grad_(False)
        if not spec.discrete:
            self.register_buffer("action_low", torch.tensor(spec.action_low), persistent=False)
            self.register_buffer("action_high", torch.tensor(spec.action_high), persistent=False)
        self.n_updates = 0
        self._optimizer_names: list[str] = []

        self.init_test_metrics()

    # ---- parts -------------------------------------------------------------------------------
    @property
    def actor(self) -> nn.Module:
        return self.nets["actor"]

    @property
    def critic(self) -> nn.Module:
        return self.nets["critic"]

    def policy_params(self, nets: nn.ModuleDict, batch: EpisodeBatch) -> torch.Tensor:
        """The actor's params (B, T+1, N, P) at every observation row of `batch` (live or target `nets`)."""
        return nets["actor"](batch.obs, batch.prev_actions)[0]

    def action_inputs(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as critic inputs (*, N, W): one-hot floats (discrete) or the vectors themselves."""
        if self.spec.discrete:
            return F.one_hot(actions, self.spec.n_actions).float()
        return actions

    # ---- acting (the collector's Policy) -----------------------------------------------------
    def initial_state(self, batch_size: int) -> Any:
        return self.actor.initial_state(batch_size)

    @torch.no_grad()
    def act(self, obs, prev_actions_onehot, avail, hidden, epsilon, generator):
        params, hidden = self.actor(obs[:, None], prev_actions_onehot[:, None], hidden)
        params = params[:, 0]  # (B, N, P)
        if not self.training:  # evaluation rollouts: greedy / deterministic
            return self.actor.mode(params, avail), hidden
        actions = self.actor.sample(params, avail, generator) if self.actor.stochastic else self.actor.mode(params, avail)
        if self.spec.discrete:
            return epsilon_uniform(actions, avail, epsilon, generator), hidden
        noise = 0.0 if self.actor.stochastic else self.exploration_noise
        return box_exploration(actions, self.action_low, self.action_high, epsilon, noise, generator), hidden

    # ---- training ----------------------------------------------------------------------------
    def parameter_groups(self) -> dict[str, Iterable[nn.Parameter]]:
        """The parameters each optimiser steps, by update name."""
        return {"critic": self.critic.parameters(), "actor": self.actor.parameters()}

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        groups = {name: list(params) for name, params in self.parameter_groups().items()}
        missing = [name for name in self.update_order if name not in groups or name not in self.optimizer_factories]
        if missing:
            raise IncompatibleComponentsError(f"{type(self).__name__}: updates {missing} have no parameters or "
                                              f"optimiser (parameter_groups / optimizer_factories)")
        seen: dict[int, str] = {}
        for name in self.update_order:
            for p in groups[name]:
                if id(p) in seen:
                    raise IncompatibleComponentsError(
                        f"{type(self).__name__}: a parameter is stepped by both the {seen[id(p)]} and the {name} "
                        f"optimiser; give each parameter to one update (override parameter_groups)")
                seen[id(p)] = name
        self._optimizer_names = list(self.update_order)
        return [self.optimizer_factories[name](groups[name]) for name in self.update_order]

    def total_loss(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_k loss_weights[k] * terms[k] over the `loss_*` terms (others are diagnostics)."""
        return sum(self.loss_weights.get(k, 1.0) * v for k, v in terms.items() if k.startswith("loss_"))

    def update_due(self, name: str) -> bool:
        """Whether update `name` runs at this training step (the actor every actor_update_interval)."""
        return name != "actor" or self.n_updates % self.actor_update_interval == 0

    def training_step(self, batch: EpisodeBatch, batch_idx: int) -> None:
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        named = dict(zip(self._optimizer_names, optimizers))
        logged: dict[str, torch.Tensor] = {}
        for name in self.update_order:
            if not self.update_due(name):
                continue
            terms = getattr(self, f"{name}_losses")(batch)
            loss = self.total_loss(terms)
            if not torch.isfinite(loss):
                bad = next((k for k, v in terms.items() if k.startswith("loss_") and not torch.isfinite(v)), "total")
                value = float(terms.get(bad, loss).detach())
                raise NonFiniteLossError(f"{name} {bad}", value, int(batch.info.get("t_env", -1)), self.n_updates)
            optimizer = named[name]
            optimizer.zero_grad()
            self.manual_backward(loss)
            self.clip_gradients(optimizer, gradient_clip_val=self.grad_clip, gradient_clip_algorithm="norm")
            optimizer.step()
            logged.update({f"{name}/{k}": v.detach() for k, v in terms.items()})
            logged[f"{name}/loss"] = loss.detach()
        self.n_updates += 1
        if self.n_updates % self.target_update_interval == 0:
            self.update_targets()
        if self.n_updates % self.trainer.log_every_n_steps == 0:
            self.log_train(batch, logged)

    def log_train(self, batch: EpisodeBatch, terms: dict[str, torch.Tensor]) -> None:
        b, info = batch.batch_size, batch.info
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, batch_size=b)
        self.log_dict(
            {"train/epsilon": info.get("epsilon", math.nan), "train/return_mean": info.get("return_mean", math.nan),
             "t_env": info.get("t_env", 0.0)},
            batch_size=b, prog_bar=True,
        )

    @torch.no_grad()
    def update_targets(self) -> None:
        """theta' <- tau theta + (1 - tau) theta' for every parameter and buffer of the networks."""
        live = list(self.nets.parameters()) + list(self.nets.buffers())
        target = list(self.target_nets.parameters()) + list(self.target_nets.buffers())
        for t, p in zip(target, live):
            if t.is_floating_point():
                t.lerp_(p, self.tau)
            else:
                t.copy_(p)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["n_updates"] = self.n_updates

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.n_updates = int(checkpoint.get("n_updates", 0))

    # ---- what subclasses implement -------------------------------------------------------------
    def critic_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    def actor_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:  # pragma: no cover
        raise NotImplementedError

    @torch.no_grad()
    def joint_q(self, batch: EpisodeBatch, rows: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """(M, J): the joint Q at observation rows (M, 2) for joint actions (M, J, N[, D]).

        This default serves critics with the `resq.nn.critics` contract (`features`, `forward`); a
        subclass with another critic overrides it."""
        b, t = rows.unbind(-1)
        j = joint_actions.shape[1]
        features = self.critic.features(batch.obs, batch.prev_actions)[b, t]  # (M, N, H)
        features = features[:, None].expand(-1, j, -1, -1)  # (M, J, N, H)
        state = batch.state[b, t][:, None].expand(-1, j, -1)  # (M, J, S)
        return self.critic(features, state, self.action_inputs(joint_actions))[..., 0]  # (M, J)

    @torch.no_grad()
    def agent_q(self, batch: EpisodeBatch, rows: torch.Tensor) -> torch.Tensor | None:
        """(M, N, A) per-agent utilities Q_i at the rows, or None when the method has none (continuous
        actions, or a critic without an `agent_q` table such as MADDPG's central one)."""
        agent_q = getattr(self.critic, "agent_q", None)
        if not self.spec.discrete or agent_q is None:
            return None
        b, t = rows.unbind(-1)
        return agent_q.utilities(self.critic.features(batch.obs, batch.prev_actions)[b, t])  # (M, N, A)

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def greedy_actions(self, batch: EpisodeBatch, rows: torch.Tensor) -> torch.Tensor:
        """Each agent's greedy / deterministic action at the rows (M, 2): (M, N) or (M, N, D)."""
        b, t = rows.unbind(-1)
        params = self.policy_params(self.nets, batch)[b, t]  # (M, N, P)
        return self.actor.mode(params, batch.avail[b, t])

    def candidate_joint_actions(self, m: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Joint actions (M, J, N[, D]) to compare the greedy one against: every discrete joint action when
        there are at most `igm_max_joint_actions`, else that many uniform draws (from the box when
        continuous)."""
        n, j = self.spec.n_agents, self.igm_max_joint_actions
        if self.spec.discrete:
            a = self.spec.n_actions
            joint = all_joint_actions(n, a) if a**n <= j else torch.randint(a, (j, n), generator=generator)
            return joint.to(self.device).expand(m, -1, -1)
        u = torch.rand(m, j, n, self.spec.action_dim, generator=generator).to(self.device)
        return self.action_low + (self.action_high - self.action_low) * u

    @torch.no_grad()
    def igm_violation(self, batch: EpisodeBatch, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per test state 1/0: does some candidate joint action have a higher joint Q than the agents'
        greedy / deterministic joint action? Ties within a relative 1e-5 count as agreement."""
        rows = batch.mask[..., 0].nonzero()  # (M, 2)
        if rows.shape[0] > self.igm_max_states:
            rows = rows[torch.randperm(rows.shape[0], generator=generator)[: self.igm_max_states]]
        greedy = self.greedy_actions(batch, rows)  # (M, N[, D])
        acts = torch.cat([self.candidate_joint_actions(rows.shape[0], generator), greedy[:, None]], dim=1)
        q = self.joint_q(batch, rows, acts)  # (M, J+1)
        if self.spec.discrete:
            b, t = rows.unbind(-1)
            avail = batch.avail[b, t][:, None].expand(-1, acts.shape[1], -1, -1)  # (M, J+1, N, A)
            q = q.masked_fill(~gather_actions(avail, acts).all(-1), float("-inf"))
        best, at_greedy = q[:, :-1].max(-1).values, q[:, -1]
        return (best > at_greedy + 1e-5 * (1.0 + at_greedy.abs())).float()

    @torch.no_grad()
    def _snapshot(self, batch: EpisodeBatch) -> dict:
        """What the result files need, at the first state of the first test episode: the deterministic
        joint action (continuous), or the joint Q table, utilities and policies (discrete, small)."""
        rows = torch.zeros(1, 2, dtype=torch.long)
        greedy = self.greedy_actions(batch, rows)[0]
        snapshot: dict[str, Any] = {"t_env": int(batch.info.get("t_env", 0))}
        if not self.spec.discrete:
            snapshot["joint_action"] = greedy.tolist()  # (N, D)
            return snapshot
        n, a = self.spec.n_agents, self.spec.n_actions
        if a**n > self.igm_max_joint_actions:
            return snapshot
        q_joint = self.joint_q(batch, rows, all_joint_actions(n, a).to(self.device)[None])[0]  # (A^N,)
        params = self.policy_params(self.nets, batch)[0, 0]  # (N, A)
        policy = self.actor.probs(params, batch.avail[0, 0]) if hasattr(self.actor, "probs") else None
        q_agents = self.agent_q(batch, rows)
        table = q_joint.reshape((a,) * n).tolist()
        snapshot.update({
            "q_joint": table,
            "q_main": table,
            # methods without per-agent utilities (MADDPG's central critic) show each agent's policy
            "q_agents": (q_agents[0] if q_agents is not None else policy).tolist(),
            "policy": None if policy is None else policy.tolist(),
            "greedy_joint_action": greedy.tolist(),
        })
        return snapshot

    def extra_test_metrics(self) -> dict[str, torch.Tensor | float]:
        """Continuous envs: the deterministic joint action of the evaluation (test/joint_action_i)."""
        if "joint_action" in self.snapshot:
            return joint_action_metrics(self.snapshot["joint_action"])
        return {}

    # ---- result files ------------------------------------------------------------------------
    def result_files(self, env, columns: dict[str, Any]) -> dict[str, dict]:
        """Files beyond metrics.csv and matrix_game.json, by name: an env with a `result_file` and a
        `result(joint_action)` (MTQ: mtq.json) gets the final deterministic joint action's record."""
        name = getattr(env, "result_file", None)
        if name is None or "joint_action" not in self.snapshot:
            return {}
        return {name: {**columns, **env.result(self.snapshot["joint_action"]), "t_env": self.snapshot["t_env"]}}


def joint_action_metrics(joint_action: list) -> dict[str, float]:
    """`test/joint_action_<i>` for one-dimensional actions, `test/joint_action_<i>_<d>` otherwise."""
    out = {}
    for i, action in enumerate(joint_action):
        for d, value in enumerate(action):
            out[f"test/joint_action_{i}" if len(action) == 1 else f"test/joint_action_{i}_{d}"] = float(value)
    return out
