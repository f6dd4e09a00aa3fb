"""Every mixer in the main_function and residual_function groups, instantiated from its config."""

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from resq.nn import QMixer, VDNMixer
from resq.nn.mixers import Mixer
from tests.conftest import CONF, option_value_type

N, S = 3, 5
MIXER_CONFIGS = [
    f"{group}/{path.stem}"
    for group in ("main_function", "residual_function")
    for path in sorted((CONF / group).glob("*.yaml"))
    if "_target_" in (OmegaConf.load(path) or {})
    and option_value_type(group, path.stem) == "expected"  # distributional ones: test_distributional.py
]


def make(name: str) -> Mixer:
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"))(n_agents=N, state_dim=S)


@pytest.mark.parametrize("name", MIXER_CONFIGS)
def test_mixer_shape_contract(name):
    mixer = make(name)
    assert mixer(torch.randn(4, 7, N), torch.randn(4, 7, S)).shape == (4, 7, 1)  # (B, T)
    assert mixer(torch.randn(4, 7, 9, N), torch.randn(4, 7, 9, S)).shape == (4, 7, 9, 1)  # (B, T, J)
    with pytest.raises(ValueError, match="q_taken"):
        mixer(torch.randn(4, 7, N + 1), torch.randn(4, 7, S))
    with pytest.raises(ValueError, match="state"):
        mixer(torch.randn(4, 7, N), torch.randn(4, 6, S))


MONOTONIC = [name for name in MIXER_CONFIGS if make(name).monotonic]


def test_the_groups_hold_monotonic_mixers():
    assert {"main_function/qmix", "main_function/vdn"} <= set(MONOTONIC)


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
