"""`annotaudit compare`: one report across run folders of any kind, every figure with a bootstrap interval."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from annotaudit.core.errors import InputError
from annotaudit.core.io import write_json
from annotaudit.core.runner import RECORDS
from annotaudit.core.runs import RunDir

from .bootstrap import DEFAULT_RESAMPLES, DEFAULT_SEED, LEVEL, MIN_CLUSTERS, MIN_ITEMS
from .multiplicity import ADJUSTMENTS
from .render import FIGURES, FORMATS, write_outputs
from .runs import parse_labels, read_runs
from .tables import ADJUSTMENT_NAMES, Figures, build_tables, check_plan, plan_differences

RESULTS = "comparison.json"
OUTPUTS = ["report.html", "report.md", "report.tex", "tables", FIGURES, RESULTS]


def _formats(formats: Sequence[str] | str | None) -> list[str]:
    chosen = [f.strip().lower() for f in (formats.split(",") if isinstance(formats, str) else formats or FORMATS) if f.strip()]
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise InputError(f"unknown format {', '.join(unknown) or '(none)'}; choose among {', '.join(FORMATS)}")
    return chosen


def _inputs(runs: Sequence[str | Path]) -> dict[str, Path]:
    """Each run's records (or its whole folder for MMBT comparisons, whose records live in sub-folders)."""
    return {f"run_{k}": Path(r) / RECORDS if (Path(r) / RECORDS).is_file() else Path(r) for k, r in enumerate(runs, 1)}


def _as_json(table: Any) -> dict[str, Any]:
    def cell(v: Any) -> Any:
        return v.as_dict() if hasattr(v, "as_dict") else v
    return {"name": table.name, "title": table.title, "percent": table.percent, "index": table.index, "columns": table.columns,
            "note": table.note, "rows": [{k: cell(v) for k, v in row.items()} for row in table.rows]}


def _intro(runs: int, entries: int, resamples: int, seed: int, family: int, adjustment: str) -> str:
    return (f"{runs} run folders, {entries} entries. Every figure has a {int(LEVEL * 100)}% interval in brackets, with its n and "
            f"clusters: a percentile bootstrap from {resamples} resamples (seed {seed}), or, for a proportion on fewer than {MIN_ITEMS} "
            f"items or {MIN_CLUSTERS} clusters, an exact Clopper–Pearson interval (†). POPE and VQA resample images, CHAIR images with "
            "all their captions, annotation and MMBT items. A difference between two runs pairs their items by what they are and "
            f"draws the same clusters for both. {family} paired differences form one family, adjusted by {ADJUSTMENT_NAMES[adjustment]}; "
            "flags use the adjusted p-values.")


def compare(runs: Sequence[str | Path], out: str | Path, labels: Sequence[str] = (), resamples: int = DEFAULT_RESAMPLES,
            seed: int = DEFAULT_SEED, formats: Sequence[str] | str | None = None, force: bool = False, adjustment: str = "holm",
            allow_unfinished: bool = False) -> dict[str, Any]:
    """Read the runs, bootstrap every figure and every paired difference, adjust the differences' p-values over the
    family, write the report in each format. Everything that can be refused is refused before the folder is written.

    Returns what comparison.json holds: the seed, the number of resamples, the adjustment, the runs and every table.
    """
    if resamples < 100:
        raise InputError(f"--resamples must be at least 100 for a 95% interval (got {resamples})")
    if adjustment not in ADJUSTMENTS:
        raise InputError(f"unknown adjustment {adjustment!r}; choose one of {', '.join(ADJUSTMENTS)}")
    chosen = _formats(formats)
    label_map = parse_labels(list(labels))
    entries = read_runs(list(runs), label_map, allow_unfinished)
    figures = Figures(resamples, seed)
    plan = plan_differences(entries)
    check_plan(plan, figures)
    out = Path(out)
    config = {"runs": [str(Path(r).resolve()) for r in runs], "labels": {str(k): v for k, v in label_map.items()}, "resamples": resamples,
              "seed": seed, "level": LEVEL, "formats": chosen, "adjustment": adjustment, "allow_unfinished": allow_unfinished}
    rundir = RunDir(out, config, kind="compare", inputs=_inputs(runs), items=len(entries), force=force, outputs=OUTPUTS)
    started = time.time()
    tables = build_tables(entries, figures, adjustment, plan)
    intro = _intro(len(runs), len(entries), resamples, seed, len(plan), adjustment)
    written = write_outputs(out, "Comparison of runs", intro, tables, chosen)
    result = {"seed": seed, "resamples": resamples, "level": LEVEL, "adjustment": adjustment, "comparisons": len(plan), "runs": config["runs"],
              "tables": [_as_json(t) for t in tables]}
    write_json(out / RESULTS, result)
    rundir.finish(entries=len(entries), tables=len(tables), bootstrap_seconds=round(time.time() - started, 3))
    result["files"] = [str(p) for p in [*written, out / RESULTS]]
    return result


def partial_overlaps(result: dict[str, Any]) -> list[str]:
    """One line per paired difference computed on part of either run's items: what, and how many items of how many."""
    lines = []
    for table in result["tables"]:
        for row in table["rows"] if table["name"] == "differences" else []:
            held = row.get("held") or []
            if held and any(n != row["common items"] for n in held):
                lines.append(f"{row['kind']} {row['benchmark']} {row['column']} {row['figure']}: {row['A']} against {row['B']} on "
                             f"{row['common items']} common items (of {held[0]} and {held[1]})".replace("  ", " "))
    return lines


def comparison_tables(runs: Sequence[str | Path], labels: Sequence[str] = (), resamples: int = DEFAULT_RESAMPLES,
                      seed: int = DEFAULT_SEED, adjustment: str = "holm") -> list[dict[str, Any]]:
    """The tables compare() would write to comparison.json, computed in memory and written nowhere (for reading old run folders)."""
    entries = read_runs(list(runs), parse_labels(list(labels)))
    return [_as_json(t) for t in build_tables(entries, Figures(resamples, seed), adjustment)]
