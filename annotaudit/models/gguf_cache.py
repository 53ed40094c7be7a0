"""A cache of de-quantised GGUF models, so that only the first load of a GGUF file pays for de-quantising it.

An entry is a plain safetensors model folder (weights, config, tokenizer) under
`<cache root>/gguf/<gguf name>-<key digest>`, where the key is the GGUF file's SHA-256, the dtype, the
transformers version and the tokenizer options. It is written in a temporary folder and renamed into place
once complete, and it is used only when its manifest holds the same key and every file it lists has the size
it records, so a load killed half-way leaves nothing a later load would use.

This module imports neither torch nor transformers, so `annotaudit models list` stays fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import cache_root, write_text

MANIFEST = "annotaudit-cache.json"
HASH_MEMOS = "hashes"
_TMP = ".tmp-"
SETTLED_NS = 2_000_000_000  # a file's hash is remembered only once it has been left alone this long


def gguf_cache_dir() -> Path:
    return cache_root() / "gguf"


def cache_enabled() -> bool:
    """Off when ANNOTAUDIT_NO_CACHE is set to anything but '' or '0'."""
    return os.environ.get("ANNOTAUDIT_NO_CACHE", "") in ("", "0")


def transformers_version() -> str:
    return metadata.version("transformers")


# the GGUF file's content hash, remembered by (path, size, times, inode) -------------------------------


def _stat_key(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino, "device": st.st_dev}


def _memo_file(path: Path) -> Path:
    return gguf_cache_dir() / HASH_MEMOS / (hashlib.sha256(str(path).encode()).hexdigest()[:32] + ".json")


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes. Hashed on first sight; later calls cost a stat while the file's size,
    modification and change times and inode stay the same (the memo lives in the cache folder)."""
    path = Path(path).resolve()
    stat = _stat_key(path)
    memo = _memo_file(path)
    try:
        known = json.loads(memo.read_text())
        if known.get("stat") == stat and isinstance(known.get("sha256"), str):
            return known["sha256"]
    except (OSError, ValueError):
        pass
    with path.open("rb") as fh:
        digest = hashlib.file_digest(fh, "sha256").hexdigest()
    if time.time_ns() - max(stat["mtime_ns"], stat["ctime_ns"]) < SETTLED_NS:
        return digest  # a file changed this recently could change again within the same timestamp tick
    try:
        write_text(memo, json.dumps({"stat": stat, "sha256": digest}, indent=1, sort_keys=True))
    except InputError:
        pass  # a read-only cache only costs the next load a re-hash
    return digest


# entries ------------------------------------------------------------------------------------------


def cache_key(gguf: str | Path, dtype: str, tokenizer_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a cached folder must match to stand in for loading this GGUF file at this dtype."""
    return {"gguf_sha256": file_sha256(gguf), "dtype": dtype, "transformers": transformers_version(), "tokenizer_kwargs": tokenizer_kwargs or {}}


def entry_dir(gguf: str | Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return gguf_cache_dir() / f"{Path(gguf).stem}-{digest}"


def _manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_complete(folder: Path, key: dict[str, Any] | None = None) -> bool:
    """The manifest is there, matches the key (when given), lists only safetensors weights, and every
    listed file has the recorded size."""
    data = _manifest(folder)
    if data is None or not isinstance(data.get("files"), dict) or (key is not None and data.get("key") != key):
        return False
    files: dict[str, Any] = data["files"]
    if not any(name.endswith(".safetensors") for name in files) or any(name.endswith((".bin", ".pt", ".pth", ".pkl")) for name in files):
        return False
    try:
        return all((folder / name).stat().st_size == size for name, size in files.items())
    except OSError:
        return False


def lookup(gguf: str | Path, key: dict[str, Any]) -> Path | None:
    """The complete cached folder for this GGUF file and key, or None."""
    folder = entry_dir(gguf, key)
    return folder if is_complete(folder, key) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tmp_name() -> str:
    return f"{_TMP}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def remove_stale_temporaries(root: Path | None = None) -> list[Path]:
    """Delete temporary folders left by killed loads on this host (their process is gone)."""
    root = root or gguf_cache_dir()
    host = socket.gethostname()
    removed = []
    for tmp in root.glob(f"{_TMP}{host}-*") if root.is_dir() else []:
        try:
            pid = int(tmp.name[len(f"{_TMP}{host}-"):].split("-")[0])
        except ValueError:
            continue
        if not _pid_alive(pid):
            shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def store(gguf: str | Path, key: dict[str, Any], model: Any, tokenizer: Any) -> Path:
    """Write a de-quantised model and its tokenizer as a cache entry: into a temporary folder, manifest
    last, then renamed into place. Returns the entry's folder (another process's, if it won the race)."""
    gguf = Path(gguf).resolve()
    final = entry_dir(gguf, key)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(final.parent)
    tmp = final.parent / _tmp_name()
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = {p.name: p.stat().st_size for p in sorted(tmp.iterdir()) if p.is_file()}
        manifest = {"key": key, "gguf_file": gguf.name, "source": str(gguf), "files": files, "bytes": sum(files.values()),
                    "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_text(tmp / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
        if final.exists() and not is_complete(final, key):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_complete(final, key):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


# listing ------------------------------------------------------------------------------------------


@dataclass
class CachedModel:
    """One folder of the cache, as `annotaudit models list` shows it."""

    folder: Path
    gguf_file: str
    gguf_sha256: str
    dtype: str
    transformers: str
    bytes: int
    complete: bool


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cached_models() -> list[CachedModel]:
    """Every entry folder under the cache (incomplete ones too, marked so), newest first."""
    root = gguf_cache_dir()
    out = []
    for folder in sorted(root.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []:
        if not folder.is_dir() or folder.name == HASH_MEMOS or folder.name.startswith(_TMP):
            continue
        data = _manifest(folder) or {}
        key = data.get("key") if isinstance(data.get("key"), dict) else {}
        out.append(CachedModel(folder, str(data.get("gguf_file", "?")), str(key.get("gguf_sha256", "")), str(key.get("dtype", "?")),
                               str(key.get("transformers", "?")), folder_bytes(folder), is_complete(folder)))
    return out


def human_bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("KB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"
