"""The shared Report's pieces: intervals in cells, empty columns left out, folded sections, pictures with marked words."""

from __future__ import annotations

from PIL import Image

from annotaudit.core.report import Card, Report


def _cells(html: str) -> list[str]:
    return [c.split(">", 1)[1] for c in html.split("<td ")[1:] for c in [c.split("</td>")[0]]]


def test_interval_cells_integers_and_empty_columns(tmp_path):
    rows = [{"arm": "human", "n": 180, "AUROC": {"value": 0.6625, "low": 0.4, "high": 0.91}, "note": None},
            {"arm": "text only", "n": 36, "AUROC": {"value": 0.45, "low": None, "high": None}, "note": None}]
    md, page = Report("t").table(rows, drop_empty=True).write(tmp_path)
    html = page.read_text()
    assert _cells(html) == ["human", "180", "0.662 [0.400, 0.910]", "text only", "36", "0.450"]
    assert "<th>note</th>" not in html and "| arm | n | AUROC |" in md.read_text()
    assert "data-v='0.6625'" in html  # sorts by the figure, not by its text
    kept = Report("t").table(rows).to_markdown([])
    assert "| note |" in kept  # columns stay unless asked


def test_folded_section_and_marked_words(tmp_path):
    r = Report("t")
    r.gallery([Card(Image.new("RGB", (8, 8), "red"), [[("before: ", "strong"), "a ", ("kite", "wrong"), " and a cup"], "plain line"])], caption="examples")
    with r.collapsed("All figures"):
        r.table([{"key": "a", "value": 1.5}])
    md, page = r.write(tmp_path)
    html, text = page.read_text(), md.read_text()
    assert "<span class='wrong'>kite</span>" in html and "<strong>before:</strong> " not in html and "<strong>before: </strong>" in html
    assert "**~~kite~~**" in text and "**before:** a" in text
    assert html.index("<details><summary>All figures</summary>") < html.index("<td data-v='1.5'>") < html.index("</details>")
    assert text.count("<details>") == 1 and "</details>" in text
    assert html.count("data:image/png;base64,") == 1 and (tmp_path / "report_files" / "figure_1.png").is_file()


def test_bar_chart_draws_intervals_and_a_reference_line(tmp_path):
    r = Report("t").bar_chart({"human": {"AUROC": {"value": 0.66, "low": 0.4, "high": 0.91}}, "llm": {"AUROC": {"value": None, "low": None, "high": None}}},
                              "AUROC", reference=(0.5, "chance"))
    _, page = r.write(tmp_path)
    assert page.read_text().count("data:image/png;base64,") == 1
