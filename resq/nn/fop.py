"""FOP: Factorizing the Optimal joint Policy of maximum-entropy MARL (Zhang et al., ICML 2021,
`papers/fop_icml2021.md`), as plain modules and functions (no Lightning, no Hydra).

The factorization (eq. 7, Sec. 4.3):

    Q_jt(s, u) = sum_i lambda_i(s, u) [Q_i(tau_i, u_i) - V_i(tau_i)] + V_jt(s),   lambda_i > 0,

with lambda_i = alpha / alpha_i (team temperature alpha, individual temperatures alpha_i). With the soft
values V_i = alpha_i log sum_u exp(Q_i(u) / alpha_i) every term lambda_i [Q_i - V_i] equals
alpha log pi_i(u_i), so exp((Q_jt - V_jt) / alpha) = prod_i pi_i: the Boltzmann joint policy factorizes
into the individual soft policies (IGO, eq. 4), which is what the tests check.

Losses (shapes: * leading dims, N agents, A actions):
    eq. 9   (Q_jt(s, u) - y)^2, y = r + gamma (Q_jt^target(s', u') - alpha log pi_jt(u' | tau')), u' ~ pi
    eq. 10  (E_{u_i ~ pi_i}[Q_i(u_i) - alpha_i log pi_i(u_i)] - V_i)^2
    eq. 11  E_{u_i ~ pi_i}[alpha_i log pi_i(u_i) - Q_i(u_i)]
Discrete actions take the expectations over pi_i exactly (sums over A); continuous actions sample u_i from
a reparameterised tanh-Gaussian (SAC's continuous version). Gradients of Q_jt reach neither the V_i nor
the policies (Sec. 4.3): `FOPMixer` detaches V_i.

The stochastic-policy helpers (`categorical_log_probs`, the tanh-Gaussian functions) serve COMA and DOP too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from resq.nn.actors import CategoricalActor, RecurrentActor
from resq.nn.returns import td_lambda_returns

#: log-probability given to unavailable actions: finite, so pi * log pi is exactly 0 there (no nan).
UNAVAILABLE_LOG_PROB = -1e8


# ---- discrete policies and soft values ------------------------------------------------------------
def categorical_log_probs(logits: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
    """log pi (*, A) from logits (*, A), renormalised over the available actions (bool (*, A)).

    Unavailable actions get probability exactly 0 and the finite log-probability UNAVAILABLE_LOG_PROB, so
    sums like sum_u pi(u) log pi(u) stay finite. A row with no available action (padding after an
    episode's end) counts as all available, as `CategoricalActor.log_probs` treats it.
    """
    if avail is None:
        avail = torch.ones_like(logits, dtype=torch.bool)
    return CategoricalActor.log_probs(logits, avail).clamp_min(UNAVAILABLE_LOG_PROB)


def soft_value(q: torch.Tensor, log_pi: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """V = E_{u ~ pi}[Q(u) - alpha log pi(u)] over the last axis: (*, A), (*, A), alpha (*) or scalar -> (*).

    The soft value of the policy pi (the target of eq. 10 for a discrete policy). For the soft-optimal
    policy pi = softmax(Q / alpha) it equals `optimal_soft_value(q, alpha)`.
    """
    alpha = torch.as_tensor(alpha, dtype=q.dtype, device=q.device)
    if alpha.dim() > 0:
        alpha = alpha[..., None]
    pi = log_pi.exp()
    return (pi * (q - alpha * log_pi)).sum(-1)


def optimal_soft_value(q: torch.Tensor, alpha: torch.Tensor | float, avail: torch.Tensor | None = None) -> torch.Tensor:
    """V* = alpha log sum_u exp(Q(u) / alpha) over the (available) actions: (*, A) -> (*) (eqs. 5, 6)."""
    alpha = torch.as_tensor(alpha, dtype=q.dtype, device=q.device)
    if alpha.dim() > 0:
        alpha = alpha[..., None]  # (*, 1)
    scaled = q / alpha
    if avail is not None:
        scaled = scaled.masked_fill(~avail, float("-inf"))
    return (alpha * torch.logsumexp(scaled, dim=-1, keepdim=True)).squeeze(-1)


def discrete_policy_objective(q: torch.Tensor, log_pi: torch.Tensor, alpha_i: torch.Tensor | float) -> torch.Tensor:
    """Eq. 11 for a discrete policy, the expectation taken exactly: sum_u pi(u) [alpha_i log pi(u) - Q(u)].

    (*, A), (*, A), alpha_i (*) or scalar -> (*). Minimised by pi = softmax(Q / alpha_i); Q and alpha_i
    should come detached (only the policy learns from it).
    """
    return -soft_value(q, log_pi, alpha_i)


# ---- continuous policies: a reparameterised tanh-Gaussian -----------------------------------------
# A policy head emits params (*, 2D): the Gaussian's mean and an unbounded log-std, squashed into
# log_std_bounds. u = mid + half_range * tanh(z), z ~ N(mean, std^2); log pi(u) includes the tanh and
# scale Jacobians (SAC's continuous policy, Haarnoja et al. 2018a, appendix C).
LOG_STD_BOUNDS = (-5.0, 2.0)


def tanh_gaussian_split(params: torch.Tensor, log_std_bounds: tuple[float, float] = LOG_STD_BOUNDS):
    """params (*, 2D) -> mean (*, D), log_std (*, D) inside log_std_bounds."""
    if params.shape[-1] % 2:
        raise ValueError(f"tanh-Gaussian params need an even last axis (mean and log-std), got {tuple(params.shape)}")
    mean, raw = params.chunk(2, dim=-1)
    low, high = log_std_bounds
    return mean, low + 0.5 * (high - low) * (torch.tanh(raw) + 1)


def _latent_log_prob(z: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor, half_range: torch.Tensor) -> torch.Tensor:
    gaussian = -0.5 * ((z - mean) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    # log |d tanh(z)/dz| = log(1 - tanh(z)^2), written stably as 2 (log 2 - z - softplus(-2 z))
    log_det = 2 * (math.log(2) - z - F.softplus(-2 * z)) + torch.log(half_range)
    return (gaussian - log_det).sum(-1)


def tanh_gaussian_rsample(params: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised draw u (*, D) in [low, high] (gradients flow to params) and log pi(u) (*)."""
    mean, log_std = tanh_gaussian_split(params)
    noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
    z = mean + log_std.exp() * noise
    mid, half_range = (high + low) / 2, (high - low) / 2
    return mid + half_range * torch.tanh(z), _latent_log_prob(z, mean, log_std, half_range)


def tanh_gaussian_log_prob(params: torch.Tensor, u: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """log pi(u) (*) of given actions u (*, D) (clamped just inside the box)."""
    mean, log_std = tanh_gaussian_split(params)
    mid, half_range = (high + low) / 2, (high - low) / 2
    unit = ((u - mid) / half_range).clamp(-1 + 1e-6, 1 - 1e-6)
    return _latent_log_prob(torch.atanh(unit), mean, log_std, half_range)


def tanh_gaussian_mode(params: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """The deterministic action mid + half_range * tanh(mean) (*, D)."""
    mean, _ = tanh_gaussian_split(params)
    return (high + low) / 2 + (high - low) / 2 * torch.tanh(mean)


class TanhGaussianActor(RecurrentActor):
    """A stochastic policy over a continuous box, the `resq.nn.actors` contract: params (*, N, 2D) are
    the tanh-Gaussian's mean and raw log-std; `sample` draws (reparameterised), `mode` is
    mid + half_range * tanh(mean).

    The head's last layer starts near zero (uniform in +-`final_init`), so every agent's first
    deterministic action sits at the middle of the box (FOP starts MTQ's policies at (0, 0)) with a
    log-std at the middle of LOG_STD_BOUNDS.
    """

    action_kind = "continuous"
    stochastic = True

    def __init__(self, n_agents: int, action_dim: int, obs_dim: int, action_low: Sequence[float],
                 action_high: Sequence[float], final_init: float = 3e-3, **kwargs) -> None:
        super().__init__(n_agents, obs_dim, action_input_dim=action_dim, out_dim=2 * action_dim, **kwargs)
        low = torch.as_tensor(action_low, dtype=torch.float32)
        high = torch.as_tensor(action_high, dtype=torch.float32)
        if low.shape != (action_dim,) or high.shape != (action_dim,) or not (low < high).all():
            raise ValueError(f"TanhGaussianActor needs action_low < action_high with {action_dim} entries each, "
                             f"got {low.tolist()}, {high.tolist()}")
        self.register_buffer("low", low)
        self.register_buffer("high", high)
        if final_init > 0:
            with torch.no_grad():
                self.head[-1].weight.uniform_(-final_init, final_init)
                self.head[-1].bias.uniform_(-final_init, final_init)

    def mode(self, params: torch.Tensor, avail: torch.Tensor | None = None) -> torch.Tensor:
        return tanh_gaussian_mode(params, self.low, self.high)

    def sample(self, params: torch.Tensor, avail: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        return tanh_gaussian_rsample(params, self.low, self.high, generator)[0]


# ---- the factorization ---------------------------------------------------------------------------
def fop_joint_q(q_taken: torch.Tensor, v_i: torch.Tensor, lam: torch.Tensor, v_jt: torch.Tensor) -> torch.Tensor:
    """Eq. 7: Q_jt = sum_i lambda_i (Q_i - V_i) + V_jt.  (*, N), (*, N), (*, N), (*, 1) -> (*, 1)."""
    if not (q_taken.shape == v_i.shape == lam.shape):
        raise ValueError(f"q_taken, v_i and lambda must share a shape (*, N), got {tuple(q_taken.shape)}, "
                         f"{tuple(v_i.shape)}, {tuple(lam.shape)}")
    if v_jt.shape != (*q_taken.shape[:-1], 1):
        raise ValueError(f"v_jt must have shape {(*q_taken.shape[:-1], 1)}, got {tuple(v_jt.shape)}")
    return (lam * (q_taken - v_i)).sum(-1, keepdim=True) + v_jt


def individual_temperatures(alpha: torch.Tensor | float, lam: torch.Tensor) -> torch.Tensor:
    """alpha_i = alpha / lambda_i (*, N): the temperatures that make eq. 7 the paper's factorization.

    The paper writes alpha_i = alpha E_{pi_i}[Q_i - V_i] / E_{pi_jt}[lambda_i (Q_i - V_i)], which is this
    whenever lambda_i does not vary with the joint action; callers pass lambda_i averaged over joint
    actions drawn from the current policy (see `FOPMixer.mean_weights`).
    """
    if (lam <= 0).any():
        raise ValueError("the FOP weights lambda_i must be > 0")
    return torch.as_tensor(alpha, dtype=lam.dtype, device=lam.device) / lam


class FOPWeights(nn.Module):
    """The weight network lambda(s, u) > 0 (*, N) of FOP Sec. 4.3.

    lambda_i(s, u) = min_weight + softplus(MLP([s, u])_i): an MLP over the state and the joint action
    (one-hot for discrete actions, the action vectors for continuous ones), positive by construction.
    The paper gives no architecture for it; this one can represent any positive function of a small
    joint action space (the matrix game's 9) and is smooth in continuous actions.

    Args:
        n_agents, state_dim: N and S.
        action_dim: the width of one agent's action encoding (A for one-hot, D for continuous).
        hidden_dim: width of the two hidden layers.
        min_weight: a floor on lambda_i, so alpha_i = alpha / lambda_i stays finite.
    """

    def __init__(self, n_agents: int, state_dim: int, action_dim: int, hidden_dim: int = 64,
                 min_weight: float = 1e-3) -> None:
        super().__init__()
        if min_weight <= 0:
            raise ValueError(f"FOPWeights.min_weight must be > 0, got {min_weight}")
        self.n_agents, self.state_dim, self.action_dim = n_agents, state_dim, action_dim
        self.min_weight = min_weight
        self.net = nn.Sequential(
            nn.Linear(state_dim + n_agents * action_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, n_agents),
        )

    def forward(self, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """state (*, S), actions (*, N, action_dim) float -> lambda (*, N) > 0."""
        lead = state.shape[:-1]
        if actions.shape != (*lead, self.n_agents, self.action_dim):
            raise ValueError(f"FOPWeights: actions must have shape {(*lead, self.n_agents, self.action_dim)} "
                             f"(one-hot or action vectors), got {tuple(actions.shape)}")
        x = torch.cat([state, actions.reshape(*lead, self.n_agents * self.action_dim)], dim=-1)
        return self.min_weight + F.softplus(self.net(x))


class FOPMixer(nn.Module):
    """Q_jt(s, u) = sum_i lambda_i(s, u) [Q_i - V_i] + V_jt(s) (eq. 7) with its two centralised parts.

    Contract: q_taken (*, N), v_i (*, N), state (*, S), actions (*, N, action_dim) -> q_jt (*, 1), lambda (*, N).
    V_i is detached: Q_jt's gradients reach Q_i, lambda and V_jt, never the V-networks or policies.

    How the critic's gradient reaches Q_i (`q_gradient`) is a detail the paper leaves open:
        "unit"    the authors' released code: Q_jt = sum_i Q_i + sum_i (lambda_i - 1) sg(Q_i - V_i) + V_jt(s)
                  (sg = stop-gradient), so dQ_jt/dQ_i = 1 and the value is eq. 7 whose joint value is
                  V_jt(s) + sum_i sg(V_i). That sum_i V_i is what ties the level of Q_i to the rewards:
                  without it Q_jt's value depends on Q_i only through Q_i - V_i, which V_i's own update
                  (eq. 10) cancels, so the residual that pushes Q_i never closes and Q_i drifts (on MTQ it
                  reached 26 against rewards <= 1, increasing in u_i everywhere: docs/methods/fop.md);
        "lambda"  the chain rule of eq. 7, dQ_jt/dQ_i = lambda_i.
    With "lambda", the weight network learns to shrink lambda at joint actions the current policies
    rarely take (the only way eq. 7 can fit a high payoff there, since Q_i - V_i <= 0), and that cuts the
    very gradient that would raise Q_i at them: on the QTRAN payoff it stalls at a sub-optimum
    (docs/methods/fop.md has the measurements).

    Args:
        n_agents, state_dim, action_dim: as `FOPWeights`.
        hidden_dim: width of the weight network's and V_jt's hidden layers.
        min_weight: the floor on lambda_i.
        q_gradient: "unit" or "lambda", see above.
    """

    Q_GRADIENTS = ("unit", "lambda")

    def __init__(self, n_agents: int, state_dim: int, action_dim: int, hidden_dim: int = 64,
                 min_weight: float = 1e-3, q_gradient: str = "unit") -> None:
        super().__init__()
        if q_gradient not in self.Q_GRADIENTS:
            raise ValueError(f"FOPMixer.q_gradient must be one of {list(self.Q_GRADIENTS)}, got {q_gradient!r}")
        self.n_agents, self.state_dim, self.q_gradient = n_agents, state_dim, q_gradient
        self.weights = FOPWeights(n_agents, state_dim, action_dim, hidden_dim, min_weight)
        self.v_jt = nn.Sequential(nn.Linear(state_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, 1))

    def forward(self, q_taken: torch.Tensor, v_i: torch.Tensor, state: torch.Tensor,
                actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead = q_taken.shape[:-1]
        if q_taken.shape[-1] != self.n_agents or state.shape != (*lead, self.state_dim):
            raise ValueError(f"FOPMixer: q_taken must be (*, {self.n_agents}) and state (*, {self.state_dim}) with the "
                             f"same leading shape, got {tuple(q_taken.shape)} and {tuple(state.shape)}")
        lam = self.weights(state, actions)  # (*, N)
        v_jt = self.v_jt(state)  # (*, 1)
        if self.q_gradient == "lambda":
            return fop_joint_q(q_taken, v_i.detach(), lam, v_jt), lam
        # sum_i Q_i + sum_i (lambda_i - 1) sg(Q_i - V_i) + V_jt: the value is eq. 7 with the joint value
        # V_jt(s) + sum_i sg(V_i), and dQ_jt/dQ_i = 1
        straight_through = (q_taken - q_taken.detach()).sum(-1, keepdim=True)  # value 0, gradient 1 per Q_i
        individual_values = v_i.detach().sum(-1, keepdim=True)
        return fop_joint_q(q_taken.detach(), v_i.detach(), lam, v_jt) + individual_values + straight_through, lam


# ---- losses --------------------------------------------------------------------------------------
def fop_critic_targets(reward: torch.Tensor, terminated: torch.Tensor, mask: torch.Tensor,
                       next_q_jt: torch.Tensor, next_log_pi_jt: torch.Tensor, alpha: torch.Tensor | float,
                       gamma: float, td_lambda: float = 0.0) -> torch.Tensor:
    """The target y (B, T, 1) of eq. 9: r + gamma (Q_jt^target(s', u') - alpha log pi_jt(u' | tau')).

    next_q_jt (B, T, 1) is the target Q_jt at next actions u' drawn from the current policies and
    next_log_pi_jt (B, T, 1) = sum_i log pi_i(u'_i). td_lambda = 0 is the paper's one-step target; > 0
    mixes in longer returns through `td_lambda_returns` (the authors' SMAC code uses TD(lambda)).
    """
    next_value = next_q_jt - alpha * next_log_pi_jt  # (B, T, 1)
    return td_lambda_returns(reward, terminated, mask, next_value, gamma, td_lambda)


# ---- the team temperature ------------------------------------------------------------------------
class TeamTemperature(nn.Module):
    """FOP's team temperature alpha: fixed, annealed linearly, or learned SAC-style (Haarnoja et al. 2018b).

    Args:
        mode: "fixed" (alpha = `alpha`), "anneal" (linear from `alpha` to `alpha_final` over
            `anneal_steps` env steps, then constant; FOP Table 2 anneals 1 -> alpha_final over 10k
            steps), or "learned" (log alpha minimises E[-alpha (log pi_jt + target_entropy)], starting at
            `alpha`).
        target_entropy: the joint entropy the learned alpha aims for (needed for "learned").
    """

    MODES = ("fixed", "anneal", "learned")

    def __init__(self, mode: str = "fixed", alpha: float = 0.5, alpha_final: float | None = None,
                 anneal_steps: int = 10000, target_entropy: float | None = None) -> None:
        super().__init__()
        if mode not in self.MODES:
            raise ValueError(f"temperature mode must be one of {list(self.MODES)}, got {mode!r}")
        for name, value in (("alpha", alpha), ("alpha_final", alpha_final)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"temperature {name} must be a finite number > 0, got {value}")
        if mode == "anneal" and (alpha_final is None or anneal_steps < 1):
            raise ValueError("temperature mode 'anneal' needs alpha_final (> 0) and anneal_steps >= 1")
        if mode == "learned" and target_entropy is None:
            raise ValueError("temperature mode 'learned' needs a target_entropy (the joint entropy to aim for)")
        self.mode, self.alpha_start = mode, float(alpha)
        self.alpha_final = float(alpha if alpha_final is None else alpha_final)
        self.anneal_steps, self.target_entropy = int(anneal_steps), target_entropy
        self.log_alpha = nn.Parameter(torch.tensor(math.log(alpha)), requires_grad=mode == "learned")

    @property
    def learned(self) -> bool:
        return self.mode == "learned"

    def value(self, t_env: float = 0.0) -> torch.Tensor:
        """alpha at env step t_env, a detached 0-d tensor."""
        if self.mode == "learned":
            return self.log_alpha.detach().exp()
        if self.mode == "fixed":
            return torch.tensor(self.alpha_start)
        progress = min(max(t_env, 0.0) / self.anneal_steps, 1.0)
        return torch.tensor(self.alpha_start + progress * (self.alpha_final - self.alpha_start))

    def loss(self, log_pi_jt: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """SAC's temperature loss -log(alpha) (log pi_jt + target_entropy), averaged (log_pi_jt (*, 1) detached).

        Gradient descent raises alpha when the joint entropy -log pi_jt is below the target, lowers it above.
        """
        if not self.learned:
            raise RuntimeError(f"the temperature is {self.mode!r}; only mode 'learned' has a loss")
        gap = (log_pi_jt.detach() + self.target_entropy)
        per_sample = -self.log_alpha * gap
        if mask is None:
            return per_sample.mean()
        mask = mask.expand_as(per_sample)
        return (per_sample * mask).sum() / mask.sum().clamp_min(1.0)
