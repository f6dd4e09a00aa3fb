"""`python -m analysis` reads result files only; its matrix-game tables and CLI, on runs written by hand."""

import subprocess
import sys
from pathlib import Path

import pytest

from analysis.__main__ import main
from analysis.experiments import EXPERIMENTS
from analysis.paper import TABLES
from tests.test_analysis_support import QTRAN_PAYOFF, RESQ_PAYOFF, matrix_run

EXACT = [list(map(float, r)) for r in RESQ_PAYOFF]


@pytest.fixture
def runs(tmp_path):
    off = [[v + 0.7 for v in r] for r in EXACT]
    matrix_run(tmp_path, "0", "resq", 0, EXACT, [0, 0], residual_function="ff")
    matrix_run(tmp_path, "1", "resq", 1, off, [0, 0], residual_function="ff", igm=1.0)
    matrix_run(tmp_path, "2", "qmix", 0, [[-8.0] * 3, [-8.0, 0, 0], [-8.0, 0, 7.5]], [2, 2])
    matrix_run(tmp_path, "3", "qmix", 0, EXACT, [0, 0], payoff=[[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    return tmp_path


def test_table_counts_seeds_and_shows_the_paper_beside_ours(runs, capsys):
    assert main(["table", "resq_table2", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| resq | joint value | 2 | 2/2 | 1/2 | 0.35 / 0.70 | 0.50 | 2000 | (A,A) |" in out  # IGM: mean of 0, 1
    assert "| qmix | joint value | 1 | 0/1 | 0/1 |" in out
    assert "1 run(s) under RUNS_DIR used another payoff" in out
    assert "-11.99" in out and "8.03" in out  # paper values (8.03 from the poster's copy)
    # mean (standard error) of 8.0 and 8.7: 8.35, sd 0.495 / sqrt(2) = 0.35
    assert "8.35 (0.35)" in out
    assert (runs / "analysis" / "resq_table2.md").exists()
    latex = (runs / "analysis" / "resq_table2.tex").read_text()
    assert r"\begin{tabular}" in latex and r"8.35 (0.35)" in latex and r"resq\_table2" not in latex.split("\n", 1)[1][:0]
    assert (runs / "analysis" / "resq_table2_resq.png").stat().st_size > 1000


def test_standard_error_over_three_seeds_is_hand_computed(tmp_path, capsys):
    for seed, shift in enumerate([0.0, 1.0, 3.0]):
        q = [[v + shift for v in r] for r in EXACT]
        matrix_run(tmp_path, str(seed), "resq", seed, q, [0, 0], residual_function="ff")
    assert main(["table", "resq_table2", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    # (A,A): 8, 9, 11 -> mean 9.33, sd = sqrt(((8-9.33)^2 + (9-9.33)^2 + (11-9.33)^2) / 2) = 1.528, se 0.88
    assert "9.33 (0.88)" in out


def test_fop_tables_keep_only_their_methods_on_the_shared_payoff(tmp_path, capsys):
    matrix_run(tmp_path, "0", "qtran_base", 0, [list(map(float, r)) for r in QTRAN_PAYOFF], [0, 0],
               payoff=QTRAN_PAYOFF, env="matrix_qtran", main_function="vdn")
    matrix_run(tmp_path, "1", "fop", 0, [list(map(float, r)) for r in QTRAN_PAYOFF], [0, 0],
               payoff=QTRAN_PAYOFF, env="matrix_qtran")
    assert main(["table", "qtran_table1", str(tmp_path)]) == 0  # every run on the payoff
    out = capsys.readouterr().out
    assert "| qtran_base |" in out and "## fop (not in the paper's table)" in out
    assert main(["table", "fop_table1", str(tmp_path)]) == 0      # only_listed: FOP's methods only
    out = capsys.readouterr().out
    assert "| fop |" in out and "| qtran_base |" not in out and "FOP, Table 1b" in out
    assert "1 run(s) of algorithms this table does not list" in out


def test_fop_table2_rows_are_the_temperature_variants_beside_the_paper(tmp_path, capsys):
    exact = [list(map(float, r)) for r in QTRAN_PAYOFF]
    for i, (alpha, seed) in enumerate([(0.5, 0), (0.5, 1), (0.1, 0), (0.1, 1)]):
        matrix_run(tmp_path, str(i), "fop", seed, exact, [0, 0], payoff=QTRAN_PAYOFF, env="matrix_qtran",
                   config={"algorithm": {"alpha_finish": alpha}})
    assert main(["table", "fop_table2", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| fop[alpha_finish=0.5] | joint value | 2 | 2/2 |" in out
    assert "| fop[alpha_finish=0.1] | joint value | 2 | 2/2 |" in out
    assert "## fop[alpha_finish=0.5], beside FOP, Table 2b: alpha_hat = 0.5" in out
    assert "## fop[alpha_finish=0.1], beside FOP, Table 2c: alpha_hat = 0.1" in out
    assert "-11.70" in out  # Table 2b's (B,A)


def test_noisy_game_table_keeps_noisy_runs_and_states_only_the_papers_words(tmp_path, capsys):
    matrix_run(tmp_path, "0", "resz", 0, EXACT, [0, 0], main_function="datten", residual_function="datten",
               noise_std=1.0, joint_value_name="E[Z_jt]")
    matrix_run(tmp_path, "1", "dmix", 0, [[-9.0] * 3, [-9.0, 0, 0], [-9.0, 0, 7.8]], [2, 2], main_function="dmix",
               noise_std=1.0, joint_value_name="E[Z_tot]")
    matrix_run(tmp_path, "2", "resq", 0, EXACT, [0, 0], residual_function="ff")  # the noise-free game
    assert main(["table", "resq_table3", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| resz | E[Z_jt] | 1 | 1/1 | 1/1 |" in out and "| dmix | E[Z_tot] | 1 | 0/1 |" in out
    assert "| resq |" not in out and "1 run(s) under RUNS_DIR used another payoff or reward noise" in out
    assert "finds the optimum (text)" in out and "which ones: not said" in out
    assert not TABLES["resq_table3"].methods  # no numbers for a table our copy does not have
    assert main(["table", "resq_table2", str(tmp_path)]) == 0
    assert "2 run(s) under RUNS_DIR used another payoff or reward noise" in capsys.readouterr().out


def test_matrix_figure_writes_png_and_pdf(runs, capsys):
    assert main(["figure", "resq_table2", str(runs), "--out", str(runs / "fig")]) == 0
    assert "2 method(s)" in capsys.readouterr().out
    for suffix in ("png", "pdf"):
        assert (runs / "fig" / f"resq_table2.{suffix}").stat().st_size > 1000


def test_unknown_name_lists_the_available_ones_without_a_traceback(runs):
    for command in ("table", "figure"):
        result = subprocess.run([sys.executable, "-m", "analysis", command, "nope", str(runs)],
                                capture_output=True, text=True, check=False)
        assert result.returncode == 2
        assert "unknown NAME 'nope'" in result.stderr and "Traceback" not in result.stderr
        assert all(name in result.stderr for name in EXPERIMENTS)


def test_empty_or_missing_directory_says_what_to_do(tmp_path, capsys):
    assert main(["table", "resq_table2", str(tmp_path)]) == 2
    assert "no run directory" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_a_matrix_table_without_its_runs_names_the_sweep(tmp_path, capsys):
    matrix_run(tmp_path, "0", "qmix", 0, EXACT, [0, 0])
    assert main(["table", "qtran_table1", str(tmp_path)]) == 2
    assert "python -m resq.run -m experiment=qtran_table1" in capsys.readouterr().err


def test_every_experiment_preset_has_an_analysis():
    presets = {p.stem for p in (Path(__file__).resolve().parents[1] / "conf" / "experiment").glob("*.yaml")}
    assert presets and presets <= set(EXPERIMENTS), f"no analysis for: {sorted(presets - set(EXPERIMENTS))}"


def test_list_names_every_experiment(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in EXPERIMENTS)


def test_a_run_drawn_in_two_panels_scores_in_both():
    """ResQ Fig. 5 draws the default ResQ run in the main-function and the residual-function panels: its final
    score must appear in each (it once landed in one of them only, and the report crashed on the other)."""
    import pandas as pd

    from analysis.stats import final_scores

    rows = [{"run_dir": "resq", "panel": panel, "method": "resq", "t_env": t, "test/return_mean": float(t)}
            for panel in ("(a) main", "(d) residual") for t in (0, 10, 20)]
    rows += [{"run_dir": "qmix", "panel": "(a) main", "method": "qmix", "t_env": t, "test/return_mean": 1.0}
             for t in (0, 10, 20)]
    scores = final_scores(pd.DataFrame(rows), "test/return_mean", last=2)
    by_panel = {(r["run_dir"], r["panel"]): r["score"] for r in scores.to_dict("records")}
    assert by_panel == {("resq", "(a) main"): 15.0, ("resq", "(d) residual"): 15.0, ("qmix", "(a) main"): 1.0}
