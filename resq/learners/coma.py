"""COMA (Foerster et al., AAAI 2018) as an actor-critic LightningModule, discrete actions only.

Parts (`resq.nn.coma` has the math):
    actor    pi_a: `CategoricalActor` on the `agent` network's GRU features, shared weights
    critic   `AgentCritic` with the other agents' actions: row a is Q(s, (u_-a, .)) (*, N, A)

One training step: the critic regresses every agent's row at the taken joint action on TD(lambda)
returns of the target critic (COMA's lambda = 0.8); then each actor ascends A_a log pi_a(u_a) with the
counterfactual advantage A_a = Q(s, u) - sum_u' pi_a(u') Q(s, (u_-a, u')).

COMA is on-policy: its config keeps the replay buffer exactly one batch large (conf/algorithm/coma.yaml),
so every update learns from the latest rollout's episodes, as the paper's batch of fresh episodes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from envs import DISCRETE, EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.learners.action_kinds import check_action_kind
from resq.learners.actor_critic import ActorCritic
from resq.learners.fop import recurrent_encoder, refuse_mixers
from resq.learners.value_factorization import masked_mean
from resq.nn.actors import CategoricalActor
from resq.nn.coma import AgentCritic, coma_actor_loss, coma_advantages, coma_critic_targets
from resq.nn.fop import categorical_log_probs
from resq.nn.joint import gather_actions


class COMA(ActorCritic):
    """COMA. Args beyond `ActorCritic`'s:

        agent: factory `agent(n_agents=, n_actions=, obs_dim=)` whose GRU features the actor reads.
        critic_hidden_dim: width of the critic's two hidden layers (128).
        td_lambda: the critic's TD(lambda) (0.8 in COMA).
        main_function, residual_function: must be None; the run passes them.
    """

    action_kinds = (DISCRETE,)
    loss_names = ("loss_critic", "loss_actor")
    joint_value_name = "Q"

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        critic_hidden_dim: int = 128,
        td_lambda: float = 0.8,
        main_function: Callable | None = None,
        residual_function: Callable | None = None,
        **kwargs,
    ) -> None:
        refuse_mixers("coma", main_function, residual_function)
        check_action_kind(type(self), spec)  # before building discrete-only parts
        n = spec.n_agents
        actor = CategoricalActor(n, spec.n_actions, spec.obs_dim, encoder=recurrent_encoder(agent, spec))
        critic = AgentCritic(n, spec.n_actions, spec.state_dim, spec.obs_dim, critic_hidden_dim, others_actions=True)
        super().__init__(spec, actor, critic, actor_optimizer, critic_optimizer, **kwargs)
        self.td_lambda = td_lambda

    def critic_values(self, critic: nn.Module, batch: EpisodeBatch) -> torch.Tensor:
        """Q(s_t, (u_-a, .)) (B, T, N, A) at the rows where actions were taken."""
        return critic(batch.current(batch.state), batch.current(batch.obs), self.action_inputs(batch.actions))

    def critic_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions
        q_taken = gather_actions(self.critic_values(self.critic, batch), actions)  # (B, T, N)
        with torch.no_grad():
            target_taken = gather_actions(self.critic_values(self.target_nets["critic"], batch), actions)  # (B, T, N)
            # Q^target(s_{t+1}, u_{t+1}) at step t; 0 where step t+1 was not taken (no next action)
            next_q = torch.zeros_like(target_taken)
            next_q[:, :-1] = target_taken[:, 1:] * mask[:, 1:]
            y = coma_critic_targets(batch.reward, batch.terminated, mask, next_q, self.gamma, self.td_lambda)
        return {"loss_critic": masked_mean((q_taken - y) ** 2, mask)}

    def actor_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions
        logits = batch.current(self.policy_params(self.nets, batch))  # (B, T, N, A)
        log_pi = categorical_log_probs(logits, batch.current(batch.avail))
        with torch.no_grad():
            advantages = coma_advantages(self.critic_values(self.critic, batch), log_pi.exp(), actions)  # (B, T, N)
        return {
            "loss_actor": coma_actor_loss(gather_actions(log_pi, actions), advantages, mask),
            "advantage_mean": masked_mean(advantages, mask),
        }

    @torch.no_grad()
    def joint_q(self, batch: EpisodeBatch, rows: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """Q(s, u) (M, J): every agent's row of the critic estimates it; their mean."""
        b, t = rows.unbind(-1)
        m, j = joint_actions.shape[:2]
        state = batch.state[b, t][:, None].expand(m, j, -1)  # (M, J, S)
        obs = batch.obs[b, t][:, None].expand(m, j, -1, -1)  # (M, J, N, O)
        q = self.critic(state, obs, self.action_inputs(joint_actions))  # (M, J, N, A)
        return gather_actions(q, joint_actions).mean(-1)
