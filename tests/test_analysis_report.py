"""The paper-values file (transcription checks, schema errors) and the claims report on synthetic runs."""

import copy

import pytest
import yaml

from analysis.__main__ import main
from analysis.experiments import EXPERIMENTS
from analysis.paper import CLAIMS, TABLES, VALUES_FILE, PaperValuesError, parse
from analysis.report import Evaluator
from analysis.runs import load_runs
from tests.test_analysis_figures import write_fig4, write_mtq
from tests.test_analysis_support import QTRAN_PAYOFF, curve, matrix_run, write_run

RAW = yaml.safe_load(VALUES_FILE.read_text())


def claim(claim_id):
    return next(c for c in CLAIMS if c.id == claim_id)


# ---------------------------------------------------------------------------------- the data file


def test_every_entry_and_claim_names_its_source_and_a_registered_experiment():
    for table in TABLES.values():
        assert table.source and table.paper
        for entry in table.methods.values():
            assert entry.source and entry.label
    for c in CLAIMS:
        assert c.source and c.text and c.experiment in EXPERIMENTS, c.id
        groups = [title for title, _ in getattr(EXPERIMENTS[c.experiment], "groups", ())]
        for panel in (c.panel or {}, c.other_panel or {}):  # a misspelt group would match no panel
            assert "group" not in panel or panel["group"] in groups, c.id
        if groups and c.kind != "text":  # a figure of panel groups: a claim is about one group
            assert (c.panel or {}).get("group") in groups, c.id
    assert {c.paper for c in CLAIMS} <= {"resq", "qtran", "fop"}


def sums(q_agents):
    return [[a + b for b in q_agents[1]] for a in q_agents[0]]


def test_additive_tables_equal_the_sum_of_the_printed_utilities():
    """A transcription check: where a paper's table is additive (VDN, DDN, QTRAN's Q'_jt), every entry is
    Q_1 + Q_2 (+ a constant V_jt for ResQ Table 2f) to the printed rounding."""
    cases = [(TABLES["qtran_table1"].methods["vdn"], "q_joint", 0.0),
             (TABLES["qtran_table1"].methods["qtran_base"], "q_main", 0.0),
             (TABLES["resq_table2"].methods["ddn"], "q_joint", 0.0),
             (TABLES["resq_table2"].methods["qtran_base"], "q_main", 1.25)]
    for entry, quantity, offset in cases:
        expected = sums(entry.q_agents)
        for row, want in zip(entry.matrices[quantity], expected):
            assert row == pytest.approx([w + offset for w in want], abs=0.011), entry.label


def test_illegible_values_stay_null():
    table2c = TABLES["fop_table2"].methods["fop_alpha_0.1"]
    assert table2c.matrices["q_joint"][2] == [None, None, None] and table2c.q_agents[0][2] is None
    assert TABLES["fop_table1"].methods["facmaddpg"].greedy is None


@pytest.mark.parametrize("break_it, message", [
    (lambda raw: raw["claims"][0]["check"].update(kind="bogus"), "known kinds"),
    (lambda raw: raw["tables"]["qtran_table1"]["methods"]["vdn"]["q_joint"].pop(), "3x3 matrix"),
    (lambda raw: raw["tables"]["qtran_table1"]["methods"]["vdn"].pop("source"), "missing `source`"),
    (lambda raw: raw["tables"]["qtran_table1"]["methods"]["vdn"].update(greedy=[0, 3]), "not a joint action"),
    (lambda raw: raw["claims"].append(copy.deepcopy(raw["claims"][0])), "unique"),
    (lambda raw: raw["claims"][14].pop("metric"), "needs `metric`"),
])
def test_a_malformed_data_file_names_the_entry(break_it, message):
    raw = copy.deepcopy(RAW)
    break_it(raw)
    with pytest.raises(PaperValuesError, match=message):
        parse(raw)


# ---------------------------------------------------------------------------------- the report


def test_figure_claims_hold_fail_or_have_no_runs(tmp_path):
    evaluator = Evaluator(load_runs(write_fig4(tmp_path)))
    assert evaluator.evaluate(claim("resq_fig4_p-2_best")).verdict == "holds"
    assert evaluator.evaluate(claim("resq_fig4_p-2_rank")).verdict == "holds"
    no_positive = evaluator.evaluate(claim("resq_fig4_p-2_no_positive"))
    assert no_positive.verdict == "holds"  # qmix's mean curve peaks at 0 (t_env 0), qtran_base's too
    assert any("qmix max of the mean curve 0.00" in line for line in no_positive.ours)
    assert evaluator.evaluate(claim("resq_fig4_p-4_best")).verdict.startswith("no runs (no finished run matches")
    assert evaluator.evaluate(claim("resq_fig4_p0")).verdict.startswith("not checked")
    assert evaluator.evaluate(claim("resq_fig3_3s_vs_5z")).verdict.startswith("no runs")


def test_a_contradicting_run_turns_claims_false(tmp_path):
    # a third qmix seed that goes positive: qmix's mean curve peaks at 2 > 0, its final mean is 5/3, which
    # puts it ahead of ow_qmix (1.5): OW-QMIX is no longer third
    evaluator = Evaluator(load_runs(write_fig4(tmp_path, extra=[("qmix_2", "qmix", 2, [0, 9, 5], -2)])))
    assert evaluator.evaluate(claim("resq_fig4_p-2_no_positive")).verdict == "does not hold"
    rank = evaluator.evaluate(claim("resq_fig4_p-2_rank"))
    assert rank.verdict == "does not hold"
    assert any("ranking resq > cw_qmix > qmix > ow_qmix > qtran_base" in line for line in rank.ours)
    assert evaluator.evaluate(claim("resq_fig4_p-2_best")).verdict == "holds"


def test_matrix_claims_count_seeds(tmp_path):
    exact = [list(map(float, r)) for r in QTRAN_PAYOFF]
    for seed, greedy in enumerate([[0, 0], [0, 0], [1, 1]]):
        matrix_run(tmp_path, f"base{seed}", "qtran_base", seed, exact, greedy, payoff=QTRAN_PAYOFF, env="matrix_qtran")
    for seed, greedy in enumerate([[0, 0], [1, 1]]):
        matrix_run(tmp_path, f"alt{seed}", "qtran_alt", seed, exact, greedy, payoff=QTRAN_PAYOFF, env="matrix_qtran")
    evaluator = Evaluator(load_runs(tmp_path))
    verdict = evaluator.evaluate(claim("qtran_table1_optimal"))
    assert verdict.verdict == "does not hold"  # base 2/3 is most seeds, alt 1/2 is not
    assert "qtran_base: optimal in 2/3 seeds (greedy (A,A) (A,A) (B,B))" in verdict.ours
    assert evaluator.evaluate(claim("qtran_table1_vdn_qmix_fail")).verdict == "no runs (none for vdn, qmix)"


def test_mtq_claims_use_each_seeds_final_joint_action(tmp_path):
    evaluator = Evaluator(load_runs(write_mtq(tmp_path)))
    near = evaluator.evaluate(claim("fop_mtq_optimum"))
    assert near.verdict == "holds" and "fop: 2/2 seeds; final joint actions (4.90,5.10) (5.20,4.80)" in near.ours
    assert evaluator.evaluate(claim("fop_mtq_baselines")).verdict == "no runs (none for facmaddpg, dop)"


def test_report_command_writes_markdown_with_paper_value_ours_and_verdict(tmp_path, capsys):
    write_fig4(tmp_path)
    matrix_run(tmp_path, "m0", "vdn", 0, [[-5.0] * 3] * 3, [2, 1], payoff=QTRAN_PAYOFF, env="matrix_qtran",
               main_function="vdn")
    assert main(["report", str(tmp_path)]) == 0
    text = (tmp_path / "analysis" / "report.md").read_text()
    assert "| resq_fig4_p-2_best | resq | Fig. 4 (middle), Sec. 5.4 | holds |" in text
    assert "| resq_fig4_p-4_best | resq | Fig. 4 (right), Sec. 5.4 | no runs |" in text
    assert '- paper (resq, Fig. 4 (middle), Sec. 5.4): "For the difficult p=-2 case, ResQ can obtain the best returns"' in text
    assert "  - predator_prey, punishment=-2: resq 6.00 ± 1.15 (n=3); cw_qmix 3.00 ± 0.00 (n=2)" in text
    # a printed table entry against ours: VDN's greedy (C,B) reproduced in 1/1 seeds
    assert "| vdn | Table 1e (qtran) | (C,B) | 1/1 |" in text


def test_a_claim_across_panels_compares_each_method_with_itself(tmp_path):
    """QTRAN Fig. 3b: with full exploration (epsilon_finish 1) VDN and QMIX end lower than with decay."""
    finals = {("vdn", 1.0): [1, 2], ("vdn", 0.05): [5, 6], ("qmix", 1.0): [3, 3], ("qmix", 0.05): [2, 2]}
    for (algorithm, finish), values in finals.items():
        for seed, value in enumerate(values):
            write_run(tmp_path, f"{algorithm}_{finish}_{seed}", env="gaussian_squeeze", algorithm=algorithm,
                      seed=seed, evaluations=curve([0, value]), config={"exploration": {"epsilon_finish": finish}})
    verdict = Evaluator(load_runs(tmp_path)).evaluate(claim("qtran_fig3_full_exploration"))
    assert verdict.verdict == "does not hold"  # VDN drops (1.5 < 5.5), QMIX does not (3 > 2)
    assert any(line.startswith("gaussian_squeeze, epsilon_finish=1: ") for line in verdict.ours)


# ResQ Fig. 5 on SMAX's 8m_vs_9m: final win rates per seed of every legend entry (two seeds)
FIG5_FINALS = {
    ("resq", "qmix", "ff"): [0.6, 0.7], ("resq", "vdn", "ff"): [0.5, 0.5], ("resq", "qatten", "ff"): [0.4, 0.5],
    ("qmix", "qmix", "none"): [0.3, 0.4], ("vdn", "vdn", "none"): [0.2, 0.2], ("qatten", "qatten", "none"): [0.45, 0.5],
    ("resq", "qmix", "qmix"): [0.6, 0.6], ("resq", "qmix", "vdn"): [0.5, 0.6], ("resq", "qmix", "qatten"): [0.1, 0.2],
    ("resz", "datten", "datten"): [0.5, 0.6], ("resz", "ddn", "datten"): [0.4, 0.4], ("resz", "dmix", "datten"): [0.3, 0.3],
    ("datten", "datten", "none"): [0.2, 0.2], ("ddn", "ddn", "none"): [0.1, 0.1], ("dmix", "dmix", "none"): [0.0, 0.1],
    ("resz", "datten", "ff"): [0.7, 0.7], ("resz", "datten", "ddn"): [0.1, 0.1], ("resz", "datten", "dmix"): [0.1, 0.2],
}


def test_fig5_claims_are_checked_in_their_own_panel_group(tmp_path):
    """Each Fig. 5 claim names its panel group: the main-function claim is judged in (a, b) only, not also in
    (c), (d), (e), where its methods are not drawn (that made every Fig. 5 claim 'no runs')."""
    for (algorithm, main_function, residual), values in FIG5_FINALS.items():
        for seed, value in enumerate(values):
            write_run(tmp_path, f"{algorithm}_{main_function}_{residual}_{seed}", env="smax_8m_vs_9m",
                      algorithm=algorithm, seed=seed, main_function=main_function, residual_function=residual,
                      evaluations=curve([0.0, value], metric="test/battle_won_mean"))
    evaluator = Evaluator(load_runs(tmp_path))
    main_claim = evaluator.evaluate(claim("resq_fig5_main"))
    # ResQ 0.65 > QMIX 0.35, Qtot-VDN 0.5 > VDN 0.2, but Qtot-QAtten 0.45 = QAtten 0.475 fails
    assert main_claim.verdict == "does not hold"
    assert [line.split(":")[0] for line in main_claim.ours] == ["(a, b) main function"]
    assert evaluator.evaluate(claim("resq_fig5_main_qmix_preferred")).verdict == "holds"
    assert evaluator.evaluate(claim("resq_fig5_distributional_main")).verdict == "holds"
    assert evaluator.evaluate(claim("resq_fig5_residual")).verdict == "holds"  # FF 0.65 > Qr-QAtten 0.15
    residual = evaluator.evaluate(claim("resq_fig5_distributional_residual"))
    assert residual.verdict == "does not hold"  # Zr-FF 0.7 beats ResZ's 0.55
    assert any("ranking resz[main=datten,residual=ff] > resz[main=datten,residual=datten]" in line
               for line in residual.ours)


def test_a_method_tied_for_first_is_not_the_best(tmp_path):
    """The reduced-budget Fig. 4 sweep: at p = -2 six methods end at exactly 0 and QTRAN below; 'ResQ obtains
    the best returns' held because ResQ came first in a sort among equals. A tie for first is not best, and
    a tied rank holds only if every rank of the tie is allowed."""
    finals = {"resq": [0.0, 0.0], "vdn": [0.0, 0.0], "qtran_base": [-1.0, -2.0]}
    for algorithm, values in finals.items():
        for seed, value in enumerate(values):
            write_run(tmp_path, f"{algorithm}_{seed}", env="predator_prey", algorithm=algorithm, seed=seed,
                      evaluations=curve([-0.5, value]), config={"env": {"punishment": -2}})
    evaluator = Evaluator(load_runs(tmp_path))
    best = evaluator.evaluate(claim("resq_fig4_p-2_best"))
    assert best.verdict == "does not hold"
    assert any(line.endswith("ranking resq = vdn > qtran_base") for line in best.ours), best.ours
    assert Evaluator.rank_holds([1.0, 0.5, 0.5, 0.0], 1, [2, 3])  # tied for 2nd-3rd: both allowed
    assert not Evaluator.rank_holds([1.0, 0.5, 0.5, 0.0], 1, [2])  # second only by the order of a sort
    assert Evaluator.rank_holds([1.0, 0.5, 0.5, 0.0], 3, [4]) and not Evaluator.rank_holds([1.0, 1.0], 0, [1])
