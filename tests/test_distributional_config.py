"""The distributional algorithms compose, their ablation grid builds, and mixing value types fails before
training with the fix in the message."""

import json

import pytest

from resq.learners import DistributionalValueFactorization, IncompatibleComponentsError
from resq.nn import IQNAgent, PerQuantileMixer
from resq.run import build_datamodule, build_learner, check_config, train
from tests.conftest import compose_config, compose_run, options

QUICK = ["t_max=640", "test_interval=320", "trainer.enable_progress_bar=false", "logger=none"]


def build(overrides):
    cfg = compose_config(overrides)
    check_config(cfg)
    datamodule = build_datamodule(cfg)
    return cfg, build_learner(cfg, datamodule.spec)


@pytest.mark.parametrize(("algorithm", "heads"), [
    ("resz", {"main", "residual", "central"}), ("datten", {"main"}), ("dmix", {"main"}), ("ddn", {"main"}),
])
def test_distributional_algorithms_pick_the_iqn_agent_and_their_parts(algorithm, heads):
    cfg, learner = build([f"algorithm={algorithm}"])
    assert isinstance(learner, DistributionalValueFactorization) and set(learner.nets) == heads
    assert all(isinstance(net.agent, IQNAgent) for net in learner.nets.values())
    assert cfg.main_function._target_ == {"resz": "resq.nn.DAttenMixer", "datten": "resq.nn.DAttenMixer",
                                          "dmix": "resq.nn.DMixMixer", "ddn": "resq.nn.DDNMixer"}[algorithm]


def test_resz_defaults_follow_the_paper():
    cfg, learner = build(["algorithm=resz"])
    assert cfg.residual_function.softmax is False  # attention without softmax
    assert cfg.residual_function.action_input is True  # Q_r(tau, u) reads the actions (paper Sec. 4.3)
    assert learner.nets["residual"].mixer.extra_inputs == ("actions",)
    assert cfg.main_function.softmax is True and not cfg.main_function.get("action_input", False)
    assert (learner.n_quantiles, learner.n_target_quantiles, learner.n_mean_quantiles, learner.kappa) == (8, 8, 32, 1.0)
    assert learner.nets["central"].mixer.fixed_quantiles == 8


@pytest.mark.parametrize("main", options("main_function", "distributional"))
@pytest.mark.parametrize("residual", ["datten", "ff", "ddn", "dmix"])
def test_resz_ablation_grid_composes(main, residual):
    """ResQ paper Fig. 5 c (main functions) and e (residual functions)."""
    _, learner = build(["algorithm=resz", f"main_function={main}", f"residual_function={residual}"])
    assert {"main", "residual", "central"} == set(learner.nets)
    assert isinstance(learner.nets["residual"].mixer, PerQuantileMixer) == (residual == "ff")


@pytest.mark.parametrize(("overrides", "names"), [
    (["algorithm=resq", "main_function=dmix"], "main_function=DMixMixer"),
    (["algorithm=resq", "residual_function=datten"], "residual_function=DAttenMixer"),
    (["algorithm=qmix", "agent=iqn"], "agent=IQNAgent"),
    (["algorithm=resz", "main_function=qmix"], "main_function=QMixer"),
    (["algorithm=dmix", "main_function=vdn"], "main_function=VDNMixer"),
    (["algorithm=resz", "agent=rnn"], "agent=RNNAgent"),
])
def test_expected_and_distributional_parts_do_not_mix(overrides, names):
    with pytest.raises(IncompatibleComponentsError, match="do not mix") as info:
        build(overrides)
    message = str(info.value)
    assert names in message
    assert "algorithm=resz main_function=dmix" in message and "algorithm=resq main_function=qmix" in message


def test_a_residual_without_a_central_network_is_refused():
    with pytest.raises(IncompatibleComponentsError, match="residual_function=none"):
        build(["algorithm=dmix", "residual_function=datten"])


def test_central_levels_must_agree():
    with pytest.raises(IncompatibleComponentsError, match="n_target_quantiles=4"):
        build(["algorithm=resz", "algorithm.n_target_quantiles=4"])
    _, learner = build(["algorithm=resz", "algorithm.n_quantiles=4", "algorithm.n_target_quantiles=4"])
    assert learner.nets["central"].mixer.fixed_quantiles == 4  # follows ${algorithm.n_quantiles}


def test_resq_table3_is_the_noisy_game_with_every_method():
    cfg = compose_config(["experiment=resq_table3"], return_hydra_config=True)
    assert cfg.env.noise_std == 1.0
    assert set(cfg.hydra.sweeper.params.algorithm.split(",")) == {"resq", "resz", "qtran_base", "qmix", "vdn",
                                                                  "dmix", "ddn"}
    table2 = compose_config(["experiment=resq_table2"], return_hydra_config=True)
    assert {"resz", "dmix", "ddn"} <= set(table2.hydra.sweeper.params.algorithm.split(","))


def test_a_resz_run_writes_expected_values(tmp_path, capsys):
    cfg, choices = compose_run(QUICK + ["algorithm=resz", "env=matrix_resq_noisy"])
    train(cfg, tmp_path, choices)
    matrix = json.loads((tmp_path / "matrix_game.json").read_text())
    assert matrix["joint_value_name"] == "E[Z_jt]" and matrix["noise_std"] == 1.0
    assert matrix["algorithm"] == "resz" and matrix["residual_function"] == "datten"
    assert len(matrix["q_joint"]) == 3 and len(matrix["q_main"][0]) == 3
    greedy = [max(range(3), key=lambda a: q[a]) for q in matrix["q_agents"]]
    assert matrix["greedy_joint_action"] == greedy  # the agents' greedy actions on E[Z_i]
    assert "learned E[Z_jt]" in capsys.readouterr().out


@pytest.mark.parametrize("env", ["matrix_resq", "matrix_resq_noisy", "matrix_qtran"])
def test_resz_trains_once_per_episode_on_matrix_games(env):
    """conf/protocol/matrix_resz.yaml: ResZ takes the paper's one gradient step per episode on the matrix
    games (8 per rollout of 8 envs); every other method keeps one per rollout (conf/env/matrix.yaml)."""
    resz, resq = compose_config(["algorithm=resz", f"env={env}"]), compose_config(["algorithm=resq", f"env={env}"])
    assert resz.data.n_envs == resq.data.n_envs == 8
    assert (resz.data.updates_per_rollout, resq.data.updates_per_rollout) == (8, 1)
    assert compose_config(["algorithm=resz", "env=predator_prey"]).data.updates_per_rollout == 1
    assert compose_config(["algorithm=resz", f"env={env}", "data.updates_per_rollout=2"]).data.updates_per_rollout == 2
