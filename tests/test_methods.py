"""The methods of issue 3 at the level of their losses: QTRAN's constraints, Weighted QMIX's weights,
IQL's independent targets, and IGM by construction for VDN, QMIX and QPLEX."""

from functools import partial

import pytest
import torch
from torch import nn

from envs import EnvSpec
from resq.data.episodes import EpisodeBatch
from resq.learners import QTRAN, ValueFactorization
from resq.nn import FeedForwardMixer, QMixer, QplexMixer, RNNAgent, VDNMixer, all_joint_actions
from resq.nn.weighting import CentralWeighting, OptimisticWeighting
from tests.helpers import SPEC, random_batch

GAME = EnvSpec(n_agents=2, n_actions=3, obs_dim=1, state_dim=1, episode_limit=1)


def one_step_batch(rewards=None) -> EpisodeBatch:
    """The 9 joint actions of a 2 x 3 one-step game, one episode each (terminal after one step)."""
    joint = all_joint_actions(2, 3)  # (9, 2)
    batch = EpisodeBatch.empty(GAME, 9, 1)
    batch.obs.fill_(1.0)
    batch.state.fill_(1.0)
    batch.avail.fill_(True)
    batch.actions[:, 0] = joint
    batch.filled.fill_(1.0)
    batch.terminated.fill_(1.0)
    if rewards is not None:
        batch.reward[:, 0, 0] = torch.tensor(rewards, dtype=torch.float32).flatten()
    return batch


class FixedUtilities(nn.Module):
    """An 'agent network' whose utilities are a fixed (N, A) table at every row."""

    def __init__(self, q: torch.Tensor) -> None:
        super().__init__()
        self.q = nn.Parameter(q.clone())

    def forward(self, obs, prev_actions_onehot, hidden=None):
        b, t = obs.shape[:2]
        return self.q.expand(b, t, *self.q.shape), hidden


class TableJoint(nn.Module):
    """A stand-in joint network: Q_jt(u) read from a 2-agent table."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def utilities(self, obs, prev_actions_onehot):
        b, t = obs.shape[:2]
        return torch.zeros(b, t, 2, 3)

    def forward(self, q, actions, state, avail=None):
        return self.table[actions[..., 0], actions[..., 1]][..., None]


class ConstantValue(nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, state):
        return torch.full((*state.shape[:-1], 1), self.value)


def qtran_with(variant: str, q_agents, q_jt, v_jt: float) -> QTRAN:
    model = QTRAN(GAME, agent=RNNAgent, main_function=VDNMixer, optimizer=torch.optim.Adam,
                  central=partial(FeedForwardMixer, hidden_dim=8, n_layers=1), variant=variant)
    model.nets["main"].agent = FixedUtilities(torch.tensor(q_agents))
    model.nets["central"] = TableJoint(torch.tensor(q_jt))
    model.target_nets["central"] = TableJoint(torch.tensor(q_jt))
    model.nets["v_jt"] = ConstantValue(v_jt)
    return model


# Agents' utilities whose greedy joint action is (A, A); Q'_jt = Q_1 + Q_2.
Q_AGENTS = [[4.0, 1.0, 0.5], [4.0, 2.0, 1.0]]
Q_PRIME = torch.tensor(Q_AGENTS[0])[:, None] + torch.tensor(Q_AGENTS[1])[None, :]  # (3, 3)
# D = Q'_jt - Q_jt + V_jt with V_jt = 0: zero at (A, A) (4a), >= 0 elsewhere (4b), and a zero in every
# row and every column (condition (7) of QTRAN-alt).
D_ALT = torch.tensor([[0.0, 5.0, 5.0], [5.0, 0.0, 3.0], [5.0, 3.0, 0.0]])


@pytest.mark.parametrize("variant", ["base", "alt"])
def test_qtran_losses_vanish_when_the_conditions_hold(variant):
    model = qtran_with(variant, Q_AGENTS, (Q_PRIME - D_ALT).tolist(), v_jt=0.0)
    terms = model.losses(one_step_batch())
    assert terms["loss_opt"].item() == pytest.approx(0.0, abs=1e-10)
    assert terms[f"loss_nopt{'_min' if variant == 'alt' else ''}"].item() == pytest.approx(0.0, abs=1e-10)


def test_qtran_opt_loss_sees_a_wrong_state_value():
    """(4a): V_jt must close the gap at the greedy joint action; a wrong V_jt is penalised by its square."""
    model = qtran_with("base", Q_AGENTS, (Q_PRIME - D_ALT).tolist(), v_jt=1.5)
    assert model.losses(one_step_batch())["loss_opt"].item() == pytest.approx(1.5**2)


def test_qtran_base_penalises_only_violations_of_4b():
    d = D_ALT.clone()
    d[1, 2] = -2.0  # Q'_jt + V_jt < Q_jt at (B, C): (4b) violated there only
    model = qtran_with("base", Q_AGENTS, (Q_PRIME - d).tolist(), v_jt=0.0)
    assert model.losses(one_step_batch())["loss_nopt"].item() == pytest.approx(4.0 / 9)  # one of 9 samples


def test_qtran_alt_is_stricter_than_base():
    """With D >= 0 but no zero in row B, (4b) holds (base loss 0) while condition (7) does not."""
    d = D_ALT.clone()
    d[1] = torch.tensor([5.0, 1.0, 3.0])  # row B and column B now have no zero: their minimum is 1
    base = qtran_with("base", Q_AGENTS, (Q_PRIME - d).tolist(), v_jt=0.0).losses(one_step_batch())
    alt = qtran_with("alt", Q_AGENTS, (Q_PRIME - d).tolist(), v_jt=0.0).losses(one_step_batch())
    assert base["loss_nopt"].item() == pytest.approx(0.0, abs=1e-10)
    # per sample 1/N sum_i (min_{u_i} D)^2: 1/2 where u_0 = B or u_1 = B (4 samples), 1 at (B, B); over 9
    assert alt["loss_nopt_min"].item() == pytest.approx((4 * 0.5 + 1.0) / 9)


def test_qtran_constraint_losses_train_the_agents_and_v_not_the_joint_network():
    torch.manual_seed(0)
    model = QTRAN(GAME, agent=RNNAgent, main_function=VDNMixer, optimizer=torch.optim.Adam,
                  central=partial(FeedForwardMixer, hidden_dim=16, n_layers=2), variant="alt")
    terms = model.losses(one_step_batch([[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]))
    (terms["loss_opt"] + terms["loss_nopt_min"]).backward()
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.nets["central"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.nets["v_jt"].parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.nets["main"].parameters())


def test_weightings_by_hand():
    q_tot = torch.tensor([[1.0], [3.0], [2.0], [0.0]])
    y = torch.tensor([[2.0], [2.0], [2.0], [5.0]])
    greedy = torch.tensor([[0.0], [0.0], [1.0], [0.0]])
    q_star_greedy = torch.tensor([[1.0], [3.0], [9.0], [6.0]])
    # CW: 1 where y > Q*(s, u_greedy) or at the greedy action
    assert CentralWeighting(0.1)(q_tot, y, greedy, q_star_greedy)[:, 0].tolist() == pytest.approx([1, 0.1, 1, 0.1])
    # OW: 1 where Q_tot < y
    assert OptimisticWeighting(0.1)(q_tot, y, greedy, None)[:, 0].tolist() == pytest.approx([1, 0.1, 0.1, 1])
    with pytest.raises(ValueError, match="alpha"):
        OptimisticWeighting(0.0)


def test_weighted_qmix_loss_is_the_weighted_mean_squared_td_error():
    torch.manual_seed(0)
    common = {"agent": RNNAgent, "main_function": QMixer, "optimizer": torch.optim.Adam,
              "central": partial(FeedForwardMixer, state_value=True)}
    batch = one_step_batch([[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]])
    plain = ValueFactorization(GAME, **common)
    weighted = ValueFactorization(GAME, **common, td_weighting=OptimisticWeighting(0.1))
    weighted.load_state_dict(plain.state_dict())
    q_tot = plain.nets["main"](plain.utilities(plain.nets, "main", batch)[:, :1], batch.actions, batch.state[:, :1])
    y = batch.reward  # one-step terminal episodes: y = r
    w = torch.where(q_tot < y, 1.0, 0.1)
    assert weighted.losses(batch)["loss_td"].item() == pytest.approx(((w * (q_tot - y) ** 2).mean()).item(), rel=1e-5)
    assert plain.losses(batch)["loss_td"].item() == pytest.approx(((q_tot - y) ** 2).mean().item(), rel=1e-5)


def test_iql_regresses_each_agent_on_the_team_reward():
    torch.manual_seed(0)
    model = ValueFactorization(GAME, agent=RNNAgent, main_function=None, optimizer=torch.optim.RMSprop)
    batch = one_step_batch([[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]])
    q = model.utilities(model.nets, "main", batch)[:, 0]  # (9, N, A)
    q_taken = q.gather(-1, batch.actions[:, 0, :, None])[..., 0]  # (9, N)
    expected = ((q_taken - batch.reward[:, 0]) ** 2).mean()  # every agent toward r
    assert model.losses(batch)["loss_td"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert model.joint_value_name == "sum_i Q_i"
    values = model.joint_values(batch, torch.zeros(1, 2, dtype=torch.long), all_joint_actions(2, 3))
    assert torch.allclose(values["q_joint"][0], (q[0, 0][:, None] + q[0, 1][None, :]).flatten())


def test_loss_weights_scale_the_total_not_the_logged_terms():
    model = ValueFactorization(GAME, agent=RNNAgent, main_function=VDNMixer, optimizer=torch.optim.Adam,
                               loss_weights={"loss_td": 0.5})
    terms = model.losses(one_step_batch([[1, 0, 0], [0, 0, 0], [0, 0, 0]]))
    assert model.total_loss(terms).item() == pytest.approx(0.5 * terms["loss_td"].item())


@pytest.mark.parametrize("main", [VDNMixer, QMixer, QplexMixer])
def test_igm_violation_is_zero_by_construction(main):
    """At evaluation, the joint value's argmax is the agents' greedy joint action on random inputs."""
    for seed in range(3):
        torch.manual_seed(seed)
        model = ValueFactorization(SPEC, agent=RNNAgent, main_function=main, optimizer=torch.optim.RMSprop)
        violations = model.igm_violation(random_batch(seed=seed))
        assert violations.numel() > 0 and violations.sum() == 0


def test_igm_violation_is_measured_against_a_central_joint_value():
    """QTRAN and Weighted QMIX report the violation of their unconstrained Q_jt / Q*: not 0 untrained."""
    torch.manual_seed(0)
    model = QTRAN(SPEC, agent=RNNAgent, main_function=VDNMixer, optimizer=torch.optim.Adam,
                  central=partial(FeedForwardMixer, hidden_dim=16, n_layers=2))
    assert model.joint_value_name == "Q_jt"
    assert model.igm_violation(random_batch(b=8)).sum() > 0


@pytest.mark.parametrize("variant", ["base", "alt"])
def test_qtran_losses_on_multi_step_episodes_match_a_per_step_computation(variant):
    """With T > 1 (and T != N), V_jt (B, T, 1) must line up with each step's counterfactual gaps; computing
    the loss on the whole batch equals the mean of the same loss on each one-step slice."""
    torch.manual_seed(0)
    model = QTRAN(SPEC, agent=RNNAgent, main_function=VDNMixer, optimizer=torch.optim.Adam,
                  central=partial(FeedForwardMixer, hidden_dim=16, n_layers=2, state_value=True), variant=variant)
    batch = random_batch(b=5, t=4)
    batch.filled.fill_(1.0)
    key = "loss_nopt" if variant == "base" else "loss_nopt_min"
    v_jt = model.nets["v_jt"](batch.current(batch.state))  # (B, T, 1)
    q_t = batch.current(model.utilities(model.nets, "main", batch))  # (B, T, N, A)
    with torch.no_grad():
        whole = model.losses(batch)[key]
        q_c = batch.current(model.utilities(model.nets, "central", batch))
        per_step = []
        for t in range(batch.max_steps):
            state, avail, acts = batch.state[:, t : t + 1], batch.avail[:, t : t + 1], batch.actions[:, t : t + 1]
            if variant == "base":
                q_prime = q_t[:, t : t + 1].gather(-1, acts[..., None])[..., 0].sum(-1, keepdim=True)
                q_jt = model.nets["central"](q_c[:, t : t + 1], acts, state, avail)
                per_step.append(((q_prime - q_jt + v_jt[:, t : t + 1]).clamp(max=0) ** 2).mean())
            else:
                gaps = []
                for i in range(SPEC.n_agents):
                    row = []
                    for a in range(SPEC.n_actions):
                        cf = acts.clone()
                        cf[..., i] = a
                        q_prime = q_t[:, t : t + 1].gather(-1, cf[..., None])[..., 0].sum(-1, keepdim=True)
                        q_jt = model.nets["central"](q_c[:, t : t + 1], cf, state, avail)
                        gap = q_prime - q_jt + v_jt[:, t : t + 1]
                        row.append(gap.masked_fill(~avail[..., i, a : a + 1], float("inf")))
                    gaps.append(torch.cat(row, -1).min(-1).values ** 2)  # (B, 1)
                per_step.append(torch.stack(gaps, -1).mean())
    torch.testing.assert_close(whole, torch.stack(per_step).mean())
