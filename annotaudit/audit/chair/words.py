"""Words for CHAIR: tokenizing and singularizing English captions the way the reference did, and
the English and Italian vocabularies that name the 80 COCO categories.

The CHAIR authors singularized with the `pattern` library and tokenized with nltk; neither's data
can be downloaded here. `singularize` reproduces the behaviour of pattern's rules on nouns
(including its quirks, such as "bus" -> "bu" and "glass" -> "glas") by default, so that scores
match the literature; `fix_quirks=True` corrects those quirks.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

from annotaudit.core.io import read_json

DATA = Path(__file__).resolve().parent.parent / "data"

COCO_CATEGORIES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

# Tokens: words (hyphenated compounds stay whole, as nltk keeps them) and single punctuation marks,
# which block two-word phrases across them. Apostrophes split ("dog's" -> dog ' s).
TOKEN_RE = re.compile(r"[^\W_]+(?:-[^\W_]+)*|[^\w\s]")

# English singularization, reference behaviour ------------------------------------------------------

# Words left as they are; like the reference, a token is left alone when one of these ends with it.
_INVARIANT = (
    "bison debris headquarters pincers trout bream diabetes herpes pliers tuna breeches djinn high-jinks "
    "proceedings whiting britches eland homework rabies wildebeest carp elk innings salmon chassis flounder "
    "jackanapes scissors christmas gallows mackerel series clippers georgia measles shears cod graffiti mews "
    "species contretemps mumps swine corps news swiss advice equipment happiness luggage software bread fruit "
    "information mathematics progress understanding butter furniture ketchup mayonnaise research water cheese "
    "garbage knowledge meat rice electricity gravel love mustard sand"
).split()
_INVARIANT_TAILS = frozenset(w[i:] for w in _INVARIANT for i in range(len(w)))

# Plurals in -ies of words in -ie: the reference returns these unchanged (so "collies" never matches).
_IE_WORDS = (
    "alergie cutie hoagie newbie softie veggie auntie doggie hottie nightie sortie weenie beanie eyrie indie "
    "oldie stoolie yuppie birdie freebie junkie sweetie zombie bogie goonie laddie pixie techie bombie groupie "
    "laramie quickie collie hankie lingerie reverie toughie cookie hippie meanie rookie valkyrie"
).split()
_IE_PLURALS = tuple(w + "s" for w in _IE_WORDS)

# Irregular plurals, matched as word endings ("women" -> "woman"); first match wins.
_IRREGULAR = (
    ("atlantes", "atlas"), ("atlases", "atlas"), ("axes", "axe"), ("beeves", "beef"), ("brethren", "brother"),
    ("children", "child"), ("corpora", "corpus"), ("corpuses", "corpus"), ("ephemerides", "ephemeris"),
    ("feet", "foot"), ("ganglia", "ganglion"), ("geese", "goose"), ("genera", "genus"), ("genii", "genie"),
    ("graffiti", "graffito"), ("helves", "helve"), ("kine", "cow"), ("leaves", "leaf"), ("loaves", "loaf"),
    ("men", "man"), ("mongooses", "mongoose"), ("monies", "money"), ("moves", "move"), ("mythoi", "mythos"),
    ("numena", "numen"), ("occipita", "occiput"), ("octopodes", "octopus"), ("opera", "opus"), ("opuses", "opus"),
    ("our", "my"), ("oxen", "ox"), ("penes", "penis"), ("penises", "penis"), ("people", "person"), ("sexes", "sex"),
    ("soliloquies", "soliloquy"), ("teeth", "tooth"), ("testes", "testis"), ("trilbys", "trilby"), ("turves", "turf"),
    ("zoa", "zoon"),
)

# Suffix rules in order; the first that matches is applied. The last one strips any final "s".
_RULES = [
    (re.compile(p), r)
    for p, r in (
        (r"(.)ae$", r"\1a"), (r"(.)itis$", r"\1itis"), (r"(.)eaux$", r"\1eau"), (r"(quiz)zes$", r"\1"),
        (r"(matr)ices$", r"\1ix"), (r"(ap|vert|ind)ices$", r"\1ex"), (r"^(ox)en", r"\1"), (r"(alias|status)es$", r"\1"),
        (r"([octop|vir])i$", r"\1us"),  # a character class in the reference, kept as it behaves
        (r"(cris|ax|test)es$", r"\1is"), (r"(shoe)s$", r"\1"), (r"(o)es$", r"\1"), (r"(bus)es$", r"\1"),
        (r"([m|l])ice$", r"\1ouse"), (r"(x|ch|ss|sh)es$", r"\1"), (r"(m)ovies$", r"\1ovie"), (r"(.)ombies$", r"\1ombie"),
        (r"(s)eries$", r"\1eries"), (r"([^aeiouy]|qu)ies$", r"\1y"),
        (r"([aeo]l)ves$", r"\1f"), (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
        (r"([nlw]i)ves$", r"\1fe"), (r"([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"), (r"(sive)s$", r"\1"),
        (r"(tive)s$", r"\1"), (r"(hive)s$", r"\1"), (r"([^f])ves$", r"\1fe"),
        (r"(^analy)ses$", r"\1sis"), (r"((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
        (r"(.)opses$", r"\1opsis"), (r"(.)yses$", r"\1ysis"), (r"(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
        (r"(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"), (r"(.)oses$", r"\1osis"),
        (r"([ti])a$", r"\1um"), (r"(n)ews$", r"\1ews"), (r"s$", ""),
    )
]

# With fix_quirks: singular words the reference damages, and -ie plurals it leaves plural.
_FIX_KEEP_ENDINGS = ("ss", "us", "is")
_FIX_IE_PLURALS = tuple(w + "s" for w in ("tie", "pie", "collie", "doggie", "cookie", "hoagie", "veggie", "birdie", "goalie", "brownie", "zombie"))


@cache
def singularize(word: str, fix_quirks: bool = False) -> str:
    """Singular of a lower-cased English noun; the reference's behaviour unless fix_quirks."""
    if fix_quirks:
        if word.endswith(_FIX_KEEP_ENDINGS):
            return word
        if word.endswith(_FIX_IE_PLURALS):
            return word[:-1]
    if word in _INVARIANT_TAILS:
        return word
    if word.endswith(_IE_PLURALS):
        return word
    for plural, singular in _IRREGULAR:
        if word.endswith(plural):
            return word[: len(word) - len(plural)] + singular
    for pattern, repl in _RULES:
        if pattern.search(word):
            return pattern.sub(repl, word, count=1)
    return word


# English phrases ----------------------------------------------------------------------------------

ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")

# Two-word phrases (after singularization) that are merged before matching, and what they become.
# "home plate" and "train track" are merged so that they do not count as plate or train.
_EN_COMPOUNDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate", "train track",
)


def english_phrases() -> dict[str, str]:
    """Two-word phrase -> the word it becomes (itself for compounds)."""
    phrases = {p: p for p in _EN_COMPOUNDS}
    for animal in ANIMALS:
        phrases[f"baby {animal}"] = animal
        phrases[f"adult {animal}"] = animal
    phrases.update({"passenger jet": "jet", "passenger train": "train", "bow tie": "tie", "toilet seat": "toilet"})
    phrases["wine glas"] = "wine glass"  # what "wine glass" becomes after the reference's singularization
    return phrases


def _data(name: str) -> Any:
    return read_json(DATA / name)


@cache
def english_vocabulary(fix_quirks: bool = False) -> dict[str, str]:
    """Word or phrase -> COCO category, from audit/data/chair_synonyms_en.json."""
    table = _data("chair_synonyms_en.json")
    vocab: dict[str, str] = {}
    groups = [table["categories"]] + ([table["fixed_only"]] if fix_quirks else [])
    for group in groups:
        for category, words in group.items():
            vocab[category] = category
            for w in words:
                vocab[w] = category
    return vocab


# Italian: apostrophes separate words ("l'idrante" -> l idrante); other punctuation blocks phrases.
IT_TOKEN_RE = re.compile(r"[^\W_]+|[^\w\s'\u2019]")


def italian_words(text: str) -> tuple[str, ...]:
    return tuple(IT_TOKEN_RE.findall(text.lower()))


@cache
def italian_synonyms() -> dict[str, Any]:
    """The Italian table: words per category, phrases that name no object, young/adult words, seat words."""
    return _data("chair_synonyms_it.json")


@cache
def italian_vocabulary() -> dict[tuple[str, ...], str | None]:
    """Italian phrase (tuple of words) -> COCO category, or None for phrases that name no object
    ("macchina fotografica" is a camera, not a car). Young and adult animals ("cucciolo di
    elefante", "elefante adulto") become the animal, as "baby elephant" does in English."""
    table = italian_synonyms()
    vocab: dict[tuple[str, ...], str | None] = {}
    for category, words in table["categories"].items():
        for w in words:
            vocab[italian_words(w)] = category
    for w in table["not_objects"]:
        vocab[italian_words(w)] = None
    for category in table["young_of"]:
        for w in table["categories"][category]:
            if " " in w:
                continue
            for young in table["young_words"]:
                for link in ("di", "d"):
                    vocab[(young, link, w)] = category
            for adult in table["adult_words"]:
                vocab[(w, adult)] = category
    return vocab
