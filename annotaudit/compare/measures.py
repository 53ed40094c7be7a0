"""Each kind's figures for compare: its items, how they cluster, and the metric specs its command defines.

The per-item arrays and aggregates are the commands' own MetricSpecs (audit.pope, audit.chair,
annotate.metrics, lvlm.evaluate, classifiers.metrics), the very functions that wrote metrics.json,
so the bootstrap resamples exactly the figures the runs reported. Compare adds only the clusters
(POPE and VQA questions by image) and two figures over several parts: POPE's mean F1 over settings
and a classifier's metrics averaged over seeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from annotaudit.annotate.metrics import METRICS as ANNOTATE_SPECS
from annotaudit.audit.chair import METRICS as CHAIR_SPECS
from annotaudit.audit.pope import METRICS as POPE_SPECS
from annotaudit.core.errors import InputError
from annotaudit.core.metrics import Aggregate, MetricSpec, item_arrays, names
from annotaudit.lvlm.evaluate import METRICS as VQA_SPECS

from .bootstrap import Items, Statistic, mean_of

Records = list[dict[str, Any]]
POPE_METRICS, CHAIR_METRICS, ANNOTATE_METRICS, VQA_METRICS = (names(s) for s in (POPE_SPECS, CHAIR_SPECS, ANNOTATE_SPECS, VQA_SPECS))


class MetricMismatch(InputError):
    """Records that cannot make one figure: the seeds of a classifier arm tested on different items."""


def _statistics(specs: tuple[MetricSpec, ...]) -> dict[str, Statistic]:
    return {s.name: s.aggregate for s in specs}


def _question_clusters(records: Records, prefix: str = "") -> tuple[list[str], list[str], str]:
    """Question ids, and their images as clusters; by question when an answer carries no image."""
    ids, clusters, images = [], [], True
    for r in records:
        ids.append(prefix + str((r.get("meta") or {}).get("question_id", r["id"])))
        image = (r.get("input") or {}).get("image")
        images &= image not in (None, "")
        clusters.append(str(image) if image not in (None, "") else ids[-1])
    return ids, clusters, "image" if images else "question"


def pope_figures(records: Records, setting: str) -> tuple[Items, dict[str, Statistic]]:
    """audit.pope's rates, its questions clustered by image."""
    ids, clusters, unit = _question_clusters(records, f"{setting}/")
    return Items(ids, clusters, unit, item_arrays(POPE_SPECS, records)), _statistics(POPE_SPECS)


def pope_mean_f1(parts: list[Items]) -> tuple[Items, Statistic]:
    """The mean F1 over settings: one item set with a mask per setting, images resampled jointly across settings."""
    n = sum(len(p) for p in parts)
    arrays = {k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays}
    masks, start = [], 0
    for k, p in enumerate(parts):
        mask = np.zeros(n)
        mask[start:start + len(p)] = 1.0
        arrays[f"in_{k}"], start = mask, start + len(p)
        masks.append(f"in_{k}")
    items = Items([i for p in parts for i in p.ids], [c for p in parts for c in p.clusters], parts[0].unit, arrays)
    f1 = _statistics(POPE_SPECS)["f1"]
    return items, mean_of([f1] * len(masks), masks)


def chair_figures(records: Records) -> tuple[Items, dict[str, Statistic]]:
    """audit.chair's CHAIR_s, CHAIR_i and recall; each caption is its own cluster."""
    ids = [str((r.get("meta") or {}).get("image_id", r["id"])) for r in records]
    return Items(ids, ids, "caption", item_arrays(CHAIR_SPECS, records)), _statistics(CHAIR_SPECS)


def annotate_figures(records: Records) -> tuple[Items, dict[str, Statistic]]:
    """annotate.metrics' accuracy over the labelled items (NOANSWER wrong) and answer rate over all, one item a cluster."""
    ids = [str(r["id"]) for r in records]
    return Items(ids, ids, "item", item_arrays(ANNOTATE_SPECS, records)), _statistics(ANNOTATE_SPECS)


def vqa_figures(records: Records) -> tuple[Items, dict[str, Statistic]]:
    """lvlm.evaluate's exact and approximate accuracy, questions clustered by image."""
    ids, clusters, unit = _question_clusters(records)
    return Items(ids, clusters, unit, item_arrays(VQA_SPECS, records)), _statistics(VQA_SPECS)


def _seed_mean(aggregate: Aggregate, seeds: int) -> Statistic:
    """A classifier metric averaged over seeds, seed k's arrays named s{k}_..."""
    prefixes = [f"s{k}_" for k in range(seeds)]

    def statistic(arrays: dict[str, np.ndarray], weights: np.ndarray) -> np.ndarray:
        return np.mean([aggregate({name[len(p):]: v for name, v in arrays.items() if name.startswith(p)}, weights) for p in prefixes], axis=0)

    return statistic


def mmbt_figures(seed_runs: list[Records], task: Any) -> tuple[Items, dict[str, Statistic]]:
    """classifiers.metrics' task metrics averaged over seeds, every seed on the same test items."""
    from annotaudit.classifiers.metrics import metric_specs

    specs = metric_specs(task)
    ids = [str(r["id"]) for r in seed_runs[0]]
    arrays: dict[str, np.ndarray] = {}
    for k, records in enumerate(seed_runs):
        by_id = {str(r["id"]): r for r in records}
        if len(by_id) != len(ids) or any(i not in by_id for i in ids):
            raise MetricMismatch(f"the seeds of one {task.name} classifier were tested on different items")
        arrays.update({f"s{k}_{name}": v for name, v in item_arrays(specs, [by_id[i] for i in ids]).items()})
    return Items(ids, ids, "item", arrays), {s.name: _seed_mean(s.aggregate, len(seed_runs)) for s in specs}
