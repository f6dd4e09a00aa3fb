"""COMA's counterfactual baseline and critic inputs; DOP's linear critic, tree-backup targets and
decomposed policy gradient."""

from __future__ import annotations

import pytest
import torch

from resq.nn.coma import AgentCritic, coma_actor_loss, coma_advantages, counterfactual_baseline, onehot
from resq.nn.dop import DOPMixer, dop_actor_loss, dop_deterministic_actor_loss, tree_backup_targets
from resq.nn.returns import td_lambda_returns


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
