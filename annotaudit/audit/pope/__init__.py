"""POPE: the protocol (prompts, parsers, metrics), building question sets (build), published formats (formats),
label sets side by side (labels) and running a model (run)."""

from annotaudit.audit.pope.protocol import *  # noqa: F401,F403
from annotaudit.core.vocab import LANGUAGES, SETTINGS  # noqa: F401
