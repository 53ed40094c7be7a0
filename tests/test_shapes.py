"""The shapes world: deterministic, valid COCO, and readable by the project's own readers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from annotaudit.demo import shapes


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return shapes.generate_world(tmp_path_factory.mktemp("world"), n_train=40, n_val=12, n_memes=30, seed=3)


def test_same_seed_same_bytes_other_seed_other_world(world, tmp_path):
    again = shapes.generate_world(tmp_path / "again", n_train=40, n_val=12, n_memes=30, seed=3)
    assert _digest(again.root) == _digest(world.root)
    other = shapes.generate_world(tmp_path / "other", n_train=40, n_val=12, n_memes=30, seed=4)
    assert _digest(other.root)["annotations/instances_train.json"] != _digest(world.root)["annotations/instances_train.json"]


def test_coco_instances_are_valid(world):
    for split, n in (("train", 40), ("val", 12)):
        data = json.loads(world.instances[split].read_text())
        images = {im["id"]: im for im in data["images"]}
        cats = {c["id"]: c["name"] for c in data["categories"]}
        assert len(images) == n and len(cats) == 12
        assert set(cats.values()) == set(shapes.NAMES)
        ann_ids = [a["id"] for a in data["annotations"]]
        assert len(ann_ids) == len(set(ann_ids))
        for a in data["annotations"]:
            im = images[a["image_id"]]
            assert a["category_id"] in cats and a["iscrowd"] == 0
            x, y, w, h = a["bbox"]
            assert 0 <= x and 0 <= y and x + w <= im["width"] and y + h <= im["height"] and a["area"] == w * h
            assert len(a["segmentation"][0]) >= 6 and len(a["segmentation"][0]) % 2 == 0
        for im in images.values():
            assert (world.images / im["file_name"]).is_file()
            assert sum(a["image_id"] == im["id"] for a in data["annotations"]) >= 3  # POPE needs 3 objects


def test_boxes_do_not_overlap(world):
    data = json.loads(world.instances["train"].read_text())
    by_image: dict[int, list] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a["bbox"])
    for boxes in by_image.values():
        for i, (x, y, w, h) in enumerate(boxes):
            for bx, by, bw, bh in boxes[i + 1 :]:
                assert x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y


def test_captions_name_exactly_the_objects(world):
    from annotaudit.audit.chair.metric import extract_objects

    inst = json.loads(world.instances["val"].read_text())
    names = {c["id"]: c["name"] for c in inst["categories"]}
    truth: dict[int, set[str]] = {}
    for a in inst["annotations"]:
        truth.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    for lang in ("en", "it"):
        caps = json.loads(world.captions[("val", lang)].read_text())
        assert len(caps["annotations"]) == 2 * len(truth)
        for c in caps["annotations"]:
            found = {m.category if hasattr(m, "category") else m[1] for m in extract_objects(c["caption"], language=lang)}
            assert found == truth[c["image_id"]], (lang, c["caption"])


def test_italian_agreement():
    assert shapes.phrase_it("bottle", "red") == "una bottiglia rossa"
    assert shapes.phrase_it("book", "yellow", 2) == "due libri gialli"
    assert shapes.phrase_it("umbrella", None) == "un ombrello"
    assert shapes.presence_question("donut", "it") == "C'è una ciambella nell'immagine?"
    assert shapes.phrase_en("umbrella", None) == "an umbrella"


def test_co_occurrence_makes_popular_differ_from_random(tmp_path):
    world = shapes.generate_world(tmp_path / "w", n_train=300, n_val=10, n_memes=2, seed=0)
    meta = json.loads(world.meta.read_text())
    freq = meta["train_frequency"]
    assert max(freq.values()) > 2 * min(freq.values())  # some objects are much more common
    pairs = meta["train_co_occurrence"]
    assert pairs.get("stop sign|traffic light", 0) > 5 * pairs.get("pizza|stop sign", 0) + 5  # themed objects go together


def _yes_rate(world: shapes.World) -> dict[str, float]:
    """Share of "Yes." among the English presence questions about each object."""
    ask = {shapes.presence_question(n, "en"): n for n in shapes.NAMES}
    yes, total = dict.fromkeys(shapes.NAMES, 0), dict.fromkeys(shapes.NAMES, 0)
    for rec in json.loads(world.instruct["en"].read_text()):
        turns = rec["conversations"]
        for q, a in zip(turns[::2], turns[1::2]):
            name = ask.get(q["value"].removeprefix("<image>\n"))
            if name:
                total[name] += 1
                yes[name] += a["value"] == "Yes."
    return {n: yes[n] / total[n] for n in shapes.NAMES if total[n]}


def test_negatives_favour_rare_objects_so_frequent_ones_are_more_often_yes(tmp_path):
    skewed = shapes.generate_world(tmp_path / "skewed", n_train=300, n_val=4, n_memes=2, seed=0)
    uniform = shapes.generate_world(tmp_path / "uniform", n_train=300, n_val=4, n_memes=2, seed=0, negative_skew=0.0)
    freq = json.loads(skewed.meta.read_text())["train_frequency"]
    common, rare = max(freq, key=freq.get), min(freq, key=freq.get)
    s, u = _yes_rate(skewed), _yes_rate(uniform)
    assert s[common] > s[rare] + 0.35  # the prior POPE's popular setting probes
    assert s[common] - s[rare] > u[common] - u[rare]


def test_llava_files_and_conversation_balance(world):
    for lang in ("en", "it"):
        pre = json.loads(world.pretrain[lang].read_text())
        inst = json.loads(world.instruct[lang].read_text())
        assert len(pre) == 40 and len(inst) == 80  # a presence and a description conversation per picture
        for rec in pre + inst:
            assert (world.images / rec["image"]).is_file()
            conv = rec["conversations"]
            assert conv[0]["from"] == "human" and conv[0]["value"].startswith("<image>\n")
            assert [t["from"] for t in conv] == ["human", "gpt"] * (len(conv) // 2)
            assert sum("<image>" in t["value"] for t in conv) == 1
        yes = sum(t["value"].startswith(("Yes", "Sì")) for r in inst for t in r["conversations"] if t["from"] == "gpt")
        no = sum(t["value"].startswith("No") for r in inst for t in r["conversations"] if t["from"] == "gpt")
        assert abs(yes - no) <= 0.1 * (yes + no)
    both = json.loads(world.instruct["both"].read_text())
    assert len(both) == 160 and len({r["id"] for r in both}) == 160


def test_memes_task_reads_with_the_annotate_and_classifier_readers(world):
    from annotaudit.annotate.tasks import get_task, read_items
    from annotaudit.classifiers.data import load_split

    task = get_task(world.task)
    items = read_items(task, world.memes, "train")
    assert len(items) == 18 and all(it.image.is_file() for it in items)
    assert "Is the sentence above true" in task.render(items[0])
    sizes = [len(load_split(task, world.memes, s)) for s in task.splits]  # the same task file serves classify
    assert sizes == [18, 3, 9]
    rows = [json.loads(line) for line in (world.memes / "train.jsonl").read_text().splitlines()]
    assert 0.2 < sum(r["label"] for r in rows) / len(rows) < 0.8


def test_meme_labels_need_the_picture(tmp_path):
    """A presence sentence is true exactly when its object is drawn, and the sentence alone does not tell which."""
    world = shapes.generate_world(tmp_path / "w", n_train=2, n_val=2, n_memes=1200, seed=5)
    rows = [json.loads(line) for split in ("train", "dev_seen", "test_unseen") for line in (world.memes / f"{split}.jsonl").read_text().splitlines()]
    assert len(rows) == 1200 and len({r["id"] for r in rows}) == 1200
    by_text: dict[str, list[int]] = {}
    for r in rows:
        name = next(n for n in shapes.NAMES if r["text"] == shapes.presence_statement(n))
        assert r["truth"] == (0 if name in r["objects"] else 1)
        assert (world.memes / r["img"]).is_file()
        by_text.setdefault(r["text"], []).append(r["truth"])
    assert len(by_text) == 12
    # the best a reader of the sentence alone can do: the majority truth of each sentence
    majority = sum(max(t.count(0), t.count(1)) for t in by_text.values()) / len(rows)
    assert majority < 0.56, majority
    slips = sum(r["label"] != r["truth"] for r in rows) / len(rows)
    assert 0.02 < slips < 0.08
