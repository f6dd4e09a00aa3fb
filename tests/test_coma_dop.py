"""COMA's counterfactual baseline and critic inputs; DOP's linear critic, tree-backup targets and
decomposed policy gradient."""

from __future__ import annotations

import pytest
import torch

from resq.nn.coma import AgentCritic, coma_actor_loss, coma_advantages, counterfactual_baseline, onehot
from resq.nn.dop import DOPMixer, dop_actor_loss, dop_deterministic_actor_loss, tree_backup_targets
from resq.nn.returns import td_lambda_returns
from tests.actor_critic_helpers import build, learned_matrix, loss_after_updates, run_json


# ---- COMA --------------------------------------------------------------------------------------------
def test_coma_baseline_and_advantage_by_hand():
    # 2 agents, 2 actions. Row a holds Q(s, (u_-a, .)) for agent a's two actions.
    q_all = torch.tensor([[[1.0, 3.0], [2.0, -1.0]]])  # (1, N, A)
    pi = torch.tensor([[[0.25, 0.75], [0.5, 0.5]]])
    actions = torch.tensor([[1, 0]])
    # b_0 = 0.25 * 1 + 0.75 * 3 = 2.5, A_0 = 3 - 2.5 = 0.5; b_1 = 0.5 * 2 + 0.5 * (-1) = 0.5, A_1 = 2 - 0.5 = 1.5
    torch.testing.assert_close(counterfactual_baseline(q_all, pi), torch.tensor([[2.5, 0.5]]))
    torch.testing.assert_close(coma_advantages(q_all, pi, actions), torch.tensor([[0.5, 1.5]]))
    with pytest.raises(ValueError, match="share a shape"):
        counterfactual_baseline(q_all, pi[..., :1])


def test_coma_critic_row_ignores_the_agents_own_action_only():
    torch.manual_seed(0)
    n, a, s, o = 3, 4, 5, 2
    critic = AgentCritic(n, a, s, o, hidden_dim=16, others_actions=True)
    state, obs = torch.randn(2, s), torch.randn(2, n, o)
    actions = torch.randint(a, (2, n))
    base = critic(state, obs, onehot(actions, a))  # (2, N, A)
    changed = actions.clone()
    changed[:, 0] = (changed[:, 0] + 1) % a
    out = critic(state, obs, onehot(changed, a))
    torch.testing.assert_close(out[:, 0], base[:, 0])  # agent 0's row does not see its own action
    assert not torch.allclose(out[:, 1:], base[:, 1:])  # the others' rows do
    with pytest.raises(ValueError, match="actions_onehot"):
        critic(state, obs, None)


def test_coma_actor_gradient_raises_the_probability_of_positive_advantages():
    logits = torch.zeros(1, 1, 2, 3, requires_grad=True)  # (B, T, N, A)
    log_pi = torch.log_softmax(logits, -1)
    actions = torch.tensor([[[2, 0]]])
    advantages = torch.tensor([[[1.0, -1.0]]])
    loss = coma_actor_loss(log_pi.gather(-1, actions[..., None])[..., 0], advantages, torch.ones(1, 1, 1))
    loss.backward()
    assert logits.grad[0, 0, 0, 2] < 0 and logits.grad[0, 0, 1, 0] > 0  # descent raises / lowers them


# ---- DOP ---------------------------------------------------------------------------------------------
def test_dop_critic_is_linear_in_the_agent_values_with_nonnegative_weights():
    torch.manual_seed(0)
    n, s = 4, 6
    mixer = DOPMixer(n, s, hidden_dim=16)
    state = 3 * torch.randn(10, 7, s)
    k = mixer.coefficients(state)  # (B, T, N)
    assert (k >= 0).all() and (k > 0).any()
    q1, q2 = torch.randn(10, 7, n), torch.randn(10, 7, n)
    b = mixer(torch.zeros(10, 7, n), state)
    # affine in Q_i: Q_tot(q) - b(s) is linear, with slope k(s)
    torch.testing.assert_close(mixer(2 * q1 - 3 * q2, state) - b, 2 * (mixer(q1, state) - b) - 3 * (mixer(q2, state) - b))
    q = q1.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(mixer(q, state).sum(), q)
    torch.testing.assert_close(grad, k)  # dQ_tot/dQ_i = k_i(s) >= 0 whatever the Q_i
    assert mixer.monotonic and mixer.igm


def test_tree_backup_by_hand():
    # one episode of 2 steps, time-limit end after step 1 (not terminated): G_1 = r_1 + gamma V_2
    gamma, lam = 0.9, 0.5
    reward = torch.tensor([[[1.0], [2.0]]])
    terminated = torch.zeros(1, 2, 1)
    mask = torch.ones(1, 2, 1)
    next_q = torch.tensor([[[4.0], [0.0]]])  # Q(s_1, u_1); row 1's entry is unused
    next_v = torch.tensor([[[3.0], [5.0]]])  # V(s_1), V(s_2)
    next_pi = torch.tensor([[[0.4], [1.0]]])  # pi(u_1 | s_1)
    g1 = 2.0 + gamma * 5.0
    g0 = 1.0 + gamma * (3.0 + lam * 0.4 * (g1 - 4.0))
    out = tree_backup_targets(reward, terminated, mask, next_q, next_v, next_pi, gamma, lam)
    torch.testing.assert_close(out, torch.tensor([[[g0], [g1]]]))
    # lambda = 0 is expected SARSA
    torch.testing.assert_close(tree_backup_targets(reward, terminated, mask, next_q, next_v, next_pi, gamma, 0.0),
                               reward + gamma * next_v)
    with pytest.raises(ValueError, match="tb_lambda"):
        tree_backup_targets(reward, terminated, mask, next_q, next_v, next_pi, gamma, 1.5)


def test_tree_backup_on_a_deterministic_policy_is_td_lambda():
    g = torch.Generator().manual_seed(0)
    b, t = 4, 6
    reward = torch.randn(b, t, 1, generator=g)
    mask = torch.ones(b, t, 1)
    mask[0, 4:] = 0
    terminated = torch.zeros(b, t, 1)
    terminated[0, 3] = 1
    next_q = torch.randn(b, t, 1, generator=g)  # V = Q and pi(u) = 1
    ones = torch.ones(b, t, 1)
    tb = tree_backup_targets(reward, terminated, mask, next_q, next_q, ones, 0.95, 0.7)
    td = td_lambda_returns(reward, terminated, mask, next_q, 0.95, 0.7)
    torch.testing.assert_close(tb * mask, td * mask)


def test_dop_actor_follows_k_weighted_advantages():
    logits = torch.zeros(1, 1, 2, 3, requires_grad=True)
    pi = torch.softmax(logits, -1)
    q_i = torch.tensor([[[[1.0, 0.0, 0.0], [0.0, 0.0, 2.0]]]])
    k = torch.tensor([[[1.0, 0.0]]])  # agent 1's critic has no weight: no gradient for it
    dop_actor_loss(pi, q_i, k, torch.ones(1, 1, 1)).backward()
    assert logits.grad[0, 0, 0, 0] < 0 < logits.grad[0, 0, 0, 1]
    assert torch.equal(logits.grad[0, 0, 1], torch.zeros(3))


def test_dop_deterministic_actor_ascends_k_weighted_q():
    u = torch.tensor([[[0.5, -0.5]]], requires_grad=True)  # (B, T, N) one action each
    q_at_policy = -(u - 2.0) ** 2  # Q_i maximal at u_i = 2
    dop_deterministic_actor_loss(q_at_policy, torch.tensor([[[2.0, 1.0]]]), torch.ones(1, 1, 1)).backward()
    assert (u.grad < 0).all()  # descent moves both actions up toward 2


# ---- the learners -------------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm,env", [("coma", "matrix_qtran"), ("dop", "matrix_qtran"), ("dop", "mtq")])
@pytest.mark.parametrize("update", ["critic", "actor"])
def test_update_reduces_its_own_loss_on_a_fixed_batch(algorithm, env, update):
    learner, batch = build(algorithm, env)
    before, after = loss_after_updates(learner, batch, update, steps=40)
    assert after < before, (algorithm, env, update, before, after)


def test_coma_is_refused_on_continuous_actions_at_build_time():
    from resq.learners import IncompatibleComponentsError

    with pytest.raises(IncompatibleComponentsError, match="discrete actions only"):
        build("coma", "mtq")


def test_coma_joint_q_is_the_critic_at_each_joint_action():
    learner, batch = build("coma", "matrix_qtran")
    rows = torch.zeros(1, 2, dtype=torch.long)
    joint = torch.tensor([[[0, 2], [1, 1]]])  # (M, J, N)
    q = learner.joint_q(batch, rows, joint)
    state, obs = batch.state[0, 0], batch.obs[0, 0]
    for j in range(2):
        rows_q = learner.critic(state, obs, onehot(joint[0, j], 3))  # (N, A)
        expected = rows_q.gather(-1, joint[0, j][:, None])[:, 0].mean()
        torch.testing.assert_close(q[0, j], expected)


@pytest.mark.parametrize("algorithm,env,name", [("coma", "matrix_qtran", "matrix_game.json"),
                                               ("dop", "matrix_qtran", "matrix_game.json"),
                                               ("dop", "mtq", "mtq.json")])
def test_a_tiny_run_writes_its_result_file(tmp_path, algorithm, env, name):
    result = run_json(tmp_path, algorithm, env, [], name)
    assert ("q_joint" in result) if env != "mtq" else (len(result["joint_action"]) == 2)


@pytest.mark.slow
def test_dop_misses_the_optimum_of_the_qtran_payoff(tmp_path):
    """FOP Table 1d: DOP's linear critic cannot represent the payoff; its agents settle off (A, A)."""
    matrix = learned_matrix(tmp_path, "dop", seed=0)
    assert matrix["greedy_joint_action"] != [0, 0]
