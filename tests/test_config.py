"""Every config choice composes and instantiates; bad choices fail before training with the fix."""

import pytest
from hydra.errors import ConfigCompositionException, MissingConfigException
from hydra.utils import get_class

from resq.learners import IncompatibleComponentsError
from resq.learners.action_kinds import supported_action_kinds
from resq.run import ConfigError, build_datamodule, build_learner, check_config
from tests.conftest import EXTERNAL_ENV_TARGETS, compose_config, env_target, options


def build(overrides):
    cfg = compose_config(overrides)
    check_config(cfg)
    datamodule = build_datamodule(cfg)
    return cfg, datamodule, build_learner(cfg, datamodule.spec)


@pytest.mark.parametrize("algorithm", options("algorithm"))
@pytest.mark.parametrize("env", [e for e in options("env")
                                 if e != "matrix" and env_target(e) not in EXTERNAL_ENV_TARGETS])
def test_every_algorithm_builds_on_every_env(algorithm, env):
    """...of an action kind (discrete / continuous) it handles; on the others it is refused at build time."""
    cfg = compose_config([f"algorithm={algorithm}", f"env={env}"])
    datamodule = build_datamodule(cfg)
    if datamodule.spec.action_kind not in supported_action_kinds(get_class(cfg.algorithm._target_)):
        with pytest.raises(IncompatibleComponentsError, match=f"{datamodule.spec.action_kind} actions"):
            build_learner(cfg, datamodule.spec)
        return
    learner = build_learner(cfg, datamodule.spec)
    assert learner.spec == datamodule.spec


GRID_MAINS = ["qmix", "vdn", "qatten"]  # ResQ paper Fig. 5 (a, b)
GRID_RESIDUALS = ["ff", "qmix", "vdn", "qatten"]  # Fig. 5 (d)


def test_the_grid_covers_the_groups():
    assert set(GRID_MAINS) <= set(options("main_function"))
    assert set(GRID_RESIDUALS) == set(options("residual_function", "expected"))


@pytest.mark.parametrize("main", GRID_MAINS)
@pytest.mark.parametrize("residual", GRID_RESIDUALS)
def test_resq_ablation_grid_composes(main, residual):
    cfg, _, learner = build(["algorithm=resq", f"main_function={main}", f"residual_function={residual}"])
    assert {"main", "residual", "central"} <= set(learner.nets)
    assert type(learner.nets["main"].mixer).__name__ == cfg.main_function._target_.rsplit(".", 1)[-1]
    assert type(learner.nets["residual"].mixer).__name__ == cfg.residual_function._target_.rsplit(".", 1)[-1]


@pytest.mark.parametrize(("overrides", "fix"), [
    (["algorithm=resq", "main_function=none"], "pick a main_function"),
    (["algorithm=iql", "residual_function=ff"], "residual_function=none"),
    (["algorithm=qtran_base", "main_function=qmix"], "main_function=vdn"),
    (["algorithm=qtran_alt", "residual_function=ff"], "residual_function=none"),
    (["algorithm=qmix", "main_function=qatten", "main_function.softmax=false"], "monotonic main_function"),
    (["algorithm=qmix", "+algorithm.td_weighting._target_=resq.nn.weighting.CentralWeighting"], "algorithm=cw_qmix"),
])
def test_incompatible_parts_fail_before_training_with_the_fix(overrides, fix):
    with pytest.raises(IncompatibleComponentsError, match=fix):
        build(overrides)


def test_a_misspelt_loss_weight_names_the_known_terms():
    with pytest.raises(ValueError, match=r"loss_nop.*loss_nopt"):
        build(["algorithm=qtran_base", "+algorithm.loss_weights.loss_nop=1.0"])


def test_algorithms_pick_their_optimiser_from_the_optimizer_group():
    assert compose_config(["algorithm=resq"]).algorithm.optimizer._target_ == "torch.optim.RMSprop"
    qtran = compose_config(["algorithm=qtran_alt"]).algorithm.optimizer
    assert qtran._target_ == "torch.optim.Adam" and qtran.lr == 5e-4 and "alpha" not in qtran
    pymarl2 = compose_config(["algorithm=qmix_pymarl2", "env=matrix_qtran"])
    assert pymarl2.algorithm.optimizer._target_ == "torch.optim.Adam" and pymarl2.data.batch_size == 128


def test_algorithm_picks_its_parts_and_the_command_line_overrides_them():
    assert compose_config(["algorithm=vdn"]).main_function._target_ == "resq.nn.VDNMixer"
    assert compose_config(["algorithm=resq"]).residual_function._target_ == "resq.nn.FeedForwardMixer"
    cfg = compose_config(["algorithm=resq", "main_function=vdn", "residual_function=qmix"])
    assert cfg.main_function._target_ == "resq.nn.VDNMixer" and cfg.residual_function._target_ == "resq.nn.QMixer"


def test_default_config_is_resq_on_the_resq_matrix_game():
    cfg = compose_config([], return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    assert (choices.algorithm, choices.env, choices.main_function, choices.residual_function) == (
        "resq", "matrix_resq", "qmix", "ff")
    assert cfg.env.payoff == [[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]]
    assert cfg.exploration.epsilon_finish == 1.0  # the papers' full exploration


@pytest.mark.parametrize(("group", "known"), [("env", "matrix_resq"), ("algorithm", "resq")])
def test_unknown_choice_lists_the_available_names(group, known):
    with pytest.raises((MissingConfigException, ConfigCompositionException)) as info:
        compose_config([f"{group}=nope"])
    message = str(info.value)
    assert "nope" in message
    # Hydra's message names the group's options (the CLI prints the same list)
    assert f"Available options in '{group}'" in message or known in message


def test_matrix_without_payoff_says_how_to_give_one():
    cfg = compose_config(["env=matrix"])
    with pytest.raises(ConfigError, match=r"env\.payoff.*env\.payoff=\[\["):
        check_config(cfg)


def test_custom_payoff_from_the_command_line():
    _, datamodule, _ = build(["env=matrix", "env.payoff=[[1,0],[0,2]]"])
    assert datamodule.spec.n_actions == 2


def test_malformed_payoff_from_the_command_line():
    with pytest.raises(ValueError, match="rows of different lengths"):
        build(["env=matrix", "env.payoff=[[1,0],[0]]"])


def test_residual_on_an_algorithm_without_central_network_is_refused():
    with pytest.raises(IncompatibleComponentsError, match="algorithm=resq"):
        build(["algorithm=qmix", "residual_function=ff"])


def test_experiments_compose():
    for name in options("experiment"):
        cfg = compose_config([f"experiment={name}"], return_hydra_config=True)
        assert cfg.hydra.sweeper.params, f"experiment {name} pins no sweep"


# ResQ paper Fig. 5, Sec. 5.5: each legend entry as (algorithm, main_function, residual_function), and the
# panels of analysis.experiments.CURVES["resq_fig5"] it belongs to. Written from the paper's text, not from
# conf/variant/, so a variant file that swaps a part fails here.
FIG5 = {
    "resq": (("resq", "qmix", "ff"), {"main", "residual"}),
    "qtot_vdn": (("resq", "vdn", "ff"), {"main"}),
    "qtot_qatten": (("resq", "qatten", "ff"), {"main"}),
    "qmix": (("qmix", "qmix", "none"), {"main"}),
    "vdn": (("vdn", "vdn", "none"), {"main"}),
    "qatten": (("qatten", "qatten", "none"), {"main"}),
    "resz": (("resz", "datten", "datten"), {"distributional main", "distributional residual"}),
    "ztot_ddn": (("resz", "ddn", "datten"), {"distributional main"}),
    "ztot_dmix": (("resz", "dmix", "datten"), {"distributional main"}),
    "datten": (("datten", "datten", "none"), {"distributional main"}),
    "ddn": (("ddn", "ddn", "none"), {"distributional main"}),
    "dmix": (("dmix", "dmix", "none"), {"distributional main"}),
    "qr_qmix": (("resq", "qmix", "qmix"), {"residual"}),
    "qr_vdn": (("resq", "qmix", "vdn"), {"residual"}),
    "qr_qatten": (("resq", "qmix", "qatten"), {"residual"}),
    "zr_ff": (("resz", "datten", "ff"), {"distributional residual"}),
    "zr_ddn": (("resz", "datten", "ddn"), {"distributional residual"}),
    "zr_dmix": (("resz", "datten", "dmix"), {"distributional residual"}),
}


def fig5_variants() -> list[str]:
    return compose_config(["experiment=resq_fig5"], return_hydra_config=True).hydra.sweeper.params.variant.split(",")


def test_the_fig5_preset_sweeps_every_legend_entry_of_the_paper_once():
    variants = fig5_variants()
    assert sorted(variants) == sorted(FIG5) and len(set(variants)) == len(variants)
    assert set(variants) == set(options("variant"))


@pytest.mark.parametrize("variant", sorted(FIG5))
def test_each_fig5_variant_composes_builds_and_records_its_parts(variant):
    """The variant's choices reach the result columns (resq.run.run_columns), the learner builds with
    them (an invalid pair would raise here), and analysis puts the run in the paper's panels."""
    from analysis.experiments import CURVES, groups_of
    from resq.run import run_columns

    cfg = compose_config(["experiment=resq_fig5", f"variant={variant}"], return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    columns = run_columns(cfg, choices)
    parts, panels = FIG5[variant]
    assert (columns["algorithm"], columns["main_function"], columns["residual_function"]) == parts
    assert columns["env"] == "smax_8m_vs_9m"
    if parts[2] != "none":  # the residual's mixer is the chosen one, not the algorithm's default
        assert cfg.residual_function._target_ == compose_config([f"residual_function={parts[2]}"]).residual_function._target_
    assert cfg.main_function._target_ == compose_config([f"main_function={parts[1]}"]).main_function._target_
    spec = build_datamodule(compose_config(["env=matrix_resq"])).spec
    learner = build_learner(cfg, spec)
    assert ("residual" in learner.nets) == (parts[2] != "none")
    titles = groups_of({**columns, "config": {}}, CURVES["resq_fig5"].groups)
    assert {t.split(") ", 1)[1].removesuffix(" function") for t in titles} == panels
