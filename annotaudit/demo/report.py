"""The demo's page, read back from its output folder alone, so that it can be written again at any time.

The headline comes first; then one section per claim (POPE, CHAIR, annotation, MMBT), each with its
figures, a 95% bootstrap interval wherever the records allow one, and a few examples as pictures.
A part whose folder is missing is left out, so older demo folders render too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import iter_jsonl, read_json
from annotaudit.core.report import Card, Line, Piece, Report
from annotaudit.core.vocab import LANGUAGES as LANGS
from annotaudit.core.vocab import SETTINGS

LANGUAGE_NAMES = {"en": "English", "it": "Italian"}
WHEN = ("before", "after")
CHANCE = 0.5
EXAMPLES = 4
ANNOTATOR_NAMES = {"lvlm": "LVLM", "smollm2": "SmolLM2"}
ANNOTATOR_SUBJECTS = {"lvlm": "the LVLM"}  # the name as the subject of a sentence
LABEL_WORDS = {"hateful": "false", "not_hateful": "true"}
LABEL_OF_INT = {1: "hateful", 0: "not_hateful"}  # the Hateful Memes layout: 1 flags a false sentence here
STEP_NAMES = {"world": "generate the world", "build": "build the LVLM (pretrain tower and LLM)", "audit_before": "audit before training",
              "train": "train the LVLM (both stages)", "audit_after": "audit after training", "annotate": "annotate (LVLM, SmolLM2)",
              "mmbt": "MMBT and the comparison", "verdict": "verdict against the crowd (alt-test, alpha, PPI, label issues)"}
AUDIT_METRICS = {"pope": ("f1", "accuracy", "yes_ratio"), "chair": ("chair_i", "chair_s", "recall")}
CHANGE_METRIC = {"pope": "f1", "chair": "chair_i"}
CHART_RANGE = (0.0, 1.08)  # room above 1 for an error bar's cap

Cell = dict[str, Any]  # {"value", "low", "high", ...}: a figure and its interval (low and high None without one)


# reading ---------------------------------------------------------------------------------------


def _json(path: Path) -> Any:
    """A JSON file's content, or None when it is missing or unreadable (the page then leaves that part out)."""
    try:
        return read_json(path) if path.is_file() else None
    except InputError:
        return None


def _records(folder: Path) -> list[dict[str, Any]]:
    """A run folder's records; none when the folder is missing; bad lines skipped."""
    path = folder / "records.jsonl"
    if not path.is_file():
        return []
    return [rec for _, rec in iter_jsonl(path, on_error=lambda _err: None)]


def _cell(value: Any, low: Any = None, high: Any = None) -> Cell:
    return {"value": value, "low": low, "high": high}


def _has_value(cell: Cell | None) -> bool:
    return cell is not None and isinstance(cell.get("value"), int | float)


def _has_interval(cell: Cell | None) -> bool:
    return _has_value(cell) and cell["low"] is not None and cell["high"] is not None


def num(value: Any) -> str:
    """A figure as the page prints it: three decimals, or n/a."""
    return f"{value:.3f}" if isinstance(value, int | float) and value == value else "n/a"


def with_interval(cell: Cell | None) -> str:
    """'0.947 [0.923, 0.969]', or the figure alone where it has no interval."""
    if not _has_value(cell):
        return "n/a"
    text = num(cell["value"])
    return f"{text} [{num(cell['low'])}, {num(cell['high'])}]" if _has_interval(cell) else text


def at_chance(cell: Cell | None, chance: float = CHANCE) -> bool:
    return _has_interval(cell) and cell["low"] <= chance <= cell["high"]


def _signed(cell: Cell) -> str:
    text = f"{cell['value']:+.3f}"
    return f"{text} [{num(cell['low'])}, {num(cell['high'])}]" if _has_interval(cell) else text


def _join(parts: Sequence[str]) -> str:
    parts = list(parts)
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _upper_first(text: str) -> str:
    return text[:1].upper() + text[1:]


def label_word(label: Any) -> str:
    return LABEL_WORDS.get(label, "no answer")


class DemoFolder:
    """A demo output folder: its summary, configuration and the figures computed once from its records."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        summary = _json(self.root / "summary.json")
        self.summary: dict[str, Any] = summary if isinstance(summary, dict) else {}
        manifest = _json(self.root / "run.json")
        config = manifest.get("config", {}) if isinstance(manifest, dict) else {}
        self.config: dict[str, Any] = config.get("demo", {}) if isinstance(config, dict) else {}
        self.quick = bool(config.get("quick")) if isinstance(config, dict) else False
        self.audits = audit_figures(self.root)
        self.tables = comparison(self.root)
        self.annotators = annotator_models(self.root)

    def audit(self, kind: str, when: str, lang: str, metric: str, setting: str = "") -> Cell | None:
        """A POPE or CHAIR figure with its interval, or summary.json's figure alone when the records gave none."""
        found = self.audits.get((kind, when, lang, setting, metric))
        if found is not None:
            return found
        key = f"{kind}.{when}.{lang}." + (f"{setting}." if setting else "") + metric
        return _cell(self.summary[key]) if key in self.summary else None

    def change(self, kind: str, lang: str, setting: str = "") -> Cell | None:
        """After minus before, paired over the same questions or pictures."""
        return self.audits.get((kind, "change", lang, setting, CHANGE_METRIC[kind]))

    def audit_metrics(self, when: str, name: str) -> dict[str, Any]:
        found = _json(self.root / f"audit_{when}" / name / "metrics.json")
        return found if isinstance(found, dict) else {}


def audit_figures(root: Path) -> dict[tuple[str, str, str, str, str], Cell]:
    """POPE and CHAIR figures before and after training with bootstrap intervals (images for POPE, captions for CHAIR),
    and the paired change after - before, keyed (kind, when or 'change', language, setting, metric)."""
    from annotaudit.compare.bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED
    from annotaudit.compare.runs import read_run
    from annotaudit.compare.tables import Figures

    figures = Figures(DEFAULT_RESAMPLES, DEFAULT_SEED)
    entries = {}
    for when in WHEN:
        for name in ("pope_en", "pope_it", "chair_en", "chair_it"):
            folder = root / f"audit_{when}" / name
            if (folder / "records.jsonl").is_file():
                try:
                    entries.update({(when, e.kind, e.language, e.setting): e for e in read_run(folder)})
                except InputError:
                    continue
    out: dict[tuple[str, str, str, str, str], Cell] = {}
    for (when, kind, lang, setting), entry in entries.items():
        before = entries.get(("before", kind, lang, setting))
        try:
            for metric in AUDIT_METRICS.get(kind, ()):
                found = figures.interval(entry, metric)
                if found is not None:
                    out[(kind, when, lang, setting, metric)] = found.as_dict()
            if when == "after" and before is not None:
                diff = figures.difference(entry, before, CHANGE_METRIC[kind])
                if diff is not None and diff.value is not None:
                    out[(kind, "change", lang, setting, CHANGE_METRIC[kind])] = diff.as_dict()
        except InputError:
            continue
    return out


def comparison(root: Path) -> dict[str, dict[str, Any]]:
    """compare/comparison.json's tables by name; for a demo folder without compare/, the same tables computed from its
    annotate and classify folders."""
    saved = _json(root / "compare" / "comparison.json")
    if isinstance(saved, dict):
        return {t["name"]: t for t in saved.get("tables", []) if isinstance(t, dict) and "name" in t}
    from annotaudit.compare import comparison_tables

    text_only = root / "classify_text_only"
    runs = [p for p in [*sorted(root.glob("annotate_*")), root / "classify", text_only] if (p / "run.json").is_file()]
    if not any(p.name.startswith("classify") for p in runs):
        return {}
    labels = [f"human, text only={text_only}"] if text_only in runs else []
    try:
        return {t["name"]: t for t in comparison_tables(runs, labels)}
    except InputError:
        return {}


def annotator_models(root: Path) -> dict[str, str]:
    """Each annotate_<who> folder's model, by its short name as compare names it: {'lvlm': 'lvlm_stage2', ...}."""
    from annotaudit.compare.runs import model_name

    found = {}
    for folder in sorted(root.glob("annotate_*")):
        manifest = _json(folder / "run.json")
        config = manifest.get("config", {}) if isinstance(manifest, dict) else {}
        if isinstance(config, dict) and config.get("model"):
            found[folder.name.removeprefix("annotate_")] = model_name(config["model"])
    return found


def annotator_name(who: str, demo: DemoFolder) -> str:
    return ANNOTATOR_NAMES.get(who, demo.annotators.get(who, who))


def annotator_subject(who: str, demo: DemoFolder) -> str:
    return ANNOTATOR_SUBJECTS.get(who, annotator_name(who, demo))


# MMBT arms ---------------------------------------------------------------------------------------


@dataclass
class Arm:
    """One MMBT model: the labels it learned from, its test figures, and the agreement of those labels with the human ones."""

    key: str  # human, text_only, or the annotator's short name (lvlm, smollm2)
    name: str
    compare_label: str  # the arm's name in compare's tables
    auroc: Cell | None
    accuracy: Cell | None
    label_accuracy: Cell | None = None
    label_answer_rate: Cell | None = None
    n_train: int | None = None


def arm_key(row: dict[str, Any], annotators: dict[str, str]) -> str:
    """An MMBT row of compare's table as the summary names its arm: human, text_only, or the annotator's short name.

    `annotators` maps each short name to its model as compare names it ({'lvlm': 'lvlm_stage2', ...})."""
    labels = str(row.get("labels", ""))
    if labels == "human":
        return "human"
    if labels.startswith("human, text only"):
        return "text_only"
    folder = Path(str(row.get("labels from", ""))).name
    if folder.startswith("annotate_"):
        return folder.removeprefix("annotate_")
    return next((who for who, model in annotators.items() if model == labels), labels)


def _arm_name(key: str, demo: DemoFolder) -> str:
    if key == "human":
        return "human labels"
    if key == "text_only":
        return "text only (human labels)"
    return f"{annotator_name(key, demo)} labels"


def _n_train(demo: DemoFolder) -> dict[str, int]:
    """Items each arm was trained on (an annotator's unanswered items are left out of its training set)."""
    from annotaudit.compare.runs import model_name

    found: dict[str, int] = {}
    metrics = _json(demo.root / "classify" / "metrics.json")
    for name, result in (metrics or {}).get("results", {}).items():
        if isinstance(result, dict) and isinstance(result.get("n_train"), int | float):
            found[name if name == "human" else model_name(name)] = int(result["n_train"])
    text_only = _json(demo.root / "classify_text_only" / "metrics.json")
    if isinstance(text_only, dict) and isinstance(text_only.get("n_train"), int | float):
        found["text_only"] = int(text_only["n_train"])
    return found


def mmbt_arms(demo: DemoFolder) -> list[Arm]:
    """The arms in the page's order: human labels, each annotator's labels, then the text-only control."""
    rows = demo.tables.get("mmbt", {}).get("rows", [])
    sizes = _n_train(demo)
    arms = []
    for row in rows:
        key = arm_key(row, demo.annotators)
        label = str(row.get("labels", key))
        arms.append(Arm(key, _arm_name(key, demo), label, row.get("AUROC"), row.get("Acc"), row.get("label accuracy"),
                        row.get("label answer rate"), sizes.get("text_only" if key == "text_only" else label)))
    if not arms:
        arms = _summary_arms(demo)
    order = {"human": 0, "text_only": 2}
    return sorted(arms, key=lambda a: order.get(a.key, 1))


def _summary_arms(demo: DemoFolder) -> list[Arm]:
    """Arms from summary.json alone (intervals only where it has .low and .high)."""
    keys = dict.fromkeys(k.split(".")[1] for k in demo.summary if k.startswith("mmbt.") and k.endswith(".auroc"))
    s = demo.summary

    def cell(key: str) -> Cell | None:
        return _cell(s[key], s.get(key + ".low"), s.get(key + ".high")) if key in s else None

    return [Arm(k, _arm_name(k, demo), k, cell(f"mmbt.{k}.auroc"), cell(f"mmbt.{k}.accuracy")) for k in keys]


def paired_difference(demo: DemoFolder, a: Arm, b: Arm, figure: str = "AUROC") -> Cell | None:
    """AUROC of arm a minus arm b over the same test items, from compare's differences table."""
    for row in demo.tables.get("differences", {}).get("rows", []):
        if row.get("kind") != "MMBT" or row.get("figure") != figure or not isinstance(row.get("difference"), dict):
            continue
        diff = row["difference"]
        if (row.get("A"), row.get("B")) == (a.compare_label, b.compare_label):
            return diff
        if (row.get("A"), row.get("B")) == (b.compare_label, a.compare_label) and _has_value(diff):
            low, high = diff.get("low"), diff.get("high")
            return _cell(-diff["value"], None if high is None else -high, None if low is None else -low)
    return None


def _gap(demo: DemoFolder, a: Arm, b: Arm) -> Cell | None:
    """a - b: the paired difference when compare computed one, else the plain difference of the two figures."""
    paired = paired_difference(demo, a, b)
    if paired is not None:
        return paired
    if _has_value(a.auroc) and _has_value(b.auroc):
        return _cell(a.auroc["value"] - b.auroc["value"])
    return None


# annotators --------------------------------------------------------------------------------------


def annotator_cells(demo: DemoFolder) -> dict[str, dict[str, Cell | None]]:
    """Per annotator: agreement with the human labels and answer rate, with intervals from compare's annotate table."""
    by_model = {model: who for who, model in demo.annotators.items()}
    found: dict[str, dict[str, Cell | None]] = {}
    for row in demo.tables.get("annotate", {}).get("rows", []):
        who = by_model.get(str(row.get("model")))
        if who is not None:
            found[who] = {"agreement": row.get("Acc"), "answer_rate": row.get("Answer rate")}
    for who in demo.annotators:
        if who not in found:
            s = demo.summary
            found[who] = {"agreement": _cell(s[f"annotate.{who}.accuracy_all"]) if f"annotate.{who}.accuracy_all" in s else None,
                          "answer_rate": _cell(s[f"annotate.{who}.answer_rate"]) if f"annotate.{who}.answer_rate" in s else None}
    return found


def meme_rows(root: Path, split: str = "train") -> dict[str, dict[str, Any]]:
    path = root / "world" / "memes" / f"{split}.jsonl"
    if not path.is_file():
        return {}
    return {str(rec.get("id")): rec for _, rec in iter_jsonl(path, on_error=lambda _err: None)}


def fact_agreement(labels: dict[str, Any], memes: dict[str, dict[str, Any]]) -> float | None:
    """Share of items whose label matches the fact (`truth`); an unanswered item counts as a miss."""
    scored = [labels[i] == LABEL_OF_INT.get(memes[i]["truth"]) for i in labels if i in memes and "truth" in memes[i]]
    return sum(scored) / len(scored) if scored else None


def annotator_labels(demo: DemoFolder) -> dict[str, dict[str, Any]]:
    """Each annotator's label per item id, and the human label under 'human'."""
    labels: dict[str, dict[str, Any]] = {"human": {}}
    for who in demo.annotators:
        records = _records(demo.root / f"annotate_{who}")
        labels[who] = {str(r.get("id")): r.get("prediction") for r in records}
        labels["human"].update({str(r.get("id")): r.get("target") for r in records})
    return labels


# examples ---------------------------------------------------------------------------------------


def mark_caption(caption: str, mentions: list[Any], hallucinated: list[Any]) -> list[Piece]:
    """The caption in pieces, each object word that names something not in the picture marked 'wrong'."""
    wrong = {m[1] for m in hallucinated if isinstance(m, list | tuple) and len(m) == 2}
    pieces: list[Piece] = []
    cursor = 0
    for mention in mentions:
        if not isinstance(mention, list | tuple) or len(mention) != 2:
            continue
        surface, category = mention
        pattern = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in str(surface).split()) + r"(?!\w)"
        found = re.compile(pattern, re.IGNORECASE).search(caption, cursor)
        if found is None:
            continue
        if found.start() > cursor:
            pieces.append(caption[cursor : found.start()])
        pieces.append((found.group(0), "wrong") if category in wrong else found.group(0))
        cursor = found.end()
    if cursor < len(caption):
        pieces.append(caption[cursor:])
    return pieces


def pope_cards(demo: DemoFolder, when: str) -> list[Card]:
    """Wrong POPE answers, hallucinations (yes to an absent object) first, alternating languages, one per picture."""
    groups = []
    for lang in LANGS:
        wrong = [r for r in _records(demo.root / f"audit_{when}" / f"pope_{lang}") if r.get("prediction") != r.get("target")]
        wrong.sort(key=lambda r: (r.get("target") != "no", _setting_rank(r), r.get("meta", {}).get("question_id", 0)))
        groups.append([(lang, r) for r in wrong])
    picked = _alternate(groups, lambda pair: pair[1].get("input", {}).get("image"),
                        lambda pair: (demo.root / "world" / "images" / str(pair[1].get("input", {}).get("image", ""))).is_file())
    return [Card(demo.root / "world" / "images" / rec["input"]["image"], _pope_lines(lang, rec, when)) for lang, rec in picked]


def _alternate(groups: list[list[Any]], key: Callable[[Any], Any], usable: Callable[[Any], bool], limit: int = EXAMPLES) -> list[Any]:
    """Up to `limit` items taken from the groups in turn, each turn the group's next usable item with a key not taken yet."""
    positions = [0] * len(groups)
    taken, keys = [], set()
    while len(taken) < limit and any(p < len(g) for p, g in zip(positions, groups)):
        for k, group in enumerate(groups):
            while positions[k] < len(group):
                item = group[positions[k]]
                positions[k] += 1
                if key(item) not in keys and usable(item):
                    keys.add(key(item))
                    taken.append(item)
                    break
            if len(taken) == limit:
                break
    return taken


def _setting_rank(rec: dict[str, Any]) -> int:
    setting = rec.get("meta", {}).get("setting")
    return SETTINGS.index(setting) if setting in SETTINGS else len(SETTINGS)


def _pope_lines(lang: str, rec: dict[str, Any], when: str) -> list[Line]:
    answer = rec.get("prediction") if rec.get("prediction") in ("yes", "no") else "no answer"
    lines: list[Line] = [[(str(rec.get("input", {}).get("prompt", "")), "strong")],
                         ["model: ", (answer, "wrong"), f" · truth: {rec.get('target')}"]]
    raw = str(rec.get("raw") or "").strip()
    if raw and raw.lower() != answer:
        lines.append(f'it said: "{raw[:60]}"')
    lines.append(f"{LANGUAGE_NAMES[lang]}, {rec.get('meta', {}).get('setting', '')} questions, {when} training")
    return lines


def chair_cards(demo: DemoFolder) -> list[Card]:
    """The same pictures captioned before and after training, in each language; pictures with hallucinations first."""
    runs = {(when, lang): {str(r.get("meta", {}).get("image_id", r.get("id"))): r for r in _records(demo.root / f"audit_{when}" / f"chair_{lang}")}
            for when in WHEN for lang in LANGS}

    def rank(image_id: str) -> tuple[int, int]:
        wrong = [any(runs[(when, lang)].get(image_id, {}).get("scores", {}).get("hallucinated") or () for lang in LANGS) for when in WHEN]
        return (0 if wrong[0] else 1 if wrong[1] else 2), int(image_id) if image_id.isdigit() else 0

    ids = sorted({i for recs in runs.values() for i in recs}, key=rank)
    cards = []
    for image_id in ids:
        recs = [runs[(when, lang)][image_id] for lang in LANGS for when in WHEN if image_id in runs[(when, lang)]]
        image = demo.root / "world" / "images" / str(recs[0].get("input", {}).get("image", ""))
        if image.is_file():
            cards.append(Card(image, _chair_lines(runs, image_id, recs[0])))
        if len(cards) == EXAMPLES:
            break
    return cards


def _chair_lines(runs: dict[tuple[str, str], dict[str, Any]], image_id: str, first: dict[str, Any]) -> list[Line]:
    lines: list[Line] = [[("in the picture: ", "strong"), ", ".join(map(str, first.get("target") or [])) or "nothing"]]
    for lang in LANGS:
        for when in WHEN:
            rec = runs[(when, lang)].get(image_id)
            if rec is not None:
                scores = rec.get("scores") or {}
                caption = str(rec.get("raw") or "").strip() or "(empty)"
                lines.append([(f"{when} ({lang}): ", "strong"), *mark_caption(caption, scores.get("mentions", []), scores.get("hallucinated", []))])
    return lines


def disagreement_cards(demo: DemoFolder, labels: dict[str, dict[str, Any]]) -> list[Card]:
    """Items where an annotator's label differs from the human one, taken in turn per annotator, by item id."""
    memes = meme_rows(demo.root)
    human = labels["human"]
    by_id = sorted(human, key=lambda i: (0, int(i)) if i.isdigit() else (1, 0))
    groups = [[i for i in by_id if labels[who].get(i) != human[i]] for who in demo.annotators]
    picked = _alternate(groups, lambda item: item, lambda item: item in memes and (demo.root / "world" / "memes" / str(memes[item].get("img", ""))).is_file())
    return [Card(demo.root / "world" / "memes" / memes[item]["img"], _disagreement_lines(demo, labels, item, memes[item])) for item in picked]


def _disagreement_lines(demo: DemoFolder, labels: dict[str, dict[str, Any]], item: str, row: dict[str, Any]) -> list[Line]:
    human = labels["human"][item]
    lines: list[Line] = [[(f'"{row.get("text", "")}"', "strong")]]
    if row.get("objects"):
        lines.append("in the picture: " + ", ".join(map(str, row["objects"])))
    lines.append(f"human label: {label_word(human)}")
    for who in demo.annotators:
        given = labels[who].get(item)
        word = label_word(given)
        lines.append([f"{annotator_name(who, demo)}: ", (word, "wrong") if given != human else word])
    if "truth" in row:
        lines.append(f"the fact: the sentence is {label_word(LABEL_OF_INT.get(row['truth']))}")
    return lines


# headline ----------------------------------------------------------------------------------------


def headline(demo: DemoFolder, arms: list[Arm]) -> list[str]:
    """Three to six sentences with the figures that matter, written from the figures."""
    sentences = [pope_sentence(demo), chair_sentence(demo), annotation_sentence(demo), *mmbt_sentences(demo, arms)]
    return [s for s in sentences if s]


def _always(demo: DemoFolder, when: str) -> str | None:
    """'yes' or 'no' when the model gave that answer to every POPE question (its yes ratio is 1 or 0 everywhere)."""
    ratios = [demo.audit("pope", when, lang, "yes_ratio", s) for lang in LANGS for s in SETTINGS]
    values = {c["value"] for c in ratios if _has_value(c)}
    return {1.0: "yes", 0.0: "no"}.get(values.pop()) if len(values) == 1 else None


def pope_sentence(demo: DemoFolder) -> str | None:
    parts, chance = [], []
    for lang in LANGS:
        after = demo.audit("pope", "after", lang, "f1", "adversarial")
        if not _has_value(after):
            continue
        before = demo.audit("pope", "before", lang, "f1", "adversarial")
        parts.append(f"{with_interval(after)} in {LANGUAGE_NAMES[lang]} (before: {num(before['value'] if before else None)})")
        if at_chance(demo.audit("pope", "after", lang, "accuracy", "adversarial")):
            chance.append(LANGUAGE_NAMES[lang])
    if not parts:
        return None
    text = f"After training, POPE F1 on the adversarial questions is {_join(parts)}"
    always = {when: _always(demo, when) for when in WHEN}
    if always["before"] and always["after"] == always["before"]:
        text += f"; before and after training alike the model answers {always['before']} to every question, which is chance"
    elif always["before"]:
        text += f"; before training the model answered {always['before']} to every question"
    if chance and not always["after"]:
        text += f"; after training it is at chance in {_join(chance)} (accuracy interval contains 0.5)"
    return text + "."


def chair_sentence(demo: DemoFolder) -> str | None:
    parts = []
    for lang in LANGS:
        before, after = (demo.audit("chair", when, lang, "chair_i") for when in WHEN)
        if before is None and after is None:
            continue
        parts.append(f"from {_chair_figure(before)} to {_chair_figure(after)} in {LANGUAGE_NAMES[lang]}")
    if not parts:
        return None
    if all(not _has_value(demo.audit("chair", when, lang, "chair_i")) for when in WHEN for lang in LANGS):
        return "CHAIR_i is undefined before and after training: the captions name no object at all."
    return "CHAIR_i, the share of objects named in a caption that are not in the picture, goes " + _join(parts) + "."


def _chair_figure(cell: Cell | None) -> str:
    return with_interval(cell) if _has_value(cell) else "undefined (no object named)"


def annotation_sentence(demo: DemoFolder) -> str | None:
    cells = annotator_cells(demo)
    parts = []
    for who, found in cells.items():
        if not _has_value(found["agreement"]):
            continue
        rate = found["answer_rate"]
        answers = "answers every item" if _has_value(rate) and rate["value"] == 1 else f"answers {with_interval(rate)} of them"
        chance = " (at chance)" if at_chance(found["agreement"]) else ""
        parts.append(f"{annotator_subject(who, demo)} agrees on {with_interval(found['agreement'])}{chance} and {answers}")
    if not parts:
        return None
    text = "Against the human labels of the task's training items, " + "; ".join(parts)
    verdicts = _crowd_verdicts(demo)
    return text + (f"; against three simulated crowd workers, {verdicts}." if verdicts else ".")


def _crowd_verdicts(demo: DemoFolder) -> str:
    """'the LVLM passes the alt-test (ω = 1.00 at ε = 0.1) and SmolLM2 fails it (ω = 0.00)', or '' without a verdict run."""
    found = crowd_verdict(demo)
    if found is None:
        return ""
    parts = []
    for who, model in found.models.items():
        test = found.metrics["llms"].get(model)
        if isinstance(test, dict):
            word = "passes" if test["passed"] else "fails"
            parts.append(f"{annotator_subject(who, demo)} {word} the alt-test (ω = {test['winning_rate']:.2f} at ε = {test['epsilon']:g})")
    return _join(parts) if parts else ""


def mmbt_sentences(demo: DemoFolder, arms: list[Arm]) -> list[str]:
    scored = [a for a in arms if _has_value(a.auroc)]
    if not scored:
        return []
    figures = _join([f"{with_interval(a.auroc)} on {a.name}" for a in scored])
    first = f"MMBT reaches AUROC {figures}."
    ranked = sorted(scored, key=lambda a: -a.auroc["value"])
    return [first, _ranking_sentence(demo, ranked)]


def _ranking_sentence(demo: DemoFolder, ranked: list[Arm]) -> str:
    chance = [a.name for a in ranked if at_chance(a.auroc)]
    if len(ranked) == 1:
        text = f"{_upper_first(ranked[0].name)} is the only arm"
    else:
        best, second = ranked[0], ranked[1]
        gap = _gap(demo, best, second)
        text = f"{_upper_first(best.name)} rank first, {num(gap['value'] if gap else None)} above {second.name}"
        if _has_interval(gap):
            verdict = "which includes 0, so this run cannot tell them apart" if gap["low"] <= 0 <= gap["high"] else "which excludes 0"
            text += f" (paired interval [{num(gap['low'])}, {num(gap['high'])}], {verdict})"
        elif _has_interval(best.auroc) and _has_interval(second.auroc):
            overlap = best.auroc["low"] <= second.auroc["high"]
            text += " (their intervals overlap)" if overlap else " (their intervals do not overlap)"
    if chance and len(chance) == len(ranked):
        return text + "; every arm is at chance (each AUROC interval contains 0.5)."
    if chance:
        return text + f"; at chance (AUROC interval contains 0.5): {_join(chance)}."
    return text + "; no arm is at chance."


# sections ---------------------------------------------------------------------------------------


def pope_section(r: Report, demo: DemoFolder) -> None:
    rows = [_pope_row(demo, lang, s) for lang in LANGS for s in SETTINGS]
    rows = [row for row in rows if row]
    if not rows:
        return
    r.heading("1. POPE: does the LVLM hallucinate less after training?")
    r.text("POPE asks yes/no questions about objects on held-out pictures; half of the objects are absent, and a yes to an absent "
           "object is a hallucination. Random, popular and adversarial settings pick the absent objects at random, among the "
           "most frequent ones, and among those that appear with the present ones. Intervals resample pictures; the change is "
           "paired over the same questions.")
    r.text(_pope_verdict(demo))
    r.table(rows, caption="POPE before and after training (95% bootstrap intervals)", drop_empty=True)
    r.bar_chart({f"{lang} {s}": {when: demo.audit("pope", when, lang, "f1", s) for when in WHEN} for lang in LANGS for s in SETTINGS
                 if demo.audit("pope", "after", lang, "f1", s) or demo.audit("pope", "before", lang, "f1", s)},
                "POPE F1 before and after training (95% intervals)", "F1", ylim=CHART_RANGE)
    when, cards = next(((w, c) for w in ("after", "before") if (c := pope_cards(demo, w))), ("after", []))
    r.gallery(cards, caption=f"Wrong answers {when} training: the question, the model's answer (red) and the truth.")


def _pope_row(demo: DemoFolder, lang: str, setting: str) -> dict[str, Any] | None:
    before, after = (demo.audit("pope", when, lang, "f1", setting) for when in WHEN)
    if before is None and after is None:
        return None
    questions = next((c.get("n") for c in (after, before) if c and isinstance(c.get("n"), int)), None)
    return {"language": lang, "setting": setting, "questions": questions, "F1 before": before, "F1 after": after,
            "change": demo.change("pope", lang, setting),
            **{f"yes ratio {when}": demo.audit("pope", when, lang, "yes_ratio", setting) for when in WHEN}}


def _pope_verdict(demo: DemoFolder) -> str:
    changes = [c for c in (demo.change("pope", lang, s) for lang in LANGS for s in SETTINGS) if _has_interval(c)]
    ratios = {when: [c["value"] for lang in LANGS for s in SETTINGS if _has_value(c := demo.audit("pope", when, lang, "yes_ratio", s))]
              for when in WHEN}
    text = ""
    if changes:
        up = sum(c["low"] > 0 for c in changes)
        down = sum(c["high"] < 0 for c in changes)
        text = (f"F1 after minus before: higher in {up} of {len(changes)} language-setting pairs (interval above 0), lower in {down}, "
                f"not told apart in {len(changes) - up - down}. ")
    if all(ratios.values()):
        mean = {when: sum(v) / len(v) for when, v in ratios.items()}
        text += (f"The share of yes answers goes from {num(mean['before'])} to {num(mean['after'])} on average; "
                 "0.5 is right, since half the questions name an absent object.")
    return text.strip() or "No figures to compare."


def chair_section(r: Report, demo: DemoFolder) -> None:
    rows = [_chair_row(demo, lang, when) for lang in LANGS for when in WHEN]
    rows = [row for row in rows if row]
    if not rows:
        return
    r.heading("2. CHAIR: do captions name fewer objects that are not there?")
    r.text("The LVLM captions held-out pictures in English and in Italian. CHAIR_i is the share of object mentions that name an "
           "object not in the picture, CHAIR_s the share of captions with at least one such object, recall the share of the "
           "picture's objects that the caption names. Intervals resample captions.")
    r.text(_chair_verdict(demo))
    r.table(rows, caption="CHAIR before and after training (95% bootstrap intervals)", drop_empty=True)
    if any(row.get("object mentions") for row in rows):
        r.bar_chart({f"{lang} {when}": {"CHAIR_i": demo.audit("chair", when, lang, "chair_i"), "CHAIR_s": demo.audit("chair", when, lang, "chair_s")}
                     for lang in LANGS for when in WHEN}, "CHAIR before and after training (lower is better; 95% intervals)", ylim=CHART_RANGE)
    r.gallery(chair_cards(demo), caption="The same pictures captioned before and after training; objects that are not in the picture in red.")


def _chair_row(demo: DemoFolder, lang: str, when: str) -> dict[str, Any] | None:
    metrics = demo.audit_metrics(when, f"chair_{lang}")
    cells = {m: demo.audit("chair", when, lang, m) for m in ("chair_i", "chair_s", "recall", "mean_length")}
    if not metrics and not any(cells.values()):
        return None
    ints = {k: int(metrics[k]) for k in ("n_captions", "n_mentions") if isinstance(metrics.get(k), int | float)}
    return {"language": lang, "when": f"{when} training", "captions": ints.get("n_captions"), "object mentions": ints.get("n_mentions"),
            "CHAIR_i": cells["chair_i"], "CHAIR_s": cells["chair_s"], "recall": cells["recall"], "words per caption": _tenths(cells["mean_length"])}


def _tenths(cell: Cell | None) -> str | None:
    """A mean count (words per caption) to a tenth: 12.0, not 12.000."""
    return f"{cell['value']:.1f}" if _has_value(cell) else None


def _chair_verdict(demo: DemoFolder) -> str:
    parts = []
    for lang in LANGS:
        before, after = (demo.audit("chair", when, lang, "chair_i") for when in WHEN)
        if before is None and after is None:
            continue
        if not _has_value(before) and not _has_value(after):
            parts.append(f"in {LANGUAGE_NAMES[lang]} no caption names any object, before or after training, so CHAIR_i is undefined")
            continue
        part = f"in {LANGUAGE_NAMES[lang]} CHAIR_i goes from {_chair_figure(before)} to {_chair_figure(after)}"
        change = demo.change("chair", lang)
        if _has_interval(change):
            part += f" (change {_signed(change)}, paired over the same pictures)"
        parts.append(part)
    return _upper_first("; ".join(parts) + ".") if parts else "No CHAIR figures."


def annotation_section(r: Report, demo: DemoFolder) -> None:
    if not demo.annotators:
        return
    cells = annotator_cells(demo)
    labels = annotator_labels(demo)
    memes = meme_rows(demo.root)
    r.heading("3. Annotation: can the LLMs replace the annotators?")
    r.text("The trained LVLM (reading the picture; scoring the two answers) and SmolLM2-135M (text only; generating an answer) label "
           "the task's training items: is the sentence true of the picture? The human labels carry deliberate slips, so the "
           "facts are shown too. Agreement counts an unanswered item as a disagreement; intervals resample items.")
    rows = [_annotator_row(demo, who, cells[who], labels, memes) for who in demo.annotators]
    human_facts = fact_agreement(labels["human"], memes)
    if human_facts is not None:
        rows.insert(0, {**dict.fromkeys(rows[0]), "annotator": "human annotators", "items": len(labels["human"]), "answer rate": 1.0,
                        "agreement with the facts": human_facts})
    r.text(_annotation_verdict(demo, cells, human_facts, rows))
    r.table(rows, caption="Annotators against the human labels and against the facts", drop_empty=True)
    r.bar_chart({annotator_name(who, demo): {"agreement with human labels": cells[who]["agreement"], "answer rate": cells[who]["answer_rate"]}
                 for who in demo.annotators}, "Annotators (95% intervals)", ylim=CHART_RANGE,
                reference=(CHANCE, "chance"))
    r.gallery(disagreement_cards(demo, labels), caption="Items where an annotator's label differs from the human one (differing labels in red). "
                                                       "A 'false' label flags a sentence that is false of its picture (the task's 'hateful').")
    crowd_part(r, demo)


def _annotator_row(demo: DemoFolder, who: str, cells: dict[str, Cell | None], labels: dict[str, dict[str, Any]],
                   memes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    metrics = _json(demo.root / f"annotate_{who}" / "metrics.json") or {}
    return {"annotator": annotator_name(who, demo), "items": int(metrics["n"]) if isinstance(metrics.get("n"), int | float) else len(labels[who]),
            "answer rate": cells["answer_rate"], "agreement with human labels": cells["agreement"], "Cohen's kappa": metrics.get("kappa"),
            "AUROC": metrics.get("auroc"), "agreement with the facts": fact_agreement(labels[who], memes)}


def _annotation_verdict(demo: DemoFolder, cells: dict[str, dict[str, Cell | None]], human_facts: float | None, rows: list[dict[str, Any]]) -> str:
    scored = [(who, c["agreement"]) for who, c in cells.items() if _has_value(c["agreement"])]
    if not scored:
        return "No annotation figures."
    who, best = max(scored, key=lambda x: x[1]["value"])
    kappa = next((row.get("Cohen's kappa") for row in rows if row["annotator"] == annotator_name(who, demo)), None)
    text = f"The closest to the human labels is {annotator_subject(who, demo)}: agreement {with_interval(best)}"
    text += f", Cohen's kappa {num(kappa)} (0 is chance agreement, 1 perfect)." if isinstance(kappa, int | float) else "."
    if at_chance(best):
        text += " That is chance: no annotator here can stand in for the humans."
    elif _has_interval(best) and best["low"] < 0.9:
        text += " Its labels differ from the human ones on a sizeable share of items, so it cannot stand in for the annotators without checks."
    if human_facts is not None:
        text += f" The human labels themselves match the facts on {num(human_facts)} of the items."
    return text


# the verdict against the crowd ----------------------------------------------------------------------

TRUE_CLASS = "not_hateful"


@dataclass
class CrowdVerdict:
    """verdict/ of a demo folder: its metrics, its label issues, and each annotator's name in them (the annotate run's model)."""

    metrics: dict[str, Any]
    issues: list[dict[str, Any]]
    models: dict[str, str]  # who -> the LLM's name in metrics.json
    crowd: dict[str, dict[str, str]]  # item -> crowd worker -> label


def crowd_verdict(demo: DemoFolder) -> CrowdVerdict | None:
    """The demo's `annotate verdict` run against the simulated crowd, or None for a folder without one."""
    metrics = _json(demo.root / "verdict" / "metrics.json")
    if not isinstance(metrics, dict) or not isinstance(metrics.get("llms"), dict):
        return None
    models = {}
    for who in demo.annotators:
        manifest = _json(demo.root / f"annotate_{who}" / "run.json")
        model = manifest.get("config", {}).get("model") if isinstance(manifest, dict) else None
        if model in metrics["llms"] or model in metrics.get("prevalence", {}):
            models[who] = model
    crowd: dict[str, dict[str, str]] = {}
    path = demo.root / "world" / "memes" / "crowd.csv"
    if path.is_file():
        import csv

        with path.open(newline="") as f:
            for row in csv.DictReader(f):
                crowd.setdefault(str(row.get("item")), {})[str(row.get("annotator"))] = str(row.get("label"))
    return CrowdVerdict(metrics, _records_of(demo.root / "verdict" / "label_issues.jsonl"), models, crowd)


def _records_of(path: Path) -> list[dict[str, Any]]:
    return [rec for _, rec in iter_jsonl(path, on_error=lambda _err: None)] if path.is_file() else []


def _fig(found: dict[str, Any] | None, value: str = "value") -> Cell | None:
    if not isinstance(found, dict) or value not in found:
        return None
    return {**_cell(found[value], found.get("low"), found.get("high")), "n": found.get("n", found.get("n_items"))}


def crowd_part(r: Report, demo: DemoFolder) -> None:
    found = crowd_verdict(demo)
    if found is None or not found.models:
        return
    memes = meme_rows(demo.root)
    workers = found.metrics.get("annotators", [])
    r.heading("Against a crowd: the alt-test, the agreement ceiling and the prevalence of true sentences", level=3)
    r.text(f"Three simulated crowd workers ({_join(workers)}) each label the same {found.metrics.get('n_items')} training items, drawn at random; "
           f"each flips the fact at a rate of their own. {_crowd_facts(found, memes)} The verdict (annotate verdict, docs/verdict.md) then asks, "
           "for each worker, whether an LLM represents the other workers at least as well as that worker does, allowing the LLM an "
           "advantage ε (the alt-test of Calderon, Reichart and Dror, 2025; the authors' ε for crowd workers); ω is the share of "
           "workers it beats and it passes at ω ≥ 0.5; ρ is the chance it does at least as well as a random worker on an item.")
    r.text(" ".join(_verdict_sentence(demo, who, found) for who in found.models))
    r.table(_verdict_rows(demo, found), caption="The alt-test against the crowd, and Krippendorff's α (nominal) with the crowd's own as the ceiling "
                                               "(95% bootstrap intervals over items)", drop_empty=True)
    prevalence_part(r, demo, found, memes)
    label_issue_part(r, demo, found, memes)


def _crowd_facts(found: CrowdVerdict, memes: dict[str, dict[str, Any]]) -> str:
    parts = []
    for worker in found.metrics.get("annotators", []):
        labels = {item: by[worker] for item, by in found.crowd.items() if worker in by}
        share = fact_agreement(labels, memes)
        if share is not None:
            parts.append(f"{worker} {num(share)}")
    return f"Their labels match the facts on these shares of the items: {', '.join(parts)}." if parts else ""


def _verdict_sentence(demo: DemoFolder, who: str, found: CrowdVerdict) -> str:
    test = found.metrics["llms"].get(found.models[who])
    if not isinstance(test, dict):
        return ""
    interval = test.get("advantage_probability_interval") or {}
    rho = _cell(test["advantage_probability"], interval.get("low"), interval.get("high"))
    word = "passes" if test["passed"] else "fails"
    return (f"{_upper_first(annotator_subject(who, demo))} {word} the alt-test: ω = {test['winning_rate']:.2f} at ε = {test['epsilon']:g} "
            f"(ρ = {with_interval(rho)}, {test['n_items']} items).")


def _verdict_rows(demo: DemoFolder, found: CrowdVerdict) -> list[dict[str, Any]]:
    agreement = found.metrics.get("agreement", {})
    humans = _fig(((agreement.get("humans") or {}).get("alpha") or {}).get("nominal"))
    rows = [{"annotators": "the crowd alone (the ceiling)", "items": humans.get("n") if humans else None, "α (nominal)": humans}]
    for who, model in found.models.items():
        test = found.metrics["llms"].get(model) or {}
        interval = test.get("advantage_probability_interval") or {}
        added = _fig((agreement.get("llms", {}).get(model, {}).get("alpha_added") or {}).get("nominal"))
        rows.append({"annotators": f"the crowd and {annotator_name(who, demo)}", "items": test.get("n_items"), "α (nominal)": added,
                     "alt-test": ("passes" if test["passed"] else "fails") if "passed" in test else None,
                     "ω (workers beaten)": test.get("winning_rate"), "ρ": _cell(test.get("advantage_probability"), interval.get("low"), interval.get("high")),
                     "ε": test.get("epsilon")})
    return rows


def prevalence_part(r: Report, demo: DemoFolder, found: CrowdVerdict, memes: dict[str, dict[str, Any]]) -> None:
    by_who = {who: found.metrics.get("prevalence", {}).get(model, {}).get(TRUE_CLASS) for who, model in found.models.items()}
    by_who = {who: p for who, p in by_who.items() if isinstance(p, dict)}
    if not by_who:
        return
    r.text("How many of the training items' sentences are true? Prediction-powered inference (PPI++) takes each LLM's labels on all "
           "the items and corrects them with the crowd's labels on the items the crowd labelled (valid because those are a random "
           "sample); beside it the crowd's labels alone and the LLM's labels alone. Normal 95% intervals.")
    rows, chart = [], {}
    first = next(iter(by_who.values()))
    crowd_only = _fig(first["classical"], "estimate")
    rows.append({"estimate from": "the crowd alone", "share of true sentences": crowd_only, "crowd-labelled items": first["n_human"]})
    for who, p in by_who.items():
        name = annotator_name(who, demo)
        ppi, llm_only = _fig(p["ppi"], "estimate"), _fig(p["llm_only"], "estimate")
        rows.append({"estimate from": f"PPI++ with {name}", "share of true sentences": ppi, "crowd-labelled items": p["n_human"],
                     "LLM-labelled items": p["n_human"] + p["n_llm_only"], "λ": p.get("lambda")})
        rows.append({"estimate from": f"{name} alone", "share of true sentences": llm_only, "LLM-labelled items": p["llm_only"].get("n")})
        chart[name] = {"PPI++": ppi, "crowd alone": _fig(p["classical"], "estimate"), "LLM alone": llm_only}
    truth = [memes[i]["truth"] for i in memes if "truth" in memes[i]]
    fact = 1 - sum(truth) / len(truth) if truth else None
    if fact is not None:
        r.text(f"The fact: {num(fact)} of the {len(truth)} training sentences are true.")
    r.table(rows, caption="The share of true sentences among the training items", floatfmt=".3f", drop_empty=True)
    r.bar_chart(chart, "Share of true sentences: PPI++, the crowd alone and the LLM alone (95% intervals)", "share true", ylim=CHART_RANGE,
                reference=(fact, "the fact") if fact is not None else None)


def label_issue_part(r: Report, demo: DemoFolder, found: CrowdVerdict, memes: dict[str, dict[str, Any]]) -> None:
    names = {model: who for who, model in found.models.items()}
    issues = [row for row in found.issues if row.get("llm") in names]
    cards = []
    for row in sorted(issues, key=lambda x: x.get("rank", 0)):
        meme = memes.get(str(row.get("item")))
        if meme is not None and (demo.root / "world" / "memes" / str(meme.get("img", ""))).is_file():
            cards.append(Card(demo.root / "world" / "memes" / meme["img"], _issue_lines(demo, names[row["llm"]], row, meme)))
        if len(cards) == EXAMPLES:
            break
    if not cards:
        return
    who = {names[row["llm"]] for row in issues}
    r.heading("Crowd labels to re-check", level=3)
    r.text(f"cleanlab (CROWDLAB) weighs the workers against the label probabilities of {_join([annotator_subject(w, demo) for w in sorted(who)])} "
           "and ranks the items whose majority label is most likely wrong; the first few are below, all of them in verdict/label_issues.jsonl. "
           "A candidate to re-check, not a verdict: the fact is shown too.")
    r.gallery(cards, caption="The crowd's labels (a label against the majority in red), the majority's quality score (lower = more "
                             "likely wrong), the LLM's label with its probability, and the fact.")


def _issue_lines(demo: DemoFolder, who: str, row: dict[str, Any], meme: dict[str, Any]) -> list[Line]:
    labels = row.get("human_labels") or {}
    majority = row.get("majority_label")
    pairs = labels.items() if isinstance(labels, dict) else enumerate(labels, 1)
    crowd: list[Any] = ["crowd: "]
    for k, (worker, label) in enumerate(pairs):
        crowd += [", "] if k else []
        crowd += [f"{worker} ", (label_word(label), "wrong") if majority is not None and label != majority else label_word(label)]
    lines: list[Line] = [[(f'"{meme.get("text", "")}"', "strong")], crowd]
    if majority is not None:
        lines.append(f"majority: {label_word(majority)} (score {num(row.get('score'))})")
    lines.append(f"{annotator_name(who, demo)}: {label_word(row.get('llm_label'))}, probability {num(row.get('llm_probability'))}")
    if "truth" in meme:
        lines.append(f"the fact: the sentence is {label_word(LABEL_OF_INT.get(meme['truth']))}")
    return lines


def mmbt_section(r: Report, demo: DemoFolder, arms: list[Arm]) -> None:
    if not arms:
        return
    r.heading("4. MMBT: what do LLM labels cost?")
    r.text("MMBT starts from a small BERT pretrained on matching presence sentences to the world's training pictures and a small "
           "ResNet pretrained on which objects a picture holds; its image projection and head start fresh. It is trained on the task's "
           "training items with the human labels, with each annotator's labels (its unanswered items left out), and, as a control, "
           "on the human labels with the sentence alone and no picture. All are tested on the same human-labelled test items; "
           "intervals resample those items. AUROC ranks the items, and part of that ranking comes from the pretrained BERT; "
           "accuracy shows what the labels taught.")
    r.text(_mmbt_order(demo, arms))
    rows = [{"labels": a.name, "trained on (items)": a.n_train, "AUROC": a.auroc, "accuracy": a.accuracy,
             "label agreement with human": a.label_accuracy, "label answer rate": a.label_answer_rate} for a in arms]
    r.table(rows, caption="MMBT by the labels it learned from (95% bootstrap intervals)", drop_empty=True)
    r.bar_chart({a.name: {"MMBT AUROC": a.auroc, "label agreement with human": a.label_accuracy} for a in arms},
                "MMBT AUROC and label agreement (95% intervals)", ylim=CHART_RANGE, reference=(CHANCE, "chance"))


def _mmbt_order(demo: DemoFolder, arms: list[Arm]) -> str:
    scored = sorted([a for a in arms if _has_value(a.auroc)], key=lambda a: -a.auroc["value"])
    if not scored:
        return "No MMBT figures."
    text = "Order by AUROC: " + " > ".join(f"{a.name} ({num(a.auroc['value'])})" for a in scored) + "."
    human = next((a for a in arms if a.key == "human"), None)
    others = [a for a in arms if a is not human and _has_value(a.auroc)]
    if human is not None and _has_value(human.auroc) and others:
        gaps = [f"{a.name} {_signed(gap)}" for a in others if (gap := _gap(demo, a, human)) is not None]
        text += (" AUROC minus that of human labels, paired over the same test items: " + "; ".join(gaps) +
                 ". An interval that includes 0 means this test set cannot tell the two apart.")
    chance = [a.name for a in scored if at_chance(a.auroc)]
    if chance:
        text += f" At chance (AUROC interval contains 0.5): {_join(chance)}."
    return text


def setup_section(r: Report, demo: DemoFolder) -> None:
    cfg = demo.config
    r.heading("How the demo ran")
    if cfg:
        kind = "A quick run (the sizes CI uses; its figures say little)" if demo.quick else "A full run"
        r.text(f"{kind}: a LLaVA-NeXT built from a small CLIP-style tower and a tiny Llama, trained on {cfg.get('n_train', '?')} synthetic "
               f"pictures of the shapes world with English and Italian text, audited on {cfg.get('n_val', '?')} held-out pictures, and "
               f"{cfg.get('n_memes', '?')} picture-sentence items for annotation and MMBT (seed {cfg.get('seed', '?')}).")
    seconds = demo.summary.get("seconds")
    if isinstance(seconds, dict) and seconds:
        rows = [{"step": STEP_NAMES.get(k, k), "seconds": float(v)} for k, v in seconds.items() if isinstance(v, int | float)]
        rows.append({"step": "total", "seconds": sum(row["seconds"] for row in rows)})
        r.table(rows, caption="Time per step", floatfmt=".1f")


def _flat_value(key: str, value: Any) -> Any:
    """A summary value as summary.json holds it (12.0 stays 12.0, 0.8558 stays 0.8558); seconds to a tenth."""
    if value is None:
        return "n/a"
    if key.startswith("seconds.") and isinstance(value, int | float):
        return f"{value:.1f}"
    return json.dumps(value) if isinstance(value, int | float) else value


def all_figures(r: Report, demo: DemoFolder) -> None:
    rows = []
    for key, value in demo.summary.items():
        items = {f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value}
        rows += [{"figure": name, "value": _flat_value(name, v)} for name, v in items.items()]
    if rows:
        with r.collapsed(f"All figures (summary.json, {len(rows)} keys)"):
            r.table(rows)


def demo_report(out: Path) -> Report:
    """The demo's report, from its output folder alone: headline, one section per claim, setup, and every figure folded away."""
    demo = DemoFolder(out)
    arms = mmbt_arms(demo)
    r = Report("annotaudit demo: the shapes world")
    r.heading("Headline")
    sentences = headline(demo, arms)
    r.text(" ".join(sentences) if sentences else "This folder holds no figures yet (summary.json and the run folders are missing).")
    pope_section(r, demo)
    chair_section(r, demo)
    annotation_section(r, demo)
    mmbt_section(r, demo, arms)
    setup_section(r, demo)
    all_figures(r, demo)
    return r
