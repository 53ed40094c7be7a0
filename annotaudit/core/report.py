"""One report renderer for every command: Markdown plus a self-contained HTML page.

The HTML embeds its charts and images as base64 PNGs and sorts tables with a few lines of inline
script, so it opens from disk in any browser with no server and no network.

A table cell may be an interval, a mapping with value, low and high, printed as "0.947 [0.923, 0.969]".
A bar chart's value may be such an interval too, drawn with an error bar.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from .io import write_bytes, write_text  # noqa: E402

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#eee;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
figure{margin:1em 0}figcaption{color:#555;font-size:13px}img{max-width:100%}
p.note{color:#555}
.gallery{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}
.card{width:250px;margin:0;padding:6px;border:1px solid #ddd;border-radius:4px}
.card img{width:100%;image-rendering:pixelated}.card figcaption{color:#222;font-size:13px;line-height:1.4}
.wrong{color:#c62828;font-weight:600}details{margin:1.5em 0}summary{cursor:pointer;font-weight:600}
"""

# mark name -> (HTML open, HTML close, Markdown open, Markdown close)
MARKS = {
    "wrong": ("<span class='wrong'>", "</span>", "**~~", "~~**"),
    "strong": ("<strong>", "</strong>", "**", "**"),
}

Piece = str | tuple[str, str]  # plain text, or (text, mark) with mark one of MARKS
Line = str | Sequence[Piece]


@dataclass
class Card:
    """A picture with a few lines under it; a line is plain text or pieces, some of them marked."""

    image: Image.Image | str | Path
    lines: Sequence[Line]

_SORT_JS = """
document.querySelectorAll('table.sortable th').forEach(function(th){
  th.addEventListener('click',function(){
    var table=th.closest('table'),body=table.tBodies[0],idx=Array.prototype.indexOf.call(th.parentNode.children,th);
    var asc=!th.classList.contains('asc');
    table.querySelectorAll('th').forEach(function(h){h.classList.remove('asc','desc');});
    th.classList.add(asc?'asc':'desc');
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(a,b){
      var x=a.cells[idx].getAttribute('data-v'),y=b.cells[idx].getAttribute('data-v');
      var nx=parseFloat(x),ny=parseFloat(y);
      var c=(!isNaN(nx)&&!isNaN(ny))?nx-ny:x.localeCompare(y);
      return asc?c:-c;
    });
    rows.forEach(function(r){body.appendChild(r);});
  });
});
"""


def is_interval(value: Any) -> bool:
    return isinstance(value, Mapping) and {"value", "low", "high"} <= set(value)


def _fmt(value: Any, floatfmt: str) -> str:
    if is_interval(value):
        text = _fmt(value["value"], floatfmt)
        if text and value["low"] is not None and value["high"] is not None:
            text += f" [{_fmt(value['low'], floatfmt)}, {_fmt(value['high'], floatfmt)}]"
        return text
    if isinstance(value, float):
        return "nan" if value != value else format(value, floatfmt)
    return "" if value is None else str(value)


def _sort_key(value: Any, floatfmt: str) -> Any:
    if is_interval(value):
        value = value["value"]
    return value if isinstance(value, int | float) else _fmt(value, floatfmt)


def _empty(value: Any) -> bool:
    if is_interval(value):
        value = value["value"]
    return value is None or value == "" or (isinstance(value, float) and value != value)


def _point(value: Any) -> tuple[float, float, float]:
    """A chart value as (value, below, above), the error bar's reach either side (0 without an interval)."""
    if not is_interval(value):
        v = float(value) if isinstance(value, int | float) else float("nan")
        return v, 0.0, 0.0
    v = float(value["value"]) if isinstance(value["value"], int | float) else float("nan")
    if value["low"] is None or value["high"] is None or v != v:
        return v, 0.0, 0.0
    return v, max(0.0, v - float(value["low"])), max(0.0, float(value["high"]) - v)


def _line_html(line: Line) -> str:
    pieces = [line] if isinstance(line, str) else line
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(html.escape(piece))
        else:
            text, mark = piece
            start, end, _, _ = MARKS[mark]
            out.append(start + html.escape(text) + end)
    return "".join(out)


def _line_markdown(line: Line) -> str:
    pieces = [line] if isinstance(line, str) else line
    out = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
        else:
            text, mark = piece
            _, _, start, end = MARKS[mark]
            core = text.strip()
            lead, trail = text[: len(text) - len(text.lstrip())], text[len(text.rstrip()) :]
            out.append(lead + start + core + end + trail if core else text)
    return "".join(out)


def _png_of(image: Image.Image | str | Path) -> bytes:
    img = image if isinstance(image, Image.Image) else Image.open(image)
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="PNG")
    return buf.getvalue()


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


class Report:
    """Collects headings, text, tables, charts and images, then writes report.md and report.html."""

    def __init__(self, title: str):
        self.title = title
        self._blocks: list[tuple[str, Any]] = []
        self._images: list[bytes] = []

    def heading(self, text: str, level: int = 2) -> Report:
        self._blocks.append(("heading", (text, level)))
        return self

    def text(self, text: str) -> Report:
        self._blocks.append(("text", text))
        return self

    def table(self, rows: Sequence[Mapping[str, Any]] | Any, caption: str | None = None, floatfmt: str = ".3f", drop_empty: bool = False) -> Report:
        """Add a table from a list of dicts or a pandas DataFrame; `drop_empty` leaves out columns with no value in any row."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        rows = [dict(r) for r in rows]
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        if drop_empty:
            columns = [c for c in columns if not all(_empty(row.get(c)) for row in rows)]
        self._blocks.append(("table", (columns, rows, caption, floatfmt)))
        return self

    def gallery(self, cards: Sequence[Card], caption: str = "") -> Report:
        """Pictures side by side, each with its lines (examples a reader looks at, not figures)."""
        if not cards:
            return self
        items = []
        for card in cards:
            self._images.append(_png_of(card.image))
            items.append((len(self._images) - 1, list(card.lines)))
        self._blocks.append(("gallery", (items, caption)))
        return self

    @contextmanager
    def collapsed(self, title: str) -> Iterator[Report]:
        """Blocks added inside the `with` are folded away under `title` (a <details> element) until the reader opens them."""
        self._blocks.append(("open", title))
        try:
            yield self
        finally:
            self._blocks.append(("close", None))

    def run_status(self, metrics: Mapping[str, Any]) -> Report:
        """Items left out because their model requests failed, and what the model server cost, when there were any."""
        if metrics.get("failed"):
            self.text(f"{metrics['failed']} item(s) failed at the model server and are not counted (failures.jsonl); rerun to retry them.")
        if metrics.get("engine_usage"):
            self.heading("Model server usage (this session)").table([metrics["engine_usage"]])
        return self

    def figure(self, fig: Any, caption: str = "") -> Report:
        """Embed a matplotlib figure (closed after rendering)."""
        self._images.append(_png(fig))
        self._blocks.append(("image", (len(self._images) - 1, caption)))
        return self

    def image(self, image: Image.Image | str | Path, caption: str = "") -> Report:
        self._images.append(_png_of(image))
        self._blocks.append(("image", (len(self._images) - 1, caption)))
        return self

    def bar_chart(self, data: Mapping[str, Mapping[str, Any]], title: str, ylabel: str = "", ylim: tuple[float, float] | None = (0, 1),
                  reference: tuple[float, str] | None = None) -> Report:
        """Grouped bars: data[group][series] = value, e.g. data[model][metric]; an interval value gets an error bar.

        `reference` = (y, label) draws a dashed line, e.g. (0.5, "chance")."""
        groups = list(data)
        series: list[str] = []
        for g in groups:
            series += [s for s in data[g] if s not in series]
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) * max(1, len(series)) / 2 + 2), 3.6))
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs = [j + i * width for j in range(len(groups))]
            points = [_point(data[g].get(s)) for g in groups]
            errors = [[p[1] for p in points], [p[2] for p in points]]
            has_bars = any(e > 0 for side in errors for e in side)
            ax.bar(xs, [p[0] for p in points], width=width, label=s, yerr=errors if has_bars else None, capsize=3 if has_bars else 0)
        if reference is not None:
            ax.axhline(reference[0], color="#555", linestyle="--", linewidth=1, label=reference[1])
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))])
        ax.set_xticklabels(groups, rotation=20, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        if len(series) > 1 or reference is not None:
            ax.legend(fontsize=8)
        return self.figure(fig, title)

    # rendering ---------------------------------------------------------------------------

    def to_markdown(self, image_names: Sequence[str]) -> str:
        out = [f"# {self.title}", ""]
        for kind, payload in self._blocks:
            if kind == "heading":
                text, level = payload
                out += ["#" * level + " " + text, ""]
            elif kind == "text":
                out += [payload, ""]
            elif kind == "table":
                columns, rows, caption, floatfmt = payload
                if caption:
                    out += [f"*{caption}*", ""]
                out.append("| " + " | ".join(columns) + " |")
                out.append("|" + "|".join("---" for _ in columns) + "|")
                for row in rows:
                    out.append("| " + " | ".join(_fmt(row.get(c), floatfmt).replace("|", "\\|") for c in columns) + " |")
                out.append("")
            elif kind == "image":
                index, caption = payload
                out += [f"![{caption}]({image_names[index]})", ""]
            elif kind == "gallery":
                items, caption = payload
                if caption:
                    out += [f"*{caption}*", ""]
                for index, lines in items:
                    out += [f"![]({image_names[index]})", "", "  \n".join(_line_markdown(line) for line in lines), ""]
            elif kind == "open":
                out += [f"<details><summary>{html.escape(payload)}</summary>", ""]
            elif kind == "close":
                out += ["</details>", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        parts = [
            "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{html.escape(self.title)}</h1>",
        ]
        for kind, payload in self._blocks:
            if kind == "heading":
                text, level = payload
                parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "text":
                for para in str(payload).split("\n\n"):
                    parts.append(f"<p>{html.escape(para)}</p>")
            elif kind == "table":
                columns, rows, caption, floatfmt = payload
                parts.append("<table class='sortable'>")
                if caption:
                    parts.append(f"<caption>{html.escape(caption)}</caption>")
                parts.append("<thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns) + "</tr></thead><tbody>")
                for row in rows:
                    cells = []
                    for c in columns:
                        v = row.get(c)
                        key = _sort_key(v, floatfmt)
                        cells.append(f"<td data-v='{html.escape(str(key), quote=True)}'>{html.escape(_fmt(v, floatfmt))}</td>")
                    parts.append("<tr>" + "".join(cells) + "</tr>")
                parts.append("</tbody></table>")
            elif kind == "image":
                index, caption = payload
                data = base64.b64encode(self._images[index]).decode("ascii")
                parts.append(
                    f"<figure><img alt='{html.escape(caption, quote=True)}' src='data:image/png;base64,{data}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>"
                )
            elif kind == "gallery":
                parts.append(self._gallery_html(*payload))
            elif kind == "open":
                parts.append(f"<details><summary>{html.escape(payload)}</summary>")
            elif kind == "close":
                parts.append("</details>")
        parts.append(f"<script>{_SORT_JS}</script></body></html>")
        return "\n".join(parts)

    def _gallery_html(self, items: list[tuple[int, list[Line]]], caption: str) -> str:
        cards = []
        for index, lines in items:
            data = base64.b64encode(self._images[index]).decode("ascii")
            text = "".join(f"<div>{_line_html(line)}</div>" for line in lines)
            cards.append(f"<figure class='card'><img alt='example' src='data:image/png;base64,{data}'><figcaption>{text}</figcaption></figure>")
        note = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
        return note + "<div class='gallery'>" + "".join(cards) + "</div>"

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write report.md (images beside it in report_files/) and the self-contained report.html."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        names = []
        if self._images:
            (out / "report_files").mkdir(exist_ok=True)
        for i, png in enumerate(self._images):
            name = f"report_files/figure_{i + 1}.png"
            write_bytes(out / name, png)
            names.append(name)
        md = out / "report.md"
        write_text(md, self.to_markdown(names))
        page = out / "report.html"
        write_text(page, self.to_html())
        return md, page
