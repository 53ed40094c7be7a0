"""Names several floors share, defined once here so the audits, compare and the demo cannot drift apart."""

from __future__ import annotations

# POPE's three ways of picking the absent objects it asks about (Li et al. 2023), in the paper's order.
SETTINGS = ("random", "popular", "adversarial")
# The languages POPE questions and CHAIR captions come in: English and Italian.
LANGUAGES = ("en", "it")
