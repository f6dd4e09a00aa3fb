"""Distributional parts: the IQN agent, the quantile Huber loss, DDN/DMIX/DAtten, ResZ's residual, mask
and central levels, and DIGM measured on expectations."""

import math
from functools import partial

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from envs import EnvSpec
from resq.data import masked_argmax
from resq.learners import DistributionalValueFactorization, IncompatibleComponentsError
from resq.learners.value_factorization import build_mixer
from resq.nn import (
    DAttenMixer,
    DDNMixer,
    DMixMixer,
    FeedForwardMixer,
    IQNAgent,
    PerQuantileMixer,
    QuantileMLPMixer,
    midpoint_taus,
    quantile_huber_loss,
    sample_taus,
)
from tests.conftest import CONF, options
from tests.helpers import SPEC, random_batch

N, S, K, A = 3, 6, 8, 4
MIXER_SPEC = EnvSpec(n_agents=N, n_actions=A, obs_dim=5, state_dim=S, episode_limit=4)
DISTRIBUTIONAL_MIXERS = [f"{group}/{name}" for group in ("main_function", "residual_function")
                         for name in options(group, "distributional")]


def make(name: str):
    """A mixer from its config file, built as the learner builds it (`build_mixer`: n_actions when it takes it)."""
    return build_mixer(instantiate(OmegaConf.load(CONF / f"{name}.yaml")), MIXER_SPEC)


def extra_inputs(mixer, lead: tuple[int, ...]) -> dict:
    """The joint action for a mixer that reads it (ResZ's attention residual), shaped (*lead, N)."""
    return {"actions": torch.randint(0, A, (*lead, N))} if "actions" in mixer.extra_inputs else {}


ATTENTION_RESIDUAL = partial(DAttenMixer, softmax=False)
CENTRAL = partial(QuantileMLPMixer, n_quantiles=K)


def resz(main=DAttenMixer, residual=ATTENTION_RESIDUAL, central=CENTRAL, **kwargs):
    return DistributionalValueFactorization(SPEC, agent=IQNAgent, main_function=main, optimizer=torch.optim.RMSprop,
                                            residual_function=residual, central=central, **kwargs)


# ---- the quantile Huber loss ----------------------------------------------------------------------
def test_quantile_huber_loss_by_hand():
    z = torch.tensor([[[0.0, 2.0], [5.0, 5.0]]])  # (B=1, T=2, K=2); step 1 is padding
    tau = torch.tensor([[[0.1, 0.6], [0.5, 0.5]]])
    target = torch.tensor([[[0.5, -3.0], [99.0, -99.0]]])  # (1, 2, K'=2)
    mask = torch.tensor([[[1.0], [0.0]]])
    # level 0.1 at 0: u = 0.5 -> 0.1 * 0.125;  u = -3 -> 0.9 * (3 - 0.5)     -> mean 1.13125
    # level 0.6 at 2: u = -1.5 -> 0.4 * 1.0;  u = -5 -> 0.4 * (5 - 0.5)       -> mean 1.1
    assert quantile_huber_loss(z, tau, target, mask).item() == pytest.approx(1.13125 + 1.1)
    # kappa = 2: L(u) = u^2/2 within 2, else 2 (|u| - 1); rho = w L / 2
    #   level 0.1: 0.1 * 0.125 / 2, 0.9 * 4 / 2 -> 0.903125; level 0.6: 0.4 * 1.125 / 2, 0.4 * 8 / 2 -> 0.9125
    assert quantile_huber_loss(z, tau, target, mask, kappa=2.0).item() == pytest.approx(0.903125 + 0.9125)


def test_quantile_huber_loss_finds_quantiles():
    """Minimising it against samples moves each prediction to (near) its level's quantile."""
    torch.manual_seed(0)
    samples = torch.randn(1, 1, 4000) * 2.0 + 1.0  # N(1, 4)
    tau = torch.tensor([[[0.1, 0.5, 0.9]]])
    z = torch.zeros(1, 1, 3, requires_grad=True)
    opt = torch.optim.Adam([z], lr=0.05)
    for _ in range(600):
        loss = quantile_huber_loss(z, tau, samples, torch.ones(1, 1, 1), kappa=0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
    expected = 1.0 + 2.0 * torch.tensor([-1.2816, 0.0, 1.2816])
    assert torch.allclose(z.detach()[0, 0], expected, atol=0.15), z


def test_quantile_huber_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="tau"):
        quantile_huber_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5), torch.zeros(2, 3, 4), torch.ones(2, 3, 1))
    with pytest.raises(ValueError, match="kappa"):
        quantile_huber_loss(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), torch.ones(2, 3, 1), 0.0)


def test_levels():
    assert midpoint_taus(4).tolist() == [0.125, 0.375, 0.625, 0.875]
    tau = sample_taus(5, 7, 8)
    assert tau.shape == (5, 7, 8) and (tau >= 0).all() and (tau < 1).all()
    assert (tau.diff(dim=-1) >= 0).all()  # sorted along K


# ---- the IQN agent --------------------------------------------------------------------------------
def test_iqn_embedding_and_quantile_shapes():
    torch.manual_seed(0)
    agent = IQNAgent(n_agents=N, n_actions=4, obs_dim=5, hidden_dim=16, quantile_embed_dim=64)
    tau = torch.rand(2, 3, K)
    assert torch.allclose(agent.frequencies, math.pi * torch.arange(64.0))
    phi = agent.embed(tau)
    assert phi.shape == (2, 3, K, 16) and (phi >= 0).all()
    cosines = torch.cos(math.pi * torch.arange(64.0) * tau[..., None])  # (2, 3, K, 64): cos(pi i tau)
    assert torch.allclose(phi, torch.relu(agent.phi(cosines)), atol=1e-6)
    obs, prev = torch.randn(2, 3, N, 5), torch.zeros(2, 3, N, 4)
    z, hidden = agent(obs, prev, None, tau)
    assert z.shape == (2, 3, N, 4, K) and hidden.shape == (2, N, 16)
    with pytest.raises(ValueError, match="tau"):
        agent(obs, prev)
    with pytest.raises(ValueError, match="tau must be"):
        agent.quantiles(agent.features(obs, prev)[0], torch.rand(2, K))


@pytest.mark.parametrize("shape", ["midpoints", "per_episode"])
def test_iqn_embeds_broadcast_levels_once_with_the_same_values_and_gradients(shape):
    """Levels expanded along B and T (the N_hat midpoints) or along T (target levels drawn once per episode)
    are embedded once and broadcast: the same quantiles and weight gradients as embedding every copy."""
    torch.manual_seed(0)
    agent = IQNAgent(n_agents=N, n_actions=4, obs_dim=5, hidden_dim=16)
    features = agent.features(torch.randn(3, 5, N, 5), torch.zeros(3, 5, N, 4))[0].detach()  # (3, 5, N, H)
    tau = midpoint_taus(K).expand(3, 5, K) if shape == "midpoints" else torch.rand(3, 1, K).expand(3, 5, K)
    assert 0 in tau.stride()
    grads = []
    for levels in (tau, tau.contiguous()):
        agent.zero_grad()
        z = agent.quantiles(features, levels)
        z.pow(2).sum().backward()
        grads.append((z.detach(), agent.phi.weight.grad.clone()))
    (z_broadcast, g_broadcast), (z_copies, g_copies) = grads
    assert torch.equal(z_broadcast, z_copies)
    assert torch.allclose(g_broadcast, g_copies, rtol=1e-4, atol=1e-5)


def test_iqn_levels_are_shared_by_the_agents_of_a_sample():
    """Slot k of every agent is the same level: changing sample 0's levels changes only sample 0."""
    torch.manual_seed(0)
    agent = IQNAgent(n_agents=N, n_actions=4, obs_dim=5)
    features = agent.features(torch.randn(2, 1, N, 5), torch.zeros(2, 1, N, 4))[0]
    tau = torch.rand(2, 1, K)
    z = agent.quantiles(features, tau)
    tau2 = tau.clone()
    tau2[0, 0, 3] = 0.999
    z2 = agent.quantiles(features, tau2)
    changed = (z2 != z).any(dim=3)  # (2, 1, N, K): per agent and slot
    assert changed[0, 0, :, 3].all()  # every agent's slot 3 of sample 0
    assert not changed[1].any() and not changed[0, 0, :, [0, 1, 2, 4, 5, 6, 7]].any()


# ---- mixers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DISTRIBUTIONAL_MIXERS)
def test_distributional_mixer_shape_contract(name):
    mixer = make(name)
    assert mixer(torch.randn(4, 7, N, K), torch.randn(4, 7, S), **extra_inputs(mixer, (4, 7))).shape == (4, 7, K)
    assert mixer(torch.randn(4, 7, 9, N, 32), torch.randn(4, 7, 9, S), **extra_inputs(mixer, (4, 7, 9))).shape == (4, 7, 9, 32)
    with pytest.raises(ValueError, match="z_taken"):
        mixer(torch.randn(4, 7, N + 1, K), torch.randn(4, 7, S), **extra_inputs(mixer, (4, 7)))
    with pytest.raises(ValueError, match="state"):
        mixer(torch.randn(4, 7, N, K), torch.randn(4, 6, S), **extra_inputs(mixer, (4, 7)))
    if mixer.extra_inputs:
        with pytest.raises(ValueError, match="extra inputs"):
            mixer(torch.randn(4, 7, N, K), torch.randn(4, 7, S))
        with pytest.raises(ValueError, match="actions must have shape"):
            mixer(torch.randn(4, 7, N, K), torch.randn(4, 7, S), actions=torch.zeros(4, 7, N + 1, dtype=torch.long))


def test_the_distributional_groups():
    assert set(options("main_function", "distributional")) == {"datten", "ddn", "dmix"}
    assert set(options("residual_function", "distributional")) == {"datten", "ddn", "dmix"}
    assert make("main_function/datten").monotonic and not make("residual_function/datten").monotonic


def test_ddn_equals_the_sum_per_quantile():
    z = torch.randn(6, 4, N, K)
    assert torch.allclose(DDNMixer(N, S)(z, torch.randn(6, 4, S)), z.sum(-2))


def test_dmix_mean_is_qmix_of_the_agents_means_and_its_shape_has_mean_zero():
    torch.manual_seed(0)
    mixer = DMixMixer(N, S)
    z, state = torch.randn(64, N, K) * 3, torch.randn(64, S)
    z_tot = mixer(z, state)  # (64, K)
    assert torch.allclose(z_tot.mean(-1, keepdim=True), mixer.mean_mixer(z.mean(-1), state), atol=1e-5)
    # the shape: the sum of the agents' deviations from their means, level by level
    assert torch.allclose(z_tot - z_tot.mean(-1, keepdim=True), (z - z.mean(-1, keepdim=True)).sum(-2), atol=1e-5)
    assert not torch.allclose(z_tot.mean(-1), z.mean(-1).sum(-1), atol=1e-2)  # the mean is mixed, not summed


@pytest.mark.parametrize("name", ["main_function/datten", "main_function/ddn", "main_function/dmix"])
def test_distributional_main_functions_are_monotone_per_quantile(name):
    for seed in range(3):
        torch.manual_seed(seed)
        mixer = make(name)
        z = (torch.randn(64, N, K) * 5).requires_grad_()
        (grad,) = torch.autograd.grad(mixer(z, torch.randn(64, S)).sum(), z)
        assert (grad >= 0).all(), f"dZ_tot/dZ_i < 0 for {name}"


def test_datten_applies_qatten_coefficients_to_every_quantile():
    torch.manual_seed(0)
    mixer = DAttenMixer(N, S)
    z, state = torch.randn(32, N, K), torch.randn(32, S)
    k, c = mixer.attention.coefficients(state)
    assert torch.allclose(mixer(z, state), (k[..., None] * z).sum(1) + c, atol=1e-6)
    # each quantile is Qatten of that quantile: the expected-value mixer on slot 3 gives slot 3
    assert torch.allclose(mixer(z, state)[:, 3:4], mixer.attention(z[..., 3], state), atol=1e-6)


def test_attention_without_softmax_is_affine_in_the_utilities_for_a_fixed_state():
    """Why ResZ's residual needs the joint action as input (docs/methods/resz.md): reading the state only,
    in one state -|sum_i k_i Z_i + c| is minus the absolute value of a function additive over the agents."""
    torch.manual_seed(0)
    mixer = DAttenMixer(N, S, softmax=False)
    state = torch.randn(1, S).expand(10, S)
    z1, z2 = torch.randn(10, N, K), torch.randn(10, N, K)
    out = mixer(z1 + z2, state) + mixer(torch.zeros(10, N, K), state)
    assert torch.allclose(out, mixer(z1, state) + mixer(z2, state), atol=1e-5)


def test_residual_attention_reads_the_joint_action():
    """With `action_input` the coefficients k_i(s, u) and c(s, u) move with the joint action (ResQ paper Sec.
    4.3: Q_r(tau, u) takes the actions as input), so the mixer is not monotonic and cannot be a main function."""
    torch.manual_seed(0)
    mixer = DAttenMixer(N, S, softmax=False, n_actions=A, action_input=True)
    assert mixer.extra_inputs == ("actions",) and not mixer.monotonic and not mixer.igm
    state = torch.randn(1, S).expand(2, S)
    actions = torch.tensor([[0, 1, 2], [0, 1, 3]])  # only agent 2 differs
    k, c = mixer.attention.coefficients(state, actions)
    assert not torch.allclose(k[0], k[1]) and not torch.allclose(c[0], c[1])
    with pytest.raises(ValueError, match="n_actions"):
        DAttenMixer(N, S, softmax=False, action_input=True)
    with pytest.raises(ValueError, match="actions="):
        mixer.attention.coefficients(state)
    with pytest.raises(IncompatibleComponentsError, match="IGM"):
        resz(main=partial(DAttenMixer, action_input=True))


@pytest.mark.parametrize("action_input", [False, True])
def test_only_the_action_reading_residual_fits_a_residual_that_couples_the_agents(action_input):
    """The 2 x 2 residual R = -[[0, 1], [1, 1]] is not -|f(u_1) + g(u_2)| for any f, g (|f0+g0| = 0 and
    |f0+g1| = |f1+g0| = 1 force |f1+g1| in {0, 2}), the class of attention without softmax in one state.
    Fitted by gradient descent with the agents' values as free parameters, the mixer that reads the joint
    action gets there and the state-only one cannot."""
    torch.manual_seed(0)
    n, a = 2, 2
    mixer = DAttenMixer(n, 1, softmax=False, n_actions=a, action_input=action_input)
    z = torch.randn(n, a, 1, requires_grad=True)  # Z^r_i(u_i), one level
    actions = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    target = -torch.tensor([[0.0], [1.0], [1.0], [1.0]])
    state = torch.ones(4, 1)
    optimizer = torch.optim.Adam([z, *mixer.parameters()], lr=0.01)
    extra = {"actions": actions} if action_input else {}
    for _ in range(1500):
        z_taken = z[torch.arange(n), actions]  # (4, N, 1)
        error = -mixer(z_taken, state, **extra).abs() - target
        optimizer.zero_grad()
        (error**2).mean().backward()
        optimizer.step()
    worst = error.abs().max().item()
    assert (worst < 0.05) if action_input else (worst > 0.2), worst


def test_per_quantile_mixer_applies_the_expected_mixer_to_each_level():
    torch.manual_seed(0)
    mixer = PerQuantileMixer(N, S, mixer=partial(FeedForwardMixer, hidden_dim=16, n_layers=2))
    z, state = torch.randn(5, N, K), torch.randn(5, S)
    out = mixer(z, state)
    for k in (0, 5):
        assert torch.allclose(out[:, k : k + 1], mixer.mixer(z[..., k], state), atol=1e-6)
    with pytest.raises(ValueError, match="expected-value"):
        PerQuantileMixer(N, S, mixer=DDNMixer)


def test_central_mlp_reads_a_fixed_number_of_quantiles():
    mixer = QuantileMLPMixer(N, S, n_quantiles=K)
    assert mixer(torch.randn(2, 3, N, K), torch.randn(2, 3, S)).shape == (2, 3, K)
    with pytest.raises(ValueError, match="K=8"):
        mixer(torch.randn(2, 3, N, 4), torch.randn(2, 3, S))


# ---- the learner ----------------------------------------------------------------------------------
@pytest.mark.parametrize("residual", ["datten", "ff", "ddn", "dmix"])
def test_residual_is_never_positive_at_any_quantile(residual):
    torch.manual_seed(0)
    factory = instantiate(OmegaConf.load(CONF / "residual_function" / f"{residual}.yaml"))
    model = resz(residual=factory)
    z_r = torch.randn(50, 7, N, 4, K) * 10
    actions = torch.randint(0, 4, (50, 7, N))
    value = model.residual_value(z_r, actions, torch.randn(50, 7, S) * 10)
    assert value.shape == (50, 7, K) and (value <= 0).all()
    assert (value < 0).any()


def test_mask_compares_actions_at_t_with_the_greedy_actions_at_t():
    """The authors' code compared with the greedy actions at t+1 (SPEC.md); ours must not."""
    torch.manual_seed(0)
    model = resz()
    batch = random_batch(b=6, t=4)
    batch.avail.fill_(True)
    b, t, n, a = 6, 4, SPEC.n_agents, SPEC.n_actions
    # the agents' means: agent i's greedy action at observation row r is (r + i) mod A
    rows = torch.arange(t + 1)[:, None] + torch.arange(n)[None, :]  # (T+1, N)
    q = torch.nn.functional.one_hot(rows % a, a).float().expand(b, t + 1, n, a)  # (B, T+1, N, A)
    model.mean_utilities = lambda net, features: q  # what losses() reads the greedy actions from
    greedy = masked_argmax(q, batch.avail)  # (B, T+1, N)
    batch.actions = batch.current(greedy).clone()  # every agent greedy at every step
    assert model.losses(batch)["w_r_mean"].item() == 0.0
    batch.actions = batch.following(greedy).clone()  # greedy for the NEXT row: off-greedy at every step
    assert model.losses(batch)["w_r_mean"].item() == 1.0
    # one agent off its greedy action at (0, 0) unmasks exactly that step
    batch.actions = batch.current(greedy).clone()
    batch.actions[0, 0, 2] = (batch.actions[0, 0, 2] + 1) % a
    w_r = model.residual_weights(batch, q)
    assert w_r[0, 0, 0] == 1 and w_r.sum() == 1


def test_central_loss_draws_its_own_levels_and_the_residual_shares_the_main_ones():
    """The authors' code reused the main agents' levels for Z_jt (SPEC.md); ours draws fresh ones."""
    torch.manual_seed(0)
    model = resz()
    seen: dict[str, list[torch.Tensor]] = {"main": [], "residual": [], "central": []}
    for head, log in seen.items():
        net = model.nets[head]
        original = net.quantiles
        net.quantiles = lambda features, tau, original=original, log=log: log.append(tau) or original(features, tau)
    model.losses(random_batch())
    sampled_main = [t for t in seen["main"] if not torch.allclose(t[0, 0], midpoint_taus(t.shape[-1]))]
    assert len(sampled_main) == 1 and len(seen["residual"]) == 1 and len(seen["central"]) == 1
    assert torch.equal(seen["residual"][0], sampled_main[0])  # Z_tot(tau) + w_r Z_r(tau): same levels
    assert not torch.allclose(seen["central"][0], sampled_main[0])


def test_loss_masks_padding():
    model = resz()
    batch = random_batch()
    torch.manual_seed(1)
    before = model.losses(batch)
    batch.reward[0, 2:] = 1e6
    batch.actions[0, 2:] = 3
    torch.manual_seed(1)
    after = model.losses(batch)
    for key in ("loss_td", "loss_jt"):
        assert torch.allclose(before[key], after[key])


def test_gradient_steps_on_a_fixed_batch_lower_the_loss():
    torch.manual_seed(0)
    model = resz()
    batch = random_batch()
    opt = torch.optim.Adam(model.nets.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        terms = model.losses(batch)
        loss = terms["loss_td"] + terms["loss_jt"]
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert sum(losses[-5:]) / 5 < 0.5 * losses[0]


def test_targets_have_the_target_levels_and_the_reward_at_terminal_steps():
    torch.manual_seed(0)
    model = resz(n_target_quantiles=K, td_lambda=0.0)
    batch = random_batch()
    main = model.nets["main"]
    q = model.mean_utilities(main, main.features(batch.obs, batch.prev_actions_onehot))
    y = model.td_targets(batch, q)
    assert y.shape == (5, 4, K)
    assert torch.allclose(y[0, 1], batch.reward[0, 1].expand(K))  # terminal: no bootstrap


def test_act_is_greedy_on_the_mean_over_midpoint_levels():
    torch.manual_seed(0)
    model = resz()
    obs, prev = torch.randn(50, N, 5), torch.zeros(50, N, 4)
    avail = torch.ones(50, N, 4, dtype=torch.bool)
    avail[:, 1, 2] = False
    hidden = model.initial_state(50)
    greedy, _ = model.act(obs, prev, avail, hidden, 0.0, None)
    z, _ = model.nets["main"].agent(obs[:, None], prev[:, None], hidden, midpoint_taus(32).expand(50, 1, 32))
    assert torch.equal(greedy, masked_argmax(z[:, 0].mean(-1), avail))
    assert not (greedy[:, 1] == 2).any()
    again, _ = model.act(obs, prev, avail, hidden, 0.0, None)
    assert torch.equal(greedy, again)  # no sampling noise in greedy actions


@pytest.mark.parametrize("main", [DDNMixer, DMixMixer, DAttenMixer])
def test_digm_holds_by_construction_without_a_central_network(main):
    """E[Z_tot] over the midpoint levels is maximised by the agents' greedy actions (IGM on expectations)."""
    for seed in range(3):
        torch.manual_seed(seed)
        model = resz(main=main, residual=None, central=None)
        assert model.igm_violation(random_batch(seed=seed)).sum() == 0


def test_joint_values_are_expectations():
    torch.manual_seed(0)
    model = resz(main=DDNMixer, residual=None, central=None)
    batch = random_batch()
    rows = torch.tensor([[1, 0], [2, 3]])
    joint = torch.tensor([[0, 0, 0], [3, 2, 1]])
    values = model.joint_values(batch, rows, joint)
    e_z = values["q_agents"]  # (2, N, A): E[Z_i]
    expected = torch.stack([e_z.gather(-1, a.expand(2, -1)[..., None])[..., 0].sum(-1) for a in joint], dim=-1)
    assert torch.allclose(values["q_joint"], expected, atol=1e-5)  # E[sum_i Z_i] = sum_i E[Z_i]
    assert model.joint_value_name == "E[Z_tot]" and resz().joint_value_name == "E[Z_jt]"


def test_igm_violation_sees_a_central_network_that_disagrees_with_the_agents():
    torch.manual_seed(0)
    violations = resz().igm_violation(random_batch(b=8))
    assert violations.shape == (8 * 4 - 2,) and violations.sum() > 0


# ---- bad combinations -----------------------------------------------------------------------------
def test_main_functions_must_be_distributional():
    from resq.nn import QMixer
    with pytest.raises(IncompatibleComponentsError, match=r"main_function=QMixer.*algorithm=resz main_function=dmix"):
        resz(main=QMixer)


def test_an_expected_value_residual_is_applied_per_quantile():
    model = resz(residual=FeedForwardMixer)
    assert isinstance(model.nets["residual"].mixer, PerQuantileMixer)


def test_central_size_must_match_the_levels():
    with pytest.raises(IncompatibleComponentsError, match="n_target_quantiles=4"):
        resz(n_target_quantiles=4)
    with pytest.raises(ValueError, match="n_mean_quantiles"):
        resz(n_mean_quantiles=0)
