"""Start-up time of the fast commands, against the same commands with torch and transformers imported first.

    python benchmarks/bench_startup.py [--repeats 5]

Each command runs in a fresh interpreter (as a user's shell starts it). The "eager" side imports
the model backends (torch, transformers) before running the same command, which is what every
command paid when the CLI imported the backends at start. Prints the median seconds of both sides
and the ratio, and which heavy modules each fast command loaded (none is expected).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "annotaudit --help": ("main", ["annotaudit", "--help"]),
    "annotate extract --help": ("annotate_main", ["annotate", "extract", "--help"]),
    "annotate extract": ("annotate_main", ["annotate", "extract", "--task", "hateful_memes", "No, it is not hateful."]),
    "audit pope score --help": ("audit_main", ["audit", "pope", "score", "--help"]),
    "audit chair score --help": ("audit_main", ["audit", "chair", "score", "--help"]),
}


def _script(entry: str, argv: list[str], eager: bool) -> str:
    return (
        "import sys\n"
        + ("import annotaudit.models.backends\n" if eager else "")
        + f"sys.argv = {argv!r}\n"
        "from annotaudit.cli import main\n"
        f"try:\n    main.{entry}()\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', ','.join(m for m in ('torch', 'transformers') if m in sys.modules), file=sys.stderr)\n"
    )


def _time(script: str, repeats: int) -> tuple[float, str]:
    times, heavy = [], ""
    for _ in range(repeats):
        start = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        times.append(time.perf_counter() - start)
        heavy = res.stderr.strip().splitlines()[-1].removeprefix("HEAVY").strip()
    return statistics.median(times), heavy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'command':28} {'lazy s':>8} {'eager s':>8} {'ratio':>7}  heavy modules loaded")
    for name, (entry, argv) in COMMANDS.items():
        lazy, heavy = _time(_script(entry, argv, eager=False), args.repeats)
        eager, _ = _time(_script(entry, argv, eager=True), args.repeats)
        print(f"{name:28} {lazy:8.2f} {eager:8.2f} {eager / lazy:6.1f}x  {heavy or 'none'}")


if __name__ == "__main__":
    main()
