"""Files in and out: atomic writes, crash-safe JSONL logs, one reader that names file:line, one problem collector.

Every reader and writer in annotaudit goes through here, so a bad file gives the same kind of
message everywhere and no write ever leaves half a file behind.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import re
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import InputError

# Writing ---------------------------------------------------------------------------------------


def write_text(path: str | Path, text: str) -> Path:
    """Write a file atomically (temporary file, fsync, rename), so a crash never leaves half of it."""
    return write_bytes(path, text.encode("utf-8"))


def write_bytes(path: str | Path, data: bytes, durable: bool = True) -> Path:
    """Write a file atomically (a temporary file beside it, renamed over it), so no reader ever sees half of it.

    `durable` also syncs the data to disk before the rename and removes temporaries that killed writers left
    beside it. A cache that is rebuilt from its source (thousands of embedded images in one folder) skips both:
    a sync and a folder scan per small file would cost more than the write.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        where = path if exc.filename in (None, str(tmp)) else exc.filename  # a folder in the way is named itself
        raise InputError(f"cannot write: {exc.strerror or exc}", path=where) from None
    if durable:
        remove_stale_temps(path)
    return path


def remove_stale_temps(path: Path) -> None:
    """Remove `.<name>.<pid>.tmp` files beside `path` whose writing process no longer runs (a kill mid-write)."""
    prefix = f".{path.name}."
    with contextlib.suppress(OSError), os.scandir(path.parent) as entries:
        for entry in entries:
            pid = entry.name[len(prefix):-len(".tmp")] if entry.name.startswith(prefix) and entry.name.endswith(".tmp") else ""
            if pid.isdigit() and not _process_alive(int(pid)):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def write_error(exc: BaseException, path: str | Path) -> InputError:
    """A failed write (disk full, read-only, a file where a folder should be) as one line naming the file.

    Takes OSError and safetensors' own error, which carries the system's error number only in its text.
    """
    if isinstance(exc, OSError):
        return InputError(f"cannot write: {exc.strerror or exc}", path=exc.filename or path)
    found = re.search(r"os error (\d+)", str(exc))
    reason = os.strerror(int(found.group(1))) if found else str(exc).splitlines()[0]
    return InputError(f"cannot write: {reason}", path=path)


def is_write_failure(exc: BaseException) -> bool:
    return isinstance(exc, OSError) or type(exc).__name__ == "SafetensorError"


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[Path]:
    """Run a write (safetensors, save_pretrained, ...) so that its failure is one line naming `path` or the file the system names."""
    try:
        yield Path(path)
    except InputError:
        raise
    except Exception as exc:
        if not is_write_failure(exc):
            raise
        raise write_error(exc, path) from None


def dumps_line(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, default=str) + "\n"


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n")


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> Path:
    return write_text(path, "".join(dumps_line(r) for r in records))


class JsonlLog:
    """Append-only JSON Lines keyed by a field, written a batch at a time with fsync.

    A torn last line (a kill in the middle of a write) is cut off on open. A malformed line
    anywhere else costs only itself: it is skipped and kept in `skipped` (file and line), so the
    caller can say so and redo that one record instead of losing the ones after it.
    """

    def __init__(self, path: str | Path, key: str = "id"):
        self.path = Path(path)
        self.key = key
        self.skipped: list[InputError] = []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()

    def _repair(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if not data or data.endswith(b"\n"):
            return
        cut = data.rfind(b"\n") + 1
        with open(self.path, "r+b") as fh:
            fh.truncate(cut)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        self.skipped = []
        if self.path.exists():
            for _, rec in iter_jsonl(self.path, on_error=self._skip):
                yield rec

    def _skip(self, err: InputError) -> None:
        self.skipped.append(err)

    def read(self) -> list[dict[str, Any]]:
        return list(self)

    def done_keys(self) -> set[str]:
        return {str(rec[self.key]) for rec in self}

    def append(self, records: Iterable[dict[str, Any]]) -> None:
        data = "".join(dumps_line(r) for r in records).encode("utf-8")
        if not data:
            return
        size = self.path.stat().st_size if self.path.exists() else 0
        try:
            with open(self.path, "ab") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            with contextlib.suppress(OSError):  # a partly written batch goes, so no torn line is left behind
                os.truncate(self.path, size)
            raise write_error(exc, self.path) from None


# Content hashes ------------------------------------------------------------------------------

def cache_root() -> Path:
    """$ANNOTAUDIT_CACHE, else ~/.cache/annotaudit: the one folder every annotaudit cache lives under."""
    return Path(os.environ.get("ANNOTAUDIT_CACHE") or Path.home() / ".cache" / "annotaudit").expanduser()


DIGEST_CACHE = ".fingerprints.json"
# A file changed within this long of being hashed may change again within the same timestamp tick
# unseen, so its hash is not kept (git's "racily clean" entries).
RACY_NS = 2_000_000_000


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


class DigestCache:
    """SHA-256 of files, kept in `folder/.fingerprints.json` by path, size, mtime and ctime.

    A file whose stat matches its entry is not read again, so a rerun over many files costs one
    stat each; any write to a file (even one that keeps its size, or restores its mtime) changes its
    ctime and so has it hashed again. Without a folder nothing is kept.
    """

    def __init__(self, folder: str | Path | None):
        self.path = Path(folder) / DIGEST_CACHE if folder is not None else None
        self.entries: dict[str, list] = {}
        if self.path is not None and self.path.is_file():
            with contextlib.suppress(InputError, AttributeError):  # a damaged cache is only a slower run
                self.entries = dict(read_json(self.path).get("files", {}))
        self.changed = False

    def digest(self, path: str | Path, st: os.stat_result | None = None) -> str:
        key = os.fspath(path)
        key = key if os.path.isabs(key) else os.path.abspath(key)
        st = st or os.stat(key)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns]
        entry = self.entries.get(key)
        if entry is not None and entry[:3] == stamp:
            return entry[3]
        started = time.time_ns()
        try:
            digest = sha256_file(key)
        except OSError as exc:
            raise InputError(f"cannot read the file: {exc.strerror or exc}", path=path) from None
        if max(st.st_mtime_ns, st.st_ctime_ns) < started - RACY_NS:
            self.entries[key] = [*stamp, digest]
        else:
            self.entries.pop(key, None)
        self.changed = True
        return digest

    def forget_under(self, root: str | Path, keep: set[str]) -> None:
        """Drop entries of files under `root` that are no longer there."""
        prefix = os.path.join(os.path.abspath(root), "")
        gone = [k for k in self.entries if k.startswith(prefix) and k not in keep]
        for key in gone:
            del self.entries[key]
        self.changed = self.changed or bool(gone)

    def save(self) -> None:
        if self.path is not None and self.changed:
            write_text(self.path, json.dumps({"files": self.entries}, separators=(",", ":")))
            self.changed = False


def folder_files(root: str | Path, skip: str | Path | None = None) -> list[tuple[str, str, os.stat_result]]:
    """(path relative to root, absolute path, stat) of every file under a folder, sorted; `skip` leaves out a folder inside it.

    Links to files count as their targets; links to folders are not followed (as os.walk does).
    """
    root = os.path.abspath(root)
    skip = os.path.abspath(skip) if skip is not None else None
    found, todo = [], [(root, "")]
    while todo:
        top, prefix = todo.pop()
        with os.scandir(top) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    if entry.path != skip:
                        todo.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.name != DIGEST_CACHE and entry.is_file():
                    with contextlib.suppress(FileNotFoundError):  # gone since the listing
                        found.append((prefix + entry.name, entry.path, entry.stat()))
    found.sort(key=lambda item: item[0])
    return found


# Reading ---------------------------------------------------------------------------------------


# One line or field of a data file: longer ones are refused before anything tries to hold or tokenize them.
MAX_LINE_CHARS = 8 * 1024 * 1024


def _open_text(path: Path):
    opener = gzip.open if path.suffix == ".gz" else open
    return opener(path, "rt", encoding="utf-8-sig", newline=None)


def read_text(path: str | Path) -> str:
    """A whole UTF-8 file (gzip when it ends in .gz); a missing file or bad bytes name the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        with _open_text(path) as fh:
            return fh.read()
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise InputError(f"not UTF-8 text (byte {exc.start})", path=path, line=line) from None
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(f"cannot read the file: {exc}", path=path) from None


def read_json(path: str | Path) -> Any:
    """One JSON document; malformed JSON names the file and line."""
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from None


def iter_jsonl(path: str | Path, on_error: Callable[[InputError], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) from a JSON Lines file (BOM and CRLF tolerated, blank lines skipped).

    A malformed or non-object line becomes an InputError naming file and line: raised, or handed
    to `on_error` and skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    with _open_text(path) as fh:
        yield from _jsonl_lines(_decoded_lines(fh, path), path, on_error)


def _decoded_lines(fh: Any, path: Path) -> Iterator[str]:
    """The lines of a text file, with bad UTF-8 named by its line and no line read past MAX_LINE_CHARS."""
    n = 0
    while True:
        try:
            raw = fh.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError as exc:
            raise InputError(f"not UTF-8 text (byte {exc.start})", path=path, line=n + 1) from None
        except (OSError, EOFError, zlib.error) as exc:
            raise InputError(f"cannot read the file: {exc}", path=path, line=n + 1) from None
        if not raw:
            return
        n += 1
        if len(raw) > MAX_LINE_CHARS and not raw.endswith("\n"):
            raise InputError(f"line longer than the limit of {MAX_LINE_CHARS:,} characters", path=path, line=n)
        yield raw


def _jsonl_lines(lines: Iterable[str], path: Path, on_error: Callable[[InputError], None] | None) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
            problem = None if isinstance(rec, dict) else "expected a JSON object"
        except json.JSONDecodeError as exc:
            problem = f"malformed JSON: {exc.msg} (column {exc.colno})"
        if problem is None:
            yield n, rec
            continue
        err = InputError(problem, path=path, line=n)
        if on_error is None:
            raise err
        on_error(err)


def _concatenated(text: str, path: Path) -> list[tuple[int, Any]]:
    """JSON values one after another (a JSON list, or pretty-printed objects back to back)."""
    decoder = json.JSONDecoder()
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        line = text.count("\n", 0, pos) + 1
        try:
            value, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise InputError(f"malformed JSON: {exc.msg} (column {exc.colno})", path=path, line=exc.lineno) from None
        out.append((line, value))


def read_records(path: str | Path, on_error: Callable[[InputError], None] | None = None) -> list[tuple[int, dict[str, Any]]]:
    """(line, record) from JSON Lines, a JSON list, concatenated JSON objects, CSV or TSV.

    The line is where the record starts in the file. Records that are not objects are problems
    handed to `on_error` (or raised).
    """
    path = Path(path)
    suffix = path.suffix.lower() if path.suffix != ".gz" else Path(path.stem).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return _read_table(path, "\t" if suffix == ".tsv" else ",", on_error)
    text = read_text(path)
    _check_line_lengths(text, path)
    head = text.lstrip()[:1]
    if suffix == ".jsonl" or (head == "{" and _one_object_per_line(text)):
        return list(_jsonl_lines(io.StringIO(text), path, on_error))
    values = _concatenated(text, path)
    if len(values) == 1 and isinstance(values[0][1], list):
        start = values[0][0]
        values = [(start, v) for v in values[0][1]]
        where = "item"
    else:
        where = "line"
    out = []
    for k, (line, value) in enumerate(values, 1):
        if isinstance(value, dict):
            out.append((line if where == "line" else k, value))
            continue
        err = InputError("expected a JSON object", path=path, **({"line": line} if where == "line" else {"item": str(k)}))
        if on_error is None:
            raise err
        on_error(err)
    return out


def _check_line_lengths(text: str, path: Path) -> None:
    """Refuse a line over MAX_LINE_CHARS (a whole file without newlines included), naming it."""
    if len(text) <= MAX_LINE_CHARS:
        return
    start, n = 0, 1
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        if end - start > MAX_LINE_CHARS:
            raise InputError(f"line longer than the limit of {MAX_LINE_CHARS:,} characters", path=path, line=n)
        start, n = end + 1, n + 1


def _one_object_per_line(text: str) -> bool:
    for raw in text.splitlines():
        if raw.strip():
            try:
                json.loads(raw)
            except json.JSONDecodeError:
                return False
            return True
    return True


def _read_table(path: Path, delimiter: str, on_error: Callable[[InputError], None] | None) -> list[tuple[int, dict[str, Any]]]:
    csv.field_size_limit(MAX_LINE_CHARS)
    text = read_text(path)
    _check_line_lengths(text, path)
    reader = csv.DictReader(text.splitlines(keepends=True), delimiter=delimiter)
    out = []
    try:
        for row in reader:
            if None in row:
                err = InputError(f"{len(row[None])} more field(s) than the header has", path=path, line=reader.line_num)
                if on_error is None:
                    raise err
                on_error(err)
                continue
            out.append((reader.line_num, dict(row)))
    except csv.Error as exc:
        raise InputError(f"malformed {'TSV' if delimiter == chr(9) else 'CSV'}: {exc}", path=path, line=reader.line_num) from None
    return out


# Paths -----------------------------------------------------------------------------------------


def safe_path(root: str | Path, relative: str | Path) -> Path:
    """Join a dataset-relative path to its root, refusing any path that escapes the root (symlinks followed)."""
    base = Path(root).resolve()
    candidate = (base / relative).resolve()
    if candidate != base and base not in candidate.parents:
        raise InputError(f"path {str(relative)!r} escapes the dataset root {base}")
    return candidate


# Problems --------------------------------------------------------------------------------------


class Problems:
    """Bad-input findings of one run: raised at once when strict, else kept, shown briefly and saved whole.

    Call it (or `add`) with an InputError; pass it as `on_error` to the readers above.
    """

    SHOWN = 20

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.errors: list[InputError] = []

    def add(self, err: InputError) -> None:
        if self.strict:
            raise err
        self.errors.append(err)

    __call__ = add

    def __len__(self) -> int:
        return len(self.errors)

    def messages(self) -> list[str]:
        return [str(e) for e in self.errors]

    def rows(self) -> list[dict[str, Any]]:
        return [{"path": str(e.path) if e.path is not None else None, "line": e.line, "item": e.item, "message": e.message} for e in self.errors]

    def show(self, echo: Callable[[str], None], where: str | Path | None = None, prefix: str = "skipped") -> None:
        """The first problems, then how many more and where the full list is."""
        for msg in self.messages()[: self.SHOWN]:
            echo(f"{prefix}: {msg}")
        if len(self.errors) > self.SHOWN:
            echo(f"... and {len(self.errors) - self.SHOWN} more" + (f" (all in {where})" if where else ""))

    def write(self, path: str | Path) -> Path:
        """problems.jsonl: every finding, one a line (an empty file when there were none)."""
        return write_jsonl(path, self.rows())


# Tables with embedded data ----------------------------------------------------------------------


def image_cache(table: Path) -> Path:
    """Where the embedded images of one table (a parquet file) are written once: <cache_root()>/images/<file name>-<hash
    of its path, size and time>, so models read plain files and a resumed run finds the same paths."""
    stat = table.stat()
    key = hashlib.sha1(f"{table.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    return cache_root() / "images" / f"{table.stem}-{key}"


IMAGE_MAGIC = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG", ".png"), (b"GIF8", ".gif"), (b"RIFF", ".webp"), (b"BM", ".bmp"))


def embedded_image(value: Any, folder: Path, name: str, suffix: str | None = None) -> Path | None:
    """The file `folder/<name><suffix>` of an embedded image ({"bytes": ..., "path": ...}, as the hub stores images),
    written atomically on first use; None when `value` holds no bytes. `suffix` defaults to the embedded path's,
    else the one the bytes' signature names."""
    if not isinstance(value, dict) or not value.get("bytes"):
        return None
    data = value["bytes"]
    if suffix is None:
        suffix = Path(str(value.get("path") or "")).suffix.lower() or next((ext for magic, ext in IMAGE_MAGIC if data.startswith(magic)), ".img")
    target = folder / f"{name}{suffix}"
    if not target.is_file():
        write_bytes(target, data, durable=False)
    return target


def read_parquet_records(path: str | Path, columns: list[str] | None = None, skip: tuple[str, ...] = ()) -> list[tuple[int, dict[str, Any]]]:
    """(row number from 1, record) of a parquet file (the hub's dataset copies), a row group at a time.

    `columns` picks columns; `skip` leaves out columns that exist (embedded images when only the
    text is wanted). Needs pyarrow (the `formats` extra).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise InputError("reading parquet needs pyarrow: pip install 'annotaudit[formats]'", path=path) from None
    try:
        table = parquet.ParquetFile(path)
        names = table.schema_arrow.names
        wanted = [c for c in (columns or names) if c in names and c not in skip]
        out: list[tuple[int, dict[str, Any]]] = []
        for batch in table.iter_batches(columns=wanted, batch_size=1024):
            start = len(out)
            out += [(start + k + 1, rec) for k, rec in enumerate(batch.to_pylist())]
    except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
        raise InputError(f"not a readable parquet file: {exc}", path=path) from None
    return out


def parquet_columns(path: str | Path) -> list[str]:
    """The column names of a parquet file, without reading its rows."""
    try:
        import pyarrow.parquet as parquet
    except ImportError:
        raise InputError("reading parquet needs pyarrow: pip install 'annotaudit[formats]'", path=path) from None
    try:
        return list(parquet.ParquetFile(path).schema_arrow.names)
    except (OSError, ValueError) as exc:
        raise InputError(f"not a readable parquet file: {exc}", path=path) from None


def read_sheet_records(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(spreadsheet row, record) of the first sheet of an .xlsx file (header on row 1); needs openpyxl."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        import pandas
    except ImportError:  # pragma: no cover - pandas is a dependency
        raise InputError("reading .xlsx needs pandas", path=path) from None
    try:
        frame = pandas.read_excel(path, sheet_name=0, dtype=object)
    except ImportError:
        raise InputError("reading .xlsx needs openpyxl: pip install 'annotaudit[formats]'", path=path) from None
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"not a readable spreadsheet: {exc}", path=path) from None
    rows = frame.to_dict(orient="records")
    return [(k + 2, {str(key): (None if _is_missing(v) else v) for key, v in rec.items()}) for k, rec in enumerate(rows)]


def _is_missing(value: Any) -> bool:
    return isinstance(value, float) and value != value
