"""Shared fixtures: tiny offline models built once per session, the real SmolLM2 GGUF, one quick demo, headless Chromium."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANNOTAUDIT_NO_PROGRESS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    """Tests never touch the user's cache: theirs lives in pytest's cache folder and is kept between sessions,
    so SmolLM2 is de-quantised once and later loads (in any session) read its safetensors."""
    cache = getattr(config, "cache", None)
    folder = cache.mkdir("annotaudit-cache") if cache is not None else Path(tempfile.mkdtemp(prefix="annotaudit-cache-"))
    os.environ["ANNOTAUDIT_CACHE"] = str(folder)


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
    """The real SmolLM2-135M-Instruct, loaded once (about 25 s the first time, about 1 s once cached)."""
    from annotaudit.models import load_model

    return load_model("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory) -> Path:
    """The output folder of `annotaudit demo --quick`, run once through the command line as CI runs it (about a minute)."""
    from typer.testing import CliRunner

    from annotaudit.cli.main import app

    out = tmp_path_factory.mktemp("quick-demo") / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


@pytest.fixture(scope="session")
def chromium() -> str:
    """Headless Chromium (installed with apt-get when missing and running as root); the test is skipped without it."""
    from annotaudit.testing.browser import CHROMIUM, find_chromium

    found = find_chromium(install=True)
    if found is None:
        pytest.skip(f"headless Chromium needed: {CHROMIUM} is missing and could not be installed (apt-get needs root)")
    return found
