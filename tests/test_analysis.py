"""`python -m analysis` reads result files only; check it on runs written by hand."""

import csv
import json

import pytest

from analysis.__main__ import main
from analysis.paper import RESQ_PAYOFF, TABLES


def fake_run(root, name, algorithm, seed, q_joint, greedy, payoff=RESQ_PAYOFF, main_function="qmix",
             residual_function="none", igm=0.0, **extra):
    run = root / name
    run.mkdir(parents=True)
    error = max(abs(q - p) for qr, pr in zip(q_joint, payoff) for q, p in zip(qr, pr))
    columns = {"env": "matrix_resq", "algorithm": algorithm, "main_function": main_function,
               "residual_function": residual_function, "seed": seed}
    (run / "matrix_game.json").write_text(json.dumps({
        **columns, "payoff": payoff, "q_joint": q_joint, "q_agents": [[0, 0, 0], [0, 0, 0]],
        "greedy_joint_action": greedy, "optimal_joint_action": [0, 0], "max_abs_error": error, **extra}))
    with open(run / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["t_env", "test/return_mean", "test/igm_violation", *columns])
        writer.writeheader()
        for t, ret in ((0, -12.0), (1000, 7.9), (2000, 8.0 if greedy == [0, 0] else 7.9)):
            writer.writerow({"t_env": t, "test/return_mean": ret, "test/igm_violation": igm if t else 0.5, **columns})


@pytest.fixture
def runs(tmp_path):
    exact = [list(map(float, r)) for r in RESQ_PAYOFF]
    off = [[v + 0.7 for v in r] for r in exact]
    fake_run(tmp_path, "0", "resq", 0, exact, [0, 0], residual_function="ff")
    fake_run(tmp_path, "1", "resq", 1, off, [0, 0], residual_function="ff", igm=1.0)
    fake_run(tmp_path, "2", "qmix", 0, [[-8.0] * 3, [-8.0, 0, 0], [-8.0, 0, 7.5]], [2, 2])
    fake_run(tmp_path, "3", "qmix", 0, exact, [0, 0], payoff=[[1, 0, 0], [0, 0, 0], [0, 0, 0]])
    return tmp_path


def test_table_counts_seeds_and_shows_the_paper_beside_ours(runs, capsys):
    assert main(["table", "resq_table2", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "| resq | joint value | 2 | 2/2 | 1/2 | 0.35 / 0.70 | 0.50 |" in out  # both optimal, one within 0.5
    assert "| qmix | joint value | 1 | 0/1 | 0/1 |" in out  # IGM: the last evaluation's mean over seeds
    assert "1 run(s) under RUNS_DIR used another payoff" in out
    assert "-11.99" in out and "?" in out  # a paper value and an illegible one
    assert "8.35 (0.35)" in out  # mean (std) of 8.0 and 8.7
    assert (runs / "analysis" / "resq_table2.md").exists()
    assert (runs / "analysis" / "resq_table2_resq.png").stat().st_size > 1000


def test_curves_writes_a_png_and_final_values(runs, capsys):
    assert main(["curves", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "resq" in out and "8.000" in out
    assert (runs / "analysis" / "curves_test_return_mean.png").exists()


def test_unknown_table_names_the_available_ones(runs, capsys):
    assert main(["table", "nope", str(runs)]) == 2
    err = capsys.readouterr().err
    assert all(name in err for name in TABLES)


def test_empty_directory_says_what_to_run(tmp_path, capsys):
    assert main(["table", "resq_table2", str(tmp_path)]) == 2
    assert "python -m resq.run -m" in capsys.readouterr().err


def test_noisy_game_table_keeps_noisy_runs_and_states_only_the_papers_claim(tmp_path, capsys):
    exact = [list(map(float, r)) for r in RESQ_PAYOFF]
    fake_run(tmp_path, "0", "resz", 0, exact, [0, 0], main_function="datten", residual_function="datten",
             noise_std=1.0, joint_value_name="E[Z_jt]")
    fake_run(tmp_path, "1", "dmix", 0, [[-9.0] * 3, [-9.0, 0, 0], [-9.0, 0, 7.8]], [2, 2], main_function="dmix",
             noise_std=1.0, joint_value_name="E[Z_tot]")
    fake_run(tmp_path, "2", "resq", 0, exact, [0, 0], residual_function="ff")  # the noise-free game
    assert main(["table", "resq_table3", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| resz | E[Z_jt] | 1 | 1/1 | 1/1 |" in out and "| dmix | E[Z_tot] | 1 | 0/1 |" in out
    assert "| resq |" not in out and "1 run(s) under RUNS_DIR used another payoff or reward noise" in out
    assert "finds the optimum (text)" in out and "which ones: not said" in out
    assert "E[Z_jt], mean (std) over 1 seeds" in out and "E[Z_tot], mean (std) over 1 seeds" in out
    assert not TABLES["resq_table3"].methods  # no numbers for a table our copy does not have
    # and the noise-free table leaves the noisy runs out
    assert main(["table", "resq_table2", str(tmp_path)]) == 0
    assert "2 run(s) under RUNS_DIR used another payoff or reward noise" in capsys.readouterr().out
