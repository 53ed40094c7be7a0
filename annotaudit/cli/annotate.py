"""`annotate ...`: label a dataset zero-shot with an LLM or VLM; options are parsed here, the work is in annotaudit.annotate."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from .options import FORCE, MODEL, RUN_FOLDER, STRICT, with_engine

if TYPE_CHECKING:
    from annotaudit.models import EngineOptions

app = typer.Typer(help="Label a dataset zero-shot with an LLM or a VLM and measure it against human labels.", no_args_is_help=True)


def _languages(value: str | None) -> list[str] | None:
    return [x.strip() for x in value.split(",") if x.strip()] if value else None


@app.command("run")
@with_engine
def annotate_run_command(
    task: str = typer.Option(..., help="hateful_memes, mmimdb, mmimdb_genres, xnli, or a .yaml/.toml task file."),
    data: Path = typer.Option(..., help="Dataset folder (Hateful Memes, MM-IMDB), NLI .tsv, or your .jsonl/.csv."),
    model: str = MODEL,
    out: Path = RUN_FOLDER,
    split: str = typer.Option(None, help="Split (Hateful Memes: test_unseen by default; MM-IMDB: dev)."),
    languages: str = typer.Option(None, help="NLI languages, comma-separated (default en)."),
    limit: int = typer.Option(None, help="Only the first N items."),
    mode: str = typer.Option("generate", help="generate (sample and extract) or score (rank label verbalizations)."),
    samples: int = typer.Option(1, help="Samples per item; the majority label wins, agreement is the confidence."),
    batch_size: int = typer.Option(8, help="Items per forward pass."),
    seed: int = typer.Option(0, help="Sampling seed."),
    max_new_tokens: int = typer.Option(1024, help="Longest reply (the study: 1024)."),
    temperature: float = typer.Option(0.8, help="Sampling temperature (the study: 0.8)."),
    top_p: float = typer.Option(0.9, help="Nucleus sampling mass (the study: 0.9)."),
    greedy: bool = typer.Option(False, help="Greedy decoding instead of sampling."),
    judge: str = typer.Option(None, help="A model that reads unanswered replies and picks a label (marked judged)."),
    force: bool = FORCE,
    strict: bool = STRICT,
    engine: EngineOptions = None,
) -> None:
    """Annotate a dataset; rerun the same command to resume after a crash.

    Example: annotate run --task hateful_memes --data data/hateful_memes --model vicuna-7b-v1.5 --limit 100 --out runs/hm-vicuna
    """
    from annotaudit.annotate.run import RunConfig, run

    cfg = RunConfig(task=task, data=str(data), model=model, split=split, languages=_languages(languages), limit=limit, mode=mode,
                    samples=samples, batch_size=batch_size, seed=seed, max_new_tokens=max_new_tokens, temperature=temperature,
                    top_p=top_p, do_sample=not greedy, judge=judge)
    result = run(cfg, out, force=force, strict=strict, engine=engine)
    if result:
        _summary(result, out)


def _summary(result: dict, out: Path) -> None:
    console = Console()
    parts = [f"n={result['n']}", f"answer rate={_f(result['answer_rate'])}"]
    for key in ("accuracy_answered", "accuracy_all", "macro_f1", "kappa", "auroc"):
        if result.get(key) is not None:
            parts.append(f"{key}={_f(result[key])}")
    if result.get("problems"):
        parts.append(f"problems={result['problems']} (see {out / 'problems.jsonl'})")
    console.print(" ".join(parts))
    console.print(f"wrote {out / 'records.jsonl'}, {out / 'metrics.json'} and {out / 'report.html'}")


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


@app.command("score")
def annotate_score_command(run_dir: Path = typer.Argument(..., help="A finished `annotate run` folder.")) -> None:
    """Score a finished run again from its records.jsonl, without the model (metrics.json and the report are rewritten).

    Example: annotate score runs/hm-vicuna
    """
    from annotaudit.annotate.run import recompute

    _summary(recompute(run_dir), run_dir)


@app.command("extract")
def annotate_extract_command(
    texts: list[str] = typer.Argument(..., help="Replies to read, one argument each."),
    task: str = typer.Option(..., help="Built-in task name or a task file."),
) -> None:
    """Print the label each reply yields, or NOANSWER, one per line: try a task's patterns.

    Example: annotate extract --task hateful_memes "No, it is not hateful." "Both"
    """
    from annotaudit.annotate.extract import extract
    from annotaudit.annotate.tasks import get_task

    t = get_task(task)
    for text in texts:
        label = extract(text, t)
        typer.echo(",".join(label) if isinstance(label, list) else label)


@app.command("report")
def annotate_report_command(
    run_dirs: list[Path] = typer.Argument(..., help="Run directories written by `annotate run` (run.json and records.jsonl)."),
    out: Path = typer.Option(..., help="Where report.md and report.html go."),
    title: str = typer.Option("Zero-shot annotation", help="Report title."),
) -> None:
    """The study's Figure 2: accuracy and answer rate per model per task, and agreement between annotators.

    Point figures, as the study drew them; `annotaudit compare` gives intervals and paired tests to cite.
    Example: annotate report runs/hm-vicuna runs/hm-instructblip --out reports/hm
    """
    from annotaudit.annotate.report import study_figure

    md, page = study_figure(run_dirs, out, title=title)
    typer.echo(f"wrote {md} and {page}")


@app.command("verdict")
def annotate_verdict_command(
    humans: Path = typer.Option(..., help="Human labels: {annotator: {item: label}} JSON, long CSV/JSONL (item, annotator, label), "
                                "wide CSV/JSONL (id + --annotator-columns), or an XNLI .tsv (label1..label5)."),
    llm: list[Path] = typer.Option(..., help="LLM labels (repeatable): an `annotate run` folder, {item: label} JSON, or {llm: {item: label}} JSON."),
    out: Path = typer.Option(..., help="Run folder for run.json, metrics.json, report.md/html and label_issues.jsonl."),
    scoring: str = typer.Option("accuracy", help="accuracy (share of equal labels) or neg_rmse (numeric labels)."),
    epsilon: float = typer.Option(0.15, help="The LLM's cost-benefit allowance: 0.2 experts, 0.15 skilled annotators, 0.1 crowd workers."),
    q: float = typer.Option(0.05, help="False discovery rate of the Benjamini-Yekutieli procedure over the annotators."),
    min_humans: int = typer.Option(2, help="Test only items with at least this many human labels."),
    min_items: int = typer.Option(30, help="Test only annotators with at least this many such items."),
    annotator_columns: str = typer.Option(None, help="Wide layout: the annotators' columns, comma-separated."),
    languages: str = typer.Option(None, help="XNLI: languages, comma-separated (default: the LLM run's, else en)."),
    force: bool = FORCE,
) -> None:
    """Can an LLM replace the annotators? The alt-test (Calderon et al., ACL 2025) and agreement with the humans' own as its ceiling.

    Example: annotate verdict --humans humans.json --llm runs/xnli-qwen --llm gpt4o.json --epsilon 0.1 --out runs/verdict
    """
    from annotaudit.annotate.verdict import Options, verdict

    options = Options(scoring=scoring, epsilon=epsilon, q=q, min_humans=min_humans, min_items=min_items,
                      annotator_columns=_languages(annotator_columns), languages=_languages(languages))
    result = verdict(humans, list(llm), out, options, force=force)
    console = Console()
    for note in result.notes:
        console.print(f"[yellow]{note}")
    for line in result.lines:
        console.print(line)
    console.print(f"wrote {out / 'metrics.json'}, {out / 'report.md'} and {out / 'report.html'}")


@app.command("tasks")
def annotate_tasks_command() -> None:
    """List the built-in tasks with their labels and prompts.

    Example: annotate tasks
    """
    from annotaudit.annotate.tasks import builtin_tasks

    for t in builtin_tasks().values():
        kind = "multi-label" if t.multi_label else "single-label"
        typer.echo(f"{t.name} ({t.dataset}, {kind}): {', '.join(t.labels)}\n  prompt: {t.prompt!r}")
