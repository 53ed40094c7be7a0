"""The registry and every backend, driven through the real loading path with tiny offline models."""

from __future__ import annotations

import math

import pytest
import torch
from PIL import Image

from annotaudit.models import GenerationConfig, Request, UnknownModel, load_model, registry
from annotaudit.models.templates import render_builtin

VISION_KINDS = ["llava", "llava_next", "instructblip-vicuna", "instructblip-flan-t5"]
TEXT_KINDS = ["llama", "mistral"]
EXPECTED_BACKEND = {"llama": "causal", "mistral": "causal", "llava": "llava", "llava_next": "llava_next",
                    "instructblip-vicuna": "instructblip", "instructblip-flan-t5": "instructblip"}

STUDY_CHECKPOINTS = {
    "vicuna-7b-v1.5": "lmsys/vicuna-7b-v1.5", "vicuna-13b-v1.5": "lmsys/vicuna-13b-v1.5",
    "llama-2-7b": "meta-llama/Llama-2-7b-hf", "llama-2-13b": "meta-llama/Llama-2-13b-hf",
    "open-llama-13b": "openlm-research/open_llama_13b",
    "instructblip-vicuna-7b": "Salesforce/instructblip-vicuna-7b", "instructblip-vicuna-13b": "Salesforce/instructblip-vicuna-13b",
    "instructblip-flan-t5-xl": "Salesforce/instructblip-flan-t5-xl", "instructblip-flan-t5-xxl": "Salesforce/instructblip-flan-t5-xxl",
    "llava-1.5-7b": "llava-hf/llava-1.5-7b-hf", "llava-v1.6-mistral-7b": "llava-hf/llava-v1.6-mistral-7b-hf",
    "minerva-7b-base": "sapienzanlp/Minerva-7B-base-v1.0", "minerva-7b-instruct": "sapienzanlp/Minerva-7B-instruct-v1.0",
    "eurollm-9b": "utter-project/EuroLLM-9B", "eurollm-9b-instruct": "utter-project/EuroLLM-9B-Instruct",
    "velvet-14b": "Almawave/Velvet-14B", "fastweb-miia-7b": "Fastweb/FastwebMIIA-7B",
}


def _requests(vision: bool) -> list[Request]:
    red, blue = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (64, 64), "blue")
    img = (lambda i: i) if vision else (lambda i: None)
    return [Request("Is there a dog in the image?", img(red)), Request("Describe it.", img(blue)), Request("Is there a cat?", img(red))]


def test_registry_has_every_study_model():
    reg = registry()
    for name, ckpt in STUDY_CHECKPOINTS.items():
        assert reg.resolve(name).checkpoint == ckpt
    assert reg.resolve("open-llama-13b").tokenizer_kwargs == {"use_fast": False}
    assert reg.resolve("smollm2-135m-instruct").backend == "gguf"
    assert all(not e.trust_remote_code for e in reg.entries())


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownModel, match="vicuna-7b-v1.5"):
        registry().resolve("vicuna-7b-v15")


def test_builtin_templates_render_exactly():
    assert render_builtin("vicuna_v1.1", "Hi?") == (
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
        "detailed, and polite answers to the user's questions. USER: Hi? ASSISTANT:"
    )
    assert render_builtin("mistral", "Ciao") == "<s>[INST] Ciao [/INST]"
    assert render_builtin("raw", "as is") == "as is"
    assert render_builtin("mistral", "Ciao", image_token="<image>") == "<s>[INST] <image>\nCiao [/INST]"


@pytest.mark.parametrize("kind", TEXT_KINDS + VISION_KINDS)
def test_backend_detected_from_config(tiny, kind):
    model = load_model(f"hf:{tiny(kind)}")
    assert model.entry.backend == EXPECTED_BACKEND[kind]
    assert model.accepts_images == (kind in VISION_KINDS)
    assert model.dtype == torch.float32 and model.device.type == "cpu"


@pytest.mark.parametrize("kind", TEXT_KINDS + VISION_KINDS)
def test_batched_greedy_matches_one_at_a_time(tiny, kind):
    model = load_model(f"hf:{tiny(kind)}")
    reqs = _requests(kind in VISION_KINDS)
    cfg = GenerationConfig(max_new_tokens=6)
    batched = model.generate(reqs, cfg)
    single = [model.generate([r], cfg)[0] for r in reqs]
    assert [g.texts for g in batched] == [g.texts for g in single]
    assert all(1 <= g.num_tokens[0] <= 6 for g in batched)


@pytest.mark.parametrize("kind", TEXT_KINDS + VISION_KINDS)
def test_sampling_is_reproducible_with_a_seed(tiny, kind):
    model = load_model(f"hf:{tiny(kind)}")
    reqs = _requests(kind in VISION_KINDS)
    cfg = GenerationConfig(max_new_tokens=8, do_sample=True, temperature=1.5, top_p=0.95, num_samples=3, seed=7)
    first, again = model.generate(reqs, cfg), model.generate(reqs, cfg)
    assert [g.texts for g in first] == [g.texts for g in again]
    assert all(len(g.texts) == 3 and len(g.num_tokens) == 3 for g in first)
    other = model.generate(reqs, GenerationConfig(**{**cfg.to_dict(), "seed": 8}))
    assert [g.texts for g in other] != [g.texts for g in first]


@pytest.mark.parametrize("kind", TEXT_KINDS + VISION_KINDS)
def test_score_agrees_with_greedy_and_with_batching(tiny, kind):
    """The greedy first token must be the best-scored of a set of candidates that holds it."""
    model = load_model(f"hf:{tiny(kind)}")
    reqs = _requests(kind in VISION_KINDS)
    vocab = ["Yes", "No", " the", "a", "dog", "Sì"]
    batched = model.score(reqs, [vocab] * len(reqs))
    for req, scores in zip(reqs, batched):
        assert all(s < 0 and math.isfinite(s) for s in scores)
        assert model.score([req], [vocab])[0] == pytest.approx(scores, abs=1e-4)
        greedy_id = model.generate([req], GenerationConfig(max_new_tokens=1))[0].token_ids[0][0]
        token = model.tokenizer.decode([greedy_id])
        if greedy_id not in model.tokenizer.all_special_ids and model._continuation_ids(token) == [greedy_id]:
            with_greedy = model.score([req], [vocab + [token]])[0]
            assert max(with_greedy) == pytest.approx(with_greedy[-1], abs=1e-4)


@pytest.mark.parametrize("kind", VISION_KINDS)
def test_each_image_is_encoded_once(tiny, kind):
    model = load_model(f"hf:{tiny(kind)}")
    tower = model.model.vision_model if kind.startswith("instructblip") else model.model.model.vision_tower
    seen = []
    hook = tower.register_forward_hook(lambda mod, args, kwargs_out=None: seen.append(1))
    try:
        reqs = _requests(True) * 2  # six prompts, two distinct images
        model.generate(reqs, GenerationConfig(max_new_tokens=2))
    finally:
        hook.remove()
    assert len(seen) == 1  # one tower pass for the whole batch
    red_pixels = model.processor.image_processor([Image.new("RGB", (40, 30), "red"), Image.new("RGB", (64, 64), "blue")], return_tensors="pt")
    assert red_pixels["pixel_values"].shape[0] == 2


def test_text_model_refuses_nothing_but_images_need_image_model(tiny):
    model = load_model(f"hf:{tiny('instructblip-vicuna')}")
    with pytest.raises(ValueError, match="needs an image"):
        model.generate([Request("no image here")])


def test_smollm2_gguf_answers_a_factual_question(smollm2):
    out = smollm2.generate([Request("What is the capital of France? Answer in one word.")], GenerationConfig(max_new_tokens=12))
    assert "paris" in out[0].text.lower()
    assert "<|im_start|>" in out[0].prompt  # its own chat template was applied
    paris, london, rome = smollm2.score([Request("What is the capital of France?")], [["The capital of France is Paris.", "The capital of France is London.", "The capital of France is Rome."]])[0]
    assert paris > max(london, rome)
