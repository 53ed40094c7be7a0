"""Shared fixtures: tiny offline models built once per session, and the real SmolLM2 GGUF."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """tiny(kind) -> path of a saved tiny model of that kind (see annotaudit.testing.tiny_models.BUILDERS), built once."""
    from annotaudit.testing.tiny_models import BUILDERS

    root = tmp_path_factory.mktemp("tiny-models")
    built: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in built:
            built[kind] = BUILDERS[kind](root / kind)
        return built[kind]

    return get


@pytest.fixture(scope="session")
def smollm2():
    """The real SmolLM2-135M-Instruct, loaded once (about 25 s)."""
    from annotaudit.models import load_model

    return load_model("smollm2-135m-instruct")
