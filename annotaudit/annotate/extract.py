"""Turn a model's free-text answer into a label, or NOANSWER when it cannot be read.

Text is normalised (NFKC, lower case, straight apostrophes, markdown and double quotes stripped,
spaces collapsed);
each label's patterns match whole words. A mention preceded, within the same clause and three
words, by a negation ("not", "no", "isn't", "non-", "never") does not count for its label, and
counts for the task's `negated` label where there is one. Single-label tasks then need exactly one
label, first over the whole answer, then over its first sentence; otherwise NOANSWER.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from functools import lru_cache

import regex

from annotaudit.core.tasks import NOANSWER, Task

NEGATION = regex.compile(r"(?:\b(?:not|no|never|neither|nor|without|hardly)\b|n't\b|\bnon[- ]?)(?:[^\S\n]*[\w'-]+){0,3}?[^\S\n]*[- ]?$")
UNSURE = regex.compile(r"(?:\b(?:do not|don't|not|cannot|can't|unable to|impossible to|hard to|difficult to)\s+(?:know|sure|determine|tell|say|decide|judge)\b)")
CLAUSE_END = regex.compile(r"[.;:!?,\n]|\bbut\b|\bhowever\b")
SENTENCE = regex.compile(r"(?<=[.!?\n])\s")


def normalize(text: str) -> str:
    """Lower-case NFKC text with straight quotes, no markdown emphasis, single spaces."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    text = regex.sub(r"[*_#>\"\u201c\u201d\u00ab\u00bb]+", " ", text)
    return regex.sub(r"[^\S\n]+", " ", text).strip()


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> regex.Pattern:
    """Whole-word: no word character may touch the match on either side (`^` keeps its meaning)."""
    anchored = pattern.startswith("^")
    body = pattern[1:] if anchored else pattern
    return regex.compile(("^\\W*" if anchored else "(?<!\\w)") + "(?:" + body + ")(?!\\w)", regex.IGNORECASE)


def _context(text: str, start: int) -> str | None:
    """"unsure" when the clause before a mention hedges, "negated" when it negates, else None."""
    clause = CLAUSE_END.split(text[max(0, start - 80) : start])[-1]
    if UNSURE.search(clause):
        return "unsure"
    return "negated" if NEGATION.search(clause) else None


def mentions(text: str, task: Task) -> Counter[str]:
    """Asserted labels in normalised text, after negation; overlapping matches count once."""
    found: Counter[str] = Counter()
    taken: list[tuple[int, int]] = []
    spans = []
    for label in task.labels:
        for pattern in task.patterns[label]:
            for m in _compiled(pattern).finditer(text):
                spans.append((m.start(), -(m.end() - m.start()), m.end(), label))
    for start, _, end, label in sorted(spans):
        if any(start < e and s < end for s, e in taken):
            continue
        taken.append((start, end))
        context = _context(text, start)
        if context == "unsure":
            continue
        if context == "negated":
            flipped = task.negated.get(label)
            if flipped:
                found[flipped] += 1
        else:
            found[label] += 1
    return found


def _resolve(labels: set[str], task: Task) -> set[str]:
    for combined, parts in task.combine.items():
        if combined in labels or set(parts) <= labels:
            labels = (labels - set(parts)) | {combined}
    return labels


def extract(text: str, task: Task) -> str | list[str]:
    """The label a reply gives (a list for multi-label tasks), or NOANSWER."""
    norm = normalize(text)
    if not norm:
        return NOANSWER
    labels = _resolve(set(mentions(norm, task)), task)
    if task.multi_label:
        return [lab for lab in task.labels if lab in labels] or NOANSWER
    if len(labels) == 1:
        return labels.pop()
    if labels:
        first = SENTENCE.split(norm, maxsplit=1)[0]
        head = _resolve(set(mentions(first, task)), task)
        if len(head) == 1:
            return head.pop()
    return NOANSWER


def vote(labels: list[str | list[str]], task: Task) -> tuple[str | list[str], float, dict[str, float]]:
    """Majority vote over several samples: (label, agreement, share of samples per label).

    NOANSWER samples count in the denominator, so they lower the agreement. Ties go to the label
    that appears first. Multi-label: a label is kept when most answering samples give it.
    """
    k = len(labels)
    if task.multi_label:
        answered = [set(x) for x in labels if x != NOANSWER]
        share = {lab: sum(lab in s for s in answered) / k for lab in task.labels}
        if not answered:
            return NOANSWER, 0.0, share
        chosen = [lab for lab in task.labels if sum(lab in s for s in answered) * 2 > len(answered)] or NOANSWER
        agree = sum(s == set(chosen if chosen != NOANSWER else []) for s in answered) / k
        return chosen, agree, share
    counts = Counter(x for x in labels if x != NOANSWER)
    share = {lab: counts.get(lab, 0) / k for lab in task.labels}
    if not counts:
        return NOANSWER, 0.0, share
    best = max(counts.values())
    winner = next(x for x in labels if x != NOANSWER and counts[x] == best)
    return winner, best / k, share
