"""MADDPG (Lowe et al., NeurIPS 2017) and FacMADDPG (de Witt et al. 2020, arXiv:2003.06709), as the FOP
paper (`papers/fop_icml2021.md` Sec. 5.1) uses them as baselines, on the `ActorCritic` base.

    actors   decentralised: mu_i(tau_i) (continuous, deterministic) or a categorical policy whose
             Gumbel-softmax sample stands for the action in the gradient (MADDPG's discrete variant)
    critic   MADDPG: one centralised Q(s, u_1, ..., u_N) (`CentralCritic`; the team shares one reward);
             FacMADDPG: Q_tot = QMIX(Q_1(tau_1, u_1), ..., Q_N(tau_N, u_N), s) (`FactoredCritic`)
    critic loss   (Q(s_t, u_t) - y_t)^2,  y_t = r_t + gamma (1 - d_t) Q'(s_{t+1}, u'_{t+1})
                  with u' from the target actors (continuous: mu'; discrete: one-hot Gumbel-softmax
                  samples of the target policies), TD(lambda) with lambda = `td_lambda` (0: one step)
    actor loss    -sum_i Q(s, u_1, ..., mu_i(tau_i), ..., u_N) / N: agent i's own action from its policy,
                  the others' from the replay buffer (MADDPG's gradient; FacMADDPG keeps it); discrete
                  actors add `logit_reg` * mean(logits^2) (MADDPG's regulariser)
    targets       soft updates with `tau` for critic and actors

FacMADDPG differs from MADDPG only in the critic: `main_function` is its mixer (algorithm=facmaddpg sets
qmix; algorithm=maddpg sets none, the centralised critic). Configs: conf/algorithm/{maddpg,facmaddpg}.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from envs import EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.learners.actor_critic import ActorCritic
from resq.learners.errors import IncompatibleComponentsError
from resq.learners.value_factorization import build_mixer, check_value_type, masked_mean
from resq.nn.actors import CategoricalActor, DeterministicActor, RecurrentActor
from resq.nn.critics import AgentQ, CentralCritic, FactoredCritic, counterfactual_joint_actions
from resq.nn.returns import td_lambda_returns


def build_actor(spec: EnvSpec, agent: Callable[..., nn.Module], **kwargs: Any) -> RecurrentActor:
    """The env's kind of actor on a fresh encoder from the `agent` factory (its GRU features):
    `CategoricalActor` (discrete) or `DeterministicActor` (continuous box)."""
    encoder = agent(n_agents=spec.n_agents, n_actions=spec.action_input_dim, obs_dim=spec.obs_dim)
    encoder.fc_out = nn.Identity()  # the actor's head replaces the utility layer
    if spec.discrete:
        return CategoricalActor(spec.n_agents, spec.n_actions, spec.obs_dim, encoder=encoder, **kwargs)
    return DeterministicActor(spec.n_agents, spec.action_dim, spec.obs_dim, spec.action_low, spec.action_high,
                              encoder=encoder, **kwargs)


def build_factored_critic(spec: EnvSpec, agent: Callable[..., nn.Module], mixer: Callable[..., nn.Module],
                          q_hidden_dim: int = 64) -> FactoredCritic:
    """Q_tot = mixer(Q_a(tau_a, u_a), s) with a fresh agent network from `agent` and the `mixer` factory."""
    network = agent(n_agents=spec.n_agents, n_actions=spec.action_input_dim, obs_dim=spec.obs_dim)
    return FactoredCritic(AgentQ(network, spec.action_dim, q_hidden_dim), build_mixer(mixer, spec))


def check_parts(method: str, agent: Callable, residual_function: Callable | None) -> None:
    """Actor-critic methods take an expected-value recurrent agent and no residual function."""
    check_value_type("expected", "agent", agent)
    if residual_function is not None:
        raise IncompatibleComponentsError(
            f"{method} has no residual function (it has no Q_tot + w_r Q_r to correct). Use residual_function=none.")


class MADDPG(ActorCritic):
    """Args (beyond `ActorCritic`'s):
        agent: factory of the recurrent network (`RNNAgent`) behind every actor and every per-agent
            critic utility (`conf/agent/rnn.yaml`: fc 64 -> GRU 64).
        main_function: None for MADDPG's centralised critic; a mixer factory (QMIX for FacMADDPG) for a
            factored critic Q_tot = mixer(Q_a(tau_a, u_a), s).
        residual_function: must be None.
        actor: keyword arguments of the actor's head (`head_hidden`, `per_agent`).
        central_critic: keyword arguments of `CentralCritic` (`hidden_dim`, `n_layers`).
        q_hidden_dim: width of the per-agent Q head on [h, u] (continuous factored critics).
        td_lambda: lambda of the critic's TD(lambda) target (0: MADDPG's one-step target).
        gumbel_temperature: temperature of the Gumbel-softmax samples (discrete actions).
        logit_reg: weight of mean(logits^2) in the discrete actor loss.
    """

    loss_names = ("loss_critic", "loss_actor", "loss_logit_reg")

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        main_function: Callable[..., nn.Module] | None,
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        residual_function: Callable[..., nn.Module] | None = None,
        actor: dict[str, Any] | None = None,
        central_critic: dict[str, Any] | None = None,
        q_hidden_dim: int = 64,
        td_lambda: float = 0.0,
        gumbel_temperature: float = 1.0,
        logit_reg: float = 1e-3,
        **kwargs: Any,
    ) -> None:
        check_parts(type(self).__name__, agent, residual_function)
        if gumbel_temperature <= 0:
            raise ValueError(f"algorithm.gumbel_temperature must be > 0, got {gumbel_temperature}")
        if main_function is None:
            critic = CentralCritic(spec.n_agents, spec.state_dim, spec.action_input_dim, **dict(central_critic or {}))
        else:
            critic = build_factored_critic(spec, agent, main_function, q_hidden_dim)
        super().__init__(spec, build_actor(spec, agent, **dict(actor or {})), critic, actor_optimizer,
                         critic_optimizer, **kwargs)
        self.td_lambda, self.gumbel_temperature, self.logit_reg = td_lambda, gumbel_temperature, logit_reg

    @property
    def joint_value_name(self) -> str:
        return "Q_tot" if isinstance(self.critic, FactoredCritic) else "Q_jt"

    def policy_inputs(self, params: torch.Tensor, avail: torch.Tensor, hard: bool) -> torch.Tensor:
        """The actors' actions as critic inputs (*, N, W): Gumbel-softmax samples (one-hot when `hard`) for
        discrete actions, the deterministic actions for continuous ones."""
        if self.spec.discrete:
            return self.actor.relaxed_sample(params, avail, self.gumbel_temperature, hard=hard)
        return params

    def critic_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        state = batch.current(batch.state)  # (B, T, S)
        features = batch.current(self.critic.features(batch.obs, batch.prev_actions))  # (B, T, N, H)
        q = self.critic(features, state, self.action_inputs(batch.actions))  # (B, T, 1)
        with torch.no_grad():
            target_params = batch.following(self.policy_params(self.target_nets, batch))  # (B, T, N, P)
            next_inputs = self.policy_inputs(target_params, batch.following(batch.avail), hard=True)  # (B, T, N, W)
            target_critic = self.target_nets["critic"]
            next_features = batch.following(target_critic.features(batch.obs, batch.prev_actions))  # (B, T, N, H)
            next_q = target_critic(next_features, batch.following(batch.state), next_inputs)  # (B, T, 1)
            y = td_lambda_returns(batch.reward, batch.terminated, batch.mask, next_q, self.gamma, self.td_lambda)
        return {"loss_critic": masked_mean((q - y) ** 2, batch.mask), "q_mean": masked_mean(q.detach(), batch.mask)}

    def actor_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        n = self.spec.n_agents
        params = batch.current(self.policy_params(self.nets, batch))  # (B, T, N, P)
        own = self.policy_inputs(params, batch.current(batch.avail), hard=False)  # (B, T, N, W)
        joint = counterfactual_joint_actions(self.action_inputs(batch.actions), own)  # (B, T, N, N, W)
        with torch.no_grad():
            features = batch.current(self.critic.features(batch.obs, batch.prev_actions))  # (B, T, N, H)
        features = features[:, :, None].expand(-1, -1, n, -1, -1)  # (B, T, N, N, H)
        state = batch.current(batch.state)[:, :, None].expand(-1, -1, n, -1)  # (B, T, N, S)
        q = self.critic(features, state, joint)[..., 0]  # (B, T, N): row i = agent i's policy action
        terms = {"loss_actor": -masked_mean(q, batch.mask)}
        if self.spec.discrete and self.logit_reg > 0:
            terms["loss_logit_reg"] = self.logit_reg * masked_mean((params**2).mean(-1), batch.mask)
        return terms
