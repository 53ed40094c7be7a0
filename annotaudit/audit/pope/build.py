"""Build POPE question sets from COCO instances (optionally with the captions' objects, CHAIR's way)
or from any per-image objects JSON (a detector's or a segmenter's labels, as in SEEM-based POPE).

Unlike the original sampler, every draw comes from a seeded generator, so a set is reproducible.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json, write_jsonl
from annotaudit.core.vocab import LANGUAGES, SETTINGS

from .protocol import DEFAULT_IMAGE_PATTERN, italian_phrase, question_text

Objects = dict[Any, list[str]]


# Sources ---------------------------------------------------------------------------------------

def _image_id(key: str) -> Any:
    return int(key) if str(key).isdigit() else key


def objects_from_json(path: str | Path) -> Objects:
    """{"<image id>": ["object", ...]} as in coco_pope_500_objects.json; duplicates are dropped."""
    data = read_json(path)
    if not isinstance(data, dict):
        raise InputError('expected an object {"<image id>": ["object", ...]}', path=path)
    out: Objects = {}
    for key, objs in data.items():
        if not isinstance(objs, list) or not all(isinstance(o, str) and o.strip() for o in objs):
            raise InputError("the objects must be a list of non-empty strings", path=path, item=str(key))
        out[_image_id(key)] = sorted({o.strip() for o in objs})
    return out


def _coco_instances(path: str | Path) -> tuple[Objects, dict[Any, str]]:
    data = read_json(path)
    for field in ("images", "annotations", "categories"):
        if not isinstance(data, dict) or field not in data:
            raise InputError(f"not a COCO instances file: no {field!r}", path=path)
    names = {c["id"]: c["name"] for c in data["categories"]}
    files = {img["id"]: img.get("file_name", DEFAULT_IMAGE_PATTERN.format(id=img["id"])) for img in data["images"]}
    objs: dict[Any, set[str]] = {i: set() for i in files}
    for k, ann in enumerate(data["annotations"]):
        if ann.get("category_id") not in names or ann.get("image_id") not in objs:
            raise InputError("annotation names an unknown image or category", path=path, item=str(ann.get("id", k)))
        objs[ann["image_id"]].add(names[ann["category_id"]])
    return {i: sorted(o) for i, o in objs.items()}, files


def objects_from_coco(instances: list[str | Path], captions: list[str | Path] | None = None) -> tuple[Objects, dict[Any, str]]:
    """Per-image objects and file names from COCO instances, plus the captions' objects when given."""
    objects: Objects = {}
    files: dict[Any, str] = {}
    for path in instances:
        o, f = _coco_instances(path)
        objects.update(o)
        files.update(f)
    if captions:
        from ..chair.metric import build_ground_truth  # the CHAIR way of reading objects out of captions

        truth = build_ground_truth([str(p) for p in instances], [str(p) for p in captions])
        objects = {i: sorted(truth.get(i, set()) | set(objects.get(i, []))) for i in set(objects) | set(truth)}
    return objects, files


# Rankings --------------------------------------------------------------------------------------

def frequency(objects: Objects, images: list[Any]) -> dict[str, int]:
    """How many of the images hold each object, most frequent first (ties by first appearance)."""
    counts = Counter(o for i in images for o in objects[i])
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def co_occurrence(objects: Objects, images: list[Any]) -> dict[str, list[str]]:
    """For each object, the objects sharing an image with it, most often first (ties by name)."""
    pairs: dict[str, Counter] = {}
    for i in images:
        for a in objects[i]:
            pairs.setdefault(a, Counter()).update(b for b in objects[i] if b != a)
    return {a: [b for b, _ in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))] for a, c in pairs.items()}


def ranking_from_table(table: dict[str, int]) -> list[str]:
    """A published frequency table as a ranking (stable: ties keep the file's order)."""
    return [o for o, _ in sorted(table.items(), key=lambda kv: -kv[1])]


# Negatives -------------------------------------------------------------------------------------

def negatives(setting: str, truth: set[str], positives: list[str], vocabulary: list[str], ranking: list[str], co: dict[str, list[str]], rng: random.Random) -> list[str]:
    """Absent objects for one image: one per positive, none in the truth, none repeated.

    random: uniform over the vocabulary; popular: the most frequent absent objects, in order;
    adversarial: for each positive, its most frequent co-occurring absent object (random when its
    list runs out, as in the original)."""
    absent = [o for o in vocabulary if o not in truth]
    if setting == "random":
        return rng.sample(absent, len(positives))
    if setting == "popular":
        ranked = [o for o in ranking if o not in truth] + [o for o in absent if o not in ranking]
        return ranked[: len(positives)]
    if setting == "adversarial":
        chosen: list[str] = []
        for p in positives:
            pick = next((o for o in co.get(p, []) if o not in truth and o not in chosen), None)
            if pick is None:
                pick = rng.choice([o for o in absent if o not in chosen])
            chosen.append(pick)
        return chosen
    raise InputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)} or all")


# Building --------------------------------------------------------------------------------------

def build_question_sets(
    objects: Objects,
    settings: list[str],
    n_images: int = 500,
    per_image: int = 3,
    min_objects: int = 3,
    seed: int = 0,
    language: str = "en",
    file_names: dict[Any, str] | None = None,
    image_pattern: str = DEFAULT_IMAGE_PATTERN,
    frequency_table: dict[str, int] | None = None,
    co_occur_table: dict[str, list[str]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Question sets for each setting over the same images and the same positives.

    Images with at least max(min_objects, per_image) objects and enough absent ones are drawn with
    the seed; popular and adversarial rankings are counted over the drawn images, as POPE does,
    unless published tables are given."""
    vocabulary = sorted({o for objs in objects.values() for o in objs})
    if language == "it":
        for o in vocabulary:
            italian_phrase(o)  # fail early, naming the first object the Italian table lacks
    need = max(min_objects, per_image)
    eligible = sorted((i for i, o in objects.items() if len(o) >= need and len(vocabulary) - len(o) >= per_image), key=str)
    if not eligible:
        raise InputError(f"no image has at least {need} objects (and {per_image} absent ones)")
    rng = random.Random(seed)
    images = rng.sample(eligible, min(n_images, len(eligible)))
    positives = {i: rng.sample(objects[i], per_image) for i in images}
    ranking = ranking_from_table(frequency_table) if frequency_table else list(frequency(objects, images))
    co = co_occur_table if co_occur_table is not None else co_occurrence(objects, images)
    out = {}
    for setting in settings:
        questions: list[dict[str, Any]] = []
        for i in images:
            neg_rng = random.Random(f"{seed}:{setting}:{i}")
            negs = negatives(setting, set(objects[i]), positives[i], vocabulary, ranking, co, neg_rng)
            name = _file_name(i, file_names, image_pattern)
            for pos, neg in zip(positives[i], negs):
                for obj, label in ((pos, "yes"), (neg, "no")):
                    questions.append({"question_id": len(questions) + 1, "image": name, "text": question_text(obj, language), "label": label, "object": obj})
        out[setting] = questions
    return out


def _file_name(image_id: Any, file_names: dict[Any, str] | None, pattern: str) -> str:
    if file_names and image_id in file_names:
        return file_names[image_id]
    try:
        return pattern.format(id=image_id)
    except (ValueError, KeyError, IndexError) as exc:
        raise InputError(f"--image-pattern {pattern!r} cannot format this id ({exc})", item=str(image_id)) from None


def output_paths(out: str | Path, settings: list[str]) -> dict[str, Path]:
    """One setting writes to OUT itself; several write OUT's stem + _<setting> beside it."""
    out = Path(out)
    if len(settings) == 1:
        return {settings[0]: out}
    suffix = out.suffix or ".json"
    return {s: out.with_name(f"{out.stem}_{s}{suffix}") for s in settings}


def write_questions(path: str | Path, questions: list[dict[str, Any]]) -> None:
    """JSON Lines in POPE's format (plus the English 'object'), written atomically."""
    write_jsonl(path, questions)


def _table(path: str | Path | None, kind: type, shape: str) -> Any:
    if path is None:
        return None
    data = read_json(path)
    if not isinstance(data, kind):
        raise InputError(f"expected {shape}", path=path)
    return data


def build_question_files(
    out: str | Path,
    annotations: list[str | Path] | None = None,
    captions: list[str | Path] | None = None,
    objects: str | Path | None = None,
    setting: str = "all",
    images: int = 500,
    per_image: int = 3,
    min_objects: int = 3,
    seed: int = 0,
    language: str = "en",
    image_pattern: str = DEFAULT_IMAGE_PATTERN,
    frequency: str | Path | None = None,
    co_occur: str | Path | None = None,
) -> dict[str, Path]:
    """Question files from COCO instances (plus captions) or a per-image objects file; setting -> file written.

    One setting writes OUT itself; 'all' writes OUT's stem + _<setting> beside it (the published naming).
    """
    if bool(annotations) == bool(objects):
        raise InputError("give either annotations (COCO instances) or an objects file, not both or neither")
    if captions and not annotations:
        raise InputError("captions go with annotations")
    if language not in LANGUAGES:
        raise InputError(f"unknown language {language!r}; choose one of {', '.join(LANGUAGES)}")
    settings = list(SETTINGS) if setting == "all" else [setting]
    if any(s not in SETTINGS for s in settings):
        raise InputError(f"unknown setting {setting!r}; choose one of {', '.join(SETTINGS)} or all")
    if objects:
        objs, files = objects_from_json(objects), None
    else:
        objs, files = objects_from_coco(list(annotations or []), list(captions or []) or None)
    try:
        sets = build_question_sets(
            objs, settings, n_images=images, per_image=per_image, min_objects=min_objects, seed=seed, language=language,
            file_names=files, image_pattern=image_pattern,
            frequency_table=_table(frequency, dict, 'a frequency table {"object": count}'),
            co_occur_table=_table(co_occur, dict, 'a co-occurrence table {"object": ["object", ...]}'),
        )
    except InputError as err:
        if err.path is not None:
            raise
        source = objects or ", ".join(str(a) for a in annotations or [])
        raise InputError(err.message, path=source, item=err.item) from None
    paths = output_paths(out, settings)
    for s, path in paths.items():
        write_questions(path, sets[s])
    return paths
