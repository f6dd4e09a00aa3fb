"""The loader: any outputs folder -> one tidy frame; unfinished, failed and half-written runs reported."""

import pandas as pd
import pytest

from analysis.runs import NoResultsError, load_runs
from analysis.stats import mean_se, method_labels, panel_labels, variant_values
from tests.test_analysis_support import curve, write_run


def pp(root, name, algorithm, seed, values, punishment, config=None, **kwargs):
    return write_run(root, name, env="predator_prey", algorithm=algorithm, seed=seed, evaluations=curve(values),
                     config={"env": {"punishment": punishment}, **(config or {})}, **kwargs)


def test_single_runs_sweeps_and_nested_sweeps_become_one_tidy_frame(tmp_path):
    pp(tmp_path / "runs", "2026_resq", "resq", 0, [0, 1, 2], -2)                 # a single run
    pp(tmp_path / "multirun" / "t1", "0", "qmix", 0, [0, -1, -1], -2)            # a sweep
    pp(tmp_path / "multirun" / "t1", "1", "qmix", 1, [0, -1, -3], -2)
    pp(tmp_path / "deep" / "a" / "b" / "sweep", "0", "vdn", 0, [0, 0, 1], -2)    # nested
    junk = tmp_path / "multirun" / "t1" / "0" / "lightning_logs" / "version_0"   # Lightning's own CSV
    junk.mkdir(parents=True)
    (junk / "metrics.csv").write_text("epoch,step\n0,1\n")
    hidden = tmp_path / "multirun" / ".submitit" / "123"                        # a launcher's own files
    hidden.mkdir(parents=True)
    (hidden / "config.yaml").write_text("t_max: 1\n")
    runs = load_runs(tmp_path)
    assert len(runs.runs) == 4 and runs.problems == []
    frame = runs.metrics
    assert len(frame) == 12  # one row per evaluation
    for column in ("env", "algorithm", "main_function", "residual_function", "seed", "t_env", "test/return_mean",
                   "run_dir", "status", "step"):
        assert column in frame.columns
    assert set(frame["status"]) == {"finished"}
    assert sorted(frame["algorithm"].unique()) == ["qmix", "resq", "vdn"]
    assert runs.config(runs.runs["run_dir"].iloc[0])["env.punishment"] == -2  # the resolved config, not .hydra's


def test_failed_and_unfinished_runs_are_reported_and_skipped(tmp_path):
    pp(tmp_path, "ok", "resq", 0, [0, 1, 2], -2)
    pp(tmp_path, "short", "resq", 1, [0, 1], -2, t_max=2000)                     # no run.json, t_env 1000 < 2000
    pp(tmp_path, "crashed", "resq", 2, [0, 1, 2], -2, error="RuntimeError: boom")
    pp(tmp_path, "live", "resq", 3, [0, 1, 2], -2, status="running")
    pp(tmp_path, "failed", "resq", 4, [0, 1, 2], -2, status="failed")
    pp(tmp_path, "done", "resq", 5, [0, 1], -2, t_max=99999, status="finished")  # run.json wins over t_max
    (pp(tmp_path, "empty", "resq", 6, [0], -2, status="finished") / "metrics.csv").write_text("")
    runs = load_runs(tmp_path)
    status = dict(zip(runs.runs["run_dir"].map(lambda d: d.rsplit("/", 1)[-1]), runs.runs["status"]))
    assert status == {"ok": "finished", "short": "unfinished", "crashed": "failed", "live": "running",
                      "failed": "failed", "done": "finished", "empty": "finished"}
    assert sorted(runs.metrics["seed"].unique()) == [0, 5]
    problems = {p.run_dir.rsplit("/", 1)[-1]: p.reason for p in runs.problems}
    assert set(problems) == {"short", "crashed", "live", "failed", "empty"}
    assert problems["empty"] == "no evaluation in metrics.csv; skipped"
    assert "last evaluation at t_env 1000 < t_max 2000" in problems["short"] and "skipped" in problems["short"]
    assert "error.txt" in problems["crashed"]
    with_live = load_runs(tmp_path, include_unfinished=True)
    assert sorted(with_live.metrics["seed"].unique()) == [0, 1, 3, 5]  # failed runs never


def test_a_half_written_last_row_is_dropped_and_the_run_reported(tmp_path):
    run = pp(tmp_path, "torn", "resq", 0, [0.0, 1.0, 5.0], -2, truncate_last=True)
    assert (run / "metrics.csv").read_text().splitlines()[-1] == "200"  # t_env 2000 cut to "200"
    runs = load_runs(tmp_path, include_unfinished=True)
    assert runs.metrics["t_env"].tolist() == [0, 1000]  # not a bogus t_env 200
    notes = " ".join(p.reason for p in runs.problems)
    assert "half-written last line" in notes and "last evaluation at t_env 1000 < t_max 2000" in notes
    assert load_runs(tmp_path).metrics.empty


def test_malformed_rows_and_repeated_evaluations(tmp_path):
    run = pp(tmp_path, "r", "resq", 0, [0.0, 1.0, 2.0], -2)
    text = (run / "metrics.csv").read_text().splitlines()
    text.insert(2, text[2].replace("1.0", "9.0"))        # a resumed run repeated t_env 1000; the last counts
    text.insert(2, "1000,1.0,extra,fields,here,x,y,z")   # too many fields
    (run / "metrics.csv").write_text("\n".join(text) + "\n")
    runs = load_runs(tmp_path)
    assert runs.metrics["t_env"].tolist() == [0, 1000, 2000]
    assert runs.metrics.loc[runs.metrics["t_env"] == 1000, "test/return_mean"].item() == 1.0
    notes = " ".join(p.reason for p in runs.problems)
    assert "wrong number of fields" in notes and "kept the last" in notes


def test_steps_line_up_on_the_evaluation_grid(tmp_path):
    write_run(tmp_path, "a", env="predator_prey", algorithm="resq", seed=0, evaluations=curve([0, 1], jitter=37))
    write_run(tmp_path, "b", env="predator_prey", algorithm="resq", seed=1, evaluations=curve([0, 3], jitter=-12))
    frame = load_runs(tmp_path).metrics
    assert sorted(frame["t_env"]) == [0, 0, 988, 1037] and sorted(frame["step"]) == [0, 0, 1000, 1000]


def test_no_runs_is_an_error_naming_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoResultsError, match="no run directory"):
        load_runs(tmp_path / "empty")
    with pytest.raises(NoResultsError, match="not a directory"):
        load_runs(tmp_path / "missing")


def test_without_config_a_run_is_reported_not_guessed(tmp_path):
    pp(tmp_path, "r", "resq", 0, [0, 1], -2, write_config=False)
    runs = load_runs(tmp_path)
    assert runs.runs["status"].item() == "unfinished" and "cannot tell" in runs.problems[0].reason


def test_mean_and_standard_error_are_hand_computed():
    mean, se, n = mean_se([1.0, 2.0, 4.0, float("nan")])
    assert n == 3 and mean == pytest.approx(7 / 3)
    assert se == pytest.approx((((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2) ** 0.5 / 3 ** 0.5)
    assert mean_se([5.0])[1] != mean_se([5.0])[1]  # nan for one seed


def test_panels_follow_settings_not_per_algorithm_schedules_or_seeds(tmp_path):
    for p in (0, -2):
        for seed in (0, 1):
            pp(tmp_path, f"resq_{p}_{seed}", "resq", seed, [0, 1], p,
               config={"exploration": {"epsilon_anneal_steps": 1000000}})
            pp(tmp_path, f"qmix_{p}_{seed}", "qmix", seed, [0, 1], p,
               config={"exploration": {"epsilon_anneal_steps": 50000}})
    runs = load_runs(tmp_path).usable()
    labels, keys = panel_labels(runs)
    assert keys == ["env.punishment"]  # not exploration.epsilon_anneal_steps (per algorithm), not env.seed
    assert sorted(set(labels)) == ["predator_prey, punishment=-2", "predator_prey, punishment=0"]


def test_method_labels_name_parts_and_variants(tmp_path):
    for seed in (0, 1):
        for alpha in (0.5, 0.1):
            write_run(tmp_path, f"fop_{alpha}_{seed}", env="mtq", algorithm="fop", seed=seed, evaluations=curve([0]),
                      config={"algorithm": {"alpha_finish": alpha}})
        for residual in ("ff", "vdn"):
            write_run(tmp_path, f"resq_{residual}_{seed}", env="mtq", algorithm="resq", seed=seed,
                      evaluations=curve([0]), main_function="qmix", residual_function=residual)
    runs = load_runs(tmp_path).usable()
    labels = method_labels(runs)
    assert set(labels) == {"fop[alpha_finish=0.5]", "fop[alpha_finish=0.1]", "resq[main=qmix,residual=ff]",
                           "resq[main=qmix,residual=vdn]"}
    variants = variant_values(runs)
    assert sorted(v for v in variants if pd.notna(v)) == [0.1, 0.1, 0.5, 0.5]
    assert pd.isna(variants[runs["algorithm"] == "resq"]).all()
