"""Each kind's figures for compare: its items, how they cluster, and the metric specs its command defines.

The per-item arrays and aggregates are the commands' own MetricSpecs (audit.pope, audit.chair,
annotate.metrics, lvlm.evaluate, classifiers.metrics), the very functions that wrote metrics.json,
so the bootstrap resamples exactly the figures the runs reported. Compare adds what each item is
(its key, for pairing across runs, and the content that must agree), the clusters (POPE and VQA
questions by image, CHAIR captions by image), which figures are proportions (successes over trials,
for exact intervals on few items), and two figures over several parts: POPE's mean F1 over settings
and a classifier's metrics averaged over seeds.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from annotaudit.annotate.metrics import METRICS as ANNOTATE_SPECS
from annotaudit.audit.chair.metric import MEAN_LENGTH
from annotaudit.audit.chair.metric import METRICS as CHAIR_SPECS
from annotaudit.audit.pope.protocol import METRICS as POPE_SPECS
from annotaudit.core.errors import InputError
from annotaudit.core.metrics import Aggregate, MetricSpec, item_arrays, names
from annotaudit.lvlm.evaluate import METRICS as VQA_SPECS

from .bootstrap import Items, Proportion, Statistic, mean_of

Records = list[dict[str, Any]]
POPE_METRICS, CHAIR_METRICS, ANNOTATE_METRICS, VQA_METRICS = (names(s) for s in (POPE_SPECS, CHAIR_SPECS, ANNOTATE_SPECS, VQA_SPECS))


def _statistics(specs: tuple[MetricSpec, ...]) -> dict[str, Statistic]:
    return {s.name: s.aggregate for s in specs}


def content_hash(*parts: Any) -> str:
    """A short hash of what an item is (its target, image, text), never of the rendered prompt."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_name(path: Any) -> str | None:
    return None if path in (None, "") else str(path).replace("\\", "/").rsplit("/", 1)[-1]


# Which figures are proportions (per item, successes and trials), for exact intervals on few items: as their specs say.
PROPORTIONS: dict[str, dict[str, Proportion]] = {
    kind: {s.name: s.share for s in specs if s.share is not None}
    for kind, specs in (("pope", POPE_SPECS), ("chair", CHAIR_SPECS), ("annotate", ANNOTATE_SPECS), ("vqa", VQA_SPECS))
}


def pope_figures(records: Records, setting: str) -> tuple[Items, dict[str, Statistic]]:
    """audit.pope's rates; a question is its image and object within the setting (ids and order differ between
    files), its label must agree across runs, and the questions of one image form a cluster."""
    from annotaudit.audit.pope.formats import question_key

    ids, clusters, contents, images = [], [], [], True
    for r in records:
        given = r.get("input") or {}
        image, obj = question_key(given.get("image"), given.get("prompt"))
        images &= image is not None
        qid = str((r.get("meta") or {}).get("question_id", r["id"]))
        ids.append(f"{setting}/{image}/{obj}" if image is not None and obj is not None else f"{setting}/question {qid}")
        clusters.append(str(image) if image is not None else ids[-1])
        contents.append(str(r.get("target")))
    items = Items(ids, clusters, "image" if images else "question", item_arrays(POPE_SPECS, records), contents)
    return items, _statistics(POPE_SPECS)


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
    """audit.chair's CHAIR_s, CHAIR_i and recall, and the mean caption length in words. An image is the key and the
    cluster: all its captions come along, and its ground-truth objects must agree across runs."""
    ids = [str((r.get("meta") or {}).get("image_id", r["id"])) for r in records]
    contents = [content_hash(sorted(map(str, r.get("target") or []))) for r in records]
    return Items(ids, ids, "image", item_arrays((*CHAIR_SPECS, MEAN_LENGTH), records), contents), _statistics((*CHAIR_SPECS, MEAN_LENGTH))


def annotate_figures(records: Records) -> tuple[Items, dict[str, Statistic]]:
    """annotate.metrics' accuracy over the labelled items (NOANSWER wrong) and answer rate over all, one item a cluster;
    an item is its id, with its human label, image file name and language as its content."""
    ids = [str(r["id"]) for r in records]
    contents = [content_hash(r.get("target"), _file_name((r.get("input") or {}).get("image")), (r.get("meta") or {}).get("language")) for r in records]
    return Items(ids, ids, "item", item_arrays(ANNOTATE_SPECS, records), contents), _statistics(ANNOTATE_SPECS)


def vqa_figures(records: Records) -> tuple[Items, dict[str, Statistic]]:
    """lvlm.evaluate's exact and approximate accuracy; a question is its id with its answer and image as content,
    questions clustered by image."""
    ids, clusters, contents, images = [], [], [], True
    for r in records:
        qid = str((r.get("meta") or {}).get("question_id", r["id"]))
        image = (r.get("input") or {}).get("image")
        images &= image not in (None, "")
        ids.append(qid)
        clusters.append(str(image) if image not in (None, "") else qid)
        contents.append(content_hash(r.get("target"), _file_name(image)))
    return Items(ids, clusters, "image" if images else "question", item_arrays(VQA_SPECS, records), contents), _statistics(VQA_SPECS)


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
            raise InputError(f"the seeds of one {task.name} classifier were tested on different items; name its runs apart with --label NAME=RUN_DIR")
        arrays.update({f"s{k}_{name}": v for name, v in item_arrays(specs, [by_id[i] for i in ids]).items()})
    first = {str(r["id"]): r for r in seed_runs[0]}
    given = {i: first[i].get("input") or {} for i in ids}  # not the image: a text-only arm tests the same items without it
    contents = [content_hash(given[i].get("text"), given[i].get("text_pair"), first[i].get("target")) for i in ids]
    return Items(ids, ids, "item", arrays, contents), {s.name: _seed_mean(s.aggregate, len(seed_runs)) for s in specs}
