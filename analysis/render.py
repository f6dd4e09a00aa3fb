"""Markdown and LaTeX from one list of rows, and writes that never leave half a file behind."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
LATEX_TEXT = {"±": r"$\pm$", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$"}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def cell(text) -> str:
        return str(text).replace("|", "\\|")
    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return lines


def latex_escape(text) -> str:
    out = "".join(LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for plain, latex in LATEX_TEXT.items():
        out = out.replace(plain, latex)
    return out


def latex_table(header: Sequence[str], rows: Sequence[Sequence[str]], caption: str = "", label: str = "") -> str:
    """A booktabs table (needs \\usepackage{booktabs})."""
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}", r"\toprule",
              " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in rows]
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def write_text(path: Path, text: str) -> Path:
    """Write through a temporary file and a rename, so a crash leaves the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def save_figure(figure, path_stem: Path, dpi: int = 120) -> list[Path]:
    """The figure as PNG and PDF (each written atomically); returns both paths."""
    path_stem.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in (".png", ".pdf"):
        path = path_stem.with_name(path_stem.name + suffix)
        tmp = path.with_name(path.stem + ".tmp" + suffix)
        figure.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
        written.append(path)
    return written
