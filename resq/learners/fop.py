"""FOP (Zhang et al., ICML 2021) as an actor-critic LightningModule, discrete and continuous.

Parts (`resq.nn.fop` has the math):
    actor     pi_i: `CategoricalActor` (discrete) or `TanhGaussianActor` (continuous), shared weights
    critic    q       individual soft Q_i: `resq.nn.critics.AgentQ` on the `agent` network, its utilities
                      (discrete, (B, T+1, N, A)) or a head on [GRU features, u_i] (continuous)
              v       individual soft V_i(tau_i) (continuous only; discrete V_i is the exact
                      expectation E_{pi_i}[Q_i - alpha_i log pi_i], the minimiser of eq. 10)
              mixer   `FOPMixer`: the weight network lambda(s, u) > 0 and the joint soft V_jt(s), eq. 7
    temperature  the team temperature alpha (`TeamTemperature`: fixed, annealed, or learned)

One training step (Algorithm 1): the critic (Q_i, lambda, V_jt) on eq. 9; the V_i on eq. 10
(continuous); the policies on eq. 11; alpha (when learned); then the base's soft target update.
The targets of eq. 9 use the target Q_i, V_i and mixer at next actions u' drawn from the current
policies.

Individual temperatures (`individual_temperature`):
    "team"     alpha_i = alpha, as the authors' released code runs it;
    "weights"  alpha_i = alpha / E_{u ~ pi}[lambda_i(s, u)] (`resq.nn.fop.individual_temperatures`),
               the paper's alpha_i when lambda_i does not vary with the joint action.
docs/methods/fop.md has what each does on the matrix game.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from envs import CONTINUOUS, DISCRETE, EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.learners.actor_critic import ActorCritic
from resq.learners.errors import IncompatibleComponentsError
from resq.learners.value_factorization import masked_mean
from resq.nn.actors import CategoricalActor
from resq.nn.critics import AgentQ
from resq.nn.fop import (
    FOPMixer,
    TanhGaussianActor,
    TeamTemperature,
    categorical_log_probs,
    discrete_policy_objective,
    fop_critic_targets,
    individual_temperatures,
    soft_value,
    tanh_gaussian_rsample,
)
from resq.nn.joint import gather_actions


def recurrent_encoder(agent: Callable[..., nn.Module], spec: EnvSpec) -> nn.Module:
    """The `agent` network as an actor's encoder: only its GRU features are read (fc_out dropped)."""
    encoder = agent(n_agents=spec.n_agents, n_actions=spec.action_input_dim, obs_dim=spec.obs_dim)
    encoder.fc_out = nn.Identity()
    return encoder


def refuse_mixers(name: str, main_function: Callable | None, residual_function: Callable | None) -> None:
    if main_function is not None or residual_function is not None:
        raise IncompatibleComponentsError(
            f"algorithm={name} builds its own critic and takes no main_function or residual_function. Use "
            f"main_function=none residual_function=none (the {name} config's defaults)."
        )


def masked_step_mean(per_agent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Sum over agents, mean over filled steps: (B, T, N), mask (B, T, 1) -> scalar."""
    per_step = per_agent.sum(-1, keepdim=True)  # (B, T, 1)
    return (per_step * mask).sum() / mask.sum().clamp_min(1.0)


class FOP(ActorCritic):
    """FOP. Args beyond `ActorCritic`'s (see there for the optimisers, tau, gamma, clipping):

        agent: factory `agent(n_agents=, n_actions=, obs_dim=)` for the recurrent networks (Q_i, V_i,
            and the actor's encoder): conf/agent/rnn.yaml.
        temperature: the team temperature alpha (`resq.nn.fop.TeamTemperature`).
        temperature_optimizer: factory for alpha's optimiser (needed when the temperature is learned).
        value_optimizer: factory for the continuous V_i's optimiser (default: critic_optimizer).
        individual_temperature: "team" or "weights" (module docstring).
        q_gradient: how Q_jt's gradient reaches Q_i, "unit" or "lambda" (`FOPMixer`).
        mixer_hidden_dim: width of lambda's and V_jt's hidden layers.
        min_weight: the floor on lambda_i.
        value_hidden_dim: width of the continuous Q_i head's hidden layer (AgentQ's q_hidden_dim).
        td_lambda: 0 is eq. 9's one-step target; > 0 mixes longer returns.
        weight_samples: joint actions drawn per state to average lambda for "weights" temperatures.
        main_function, residual_function: must be None (FOP has its own mixer); the run passes them.
    """

    action_kinds = (DISCRETE, CONTINUOUS)
    loss_names = ("loss_critic", "loss_value", "loss_actor", "loss_temperature")
    INDIVIDUAL_TEMPERATURES = ("team", "weights")

    def __init__(
        self,
        spec: EnvSpec,
        agent: Callable[..., nn.Module],
        actor_optimizer: Callable[..., torch.optim.Optimizer],
        critic_optimizer: Callable[..., torch.optim.Optimizer],
        temperature: TeamTemperature,
        temperature_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        value_optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        individual_temperature: str = "team",
        q_gradient: str = "unit",
        mixer_hidden_dim: int = 64,
        min_weight: float = 1e-3,
        value_hidden_dim: int = 64,
        td_lambda: float = 0.0,
        weight_samples: int = 8,
        main_function: Callable | None = None,
        residual_function: Callable | None = None,
        **kwargs,
    ) -> None:
        refuse_mixers("fop", main_function, residual_function)
        if individual_temperature not in self.INDIVIDUAL_TEMPERATURES:
            raise ValueError(f"algorithm.individual_temperature must be one of {list(self.INDIVIDUAL_TEMPERATURES)}, "
                             f"got {individual_temperature!r}")
        if temperature.learned and temperature_optimizer is None:
            raise IncompatibleComponentsError("a learned temperature (algorithm.temperature.mode=learned) needs "
                                              "algorithm.temperature_optimizer")
        if weight_samples < 1:
            raise ValueError(f"algorithm.weight_samples must be >= 1, got {weight_samples}")
        n = spec.n_agents
        if spec.discrete:
            actor = CategoricalActor(n, spec.n_actions, spec.obs_dim, encoder=recurrent_encoder(agent, spec))
            critic = nn.ModuleDict({
                "q": AgentQ(agent(n_agents=n, n_actions=spec.n_actions, obs_dim=spec.obs_dim)),
                "mixer": FOPMixer(n, spec.state_dim, spec.n_actions, mixer_hidden_dim, min_weight, q_gradient),
            })
        else:
            d = spec.action_dim
            actor = TanhGaussianActor(n, d, spec.obs_dim, spec.action_low, spec.action_high,
                                      encoder=recurrent_encoder(agent, spec))
            v = agent(n_agents=n, n_actions=d, obs_dim=spec.obs_dim)
            v.fc_out = nn.Linear(v.hidden_dim, 1)  # V_i(tau_i): one value per agent
            critic = nn.ModuleDict({
                "q": AgentQ(agent(n_agents=n, n_actions=d, obs_dim=spec.obs_dim), d, value_hidden_dim),
                "v": v,
                "mixer": FOPMixer(n, spec.state_dim, d, mixer_hidden_dim, min_weight, q_gradient),
            })
        super().__init__(spec, actor, critic, actor_optimizer, critic_optimizer, **kwargs)
        self.temperature = temperature
        self.individual_temperature = individual_temperature
        self.td_lambda, self.weight_samples = td_lambda, weight_samples
        updates = ["critic"] + ([] if spec.discrete else ["value"]) + ["actor"]
        if temperature.learned:
            updates.append("temperature")
            self.optimizer_factories["temperature"] = temperature_optimizer
        if not spec.discrete:
            self.optimizer_factories["value"] = value_optimizer or critic_optimizer
        self.update_order = tuple(updates)
        self.t_env = 0.0

    # ---- parts and shared quantities -----------------------------------------------------------
    def parameter_groups(self) -> dict[str, Iterable[nn.Parameter]]:
        groups = {
            "critic": list(self.critic["q"].parameters()) + list(self.critic["mixer"].parameters()),
            "actor": self.actor.parameters(),
        }
        if "v" in self.critic:
            groups["value"] = self.critic["v"].parameters()
        if self.temperature.learned:
            groups["temperature"] = self.temperature.parameters()
        return groups

    def on_train_batch_start(self, batch: EpisodeBatch, batch_idx: int) -> None:
        self.t_env = float(batch.info.get("t_env", self.t_env))
        super().on_train_batch_start(batch, batch_idx)

    @property
    def alpha(self) -> torch.Tensor:
        """The team temperature now (a detached 0-d tensor)."""
        return self.temperature.value(self.t_env).to(self.device)

    def action_features(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the weight network's input (*, N, W): one-hot, or scaled into [-1, 1]."""
        if self.spec.discrete:
            return F.one_hot(actions, self.spec.n_actions).float()
        return (actions - (self.action_high + self.action_low) / 2) / ((self.action_high - self.action_low) / 2)

    def sample_actions(self, params: torch.Tensor, avail: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Actions drawn from the policies (*, N[, D]) and their log-probabilities (*, N)."""
        if self.spec.discrete:
            actions = self.actor.sample(params, avail)
            return actions, categorical_log_probs(params, avail).gather(-1, actions[..., None])[..., 0]
        return tanh_gaussian_rsample(params, self.action_low, self.action_high)

    @torch.no_grad()
    def individual_alphas(self, mixer: FOPMixer, params: torch.Tensor, avail: torch.Tensor,
                          state: torch.Tensor) -> torch.Tensor:
        """alpha_i (*, N): alpha, or alpha / E_{u ~ pi}[lambda_i(s, u)] from `weight_samples` draws."""
        alpha = self.alpha
        lead = params.shape[:-2]
        if self.individual_temperature == "team":
            return alpha.expand(*lead, self.spec.n_agents)
        k = self.weight_samples
        params_k = params[None].expand(k, *params.shape)
        avail_k = avail[None].expand(k, *avail.shape)
        actions, _ = self.sample_actions(params_k, avail_k)  # (K, *, N[, D])
        lam = mixer.weights(state[None].expand(k, *state.shape), self.action_features(actions))  # (K, *, N)
        return individual_temperatures(alpha, lam.mean(0))

    def q_features(self, nets: nn.ModuleDict, batch: EpisodeBatch) -> torch.Tensor:
        """The Q_i network's GRU features (B, T+1, N, H) of `nets` (live or target)."""
        return nets["critic"]["q"].features(batch.obs, batch.prev_actions)

    def utilities(self, nets: nn.ModuleDict, batch: EpisodeBatch) -> torch.Tensor:
        """Discrete Q_i(tau_i, .) (B, T+1, N, A) of `nets` at every observation row."""
        return nets["critic"]["q"].utilities(self.q_features(nets, batch))

    def q_at(self, nets: nn.ModuleDict, features: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Continuous Q_i(tau_i, u_i) (*, N) from features (*, N, H) and actions (*, N, D)."""
        return nets["critic"]["q"].values(features, self.action_features(actions))

    def soft_values(self, nets: nn.ModuleDict, batch: EpisodeBatch, q: torch.Tensor | None,
                    log_pi: torch.Tensor | None, alpha_i: torch.Tensor) -> torch.Tensor:
        """V_i (B, T+1, N) of `nets` at every observation row: discrete from q and log pi, else the V network."""
        if self.spec.discrete:
            return soft_value(q, log_pi, alpha_i)
        return nets["critic"]["v"](batch.obs, batch.prev_actions)[0][..., 0]

    # ---- losses ----------------------------------------------------------------------------------
    def critic_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        mask, actions = batch.mask, batch.actions
        state = batch.state
        alpha = self.alpha
        with torch.no_grad():
            params = self.policy_params(self.nets, batch)  # (B, T+1, N, P)
            alpha_i, log_pi = None, None
            if self.spec.discrete:  # continuous V_i come from their own network
                alpha_i = self.individual_alphas(self.critic["mixer"], params, batch.avail, state)  # (B, T+1, N)
                log_pi = categorical_log_probs(params, batch.avail)
        if self.spec.discrete:
            q = self.utilities(self.nets, batch)  # (B, T+1, N, A)
            q_taken = gather_actions(batch.current(q), actions)  # (B, T, N)
            v_i = self.soft_values(self.nets, batch, batch.current(q).detach(), batch.current(log_pi),
                                   batch.current(alpha_i))  # (B, T, N)
        else:
            features = self.q_features(self.nets, batch)  # (B, T+1, N, H)
            q_taken = self.q_at(self.nets, batch.current(features), actions)  # (B, T, N)
            v_i = batch.current(self.soft_values(self.nets, batch, None, None, alpha_i))
        q_jt, lam = self.critic["mixer"](q_taken, v_i, batch.current(state), self.action_features(actions))

        with torch.no_grad():
            target = self.target_nets["critic"]
            next_params = batch.following(params)
            next_actions, next_log_pi = self.sample_actions(next_params, batch.following(batch.avail))  # u' ~ pi
            if self.spec.discrete:
                q_next = batch.following(self.utilities(self.target_nets, batch))  # (B, T, N, A)
                v_next = soft_value(q_next, batch.following(log_pi), batch.following(alpha_i))
                q_next_taken = gather_actions(q_next, next_actions)
            else:
                q_next_taken = self.q_at(self.target_nets, batch.following(self.q_features(self.target_nets, batch)),
                                         next_actions)
                v_next = batch.following(self.soft_values(self.target_nets, batch, None, None, alpha_i))
            q_jt_next, _ = target["mixer"](q_next_taken, v_next, batch.following(state),
                                           self.action_features(next_actions))
            y = fop_critic_targets(batch.reward, batch.terminated, mask, q_jt_next,
                                   next_log_pi.sum(-1, keepdim=True), alpha, self.gamma, self.td_lambda)
        return {
            "loss_critic": masked_mean((q_jt - y) ** 2, mask),
            "q_jt_mean": (q_jt.detach() * mask).sum() / mask.sum().clamp_min(1.0),
            "lambda_mean": (lam.detach() * mask).sum() / (mask.sum() * self.spec.n_agents).clamp_min(1.0),
            "alpha": alpha,
        }

    def value_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """Eq. 10 for continuous actions: V_i regresses E_{u ~ pi_i}[Q_i(u) - alpha_i log pi_i(u)] (one draw)."""
        mask = batch.mask
        with torch.no_grad():
            params = self.policy_params(self.nets, batch)
            alpha_i = batch.current(self.individual_alphas(self.critic["mixer"], params, batch.avail, batch.state))
            u, log_pi = self.sample_actions(batch.current(params), batch.current(batch.avail))  # (B, T, N, D), (B, T, N)
            q = self.q_at(self.nets, batch.current(self.q_features(self.nets, batch)), u)  # (B, T, N)
            target = q - alpha_i * log_pi
        v = batch.current(self.critic["v"](batch.obs, batch.prev_actions)[0][..., 0])  # (B, T, N)
        return {"loss_value": masked_mean((v - target) ** 2, mask)}

    def actor_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """Eq. 11: E_{u_i ~ pi_i}[alpha_i log pi_i(u_i) - Q_i(u_i)], exactly over A (discrete) or by a
        reparameterised draw (continuous); Q_i and alpha_i fixed."""
        mask = batch.mask
        params = batch.current(self.policy_params(self.nets, batch))  # (B, T, N, P), with gradient
        with torch.no_grad():
            alpha_i = self.individual_alphas(self.critic["mixer"], params.detach(), batch.current(batch.avail),
                                             batch.current(batch.state))  # (B, T, N)
        if self.spec.discrete:
            with torch.no_grad():
                q = batch.current(self.utilities(self.nets, batch))  # (B, T, N, A)
            log_pi = categorical_log_probs(params, batch.current(batch.avail))
            objective = discrete_policy_objective(q, log_pi, alpha_i)  # (B, T, N)
            log_pi_jt = (log_pi.exp() * log_pi).sum(-1).sum(-1, keepdim=True)  # E[log pi_jt] (B, T, 1)
        else:
            u, log_pi = self.sample_actions(params, batch.current(batch.avail))  # reparameterised
            with torch.no_grad():
                features = batch.current(self.q_features(self.nets, batch))
            objective = alpha_i * log_pi - self.q_at(self.nets, features, u)  # (B, T, N)
            log_pi_jt = log_pi.sum(-1, keepdim=True)
        self._log_pi_jt = log_pi_jt.detach()
        return {
            "loss_actor": masked_step_mean(objective, mask),
            "entropy": -(self._log_pi_jt * mask).sum() / mask.sum().clamp_min(1.0),
        }

    def temperature_losses(self, batch: EpisodeBatch) -> dict[str, torch.Tensor]:
        """SAC's temperature loss on the joint policy's log-probabilities of the last actor update."""
        return {"loss_temperature": self.temperature.loss(self._log_pi_jt, batch.mask)}

    # ---- evaluation --------------------------------------------------------------------------
    @torch.no_grad()
    def joint_q(self, batch: EpisodeBatch, rows: torch.Tensor, joint_actions: torch.Tensor) -> torch.Tensor:
        """Q_jt (M, J) of eq. 7 at observation rows (M, 2) for joint actions (M, J, N[, D])."""
        b, t = rows.unbind(-1)
        m, j = joint_actions.shape[:2]
        state = batch.state[b, t]  # (M, S)
        params = self.policy_params(self.nets, batch)[b, t]  # (M, N, P)
        avail = batch.avail[b, t]
        alpha_i = self.individual_alphas(self.critic["mixer"], params, avail, state)  # (M, N)
        if self.spec.discrete:
            q = self.utilities(self.nets, batch)[b, t]  # (M, N, A)
            v_i = soft_value(q, categorical_log_probs(params, avail), alpha_i)  # (M, N)
            q_taken = gather_actions(q[:, None].expand(m, j, *q.shape[1:]), joint_actions)  # (M, J, N)
        else:
            features = self.q_features(self.nets, batch)[b, t]  # (M, N, H)
            q_taken = self.q_at(self.nets, features[:, None].expand(m, j, *features.shape[1:]), joint_actions)
            v_i = self.critic["v"](batch.obs, batch.prev_actions)[0][b, t][..., 0]  # (M, N)
        q_jt, _ = self.critic["mixer"](q_taken, v_i[:, None].expand(m, j, -1), state[:, None].expand(m, j, -1),
                                       self.action_features(joint_actions))
        return q_jt[..., 0]

    @torch.no_grad()
    def agent_q(self, batch: EpisodeBatch, rows: torch.Tensor) -> torch.Tensor | None:
        """The individual soft Q_i (M, N, A) at the rows (discrete), for the matrix table."""
        if not self.spec.discrete:
            return None
        b, t = rows.unbind(-1)
        return self.utilities(self.nets, batch)[b, t]
