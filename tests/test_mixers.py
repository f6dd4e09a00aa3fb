"""Every mixer in the main_function and residual_function groups, instantiated from its config."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from envs import EnvSpec
from resq.learners.value_factorization import build_mixer
from resq.nn import JointValue, QMixer, QplexMixer, RNNAgent, VDNMixer, all_joint_actions
from resq.nn.mixers import Mixer
from tests.conftest import CONF, option_value_type

N, A, S = 3, 4, 5
SPEC = EnvSpec(n_agents=N, n_actions=A, obs_dim=2, state_dim=S, episode_limit=1)
MIXER_CONFIGS = [
    f"{group}/{path.stem}"
    for group in ("main_function", "residual_function")
    for path in sorted((CONF / group).glob("*.yaml"))
    if "_target_" in (OmegaConf.load(path) or {})
    and option_value_type(group, path.stem) == "expected"  # distributional ones: test_distributional.py
]


def make(name: str) -> Mixer:
    """The mixer of conf/<name>.yaml, built the way the learner builds it (n_actions where taken)."""
    return build_mixer(instantiate(OmegaConf.load(CONF / f"{name}.yaml")), SPEC)


def extras(mixer: Mixer, lead: tuple[int, ...], generator=None) -> dict[str, torch.Tensor]:
    """Random extra inputs of the right shapes for mixers that declare them."""
    out = {}
    if "actions" in mixer.extra_inputs:
        out["actions"] = torch.randint(0, A, (*lead, N), generator=generator)
    if "q_greedy" in mixer.extra_inputs:
        out["q_greedy"] = torch.randn(*lead, N, generator=generator).abs() + 3.0
    return out


@pytest.mark.parametrize("name", MIXER_CONFIGS)
def test_mixer_shape_contract(name):
    mixer = make(name)
    assert mixer(torch.randn(4, 7, N), torch.randn(4, 7, S), **extras(mixer, (4, 7))).shape == (4, 7, 1)  # (B, T)
    out = mixer(torch.randn(4, 7, 9, N), torch.randn(4, 7, 9, S), **extras(mixer, (4, 7, 9)))
    assert out.shape == (4, 7, 9, 1)  # (B, T, J)
    with pytest.raises(ValueError, match="q_taken"):
        mixer(torch.randn(4, 7, N + 1), torch.randn(4, 7, S), **extras(mixer, (4, 7)))
    with pytest.raises(ValueError, match="state"):
        mixer(torch.randn(4, 7, N), torch.randn(4, 6, S), **extras(mixer, (4, 7)))
    for key in mixer.extra_inputs:  # a richer mixer checks its extra inputs too
        bad = extras(mixer, (4, 7))
        bad[key] = bad[key][..., :-1]
        with pytest.raises(ValueError, match=key):
            mixer(torch.randn(4, 7, N), torch.randn(4, 7, S), **bad)
        missing = extras(mixer, (4, 7))
        del missing[key]
        with pytest.raises(ValueError, match="JointValue"):
            mixer(torch.randn(4, 7, N), torch.randn(4, 7, S), **missing)
    if not mixer.extra_inputs:
        with pytest.raises(ValueError, match="extra inputs"):
            mixer(torch.randn(4, 7, N), torch.randn(4, 7, S), actions=torch.zeros(4, 7, N, dtype=torch.long))


IGM = [name for name in MIXER_CONFIGS if make(name).igm]


def test_the_groups_hold_igm_mixers():
    assert {"main_function/qmix", "main_function/vdn", "main_function/qatten", "main_function/qplex"} <= set(IGM)
    assert "residual_function/ff" not in IGM


def greedy_agreement(mixer: Mixer, seed: int, states: int = 32) -> torch.Tensor:
    """Per random state: is argmax over all joint actions of the mixed value the agents' greedy joint action?"""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    joint = JointValue(RNNAgent(N, A, 2), mixer)
    q = torch.randn(states, N, A, generator=g) * 5  # (M, N, A)
    state = torch.randn(states, S, generator=g)
    acts = all_joint_actions(N, A)  # (J, N)
    j = acts.shape[0]
    values = joint(q[:, None].expand(states, j, N, A), acts.expand(states, j, N), state[:, None].expand(states, j, S))
    best = acts[values[..., 0].argmax(-1)]  # (M, N)
    return (best == q.argmax(-1)).all(-1)


@pytest.mark.parametrize("name", IGM)
def test_mixers_declared_igm_put_the_greedy_joint_action_at_the_argmax(name):
    """IGM by construction: on random utilities and states the joint argmax is the agents' greedy action
    (QPLEX's argmax consistency; QMIX, VDN and QAtten through monotonicity)."""
    for seed in range(3):
        assert greedy_agreement(make(name), seed).all(), name


def test_the_argmax_check_catches_a_mixer_without_igm():
    assert not greedy_agreement(make("residual_function/ff"), 0).all()


def test_qplex_is_not_monotonic_but_its_advantages_keep_the_greedy_action_best():
    """Q_tot = sum_i V'_i + sum_i lambda_i A'_i: equal to sum_i V'_i at the greedy action, lower elsewhere,
    and lambda depends on the joint action (so Q_tot can order non-greedy actions non-monotonically)."""
    torch.manual_seed(0)
    mixer = QplexMixer(N, S, n_actions=A)
    state = torch.randn(64, S)
    q_greedy = torch.randn(64, N)
    w, c = mixer.transform.coefficients(state)
    at_greedy = mixer(q_greedy, state, actions=torch.zeros(64, N, dtype=torch.long), q_greedy=q_greedy)
    assert torch.allclose(at_greedy, (w * q_greedy).sum(-1, keepdim=True) + c, atol=1e-5)
    lam_a = mixer.importance(state, torch.zeros(64, N, dtype=torch.long))
    lam_b = mixer.importance(state, torch.ones(64, N, dtype=torch.long))
    assert (lam_a > 0).all() and not torch.allclose(lam_a, lam_b)


@pytest.mark.parametrize("name", MIXER_CONFIGS)
def test_rows_that_allow_no_action_keep_the_joint_value_finite(name):
    """Padding after an episode's end (and a terminal step's next state) allows no action; those rows are
    masked out of the loss, so a nan or inf there would still poison it (nan * 0 = nan). QPLEX's V_i = max
    over available actions was -inf on such rows: nan at SMAX's first update."""
    torch.manual_seed(0)
    joint = JointValue(None, make(name))
    q = torch.randn(8, N, A, requires_grad=True)
    avail = torch.rand(8, N, A) < 0.7
    avail[:, :, 0] = True
    avail[4:] = False  # padded rows
    actions = torch.randint(0, A, (8, N))
    value = joint(q, actions, torch.randn(8, S), avail)
    loss = (value[:4] ** 2).sum() + 0.0 * value[4:].sum()  # what a masked loss does
    (grad,) = torch.autograd.grad(loss, q)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()


MONOTONIC = [name for name in MIXER_CONFIGS if make(name).monotonic]


def test_the_groups_hold_monotonic_mixers():
    assert {"main_function/qmix", "main_function/vdn", "main_function/qatten"} <= set(MONOTONIC)
    assert "main_function/qplex" not in MONOTONIC  # IGM by construction, but not monotonic


@pytest.mark.parametrize("name", MONOTONIC)
def test_mixers_declared_monotonic_are_monotonic(name):
    for seed in range(3):
        torch.manual_seed(seed)
        mixer = make(name)
        q = (torch.randn(64, N) * 5).requires_grad_()
        q_tot = mixer(q, torch.randn(64, S))
        (grad,) = torch.autograd.grad(q_tot.sum(), q)
        assert (grad >= 0).all(), f"dQ_tot/dQ_i < 0 for {name}"


def test_vdn_equals_the_sum():
    q = torch.randn(6, 4, N)
    assert torch.allclose(VDNMixer(N, S)(q, torch.randn(6, 4, S)), q.sum(-1, keepdim=True))


def test_qmix_is_monotone_and_not_additive():
    torch.manual_seed(0)
    mixer = QMixer(N, S)
    q = torch.randn(128, N, requires_grad=True)
    state = torch.randn(128, S)
    (grad,) = torch.autograd.grad(mixer(q, state).sum(), q)
    assert (grad >= 0).all()
    assert grad.std() > 1e-4  # state-dependent weights, not a plain sum


def test_a_monotonicity_check_catches_a_non_monotone_mixer():
    """The same autograd check fails on the feed-forward mixer, which makes no such claim."""
    torch.manual_seed(0)
    mixer = make("residual_function/ff")
    q = (torch.randn(256, N) * 5).requires_grad_()
    (grad,) = torch.autograd.grad(mixer(q, torch.randn(256, S)).sum(), q)
    assert (grad < 0).any()


def test_qatten_is_a_nonnegative_state_weighted_sum():
    from resq.nn import QattenMixer
    torch.manual_seed(0)
    mixer = QattenMixer(N, S)
    state = torch.randn(32, S)
    k, c = mixer.coefficients(state)
    assert k.shape == (32, N) and c.shape == (32, 1) and (k >= 0).all()
    q = torch.randn(32, N)
    assert torch.allclose(mixer(q, state), (k * q).sum(-1, keepdim=True) + c, atol=1e-6)
    assert k.std(0).mean() > 1e-4  # the weights move with the state


def test_qatten_unit_features_come_from_the_state():
    from resq.nn import QattenMixer
    torch.manual_seed(0)
    mixer = QattenMixer(N, state_dim=3 * N + 2, unit_dim=3)
    state = torch.randn(4, 3 * N + 2)
    assert torch.equal(mixer.agent_features(state)[:, 1], state[:, 3:6])
    with pytest.raises(ValueError, match="unit_dim"):
        QattenMixer(N, state_dim=5, unit_dim=3)


def test_qatten_without_softmax_is_not_monotonic():
    from resq.nn import QattenMixer
    torch.manual_seed(0)
    mixer = QattenMixer(N, S, softmax=False)
    assert not mixer.monotonic
    k, _ = mixer.coefficients(torch.randn(256, S))
    assert (k < 0).any()
