"""NQMIX (Chen, "NQMIX: Non-monotonic Value Function Factorization for Deep Multi-Agent Reinforcement
Learning", `papers/nqmix.md`), Algorithms 1 (discrete) and 2 (continuous), and the NQMIX-M ablation.

    critic  Q_tot = mixer(Q_1(tau_1, u_1), ..., Q_N(tau_N, u_N), s): the shared recurrent agent network
            (DRQN: fc 64 -> GRU 64 -> |U|; continuous: a head on [GRU state, u]) and an unconstrained
            mixer: NQMIX's MLP [Q_a, s] -> 32 (N + 4) - N -> 1 (main_function=nqmix), or QMIX's mixer
            without the absolute values (NQMIX-M: main_function=qmix, nonnegative=false)
    actors  one policy per agent (not shared: "agents can reuse the critic network but can't reuse the
            actor policy network"), a ReLU then a linear layer on the agent network's GRU state
            (appendix B), stochastic over |U| (Alg. 1) or deterministic mu_a in the box (Alg. 2)
    critic loss (Alg. 1 lines 8-13, Alg. 2 lines 7-12), delta = r + gamma V'_tot - Q_tot with the target
            networks' state values
                discrete    V'_a = sum_u pi_a(u | tau'_a; theta') Q'_a(tau'_a, u)
                continuous  V'_a = Q'_a(tau'_a, mu'_a(tau'_a))
            and V'_tot = mixer'(V'_1..V'_N, s'); TD(lambda) with lambda = `td_lambda` (0: the paper's)
    actor loss (Alg. 1 line 14, Alg. 2 line 13): for each agent, ascend
                sign(dQ_tot/dQ_a) * I * sum_u pi_a(u | tau_a) Q_a(tau_a, u)        (discrete)
                sign(dQ_tot/dQ_a) * I * Q_a(tau_a, mu_a(tau_a))                    (continuous, DPG)
            with dQ_tot/dQ_a by autograd at the taken actions, I = gamma^t (`discount_actor_steps`) and
            the critic held fixed (the actor optimiser steps the policy heads only)
    targets theta', w'_agent, w'_mixer <- tau . + (1 - tau) . (tau = 0.001), every training step

Behaviour: Alg. 1 samples u ~ pi; Alg. 2 acts with mu (plus `exploration_noise` Gaussian noise in
training rollouts: a deterministic policy without noise never sees the critic's slope around it; the
paper says nothing about exploration). Evaluation is greedy / deterministic.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from envs import EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.learners.actor_critic import ActorCritic
from resq.learners.errors import IncompatibleComponentsError
from resq.learners.maddpg import build_factored_critic, check_parts
from resq.learners.value_factorization import masked_mean
from resq.nn.actors import CategoricalActor, DeterministicActor
from resq.nn.returns import td_lambda_returns


class NQMIX(ActorCritic):
    """Args (beyond `ActorCritic`'s):
        agent: factory of the shared recurrent agent network (`conf/agent/rnn.yaml`).
        main_function: factory of the mixer (`NQMIXMixer`, or `QMixer` with nonnegative=False).
        residual_function: must be None.
        actor: keyword arguments of the policy heads (`head_hidden`, `per_agent`, `relu_first`).
        q_hidden_dim: width of the continuous Q head on [GRU state, u].
        td_lambda: lambda of the critic's target (0: the paper's one-step delta).
        discount_actor_steps: weight step t's policy gradient by I = gamma^t (Alg. 1 lines 5, 15).
    """

    loss_names = ("loss_critic", "loss_actor")

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        main_function: Callable[..., nn.Module] | None,
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        residual_function: Callable[..., nn.Module] | None = None,
        actor: dict[str, Any] | None = None,
        q_hidden_dim: int = 64,
        td_lambda: float = 0.0,
        discount_actor_steps: bool = True,
        **kwargs: Any,
    ) -> None:
        check_parts(type(self).__name__, agent, residual_function)
        if main_function is None:
            raise IncompatibleComponentsError(
                "NQMIX mixes the agents' Q_a into Q_tot and needs a mixer: main_function=nqmix (its MLP), or "
                "algorithm=nqmix_m (QMIX's mixer without the absolute values).")
        critic = build_factored_critic(spec, agent, main_function, q_hidden_dim)
        heads = {"per_agent": True, "relu_first": True, **dict(actor or {})}
        # The policies read the critic's agent network (its GRU state); their loss stops there.
        encoder = critic.agent_q.agent
        if spec.discrete:
            policy = CategoricalActor(spec.n_agents, spec.n_actions, spec.obs_dim, encoder=encoder,
                                      detach_encoder=True, **heads)
        else:
            policy = DeterministicActor(spec.n_agents, spec.action_dim, spec.obs_dim, spec.action_low,
                                        spec.action_high, encoder=encoder, detach_encoder=True, **heads)
        super().__init__(spec, policy, critic, actor_optimizer, critic_optimizer, **kwargs)
        self.td_lambda, self.discount_actor_steps = td_lambda, discount_actor_steps

    @property
    def joint_value_name(self) -> str:
        return "Q_tot"

    def parameter_groups(self) -> dict[str, Iterable[nn.Parameter]]:
        """The critic optimiser steps the agent network and the mixer; the actor optimiser the policy heads."""
        critic = list(self.critic.parameters())
        shared = {id(p) for p in critic}
        return {"critic": critic, "actor": [p for p in self.actor.parameters() if id(p) not in shared]}

    def policy_inputs(self, params: torch.Tensor, avail: torch.Tensor) -> torch.Tensor:
        """What the critic's Q_a reads for a policy: pi_a(.) (discrete: sum_u pi Q_a is Q_a at it) or mu_a."""
        return self.actor.probs(params, avail) if self.spec.discrete else params

    def critic_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        features = self.critic.features(batch.obs, batch.prev_actions)  # (B, T+1, N, H)
        q_tot = self.critic(batch.current(features), batch.current(batch.state), self.action_inputs(batch.actions))
        with torch.no_grad():
            critic_t, actor_t = self.target_nets["critic"], self.target_nets["actor"]
            next_features = batch.following(critic_t.features(batch.obs, batch.prev_actions))  # (B, T, N, H)
            next_policy = self.policy_inputs(actor_t.params(next_features), batch.following(batch.avail))
            v_tot = critic_t(next_features, batch.following(batch.state), next_policy)  # (B, T, 1): V'_tot
            y = td_lambda_returns(batch.reward, batch.terminated, batch.mask, v_tot, self.gamma, self.td_lambda)
        return {"loss_critic": masked_mean((q_tot - y) ** 2, batch.mask),
                "q_tot_mean": masked_mean(q_tot.detach(), batch.mask)}

    def mixing_signs(self, features: torch.Tensor, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """sign(dQ_tot/dQ_a) (B, T, N) at the taken actions, by autograd through the mixer (no weights change)."""
        with torch.enable_grad():
            q_taken = self.critic.agent_values(features, self.action_inputs(actions)).detach().requires_grad_(True)
            q_tot = self.critic.mixer(q_taken, state)  # (B, T, 1)
            (grad,) = torch.autograd.grad(q_tot.sum(), q_taken)
        return grad.sign()

    def actor_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        state, avail = batch.current(batch.state), batch.current(batch.avail)
        with torch.no_grad():
            features = batch.current(self.critic.features(batch.obs, batch.prev_actions))  # (B, T, N, H)
        sign = self.mixing_signs(features, state, batch.actions)  # (B, T, N)
        params = self.actor.params(features)  # (B, T, N, P); the features carry no gradient
        if self.spec.discrete:
            with torch.no_grad():
                q_agents = self.critic.agent_q.utilities(features)  # (B, T, N, A)
            objective = (self.actor.probs(params, avail) * q_agents).sum(-1)  # (B, T, N): sum_u pi Q_a
        else:
            objective = self.critic.agent_values(features, params)  # (B, T, N): Q_a(tau, mu(tau))
        steps = torch.arange(batch.max_steps, dtype=objective.dtype, device=objective.device)
        discount = self.gamma**steps if self.discount_actor_steps else torch.ones_like(steps)  # (T,): I
        per_step = (sign * objective).sum(-1, keepdim=True) * discount[None, :, None]  # (B, T, 1)
        return {"loss_actor": -masked_mean(per_step, batch.mask),
                "negative_sign_fraction": masked_mean((sign < 0).float(), batch.mask)}
