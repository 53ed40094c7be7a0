"""The four Italian formattings of the output-limiting instruction, and the two answer metrics."""

from __future__ import annotations

import re

# formatting -> (sentence for open-ended questions, sentence for closed-ended ones, where, separator)
FORMATTINGS: dict[str, tuple[str, str, str, str]] = {
    "post": ("Rispondi utilizzando una sola parola o frase.", "Rispondi utilizzando direttamente la lettera dell'opzione corretta tra quelle date.", "after", "\n"),
    "pre-swap": ("Rispondi utilizzando una sola parola o frase.", "Rispondi utilizzando direttamente la lettera dell'opzione corretta tra quelle date.", "before", "\n"),
    "post-swap": ("Rispondi in modo breve e diretto.", "Rispondi con la lettera.", "after", " "),
    "pre": ("Rispondi in modo breve e diretto.", "Rispondi con la lettera.", "before", " "),
}
NAMES = tuple(FORMATTINGS)


def parse_formattings(choice: str) -> list[str]:
    """'all' or a comma-separated subset of post, pre-swap, post-swap, pre."""
    if choice == "all":
        return list(NAMES)
    names = [c.strip() for c in choice.split(",") if c.strip()]
    bad = [n for n in names if n not in FORMATTINGS]
    if bad or not names:
        raise ValueError(f"unknown formatting {', '.join(bad) or choice!r}; use all or some of {', '.join(NAMES)}")
    return names


def format_prompt(question: str, formatting: str, closed: bool) -> str:
    """Put the instruction before or after the question, joined by a newline or a space."""
    open_text, closed_text, where, sep = FORMATTINGS[formatting]
    instruction = closed_text if closed else open_text
    return instruction + sep + question if where == "before" else question + sep + instruction


def match_key(text: str) -> str:
    """Lowercase and drop all whitespace, as the paper's exact match does."""
    return re.sub(r"\s+", "", text.lower())


def _labels(label: str | list[str]) -> list[str]:
    return [label] if isinstance(label, str) else [str(v) for v in label]


def exact_match(output: str, label: str | list[str]) -> bool:
    return any(match_key(output) == match_key(v) for v in _labels(label))


def approx_match(output: str, label: str | list[str]) -> bool:
    """The label appears anywhere in the output (after the same normalisation)."""
    return any(match_key(v) and match_key(v) in match_key(output) for v in _labels(label))
