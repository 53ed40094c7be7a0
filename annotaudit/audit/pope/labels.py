"""Several POPE label sets side by side, and the protocol fingerprint every POPE figure carries.

POPE's labels are wrong in places (RePOPE relabels them and drops ambiguous questions) and its random file was
replaced upstream (2,910 questions at the commit LLaVA pins, 3,000 today), so the same answers give different
figures under different label files. A label set is one label file per setting. It pairs with the questions by
image and object within a setting, never by question id or position: ids and order differ between versions.

The fingerprint hashes the parsed rows (question_id, image, text, label) of each label file, in any order and
whatever the line endings, and names the version it recognises from the hashes in data/pope_label_versions.json.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json
from annotaudit.core.vocab import SETTINGS

from .formats import question_key, setting_of
from .protocol import CANDIDATES, METRIC_NAMES, metrics, read_questions

AVERAGING = "mean_f1 is the unweighted mean of the settings' F1; with several templates each figure is the mean over templates"
_LABEL_FILE = re.compile(r"(?P<family>coco_pope_|coco_repope_|)(?P<setting>random|popular|adversarial)\.jsonl?")
FAMILY_NAMES = {"coco_pope_": "coco_pope_<setting>.json", "coco_repope_": "coco_repope_<setting>.json", "": "<setting>.json"}


@dataclass
class LabelSet:
    """One label file per setting (None: a file whose name gives no setting, for questions of one setting)."""

    name: str
    rows: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)
    files: dict[str | None, Path] = field(default_factory=dict)
    recorded: dict[str, Any] | None = None  # the fingerprint a run recorded of the files its records were asked from
    own: bool = False  # the labels the records already carry as targets: nothing to pair

    def for_setting(self, setting: str, settings: list[str]) -> tuple[list[dict[str, Any]], Path] | None:
        """The rows that label `setting`, or None when this set has no file for it."""
        if setting in self.rows:
            return self.rows[setting], self.files[setting]
        if None in self.rows:
            if len(settings) > 1:
                raise InputError(f"label set {self.name!r}: the file's name gives no setting and the questions have {len(settings)} "
                                 f"({', '.join(settings)}): name it <setting>.json", path=self.files[None])
            return self.rows[None], self.files[None]
        return None


# Reading label sets ------------------------------------------------------------------------------

def parse_label_option(value: str | Path) -> tuple[str | None, Path]:
    """'NAME=PATH' or 'PATH' -> (NAME or None, PATH); a path that exists as written is never split."""
    text = str(value)
    if "=" in text and not Path(text).exists():
        name, _, path = text.partition("=")
        if name.strip() and "/" not in name and path.strip():
            return name.strip(), Path(path.strip())
    return None, Path(text)


def label_files(path: Path, name: str | None) -> dict[str | None, Path]:
    """Setting -> label file of a folder, a file, or a narrower path (DIR/coco_repope: DIR/coco_repope_<setting>.json)."""
    if path.is_file():
        m = _LABEL_FILE.fullmatch(path.name)
        setting = m["setting"] if m else setting_of(path.stem)
        return {setting if setting in SETTINGS else None: path}
    if path.is_dir():
        families: dict[str, dict[str | None, Path]] = {}
        for p in sorted(path.iterdir()):
            m = _LABEL_FILE.fullmatch(p.name)
            if m and p.is_file():
                families.setdefault(m["family"], {})[m["setting"]] = p
        if len(families) > 1:
            found = " and ".join(FAMILY_NAMES[f] for f in families)
            hint = f"{name or 'NAME'}={path / 'coco_repope'}" if "coco_repope_" in families else f"{name or 'NAME'}={path}/<file>"
            raise InputError(f"the folder holds two sets of label files ({found}): give one with NAME= and a narrower path "
                             f"(e.g. --labels {hint}) or a file", path=path)
        if not families:
            raise InputError("no label files in the folder: expected coco_pope_<setting>.json, coco_repope_<setting>.json or "
                             "<setting>.json (setting: random, popular or adversarial)", path=path)
        return next(iter(families.values()))
    stem = path.name.rstrip("_")
    found = {s: path.parent / f"{stem}_{s}{ext}" for s in SETTINGS for ext in (".json", ".jsonl") if (path.parent / f"{stem}_{s}{ext}").is_file()}
    if not found:
        raise InputError(f"label file or folder not found (nor {stem}_<setting>.json beside it)", path=path)
    return dict(found)


def read_label_sets(values: list[str | Path] | str | Path | None) -> list[LabelSet]:
    """The --labels options in order; a set is named by NAME= or its folder's name; one NAME given twice joins its files."""
    if values is None:
        return []
    values = [values] if isinstance(values, str | Path) else list(values)
    sets: dict[str, LabelSet] = {}
    explicit: set[str] = set()
    for value in values:
        name, path = parse_label_option(value)
        files = label_files(path, name)
        key = name or _folder_name(path)
        if key in sets and (name is None or key not in explicit):
            raise InputError(f"two label sets are named {key!r}: name each with --labels NAME=PATH", path=path)
        target = sets.setdefault(key, LabelSet(key))
        if name:
            explicit.add(key)
        for setting, file in files.items():
            if setting in target.files:
                raise InputError(f"label set {key!r} has two files for setting {setting or '(unnamed)'}: {target.files[setting]} and {file}", path=file)
            target.files[setting] = file
            target.rows[setting] = read_questions(file)
    return list(sets.values())


def _folder_name(path: Path) -> str:
    folder = path if path.is_dir() else path.parent
    return folder.resolve().name or str(folder)


def question_label_set(sets: dict[str, list[dict[str, Any]]], files: dict[str, Path]) -> LabelSet:
    """The labels of the question files a run asks, as a label set."""
    first = Path(next(iter(files.values())))
    return LabelSet(_folder_name(first), rows={setting_of(s): rows for s, rows in sets.items()}, files={setting_of(s): Path(f) for s, f in files.items()},
                    own=True)


def run_label_set(config: dict[str, Any], records: list[dict[str, Any]], run: Path) -> LabelSet:
    """A finished run's own labels, from its records; its fingerprint is the one the run recorded, where it did."""
    questions = config.get("questions")
    first = next(iter(questions.values()), None) if isinstance(questions, dict) else questions
    out = own_label_set(records, Path(first) if first else run)
    metrics_file = run / "metrics.json"
    before = read_json(metrics_file) if metrics_file.is_file() else {}
    recorded, sets = before.get("protocol"), before.get("label_sets")
    if isinstance(recorded, dict) and "labels" in recorded:
        out.recorded = {k: recorded.get(k) for k in ("labels", "version", "version_name")}
    if isinstance(sets, dict) and sets:
        out.name = next(iter(sets))
    return out


def own_label_set(records: list[dict[str, Any]], source: Path) -> LabelSet:
    """The labels the questions themselves carry, as a label set named by `source`'s folder: the label files
    LLaVA's layout drew them from, else one row per question (question_id, image, text as asked in the first
    template, label)."""
    out = LabelSet(_folder_name(source), own=True)
    first = min(int((r.get("meta") or {}).get("template", 1)) for r in records)
    for r in records:
        meta = r.get("meta") or {}
        if int(meta.get("template", 1)) != first:
            continue
        setting = str(meta.get("setting"))
        if meta.get("label_file"):
            if setting not in out.files:
                out.files[setting] = Path(meta["label_file"])
                out.rows[setting] = read_questions(meta["label_file"])
            continue
        out.files.setdefault(setting, source)
        out.rows.setdefault(setting, []).append({"question_id": meta.get("question_id", r.get("id")), "image": r["input"].get("image"),
                                                 "text": r["input"].get("prompt"), "label": r["target"], "_line": meta.get("answer_line")})
    return out


# Protocol fingerprint ----------------------------------------------------------------------------

@lru_cache(maxsize=1)
def known_versions() -> dict[str, Any]:
    """Row hashes of the published POPE files at both versions, RePOPE's question counts, the versions' names."""
    return read_json(Path(__file__).resolve().parent.parent / "data" / "pope_label_versions.json")


def rows_hash(rows: list[dict[str, Any]]) -> str:
    """sha256 of the rows (question_id, image, text, label) as sorted compact JSON lines: the same rows give the
    same hash whatever their order, line endings or extra fields."""
    lines = sorted(json.dumps([r.get("question_id"), r.get("image"), r.get("text"), r.get("label")], ensure_ascii=False, separators=(",", ":"))
                   for r in rows)
    return "sha256:" + hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def file_fingerprint(rows: list[dict[str, Any]], setting: str | None, path: Path | None) -> dict[str, Any]:
    """One label file: its hash, counts and the version recognised (by hash, else RePOPE by question count)."""
    known = known_versions()
    digest = rows_hash(rows)
    out: dict[str, Any] = {"file": str(path) if path else None, "questions": len(rows), "yes": sum(r.get("label") == "yes" for r in rows),
                           "no": sum(r.get("label") == "no" for r in rows), "hash": digest, "version": "unknown", "recognised_by": None}
    hit = known["hashes"].get(digest)
    if hit is not None:
        out.update(version=hit["version"], recognised_by="hash")
        if hit["setting"] != setting:
            out["file_of_setting"] = hit["setting"]
        return out
    for version, counts in known["question_counts"].items():
        if setting in counts and counts[setting] == len(rows):
            out.update(version=version, recognised_by="question count")
    return out


def label_protocol(labels: LabelSet) -> dict[str, Any]:
    """Per setting the file's fingerprint; `version` is the one version all files share, else 'mixed'."""
    if labels.recorded is not None:
        return labels.recorded
    per = {str(s): file_fingerprint(rows, s, labels.files.get(s)) for s, rows in labels.rows.items()}
    versions = list(dict.fromkeys(p["version"] for p in per.values()))
    version = versions[0] if len(versions) == 1 else "mixed"
    names = known_versions()["names"]
    return {"labels": per, "version": version, "version_name": names.get(version, "; ".join(f"{s}: {names[p['version']]}" for s, p in per.items()))}


def protocol(labels: LabelSet, parser: str | None, mode: str, language: str) -> dict[str, Any]:
    """What made a POPE figure: the label files (hashes, version), the parser (generate mode), the answer tokens
    (score mode) and how settings are averaged."""
    return {**label_protocol(labels), "mode": mode, "parser": parser if mode == "generate" else None, "averaging": AVERAGING,
            "answer_tokens": list(CANDIDATES[language]) if mode == "score" else None}


# Scoring under a label set -----------------------------------------------------------------------

def _index(rows: list[dict[str, Any]], setting: str, path: Path) -> dict[tuple, dict[str, Any]]:
    """(image, object) -> label row; the same question labelled both ways in one file is refused."""
    out: dict[tuple, dict[str, Any]] = {}
    for row in rows:
        key = question_key(row.get("image"), row.get("text"))
        if key in out and out[key]["label"] != row["label"]:
            raise InputError(f"image {row.get('image')!r} is asked about {key[1]!r} twice in setting {setting}, labelled "
                             f"{out[key]['label']!r} on line {out[key].get('_line')} and {row['label']!r} here", path=path, line=row.get("_line"))
        out.setdefault(key, row)
    return out


def score_setting(records: list[dict[str, Any]], rows: list[dict[str, Any]], setting: str, path: Path, own: bool = False) -> dict[str, Any]:
    """One setting's records under one label file: figures on the questions it labels, and the counts of what it changes.

    `own`: the file's labels are the records' targets already (the questions' own labels). Counts are of questions
    (the first template's records); n leaves out the excluded questions and the answers a parser left out (no_answer)."""
    index = {} if own else _index(rows, setting, path)
    first_template = min(int((r.get("meta") or {}).get("template", 1)) for r in records)
    cells: dict[int, tuple[list[str], list[str]]] = {}
    asked: set[tuple] = set()
    excluded = yes_to_no = no_to_yes = 0
    for r in records:
        template = int((r.get("meta") or {}).get("template", 1))
        key = question_key(r["input"].get("image"), r["input"].get("prompt"))
        row = {"label": r["target"]} if own else index.get(key)
        first = template == first_template
        if row is None:
            excluded += first
            continue
        if first:
            asked.add(key)
            yes_to_no += r["target"] == "yes" and row["label"] == "no"
            no_to_yes += r["target"] == "no" and row["label"] == "yes"
        labels, preds = cells.setdefault(template, ([], []))
        labels.append(row["label"])
        preds.append(r["prediction"])
    per_template = [metrics(*cells[t]) for t in sorted(cells)]
    out: dict[str, Any] = {k: statistics.fmean(m[k] for m in per_template) if per_template else None for k in METRIC_NAMES}
    first = per_template[0] if per_template else {}
    out.update({k: first.get(k, 0) for k in ("n", "tp", "fp", "tn", "fn", "unknown", "no_answer")})
    out.update(excluded=excluded, labels_without_question=len(set(index) - asked), changed={"yes_to_no": yes_to_no, "no_to_yes": no_to_yes})
    return out


def score_label_set(records: list[dict[str, Any]], labels: LabelSet) -> dict[str, Any]:
    """`settings` (setting -> f1, accuracy, precision, recall, yes_ratio, n, excluded and counts), `mean_f1`,
    the settings the set lacks and the ones it has that no question is in."""
    from .run import mean_f1

    by_setting: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_setting.setdefault(str((r.get("meta") or {}).get("setting")), []).append(r)
    settings, missing = {}, []
    for setting, recs in by_setting.items():
        found = labels.for_setting(setting, list(by_setting))
        if found is None:
            missing.append(setting)
            continue
        settings[setting] = score_setting(recs, found[0], setting, found[1], labels.own)
    if not settings:
        have = ", ".join(str(s) for s in labels.files) or "none"
        raise InputError(f"label set {labels.name!r} labels none of the questions' settings ({', '.join(by_setting)}); it has {have}")
    if all(s["n"] == 0 for s in settings.values()):
        raise InputError(f"label set {labels.name!r} shares no question (image and object) with the answers", path=next(iter(labels.files.values())))
    unused = [str(s) for s in labels.rows if s is not None and s not in by_setting]
    return {"settings": settings, "mean_f1": mean_f1(settings), "missing_settings": missing, "unused_settings": unused}


def label_set_metrics(records: list[dict[str, Any]], sets: list[LabelSet], parser: str | None, mode: str, language: str) -> dict[str, Any]:
    """metrics.json's `protocol` (of the first set, whose figures are the summary's) and `label_sets`."""
    names = [s.name for s in sets]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise InputError(f"two label sets are named {twice!r} (the questions' own labels are named by their folder): name the other with --labels NAME=PATH")
    out = {labels.name: {**score_label_set(records, labels), "protocol": protocol(labels, parser, mode, language)} for labels in sets}
    return {"protocol": out[sets[0].name]["protocol"], "label_sets": out}


def f1_changes(label_sets: dict[str, Any]) -> list[str]:
    """One line per setting and later set: its F1 against the first set's, with what the set left out and changed."""
    names = list(label_sets)
    base = label_sets[names[0]]["settings"]
    lines = []
    for name in names[1:]:
        for setting, m in label_sets[name]["settings"].items():
            if setting not in base or m["f1"] is None or base[setting]["f1"] is None:
                continue
            delta = 100 * (m["f1"] - base[setting]["f1"])
            ch = m["changed"]
            lines.append(f"{setting}: F1 {100 * base[setting]['f1']:.2f} ({names[0]}) -> {100 * m['f1']:.2f} ({name}), {delta:+.2f}; "
                         f"{m['n']:,} questions, {m['excluded']:,} excluded, {ch['yes_to_no']:,} yes->no and {ch['no_to_yes']:,} no->yes, "
                         f"{m['labels_without_question']:,} labels without a question")
    return lines


def side_by_side(label_sets: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per setting and label set (in %), with the change in F1 from the first set."""
    names = list(label_sets)
    base = label_sets[names[0]]["settings"]
    rows = []
    for setting in dict.fromkeys(s for name in names for s in label_sets[name]["settings"]):
        for name in names:
            m = label_sets[name]["settings"].get(setting)
            if m is None:
                continue
            pct = {k: "" if m[k] is None else f"{100 * m[k]:.2f}" for k in METRIC_NAMES}
            delta = "" if name == names[0] or setting not in base or None in (m["f1"], base[setting]["f1"]) else f"{100 * (m['f1'] - base[setting]['f1']):+.2f}"
            rows.append({"setting": setting, "labels": name, **pct, "ΔF1": delta, "n": m["n"], "excluded": m["excluded"],
                         "yes→no": m["changed"]["yes_to_no"], "no→yes": m["changed"]["no_to_yes"], "labels without a question": m["labels_without_question"]})
    return rows


def report_label_sets(report: Any, label_sets: dict[str, Any]) -> None:
    """The report's part on labels: each set's protocol, and the side-by-side table where there are several sets."""
    report.heading("Labels")
    for name, figures in label_sets.items():
        p = figures["protocol"]
        files = "; ".join(f"{s}: {f['questions']:,} questions, {f['hash'][7:19]}…, {f['version']}" + (f" by {f['recognised_by']}" if f["recognised_by"] else "")
                          for s, f in p["labels"].items())
        mean = f" Mean F1 {100 * figures['mean_f1']:.2f}." if figures.get("mean_f1") is not None else ""
        report.text(f"{name}: {p['version_name']} ({files}).{mean}")
    if len(label_sets) > 1:
        report.table(side_by_side(label_sets), caption="Each label set's figures in %; ΔF1 against the first set; counts of questions")
