"""Small datasets in the real on-disk formats, written by the tests, images drawn with Pillow."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image, ImageDraw

MEMES = [
    (42953, "its their character not their color that matters", 0),
    (23058, "don't be afraid to love again everyone is not like your ex", 0),
    (13894, "putting bows on your pet", 0),
    (37408, "i love everything and everybody! except for squirrels i hate squirrels", 0),
    (82403, "everybody loves chocolate chip cookies, even hitler", 1),
    (16952, "go sports! do the thing! win the points!", 1),
]

MOVIES = [
    ("0000008", "A woman inherits a farm and must keep it running through a long winter.", ["Drama"]),
    ("0000013", "Two clumsy friends open a bakery and set the kitchen on fire every week.", ["Comedy", "Romance"]),
    ("0000021", "A grieving father takes a road trip and finds laughter with strangers.", ["Comedy", "Drama"]),
    ("0000030", "A haunted house terrifies a family.", ["Horror", "Thriller"]),
    ("0000042", "A boxer fights his last match.", ["Drama", "Sport"]),
]

XNLI_HEADER = ["language", "gold_label", "sentence1_binary_parse", "sentence2_binary_parse", "sentence1_parse",
               "sentence2_parse", "sentence1", "sentence2", "promptID", "pairID", "genre", "sentence1_tokenized",
               "sentence2_tokenized", "match"]
PAIRS = [
    ("1", "entailment", ("A man is playing a guitar on stage.", "A man plays music."),
     ("Un homme joue de la guitare sur scène.", "Un homme joue de la musique.")),
    ("2", "contradiction", ("The cat is asleep on the sofa.", "The cat is running outside."),
     ("Le chat dort sur le canapé.", "Le chat court dehors.")),
    ("3", "neutral", ("She bought a \"new\" car.", "She likes red cars."),
     ("Elle a acheté une \"nouvelle\" voiture.", "Elle aime les voitures rouges.")),
]


def draw(path: Path, seed: int, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (48, 48), (255, 255, 255))
    d = ImageDraw.Draw(img)
    d.ellipse((4 + seed % 7, 4, 30, 30), fill=(200, 30 * (seed % 8), 40))
    d.rectangle((24, 20, 44, 44), fill=(30, 60, 200))
    img.save(path, fmt)


def hateful_memes(root: Path, split: str = "dev_seen", labels: bool = True) -> Path:
    """`root/<split>.jsonl` with images under `root/img/`."""
    root.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (mid, text, label) in enumerate(MEMES):
        draw(root / "img" / f"{mid:05d}.png", i)
        rec = {"id": mid, "img": f"img/{mid:05d}.png", "text": text}
        if labels:
            rec["label"] = label
        lines.append(json.dumps(rec))
    (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    return root


def mmimdb(root: Path) -> Path:
    """Arevalo's layout: root/mmimdb/split.json and root/mmimdb/dataset/<id>.json + <id>.jpeg."""
    base = root / "mmimdb"
    ds = base / "dataset"
    ds.mkdir(parents=True, exist_ok=True)
    for i, (mid, plot, genres) in enumerate(MOVIES):
        (ds / f"{mid}.json").write_text(json.dumps({"title": f"Movie {mid}", "plot": [plot, plot + " Longer."], "genres": genres}))
        draw(ds / f"{mid}.jpeg", i, "JPEG")
    (base / "split.json").write_text(json.dumps({"train": [], "dev": [m[0] for m in MOVIES], "test": []}))
    return root


def xnli(path: Path) -> Path:
    """An XNLI-1.0 style TSV: header, tab-separated, quotes left as they are."""
    rows = ["\t".join(XNLI_HEADER)]
    for pair_id, label, en, fr in PAIRS:
        for lang, (s1, s2) in (("en", en), ("fr", fr)):
            cells = {"language": lang, "gold_label": label, "sentence1": s1, "sentence2": s2, "pairID": pair_id, "promptID": pair_id,
                     "genre": "fiction", "match": "True"}
            rows.append("\t".join(cells.get(c, "") for c in XNLI_HEADER))
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


SENTIMENT_TOML = """\
name = "sentiment"
prompt = "Review: {text}\\nIs this review positive or negative? Answer with one word."
labels = ["positive", "negative"]
positive = "positive"

[verbalizers]
positive = "Positive"
negative = "Negative"

[patterns]
positive = ["positive", "good"]
negative = ["negative", "bad"]
"""


def generic_csv(root: Path) -> tuple[Path, Path]:
    """A user's CSV (one row with an image) and a ten-line TOML task file."""
    root.mkdir(parents=True, exist_ok=True)
    draw(root / "pics" / "a.png", 3)
    csv = root / "reviews.csv"
    csv.write_text(
        "id,text,image,label\n"
        "r1,\"Great film, I loved it\",pics/a.png,positive\n"
        "r2,Terrible and boring,,negative\n"
        "r3,\"Fine, nothing special\",,Negative\n"
        "r4,A wonderful surprise,,positive\n",
        encoding="utf-8",
    )
    task = root / "sentiment.toml"
    task.write_text(SENTIMENT_TOML, encoding="utf-8")
    return csv, task
