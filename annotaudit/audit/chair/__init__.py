"""CHAIR: the metric (metric), its words and vocabularies (words) and captioning a model (run)."""

from annotaudit.audit.chair.metric import *  # noqa: F401,F403
