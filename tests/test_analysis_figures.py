"""Figures and final-performance tables from synthetic learning curves: files exist, numbers hand-computed."""

import numpy as np
import pytest
import torch

from analysis import figures
from analysis.__main__ import main
from analysis.curves import curve_data
from analysis.experiments import CURVES
from analysis.palette import PALETTE, SAME_METHOD, colour
from analysis.runs import load_result_json, load_runs
from tests.test_analysis_support import curve, write_run

# predator-prey p = -2 and p = 0: final test returns per seed
FIG4 = {
    -2: {"resq": [[0, 2, 4], [0, 3, 6], [0, 5, 8]], "cw_qmix": [[0, 1, 3], [0, 2, 3]],
         "ow_qmix": [[0, 1, 1], [0, 1, 2]], "qmix": [[0, -2, -1], [0, -1, 1]],
         "qtran_base": [[0, -1, -1], [0, -1, -2]]},
    0: {"resq": [[0, 5, 10], [0, 6, 10]], "qmix": [[0, 4, 9], [0, 5, 9]]},
}


def write_fig4(root, extra=()):
    for p, methods in FIG4.items():
        for algorithm, seeds in methods.items():
            for seed, values in enumerate(seeds):
                write_run(root, f"p{p}_{algorithm}_{seed}", env="predator_prey", algorithm=algorithm, seed=seed,
                          evaluations=curve(values, jitter=seed * 7), config={"env": {"punishment": p}})
    for name, algorithm, seed, values, p in extra:
        write_run(root, name, env="predator_prey", algorithm=algorithm, seed=seed, evaluations=curve(values),
                  config={"env": {"punishment": p}})
    return root


def test_final_performance_table_is_mean_and_standard_error_over_seeds(tmp_path, capsys):
    write_fig4(tmp_path)
    write_run(tmp_path, "half", env="predator_prey", algorithm="resq", seed=9, evaluations=curve([0, 100]),
              t_max=5000, config={"env": {"punishment": -2}})  # unfinished: reported, not averaged in
    assert main(["table", "resq_fig4", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| method | predator_prey, punishment=0 | predator_prey, punishment=-2 |" in out  # the paper's order
    # resq p=-2: 4, 6, 8 -> 6.00, sd 2 / sqrt(3) = 1.15; p=0: 10, 10 -> se 0
    assert "| resq | 10.00 ± 0.00 (n=2) | 6.00 ± 1.15 (n=3) |" in out
    assert "| qmix | 9.00 ± 0.00 (n=2) | 0.00 ± 1.00 (n=2) |" in out
    assert "| cw_qmix | – | 3.00 ± 0.00 (n=2) |" in out
    assert "half: unfinished (last evaluation at t_env 1000 < t_max 5000; skipped)" in out
    latex = (tmp_path / "analysis" / "resq_fig4_final.tex").read_text()
    assert r"6.00 $\pm$ 1.15 (n=3)" in latex and r"\toprule" in latex
    assert (tmp_path / "analysis" / "resq_fig4_final.md").read_text().count("| resq |") == 1


def test_final_score_can_average_the_last_evaluations(tmp_path, capsys):
    write_fig4(tmp_path)
    assert main(["table", "resq_fig4", str(tmp_path), "--last", "2"]) == 0
    # resq p=-2: (2+4)/2, (3+6)/2, (5+8)/2 = 3, 4.5, 6.5 -> 4.67, sd 1.756 / sqrt(3) = 1.01
    assert "| resq | 7.75 ± 0.25 (n=2) | 4.67 ± 1.01 (n=3) |" in capsys.readouterr().out  # p=0: 7.5, 8
    assert main(["table", "resq_fig4", str(tmp_path), "--last", "0"]) == 2


def test_curve_figure_has_a_panel_per_setting_and_writes_png_and_pdf(tmp_path, capsys):
    write_fig4(tmp_path)
    assert main(["figure", "resq_fig4", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5 method(s) in 2 panel(s): predator_prey, punishment=0, predator_prey, punishment=-2" in out
    for suffix in ("png", "pdf"):
        assert (tmp_path / "analysis" / f"resq_fig4.{suffix}").stat().st_size > 5000


def test_metric_option_draws_and_tables_another_metric_beside_the_papers(tmp_path, capsys):
    """A short SMAX sweep wins no game: --metric draws the paper's layout for the test return instead, in
    files of their own, and leaves the win-rate files alone."""
    for seed, (won, ret) in enumerate([([0, 0, 0], [0, 1, 3]), ([0, 0, 0], [0, 2, 5])]):
        evaluations = [{**a, **b} for a, b in zip(curve(won, "test/battle_won_mean"), curve(ret))]
        write_run(tmp_path, f"s{seed}", env="smax_3s_vs_5z", algorithm="resq", seed=seed, evaluations=evaluations)
    assert main(["figure", "resq_fig3_smax", str(tmp_path)]) == 0
    assert main(["figure", "resq_fig3_smax", str(tmp_path), "--metric", "test/return_mean"]) == 0
    assert main(["table", "resq_fig3_smax", str(tmp_path), "--metric", "test/return_mean"]) == 0
    out = capsys.readouterr().out
    assert "# resq_fig3_smax: final test/return_mean" in out
    assert "(drawn for test/return_mean, not the paper's test/battle_won_mean)" in out
    assert "| resq | 4.00 ± 1.00 (n=2) |" in out  # 3 and 5
    for name in ("resq_fig3_smax.png", "resq_fig3_smax_test_return_mean.png", "resq_fig3_smax_test_return_mean.pdf",
                 "resq_fig3_smax_test_return_mean_final.md"):
        assert (tmp_path / "analysis" / name).exists(), name
    assert main(["table", "resq_table2", str(tmp_path), "--metric", "test/return_mean"]) == 2
    assert "--metric applies to curve figures" in capsys.readouterr().err


def test_curve_stats_align_seeds_and_match_the_hand_computation(tmp_path):
    write_fig4(tmp_path)
    data = curve_data(load_runs(tmp_path), "test/return_mean", CURVES["resq_fig4"])
    stats = data.stats().set_index(["panel", "method", "step"])
    row = stats.loc[("predator_prey, punishment=-2", "resq", 1000)]  # t_env 1000, 1007, 1014 on one grid step
    assert row["n"] == 3 and row["mean"] == pytest.approx(10 / 3)
    assert row["se"] == pytest.approx(np.std([2, 3, 5], ddof=1) / np.sqrt(3))


def test_when_every_run_was_skipped_the_error_says_why(tmp_path, capsys):
    write_run(tmp_path, "crashed", env="predator_prey", algorithm="resq", seed=0, evaluations=curve([0, 1]),
              error="ValueError: nan loss")
    assert main(["figure", "resq_fig4", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no finished run with env matching predator_prey*" in err
    assert "crashed: failed (error.txt present; skipped)" in err



def test_a_method_whose_runs_all_failed_is_named_under_the_figure(tmp_path, capsys):
    """QPLEX failed in both seeds of the SMAX Fig. 3 sweep: the figure says so instead of silently
    leaving it out of the legend."""
    for seed in (0, 1):
        write_run(tmp_path, f"resq_{seed}", env="smax_3s_vs_3z", algorithm="resq", seed=seed,
                  evaluations=curve([0.0, 0.1], metric="test/battle_won_mean"))
        write_run(tmp_path, f"qplex_{seed}", env="smax_3s_vs_3z", algorithm="qplex", seed=seed,
                  evaluations=curve([0.0], metric="test/battle_won_mean"), t_max=1000, status="failed",
                  run_json={"error": "NonFiniteLossError: the loss_td loss became nan"})
    write_run(tmp_path, "qmix_cut", env="smax_3s_vs_3z", algorithm="qmix", seed=0, t_max=5000,
              evaluations=curve([0.0, 0.0], metric="test/battle_won_mean"))
    write_run(tmp_path, "pp", env="predator_prey", algorithm="vdn", seed=0, evaluations=curve([0.0]), error="boom")
    assert main(["figure", "resq_fig3_smax", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "note: not drawn: qmix: 1 unfinished; qplex: 2 failed (NonFiniteLossError)" in out  # not the vdn run
    data = curve_data(load_runs(tmp_path), "test/battle_won_mean", CURVES["resq_fig3_smax"])
    fig = figures.curves_axes(data, footnote="not drawn: qplex: 2 failed")
    assert fig.get_supxlabel() == "not drawn: qplex: 2 failed"

def test_experiment_figures_select_their_envs(tmp_path, capsys):
    write_fig4(tmp_path)
    write_run(tmp_path, "smax", env="smax_3s_vs_5z", algorithm="resq", seed=0,
              evaluations=curve([0.0, 0.5], metric="test/battle_won_mean"))
    assert main(["figure", "resq_fig3_smax", str(tmp_path)]) == 0
    assert "1 method(s) in 1 panel(s): smax_3s_vs_5z" in capsys.readouterr().out
    assert main(["figure", "qtran_fig4", str(tmp_path)]) == 2
    assert "python -m resq.run -m experiment=qtran_fig4" in capsys.readouterr().err


def test_ablation_figure_groups_runs_into_the_papers_panels(tmp_path, capsys):
    runs = [("resq", "qmix", "ff"), ("resq", "vdn", "ff"), ("resq", "qmix", "qatten"), ("qmix", "qmix", "none"),
            ("vdn", "vdn", "none")]
    for algorithm, main_function, residual in runs:
        write_run(tmp_path, f"{algorithm}_{main_function}_{residual}", env="smax_8m_vs_9m", algorithm=algorithm,
                  seed=0, main_function=main_function, residual_function=residual,
                  evaluations=curve([0.0, 0.3], metric="test/battle_won_mean"))
    data = curve_data(load_runs(tmp_path), "test/battle_won_mean", CURVES["resq_fig5"])
    members = data.runs.groupby("panel")["method"].apply(set).to_dict()
    assert members == {
        "(a, b) main function: smax_8m_vs_9m": {"resq[main=qmix,residual=ff]", "resq[main=vdn,residual=ff]", "qmix", "vdn"},
        "(d) residual function: smax_8m_vs_9m": {"resq[main=qmix,residual=ff]", "resq[main=qmix,residual=qatten]"},
    }
    assert main(["figure", "resq_fig5", str(tmp_path)]) == 0
    assert (tmp_path / "analysis" / "resq_fig5.png").exists()




def test_panels_with_different_methods_get_a_legend_each_and_a_win_rate_axis_stays_in_0_1(tmp_path):
    """Fig. 5's groups hold different methods: each panel's legend lists its own (with the paper's
    legend name, in the paper's order first); Fig. 4's panels share one legend. A win rate flat at 0 is
    drawn on an axis from about 0 to 0.1, not -0.04..0.04."""
    for algorithm, main_function, residual in [("resq", "qmix", "ff"), ("resq", "vdn", "ff"), ("qmix", "qmix", "none"),
                                               ("resq", "qmix", "qatten")]:
        write_run(tmp_path / "fig5", f"{algorithm}_{main_function}_{residual}", env="smax_8m_vs_9m",
                  algorithm=algorithm, seed=0, main_function=main_function, residual_function=residual,
                  evaluations=curve([0.0, 0.0], metric="test/battle_won_mean"))
    experiment = CURVES["resq_fig5"]
    data = curve_data(load_runs(tmp_path / "fig5"), experiment.metric, experiment)
    fig = figures.curves_axes(data, ylabel="test win rate", y_range=experiment.y_range, names=dict(experiment.names))
    legends = {ax.get_title(): [t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes if ax.get_legend()}
    assert legends == {
        "(a, b) main function: smax_8m_vs_9m": ["ResQ: resq[main=qmix,residual=ff]", "Qtot-VDN: resq[main=vdn,residual=ff]",
                                                "qmix"],
        "(d) residual function: smax_8m_vs_9m": ["ResQ: resq[main=qmix,residual=ff]",
                                                 "Qr-QAtten: resq[main=qmix,residual=qatten]"],
    }
    assert not fig.legends
    bottom, top = fig.axes[0].get_ylim()
    assert -0.05 < bottom < 0 and 0.1 <= top < 0.2
    lines = {line.get_color() for line in fig.axes[0].get_lines()}
    assert PALETTE["resq"] in lines  # the paper's ResQ keeps ResQ's colour among its variants

    write_fig4(tmp_path / "fig4")
    fig4 = curve_data(load_runs(tmp_path / "fig4"), "test/return_mean", CURVES["resq_fig4"])
    # p = 0 has two of p = -2's five methods: panels differ, so each gets its own legend
    fig = figures.curves_axes(fig4)
    assert [len(ax.get_legend().get_texts()) for ax in fig.axes if ax.get_legend()] == [2, 5]
    shared = curve_data(load_runs(tmp_path / "fig4"), "test/return_mean", CURVES["resq_fig4"])
    shared.frame = shared.frame[shared.frame["method"].isin(["resq", "qmix"])]
    fig = figures.curves_axes(shared)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["qmix", "resq"]
    assert not any(ax.get_legend() for ax in fig.axes)

def test_a_curve_analysis_reads_the_runs_of_its_own_preset_and_of_none(tmp_path, capsys):
    """Fig. 3 (SMAX) and Fig. 5 both select env smax_*: a sweep of one must not leak into the other's
    figure (Fig. 5's ResQ variants turned Fig. 3's "resq" into "resq[main=qmix,residual=ff]" and added
    Qtot-VDN to its panel). The preset is read from run.json: the sweep job's overrides, else the command."""
    def smax_run(name, algorithm, main_function, residual, seed, preset=None, single=False):
        if preset is None:
            record = {"command": ["resq/run.py", f"algorithm={algorithm}", "env=smax_8m_vs_9m"], "job": None}
        elif single:
            record = {"command": ["resq/run.py", f"+experiment={preset}", f"algorithm={algorithm}"], "job": None}
        else:
            record = {"command": ["resq/run.py", "-m", f"experiment={preset}"],
                      "job": {"num": 0, "overrides": [f"seed={seed}", f"experiment={preset}"]}}
        write_run(tmp_path, name, env="smax_8m_vs_9m", algorithm=algorithm, seed=seed, main_function=main_function,
                  residual_function=residual, evaluations=curve([0.0, 0.2 + seed / 10], metric="test/battle_won_mean"),
                  run_json=record)

    for seed in (0, 1):
        smax_run(f"fig3_resq_{seed}", "resq", "qmix", "ff", seed, "resq_fig3_smax")
        smax_run(f"fig3_qmix_{seed}", "qmix", "qmix", "none", seed, "resq_fig3_smax")
        smax_run(f"fig5_resq_{seed}", "resq", "qmix", "ff", seed, "resq_fig5")
        smax_run(f"fig5_qtot_vdn_{seed}", "resq", "vdn", "ff", seed, "resq_fig5")
    smax_run("fig5_qr_qatten", "resq", "qmix", "qatten", 0, "resq_fig5", single=True)
    smax_run("plain_vdn", "vdn", "vdn", "none", 0)  # no preset: any analysis of its env may read it
    # predator-prey logs no win rate: not a Fig. 5 env (its panels used to hold empty predator-prey curves)
    write_run(tmp_path, "plain_pp", env="predator_prey", algorithm="resq", seed=0, main_function="qmix",
              residual_function="ff", evaluations=curve([0.0, 1.0]))
    runs = load_runs(tmp_path)
    assert runs.runs.set_index("run_dir")["experiment"].to_dict()[str(tmp_path / "plain_vdn")] == "none"

    fig3 = curve_data(runs, "test/battle_won_mean", CURVES["resq_fig3_smax"])
    assert fig3.methods == ["qmix", "resq", "vdn"]
    assert sorted(fig3.runs["run_dir"].map(lambda d: d.rsplit("/", 1)[-1])) == [
        "fig3_qmix_0", "fig3_qmix_1", "fig3_resq_0", "fig3_resq_1", "plain_vdn"]
    fig5 = curve_data(runs, "test/battle_won_mean", CURVES["resq_fig5"])
    assert fig5.methods == ["resq[main=qmix,residual=ff]", "resq[main=qmix,residual=qatten]",
                            "resq[main=vdn,residual=ff]", "vdn"]
    assert fig5.frame[fig5.frame["method"] == "resq[main=qmix,residual=ff]"]["run_dir"].nunique() == 2
    assert set(fig5.runs["env"]) == {"smax_8m_vs_9m"}

    only_fig5 = tmp_path / "only_fig5"
    only_fig5.mkdir()
    for name in ("fig5_resq_0", "fig5_qtot_vdn_0"):
        (tmp_path / name).rename(only_fig5 / name)
    assert main(["figure", "resq_fig3_smax", str(only_fig5)]) == 2
    err = capsys.readouterr().err
    assert "2 finished run(s) with env matching smax_* were made by another preset (resq_fig5: 2)" in err

def quadratic_max(actions: torch.Tensor) -> torch.Tensor:
    """A stand-in reward surface of the MTQ shape (two bumps), so the test needs no env package."""
    u1, u2 = actions[..., 0], actions[..., 1]
    f1 = 0.8 * (-((u1 + 5) / 3) ** 2 - ((u2 + 5) / 3) ** 2)
    f2 = -((u1 - 5) ** 2) - (u2 - 5) ** 2 + 10
    return torch.maximum(f1, f2)


def write_mtq(root):
    paths = {"fop": [[(0, 0), (2, 2), (4.9, 5.1)], [(0, 0), (3, 1), (5.2, 4.8)]],
             "maddpg": [[(0, 0), (-3, -3), (-5, -5)], [(0, 0), (-2, -4), (-4.8, -5.1)]]}
    for algorithm, seeds in paths.items():
        for seed, path in enumerate(seeds):
            evaluations = [{"t_env": 1000 * i, "test/return_mean": 0.1 * float(quadratic_max(torch.tensor(a))),
                            "test/joint_action_0": a[0], "test/joint_action_1": a[1]} for i, a in enumerate(path)]
            write_run(root, f"{algorithm}_{seed}", env="mtq", algorithm=algorithm, seed=seed, evaluations=evaluations,
                      mtq={"joint_action": list(path[-1]), "reward": float(quadratic_max(torch.tensor(path[-1])))})
    return root


def test_mtq_figure_draws_the_surface_and_each_seeds_path(tmp_path):
    write_mtq(tmp_path)
    runs = load_runs(tmp_path)
    data = curve_data(runs, "test/return_mean", CURVES["fop_mtq"])
    finals = load_result_json(runs, "mtq.json")
    written, note = figures.mtq_figure(data, finals, tmp_path / "out" / "fop_mtq", reward_fn=quadratic_max)
    assert note == "" and [p.suffix for p in written] == [".png", ".pdf"]
    assert all(p.stat().st_size > 5000 for p in written)
    _, _, reward = figures.reward_grid(quadratic_max, 10.0, n=21)
    assert reward.shape == (21, 21) and reward[15, 15] == pytest.approx(10.0)  # (5, 5) is the global optimum
    with pytest.raises(ValueError, match=r"maps \(\.\.\., 2\) actions"):
        figures.reward_grid(lambda a: a, 10.0, n=5)


def test_mtq_figure_without_the_env_package_still_draws_the_paths(tmp_path, capsys, monkeypatch):
    write_mtq(tmp_path)

    def missing():
        raise ImportError("No module named 'envs.mtq'")

    monkeypatch.setattr(figures, "load_mtq_reward", missing)
    assert main(["figure", "fop_mtq", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "reward surface left out: envs.mtq.max_of_two_quadratics is not importable" in out
    assert (tmp_path / "analysis" / "fop_mtq.pdf").exists()
    assert main(["table", "fop_mtq", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| fop | 5.05 ± 0.15 (n=2) | 4.95 ± 0.15 (n=2) |" in out and "| 2/2 |" in out


def test_each_method_keeps_its_colour():
    assert colour("resq") == PALETTE["resq"] and colour("qmix") == PALETTE["qmix"]
    distinct = {label: c for label, c in PALETTE.items() if label not in SAME_METHOD}
    assert len(set(distinct.values())) == len(distinct)
    assert all(PALETTE[label] == PALETTE[same] for label, same in SAME_METHOD.items())
    variant = "resq[main=vdn,residual=ff]"
    assert colour(variant) == colour(variant) and colour(variant).startswith("#")


def test_generic_curves_command_plots_any_metric(tmp_path, capsys):
    write_fig4(tmp_path)
    assert main(["curves", str(tmp_path), "--metric", "test/nope"]) == 2
    assert "available: test/return_mean" in capsys.readouterr().err
    assert main(["curves", str(tmp_path)]) == 0
    assert (tmp_path / "analysis" / "curves_test_return_mean.png").exists()


@pytest.mark.parametrize(("steps", "label"), [(0, "0"), (500, "500"), (50000, "50k"), (250000, "250k"),
                                              (1000000, "1M"), (1500000, "1.5M")])
def test_env_step_ticks_are_short(steps, label):
    assert figures._steps_label(steps) == label
