"""Compose a LLaVA-NeXT model from a CLIP vision tower and any causal LLM, saved for stock transformers."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoImageProcessor,
    AutoModelForCausalLM,
    AutoTokenizer,
    CLIPVisionModel,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
)

from annotaudit.core.checkpoint import files_written_into
from annotaudit.core.errors import InputError
from annotaudit.core.runs import RunDir
from annotaudit.models.registry import check_model_folder, loading
from annotaudit.models.templates import JINJA_TEMPLATES

IMAGE_TOKEN = "<image>"
# The paper's anyres grid for a 336-pixel tower, (height, width); scaled to the tower's own size.
PAPER_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

# Wraps an LLM's own template so it also reads LLaVA-style list contents ({"type": "image"} parts),
# which the templates of text-only LLMs do not know: each image part becomes "<image>\n".
_LIST_CONTENT_PREAMBLE = (
    "{%- set _ns = namespace(msgs=[]) -%}"
    "{%- for m in messages -%}"
    "{%- if m['content'] is string -%}{%- set _ns.msgs = _ns.msgs + [m] -%}"
    "{%- else -%}{%- set _t = namespace(v='') -%}"
    "{%- for part in m['content'] -%}"
    "{%- if part['type'] == 'image' -%}{%- set _t.v = _t.v + '" + IMAGE_TOKEN + "\\n' -%}"
    "{%- elif part['type'] == 'text' -%}{%- set _t.v = _t.v + part['text'] -%}{%- endif -%}"
    "{%- endfor -%}"
    "{%- set _ns.msgs = _ns.msgs + [{'role': m['role'], 'content': _t.v}] -%}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- set messages = _ns.msgs -%}"
)


def default_pinpoints(image_size: int) -> list[list[int]]:
    """The paper's pinpoints, scaled from its 336-pixel CLIP to this tower's input size."""
    return [[h * image_size // 336, w * image_size // 336] for h, w in PAPER_PINPOINTS]


def parse_pinpoints(text: str | None) -> list[list[int]] | None:
    """'336x672,672x336' (height x width) -> [[336, 672], [672, 336]]."""
    if not text:
        return None
    try:
        return [[int(v) for v in item.lower().split("x")] for item in text.replace(" ", "").split(",") if item]
    except ValueError:
        raise InputError(f"--pinpoints {text!r}: expected HxW pairs separated by commas, e.g. 336x672,672x336") from None


def chat_template_for(template: str, tokenizer) -> str:
    """'auto': the LLM's own template if it has one, else Mistral; a built-in name; or a .jinja file."""
    if template == "auto":
        own = getattr(tokenizer, "chat_template", None)
        return _LIST_CONTENT_PREAMBLE + own if own else JINJA_TEMPLATES["mistral"]
    if template == "own":
        if not getattr(tokenizer, "chat_template", None):
            raise InputError("--template own: the LLM's tokenizer has no chat template; use auto or mistral")
        return _LIST_CONTENT_PREAMBLE + tokenizer.chat_template
    if template in JINJA_TEMPLATES:
        return JINJA_TEMPLATES[template]
    path = Path(template)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    raise InputError(f"unknown --template {template!r}; use auto, own, {', '.join(JINJA_TEMPLATES)} or a .jinja file")


def _prepare_tokenizer(tokenizer) -> None:
    """Add <image> as a special token and make sure there is a pad token."""
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]}, replace_extra_special_tokens=False)
    if tokenizer.pad_token is None:
        if tokenizer.unk_token is not None:
            tokenizer.pad_token = tokenizer.unk_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})


def _image_processor(vision_path: str, image_size: int, pinpoints: list[list[int]]) -> LlavaNextImageProcessorPil:
    """A LLaVA-NeXT image processor with the CLIP processor's normalisation and the anyres pinpoints.

    The PIL class is named directly: it saves the same `LlavaNextImageProcessor` type, so a reader with
    torchvision still gets its default backend, and a build without torchvision prints no fallback warning."""
    try:
        clip = AutoImageProcessor.from_pretrained(vision_path)
        mean, std = clip.image_mean, clip.image_std
    except (OSError, ValueError):
        mean = std = None
    extra = {"image_mean": mean, "image_std": std} if mean is not None else {}
    return LlavaNextImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_grid_pinpoints=pinpoints, **extra,
    )


def _check_pinpoints(pinpoints: list[list[int]], image_size: int) -> None:
    for hw in pinpoints:
        if len(hw) != 2 or any(v <= 0 or v % image_size for v in hw):
            raise InputError(f"pinpoint {hw}: each must be height,width multiples of the tower's image size {image_size}")


def build_lvlm(vision_path: str | Path, llm_path: str | Path, out: str | Path, template: str = "auto",
               pinpoints: list[list[int]] | None = None, dtype: str = "auto", force: bool = False, allow_pickle: bool = False) -> Path:
    """Write a LlavaNextForConditionalGeneration (+ processor) that stock transformers loads as is.

    run.json beside the model records the settings and the inputs' fingerprints; a folder holding
    another build (other settings or edited inputs) or a training run is refused unless `force`.
    The same build again rewrites the model: a build does not resume. `allow_pickle` loads inputs
    that have only pickle weights (the user's explicit opt-in).
    """
    vision_path, llm_path, out = str(vision_path), str(llm_path), Path(out)
    settings = {"vision": vision_path, "llm": llm_path, "template": template, "pinpoints": pinpoints, "dtype": dtype}
    check_model_folder(vision_path, "--vision", allow_pickle)
    check_model_folder(llm_path, "--llm", allow_pickle)
    run = RunDir(out, settings, kind="lvlm-build", inputs={"vision": vision_path, "llm": llm_path,
                                                           "template": template if Path(template).is_file() else None}, force=force, start=False)
    safetensors = None if allow_pickle else True
    with loading(llm_path, "--llm", allow_pickle):
        tokenizer = AutoTokenizer.from_pretrained(llm_path)
    chat_template = chat_template_for(template, tokenizer)
    _prepare_tokenizer(tokenizer)
    with loading(llm_path, "--llm", allow_pickle):
        llm = AutoModelForCausalLM.from_pretrained(llm_path, dtype=dtype, use_safetensors=safetensors)
    with loading(vision_path, "--vision", allow_pickle):
        clip = CLIPVisionModel.from_pretrained(vision_path, dtype=llm.dtype, use_safetensors=safetensors)
    vcfg = clip.config
    pinpoints = pinpoints or default_pinpoints(vcfg.image_size)
    _check_pinpoints(pinpoints, vcfg.image_size)
    if len(tokenizer) > llm.get_input_embeddings().weight.shape[0]:
        llm.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    text_cfg = llm.config
    config = LlavaNextConfig(
        vision_config=vcfg.to_dict(), text_config=text_cfg.to_dict(), image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-2,
        image_grid_pinpoints=pinpoints, tie_word_embeddings=getattr(text_cfg, "tie_word_embeddings", False),
        multimodal_projector_bias=True,
    )
    config.pad_token_id = tokenizer.pad_token_id
    torch.manual_seed(0)
    model = LlavaNextForConditionalGeneration(config).to(llm.dtype)  # fresh projector and image_newline
    model.model.vision_tower.load_state_dict(clip.state_dict())
    model.model.language_model.load_state_dict(llm.get_decoder().state_dict())
    model.lm_head.load_state_dict(llm.get_output_embeddings().state_dict())
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    for key in ("bos_token_id", "eos_token_id"):
        setattr(model.generation_config, key, getattr(llm.generation_config, key, None))
    processor = LlavaNextProcessor(
        image_processor=_image_processor(vision_path, vcfg.image_size, pinpoints), tokenizer=tokenizer,
        patch_size=vcfg.patch_size, vision_feature_select_strategy="default", num_additional_image_tokens=1,
        chat_template=chat_template,
    )
    tokenizer.chat_template = chat_template
    run.start()
    with files_written_into(out) as staged:
        model.save_pretrained(staged)
        processor.save_pretrained(staged)
    run.finish(pinpoints=pinpoints, image_token_id=int(config.image_token_id), vocab_size=len(tokenizer))
    return out
