"""The comparison written as a self-contained sortable HTML page, Markdown, CSV and LaTeX (booktabs).

HTML and Markdown come from the shared report renderer (core.report); charts are matplotlib PNGs,
embedded in the page and written beside the Markdown and LaTeX files.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from annotaudit.core.io import write_bytes, write_text  # noqa: E402
from annotaudit.core.report import Report  # noqa: E402

from .bootstrap import Interval  # noqa: E402
from .tables import Table  # noqa: E402

FORMATS = ("html", "md", "csv", "latex")
FIGURES = "report_files"


def _scaled(value: float | None, percent: bool) -> float | None:
    return None if value is None else value * (100 if percent else 1)


def _number(value: float | None, percent: bool) -> str:
    value = _scaled(value, percent)
    return "–" if value is None else f"{value:.1f}" if percent else f"{value:.3f}"


def marks(value: Interval) -> str:
    """' †' for an exact interval, ' ‡' for a bootstrap on too few clusters, ' (k undefined)' for resamples left out."""
    return (" †" if value.method != "bootstrap" else "") + (" ‡" if value.unreliable else "") + (
        f" ({value.undefined} undefined)" if value.undefined else "")


def cell_text(value: Any, percent: bool) -> str:
    """'85.3 [83.1, 87.2]' for a figure with its interval (and its marks); labels as they are; empty for a missing cell."""
    if isinstance(value, Interval):
        if value.value is None:
            return "–"
        interval = f" [{_number(value.low, percent)}, {_number(value.high, percent)}]" if value.low is not None else ""
        return _number(value.value, percent) + interval + marks(value)
    return "" if value is None else str(value)


def _header(table: Table) -> list[str]:
    return table.index + table.columns


def _percent(table: Table, column: str) -> bool:
    return table.percent and column not in table.plain


# Charts -----------------------------------------------------------------------------------------

def chart_png(table: Table) -> bytes | None:
    """Grouped bars with 95% interval whiskers: one group per row label, one bar per series (setting or language)."""
    groups = [g for g, series in table.chart.items() if any(isinstance(v, Interval) and v.value is not None for v in series.values())]
    if not groups:
        return None
    series: list[str] = []
    for g in groups:
        series += [s for s in table.chart[g] if s not in series]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * len(series) / 2 + 3), 3.6))
    for k, s in enumerate(series):
        xs, heights, errors = [], [], [[], []]
        for j, g in enumerate(groups):
            v = table.chart[g].get(s)
            if isinstance(v, Interval) and v.value is not None:
                xs.append(j + k * width)
                heights.append(_scaled(v.value, table.percent))
                low, high = (v.low, v.high) if v.low is not None else (v.value, v.value)
                errors[0].append(max(0.0, heights[-1] - _scaled(low, table.percent)))
                errors[1].append(max(0.0, _scaled(high, table.percent) - heights[-1]))
        ax.bar(xs, heights, width=width, yerr=errors, capsize=3, label=s)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))])
    ax.set_xticklabels(groups, rotation=20, ha="right")
    ax.set_title(table.title + " with 95% intervals")
    if table.percent:
        ax.set_ylim(0, 100)
    if len(series) > 1:
        ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# HTML and Markdown ------------------------------------------------------------------------------

def build_report(title: str, intro: str, tables: Sequence[Table], charts: dict[str, bytes]) -> Report:
    report = Report(title).text(intro)
    for t in tables:
        report.heading(t.title)
        if t.note:
            report.text(t.note)
        report.table([{c: cell_text(row.get(c), _percent(t, c)) for c in _header(t)} for row in t.rows])
        if t.name in charts:
            report.image(Image.open(io.BytesIO(charts[t.name])), t.title)
    return report


# CSV --------------------------------------------------------------------------------------------

def write_csv(table: Table, path: Path) -> Path:
    """One line per row; each figure as value, low and high (in the table's unit: % or plain)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    header = list(table.index)
    for c in table.columns:
        header += [c, f"{c} low", f"{c} high"] if any(isinstance(r.get(c), Interval) for r in table.rows) else [c]
    writer.writerow(header)
    for row in table.rows:
        line: list[Any] = [row.get(c, "") for c in table.index]
        for c in table.columns:
            v = row.get(c)
            if any(isinstance(r.get(c), Interval) for r in table.rows):
                pct = _percent(table, c)
                line += [_scaled(v.value, pct), _scaled(v.low, pct), _scaled(v.high, pct)] if isinstance(v, Interval) else ["", "", ""]
            else:
                line.append("" if v is None else v)
        writer.writerow(["" if x is None else x for x in line])
    write_text(path, buf.getvalue())
    return path


# LaTeX ------------------------------------------------------------------------------------------

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "–": "--", "−": "$-$", "†": r"\dag{}", "‡": r"\ddag{}",
                  "ω": r"$\omega$", "ρ": r"$\rho$", "α": r"$\alpha$", "ε": r"$\varepsilon$"}


def latex_escape(text: str) -> str:
    return re.sub("|".join(re.escape(k) for k in _LATEX_SPECIAL), lambda m: _LATEX_SPECIAL[m.group()], text)


def _latex_cell(value: Any, percent: bool) -> str:
    if isinstance(value, Interval) and value.value is not None and value.low is not None:
        text = f"{_number(value.value, percent)} {{\\scriptsize [{_number(value.low, percent)}, {_number(value.high, percent)}]}}".replace("-", "$-$")
        return text + latex_escape(marks(value))
    return latex_escape(cell_text(value, percent))


def latex_table(table: Table) -> str:
    """A booktabs table with its caption; intervals in small type under each figure's value."""
    header = _header(table)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small", f"\\caption{{{latex_escape(table.title)}}}",
             f"\\label{{tab:{table.name}}}", r"\resizebox{\linewidth}{!}{%",
             f"\\begin{{tabular}}{{{'l' * len(table.index)}{'r' * len(table.columns)}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in header) + r" \\", r"\midrule"]
    lines += [" & ".join(_latex_cell(row.get(c), _percent(table, c)) for c in header) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if table.note:
        lines.append(f"\\par\\smallskip\\footnotesize {latex_escape(table.note)}")
    lines.append(r"\end{table}")
    return "\n".join(lines)


def latex_document(title: str, intro: str, tables: Sequence[Table], chart_files: dict[str, str]) -> str:
    parts = [r"\documentclass{article}", r"\usepackage[margin=2cm]{geometry}", r"\usepackage{booktabs}", r"\usepackage{graphicx}",
             r"\begin{document}", f"\\section*{{{latex_escape(title)}}}", latex_escape(intro), ""]
    for t in tables:
        parts += [latex_table(t), ""]
        if t.name in chart_files:
            parts += [r"\begin{figure}[ht]", r"\centering", f"\\includegraphics[width=0.8\\linewidth]{{{chart_files[t.name]}}}",
                      f"\\caption{{{latex_escape(t.title)} with 95\\% intervals}}", r"\end{figure}", ""]
    parts.append(r"\end{document}")
    return "\n".join(parts) + "\n"


# All formats ------------------------------------------------------------------------------------

def write_outputs(out: Path, title: str, intro: str, tables: Sequence[Table], formats: Sequence[str]) -> list[Path]:
    """The requested formats in `out`; returns the files written."""
    written: list[Path] = []
    charts = {t.name: png for t in tables if (png := chart_png(t)) is not None}
    chart_files: dict[str, str] = {}
    if {"md", "latex"} & set(formats) and charts:
        (out / FIGURES).mkdir(parents=True, exist_ok=True)
        for t in tables:
            if t.name in charts:
                chart_files[t.name] = f"{FIGURES}/{t.name}.png"
                write_bytes(out / chart_files[t.name], charts[t.name])
                written.append(out / chart_files[t.name])
    report = build_report(title, intro, tables, charts)
    if "html" in formats:
        written.append(write_text(out / "report.html", report.to_html()))
    if "md" in formats:
        written.append(write_text(out / "report.md", report.to_markdown([chart_files[t.name] for t in tables if t.name in charts])))
    if "csv" in formats:
        (out / "tables").mkdir(parents=True, exist_ok=True)
        written += [write_csv(t, out / "tables" / f"{t.name}.csv") for t in tables]
    if "latex" in formats:
        written.append(write_text(out / "report.tex", latex_document(title, intro, tables, chart_files)))
    return written
