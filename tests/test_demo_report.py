"""The demo's page, rebuilt from a demo folder alone: what a reader checks first, and that it renders in Chromium.

The slow tests read the one quick demo of the session (the `quick_demo` fixture); the others build a few files of a
demo folder by hand, to show the page from a partial or older folder.
"""

from __future__ import annotations

import html as html_lib
import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

from annotaudit.demo.report import demo_report, mark_caption
from annotaudit.testing.browser import console_errors, screenshot

INTERVAL = r"-?\d\.\d{3} \[-?\d\.\d{3}, -?\d\.\d{3}\]"
COUNT_COLUMNS = ("questions", "captions", "object mentions", "items", "trained on (items)")


def _tables(html: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(caption, headers, rows of cell texts) of every table on the page."""
    found = []
    for table in re.findall(r"<table class='sortable'>(.*?)</table>", html, re.S):
        caption = re.search(r"<caption>(.*?)</caption>", table)
        headers = [html_lib.unescape(h) for h in re.findall(r"<th>(.*?)</th>", table)]
        rows = [[html_lib.unescape(c) for c in re.findall(r"<td [^>]*>(.*?)</td>", row)] for row in re.findall(r"<tr>(.*?)</tr>", table)]
        found.append((html_lib.unescape(caption.group(1)) if caption else "", headers, [r for r in rows if r]))
    return found


def _section(html: str, start: str) -> str:
    """The page from the heading that starts with `start` to the next h2."""
    begin = html.index(f"<h2>{start}")
    end = html.find("<h2>", begin + 4)
    return html[begin : end if end > 0 else len(html)]


def _headline(html: str) -> str:
    return html_lib.unescape(re.search(r"<h2>Headline</h2>\s*<p>(.*?)</p>", html, re.S).group(1))


# a page from a few files --------------------------------------------------------------------------

def _caption_record(image_id: int, caption: str, mentions: list[list[str]], truth: list[str]) -> dict:
    hallucinated = [m for m in mentions if m[1] not in truth]
    return {"id": f"en:{image_id}", "input": {"prompt": "Generate a short caption of the image.", "image": f"{image_id:06d}.png"},
            "target": truth, "prediction": [m[1] for m in mentions], "raw": caption,
            "scores": {"mentions": mentions, "hallucinated": hallucinated, "recalled": sorted({m[1] for m in mentions} & set(truth))},
            "meta": {"prompt_id": "en", "image_id": image_id}}


def _partial_demo(root: Path) -> Path:
    """Captions of one picture before and after training, and summary.json's CHAIR figures: nothing else."""
    (root / "world" / "images").mkdir(parents=True)
    Image.new("RGB", (32, 32), "white").save(root / "world" / "images" / "000007.png")
    before = _caption_record(7, "A picture of a Green Traffic  Light and a cup.", [["traffic light", "traffic light"], ["cup", "cup"]], ["cup", "kite"])
    after = _caption_record(7, "A picture of a kite and a cup.", [["kite", "kite"], ["cup", "cup"]], ["cup", "kite"])
    for when, rec in (("before", before), ("after", after)):
        folder = root / f"audit_{when}" / "chair_en"
        folder.mkdir(parents=True)
        (folder / "records.jsonl").write_text(json.dumps(rec) + "\n")
    summary = {"chair.before.en.chair_i": 0.5, "chair.before.en.chair_s": 1.0, "chair.after.en.chair_i": 0.0, "chair.after.en.chair_s": 0.0,
               "seconds": {"world": 1.0, "build": 2.5}}
    (root / "summary.json").write_text(json.dumps(summary))
    return root


def test_a_folder_with_only_captions_still_gives_a_page_with_red_hallucinations(tmp_path):
    _, page = demo_report(_partial_demo(tmp_path / "demo")).write(tmp_path / "page")
    html = page.read_text()
    chair = _section(html, "2. CHAIR")
    assert "<span class='wrong'>Traffic  Light</span>" in chair and "<span class='wrong'>kite</span>" not in chair
    assert chair.count("class='card'") == 1 and "<h2>1. POPE" not in html and "MMBT" not in html
    assert html.index("<h2>Headline") < html.index("<h2>2. CHAIR") and "CHAIR_i" in _headline(html)
    times = next(rows for caption, _, rows in _tables(html) if caption == "Time per step")
    assert times[-1] == ["total", "3.5"]


def test_an_empty_folder_says_so(tmp_path):
    _, page = demo_report(tmp_path).write(tmp_path / "page")
    assert "holds no figures yet" in page.read_text()


def test_mark_caption_finds_each_mention_in_order():
    pieces = mark_caption("A kite, a Kite and a stop\nsign.", [["kite", "kite"], ["kite", "kite"], ["stop sign", "stop sign"]], [["stop sign", "stop sign"]])
    assert pieces == ["A ", "kite", ", a ", "Kite", " and a ", ("stop\nsign", "wrong"), "."]
    assert "".join(p if isinstance(p, str) else p[0] for p in pieces) == "A kite, a Kite and a stop\nsign."


# the page of a real quick demo ------------------------------------------------------------------

@pytest.fixture(scope="module")
def page(quick_demo, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo-page")
    demo_report(quick_demo).write(out)
    return out / "report.html"


@pytest.mark.slow
def test_headline_comes_first_with_intervals(page):
    html = page.read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", html)
    assert headings[0] == "Headline" and [h[:2] for h in headings[1:5]] == ["1.", "2.", "3.", "4."]
    assert html.index("<h2>Headline") < html.index("<h2>1. POPE")
    headline = _headline(html)
    assert 3 <= len(re.findall(r"[.!?](?:\s|$)", headline.replace("e.g.", ""))) <= 6
    assert len(re.findall(INTERVAL, headline)) >= 4 and "POPE F1" in headline and "CHAIR_i" in headline and "AUROC" in headline


@pytest.mark.slow
def test_mmbt_has_one_table_with_a_row_per_arm_and_one_chart(page):
    html = page.read_text()
    mmbt = _section(html, "4. MMBT")
    tables = [t for t in _tables(mmbt)]
    assert len(tables) == 1 and mmbt.count("data:image/png;base64,") == 1
    _, headers, rows = tables[0]
    arms = {row[0]: dict(zip(headers, row)) for row in rows}
    assert set(arms) == {"human labels", "LVLM labels", "SmolLM2 labels", "text only (human labels)"}
    for arm in arms.values():
        assert re.fullmatch(INTERVAL, arm["AUROC"]), arm
    for name in ("LVLM labels", "SmolLM2 labels"):
        assert re.fullmatch(INTERVAL, arms[name]["label agreement with human"])
    assert "Order by AUROC:" in mmbt


@pytest.mark.slow
def test_numbers_read_cleanly_and_no_column_is_empty(page):
    for caption, headers, rows in _tables(page.read_text()):
        for k, header in enumerate(headers):
            column = [row[k] for row in rows]
            assert any(cell.strip() for cell in column), (caption, header)
            if header in COUNT_COLUMNS:
                assert all(re.fullmatch(r"\d+", cell) for cell in column if cell), (caption, header, column)
        assert not any(re.fullmatch(r"\d{2,}\.000", cell) for row in rows for cell in row), caption


@pytest.mark.slow
def test_every_figure_sits_folded_away_at_the_end(page, quick_demo):
    html = page.read_text()
    summary = json.loads((quick_demo / "summary.json").read_text())
    folded = html[html.index("<details>") : html.index("</details>")]
    body = html[: html.index("<details>")]
    for key, value in summary.items():
        for name in [f"{key}.{k}" for k in value] if isinstance(value, dict) else [key]:
            assert f">{name}<" in folded and f">{name}<" not in body, name
    assert html.index("</details>") > html.rindex("<h2>")


@pytest.mark.slow
def test_examples_are_pictures(page, quick_demo):
    html = page.read_text()
    annotation, crowd = _section(html, "3. Annotation").split("<h3>Against a crowd")
    galleries = {name: _section(html, name).count("class='card'") for name in ("1. POPE", "2. CHAIR")}
    galleries.update({"3. Annotation": annotation.count("class='card'"), "crowd labels to re-check": crowd.count("class='card'")})
    assert all(3 <= n <= 4 for n in galleries.values()), galleries
    assert html.count("data:image/png;base64,") >= sum(galleries.values()) + 4  # the cards and the POPE, annotation, prevalence and MMBT charts
    hallucinated = [m[0] for when in ("before", "after") for lang in ("en", "it")
                    for line in (quick_demo / f"audit_{when}" / f"chair_{lang}" / "records.jsonl").read_text().splitlines()
                    for m in json.loads(line)["scores"]["hallucinated"]]
    chair = _section(html, "2. CHAIR")
    if hallucinated:
        marked = re.findall(r"<span class='wrong'>(.*?)</span>", chair)
        assert marked and all(re.sub(r"\s+", " ", w.lower()) in hallucinated for w in marked)
    else:
        assert "<span class='wrong'>" not in chair
    assert "<span class='wrong'>" in _section(html, "1. POPE")  # the wrong answer


@pytest.mark.slow
def test_an_older_demo_folder_gets_its_intervals_from_the_records(quick_demo, tmp_path):
    """Demo folders written before compare/ and the text-only arm existed: the MMBT intervals come from classify/ itself."""
    old = tmp_path / "old"
    shutil.copytree(quick_demo, old, ignore=shutil.ignore_patterns("models", "model", "checkpoint", "compare", "classify_text_only"))
    html = demo_report(old).to_html()
    _, headers, rows = _tables(_section(html, "4. MMBT"))[0]
    assert {row[0] for row in rows} == {"human labels", "LVLM labels", "SmolLM2 labels"}
    assert all(re.fullmatch(INTERVAL, dict(zip(headers, row))["AUROC"]) for row in rows)


@pytest.mark.slow
def test_the_page_renders_in_chromium_without_console_errors(page, chromium, tmp_path):
    log = screenshot(page, tmp_path / "shot.png", tmp_path / "profile", height=3000)
    assert console_errors(log) == [], console_errors(log)
    assert Image.open(tmp_path / "shot.png").size == (1200, 3000)


@pytest.mark.slow
def test_the_annotation_section_gives_the_verdict_against_the_crowd(page, quick_demo):
    html = page.read_text()
    crowd = _section(html, "3. Annotation").split("<h3>Against a crowd")[1]
    summary = json.loads((quick_demo / "summary.json").read_text())
    for who, name in (("lvlm", "The LVLM"), ("smollm2", "SmolLM2")):
        word = "passes" if summary[f"verdict.{who}.passed"] else "fails"
        assert re.search(rf"{name} {word} the alt-test: ω = {summary[f'verdict.{who}.winning_rate']:.2f} at ε = 0.1 \(ρ = {INTERVAL}, 120 items\)",
                         html_lib.unescape(crowd)), name
    tables = {caption: (headers, rows) for caption, headers, rows in _tables(crowd)}
    headers, rows = next(v for k, v in tables.items() if k.startswith("The alt-test against the crowd"))
    alphas = {row[0]: dict(zip(headers, row)) for row in rows}
    assert set(alphas) == {"the crowd alone (the ceiling)", "the crowd and LVLM", "the crowd and SmolLM2"}
    assert all(re.fullmatch(INTERVAL, row["α (nominal)"]) for row in alphas.values())
    assert abs(float(alphas["the crowd alone (the ceiling)"]["α (nominal)"].split()[0]) - summary["alpha.humans"]) < 6e-4
    headers, rows = tables["The share of true sentences among the training items"]
    shares = {row[0]: dict(zip(headers, row)) for row in rows}
    assert set(shares) == {"the crowd alone", "PPI++ with LVLM", "LVLM alone", "PPI++ with SmolLM2", "SmolLM2 alone"}
    assert abs(float(shares["PPI++ with LVLM"]["share of true sentences"].split()[0]) - summary["prevalence.true.lvlm.ppi"]) < 6e-4
    assert all(re.fullmatch(INTERVAL, row["share of true sentences"]) for row in shares.values())
    assert crowd.count("data:image/png;base64,") >= 1 + crowd.count("class='card'")  # the prevalence chart and the cards
    first = json.loads((quick_demo / "verdict" / "label_issues.jsonl").read_text().splitlines()[0])
    memes = {str(json.loads(line)["id"]): json.loads(line) for line in (quick_demo / "world" / "memes" / "train.jsonl").read_text().splitlines()}
    card = crowd[crowd.index("class='card'") :]
    assert html_lib.escape(memes[first["item"]]["text"], quote=False) in card[:2000] and "crowd: crowd1" in card[:2000]
