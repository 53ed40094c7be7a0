"""The shapes world: a small synthetic vision-language world, generated deterministically from a seed.

Each scene is a picture of a few simple icons of twelve COCO categories (so CHAIR's synonyms, POPE's
builders and Italian article tables apply unchanged), with colours, sizes and positions. Scenes come
from four themes with their own typical objects and background tint, so objects co-occur the way
they do in COCO and popular and adversarial POPE are harder than random.

`generate_world(out)` writes:
  images/<id>.png                          the training and held-out scenes
  annotations/instances_{split}.json       COCO instances (bbox, area, polygon segmentation)
  annotations/captions_{split}_{lang}.json COCO captions, English and Italian
  llava/pretrain_{lang}.json               LLaVA pretraining pairs (image, short caption)
  llava/instruct_{lang}.json               LLaVA conversations: presence, colour, count, statements, descriptions
  llava/pretrain.json, llava/instruct.json both languages, interleaved
  memes/{train,dev_seen,test_unseen}.jsonl an image+text task in the Hateful Memes layout ({id,img,label,text,truth,objects},
                                           pictures of their own under memes/img/): "There is a kite in the picture.";
                                           label 1 (the flagged class, read as "hateful") = the sentence is FALSE of
                                           the picture; "human" labels with a few deliberate slips (`truth` keeps the fact)
  memes/task.yaml                          the same task for `annotate run --task`
  memes/crowd.csv                          three simulated crowd workers' labels on a sample of the training items
  world.json                               categories with English and Italian names, colours, themes, counts
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from annotaudit.audit.pope.protocol import coco_italian_names, italian_phrase, question_text
from annotaudit.core.io import read_json, write_text

# COCO id, English name and plural; Italian forms come from audit's table of COCO categories.
CATEGORIES: list[tuple[int, str, str]] = [
    (10, "traffic light", "traffic lights"),
    (13, "stop sign", "stop signs"),
    (28, "umbrella", "umbrellas"),
    (38, "kite", "kites"),
    (44, "bottle", "bottles"),
    (47, "cup", "cups"),
    (52, "banana", "bananas"),
    (59, "pizza", "pizzas"),
    (60, "donut", "donuts"),
    (72, "tv", "tvs"),
    (84, "book", "books"),
    (85, "clock", "clocks"),
]
SUPERCATEGORY = {10: "outdoor", 13: "outdoor", 28: "accessory", 38: "sports", 44: "kitchen", 47: "kitchen", 52: "food", 59: "food", 60: "food", 72: "electronic", 84: "indoor", 85: "indoor"}
NAMES = [c[1] for c in CATEGORIES]
BY_NAME = {c[1]: c for c in CATEGORIES}

# English name, RGB, Italian forms: masculine singular, feminine singular, masculine plural, feminine plural.
COLOURS: list[tuple[str, tuple[int, int, int], tuple[str, str, str, str]]] = [
    ("red", (215, 35, 35), ("rosso", "rossa", "rossi", "rosse")),
    ("green", (30, 160, 60), ("verde", "verde", "verdi", "verdi")),
    ("blue", (35, 75, 215), ("blu", "blu", "blu", "blu")),
    ("yellow", (235, 195, 20), ("giallo", "gialla", "gialli", "gialle")),
    ("purple", (135, 50, 175), ("viola", "viola", "viola", "viola")),
    ("pink", (240, 105, 170), ("rosa", "rosa", "rosa", "rosa")),  # not orange: an orange is a COCO object
]
COLOUR_RGB = {c[0]: c[1] for c in COLOURS}
COLOUR_IT = {c[0]: c[2] for c in COLOURS}

# Themes: typical objects and a faint background tint. Membership makes objects co-occur;
# objects in two themes (cup, umbrella, bottle, banana) become the popular ones.
THEMES: dict[str, tuple[list[str], tuple[int, int, int], float]] = {
    "street": (["traffic light", "stop sign", "umbrella"], (236, 236, 236), 0.25),
    "kitchen": (["cup", "bottle", "banana", "pizza", "donut"], (250, 243, 228), 0.30),
    "living room": (["tv", "book", "clock", "cup"], (232, 240, 250), 0.25),
    "park": (["kite", "umbrella", "bottle", "banana"], (232, 247, 232), 0.20),
}
OFF_THEME_WEIGHT = 0.06
# Presence questions about absent objects favour rare ones (weight 1 / train frequency ** NEGATIVE_SKEW), so a
# frequent object is more often a "yes" in training, the language prior that POPE's popular setting probes.
# docs/demo.md gives the figures each skew gave.
NEGATIVE_SKEW = 1.0

NUM_EN = {1: "a", 2: "two", 3: "three", 4: "four"}
NUM_EN_WORD = {1: "One", 2: "Two", 3: "Three", 4: "Four"}
NUM_IT = {2: "due", 3: "tre", 4: "quattro"}
NUM_IT_WORD = {1: "Uno", 2: "Due", 3: "Tre", 4: "Quattro"}


@dataclass
class Instance:
    category: str
    colour: str
    box: tuple[int, int, int, int]  # x, y, width, height in pixels


@dataclass
class Scene:
    id: int
    theme: str
    instances: list[Instance] = field(default_factory=list)

    def categories(self) -> list[str]:
        """Distinct categories in order of first appearance."""
        return list(dict.fromkeys(i.category for i in self.instances))

    def count(self, category: str) -> int:
        return sum(i.category == category for i in self.instances)

    def colours(self, category: str) -> list[str]:
        return list(dict.fromkeys(i.colour for i in self.instances if i.category == category))


# drawing --------------------------------------------------------------------------------------


def _polygon(cx: float, cy: float, r: float, n: int, phase: float = 0.0) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(phase + 2 * math.pi * k / n), cy + r * math.sin(phase + 2 * math.pi * k / n)) for k in range(n)]


def draw_icon(draw: ImageDraw.ImageDraw, category: str, box: tuple[int, int, int, int], rgb: tuple[int, int, int]) -> list[float]:
    """Draw one icon in its box; returns a COCO polygon (flat x,y list) of its outline."""
    x, y, w, h = box
    cx, cy, s = x + w / 2, y + h / 2, min(w, h)
    dark, white = (40, 40, 40), (255, 255, 255)
    rect = [x, y, x + w, y + h, x + w, y, x, y + h]
    if category == "traffic light":
        bx0, bx1 = cx - s * 0.22, cx + s * 0.22
        draw.rectangle([bx0, y, bx1, y + h], fill=rgb, outline=dark)
        for k, lamp in enumerate([(220, 30, 30), (240, 200, 0), (30, 180, 60)]):
            ly = y + h * (0.18 + 0.32 * k)
            draw.ellipse([cx - s * 0.14, ly - s * 0.14, cx + s * 0.14, ly + s * 0.14], fill=lamp)
        return [bx0, y, bx1, y, bx1, y + h, bx0, y + h]
    if category == "stop sign":
        pts = _polygon(cx, cy, s / 2, 8, math.pi / 8)
        draw.polygon(pts, fill=rgb, outline=dark)
        draw.rectangle([cx - s * 0.3, cy - s * 0.07, cx + s * 0.3, cy + s * 0.07], fill=white)
        return [v for p in pts for v in p]
    if category == "umbrella":
        draw.pieslice([x, y, x + w, y + h * 0.9], 180, 360, fill=rgb, outline=dark)
        draw.line([cx, cy, cx, y + h * 0.85], fill=dark, width=max(1, s // 14))
        draw.arc([cx - s * 0.16, y + h * 0.7, cx, y + h], 0, 180, fill=dark, width=max(1, s // 14))
        return [x, cy, x + w, cy, cx, y]
    if category == "kite":
        pts = [(cx, y), (x + w * 0.85, cy - h * 0.1), (cx, y + h * 0.8), (x + w * 0.15, cy - h * 0.1)]
        draw.polygon(pts, fill=rgb, outline=dark)
        draw.line([(cx, y + h * 0.8), (cx - s * 0.15, y + h * 0.9), (cx + s * 0.05, y + h)], fill=dark, width=max(1, s // 16))
        return [v for p in pts for v in p]
    if category == "bottle":
        draw.rectangle([cx - s * 0.2, y + h * 0.35, cx + s * 0.2, y + h], fill=rgb, outline=dark)
        draw.rectangle([cx - s * 0.08, y, cx + s * 0.08, y + h * 0.35], fill=rgb, outline=dark)
        return [cx - s * 0.08, y, cx + s * 0.08, y, cx + s * 0.2, y + h, cx - s * 0.2, y + h]
    if category == "cup":
        pts = [(x + w * 0.1, y + h * 0.2), (x + w * 0.7, y + h * 0.2), (x + w * 0.62, y + h), (x + w * 0.18, y + h)]
        draw.arc([x + w * 0.55, y + h * 0.35, x + w, y + h * 0.75], 270, 90, fill=rgb, width=max(2, s // 8))
        draw.polygon(pts, fill=rgb, outline=dark)
        return [v for p in pts for v in p]
    if category == "banana":
        draw.arc([x, y - h * 0.6, x + w, y + h], 25, 155, fill=rgb, width=max(3, s // 4))
        return [x, cy, x + w, cy, cx, y + h]
    if category == "pizza":
        pts = [(x, y), (x + w, y), (cx, y + h)]
        draw.polygon(pts, fill=rgb, outline=dark)
        draw.rectangle([x, y, x + w, y + h * 0.12], fill=(150, 90, 40))
        for fx, fy in [(0.35, 0.3), (0.62, 0.32), (0.5, 0.55)]:
            r = s * 0.06
            draw.ellipse([x + w * fx - r, y + h * fy - r, x + w * fx + r, y + h * fy + r], fill=(120, 20, 20))
        return [v for p in pts for v in p]
    if category == "donut":
        draw.ellipse([x, y, x + w, y + h], fill=rgb, outline=dark)
        draw.ellipse([cx - s * 0.17, cy - s * 0.17, cx + s * 0.17, cy + s * 0.17], fill=white, outline=dark)
        return [v for p in _polygon(cx, cy, s / 2, 12) for v in p]
    if category == "tv":
        draw.rectangle([x, y, x + w, y + h * 0.78], fill=rgb, outline=dark)
        draw.rectangle([x + w * 0.12, y + h * 0.1, x + w * 0.88, y + h * 0.66], fill=(30, 30, 45))
        draw.line([(cx - s * 0.25, y + h), (cx, y + h * 0.78), (cx + s * 0.25, y + h)], fill=dark, width=max(1, s // 14))
        return rect
    if category == "book":
        draw.rectangle([x + w * 0.1, y, x + w * 0.9, y + h], fill=rgb, outline=dark)
        draw.rectangle([x + w * 0.1, y, x + w * 0.25, y + h], fill=dark)
        for k in (0.3, 0.5):
            draw.line([(x + w * 0.35, y + h * k), (x + w * 0.8, y + h * k)], fill=white, width=max(1, s // 16))
        return rect
    if category == "clock":
        draw.ellipse([x, y, x + w, y + h], fill=white, outline=rgb, width=max(2, s // 7))
        draw.line([(cx, cy), (cx, y + h * 0.2)], fill=dark, width=max(1, s // 12))
        draw.line([(cx, cy), (x + w * 0.75, cy)], fill=dark, width=max(1, s // 12))
        return [v for p in _polygon(cx, cy, s / 2, 12) for v in p]
    raise KeyError(f"unknown category {category!r}")


def render(scene: Scene, size: int) -> Image.Image:
    img = Image.new("RGB", (size, size), THEMES[scene.theme][1])
    draw = ImageDraw.Draw(img)
    for inst in scene.instances:
        draw_icon(draw, inst.category, inst.box, COLOUR_RGB[inst.colour])
    return img


# sampling ------------------------------------------------------------------------------------


def _weighted(rng: random.Random, items: list[str], weights: list[float]) -> str:
    return rng.choices(items, weights=weights, k=1)[0]


def sample_scene(rng: random.Random, scene_id: int, size: int) -> Scene:
    """A theme, 2 to 4 distinct categories (mostly from the theme), 3 to 6 instances, no overlaps."""
    theme = _weighted(rng, list(THEMES), [t[2] for t in THEMES.values()])
    members = THEMES[theme][0]
    weights = [1.0 if n in members else OFF_THEME_WEIGHT for n in NAMES]
    n_cats = rng.choice([2, 3, 3, 4])
    cats: list[str] = []
    while len(cats) < n_cats:
        name = _weighted(rng, NAMES, weights)
        if name not in cats:
            cats.append(name)
    counts = {c: 1 for c in cats}
    while sum(counts.values()) < 3 or (sum(counts.values()) < 6 and rng.random() < 0.35):
        c = rng.choice(cats)
        if counts[c] < 3:
            counts[c] += 1
    scene = Scene(scene_id, theme)
    taken: list[tuple[int, int, int, int]] = []
    for cat in cats:
        for _ in range(counts[cat]):
            box = _place(rng, taken, size)
            if box is None:
                continue
            taken.append(box)
            scene.instances.append(Instance(cat, rng.choice(COLOURS)[0], box))
    return scene


def _place(rng: random.Random, taken: list[tuple[int, int, int, int]], size: int) -> tuple[int, int, int, int] | None:
    """A square box that overlaps no other, or None after enough tries."""
    lo, hi = int(size * 0.2), int(size * 0.3)
    for _ in range(200):
        s = rng.randint(lo, hi)
        x, y = rng.randint(2, size - s - 2), rng.randint(2, size - s - 2)
        if all(x + s + 2 <= bx or bx + bs + 2 <= x or y + s + 2 <= by or by + bs + 2 <= y for bx, by, bs, _ in taken):
            return (x, y, s, s)
    return None


# language ------------------------------------------------------------------------------------


def _article_en(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def italian(category: str) -> dict[str, str]:
    """Italian name, plural, gender and article of a category (audit/data/coco_categories_it.json)."""
    return coco_italian_names()[category]


def phrase_en(category: str, colour: str | None, n: int = 1) -> str:
    """'a red kite', 'two blue books'."""
    c = BY_NAME[category]
    noun = c[1] if n == 1 else c[2]
    words = f"{colour} {noun}" if colour else noun
    return f"{_article_en(words) if n == 1 else NUM_EN[n]} {words}"


def phrase_it(category: str, colour: str | None, n: int = 1) -> str:
    """'un aquilone rosso', 'due libri blu' (the adjective agrees with the noun)."""
    it = italian(category)
    noun = it["it"] if n == 1 else it["plural"]
    if colour:
        noun += " " + COLOUR_IT[colour][(0 if it["gender"] == "m" else 1) + (2 if n > 1 else 0)]
    return italian_phrase(category, noun) if n == 1 else f"{NUM_IT[n]} {noun}"


def _groups(scene: Scene) -> list[tuple[str, str, int]]:
    """(category, colour, count) in order of first appearance."""
    seen: Counter[tuple[str, str]] = Counter((i.category, i.colour) for i in scene.instances)
    return [(cat, col, n) for (cat, col), n in seen.items()]


def _join(parts: list[str], conj: str) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + f" {conj} " + parts[-1]


def captions(scene: Scene, lang: str) -> list[str]:
    """Two reference captions that name every object, with colours and counts."""
    if lang == "en":
        listed = _join([phrase_en(c, col, n) for c, col, n in _groups(scene)], "and")
        return [f"A picture of {listed}.", f"{listed[0].upper()}{listed[1:]} on a plain background."]
    listed = _join([phrase_it(c, col, n) for c, col, n in _groups(scene)], "e")
    return [f"Un'immagine con {listed}.", f"{listed[0].upper()}{listed[1:]} su uno sfondo semplice."]


YES = {"en": "Yes", "it": "Sì"}
CAPTION_PROMPTS = {
    "en": ["Generate a short caption of the image.", "Provide a brief description of the given image.", "Describe the image."],
    "it": ["Genera una breve didascalia dell'immagine.", "Fornisci una breve descrizione dell'immagine.", "Descrivi l'immagine."],
}


def presence_question(category: str, lang: str) -> str:
    """POPE's own wording ("Is there a/an {object} in the image?", "C'è un/uno/una/un' {oggetto} nell'immagine?")."""
    return question_text(category, lang)


def presence_answer(present: bool, lang: str) -> str:
    """A short answer: the yes/no token is then most of what the turn teaches."""
    return (YES[lang] if present else "No") + "."


def colour_qa(category: str, scene: Scene, lang: str) -> tuple[str, str]:
    cols = scene.colours(category)
    c = BY_NAME[category]
    if lang == "en":
        q = f"What colour is the {category}?" if scene.count(category) == 1 else f"What colours are the {c[2]}?"
        return q, _join(cols, "and").capitalize() + "."
    it = italian(category)
    gender, name, plural = it["gender"], it["it"], it["plural"]
    if scene.count(category) == 1:
        art = "l'" if name[0] in "aeiou" else ("il " if gender == "m" else "la ")
        q = f"Di che colore è {art}{name}?"
    else:
        art = "gli " if plural[0] in "aeiou" else ("i " if gender == "m" else "le ")
        q = f"Di che colore sono {art}{plural}?"
    idx = 0 if gender == "m" else 1
    return q, _join([COLOUR_IT[col][idx] for col in cols], "e").capitalize() + "."


def count_qa(category: str, scene: Scene, lang: str) -> tuple[str, str]:
    n = scene.count(category)
    if lang == "en":
        return f"How many {BY_NAME[category][2]} are there in the image?", NUM_EN_WORD.get(n, str(n)) + "."
    it = italian(category)
    masculine = it["gender"] == "m"
    word = ("Uno" if masculine else "Una") if n == 1 else NUM_IT_WORD.get(n, str(n))
    return f"{'Quanti' if masculine else 'Quante'} {it['plural']} ci sono nell'immagine?", word + "."


STATEMENT_PROMPT = "{text}\nIs the sentence above true for the image? Answer yes or no."


def statement(category: str, colour: str | None, lang: str = "en") -> str:
    if lang == "en":
        return f"There is {phrase_en(category, colour)} in the picture."
    return f"C'è {phrase_it(category, colour)} nell'immagine."


def _false_statement(rng: random.Random, scene: Scene) -> tuple[str, str]:
    """Half the time a wrong colour for an object that is there, half an object that is not."""
    present = scene.categories()
    if rng.random() < 0.5:
        cat = rng.choice(present)
        wrong = [c[0] for c in COLOURS if c[0] not in scene.colours(cat)]
        return cat, rng.choice(wrong)
    absent = [n for n in NAMES if n not in present]
    return rng.choice(absent), rng.choice(COLOURS)[0]


def _record(rec_id: str, image: str, turns: list[tuple[str, str]]) -> dict[str, Any]:
    convs = []
    for k, (q, a) in enumerate(turns):
        convs.append({"from": "human", "value": f"<image>\n{q}" if k == 0 else q})
        convs.append({"from": "gpt", "value": a})
    return {"id": rec_id, "image": image, "conversations": convs}


def _weighted_sample(rng: random.Random, items: list[str], weights: dict[str, float], k: int) -> list[str]:
    """k distinct items, each draw in proportion to its weight among those left."""
    left, picked = list(items), []
    for _ in range(min(k, len(left))):
        picked.append(left.pop(rng.choices(range(len(left)), weights=[weights[x] for x in left], k=1)[0]))
    return picked


def conversations(rng: random.Random, scene: Scene, lang: str, image: str, negative_weights: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """Two LLaVA conversations about one picture.

    The first asks POPE-like presence questions (up to three objects that are there, three that are
    not, drawn by `negative_weights`) with short answers; the second asks for a description and one colour, count or statement
    question, in random order. Presence gets a conversation of its own because a small LLM trained
    from scratch otherwise learns the language of the answers long before it learns to look at the
    picture (docs/demo.md)."""
    present = scene.categories()
    absent = [n for n in NAMES if n not in present]
    presence = [(presence_question(c, lang), presence_answer(True, lang)) for c in rng.sample(present, min(3, len(present)))]
    weights = negative_weights or dict.fromkeys(NAMES, 1.0)
    presence += [(presence_question(c, lang), presence_answer(False, lang)) for c in _weighted_sample(rng, absent, weights, 3)]
    rng.shuffle(presence)
    cat = rng.choice(present)
    kind = rng.random()
    if kind < 0.3:
        other = colour_qa(cat, scene, lang)
    elif kind < 0.6:
        other = count_qa(cat, scene, lang)
    else:
        with_colour, truth = rng.random() < 0.5, rng.random() < 0.5
        if truth:
            text = statement(cat, rng.choice(scene.colours(cat)) if with_colour else None, lang)
        elif with_colour:
            text = statement(*_false_statement(rng, scene), lang)
        else:
            text = statement(rng.choice(absent), None, lang)
        q = STATEMENT_PROMPT.format(text=text) if lang == "en" else f"{text}\nLa frase qui sopra è vera per l'immagine? Rispondi sì o no."
        other = (q, (YES[lang] if truth else "No") + ".")
    describe = [other, (rng.choice(CAPTION_PROMPTS[lang]), captions(scene, lang)[0])]
    rng.shuffle(describe)
    return [_record(f"{scene.id}-{lang}-presence", image, presence), _record(f"{scene.id}-{lang}-describe", image, describe)]


# writing -------------------------------------------------------------------------------------


@dataclass
class World:
    """Paths of everything `generate_world` wrote."""

    root: Path
    images: Path
    instances: dict[str, Path]
    captions: dict[tuple[str, str], Path]
    pretrain: dict[str, Path]
    instruct: dict[str, Path]
    memes: Path
    task: Path
    meta: Path


def file_name(image_id: int) -> str:
    return f"{image_id:06d}.png"


def _dump(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n")


def coco_categories() -> list[dict[str, Any]]:
    return [{"id": c[0], "name": c[1], "supercategory": SUPERCATEGORY[c[0]]} for c in CATEGORIES]


def coco_instances(scenes: list[Scene], size: int) -> dict[str, Any]:
    cat_id = {c[1]: c[0] for c in CATEGORIES}
    images = [{"id": s.id, "file_name": file_name(s.id), "width": size, "height": size} for s in scenes]
    anns, k = [], 1
    for s in scenes:
        scratch = ImageDraw.Draw(Image.new("RGB", (size, size)))
        for inst in s.instances:
            poly = draw_icon(scratch, inst.category, inst.box, (0, 0, 0))
            x, y, w, h = inst.box
            anns.append({
                "id": k, "image_id": s.id, "category_id": cat_id[inst.category], "bbox": [x, y, w, h], "area": w * h,
                "iscrowd": 0, "segmentation": [[round(v, 1) for v in poly]], "attributes": {"colour": inst.colour},
            })
            k += 1
    info = {"description": "annotaudit shapes world", "version": "1.0"}
    return {"info": info, "licenses": [], "images": images, "annotations": anns, "categories": coco_categories()}


def coco_captions(scenes: list[Scene], size: int, lang: str) -> dict[str, Any]:
    images = [{"id": s.id, "file_name": file_name(s.id), "width": size, "height": size} for s in scenes]
    anns, k = [], 1
    for s in scenes:
        for cap in captions(s, lang):
            anns.append({"id": k, "image_id": s.id, "caption": cap})
            k += 1
    return {"info": {"description": f"annotaudit shapes world captions ({lang})"}, "licenses": [], "images": images, "annotations": anns}


def _interleave(a: list[Any], b: list[Any]) -> list[Any]:
    return [x for pair in zip(a, b) for x in pair]


TASK_YAML = """\
# The shapes world's image+text task, in the Hateful Memes layout: label 1 (read as "hateful")
# flags a sentence that is false of its picture, label 0 ("not_hateful") a true one.
name: shapes_statements
dataset: hateful_memes
prompt: "{text}\\nIs the sentence above true for the image? Answer yes or no."
labels: [hateful, not_hateful]
verbalizers: {hateful: "No", not_hateful: "Yes"}
patterns:
  hateful: ["^no", "^false", "not true", "^non"]
  not_hateful: ["^yes", "^true", "^s[iì]"]
positive: hateful
"""


# Three simulated crowd workers, each flipping the fact at a rate of their own, on a random sample of the training items.
CROWD_FLIP_RATES = {"crowd1": 0.08, "crowd2": 0.12, "crowd3": 0.20}
CROWD_ITEMS = 120
CROWD_FILE = "crowd.csv"
CROWD_LABELS = {0: "not_hateful", 1: "hateful"}  # the task's labels for a true (0) and a false (1) sentence


def generate_world(out: str | Path, n_train: int = 1200, n_val: int = 150, n_memes: int = 300, seed: int = 0, image_size: int = 128, human_error: float = 0.05,
                   negative_skew: float = NEGATIVE_SKEW, crowd_items: int = CROWD_ITEMS) -> World:
    """Write the whole world under `out`; the same arguments always give the same bytes."""
    root = Path(out)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    scenes = [sample_scene(rng, i + 1, image_size) for i in range(n_train + n_val)]
    for s in scenes:
        render(s, image_size).save(img_dir / file_name(s.id), format="PNG", optimize=False)
    splits = {"train": scenes[:n_train], "val": scenes[n_train:]}
    instances = {k: _dump(root / f"annotations/instances_{k}.json", coco_instances(v, image_size)) for k, v in splits.items()}
    caps = {(k, lang): _dump(root / f"annotations/captions_{k}_{lang}.json", coco_captions(v, image_size, lang)) for k, v in splits.items() for lang in ("en", "it")}
    freq = Counter(c for s in splits["train"] for c in s.categories())
    negative_weights = {n: (1.0 / max(freq[n], 1)) ** negative_skew for n in NAMES}
    pretrain, instruct = {}, {}
    for lang in ("en", "it"):
        lrng = random.Random(f"{seed}-{lang}")
        pre = [
            {"id": f"{s.id}-{lang}", "image": file_name(s.id), "conversations": [
                {"from": "human", "value": "<image>\n" + lrng.choice(CAPTION_PROMPTS[lang])}, {"from": "gpt", "value": lrng.choice(captions(s, lang))}]}
            for s in splits["train"]
        ]
        pretrain[lang] = _dump(root / f"llava/pretrain_{lang}.json", pre)
        instruct[lang] = _dump(root / f"llava/instruct_{lang}.json", [c for s in splits["train"] for c in conversations(lrng, s, lang, file_name(s.id), negative_weights)])
    for key, files in (("pretrain", pretrain), ("instruct", instruct)):
        both = _interleave(*(read_json(files[lang]) for lang in ("en", "it")))
        files["both"] = _dump(root / f"llava/{key}.json", both)
    memes_dir, task = _write_memes(root, n_memes, n_train + n_val + 1, image_size, random.Random(f"{seed}-memes"), human_error)
    write_crowd(memes_dir, random.Random(f"{seed}-crowd"), crowd_items)
    meta = _dump(root / "world.json", _meta(splits, freq, seed, image_size, n_memes, negative_skew))
    return World(root, img_dir, instances, caps, pretrain, instruct, memes_dir, task, meta)


MEME_OBJECTS = NAMES


def presence_statement(category: str) -> str:
    return f"There is {phrase_en(category, None)} in the picture."


def _meme_scene(rng: random.Random, scene_id: int, size: int) -> tuple[Scene, str, bool]:
    """A scene, the object a statement names, and whether it is there.

    The object is drawn uniformly and its presence by a fair coin, then scenes are drawn until they
    agree: the sentence alone says nothing about its label, so only a model that looks can do better
    than chance."""
    category, present = rng.choice(MEME_OBJECTS), rng.random() < 0.5
    while True:
        scene = sample_scene(rng, scene_id, size)
        if (category in scene.categories()) == present:
            return scene, category, present


def _write_memes(root: Path, n: int, first_id: int, size: int, rng: random.Random, human_error: float) -> tuple[Path, Path]:
    """Presence statements about pictures of their own, in the Hateful Memes layout, with 'human' labels that slip now and then."""
    memes = root / "memes"
    (memes / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        scene, category, present = _meme_scene(rng, first_id + k, size)
        truth = 0 if present else 1
        label = 1 - truth if rng.random() < human_error else truth
        render(scene, size).save(memes / "img" / file_name(scene.id), format="PNG", optimize=False)
        rows.append({"id": scene.id, "img": f"img/{file_name(scene.id)}", "label": label, "text": presence_statement(category), "truth": truth,
                     "objects": scene.categories()})
    parts = {"train": rows[: n * 6 // 10], "dev_seen": rows[n * 6 // 10 : n * 7 // 10], "test_unseen": rows[n * 7 // 10 :]}
    for name, part in parts.items():
        write_text(memes / f"{name}.jsonl", "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in part))
    task = memes / "task.yaml"
    write_text(task, TASK_YAML)
    return memes, task


def write_crowd(memes: Path, rng: random.Random, n_items: int = CROWD_ITEMS) -> Path | None:
    """memes/crowd.csv: the crowd workers' labels (item, annotator, label) on `n_items` training items drawn uniformly.

    The draws come from a stream of their own, after everything else is written, so the rest of the world is
    the same bytes with or without them; none are written when `n_items` is 0."""
    if n_items <= 0:
        return None
    rows = [rec for line in (memes / "train.jsonl").read_text().splitlines() if line for rec in [json.loads(line)]]
    picked = sorted(rng.sample(rows, min(n_items, len(rows))), key=lambda r: r["id"])
    lines = ["item,annotator,label"]
    for rec in picked:
        for annotator, rate in CROWD_FLIP_RATES.items():
            label = 1 - rec["truth"] if rng.random() < rate else rec["truth"]
            lines.append(f"{rec['id']},{annotator},{CROWD_LABELS[label]}")
    return write_text(memes / CROWD_FILE, "\n".join(lines) + "\n")


def _meta(splits: dict[str, list[Scene]], freq: Counter[str], seed: int, size: int, n_memes: int, negative_skew: float) -> dict[str, Any]:
    pairs: Counter[str] = Counter()
    for s in splits["train"]:
        cats = sorted(s.categories())
        for i, a in enumerate(cats):
            for b in cats[i + 1 :]:
                pairs[f"{a}|{b}"] += 1
    return {
        "seed": seed, "image_size": size, "splits": {k: [s.id for s in v] for k, v in splits.items()}, "n_memes": n_memes,
        "negative_skew": negative_skew,
        "categories": [{"id": i, "name": name, "plural": plural, "it": it["it"], "it_plural": it["plural"], "it_gender": it["gender"]}
                       for i, name, plural in CATEGORIES for it in [italian(name)]],
        "colours": {c[0]: {"rgb": list(c[1]), "it": list(c[2])} for c in COLOURS},
        "themes": {k: {"objects": v[0], "background": list(v[1]), "weight": v[2]} for k, v in THEMES.items()},
        "train_frequency": dict(freq.most_common()), "train_co_occurrence": dict(pairs.most_common()),
    }
