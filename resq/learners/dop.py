"""DOP (Wang et al., ICLR 2021) as an actor-critic LightningModule: stochastic (discrete) and
deterministic (continuous) decomposed policy gradients with an off-policy linear critic.

Parts (`resq.nn.dop` has the math):
    actor    discrete: `CategoricalActor`; continuous: `DeterministicActor` (DOP's deterministic version,
             FOP eq. 3, exploring with the base's Gaussian noise); both on the `agent` network's GRU features
    critic   q      individual critics Q_i(s, o_i, .) (`AgentCritic` without the others' actions, (*, N, A))
                    or Q_i(s, o_i, u_i) (`AgentActionCritic`, continuous)
             mixer  `DOPMixer`: Q_tot = sum_i k_i(s) Q_i + b(s), k_i >= 0

Critic targets. Discrete: tree-backup(lambda) returns from replayed episodes (DOP's stochastic,
off-policy critic): G_t = r_t + gamma [E_pi Q_tot^target(s_{t+1}) + lambda pi_jt(u_{t+1}) (G_{t+1} -
Q_tot^target(s_{t+1}, u_{t+1}))], where E_pi Q_tot = sum_i k_i E_{pi_i} Q_i + b by linearity.
Continuous: the one-step target r + gamma Q_tot^target(s', mu^target(tau')), as DDPG (a deterministic
policy has no probability for tree-backup's traces).

Actors. Discrete: the decomposed policy gradient sum_i k_i sum_u grad pi_i(u) (Q_i(u) - b_i) with its
expectation over each agent's own action taken exactly (`resq.nn.dop.dop_actor_loss`); continuous:
sum_i k_i grad_u Q_i at u_i = mu_i(tau_i).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from envs import CONTINUOUS, DISCRETE, EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.learners.actor_critic import ActorCritic
from resq.learners.fop import recurrent_encoder, refuse_mixers
from resq.learners.value_factorization import masked_mean
from resq.nn.actors import CategoricalActor, DeterministicActor
from resq.nn.coma import AgentCritic
from resq.nn.dop import (
    AgentActionCritic,
    DOPMixer,
    dop_actor_loss,
    dop_deterministic_actor_loss,
    tree_backup_targets,
)
from resq.nn.fop import categorical_log_probs
from resq.nn.joint import gather_actions
from resq.nn.returns import td_lambda_returns


def next_step(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Step-aligned x (B, T, *) -> x at step t+1, where step t+1 was taken, else 0 (B, T, *)."""
    out = torch.zeros_like(x)
    out[:, :-1] = x[:, 1:] * mask[:, 1:]
    return out


class DOP(ActorCritic):
    """DOP. Args beyond `ActorCritic`'s:

        agent: factory `agent(n_agents=, n_actions=, obs_dim=)` whose GRU features the actor reads.
        critic_hidden_dim: width of the individual critics' two hidden layers.
        mixer_hidden_dim: width of k(s)'s and b(s)'s hidden layer.
        tb_lambda: tree-backup's lambda (discrete).
        main_function, residual_function: must be None; the run passes them.
    """

    action_kinds = (DISCRETE, CONTINUOUS)
    loss_names = ("loss_critic", "loss_actor")
    joint_value_name = "Q_tot"

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        critic_hidden_dim: int = 128,
        mixer_hidden_dim: int = 64,
        tb_lambda: float = 0.8,
        main_function: Callable | None = None,
        residual_function: Callable | None = None,
        **kwargs,
    ) -> None:
        refuse_mixers("dop", main_function, residual_function)
        n = spec.n_agents
        encoder = recurrent_encoder(agent, spec)
        if spec.discrete:
            actor = CategoricalActor(n, spec.n_actions, spec.obs_dim, encoder=encoder)
            q = AgentCritic(n, spec.n_actions, spec.state_dim, spec.obs_dim, critic_hidden_dim, others_actions=False)
        else:
            actor = DeterministicActor(n, spec.action_dim, spec.obs_dim, spec.action_low, spec.action_high,
                                       encoder=encoder)
            q = AgentActionCritic(n, spec.action_dim, spec.state_dim, spec.obs_dim, spec.action_low, spec.action_high,
                                  critic_hidden_dim)
        critic = nn.ModuleDict({"q": q, "mixer": DOPMixer(n, spec.state_dim, mixer_hidden_dim)})
        super().__init__(spec, actor, critic, actor_optimizer, critic_optimizer, **kwargs)
        if not 0.0 <= tb_lambda <= 1.0:
            raise ValueError(f"algorithm.tb_lambda must be in [0, 1], got {tb_lambda}")
        self.tb_lambda = tb_lambda

    # ---- critic ----------------------------------------------------------------------------------
    def agent_values(self, nets: nn.ModuleDict, state: torch.Tensor, obs: torch.Tensor,
                     actions: torch.Tensor | None = None) -> torch.Tensor:
        """Q_i: (*, N, A) for discrete actions, (*, N) at `actions` (*, N, D) for continuous ones."""
        if self.spec.discrete:
            return nets["critic"]["q"](state, obs)
        return nets["critic"]["q"](state, obs, actions)

    def critic_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions
        state, obs = batch.current(batch.state), batch.current(batch.obs)
        mixer, target_mixer = self.critic["mixer"], self.target_nets["critic"]["mixer"]
        with torch.no_grad():
            if self.spec.discrete:
                target_q = self.agent_values(self.target_nets, batch.state, batch.obs)  # (B, T+1, N, A)
                pi = categorical_log_probs(self.policy_params(self.nets, batch), batch.avail).exp()
                q_tot_taken = target_mixer(gather_actions(batch.current(target_q), actions), state)  # (B, T, 1)
                v = target_mixer((pi * target_q).sum(-1), batch.state)  # E_pi Q_tot^target (B, T+1, 1)
                pi_jt_taken = gather_actions(batch.current(pi), actions).prod(-1, keepdim=True)  # (B, T, 1)
                y = tree_backup_targets(batch.reward, batch.terminated, mask, next_step(q_tot_taken, mask),
                                        batch.following(v), next_step(pi_jt_taken, mask), self.gamma, self.tb_lambda)
            else:
                next_actions = batch.following(self.policy_params(self.target_nets, batch))  # mu^target (B, T, N, D)
                next_state = batch.following(batch.state)
                q_next = self.agent_values(self.target_nets, next_state, batch.following(batch.obs), next_actions)
                y = td_lambda_returns(batch.reward, batch.terminated, mask, target_mixer(q_next, next_state),
                                      self.gamma, 0.0)
        if self.spec.discrete:
            q_taken = gather_actions(self.agent_values(self.nets, state, obs), actions)  # (B, T, N)
        else:
            q_taken = self.agent_values(self.nets, state, obs, actions)
        q_tot = mixer(q_taken, state)  # (B, T, 1)
        return {"loss_critic": masked_mean((q_tot - y) ** 2, mask),
                "k_mean": masked_mean(mixer.coefficients(state).detach(), mask)}

    def actor_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask = batch.mask
        state, obs = batch.current(batch.state), batch.current(batch.obs)
        params = batch.current(self.policy_params(self.nets, batch))  # (B, T, N, P), with gradient
        k = self.critic["mixer"].coefficients(state)  # (B, T, N)
        if self.spec.discrete:
            pi = categorical_log_probs(params, batch.current(batch.avail)).exp()
            with torch.no_grad():
                q_i = self.agent_values(self.nets, state, obs)  # (B, T, N, A)
            return {"loss_actor": dop_actor_loss(pi, q_i, k, mask)}
        q_i = self.agent_values(self.nets, state, obs, params)  # params are the actions mu(tau) here
        return {"loss_actor": dop_deterministic_actor_loss(q_i, k, mask)}

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def joint_q(self, batch: EpisodeBatch, rows: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """Q_tot (M, J) at observation rows (M, 2) for joint actions (M, J, N[, D])."""
        b, t = rows.unbind(-1)
        m, j = joint_actions.shape[:2]
        state = batch.state[b, t][:, None].expand(m, j, -1)  # (M, J, S)
        obs = batch.obs[b, t][:, None].expand(m, j, -1, -1)  # (M, J, N, O)
        if self.spec.discrete:
            q_taken = gather_actions(self.agent_values(self.nets, state, obs), joint_actions)  # (M, J, N)
        else:
            q_taken = self.agent_values(self.nets, state, obs, joint_actions)
        return self.critic["mixer"](q_taken, state)[..., 0]

    @torch.no_grad()
    def agent_q(self, batch: EpisodeBatch, rows: torch.Tensor) -> torch.Tensor | None:
        """The individual critics Q_i (M, N, A) at the rows (discrete), for the matrix table."""
        if not self.spec.discrete:
            return None
        b, t = rows.unbind(-1)
        return self.agent_values(self.nets, batch.state[b, t], batch.obs[b, t])
