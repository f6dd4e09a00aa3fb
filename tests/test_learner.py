from functools import partial

import pytest
import torch

from resq.data import LinearSchedule, epsilon_greedy, masked_argmax
from resq.learners import IncompatibleComponentsError, ValueFactorization
from resq.learners.value_factorization import residual_mask
from resq.nn import FeedForwardMixer, QMixer, RNNAgent, VDNMixer, all_joint_actions, td_lambda_returns
from tests.helpers import SPEC, random_batch


def learner(main=QMixer, residual=FeedForwardMixer, central=partial(FeedForwardMixer, state_value=True)):
    return ValueFactorization(SPEC, agent=RNNAgent, main_function=main, optimizer=torch.optim.RMSprop,
                              residual_function=residual, central=central)


def test_residual_is_never_positive():
    torch.manual_seed(0)
    model = learner()
    q_r = torch.randn(50, 7, 3, 4) * 10
    actions = torch.randint(0, 4, (50, 7, 3))
    assert (model.residual_value(q_r, actions, torch.randn(50, 7, 6) * 10) <= 0).all()


def test_mask_is_zero_exactly_at_the_greedy_joint_action():
    torch.manual_seed(0)
    q = torch.randn(3, 4)
    avail = torch.ones(3, 4, dtype=torch.bool)
    avail[1, q[1].argmax()] = False  # greedy must respect availability
    greedy = masked_argmax(q, avail)
    joint = all_joint_actions(3, 4)  # (64, 3)
    w_r = residual_mask(joint, greedy.expand_as(joint))[..., 0]
    assert w_r.sum() == 63
    assert torch.equal(joint[w_r == 0][0], greedy)


def test_loss_masks_padding():
    """Changing anything in the padded steps of a batch leaves the losses unchanged."""
    model = learner()
    batch = random_batch()
    before = model.losses(batch)
    batch.reward[0, 2:] = 1e6
    batch.actions[0, 2:] = 3
    after = model.losses(batch)
    for key in ("loss_td", "loss_jt"):
        assert torch.allclose(before[key], after[key])


def test_one_gradient_step_on_a_fixed_batch_lowers_the_loss():
    torch.manual_seed(0)
    model = learner()
    batch = random_batch()
    opt = torch.optim.Adam(model.nets.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        terms = model.losses(batch)
        loss = terms["loss_td"] + terms["loss_jt"]
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_residual_without_a_central_network_is_refused():
    with pytest.raises(IncompatibleComponentsError, match="residual_function=none"):
        learner(central=None)


def test_distributional_parts_are_refused_by_an_expected_value_learner():
    class QuantileMixer(VDNMixer):
        value_type = "distributional"
    with pytest.raises(IncompatibleComponentsError, match="main_function=QuantileMixer"):
        learner(main=QuantileMixer)


def test_igm_violation_sees_a_central_network_that_disagrees_with_the_agents():
    torch.manual_seed(0)
    model = learner()
    violations = model.igm_violation(random_batch(b=8))
    assert violations.shape == (8 * 4 - 2,)  # the filled states
    assert violations.sum() > 0  # an untrained Q_jt rarely agrees with the agents


def test_igm_samples_joint_actions_beyond_the_enumeration_limit():
    torch.manual_seed(0)
    model = learner()
    model.igm_max_joint_actions = 10  # 4**3 = 64 joint actions: sample 10
    assert model.igm_violation(random_batch()).shape == (18,)


def test_act_is_epsilon_greedy_over_available_actions():
    model = learner()
    obs = torch.randn(200, 3, 5)
    prev = torch.zeros(200, 3, 4)
    avail = torch.ones(200, 3, 4, dtype=torch.bool)
    avail[:, 1, 2] = False
    hidden = model.initial_state(200)
    greedy, _ = model.act(obs, prev, avail, hidden, 0.0, None)
    q, _ = model.nets["main"].agent(obs[:, None], prev[:, None], hidden)
    assert torch.equal(greedy, masked_argmax(q[:, 0], avail))
    random, _ = model.act(obs, prev, avail, hidden, 1.0, torch.Generator().manual_seed(0))
    assert not (random[:, 1] == 2).any()
    assert len(set(random[:, 0].tolist())) == 4


def test_epsilon_schedule_is_linear_in_env_steps():
    s = LinearSchedule(1.0, 0.05, 100)
    assert s(0) == 1.0 and s(100) == 0.05 and s(10_000) == 0.05
    assert s(50) == pytest.approx(0.525)
    assert LinearSchedule(1.0, 1.0, 100)(70) == 1.0
    assert LinearSchedule(0.5, 0.1, 0)(0) == 0.1
    with pytest.raises(ValueError, match="epsilon_start"):
        LinearSchedule(1.5, 0.05, 10)


def test_epsilon_greedy_explores_at_the_requested_rate():
    g = torch.Generator().manual_seed(0)
    q = torch.zeros(4000, 2, 5)
    q[..., 3] = 1.0
    avail = torch.ones(4000, 2, 5, dtype=torch.bool)
    actions = epsilon_greedy(q, avail, 0.3, g)
    # greedy 70% + a random pick of action 3 in 1/5 of the other 30%
    assert (actions == 3).float().mean().item() == pytest.approx(0.7 + 0.3 / 5, abs=0.02)


def test_td_lambda_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0]])[..., None]
    v = torch.tensor([[10.0, 20.0, 30.0]])[..., None]  # V(s_1), V(s_2), V(s_3)
    mask = torch.ones(1, 3, 1)
    done = torch.tensor([[0.0, 0.0, 1.0]])[..., None]
    g, lam = 0.5, 0.5
    # terminal at the last step: G_2 = 3; G_1 = 2 + g((1-lam) 20 + lam 3); G_0 = 1 + g((1-lam) 10 + lam G_1)
    g2 = 3.0
    g1 = 2 + g * ((1 - lam) * 20 + lam * g2)
    g0 = 1 + g * ((1 - lam) * 10 + lam * g1)
    out = td_lambda_returns(r, done, mask, v, g, lam)
    assert out[0, :, 0].tolist() == pytest.approx([g0, g1, g2])
    # lambda 0 is the one-step target, lambda 1 the Monte-Carlo return
    assert td_lambda_returns(r, done, mask, v, g, 0.0)[0, :, 0].tolist() == pytest.approx([6.0, 12.0, 3.0])
    assert td_lambda_returns(r, done, mask, v, 1.0, 1.0)[0, :, 0].tolist() == pytest.approx([6.0, 5.0, 3.0])


def test_td_lambda_bootstraps_at_a_time_limit_and_ignores_padding():
    r = torch.tensor([[1.0, 1.0, 99.0]])[..., None]
    v = torch.tensor([[4.0, 8.0, 99.0]])[..., None]
    mask = torch.tensor([[1.0, 1.0, 0.0]])[..., None]
    not_done = torch.zeros(1, 3, 1)
    out = td_lambda_returns(r, not_done, mask, v, 0.5, 1.0)
    # the episode was cut after step 1: G_1 = 1 + 0.5 * V(s_2) = 5, G_0 = 1 + 0.5 * G_1
    assert out[0, :2, 0].tolist() == pytest.approx([3.5, 5.0])
