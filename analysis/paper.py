"""The papers' printed tables and textual claims, read from `paper_values.yaml` (the one data file).

Loading validates the file (shapes against the payoff, known claim kinds, a source on every entry), so a
transcription slip fails loudly with the entry's name instead of producing a wrong comparison.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

VALUES_FILE = Path(__file__).with_name("paper_values.yaml")
MATRIX_KINDS = ("optimal", "greedy")
CURVE_KINDS = ("best", "rank", "at_most", "at_least", "better", "lower_in")
MTQ_KINDS = ("near", "nearer")
CLAIM_KINDS = (*MATRIX_KINDS, *CURVE_KINDS, *MTQ_KINDS, "text")
QUANTITIES = ("q_joint", "q_main")


class PaperValuesError(ValueError):
    """paper_values.yaml does not follow its schema (docs/analysis.md)."""


@dataclass(frozen=True)
class PaperEntry:
    """One method's reconstructed table in a paper."""

    key: str
    algorithm: str
    label: str
    source: str
    matrices: dict[str, list[list[float | None]]]   # result-file quantity (q_joint / q_main) -> matrix
    greedy: tuple[int, ...] | None
    q_agents: list[list[float | None]] | None = None
    note: str = ""
    variant: float | str | None = None

    @property
    def compared(self) -> str:
        """Which of our quantities the paper's headline matrix sits beside."""
        return "q_joint" if "q_joint" in self.matrices else "q_main"


@dataclass(frozen=True)
class PaperTable:
    name: str
    paper: str
    source: str
    title: str
    payoff: list[list[float]]
    noise_std: float = 0.0
    steps: int | None = None
    methods: dict[str, PaperEntry] = field(default_factory=dict)
    also: tuple[str, ...] = ()
    words: dict[str, str] = field(default_factory=dict)
    only_listed: bool = False

    @property
    def algorithms(self) -> set[str]:
        return {e.algorithm for e in self.methods.values()} | set(self.also) | set(self.words)

    def entry_for(self, algorithm: str, variant: Any = None) -> PaperEntry | None:
        from analysis.stats import same

        for entry in self.methods.values():
            if entry.algorithm != algorithm:
                continue
            if entry.variant is None or (variant is not None and same(variant, entry.variant)):
                return entry
        return None


@dataclass(frozen=True)
class Claim:
    id: str
    paper: str
    source: str
    text: str
    experiment: str
    check: dict[str, Any]
    panel: dict[str, Any] | None = None
    other_panel: dict[str, Any] | None = None
    metric: str | None = None
    note: str = ""

    @property
    def kind(self) -> str:
        return self.check["kind"]


@dataclass(frozen=True)
class PaperValues:
    papers: dict[str, dict[str, str]]
    tables: dict[str, PaperTable]
    claims: list[Claim]


def _matrix(name: str, value: Any, shape: tuple[int, int]) -> list[list[float | None]]:
    if (not isinstance(value, list) or len(value) != shape[0]
            or any(not isinstance(r, list) or len(r) != shape[1] for r in value)):
        raise PaperValuesError(f"{name}: expected a {shape[0]}x{shape[1]} matrix (null for illegible), got {value!r}")
    for row in value:
        for v in row:
            if v is not None and not isinstance(v, (int, float)):
                raise PaperValuesError(f"{name}: {v!r} is neither a number nor null")
    return [[None if v is None else float(v) for v in row] for row in value]


def _entry(table: str, key: str, raw: dict, shape: tuple[int, int]) -> PaperEntry:
    where = f"tables.{table}.methods.{key}"
    for required in ("label", "source"):
        if not raw.get(required):
            raise PaperValuesError(f"{where}: missing `{required}`")
    matrices = {q: _matrix(f"{where}.{q}", raw[q], shape) for q in QUANTITIES if q in raw}
    if not matrices:
        raise PaperValuesError(f"{where}: give the paper's matrix as q_joint or q_main")
    agents = raw.get("q_agents")
    if agents is not None:
        agents = [_matrix(f"{where}.q_agents[{i}]", [row], (1, n))[0]
                  for i, (row, n) in enumerate(zip(agents, shape))]
    greedy = raw.get("greedy")
    if greedy is not None and (len(greedy) != len(shape) or any(not 0 <= g < n for g, n in zip(greedy, shape))):
        raise PaperValuesError(f"{where}.greedy: {greedy!r} is not a joint action of a {shape} game")
    return PaperEntry(key=key, algorithm=raw.get("algorithm", key), label=raw["label"], source=raw["source"],
                      matrices=matrices, greedy=tuple(greedy) if greedy is not None else None, q_agents=agents,
                      note=" ".join(str(raw.get("note", "")).split()), variant=raw.get("variant"))


def _table(name: str, raw: dict, papers: dict) -> PaperTable:
    for required in ("paper", "source", "title", "payoff"):
        if required not in raw:
            raise PaperValuesError(f"tables.{name}: missing `{required}`")
    if raw["paper"] not in papers:
        raise PaperValuesError(f"tables.{name}.paper: {raw['paper']!r} is not under `papers`")
    payoff = raw["payoff"]
    shape = (len(payoff), len(payoff[0]))
    _matrix(f"tables.{name}.payoff", payoff, shape)
    methods = {key: _entry(name, key, value, shape) for key, value in (raw.get("methods") or {}).items()}
    return PaperTable(name=name, paper=raw["paper"], source=raw["source"], title=raw["title"], payoff=payoff,
                      noise_std=float(raw.get("noise_std", 0.0)), steps=raw.get("steps"), methods=methods,
                      also=tuple(raw.get("also") or ()), words=dict(raw.get("words") or {}),
                      only_listed=bool(raw.get("only_listed", False)))


def _claim(raw: dict, papers: dict, index: int) -> Claim:
    where = f"claims[{index}] ({raw.get('id', '?')})"
    for required in ("id", "paper", "source", "text", "experiment", "check"):
        if required not in raw:
            raise PaperValuesError(f"{where}: missing `{required}`")
    if raw["paper"] not in papers:
        raise PaperValuesError(f"{where}.paper: {raw['paper']!r} is not under `papers`")
    kind = raw["check"].get("kind")
    if kind not in CLAIM_KINDS:
        raise PaperValuesError(f"{where}.check.kind: {kind!r}; known kinds: {', '.join(CLAIM_KINDS)}")
    if kind in CURVE_KINDS and not raw.get("metric"):
        raise PaperValuesError(f"{where}: a {kind!r} claim needs `metric` (e.g. test/return_mean)")
    return Claim(id=raw["id"], paper=raw["paper"], source=raw["source"], text=" ".join(str(raw["text"]).split()),
                 experiment=raw["experiment"], check=dict(raw["check"]), panel=raw.get("panel"),
                 other_panel=raw.get("other_panel"), metric=raw.get("metric"),
                 note=" ".join(str(raw.get("note", "")).split()))


def parse(raw: dict) -> PaperValues:
    papers = raw.get("papers") or {}
    tables = {name: _table(name, value, papers) for name, value in (raw.get("tables") or {}).items()}
    claims = [_claim(c, papers, i) for i, c in enumerate(raw.get("claims") or [])]
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PaperValuesError(f"claim ids must be unique; repeated: {', '.join(duplicates)}")
    return PaperValues(papers=papers, tables=tables, claims=claims)


@lru_cache(maxsize=1)
def load(path: str | None = None) -> PaperValues:
    return parse(yaml.safe_load(Path(path or VALUES_FILE).read_text()))


VALUES = load()
TABLES: dict[str, PaperTable] = VALUES.tables
CLAIMS: list[Claim] = VALUES.claims
RESQ_PAYOFF = TABLES["resq_table2"].payoff
QTRAN_PAYOFF = TABLES["qtran_table1"].payoff
