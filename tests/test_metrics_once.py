"""Each metric formula is written once, in the module that owns the figure, and everything else calls it.

A formula shows in the code as a MetricSpec, or as an aggregate: a function of per-item arrays and a
weight matrix, `(arrays, weights)`. Specs are built only in the owners below; no two aggregates in
the package have the same body; and compare, which bootstraps every figure, divides and weights
nothing itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from annotaudit.annotate import metrics as annotation
from annotaudit.annotate.tasks import get_task
from annotaudit.audit import chair, pope
from annotaudit.classifiers import metrics as classifier
from annotaudit.compare import measures
from annotaudit.core.tasks import CLASSIFIER_METRICS
from annotaudit.lvlm import evaluate as vqa

PACKAGE = Path(__file__).resolve().parent.parent / "annotaudit"
# module -> the figures it owns
OWNERS = {
    "annotaudit/audit/pope/protocol.py": ("accuracy", "precision", "recall", "f1", "yes_ratio"),
    "annotaudit/audit/chair/metric.py": ("chair_s", "chair_i", "recall", "mean_length"),
    "annotaudit/annotate/metrics.py": ("accuracy", "answer_rate"),
    "annotaudit/lvlm/evaluate.py": ("exact", "approx"),
    "annotaudit/classifiers/metrics.py": ("accuracy", "macro_f1", "micro_f1", "auroc"),
}
SHARED = "annotaudit/core/metrics.py"  # MetricSpec itself and the ratio every share of items is
FIGURE_MODULES = ("measures.py", "bootstrap.py", "tables.py")  # the modules of compare that build figures


def _modules(package: Path) -> list[Path]:
    return sorted(package.rglob("*.py"))


def _name(path: Path, package: Path) -> str:
    return path.relative_to(package.parent).as_posix()


def _is_aggregate(node: ast.AST) -> bool:
    return isinstance(node, ast.FunctionDef) and [a.arg for a in node.args.args] == ["arrays", "weights"]


def _body(node: ast.FunctionDef) -> str:
    body = node.body[1:] if node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant) else node.body
    return "\n".join(ast.dump(statement) for statement in body)


def spec_builders(package: Path = PACKAGE) -> list[str]:
    """Modules outside the owners that build a MetricSpec."""
    found = []
    for path in _modules(package):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == "MetricSpec"]
        if calls and _name(path, package) not in (*OWNERS, SHARED):
            found.append(_name(path, package))
    return found


def repeated_aggregates(package: Path = PACKAGE) -> list[list[str]]:
    """Aggregates written twice: the same body in two places."""
    bodies: dict[str, list[str]] = {}
    for path in _modules(package):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if _is_aggregate(node):
                bodies.setdefault(_body(node), []).append(f"{_name(path, package)}:{node.lineno} {node.name}")
    return [places for places in bodies.values() if len(places) > 1]


def formulas_in_compare(package: Path = PACKAGE) -> list[str]:
    """Weighted sums, metric libraries and, where figures are built, divisions in compare, which should only call the owners' specs.

    Elsewhere in compare `/` joins paths and lays out charts, so divisions are looked for in the modules that build figures only.
    """
    found = []
    for path in _modules(package / "compare"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            where = f"{_name(path, package)}:{getattr(node, 'lineno', '?')}"
            divides = isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) and path.name in FIGURE_MODULES
            if divides or isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
                found.append(f"{where} {type(node.op).__name__}")
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in ("divide", "ratio", "einsum", "dot"):
                found.append(f"{where} {ast.unparse(node.func)}")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
                found.append(f"{where} imports {node.module}")
    return found


def test_only_the_owners_build_metric_specs():
    assert spec_builders() == []


def test_no_aggregate_is_written_twice():
    assert repeated_aggregates() == []


def test_compare_computes_no_figure_itself():
    assert formulas_in_compare() == []


def test_the_checks_catch_a_copied_formula(tmp_path):
    """A copy of POPE's F1 in compare, and a second spec outside the owners, are both found."""
    package = tmp_path / "annotaudit"
    (package / "compare").mkdir(parents=True)
    (package / "audit" / "pope").mkdir(parents=True)
    source = (PACKAGE / "audit" / "pope" / "protocol.py").read_text(encoding="utf-8")
    (package / "audit" / "pope" / "protocol.py").write_text(source)
    f1 = ast.get_source_segment(source, next(n for n in ast.walk(ast.parse(source)) if _is_aggregate(n) and n.name == "_f1"))
    (package / "compare" / "measures.py").write_text(f"{f1}\n\n\ndef precision(arrays, weights):\n    return (weights @ arrays['tp']) / weights.sum(axis=1)\n\n"
                                                     "SPEC = MetricSpec('f1', None, _f1)\n")
    assert repeated_aggregates(package) == [["annotaudit/audit/pope/protocol.py:" + str(source[:source.index("def _f1")].count("\n") + 1) + " _f1",
                                             "annotaudit/compare/measures.py:1 _f1"]]
    assert spec_builders(package) == ["annotaudit/compare/measures.py"]
    assert sorted(f.split(" ", 1)[1] for f in formulas_in_compare(package)) == ["Div", "MatMult", "divide"]


def test_each_owner_defines_its_figures_and_compare_names_them_from_the_specs():
    memes = get_task("hateful_memes")
    owned = {"annotaudit/audit/pope/protocol.py": pope.METRICS, "annotaudit/audit/chair/metric.py": (*chair.METRICS, chair.MEAN_LENGTH),
             "annotaudit/annotate/metrics.py": annotation.METRICS, "annotaudit/lvlm/evaluate.py": vqa.METRICS,
             "annotaudit/classifiers/metrics.py": tuple(classifier.AGGREGATES)}
    for module, specs in owned.items():
        got = tuple(s if isinstance(s, str) else s.name for s in specs)
        assert sorted(got) == sorted(OWNERS[module]) and len(set(got)) == len(got), module
    assert (measures.POPE_METRICS, measures.CHAIR_METRICS, measures.ANNOTATE_METRICS, measures.VQA_METRICS) == (
        pope.METRIC_NAMES, ("chair_s", "chair_i", "recall"), ("accuracy", "answer_rate"), ("exact", "approx"))
    # which figures are proportions, for exact intervals, is the specs' word too
    assert {kind: set(shares) for kind, shares in measures.PROPORTIONS.items()} == {
        "pope": {"accuracy", "precision", "recall", "yes_ratio"}, "chair": {"chair_s"}, "annotate": {"accuracy", "answer_rate"}, "vqa": {"exact", "approx"}}
    assert measures.PROPORTIONS["pope"]["accuracy"] is pope.METRICS[0].share
    successes, trials = pope.METRICS[0].share(pope.confusion(["yes", "no", "no"], ["yes", "yes", "none"]))
    assert successes.tolist() == [1, 0, 0] and trials.tolist() == [1, 1, 0]
    # a task's metric names are checked in core.tasks, below classifiers: the two lists must agree
    assert set(CLASSIFIER_METRICS) == set(classifier.AGGREGATES)
    assert [s.name for s in classifier.metric_specs(memes)] == ["accuracy", "macro_f1", "auroc"]


@pytest.mark.parametrize("seed", range(5))
def test_a_resample_is_the_figure_of_the_items_drawn(seed):
    """Weights of 2 and 0 give what the command reports on a list holding the item twice and not at all."""
    rng = np.random.default_rng(seed)
    labels = [str(x) for x in rng.choice(["yes", "no"], 30)]
    answers = [str(x) for x in rng.choice(["yes", "no", "unknown"], 30)]
    weights = rng.integers(0, 3, size=30)
    drawn = [k for k, w in enumerate(weights) for _ in range(w)]
    expected = pope.metrics([labels[k] for k in drawn], [answers[k] for k in drawn])
    arrays = pope.confusion(labels, answers)
    for spec in pope.METRICS:
        assert spec.aggregate(arrays, weights[None, :].astype(float))[0] == pytest.approx(expected[spec.name], abs=1e-12)


@pytest.mark.parametrize("name", ["hateful_memes", "mmimdb", "mmimdb_genres"])
def test_classifier_metrics_equal_scikit_learn_on_all_items_and_on_a_resample(name):
    """task_metrics, and one resample of its aggregates, against scikit-learn on the items as drawn (ties in the scores included)."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    task = get_task(name)
    rng = np.random.default_rng(0)
    n, k = 200, len(task.classes)
    probs = np.round(rng.random((n, k)), 1)
    targets = ([tuple(c for c in task.classes if rng.random() < 0.3) for _ in range(n)] if task.classes_multi_label
               else [task.classes[i] for i in np.where(rng.random(n) < 0.6, probs.argmax(axis=1), rng.integers(0, k, n))])
    weights = rng.integers(0, 3, size=n)
    drawn = [i for i, w in enumerate(weights) for _ in range(w)]
    arrays = classifier.classifier_parts(task, probs, targets)
    for picked, row in ((list(range(n)), np.ones(n)), (drawn, weights.astype(float))):
        y, p = classifier.target_array(task, [targets[i] for i in picked]), probs[picked]
        if task.classes_multi_label:
            decided = (p >= 0.5).astype(int)
            expected = {"micro_f1": f1_score(y, decided, average="micro", zero_division=0), "macro_f1": f1_score(y, decided, average="macro", zero_division=0)}
        else:
            decided = p.argmax(axis=1)
            expected = {"accuracy": accuracy_score(y, decided), "macro_f1": f1_score(y, decided, average="macro", labels=list(range(k)), zero_division=0)}
            if task.positive is not None:
                positive = task.classes.index(task.positive)
                expected["auroc"] = roc_auc_score(y == positive, p[:, positive])
        got = {s.name: float(s.aggregate(arrays, row[None, :])[0]) for s in classifier.metric_specs(task)}
        assert got == pytest.approx(expected, abs=1e-12)
        assert got.get("auroc") == expected.get("auroc")  # to the last digit: training picks its best epoch by it
    assert classifier.task_metrics(task, probs, targets) == {s.name: s.value(arrays) for s in classifier.metric_specs(task)}


def test_auroc_is_undefined_with_one_class():
    task = get_task("hateful_memes")
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    assert np.isnan(classifier.task_metrics(task, probs, [task.positive, task.positive])["auroc"])


def test_seeds_tested_on_different_items_are_one_line_of_bad_input():
    from annotaudit.core.errors import InputError

    task = get_task("hateful_memes")
    def seed(ids):
        return [{"id": i, "target": task.positive, "scores": {c: 0.5 for c in task.classes}} for i in ids]
    with pytest.raises(InputError, match="tested on different items; name its runs apart with --label"):
        measures.mmbt_figures([seed(["a", "b"]), seed(["a", "c"])], task)
