"""Bad input in every command: exit code 2, one red line naming the file and line or the item, no traceback,
and a run folder that held earlier results is left byte for byte as it was.

Each case builds its input in a fresh folder and runs the real CLI in-process through `cli.main._run`,
the same error mapping a user's shell gets. Most cases fail before any model loads; the image cases
load the tiny LLaVA-NeXT, because an image is opened only when the model needs it.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from annotaudit.cli.main import _run, app
from annotaudit.core.io import DIGEST_CACHE

TASK = """\
name = "sentiment"
prompt = "Review: {text}\\nIs this review positive or negative? Answer:"
labels = ["positive", "negative"]
positive = "positive"
"""
QUESTION = "Is there a dog in the image?"
BIG_LINE = 10 * 1024 * 1024  # a line over core.io.MAX_LINE_CHARS (8 MiB)


@dataclass
class Case:
    """A command line, the words its error line must hold, and the folder that must not change."""

    args: list[str]
    names: list[str]
    keep: Path | None = None
    extra: Callable[[], None] | None = None  # a further check after the run


# Inputs --------------------------------------------------------------------------------------------


def jpeg_bytes(size: int = 48, seed: int = 0) -> bytes:
    rng = random.Random(seed)
    img = Image.new("RGB", (size, size))
    img.putdata([(rng.randrange(256), rng.randrange(256), rng.randrange(256)) for _ in range(size * size)])
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95)
    return buf.getvalue()


BAD_IMAGES = {
    "truncated": lambda: jpeg_bytes()[: len(jpeg_bytes()) // 2],
    "garbage": lambda: b"this is not a JPEG at all\n" * 40,
    "empty": lambda: b"",
}


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def reviews(n: int = 3, image: str | None = None) -> list[dict]:
    rows = [{"id": f"r{i}", "text": f"review {i} was {'good' if i % 2 else 'bad'}", "label": "positive" if i % 2 else "negative"}
            for i in range(n)]
    if image:
        for r in rows:
            r["image"] = image
    return rows


NON_UTF8 = b'{"id": "r0", "text": "fine", "label": "positive"}\n{"id": "r1", "text": "caf\xe9 \xff", "label": "negative"}\n'


class World:
    """One case's folder and the tiny models; helpers build the inputs the commands read."""

    def __init__(self, root: Path, tiny: Callable[[str], Path], good: dict[str, Path]):
        self.root, self.tiny, self.good = root, tiny, good

    def p(self, rel: str) -> Path:
        return self.root / rel

    def task(self, text: str = TASK) -> Path:
        return write(self.p("task.toml"), text)

    def vlm(self) -> str:
        return f"hf:{self.tiny('llava_next')}"

    def llm(self) -> str:
        return f"hf:{self.tiny('llama')}"

    def a_file(self) -> Path:
        return write(self.p("taken.txt"), "a file, not a folder\n")

    def copy_good(self, name: str) -> Path:
        """A copy of an earlier good run folder, to check that a failing command leaves it alone."""
        dest = self.p(f"earlier-{name}")
        shutil.copytree(self.good[name], dest)
        return dest

    def outside_image(self) -> Path:
        return write(self.root.parent / f"{self.root.name}-outside.jpg", jpeg_bytes())

    # annotate
    def annotate(self, data: Path, *more: str, out: Path | None = None, model: str | None = None) -> list[str]:
        return ["annotate", "run", "--task", str(self.task()), "--data", str(data), "--model", model or self.llm(),
                "--out", str(out or self.p("out")), "--max-new-tokens", "2", "--greedy", *more]

    # POPE
    def pope_questions(self, image: str = "COCO_val2014_000000000139.jpg") -> Path:
        write(self.p(f"images/{Path(image).name}"), jpeg_bytes())
        rows = [{"question_id": k, "image": image, "text": QUESTION, "label": "yes" if k % 2 else "no"} for k in range(1, 5)]
        return write(self.p("coco_pope_random.json"), jsonl(rows))

    def pope_run(self, questions: Path, *more: str, out: Path | None = None, model: str | None = None) -> list[str]:
        return ["audit", "pope", "run", "--questions", str(questions), "--images", str(self.p("images")), "--model", model or self.vlm(),
                "--out", str(out or self.p("out")), "--max-new-tokens", "2", *more]

    def pope_answers(self, ids: list[int]) -> Path:
        return write(self.p("answers.jsonl"), jsonl([{"question_id": k, "text": "Yes"} for k in ids]))

    # CHAIR
    def ground_truth(self) -> Path:
        return write(self.p("gt.json"), json.dumps({"139": ["dog", "person"], "285": ["cat"]}))

    def captions(self) -> Path:
        return write(self.p("captions.jsonl"), jsonl([{"image_id": 139, "caption": "A dog and a cat."}, {"image_id": 285, "caption": "A cat."}]))

    def chair_images(self, data: bytes | None = None) -> Path:
        write(self.p("coco/COCO_val2014_000000000139.jpg"), jpeg_bytes() if data is None else data)
        return self.p("coco")

    def chair_run(self, *more: str, out: Path | None = None, gt: Path | None = None, model: str | None = None) -> list[str]:
        return ["audit", "chair", "run", "--model", model or self.vlm(), "--images", str(self.p("coco")), "--out", str(out or self.p("out")),
                "--sample", "1", "--prompt-set", "I1", "--max-new-tokens", "2", "--ground-truth", str(gt or self.ground_truth()), *more]

    # classify
    def splits(self, train: str | bytes | None = None, image: str | None = None) -> Path:
        folder = self.p("cls")
        for split in ("train", "dev", "test"):
            write(folder / f"{split}.jsonl", jsonl(reviews(4, image)))
        if train is not None:
            write(folder / "train.jsonl", train)
        return folder

    def classify(self, data: Path, *more: str, out: Path | None = None) -> list[str]:
        return ["classify", "train", "--task", str(self.task()), "--data", str(data), "--out", str(out or self.p("out")),
                "--text-encoder", str(self.tiny("bert")), "--image-encoder", str(self.tiny("resnet")), "--epochs", "1", "--cpu", *more]

    def classifier(self) -> Path:
        return write(self.p("clf/model/classifier.json"), json.dumps({"labels": ["positive", "negative"], "task": "sentiment"}))

    # lvlm
    def conversations(self, image: str | None = "a.jpg", data: bytes | None = None) -> Path:
        write(self.p("lv-images/a.jpg"), jpeg_bytes() if data is None else data)
        rows = [{"id": f"c{i}", "image": image, "conversations": [{"from": "human", "value": "<image>\nWhat colour?"}, {"from": "gpt", "value": "Red."}]}
                for i in range(2)]
        return write(self.p("conv.jsonl"), jsonl(rows))

    def lvlm_train(self, data: Path, *more: str, out: Path | None = None) -> list[str]:
        return ["lvlm", "train", "--model", str(self.tiny("llava_next")), "--data", str(data), "--images", str(self.p("lv-images")),
                "--stage", "pretrain", "--out", str(out or self.p("out")), "--max-length", "256", *more]

    def vqa(self, image: str = "a.jpg", data: bytes | None = None) -> Path:
        write(self.p("vqa-images/a.jpg"), jpeg_bytes() if data is None else data)
        return write(self.p("vqa.jsonl"), jsonl([{"id": "q1", "image": image, "question": "Di che colore è?", "answer": "rosso"},
                                                {"id": "q2", "image": "a.jpg", "question": "Cosa c'è?", "answer": "un cane"}]))

    def lvlm_eval(self, task: Path, *more: str, out: Path | None = None, model: str | None = None) -> list[str]:
        return ["lvlm", "eval", "--model", model or self.vlm(), "--task", str(task), "--images", str(self.p("vqa-images")),
                "--out", str(out or self.p("out")), "--formatting", "post", "--max-new-tokens", "2", *more]


# Cases ---------------------------------------------------------------------------------------------
# Each builder returns the Case; `names` are the words the one error line must contain.

CASES: list = []


def case(name: str, xfail: str | None = None, mounts: bool = False):
    def add(builder):
        marks = [pytest.mark.xfail(strict=True, reason=xfail)] if xfail else []
        CASES.append(pytest.param(builder, mounts, id=name, marks=marks))
        return builder

    return add


# annotate run ---------------------------------------------------------------------------------------

@case("annotate-run/non-utf8-jsonl")
def _(w):
    keep = w.copy_good("annotate")
    data = write(w.p("data.jsonl"), NON_UTF8)
    return Case(w.annotate(data, out=keep), ["data.jsonl:2", "UTF-8"], keep)


@case("annotate-run/non-utf8-csv")
def _(w):
    data = write(w.p("data.csv"), b"id,text,label\nr0,fine,positive\nr1,caf\xe9,negative\n")
    return Case(w.annotate(data), ["data.csv:3", "UTF-8"])


@case("annotate-run/non-utf8-task-file")
def _(w):
    data = write(w.p("data.jsonl"), jsonl(reviews()))
    args = w.annotate(data)
    write(w.p("bad-task.toml"), TASK.encode().replace(b"Review", b"R\xe9view"))
    args[args.index("--task") + 1] = str(w.p("bad-task.toml"))
    return Case(args, ["bad-task.toml", "UTF-8"])


@case("annotate-run/bad-regex-before-model-loads")
def _(w):
    data = write(w.p("data.jsonl"), jsonl(reviews()))
    args = w.annotate(data, model="hf:/missing/model/dir")  # a model error would come first if the task were checked late
    write(w.p("rx.toml"), TASK + '\n[patterns]\npositive = ["good(", "great"]\n')
    args[args.index("--task") + 1] = str(w.p("rx.toml"))
    return Case(args, ["rx.toml", "good("])


@case("annotate-run/corrupt-gz-data")
def _(w):
    data = write(w.p("data.jsonl.gz"), gzip.compress(jsonl(reviews(50)).encode())[:60])
    return Case(w.annotate(data), ["data.jsonl.gz"])


@case("annotate-run/not-gzip-at-all")
def _(w):
    data = write(w.p("data.jsonl.gz"), b"plain text, not gzip\n")
    return Case(w.annotate(data), ["data.jsonl.gz"])


@case("annotate-run/10MB-line")
def _(w):
    data = write(w.p("data.jsonl"), jsonl(reviews(1)) + json.dumps({"id": "big", "text": "x" * BIG_LINE}) + "\n")
    return Case(w.annotate(data), ["data.jsonl:2", "limit"])


@case("annotate-run/csv-field-over-limit")
def _(w):
    big = ("word " * 20 + "\n") * (9 * 1024 * 1024 // 101)  # many short lines inside one quoted field, over the field limit
    data = write(w.p("data.csv"), f'id,text,label\nr0,fine,positive\nr1,"{big}",negative\n')
    return Case(w.annotate(data), ["data.csv", "limit"])


@case("annotate-run/empty-file")
def _(w):
    keep = w.copy_good("annotate")
    data = write(w.p("data.jsonl"), b"")
    return Case(w.annotate(data, out=keep), ["data.jsonl", "no records"], keep)


@case("annotate-run/every-line-bad")
def _(w):
    data = write(w.p("data.jsonl"), '{"id": "r0"}\nnot json\n')
    return Case(w.annotate(data), ["no items"])


@case("annotate-run/hateful-memes-empty-split")
def _(w):
    write(w.p("hm/test_unseen.jsonl"), "")
    args = w.annotate(w.p("hm"))
    args[args.index("--task") + 1] = "hateful_memes"
    return Case(args, ["test_unseen.jsonl"])


@case("annotate-run/xnli-empty-tsv")
def _(w):
    args = w.annotate(write(w.p("xnli.test.tsv"), ""))
    args[args.index("--task") + 1] = "xnli"
    return Case(args, ["xnli.test.tsv"])


@case("annotate-run/mmimdb-empty-split")
def _(w):
    write(w.p("mm/split.json"), json.dumps({"train": [], "dev": [], "test": []}))
    w.p("mm/dataset").mkdir()
    args = w.annotate(w.p("mm"))
    args[args.index("--task") + 1] = "mmimdb"
    return Case(args, ["split.json"])


@case("annotate-run/limit-minus-one")
def _(w):
    keep = w.copy_good("annotate")
    return Case(w.annotate(w.good["annotate-data"], "--limit", "-1", out=keep), ["--limit"], keep)


@case("annotate-run/limit-zero")
def _(w):
    return Case(w.annotate(write(w.p("data.jsonl"), jsonl(reviews())), "--limit", "0"), ["--limit"])


@case("annotate-run/out-is-a-file")
def _(w):
    taken = w.a_file()
    return Case(w.annotate(write(w.p("data.jsonl"), jsonl(reviews())), out=taken), ["taken.txt"])


@case("annotate-run/out-under-a-file")
def _(w):
    taken = w.a_file()
    return Case(w.annotate(write(w.p("data.jsonl"), jsonl(reviews())), out=taken / "run"), ["taken.txt"])


@case("annotate-run/duplicate-ids-strict")
def _(w):
    data = write(w.p("data.jsonl"), jsonl(reviews(2) + reviews(1)))
    return Case(w.annotate(data, "--strict"), ["data.jsonl:3", "r0"])


@case("annotate-run/image-dotdot-escapes-root")
def _(w):
    w.outside_image()
    data = write(w.p("data.jsonl"), jsonl(reviews(2, image=f"../{w.root.name}-outside.jpg")))
    return Case(w.annotate(data, "--strict"), ["data.jsonl:1", "escapes"])


@case("annotate-run/image-absolute-path-outside-root")
def _(w):
    data = write(w.p("data.jsonl"), jsonl(reviews(2, image=str(w.outside_image()))))
    return Case(w.annotate(data, "--strict"), ["data.jsonl:1", "escapes"])


@case("annotate-run/image-symlink-out-of-root")
def _(w):
    w.p("img").mkdir()
    os.symlink(w.outside_image(), w.p("img/a.jpg"))
    data = write(w.p("data.jsonl"), jsonl(reviews(2, image="img/a.jpg")))
    return Case(w.annotate(data, "--strict"), ["data.jsonl:1", "escapes"])


def _annotate_image(kind: str):
    def build(w):
        write(w.p("img/a.jpg"), BAD_IMAGES[kind]())
        data = write(w.p("data.jsonl"), jsonl(reviews(2, image="img/a.jpg")))
        return Case(w.annotate(data, model=w.vlm()), ["a.jpg", "r0"])

    return build


for _kind in BAD_IMAGES:
    case(f"annotate-run/{_kind}-jpeg")(_annotate_image(_kind))


@case("annotate-run/missing-hf-model-folder-forced-over-earlier-run")
def _(w):
    keep = w.copy_good("annotate")  # --force discards the old results only once the new model has loaded
    return Case(w.annotate(w.good["annotate-data"], "--force", out=keep, model="hf:/missing/dir"), ["/missing/dir"], keep)


@case("annotate-run/missing-local-model-folder")
def _(w):
    return Case(w.annotate(write(w.p("data.jsonl"), jsonl(reviews())), model=str(w.p("no-such-model"))), ["no-such-model"])


@case("annotate-run/read-only-output-folder", mounts=True)
def _(w):
    return Case(w.annotate(write(w.p("data.jsonl"), jsonl(reviews()))), ["read-only"])  # --out is replaced by a read-only mount


# annotate score / extract ----------------------------------------------------------------------------

@case("annotate-score/not-a-run-folder")
def _(w):
    w.p("empty").mkdir()
    return Case(["annotate", "score", str(w.p("empty"))], ["empty", "run.json"])


@case("annotate-score/non-utf8-records")
def _(w):
    keep = w.copy_good("annotate")
    records = (keep / "records.jsonl").read_bytes()
    write(keep / "records.jsonl", records[:20] + b"\xff\xfe" + records[20:])
    return Case(["annotate", "score", str(keep)], ["records.jsonl:1"], keep)


@case("annotate-score/malformed-run-json")
def _(w):
    keep = w.copy_good("annotate")
    write(keep / "run.json", "{ not json")
    return Case(["annotate", "score", str(keep)], ["run.json:1"], keep)


@case("annotate-report/out-is-a-file")
def _(w):
    return Case(["annotate", "report", str(w.copy_good("annotate")), "--out", str(w.a_file())], ["taken.txt"])


@case("annotate-report/not-a-run-folder")
def _(w):
    w.p("empty").mkdir()
    return Case(["annotate", "report", str(w.p("empty")), "--out", str(w.p("report"))], ["empty"])


# annotate verdict: the human labels of two or three annotators on 40 items, an LLM's {item: label}

def verdict_inputs(w, annotators: int = 3, items: int = 40, labels=("yes", "no")) -> tuple[Path, Path]:
    humans = {f"a{k}": {f"i{i}": labels[(i + k * (i % 3 == 0)) % len(labels)] for i in range(items)} for k in range(annotators)}
    llm = {f"i{i}": labels[i % len(labels)] for i in range(items)}
    return write(w.p("humans.json"), json.dumps(humans)), write(w.p("llm.json"), json.dumps(llm))


def verdict_args(humans: Path, llm: Path, out: Path, *more: str) -> list[str]:
    return ["annotate", "verdict", "--humans", str(humans), "--llm", str(llm), "--out", str(out), *more]


def earlier_verdict(w) -> Path:
    """A finished verdict run folder that a failing rerun into it must leave alone."""
    from annotaudit.annotate.verdict import verdict

    humans, llm = verdict_inputs(w)
    verdict(humans, [llm], w.p("earlier-verdict"))
    return w.p("earlier-verdict")


@case("annotate-verdict/no-annotator-reaches-min-items")
def _(w):
    keep = earlier_verdict(w)
    humans, llm = verdict_inputs(w, items=20)
    return Case(verdict_args(humans, llm, keep), ["humans.json", "llm", "30"], keep)


@case("annotate-verdict/label-outside-the-task")
def _(w):
    header = ["language", "gold_label", "sentence1", "sentence2", "pairID", "label1", "label2", "label3"]
    rows = ["\t".join(header)] + ["\t".join(["en", "neutral", "A man sleeps.", "A man rests.", str(k), "neutral", "neutral", "maybe" if k == 7 else "neutral"])
                                  for k in range(40)]
    humans = write(w.p("xnli.dev.tsv"), "\n".join(rows) + "\n")
    llm = write(w.p("llm.json"), json.dumps({f"en-{k}": "neutral" for k in range(40)}))
    return Case(verdict_args(humans, llm, w.p("out")), ["xnli.dev.tsv:9", "en-7", "maybe", "xnli"])


@case("annotate-verdict/ids-do-not-join")
def _(w):
    keep = earlier_verdict(w)
    humans, _ = verdict_inputs(w)
    llm = write(w.p("other.json"), json.dumps({f"x{i}": "yes" for i in range(40)}))
    return Case(verdict_args(humans, llm, keep), ["other.json", "do not join"], keep)


@case("annotate-verdict/text-labels-under-neg-rmse")
def _(w):
    humans, llm = verdict_inputs(w)
    return Case(verdict_args(humans, llm, w.p("out"), "--scoring", "neg_rmse"), ["humans.json", "'yes'", "neg_rmse"])


@case("annotate-verdict/empty-humans-file")
def _(w):
    _, llm = verdict_inputs(w)
    return Case(verdict_args(write(w.p("empty.csv"), ""), llm, w.p("out")), ["empty.csv", "empty"])


@case("annotate-verdict/empty-llm-file")
def _(w):
    humans, _ = verdict_inputs(w)
    return Case(verdict_args(humans, write(w.p("empty.json"), "\n"), w.p("out")), ["empty.json", "empty"])


@case("annotate-verdict/humans-in-no-layout")
def _(w):
    _, llm = verdict_inputs(w)
    humans = write(w.p("humans.csv"), "id,text\ni0,hello\n")
    return Case(verdict_args(humans, llm, w.p("out")), ["humans.csv", "layouts tried", "annotator-columns", "XNLI"])


@case("annotate-verdict/llm-in-no-layout")
def _(w):
    humans, _ = verdict_inputs(w)
    llm = write(w.p("llm.json"), json.dumps([{"item": "i0", "label": "yes"}]))
    return Case(verdict_args(humans, llm, w.p("out")), ["llm.json", "layouts tried", "annotate run"])


@case("annotate-verdict/changed-option-without-force")
def _(w):
    keep = earlier_verdict(w)
    humans, llm = verdict_inputs(w)
    return Case(verdict_args(humans, llm, keep, "--epsilon", "0.2"), ["epsilon", "--force"], keep)


@case("annotate-extract/bad-regex")
def _(w):
    write(w.p("rx.toml"), TASK + '\n[patterns]\nnegative = ["[bad"]\n')
    return Case(["annotate", "extract", "--task", str(w.p("rx.toml")), "it was good"], ["rx.toml", "[bad"])


@case("annotate-extract/non-utf8-task-file")
def _(w):
    write(w.p("t.yaml"), b"name: x\nlabels: [a, b]\nprompt: '{text} \xff'\n")
    return Case(["annotate", "extract", "--task", str(w.p("t.yaml")), "a"], ["t.yaml", "UTF-8"])


@case("annotate-extract/malformed-yaml")
def _(w):
    write(w.p("t.yaml"), "name: x\nlabels: [a, b\nprompt: '{text}'\n")
    return Case(["annotate", "extract", "--task", str(w.p("t.yaml")), "a"], ["t.yaml"])


# audit pope build ------------------------------------------------------------------------------------

def _instances() -> dict:
    images = [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg"} for i in range(1, 9)]
    names = ["dog", "cat", "person", "car", "bus", "chair", "bottle", "cup"]
    cats = [{"id": k, "name": name} for k, name in enumerate(names, 1)]
    anns = [{"id": 10 * i + k, "image_id": i, "category_id": (i + k) % 8 + 1} for i in range(1, 9) for k in range(3)]
    return {"images": images, "annotations": anns, "categories": cats}


@case("pope-build/out-under-a-file")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()))
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--images", "2", "--per-image", "1",
                 "--out", str(w.a_file() / "q.json")], ["taken.txt"])


@case("pope-build/out-is-a-folder")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()))
    w.p("qdir").mkdir()
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--images", "2", "--per-image", "1",
                 "--out", str(w.p("qdir"))], ["qdir"])


@case("pope-build/non-utf8-annotations")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()).encode()[:-30] + b"\xff" + json.dumps(_instances()).encode()[-30:])
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--out", str(w.p("q.json"))],
                ["instances.json", "UTF-8"])


@case("pope-build/corrupt-gz-annotations")
def _(w):
    inst = write(w.p("instances.json.gz"), gzip.compress(json.dumps(_instances()).encode())[:40])
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--out", str(w.p("q.json"))],
                ["instances.json.gz"])


@case("pope-build/no-images")
def _(w):
    inst = write(w.p("instances.json"), json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "dog"}]}))
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--out", str(w.p("q.json"))],
                ["instances.json"])


@case("pope-build/images-minus-one")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()))
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--images", "-1", "--out", str(w.p("q.json"))],
                ["--images"])


@case("pope-build/per-image-zero")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()))
    return Case(["audit", "pope", "build", "--annotations", str(inst), "--setting", "random", "--per-image", "0", "--out", str(w.p("q.json"))],
                ["--per-image"])


# audit pope run --------------------------------------------------------------------------------------

@case("pope-run/non-utf8-questions")
def _(w):
    q = w.pope_questions()
    write(q, q.read_bytes().replace(b"dog", b"d\xf6g", 1))
    return Case(w.pope_run(q), ["coco_pope_random.json:1", "UTF-8"])


@case("pope-run/empty-questions")
def _(w):
    q = w.pope_questions()
    write(q, b"")
    return Case(w.pope_run(q), ["coco_pope_random.json"])


@case("pope-run/10MB-line")
def _(w):
    q = w.pope_questions()
    write(q, q.read_text() + json.dumps({"question_id": 99, "image": "x.jpg", "text": "y" * BIG_LINE, "label": "no"}) + "\n")
    return Case(w.pope_run(q), ["coco_pope_random.json:5", "limit"])


@case("pope-run/image-dotdot-escapes-root")
def _(w):
    w.outside_image()
    q = w.pope_questions(f"../{w.root.name}-outside.jpg")
    return Case(w.pope_run(q), ["coco_pope_random.json:1", "escapes"])


@case("pope-run/duplicate-question-ids")
def _(w):
    q = w.pope_questions()
    write(q, q.read_text() + q.read_text().splitlines(keepends=True)[0])
    return Case(w.pope_run(q), ["coco_pope_random.json:5", "twice"])


@case("pope-run/out-is-a-file")
def _(w):
    return Case(w.pope_run(w.pope_questions(), out=w.a_file()), ["taken.txt"])


@case("pope-run/missing-hf-model-folder")
def _(w):
    return Case(w.pope_run(w.pope_questions(), model="hf:/missing/dir"), ["/missing/dir"])


@case("pope-run/unknown-prompt-variant")
def _(w):
    return Case(w.pope_run(w.pope_questions(), "--prompt-variant", "9"), ["9"])


@case("pope-run/batch-images-zero")
def _(w):
    return Case(w.pope_run(w.pope_questions(), "--batch-images", "0"), ["--batch-images"])


@case("pope-run/calibration-out-of-range")
def _(w):
    return Case(w.pope_run(w.pope_questions(), "--mode", "score", "--calibration", "1.5"), ["--calibration"])


def _pope_image(kind: str):
    def build(w):
        q = w.pope_questions()
        write(w.p("images/COCO_val2014_000000000139.jpg"), BAD_IMAGES[kind]())
        return Case(w.pope_run(q), ["COCO_val2014_000000000139.jpg", "item 1"])

    return build


for _kind in BAD_IMAGES:
    case(f"pope-run/{_kind}-jpeg")(_pope_image(_kind))


# audit pope score ------------------------------------------------------------------------------------

@case("pope-score/duplicate-answer-ids")
def _(w):
    keep = w.copy_good("pope-score")
    q = w.pope_questions()
    return Case(["audit", "pope", "score", "--questions", str(q), "--answers", str(w.pope_answers([1, 2, 3, 4, 2])), "--out", str(keep)],
                ["answers.jsonl", "2"], keep)


@case("pope-score/non-utf8-answers")
def _(w):
    q = w.pope_questions()
    a = w.pope_answers([1, 2, 3, 4])
    write(a, a.read_bytes().replace(b"Yes", b"Y\xe9s", 1))
    return Case(["audit", "pope", "score", "--questions", str(q), "--answers", str(a), "--out", str(w.p("s"))], ["answers.jsonl:1", "UTF-8"])


@case("pope-score/empty-answers")
def _(w):
    return Case(["audit", "pope", "score", "--questions", str(w.pope_questions()), "--answers", str(write(w.p("answers.jsonl"), "")),
                 "--out", str(w.p("s"))], ["answers.jsonl"])


@case("pope-score/no-out")
def _(w):
    return Case(["audit", "pope", "score", "--questions", str(w.pope_questions()), "--answers", str(w.pope_answers([1, 2, 3, 4]))],
                ["--out is required"])


@case("pope-score/out-is-a-file")
def _(w):
    return Case(["audit", "pope", "score", "--questions", str(w.pope_questions()), "--answers", str(w.pope_answers([1, 2, 3, 4])),
                 "--out", str(w.a_file())], ["taken.txt"])


@case("pope-score/run-is-not-a-run-folder")
def _(w):
    w.p("empty").mkdir()
    return Case(["audit", "pope", "score", "--run", str(w.p("empty"))], ["empty"])


@case("annotate-score/a-pope-run-folder")
def _(w):
    keep = w.copy_good("pope-score")
    return Case(["annotate", "score", str(keep)], ["run.json", "'pope' run folder", "audit pope score --run", "annotate score"], keep)


@case("annotate-score/a-folder-from-before-run-kinds")
def _(w):
    keep = w.copy_good("annotate")
    manifest = json.loads((keep / "run.json").read_text())
    del manifest["kind"]
    write(keep / "run.json", json.dumps(manifest))
    return Case(["annotate", "score", str(keep)], ["run.json", "before run folders recorded their kind", "rerun", "--force"], keep)


@case("pope-score/run-is-a-chair-run-folder")
def _(w):
    keep, out = w.copy_good("chair-score"), w.p("rescored")

    def nothing_written() -> None:
        assert not out.exists()

    return Case(["audit", "pope", "score", "--run", str(keep), "--out", str(out)], ["run.json", "'chair' run folder", "audit chair score"],
                keep, nothing_written)


@case("pope-score/read-only-output-folder", mounts=True)
def _(w):
    return Case(["audit", "pope", "score", "--questions", str(w.pope_questions()), "--answers", str(w.pope_answers([1, 2, 3, 4])),
                 "--out", str(w.p("out"))], ["read-only"])


# audit chair build-gt / score ------------------------------------------------------------------------

@case("chair-build-gt/non-utf8-instances")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()).encode().replace(b'"dog"', b'"d\xf6g"'))
    return Case(["audit", "chair", "build-gt", "--instances", str(inst), "--out", str(w.p("gt.json"))], ["instances.json", "UTF-8"])


@case("chair-build-gt/out-under-a-file")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()))
    return Case(["audit", "chair", "build-gt", "--instances", str(inst), "--out", str(w.a_file() / "gt.json")], ["taken.txt"])


@case("chair-build-gt/out-is-a-folder")
def _(w):
    inst = write(w.p("instances.json"), json.dumps(_instances()))
    w.p("gtdir").mkdir()
    return Case(["audit", "chair", "build-gt", "--instances", str(inst), "--out", str(w.p("gtdir"))], ["gtdir"])


@case("chair-score/corrupt-gz-ground-truth")
def _(w):
    keep = w.copy_good("chair-score")
    gt = write(w.p("gt.json.gz"), gzip.compress(json.dumps({str(i): ["dog"] for i in range(2000)}).encode())[:50])
    return Case(["audit", "chair", "score", "--captions", str(w.captions()), "--ground-truth", str(gt), "--out", str(keep)], ["gt.json.gz"], keep)


@case("chair-score/non-utf8-captions")
def _(w):
    keep = w.copy_good("chair-score")
    cap = w.captions()
    write(cap, cap.read_bytes().replace(b"cat.", b"c\xe0t.", 1))
    return Case(["audit", "chair", "score", "--captions", str(cap), "--ground-truth", str(w.ground_truth()), "--out", str(keep)],
                ["captions.jsonl:1", "UTF-8"], keep)


@case("chair-score/empty-captions")
def _(w):
    keep = w.copy_good("chair-score")
    cap = write(w.p("captions.jsonl"), "")
    return Case(["audit", "chair", "score", "--captions", str(cap), "--ground-truth", str(w.ground_truth()), "--out", str(keep)],
                ["captions.jsonl"], keep)


@case("chair-score/10MB-line")
def _(w):
    cap = write(w.p("captions.jsonl"), w.captions().read_text() + json.dumps({"image_id": 139, "caption": "dog " * (BIG_LINE // 4)}) + "\n")
    return Case(["audit", "chair", "score", "--captions", str(cap), "--ground-truth", str(w.ground_truth()), "--out", str(w.p("out"))],
                ["captions.jsonl:3", "limit"])


@case("chair-score/out-is-a-file")
def _(w):
    return Case(["audit", "chair", "score", "--captions", str(w.captions()), "--ground-truth", str(w.ground_truth()), "--out", str(w.a_file())],
                ["taken.txt"])


@case("chair-score/non-utf8-ground-truth")
def _(w):
    gt = write(w.p("gt.json"), b'{"139": ["dog"],\n "285": ["c\xe0t"]}')
    return Case(["audit", "chair", "score", "--captions", str(w.captions()), "--ground-truth", str(gt), "--out", str(w.p("out"))],
                ["gt.json:2", "UTF-8"])


def _disk_full(w):
    many = jsonl([{"image_id": 139, "caption": f"A dog number {i} sits next to a cat and a person on a bench."} for i in range(3000)])
    return Case(["audit", "chair", "score", "--captions", str(write(w.p("captions.jsonl"), many)), "--ground-truth", str(w.ground_truth()),
                 "--out", str(w.p("out"))], ["no space left"])


case("chair-score/disk-full", mounts=True)(_disk_full)


def _disk_full_names_the_file(w):
    c = _disk_full(w)
    at = c.args.index("--out") + 1

    def nothing_half_written():
        left = [p.name for p in Path(c.args[at]).rglob("*") if p.name.endswith(".tmp")]
        assert not left, f"temporary files left behind: {left}"

    return Case(c.args, ["no space left", "records.jsonl"], extra=nothing_half_written)


case("chair-score/disk-full-names-the-file-and-leaves-no-temporary-file", mounts=True)(_disk_full_names_the_file)


# audit chair run -------------------------------------------------------------------------------------

@case("chair-run/symlink-out-of-image-folder")
def _(w):
    w.p("coco").mkdir()
    os.symlink(w.outside_image(), w.p("coco/COCO_val2014_000000000139.jpg"))
    return Case(w.chair_run(model="hf:/missing/dir"), ["COCO_val2014_000000000139.jpg", "escapes"])


def _chair_image(kind: str):
    def build(w):
        w.chair_images(BAD_IMAGES[kind]())
        return Case(w.chair_run(), ["COCO_val2014_000000000139.jpg", "I1:139"])

    return build


for _kind in BAD_IMAGES:
    case(f"chair-run/{_kind}-jpeg")(_chair_image(_kind))


@case("chair-run/corrupt-gz-ground-truth")
def _(w):
    w.chair_images()
    gt = write(w.p("gt.json.gz"), b"\x1f\x8b\x08\x00garbage after a gzip magic number")
    return Case(w.chair_run(gt=gt), ["gt.json.gz"])


@case("chair-run/non-utf8-image-ids")
def _(w):
    w.chair_images()
    ids = write(w.p("ids.txt"), b"139\n28\xff5\n")
    args = w.chair_run()
    args[args.index("--sample") : args.index("--sample") + 2] = ["--image-ids", str(ids)]
    return Case(args, ["ids.txt:2", "UTF-8"])


@case("chair-run/empty-image-ids-file")
def _(w):
    w.chair_images()
    ids = write(w.p("ids.txt"), "\n")
    args = w.chair_run()
    args[args.index("--sample") : args.index("--sample") + 2] = ["--image-ids", str(ids)]
    return Case(args, ["ids.txt"])


@case("chair-run/empty-image-folder")
def _(w):
    w.p("coco").mkdir()
    return Case(w.chair_run(), ["--sample"])


@case("chair-run/out-is-a-file")
def _(w):
    w.chair_images()
    return Case(w.chair_run(out=w.a_file()), ["taken.txt"])


@case("chair-run/missing-hf-model-folder")
def _(w):
    w.chair_images()
    return Case(w.chair_run(model="hf:/missing/dir"), ["/missing/dir"])


# classify train / compare / predict ------------------------------------------------------------------

def _records(ids: list[str]) -> str:
    return jsonl([{"id": i, "input": {}, "target": None, "prediction": "positive", "raw": None, "scores": None, "meta": {}} for i in ids])


@case("classify-train/labels-with-duplicate-ids")
def _(w):
    write(w.p("llm/records.jsonl"), _records(["r0", "r1", "r2", "r1"]))
    return Case(w.classify(w.splits(), "--labels", str(w.p("llm"))), ["records.jsonl:4", "r1"])


@case("classify-train/non-utf8-train-split")
def _(w):
    return Case(w.classify(w.splits(train=NON_UTF8)), ["train.jsonl:2", "UTF-8"])


@case("classify-train/empty-train-split")
def _(w):
    return Case(w.classify(w.splits(train=b"")), ["train"])


@case("classify-train/image-dotdot-escapes-root")
def _(w):
    w.outside_image()
    return Case(w.classify(w.splits(image=f"../../{w.root.name}-outside.jpg")), ["train.jsonl:1", "escapes"])


@case("classify-train/out-is-a-file")
def _(w):
    return Case(w.classify(w.splits(), out=w.a_file()), ["taken.txt"])


@case("classify-compare/missing-run-folder")
def _(w):
    return Case(["classify", "compare", "--task", str(w.task()), "--data", str(w.splits()), "--runs", str(w.p("no-run")),
                 "--out", str(w.p("out")), "--seeds", "1"], ["no-run"])


@case("classify-compare/out-is-a-file")
def _(w):
    write(w.p("llm/records.jsonl"), _records(["r0", "r1"]))
    return Case(["classify", "compare", "--task", str(w.task()), "--data", str(w.splits()), "--runs", str(w.p("llm")),
                 "--out", str(w.a_file()), "--seeds", "1"], ["taken.txt"])


@case("classify-predict/missing-model-folder")
def _(w):
    return Case(["classify", "predict", "--model", str(w.p("no-model")), "--data", str(write(w.p("new.jsonl"), jsonl(reviews()))),
                 "--out", str(w.p("out"))], ["no-model"])


@case("classify-predict/non-utf8-data")
def _(w):
    return Case(["classify", "predict", "--model", str(w.classifier().parent.parent), "--data", str(write(w.p("new.jsonl"), NON_UTF8)),
                 "--out", str(w.p("out"))], ["new.jsonl:2", "UTF-8"])


@case("classify-predict/empty-data")
def _(w):
    return Case(["classify", "predict", "--model", str(w.classifier().parent.parent), "--data", str(write(w.p("new.jsonl"), "")),
                 "--out", str(w.p("out"))], ["new.jsonl"])


@case("classify-predict/image-symlink-out-of-root")
def _(w):
    w.p("img").mkdir()
    os.symlink(w.outside_image(), w.p("img/a.jpg"))
    return Case(["classify", "predict", "--model", str(w.classifier().parent.parent), "--data",
                 str(write(w.p("new.jsonl"), jsonl(reviews(2, image="img/a.jpg")))), "--out", str(w.p("out"))], ["new.jsonl:1", "escapes"])


@case("classify-predict/out-is-a-file")
def _(w):
    return Case(["classify", "predict", "--model", str(w.classifier().parent.parent), "--data", str(write(w.p("new.jsonl"), jsonl(reviews()))),
                 "--out", str(w.a_file())], ["taken.txt"])


# lvlm build / train / eval / score -------------------------------------------------------------------

@case("lvlm-build/missing-llm-folder")
def _(w):
    return Case(["lvlm", "build", "--vision", str(w.tiny("clip-vision")), "--llm", str(w.p("no-llm")), "--out", str(w.p("built"))], ["no-llm"])


@case("lvlm-build/out-is-a-file")
def _(w):
    return Case(["lvlm", "build", "--vision", str(w.tiny("clip-vision")), "--llm", str(w.tiny("mistral")), "--out", str(w.a_file())], ["taken.txt"])


@case("lvlm-train/jsonl-error-on-line-2")
def _(w):
    data = w.conversations()
    lines = data.read_text().splitlines(keepends=True)
    write(data, lines[0] + lines[1][:-5] + "\n")
    return Case(w.lvlm_train(data), ["conv.jsonl:2"])


@case("lvlm-train/non-utf8-data")
def _(w):
    data = w.conversations()
    write(data, data.read_bytes().replace(b"Red", b"R\xe9d"))
    return Case(w.lvlm_train(data), ["conv.jsonl:1", "UTF-8"])


@case("lvlm-train/empty-data")
def _(w):
    w.conversations()
    return Case(w.lvlm_train(write(w.p("conv.jsonl"), "")), ["conv.jsonl"])


@case("lvlm-train/empty-list")
def _(w):
    w.conversations()
    return Case(w.lvlm_train(write(w.p("conv.json"), "[]")), ["conv.json"])


@case("lvlm-train/out-is-a-file")
def _(w):
    return Case(w.lvlm_train(w.conversations(), out=w.a_file()), ["taken.txt"])


@case("lvlm-train/image-dotdot-escapes-root")
def _(w):
    w.outside_image()
    return Case(w.lvlm_train(w.conversations(image=f"../{w.root.name}-outside.jpg")), ["c0", "escapes"])


def _train_image(kind: str):
    def build(w):
        return Case(w.lvlm_train(w.conversations(data=BAD_IMAGES[kind]())), ["a.jpg", "c0"])

    return build


for _kind in BAD_IMAGES:
    case(f"lvlm-train/{_kind}-jpeg")(_train_image(_kind))


@case("lvlm-eval/image-without-extension-resolving-outside-root")
def _(w):
    task = w.vqa(image="photo")
    os.symlink(w.outside_image(), w.p("vqa-images/photo.jpg"))
    return Case(w.lvlm_eval(task), ["photo", "q1", "escapes"])


@case("lvlm-eval/image-dotdot-escapes-root")
def _(w):
    w.outside_image()
    return Case(w.lvlm_eval(w.vqa(image=f"../{w.root.name}-outside.jpg")), ["q1", "escapes"])


@case("lvlm-eval/image-absolute-path")
def _(w):
    return Case(w.lvlm_eval(w.vqa(image=str(w.outside_image()))), ["q1", "escapes"])


def _eval_image(kind: str):
    def build(w):
        return Case(w.lvlm_eval(w.vqa(data=BAD_IMAGES[kind]())), ["a.jpg", "q1"])

    return build


for _kind in BAD_IMAGES:
    case(f"lvlm-eval/{_kind}-jpeg")(_eval_image(_kind))


@case("lvlm-eval/jsonl-error-on-line-2")
def _(w):
    task = w.vqa()
    write(task, task.read_text().splitlines(keepends=True)[0] + '{"id": "q2", "image": \n')
    return Case(w.lvlm_eval(task), ["vqa.jsonl:2"])


@case("lvlm-eval/empty-task-file")
def _(w):
    w.vqa()
    return Case(w.lvlm_eval(write(w.p("vqa.jsonl"), "")), ["vqa.jsonl"])


@case("lvlm-eval/limit-minus-one")
def _(w):
    return Case(w.lvlm_eval(w.vqa(), "--limit", "-1"), ["--limit"])


@case("lvlm-eval/duplicate-question-ids")
def _(w):
    task = w.vqa()
    write(task, task.read_text() + task.read_text().splitlines(keepends=True)[0])
    return Case(w.lvlm_eval(task), ["vqa.jsonl", "q1"])


@case("lvlm-eval/out-is-a-file")
def _(w):
    return Case(w.lvlm_eval(w.vqa(), out=w.a_file()), ["taken.txt"])


@case("lvlm-eval/missing-hf-model-folder")
def _(w):
    return Case(w.lvlm_eval(w.vqa(), model="hf:/missing/dir"), ["/missing/dir"])


@case("lvlm-score/not-a-run-folder")
def _(w):
    w.p("empty").mkdir()
    return Case(["lvlm", "score", "--run", str(w.p("empty"))], ["empty"])


# annotaudit compare: unfinished, edited, unpairable and too few resamples ---------------------------


def _compare(w, *runs: Path, more: tuple[str, ...] = ()) -> list[str]:
    return ["compare", *map(str, runs), "--out", str(w.p("compared")), "--format", "md", *more]


@case("compare/unfinished-run")
def _(w):
    run = w.copy_good("pope-score")
    (run / "metrics.json").unlink()
    return Case(_compare(w, run), ["no metrics.json", "--allow-unfinished", str(run)], run, extra=lambda: _nothing_at(w.p("compared")))


@case("compare/record-deleted")
def _(w):
    run = w.copy_good("pope-score")
    records = (run / "records.jsonl").read_text().splitlines()
    (run / "records.jsonl").write_text("\n".join(records[:-1]) + "\n")
    return Case(_compare(w, run), ["3 records of the 4", str(run)], run, extra=lambda: _nothing_at(w.p("compared")))


@case("compare/same-image-other-content")
def _(w):
    from typer.testing import CliRunner

    run = w.copy_good("chair-score")
    other = write(w.p("gt-other.json"), json.dumps({"139": ["dog", "person"], "285": ["dog"]}))
    res = CliRunner().invoke(app, ["audit", "chair", "score", "--captions", str(w.captions()), "--ground-truth", str(other), "--model", "other",
                                   "--out", str(w.p("chair-other"))])
    assert res.exit_code == 0, res.output
    return Case(_compare(w, run, w.p("chair-other")), ["'285'", "different content", "never paired"], run,
                extra=lambda: _nothing_at(w.p("compared")))


@case("compare/too-few-resamples-for-the-family")
def _(w):
    runs = [w.copy_good("pope-score")] + [w.p(f"pope-{k}") for k in (2, 3)]
    for copy in runs[1:]:
        shutil.copytree(runs[0], copy)
    labels = [x for k, r in enumerate(runs) for x in ("--label", f"m{k}={r}")]
    return Case(_compare(w, *runs, more=(*labels, "--resamples", "100")), ["3 paired differences", "--resamples 119"], runs[0],
                extra=lambda: _nothing_at(w.p("compared")))


def _nothing_at(path: Path) -> None:
    assert not path.exists(), f"{path} was written"


# demo and models ------------------------------------------------------------------------------------

@case("demo/out-is-a-file")
def _(w):
    return Case(["demo", "--quick", "--out", str(w.a_file())], ["taken.txt"])


@case("models-list/unknown-backend")
def _(w):
    return Case(["models", "list", "--backend", "no-such-backend"], ["no-such-backend"])


# Model and encoder folders: missing, pickle-only, a pickle --allow-pickle cannot load safely, a full disk -----


def pickle_only(w, kind: str, payload: bool = False) -> Path:
    """A copy of a tiny model whose weights are pytorch_model.bin (a pickle); with `payload`, one that runs a command when unpickled."""
    import torch
    from safetensors.torch import load_file

    folder = w.p(f"pickled-{kind}")
    shutil.copytree(w.tiny(kind), folder)
    weights = load_file(str(folder / "model.safetensors"))
    (folder / "model.safetensors").unlink()
    torch.save({**weights, **({"extra": Payload(str(w.p("pwned")))} if payload else {})}, folder / "pytorch_model.bin")
    return folder


class Payload:
    """What a hostile pickle holds: unpickling it runs `touch`."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


PICKLE_WORDS = ["pytorch_model.bin", "pickle", "--allow-pickle"]


@case("classify-train/missing-text-encoder-folder")
def _(w):
    args = w.classify(w.splits())
    args[args.index("--text-encoder") + 1] = str(w.p("models/no-bert"))
    return Case(args, ["no-bert", "--text-encoder", "not found"])


@case("classify-train/missing-image-encoder-folder")
def _(w):
    write(w.p("cls/a.jpg"), jpeg_bytes())
    args = w.classify(w.splits(image="a.jpg"))
    args[args.index("--image-encoder") + 1] = str(w.p("models/no-resnet"))
    return Case(args, ["no-resnet", "--image-encoder", "not found"])


@case("classify-train/pickle-only-text-encoder")
def _(w):
    args = w.classify(w.splits())
    args[args.index("--text-encoder") + 1] = str(pickle_only(w, "bert"))
    return Case(args, ["pickled-bert", "--text-encoder", *PICKLE_WORDS])


@case("classify-train/pickle-only-image-encoder")
def _(w):
    write(w.p("cls/a.jpg"), jpeg_bytes())
    args = w.classify(w.splits(image="a.jpg"))
    args[args.index("--image-encoder") + 1] = str(pickle_only(w, "resnet"))
    return Case(args, ["pickled-resnet", "--image-encoder", *PICKLE_WORDS])


@case("classify-train/allow-pickle-on-a-pickle-that-runs-code")
def _(w):
    args = w.classify(w.splits(), "--allow-pickle")
    args[args.index("--text-encoder") + 1] = str(pickle_only(w, "bert", payload=True))

    def nothing_ran() -> None:
        assert not w.p("pwned").exists()

    return Case(args, ["pickled-bert", "--allow-pickle", "weights_only"], extra=nothing_ran)


@case("classify-compare/pickle-only-text-encoder")
def _(w):
    write(w.p("llm/records.jsonl"), _records(["r0", "r1", "r2", "r3"]))
    return Case(["classify", "compare", "--task", str(w.task()), "--data", str(w.splits()), "--runs", str(w.p("llm")), "--out", str(w.p("out")),
                 "--seeds", "1", "--epochs", "1", "--cpu", "--text-encoder", str(pickle_only(w, "bert"))], ["pickled-bert", *PICKLE_WORDS])


@case("classify-predict/pickle-instead-of-safetensors")
def _(w):
    folder = w.classifier().parent
    write(folder / "pytorch_model.bin", b"not read")
    return Case(["classify", "predict", "--model", str(folder.parent), "--data", str(write(w.p("new.jsonl"), jsonl(reviews()))),
                 "--out", str(w.p("out"))], ["pytorch_model.bin", "pickle"])


@case("lvlm-train/missing-model-folder")
def _(w):
    args = w.lvlm_train(w.conversations())
    args[args.index("--model") + 1] = str(w.p("models/no-llava"))
    return Case(args, ["no-llava", "--model", "not found"])


@case("lvlm-train/pickle-only-model")
def _(w):
    args = w.lvlm_train(w.conversations())
    args[args.index("--model") + 1] = str(pickle_only(w, "llava_next"))
    return Case(args, ["pickled-llava_next", "--model", *PICKLE_WORDS])


@case("lvlm-train/allow-pickle-on-a-pickle-that-runs-code")
def _(w):
    args = w.lvlm_train(w.conversations(), "--allow-pickle")
    args[args.index("--model") + 1] = str(pickle_only(w, "llava_next", payload=True))

    def nothing_ran() -> None:
        assert not w.p("pwned").exists()

    return Case(args, ["pickled-llava_next", "weights_only"], extra=nothing_ran)


@case("lvlm-build/pickle-only-llm")
def _(w):
    return Case(["lvlm", "build", "--vision", str(w.tiny("clip-vision")), "--llm", str(pickle_only(w, "mistral")), "--out", str(w.p("built"))],
                ["pickled-mistral", "--llm", *PICKLE_WORDS])


@case("lvlm-build/pickle-only-vision")
def _(w):
    return Case(["lvlm", "build", "--vision", str(pickle_only(w, "clip-vision")), "--llm", str(w.tiny("mistral")), "--out", str(w.p("built"))],
                ["pickled-clip-vision", "--vision", *PICKLE_WORDS])


@case("lvlm-eval/pickle-only-model")
def _(w):
    return Case(w.lvlm_eval(w.vqa(), model=f"hf:{pickle_only(w, 'llava_next')}"), ["pickled-llava_next", *PICKLE_WORDS])


@case("pope-run/pickle-only-model")
def _(w):
    return Case(w.pope_run(w.pope_questions(), model=f"hf:{pickle_only(w, 'llava_next')}"), ["pickled-llava_next", *PICKLE_WORDS])


@case("chair-run/pickle-only-model")
def _(w):
    w.chair_images()
    return Case(w.chair_run(model=f"hf:{pickle_only(w, 'llava_next')}"), ["pickled-llava_next", *PICKLE_WORDS])


@case("annotate-run/allow-pickle-on-a-pickle-that-runs-code")
def _(w):
    data = write(w.p("data.jsonl"), jsonl(reviews()))

    def nothing_ran() -> None:
        assert not w.p("pwned").exists()

    return Case(w.annotate(data, "--allow-pickle", model=f"hf:{pickle_only(w, 'llama', payload=True)}"), ["pickled-llama", "weights_only"],
                extra=nothing_ran)


def _no_partial_files(out: Path):
    def check() -> None:
        left = [str(p.relative_to(out)) for p in out.rglob("*")
                if p.name.endswith((".tmp", ".old")) or (p.is_file() and p.stat().st_size == 0 and p.suffix != ".jsonl" and p.name != ".lock")]
        assert not left, f"left behind: {left}"

    return check


@case("classify-train/disk-full", mounts=True)
def _(w):
    args = w.classify(w.splits())
    return Case(args, ["no space left", "model"], extra=lambda: _no_partial_files(Path(args[args.index("--out") + 1]))())


@case("lvlm-train/disk-full", mounts=True)
def _(w):
    args = w.lvlm_train(w.conversations())
    return Case(args, ["no space left", "step-"], extra=lambda: _no_partial_files(Path(args[args.index("--out") + 1]))())


# The runner ------------------------------------------------------------------------------------------


def snapshot(folder: Path | None) -> dict[str, bytes]:
    """Every file of a folder and its bytes, less the lock (it names the live writer) and the hash cache (it only saves reading inputs again)."""
    if folder is None or not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in (".lock", DIGEST_CACHE)}


def invoke(args: list[str], capsys, monkeypatch) -> tuple[object, str]:
    """Run the CLI as the `annotaudit` script does: exit code (or the uncaught exception) and stderr."""
    monkeypatch.setattr(sys, "argv", ["annotaudit", *args])
    monkeypatch.setenv("COLUMNS", "400")
    capsys.readouterr()
    code: object
    try:
        _run(app)
        code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:  # noqa: BLE001 - a traceback is what this suite hunts for
        code = "Traceback:\n" + traceback.format_exc()
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def good(tiny, tmp_path_factory) -> dict[str, Path]:
    """Earlier good run folders that failing commands must leave alone."""
    root = tmp_path_factory.mktemp("good")
    w = World(root, tiny, {})
    data = write(root / "data.jsonl", jsonl(reviews()))
    runs = {"annotate": w.annotate(data, out=root / "annotate"),
            "chair-score": ["audit", "chair", "score", "--captions", str(w.captions()), "--ground-truth", str(w.ground_truth()),
                            "--out", str(root / "chair-score")],
            "pope-score": ["audit", "pope", "score", "--questions", str(w.pope_questions()), "--answers", str(w.pope_answers([1, 2, 3, 4])),
                           "--out", str(root / "pope-score")]}
    from typer.testing import CliRunner

    for name, args in runs.items():
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, (name, res.output, res.exception)
    return {**{name: root / name for name in runs}, "annotate-data": data}


@pytest.fixture()
def mounted(tmp_path):
    """A 64 KiB tmpfs and a read-only one; skipped where this user cannot mount (only root can)."""
    points = {"full": tmp_path / "mnt-full", "ro": tmp_path / "mnt-ro"}
    done = []
    try:
        for name, opts in (("full", "size=64k"), ("ro", "ro,size=64k")):
            points[name].mkdir()
            res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(points[name])], capture_output=True, text=True)
            if res.returncode != 0:
                pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip()}): disk-full and read-only need root")
            done.append(points[name])
        yield points
    finally:
        for point in done:
            subprocess.run(["umount", "-l", str(point)], check=False)  # lazy: a lock file a failed run left open cannot block it


@pytest.mark.parametrize("build, mounts", CASES)
def test_bad_input_is_one_red_line_and_exit_2(build, mounts, tmp_path, tiny, good, capsys, monkeypatch, request):
    world = World(tmp_path / "w", tiny, good)
    world.root.mkdir()
    c = build(world)
    if mounts:
        points = request.getfixturevalue("mounted")
        point = points["full"] if "disk-full" in request.node.name else points["ro"]
        at = c.args.index("--out") + 1
        c.args[at] = str(point / "out")
    before = snapshot(c.keep)
    code, err = invoke(c.args, capsys, monkeypatch)
    assert "Traceback" not in str(code) and "Traceback" not in err, f"{code}\n{err}"
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert code == 2, f"exit {code}; stderr:\n{err}"
    assert len(errors) == 1 and "\n" not in errors[0], err
    for name in c.names:
        assert name.lower() in errors[0].lower(), f"{name!r} not in {errors[0]!r}"
    assert snapshot(c.keep) == before
    if c.extra is not None:
        c.extra()
    print(errors[0])  # shown with -rP: the line a user reads


def test_the_suite_covers_every_command_with_sixty_cases():
    names = [p.id for p in CASES]
    commands = {n.split("/")[0] for n in names}
    assert len(names) >= 60
    assert commands >= {"annotate-run", "annotate-score", "annotate-extract", "pope-build", "pope-run", "pope-score", "chair-run",
                        "chair-score", "chair-build-gt", "classify-train", "classify-compare", "classify-predict", "lvlm-build", "lvlm-train",
                        "lvlm-eval", "lvlm-score", "annotate-report", "annotate-verdict", "demo", "models-list"}


def test_debug_shows_the_traceback(tmp_path):
    """ANNOTAUDIT_DEBUG=1 lets a developer see where an expected error came from."""
    data = write(tmp_path / "data.jsonl", b"")
    args = [sys.executable, "-m", "annotaudit.cli.main", "annotate", "extract", "--task", str(tmp_path / "missing.toml"), "x"]
    quiet = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "ANNOTAUDIT_DEBUG": ""})
    loud = subprocess.run(args, capture_output=True, text=True, env={**os.environ, "ANNOTAUDIT_DEBUG": "1"})
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr and "missing.toml" in quiet.stderr
    assert loud.returncode != 0 and "Traceback" in loud.stderr and "missing.toml" in loud.stderr
    assert data.exists()
