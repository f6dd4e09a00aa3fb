"""One colour per method, the same in every figure: a fixed palette keyed by algorithm name; a label
the palette does not know (an ablation variant, a new method) gets a colour derived from its text alone,
so it too is stable across figures and runs."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import seaborn as sns

PALETTE: dict[str, str] = {
    # the residual methods
    "resq": "#d62728",
    "resz": "#ff7f0e",
    # expected-value factorizations
    "qmix": "#1f77b4",
    "qmix_pymarl2": "#17becf",
    "vdn": "#2ca02c",
    "qatten": "#9467bd",
    "qplex": "#8c564b",
    "qtran_base": "#e377c2",
    "qtran_alt": "#bcbd22",
    "cw_qmix": "#7f7f7f",
    "ow_qmix": "#393b79",
    "iql": "#637939",
    # distributional
    "dmix": "#843c39",
    "ddn": "#7b4173",
    "datten": "#3182bd",
    # actor-critic
    "fop": "#e6550d",
    "dop": "#31a354",
    "coma": "#756bb1",
    "facmaddpg": "#636363",
    "maddpg": "#6baed6",
    "nqmix": "#fd8d3c",
    "nqmix_m": "#74c476",
    # ResQ Fig. 5's compositions, as method labels name them (analysis.stats.method_labels). The paper's
    # ResQ and ResZ keep their algorithm's colour; the others are distinct from every method they share a
    # panel with (Qtot-*: main function, Qr-*: residual, Ztot-*, Zr-*: the distributional ones).
    "resq[main=qmix,residual=ff]": "#d62728",
    "resz[main=datten,residual=datten]": "#ff7f0e",
    "resq[main=vdn,residual=ff]": "#e7298a",
    "resq[main=qatten,residual=ff]": "#e6ab02",
    "resq[main=qmix,residual=qmix]": "#1b9e77",
    "resq[main=qmix,residual=vdn]": "#7570b3",
    "resq[main=qmix,residual=qatten]": "#a6761d",
    "resz[main=ddn,residual=datten]": "#66a61e",
    "resz[main=dmix,residual=datten]": "#000000",
    "resz[main=datten,residual=ff]": "#f781bf",
    "resz[main=datten,residual=ddn]": "#377eb8",
    "resz[main=datten,residual=dmix]": "#a65628",
}
# Labels that are the same method under two names share a colour on purpose (default parts spelled out).
SAME_METHOD = {"resq[main=qmix,residual=ff]": "resq", "resz[main=datten,residual=datten]": "resz"}


def colour(label: str) -> str:
    """The label's colour: the palette's entry for the label, else a colour hashed from the text."""
    if label in PALETTE:
        return PALETTE[label]
    digest = int(hashlib.sha256(label.encode()).hexdigest()[:8], 16)
    hues = sns.husl_palette(64, l=0.55, s=0.85).as_hex()
    return hues[digest % len(hues)]


def palette_for(labels: Iterable[str]) -> dict[str, str]:
    return {label: colour(label) for label in labels}
