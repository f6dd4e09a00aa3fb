"""The papers' reported matrix-game tables, transcribed from `papers/` (rows: agent 1, columns: agent 2).

`None` marks an entry that is illegible in our copy of the paper (lost in the PDF extraction); it is
shown as "?" and never guessed. Greedy joint actions are the paper's boldface. Where the paper gives
only words (Table 3, the noisy game), `claims` records them and no numbers are made up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RESQ_PAYOFF = [[8, -12, -12], [-12, 0, 0], [-12, 0, 7.9]]
QTRAN_PAYOFF = [[8, -12, -12], [-12, 0, 0], [-12, 0, 0]]


@dataclass(frozen=True)
class PaperEntry:
    """One method's reconstructed table in a paper."""

    label: str
    q_joint: list[list[float | None]]
    greedy: tuple[int, int]
    q_agents: tuple[list[float | None], list[float | None]] | None = None
    note: str = ""
    # which of our tables the paper's numbers correspond to: the joint value ("q_joint": Q_jt, or
    # Q_tot without a central network) or the main function the agents factorize ("q_main")
    value: str = "q_joint"


@dataclass(frozen=True)
class PaperTable:
    title: str
    payoff: list[list[float]]
    methods: dict[str, PaperEntry] = field(default_factory=dict)
    # algorithm names whose runs belong in this table but that the paper does not report
    also: tuple[str, ...] = ()
    # the reward noise of the game (runs with another noise level are left out)
    noise_std: float = 0.0
    # what the paper says in words where it gives no table, per algorithm (never turned into numbers)
    claims: dict[str, str] = field(default_factory=dict)


TABLES: dict[str, PaperTable] = {
    "resq_table2": PaperTable(
        title="ResQ paper (NeurIPS 2022) Table 2: one-step game, epsilon = 1, 50k steps",
        payoff=RESQ_PAYOFF,
        methods={
            "resq": PaperEntry(
                "ResQ, Table 2b: Q_jt",
                [[None, -12.00, -11.99], [None, 0.00, 0.00], [-12.00, 0.00, 7.87]],
                (0, 0), ([0.108, -0.300, 0.106], [0.108, -0.300, 0.106]),
                note="(A,A) and (B,A) are illegible in our copy",
            ),
            "resz": PaperEntry(
                "ResZ, Table 2c: E[Z_jt]",
                [[7.96, -12.37, -12.37], [-12.13, -0.27, -0.38], [-12.22, -0.27, 7.86]],
                (0, 0), ([0.82, -0.77, 0.77], [0.82, -0.77, 0.77]),
            ),
            "dmix": PaperEntry(
                "DMIX, Table 2d: Q_jt",
                [[-10.88, -9.99, -9.93], [-9.92, -0.20, 0.16], [-9.85, 0.15, 7.81]],
                (2, 2), ([-6.09, -0.07, 0.04], [-6.07, -0.07, 0.04]),
            ),
            "ddn": PaperEntry(
                "DDN, Table 2e: Q_jt",
                [[None, -6.94, -5.25], [None, -0.47, 1.22], [-5.25, 1.22, 2.91]],
                (2, 2), ([-6.70, -0.24, 1.45], [-6.70, None, 1.45]),
                note="(A,A), (B,A) and Q_2(B) are illegible in our copy",
            ),
            "qtran_base": PaperEntry(
                "QTRAN, Table 2f: Q_jt",
                [[8.00, 4.67, 7.98], [4.88, 1.55, 4.86], [7.99, 4.65, 7.97]],
                (0, 0), ([3.27, 0.15, 3.26], [None, 0.15, 3.46]),
                note="Q_2(A) is illegible in our copy; the entries far from the payoff (4.67 at (A,B)) suggest "
                     "the transformed Q'_jt (+ V_jt), which our main function (sum_i Q_i, without V_jt) is",
                value="q_main",
            ),
            "qplex": PaperEntry(
                "QPLEX, Table 2g: Q_jt",
                [[15.7, -3.72, 0.34], [-2.62, 12.66, 12.65], [-1.20, 12.44, 15.83]],
                (2, 2), ([0.07, -150, 0.08], [0.07, -150, 0.08]),
            ),
            "cw_qmix": PaperEntry(
                "CW-QMIX, Table 2h: Q_jt",
                [[None, -5.04, -5.04], [None, -5.04, -5.04], [-5.04, -5.04, -5.04]],
                (0, 0), ([0.17, -24.55, -24.55], [0.17, -25.72, None]),
                note="(A,A), (B,A) and Q_2(C) are illegible in our copy; the flat -5.04 is a monotonic "
                     "projection, i.e. QMIX's Q_tot, so it is shown beside our Q_tot (our Q* is the joint value)",
                value="q_main",
            ),
            "ow_qmix": PaperEntry(
                "OW-QMIX, Table 2i: Q_jt",
                [[6.07, -0.87, 6.86], [-0.86, -0.87, -0.16], [5.49, -0.87, 6.29]],
                (0, 2), ([0.22, -50.32, 0.04], [None, -50.79, 0.26]),
                note="Q_2(A) is illegible in our copy; a table whose columns B are constant is a monotonic "
                     "projection (Q_tot), so it is shown beside our Q_tot (our Q* is the joint value)",
                value="q_main",
            ),
        },
        also=("qmix", "vdn"),
    ),
    "resq_table3": PaperTable(
        title="ResQ paper (NeurIPS 2022) Sec. 5.2 / Table 3: ResQ payoff + N(0,1) reward noise, epsilon = 1, 50k steps",
        payoff=RESQ_PAYOFF,
        noise_std=1.0,
        # Our copy has no Table 3 values (the table is in an appendix we do not have). Sec. 5.2 says
        # only: "ResQ/ResZ and QTran can find the optimal policy while most of the algorithms cannot".
        claims={
            "resq": "finds the optimum (text)",
            "resz": "finds the optimum (text)",
            "qtran_base": "finds the optimum (text; base or alt not said)",
            "qtran_alt": "finds the optimum (text; base or alt not said)",
            "qmix": "'most of the algorithms cannot' (which ones: not said)",
            "vdn": "'most of the algorithms cannot' (which ones: not said)",
            "dmix": "'most of the algorithms cannot' (which ones: not said)",
            "ddn": "'most of the algorithms cannot' (which ones: not said)",
        },
        also=("resq", "resz", "qtran_base", "qtran_alt", "qmix", "vdn", "dmix", "ddn"),
    ),
    "qtran_table1": PaperTable(
        title="QTRAN paper (ICML 2019) Table 1: one-step game, epsilon = 1, 20k steps",
        payoff=QTRAN_PAYOFF,
        methods={
            "qtran_base": PaperEntry(
                "QTRAN, Table 1c: Q_jt",
                [[8.00, -12.02, -12.02], [-12.00, 0.00, 0.00], [-12.00, 0.00, -0.01]],
                (0, 0), ([3.84, -2.06, -2.25], [4.16, 2.29, 2.29]),
                note="the paper does not say whether Table 1 is QTRAN-base or -alt",
            ),
            "qtran_alt": PaperEntry(
                "QTRAN, Table 1c: Q_jt",
                [[8.00, -12.02, -12.02], [-12.00, 0.00, 0.00], [-12.00, 0.00, -0.01]],
                (0, 0), ([3.84, -2.06, -2.25], [4.16, 2.29, 2.29]),
                note="the paper does not say whether Table 1 is QTRAN-base or -alt",
            ),
            "vdn": PaperEntry(
                "VDN, Table 1e: Q_jt",
                [[-5.42, -4.57, -4.70], [-4.35, -3.51, -3.63], [-3.87, -3.02, -3.14]],
                (2, 1), ([-2.29, -1.22, -0.73], [-3.14, -2.29, -2.41]),
            ),
            "qmix": PaperEntry(
                "QMIX, Table 1f: Q_jt",
                [[-8.08, -8.08, -8.08], [-8.08, 0.01, 0.03], [-8.08, 0.01, 0.02]],
                (1, 2), ([-1.02, 0.11, 0.10], [-0.92, 0.00, 0.01]),
            ),
        },
        also=("resq",),
    ),
}
