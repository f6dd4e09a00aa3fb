"""NQMIX: its update follows sign(dQ_tot/dQ_a), its losses fall under its own updates, its parts."""

import functools

import pytest
import torch

from envs import MatrixGame, MaxOfTwoQuadratics
from resq.learners import NQMIX, IncompatibleComponentsError
from resq.nn import QMixer, RNNAgent
from resq.nn.mixers import Mixer
from resq.nn.mixers.nqmix import NQMIXMixer
from tests.ac_helpers import build, fixed_batch
from tests.helpers import SPEC, random_batch

QTRAN = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


class SignedSum(Mixer):
    """Q_tot = sum_a w_a Q_a with fixed weights: dQ_tot/dQ_a = w_a, any sign."""

    def __init__(self, n_agents: int, state_dim: int, weights=(-1.0, 1.0)) -> None:
        super().__init__(n_agents, state_dim)
        self.register_buffer("weights", torch.tensor(weights))

    def mix(self, q_taken, state):
        return (q_taken * self.weights).sum(-1, keepdim=True)


def make(spec, weights):
    rmsprop = functools.partial(torch.optim.RMSprop, lr=5e-4)
    return NQMIX(spec, agent=RNNAgent, main_function=functools.partial(SignedSum, weights=weights),
                 actor_optimizer=rmsprop, critic_optimizer=rmsprop)


def one_actor_step(learner, batch, lr):
    loss = learner.total_loss(learner.actor_losses(batch))
    optimizer = torch.optim.SGD(learner.parameter_groups()["actor"], lr=lr)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("weights", [(-1.0, 1.0), (1.0, 1.0), (1.0, -1.0)])
def test_discrete_policies_follow_the_sign_of_dqtot_dqa(weights):
    """Every agent's Q_a prefers action A (utilities [2, 0, 0]). Where dQ_tot/dQ_a < 0 the agent's policy
    must move away from A, where it is > 0 towards A; the critic does not move."""
    torch.manual_seed(0)
    spec = MatrixGame(QTRAN).spec
    learner = make(spec, weights)
    with torch.no_grad():
        fc_out = learner.critic.agent_q.agent.fc_out
        fc_out.weight.zero_()
        fc_out.bias.copy_(torch.tensor([2.0, 0.0, 0.0]))
    batch = fixed_batch(learner, _Data(functools.partial(MatrixGame, QTRAN)))
    assert learner.mixing_signs(
        learner.critic.features(batch.obs, batch.prev_actions)[:, :-1], batch.current(batch.state), batch.actions
    ).flatten(0, 1).unique(dim=0).tolist() == [list(weights)]
    critic_before = [p.clone() for p in learner.critic.parameters()]
    p_before = learner.actor.probs(learner.policy_params(learner.nets, batch)[:, 0], batch.avail[:, 0])[0, :, 0]
    one_actor_step(learner, batch, lr=0.5)
    p_after = learner.actor.probs(learner.policy_params(learner.nets, batch)[:, 0], batch.avail[:, 0])[0, :, 0]
    for agent, w in enumerate(weights):
        assert (p_after[agent] - p_before[agent]).sign() == torch.tensor(w).sign(), (agent, w)
    assert all(torch.equal(a, b) for a, b in zip(critic_before, learner.critic.parameters()))


@pytest.mark.parametrize("weights", [(-1.0, 1.0), (1.0, -1.0)])
def test_continuous_policies_follow_the_sign_times_the_critics_slope(weights):
    """Alg. 2: agent a's action moves along sign(dQ_tot/dQ_a) * dQ_a/du at its current action."""
    torch.manual_seed(1)
    learner = make(MaxOfTwoQuadratics().spec, weights)
    batch = fixed_batch(learner, _Data(MaxOfTwoQuadratics))
    features = learner.critic.features(batch.obs, batch.prev_actions)[:, :-1].detach()  # (B, 1, N, H)
    mu = learner.actor.params(features)[0, 0].detach().requires_grad_(True)  # (N, 1): the same in every episode
    q_a = learner.critic.agent_values(features[0, 0], mu)  # (N,)
    (slope,) = torch.autograd.grad(q_a.sum(), mu)
    one_actor_step(learner, batch, lr=1e-2)
    moved = learner.actor.params(features)[0, 0].detach() - mu.detach()  # (N, 1)
    expected = torch.tensor(weights)[:, None] * slope
    assert (moved.sign() == expected.sign()).all() and (moved.abs() > 0).all()


class _Data:
    """Just what `fixed_batch` needs from a data module."""

    def __init__(self, env):
        self.env_factory = env


def test_nqmix_parts_follow_the_paper():
    learner, _ = build("nqmix", "matrix_qtran")
    mixer = learner.critic.mixer
    assert isinstance(mixer, NQMIXMixer) and not mixer.monotonic
    assert mixer.net[0].out_features == 32 * (2 + 4) - 2 and mixer.net[-1].out_features == 1  # appendix B
    assert learner.tau == 0.001 and learner.gamma == 0.99
    opts = learner.configure_optimizers()
    assert [type(o).__name__ for o in opts] == ["RMSprop", "RMSprop"] and all(o.defaults["lr"] == 5e-4 for o in opts)
    # per-agent policy heads on the critic's GRU state; the actor optimiser holds the heads only
    assert learner.actor.encoder is learner.critic.agent_q.agent
    assert learner.target_nets["actor"].encoder is learner.target_nets["critic"].agent_q.agent
    actor_params = {id(p) for p in opts[1].param_groups[0]["params"]}
    assert actor_params == {id(p) for p in learner.actor.head.parameters()}
    assert learner.actor.head[1].weight.shape == (2, 64, 3)  # ReLU, then one (64 -> |U|) layer per agent
    ablation, _ = build("nqmix_m", "matrix_qtran")
    assert isinstance(ablation.critic.mixer, QMixer) and not ablation.critic.mixer.nonnegative


def test_nqmix_m_mixer_can_have_negative_slopes():
    torch.manual_seed(0)
    mixer = QMixer(3, 4, nonnegative=False)
    q = torch.randn(256, 3, requires_grad=True)
    mixer(q, torch.randn(256, 4)).sum().backward()
    assert (q.grad < 0).any() and (q.grad > 0).any()
    assert not mixer.igm and QMixer(3, 4).igm


def test_nqmix_needs_a_mixer_and_no_residual():
    with pytest.raises(IncompatibleComponentsError, match="main_function=nqmix"):
        build("nqmix", "matrix_qtran", "main_function=none")
    with pytest.raises(IncompatibleComponentsError, match="residual_function=none"):
        build("nqmix", "matrix_qtran", "residual_function=ff")


def test_value_methods_refuse_the_nqmix_mixer():
    with pytest.raises(IncompatibleComponentsError, match="IGM"):
        build("qmix", "matrix_qtran", "main_function=nqmix")


def test_the_critic_target_is_the_target_policies_state_value():
    """Alg. 1 lines 8-12 by hand, row by row: y_t = r_t + gamma (1 - d_t) mixer'(sum_u pi'(u) Q'_a(u), s_{t+1})."""
    torch.manual_seed(0)
    rmsprop = functools.partial(torch.optim.RMSprop, lr=5e-4)
    learner = NQMIX(SPEC, agent=RNNAgent, main_function=NQMIXMixer, actor_optimizer=rmsprop, critic_optimizer=rmsprop)
    with torch.no_grad():
        for p in learner.target_nets.parameters():
            p.add_(0.3 * torch.randn_like(p))  # targets differ from the live networks
    batch = random_batch()
    critic_t, actor_t = learner.target_nets["critic"], learner.target_nets["actor"]
    with torch.no_grad():
        h, _ = critic_t.agent_q.agent.features(batch.obs, batch.prev_actions_onehot)  # (B, T+1, N, H)
        q_next = critic_t.agent_q.agent.fc_out(h)  # (B, T+1, N, A)
        logits = actor_t.head(h).masked_fill(~batch.avail, float("-inf"))
        v = (torch.softmax(logits, -1) * q_next).sum(-1)  # (B, T+1, N): V'_a
        v_tot = critic_t.mixer(v, batch.state)[..., 0]  # (B, T+1)
        h_live, _ = learner.critic.agent_q.agent.features(batch.obs, batch.prev_actions_onehot)
        q_live = learner.critic.agent_q.agent.fc_out(h_live)[:, :-1].gather(-1, batch.actions[..., None])[..., 0]
        q_tot = learner.critic.mixer(q_live, batch.state[:, :-1])[..., 0]  # (B, T)
    b, t = batch.actions.shape[:2]
    errors, greedy_errors = [], []
    for i in range(b):
        for s in range(t):
            if batch.filled[i, s, 0] == 0:
                continue
            bootstrap = 0.99 * (1 - batch.terminated[i, s, 0])
            errors.append((q_tot[i, s] - (batch.reward[i, s, 0] + bootstrap * v_tot[i, s + 1])) ** 2)
            greedy = critic_t.mixer(q_next[i, s + 1].masked_fill(~batch.avail[i, s + 1], -1e9).max(-1).values[None],
                                    batch.state[i, s + 1][None])[0, 0]
            greedy_errors.append((q_tot[i, s] - (batch.reward[i, s, 0] + bootstrap * greedy)) ** 2)
    loss = learner.critic_losses(batch)["loss_critic"]
    assert loss.item() == pytest.approx(torch.stack(errors).mean().item(), rel=1e-5)
    assert abs(loss.item() - torch.stack(greedy_errors).mean().item()) > 1e-3  # not QMIX's max target


@pytest.mark.slow
def test_nqmix_critic_learns_the_qtran_payoff(tmp_path):
    """The unconstrained mixer represents the payoff (max error < 0.005 in 5/5 seeds at 10k steps,
    docs/methods/nqmix.md), whatever the policies do."""
    import json

    from resq.run import train
    from tests.conftest import compose_run

    cfg, choices = compose_run(["logger=none", "trainer.enable_progress_bar=false", "algorithm=nqmix",
                                "env=matrix_qtran", "t_max=10000", "test_interval=5000", "seed=0"])
    train(cfg, tmp_path, choices)
    table = json.loads((tmp_path / "matrix_game.json").read_text())
    assert table["max_abs_error"] < 0.5, table["q_joint"]
