"""Content fingerprints of an image folder: the first run (every byte read, from disk) against a rerun (one stat a file).

Usage: python benchmarks/bench_fingerprints.py [--images 10000] [--kb 160] [--folder DIR]
Writes --images files of --kb KiB each (COCO val2014 images average about 160 KiB) into a fresh
folder (or --folder), drops them from the page cache so the first run reads from disk, then
fingerprints the folder twice with the run-folder cache, and once more after one same-size edit.
Prints the seconds and throughput of each side and the ratio.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from annotaudit.core.io import RACY_NS
from annotaudit.core.runs import fingerprint


def write_images(folder: Path, n: int, kb: int) -> int:
    """n files of kb KiB of random bytes (hashing cost does not depend on what the bytes are), evicted from the page cache."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        path = folder / f"COCO_val2014_{i:012d}.jpg"
        with open(path, "wb") as fh:
            fh.write(os.urandom(kb * 1024))
            fh.flush()
            os.fsync(fh.fileno())
            os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
    return n * kb * 1024


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--kb", type=int, default=160)
    ap.add_argument("--folder", type=Path)
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fingerprints-", dir=args.folder))
    try:
        images, run = root / "images", root / "run"
        size = write_images(images, args.images, args.kb)
        time.sleep(RACY_NS / 1e9 + 0.1)  # files changed within this window of being hashed are not cached
        first, cold = timed(lambda: fingerprint(images, cache_dir=run))
        again, warm = timed(lambda: fingerprint(images, cache_dir=run))
        assert again == first
        one = images / f"COCO_val2014_{args.images // 2:012d}.jpg"
        with open(one, "r+b") as fh:
            fh.write(b"\0" * 64)
        edited, after_edit = timed(lambda: fingerprint(images, cache_dir=run))
        assert edited != first
        print(f"{args.images} images, {size / 2**30:.2f} GiB ({args.kb} KiB each)")
        print(f"first run (read from disk, SHA-256): {cold:.2f} s, {size / 2**20 / cold:.0f} MiB/s, {args.images / cold:.0f} images/s")
        print(f"rerun (one stat a file, cache in the run folder): {warm:.3f} s, {warm / args.images * 1e6:.1f} us per image")
        print(f"rerun after one same-size edit: {after_edit:.3f} s (the edit is seen)")
        print(f"ratio first run / rerun: {cold / warm:.0f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
