"""One report renderer for every command: Markdown plus a self-contained HTML page.

The HTML embeds its charts and images as base64 PNGs and sorts tables with a few lines of inline
script, so it opens from disk in any browser with no server and no network.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image  # noqa: E402

from .io import write_text  # noqa: E402

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #444}h2{margin-top:1.6em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}th{background:#eee;cursor:pointer;user-select:none}
td:first-child,th:first-child{text-align:left}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
figure{margin:1em 0}figcaption{color:#555;font-size:13px}img{max-width:100%}
p.note{color:#555}
"""

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


def _fmt(value: Any, floatfmt: str) -> str:
    if isinstance(value, float):
        return "nan" if value != value else format(value, floatfmt)
    return "" if value is None else str(value)


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

    def table(self, rows: Sequence[Mapping[str, Any]] | Any, caption: str | None = None, floatfmt: str = ".3f") -> Report:
        """Add a table from a list of dicts or a pandas DataFrame."""
        if hasattr(rows, "to_dict"):
            rows = rows.to_dict(orient="records")
        rows = [dict(r) for r in rows]
        columns: list[str] = []
        for row in rows:
            columns += [c for c in row if c not in columns]
        self._blocks.append(("table", (columns, rows, caption, floatfmt)))
        return self

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
        img = image if isinstance(image, Image.Image) else Image.open(image)
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="PNG")
        self._images.append(buf.getvalue())
        self._blocks.append(("image", (len(self._images) - 1, caption)))
        return self

    def bar_chart(self, data: Mapping[str, Mapping[str, float]], title: str, ylabel: str = "", ylim: tuple[float, float] | None = (0, 1)) -> Report:
        """Grouped bars: data[group][series] = value, e.g. data[model][metric]."""
        groups = list(data)
        series: list[str] = []
        for g in groups:
            series += [s for s in data[g] if s not in series]
        fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) * max(1, len(series)) / 2 + 2), 3.6))
        width = 0.8 / max(1, len(series))
        for i, s in enumerate(series):
            xs = [j + i * width for j in range(len(groups))]
            ax.bar(xs, [float(data[g].get(s, float("nan"))) for g in groups], width=width, label=s)
        ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(groups))])
        ax.set_xticklabels(groups, rotation=20, ha="right")
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        if ylim:
            ax.set_ylim(*ylim)
        if len(series) > 1:
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
                        key = v if isinstance(v, int | float) else _fmt(v, floatfmt)
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
        parts.append(f"<script>{_SORT_JS}</script></body></html>")
        return "\n".join(parts)

    def write(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write report.md (images beside it in report_files/) and the self-contained report.html."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        names = []
        if self._images:
            (out / "report_files").mkdir(exist_ok=True)
        for i, png in enumerate(self._images):
            name = f"report_files/figure_{i + 1}.png"
            (out / name).write_bytes(png)
            names.append(name)
        md = out / "report.md"
        write_text(md, self.to_markdown(names))
        page = out / "report.html"
        write_text(page, self.to_html())
        return md, page
