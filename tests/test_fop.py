"""FOP's parts: the factorization of eq. 7, soft values, the policy objective, temperatures, the
tanh-Gaussian policy and the eq. 9 target."""

from __future__ import annotations

import math

import pytest
import torch

from resq.nn.fop import (
    FOPMixer,
    TeamTemperature,
    categorical_log_probs,
    discrete_policy_objective,
    fop_critic_targets,
    fop_joint_q,
    individual_temperatures,
    optimal_soft_value,
    soft_value,
    tanh_gaussian_log_prob,
    tanh_gaussian_mode,
    tanh_gaussian_rsample,
)
from resq.nn.joint import all_joint_actions
from tests.actor_critic_helpers import build, learned_matrix, loss_after_updates, run_json


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- eq. 7 ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("n_agents,n_actions", [(2, 3), (3, 4)])
def test_eq7_factorizes_the_boltzmann_joint_policy(n_agents, n_actions):
    """With lambda_i = alpha / alpha_i and V_i = alpha_i logsumexp(Q_i / alpha_i), eq. 7's Q_jt gives a
    Boltzmann joint policy softmax(Q_jt / alpha) equal to prod_i softmax(Q_i / alpha_i) (IGO, eq. 4), and
    V_jt = alpha logsumexp(Q_jt / alpha) over joint actions (eq. 5)."""
    g = _gen(1)
    b = 5
    q = 3 * torch.randn(b, n_agents, n_actions, generator=g, dtype=torch.float64)  # (B, N, A)
    alpha = 0.7
    alpha_i = 0.2 + torch.rand(b, n_agents, generator=g, dtype=torch.float64)  # (B, N)
    v_jt = torch.randn(b, 1, generator=g, dtype=torch.float64)
    v_i = optimal_soft_value(q, alpha_i)  # (B, N)
    lam = alpha / alpha_i

    joint = all_joint_actions(n_agents, n_actions)  # (J, N)
    j = joint.shape[0]
    q_taken = q[:, None].expand(b, j, n_agents, n_actions).gather(-1, joint.expand(b, j, n_agents)[..., None])[..., 0]
    q_jt = fop_joint_q(q_taken, v_i[:, None].expand(b, j, n_agents), lam[:, None].expand(b, j, n_agents),
                       v_jt[:, None].expand(b, j, 1))[..., 0]  # (B, J)

    # the sum written out, agent by agent
    by_hand = v_jt.expand(b, j).clone()
    for i in range(n_agents):
        by_hand += lam[:, i:i + 1] * (q[:, i].gather(-1, joint[:, i].expand(b, j)) - v_i[:, i:i + 1])
    torch.testing.assert_close(q_jt, by_hand)

    joint_policy = torch.softmax(q_jt / alpha, dim=-1)  # (B, J)
    pi_i = torch.softmax(q / alpha_i[..., None], dim=-1)  # (B, N, A)
    product = torch.ones(b, j, dtype=torch.float64)
    for i in range(n_agents):
        product *= pi_i[:, i].gather(-1, joint[:, i].expand(b, j))
    torch.testing.assert_close(joint_policy, product)
    torch.testing.assert_close(alpha * torch.logsumexp(q_jt / alpha, dim=-1, keepdim=True), v_jt)


def test_individual_temperatures_invert_the_weights():
    lam = torch.tensor([[0.5, 2.0]])
    torch.testing.assert_close(individual_temperatures(0.4, lam), torch.tensor([[0.8, 0.2]]))
    with pytest.raises(ValueError, match="> 0"):
        individual_temperatures(0.4, torch.tensor([[0.0, 1.0]]))


def test_fop_joint_q_checks_shapes():
    with pytest.raises(ValueError, match="share a shape"):
        fop_joint_q(torch.zeros(4, 2), torch.zeros(4, 3), torch.ones(4, 2), torch.zeros(4, 1))
    with pytest.raises(ValueError, match="v_jt"):
        fop_joint_q(torch.zeros(4, 2), torch.zeros(4, 2), torch.ones(4, 2), torch.zeros(4, 2))


@pytest.mark.parametrize("q_gradient", ["unit", "lambda"])
def test_mixer_is_eq7_with_positive_weights_and_no_gradient_into_v(q_gradient):
    torch.manual_seed(0)
    n, s, a = 3, 5, 4
    mixer = FOPMixer(n_agents=n, state_dim=s, action_dim=a, hidden_dim=16, q_gradient=q_gradient)
    with torch.no_grad():  # push the pre-softplus outputs far negative: lambda must stay > 0
        mixer.weights.net[-1].bias.fill_(-50.0)
    q = torch.randn(6, 7, n, requires_grad=True)
    v = torch.randn(6, 7, n, requires_grad=True)
    state = torch.randn(6, 7, s)
    actions = torch.nn.functional.one_hot(torch.randint(a, (6, 7, n)), a).float()
    q_jt, lam = mixer(q, v, state, actions)
    assert q_jt.shape == (6, 7, 1) and lam.shape == (6, 7, n)
    assert (lam > 0).all()
    # "unit" is eq. 7 with the joint value V_jt(s) + sum_i V_i (the authors' code)
    individual_values = v.sum(-1, keepdim=True) if q_gradient == "unit" else 0.0
    torch.testing.assert_close(q_jt, fop_joint_q(q, v, lam, mixer.v_jt(state)) + individual_values)
    q_jt.sum().backward()
    assert v.grad is None  # Q_jt's gradients never reach the individual V's
    # dQ_jt/dQ_i: lambda_i (eq. 7's chain rule) or 1 (the authors' code)
    torch.testing.assert_close(q.grad, lam.detach() if q_gradient == "lambda" else torch.ones_like(q))
    with pytest.raises(ValueError, match="actions must have shape"):
        mixer(q, v, state, actions[..., :2])
    with pytest.raises(ValueError, match="q_gradient"):
        FOPMixer(n_agents=n, state_dim=s, action_dim=a, q_gradient="half")


def test_unit_gradient_ties_q_jt_to_the_level_of_the_individual_q():
    """With dQ_jt/dQ_i = 1, Q_jt must move with Q_i's level once V_i has followed it (as eq. 10 makes it):
    otherwise the TD residual that pushes every Q_i up or down never closes and Q_i drifts without bound."""
    torch.manual_seed(0)
    n, s = 2, 1
    mixer = FOPMixer(n_agents=n, state_dim=s, action_dim=1, hidden_dim=8, q_gradient="unit")
    q, v = torch.randn(16, n), torch.randn(16, n)
    state, actions = torch.ones(16, s), torch.rand(16, n, 1) * 2 - 1
    shift = 3.0  # Q_i and V_i raised together: Q_i - V_i, lambda and V_jt(s) unchanged
    before, _ = mixer(q, v, state, actions)
    after, _ = mixer(q + shift, v + shift, state, actions)
    torch.testing.assert_close(after - before, torch.full_like(before, n * shift))
    # and fitting a fixed target through Q_i alone (V_i tracking Q_i) converges instead of drifting
    level = torch.zeros(n, requires_grad=True)
    opt = torch.optim.SGD([level], lr=0.1)
    for _ in range(200):
        q_i = level.expand(16, n)
        q_jt, _ = mixer(q_i, q_i.detach() - 1.0, state, actions)
        loss = ((q_jt - 1.0) ** 2).mean()
        opt.zero_grad(); loss.backward(); opt.step()
    assert loss.item() < 1e-2 and level.abs().max().item() < 10  # the rest: lambda varies with u


# ---- soft values and the policy objective ---------------------------------------------------------
@pytest.mark.parametrize("alpha", [0.05, 0.5, 3.0])
def test_soft_value_of_the_soft_optimal_policy_is_alpha_logsumexp(alpha):
    q = torch.randn(8, 2, 5, generator=_gen(2), dtype=torch.float64) * 4
    log_pi = categorical_log_probs(q / alpha)
    expected = alpha * torch.logsumexp(q / alpha, dim=-1)
    torch.testing.assert_close(soft_value(q, log_pi, alpha), expected)
    torch.testing.assert_close(optimal_soft_value(q, alpha), expected)
    # any other policy has a lower soft value (the soft-optimal policy maximises E[Q - alpha log pi])
    other = (0.8 * log_pi.exp() + 0.2 / q.shape[-1]).log()  # mixed with the uniform policy
    assert (soft_value(q, other, alpha) < expected - 1e-6).all()


def test_soft_values_respect_unavailable_actions_and_per_agent_temperatures():
    q = torch.tensor([[1.0, 2.0, 50.0], [0.0, -1.0, 3.0]])  # (N=2, A=3)
    avail = torch.tensor([[True, True, False], [True, True, True]])
    alpha_i = torch.tensor([0.5, 2.0])
    log_pi = categorical_log_probs(q / alpha_i[:, None], avail)
    assert log_pi.exp()[0, 2] == 0.0 and torch.isfinite(log_pi).all()
    expected = torch.stack([0.5 * torch.logsumexp(q[0, :2] / 0.5, -1), 2.0 * torch.logsumexp(q[1] / 2.0, -1)])
    torch.testing.assert_close(optimal_soft_value(q, alpha_i, avail), expected)
    torch.testing.assert_close(soft_value(q, log_pi, alpha_i), expected)
    # a padding row (nothing available) counts as all available, so its log-probabilities stay finite
    torch.testing.assert_close(categorical_log_probs(q, torch.zeros_like(avail)), torch.log_softmax(q, -1))


def test_discrete_policy_objective_is_minimised_by_the_soft_policy():
    q = torch.tensor([[2.0, 0.0, -1.0]])
    alpha = 0.5
    logits = torch.zeros(1, 3, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(600):
        opt.zero_grad()
        discrete_policy_objective(q, categorical_log_probs(logits), alpha).sum().backward()
        opt.step()
    torch.testing.assert_close(torch.softmax(logits, -1), torch.softmax(q / alpha, -1), atol=1e-3, rtol=0)


# ---- the tanh-Gaussian policy ----------------------------------------------------------------------
LOW, HIGH = torch.tensor([-10.0]), torch.tensor([10.0])


def test_tanh_gaussian_samples_in_bounds_with_a_normalised_density():
    params = torch.tensor([[1.5, -0.3]]).expand(4000, 2)  # mean 1.5 in latent space, a moderate std
    u, log_prob = tanh_gaussian_rsample(params, LOW, HIGH, generator=_gen(4))
    assert u.shape == (4000, 1) and log_prob.shape == (4000,)
    assert (u.abs() < 10).all()
    torch.testing.assert_close(tanh_gaussian_log_prob(params, u, LOW, HIGH), log_prob, atol=2e-3, rtol=1e-3)
    grid = torch.linspace(-9.999, 9.999, 20001)[:, None]  # (G, 1)
    density = tanh_gaussian_log_prob(params[:1].expand(grid.shape[0], 2), grid, LOW, HIGH).exp()
    assert abs(float(torch.trapezoid(density, grid[:, 0])) - 1.0) < 1e-2
    torch.testing.assert_close(tanh_gaussian_mode(params[:1], LOW, HIGH), 10 * torch.tanh(torch.tensor([[1.5]])))
    with pytest.raises(ValueError, match="even last axis"):
        tanh_gaussian_rsample(torch.zeros(2, 3), LOW, HIGH)


def test_tanh_gaussian_sample_is_reparameterised():
    params = torch.zeros(5, 4, requires_grad=True)  # D = 2
    u, _ = tanh_gaussian_rsample(params, -torch.ones(2), torch.ones(2))
    u.sum().backward()
    assert params.grad[:, :2].abs().sum() > 0  # through the mean
    assert params.grad[:, 2:].abs().sum() > 0  # and the std


# ---- temperatures ----------------------------------------------------------------------------------
def test_team_temperature_modes():
    assert float(TeamTemperature("fixed", alpha=0.3).value(1e6)) == pytest.approx(0.3)
    anneal = TeamTemperature("anneal", alpha=1.0, alpha_final=0.1, anneal_steps=10000)
    assert [round(float(anneal.value(t)), 6) for t in (0, 5000, 10000, 20000)] == [1.0, 0.55, 0.1, 0.1]
    with pytest.raises(ValueError, match="one of"):
        TeamTemperature("cosine")
    with pytest.raises(ValueError, match="alpha_final"):
        TeamTemperature("anneal", alpha=1.0)
    with pytest.raises(ValueError, match="target_entropy"):
        TeamTemperature("learned", alpha=1.0)
    with pytest.raises(ValueError, match="> 0"):
        TeamTemperature("fixed", alpha=0.0)
    with pytest.raises(RuntimeError, match="only mode 'learned'"):
        TeamTemperature("fixed").loss(torch.zeros(3, 1))


@pytest.mark.parametrize("entropy,direction", [(0.1, +1), (3.0, -1)])
def test_learned_temperature_moves_alpha_toward_the_target_entropy(entropy, direction):
    temperature = TeamTemperature("learned", alpha=0.5, target_entropy=1.0)
    opt = torch.optim.SGD(temperature.parameters(), lr=0.1)
    before = float(temperature.value())
    log_pi_jt = torch.full((16, 1), -entropy)  # the joint entropy is -E[log pi_jt]
    opt.zero_grad()
    temperature.loss(log_pi_jt).backward()
    opt.step()
    assert math.copysign(1, float(temperature.value()) - before) == direction


# ---- eq. 9's target --------------------------------------------------------------------------------
def test_critic_target_is_the_soft_one_step_return():
    # two steps of one episode, then a terminal end; B = 1
    reward = torch.tensor([[[1.0], [2.0]]])
    terminated = torch.tensor([[[0.0], [1.0]]])
    mask = torch.ones(1, 2, 1)
    next_q = torch.tensor([[[5.0], [7.0]]])
    next_log_pi = torch.tensor([[[-1.0], [-2.0]]])
    y = fop_critic_targets(reward, terminated, mask, next_q, next_log_pi, alpha=0.5, gamma=0.9)
    torch.testing.assert_close(y, torch.tensor([[[1.0 + 0.9 * (5.0 + 0.5)], [2.0]]]))


# ---- the learner ------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ["matrix_qtran", "mtq"])
@pytest.mark.parametrize("update", ["critic", "actor"])
def test_fop_update_reduces_its_own_loss_on_a_fixed_batch(env, update):
    learner, batch = build("fop", env)
    before, after = loss_after_updates(learner, batch, update, steps=40)
    assert after < before, (update, before, after)


def test_fop_value_update_reduces_eq10_on_a_fixed_batch():
    learner, batch = build("fop", "mtq")
    assert learner.update_order == ("critic", "value", "actor")
    before, after = loss_after_updates(learner, batch, "value", steps=40)
    assert after < before


def test_fop_learned_temperature_gets_its_own_update():
    learner, batch = build("fop", "mtq", ["algorithm.temperature.mode=learned",
                                          "algorithm.temperature.target_entropy=-2.0"])
    assert learner.update_order[-1] == "temperature"
    learner.actor_losses(batch)  # the temperature reads the joint log-probabilities of this update
    before = float(learner.alpha)
    loss_after_updates(learner, batch, "temperature", steps=5)
    assert float(learner.alpha) != before


def test_fop_weights_temperature_divides_alpha_by_the_mean_weight():
    learner, batch = build("fop", "matrix_qtran", ["algorithm.individual_temperature=weights",
                                                   "algorithm.weight_samples=64"])
    params = learner.policy_params(learner.nets, batch)[:, 0]  # (B, N, A)
    state = batch.state[:, 0]
    with torch.no_grad():
        learner.critic["mixer"].weights.net[-1].bias.fill_(3.0)  # lambda_i ~ softplus(3) + 1e-3 everywhere
        learner.critic["mixer"].weights.net[-1].weight.zero_()
    alpha_i = learner.individual_alphas(learner.critic["mixer"], params, batch.avail[:, 0], state)
    expected = float(learner.alpha) / (torch.nn.functional.softplus(torch.tensor(3.0)) + 1e-3)
    torch.testing.assert_close(alpha_i, torch.full_like(alpha_i, float(expected)))


def test_fop_refuses_a_main_function_and_a_learned_temperature_without_its_optimiser():
    from resq.learners import IncompatibleComponentsError

    with pytest.raises(IncompatibleComponentsError, match="main_function=none"):
        build("fop", "matrix_qtran", ["main_function=qmix"])
    with pytest.raises(IncompatibleComponentsError, match="temperature_optimizer"):
        build("fop", "mtq", ["algorithm.temperature.mode=learned", "algorithm.temperature.target_entropy=-2.0",
                             "algorithm.temperature_optimizer=null"])
    with pytest.raises(ValueError, match="individual_temperature"):
        build("fop", "matrix_qtran", ["algorithm.individual_temperature=agent"])


@pytest.mark.parametrize("overrides", [[], ["algorithm.individual_temperature=weights", "algorithm.q_gradient=lambda"]])
def test_a_tiny_fop_run_on_the_matrix_game_writes_its_table(tmp_path, overrides):
    matrix = run_json(tmp_path, "fop", "matrix_qtran", overrides, "matrix_game.json")
    assert len(matrix["q_joint"]) == 3 and len(matrix["q_agents"]) == 2
    assert matrix["joint_value_name"] == "Q_jt"


@pytest.mark.parametrize("overrides", [[], ["algorithm.temperature.mode=learned",
                                            "algorithm.temperature.target_entropy=-2.0"]])
def test_a_tiny_fop_run_on_mtq_writes_the_joint_action(tmp_path, overrides):
    mtq = run_json(tmp_path, "fop", "mtq", overrides, "mtq.json")
    assert len(mtq["joint_action"]) == 2 and all(-10 <= u <= 10 for u in mtq["joint_action"])
    assert "reward" in mtq


@pytest.mark.slow
def test_fop_reaches_the_optimum_of_the_qtran_payoff(tmp_path):
    """FOP Table 1: the agents' most likely actions are (A, A) after 10k steps (seed 0)."""
    matrix = learned_matrix(tmp_path, "fop", seed=0)
    assert matrix["greedy_joint_action"] == [0, 0]
    assert matrix["q_joint"][1][1] == pytest.approx(0.0, abs=1.0)  # the sub-optimal block is learned too
    assert matrix["q_joint"][0][1] == pytest.approx(-12.0, abs=1.0)

