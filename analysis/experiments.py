"""What each `experiment=` preset's analysis is: a matrix-game table beside a paper's, or learning curves
in a paper figure's layout (and, for MTQ, the reward surface with the learning paths).

A name here equals the preset's file name in conf/experiment/ (tests check that every preset has one).
Curve experiments select their runs by env name (shell patterns) so one outputs folder can hold several
sweeps; panels are one per env and setting (analysis.stats), or the groups listed (ResQ Fig. 5).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatch

import pandas as pd

from analysis.paper import TABLES, PaperTable
from analysis.stats import DEFAULT_PANEL_PREFIXES, matches


class UnknownExperimentError(KeyError):
    """A NAME that no analysis is registered for."""


@dataclass(frozen=True)
class MatrixExperiment:
    name: str
    table: PaperTable
    sweep: str

    @property
    def title(self) -> str:
        return self.table.title


@dataclass(frozen=True)
class CurveExperiment:
    name: str
    title: str
    source: str
    envs: tuple[str, ...]
    metric: str
    ylabel: str
    sweep: str
    # (panel title, selectors): a run joins every group one of whose selectors it matches
    groups: tuple[tuple[str, tuple[dict, ...]], ...] = ()
    panel_prefixes: tuple[str, ...] = DEFAULT_PANEL_PREFIXES
    mtq: bool = False
    descending_panels: bool = False  # order panels by their settings, largest first
    y_range: tuple[float, float] | None = None  # the metric's possible range (a win rate's 0..1), for the axis
    names: tuple[tuple[str, str], ...] = ()  # (method label, the paper's legend name) shown in the legend
    algorithms: tuple[str, ...] = field(default=())  # empty: every algorithm found

    def select(self, runs: pd.DataFrame, own_preset: bool = True) -> pd.DataFrame:
        """The runs of this figure: env matches, and (own_preset) made by this preset or by none, so a
        sweep of another preset on the same envs (Fig. 5's variants on Fig. 3's maps) stays out."""
        chosen = runs[runs["env"].map(lambda env: any(fnmatch(str(env), p) for p in self.envs))]
        if self.algorithms:
            chosen = chosen[chosen["algorithm"].isin(self.algorithms)]
        if own_preset and "experiment" in chosen.columns:
            chosen = chosen[chosen["experiment"].isin(["none", self.name])]
        return chosen


def selector(spec) -> dict:
    """An `algorithm=` name or a {column or config key: value} mapping, as a mapping."""
    return {"algorithm": spec} if isinstance(spec, str) else dict(spec)


def groups_of(record: dict, groups) -> list[str]:
    return [title for title, selectors in groups if any(matches(record, selector(s)) for s in selectors)]


CURVES = {
    "resq_fig3_smax": CurveExperiment(
        name="resq_fig3_smax",
        title="ResQ paper Fig. 3 (SMAX version): test win rate against env steps",
        source="resq Fig. 3, Sec. 5.3 (on SMAX's maps that SMAC's figure shares)",
        envs=("smax_*",), metric="test/battle_won_mean", ylabel="test win rate", y_range=(0.0, 1.0),
        sweep="python -m resq.run -m experiment=resq_fig3_smax",
    ),
    "resq_fig4": CurveExperiment(
        name="resq_fig4",
        title="ResQ paper Fig. 4: predator-prey test return, one panel per punishment p",
        source="resq Fig. 4, Sec. 5.4",
        envs=("predator_prey*",), metric="test/return_mean", ylabel="test return",
        sweep="python -m resq.run -m experiment=resq_fig4", descending_panels=True,
    ),
    "resq_fig5": CurveExperiment(
        name="resq_fig5",
        title="ResQ paper Fig. 5: main and residual function ablations",
        source="resq Fig. 5, Sec. 5.5",
        # SMAX maps, and real SMAC's maps of the figure (env=mmm2, env=8m_vs_9m, or env=smac env.map_name=...)
        envs=("smax_*", "mmm2", "8m_vs_9m", "smac"), metric="test/battle_won_mean", ylabel="test win rate",
        y_range=(0.0, 1.0),
        sweep="python -m resq.run -m experiment=resq_fig5",
        groups=(
            ("(a, b) main function", ({"algorithm": "resq", "residual_function": "ff"}, "qmix", "qatten", "vdn")),
            ("(c) distributional main function", ({"algorithm": "resz", "residual_function": "datten"},
                                                  "datten", "ddn", "dmix")),
            ("(d) residual function", ({"algorithm": "resq", "main_function": "qmix"},)),
            ("(e) distributional residual function", ({"algorithm": "resz", "main_function": "datten"},)),
        ),
        names=(("resq[main=qmix,residual=ff]", "ResQ"), ("resq[main=vdn,residual=ff]", "Qtot-VDN"),
               ("resq[main=qatten,residual=ff]", "Qtot-QAtten"), ("resq[main=qmix,residual=qmix]", "Qr-QMIX"),
               ("resq[main=qmix,residual=vdn]", "Qr-VDN"), ("resq[main=qmix,residual=qatten]", "Qr-QAtten"),
               ("resz[main=datten,residual=datten]", "ResZ"), ("resz[main=ddn,residual=datten]", "Ztot-DDN"),
               ("resz[main=dmix,residual=datten]", "Ztot-DMIX"), ("resz[main=datten,residual=ff]", "Zr-FF"),
               ("resz[main=datten,residual=ddn]", "Zr-DDN"), ("resz[main=datten,residual=dmix]", "Zr-DMIX")),
    ),
    "qtran_fig3": CurveExperiment(
        name="qtran_fig3",
        title="QTRAN paper Fig. 3: Gaussian squeeze (GS) and multi-domain GS (MGS)",
        source="qtran Fig. 3, Sec. 4.2",
        envs=("gaussian_squeeze*", "mgs*"), metric="test/return_mean", ylabel="average reward",
        sweep="python -m resq.run -m experiment=qtran_fig3",
    ),
    "qtran_fig4": CurveExperiment(
        name="qtran_fig4",
        title="QTRAN paper Fig. 4: modified predator-prey, one panel per N and P",
        source="qtran Fig. 4, Sec. 4.2",
        envs=("qtran_pp*",), metric="test/return_mean", ylabel="average reward per episode",
        sweep="python -m resq.run -m experiment=qtran_fig4",
    ),
    "fop_mtq": CurveExperiment(
        name="fop_mtq",
        title="FOP paper Fig. 2: the Max of Two Quadratic game, learning curves and learning paths",
        source="fop Fig. 2, Sec. 5.1",
        envs=("mtq*",), metric="test/return_mean", ylabel="test return (reward x 0.1)",
        sweep="python -m resq.run -m experiment=fop_mtq", mtq=True,
    ),
}

MATRIX = {name: MatrixExperiment(name, table, f"python -m resq.run -m experiment={name}")
          for name, table in TABLES.items()}

EXPERIMENTS: dict[str, MatrixExperiment | CurveExperiment] = {**MATRIX, **CURVES}


def get_experiment(name: str) -> MatrixExperiment | CurveExperiment:
    if name not in EXPERIMENTS:
        raise UnknownExperimentError(f"unknown NAME {name!r}; available: {', '.join(sorted(EXPERIMENTS))}")
    return EXPERIMENTS[name]
