"""LLaVA conversation data: chat-template rendering, label masking to assistant turns, batching.

Labels are found by rendering the conversation prefix by prefix with the model's own chat template
and checking that each rendering's token ids are a prefix of the whole conversation's ids; a sample
where that fails is an error naming its id, never silently dropped or mislabelled.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from annotaudit.core.errors import InputError
from annotaudit.core.io import read_records, safe_path
from annotaudit.models.base import load_image

IGNORE = -100
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
IMAGE_TOKEN = "<image>"


def load_conversations(path: str | Path) -> list[dict[str, Any]]:
    """Read LLaVA JSON (a list), JSONL or concatenated objects; check ids, roles and the <image> placeholder."""
    path = Path(path)
    records = [rec for _, rec in read_records(path)]
    if not records:
        raise InputError("no conversations: expected a JSON list (or JSON Lines) of {id, image, conversations}", path=path)
    if len(records) == 1 and "conversations" not in records[0] and not any(k in records[0] for k in ("id", "image")):
        raise InputError("expected a JSON list of {id, image, conversations}", path=path)
    seen: set[str] = set()
    for n, rec in enumerate(records):
        _check_record(rec, n, path, seen)
    return records


def _check_record(rec: dict[str, Any], n: int, path: Path, seen: set[str]) -> None:
    sid = str(rec.get("id", n))
    if "conversations" not in rec:
        raise InputError("no 'conversations'", path=path, item=sid)
    rec["id"] = sid
    if sid in seen:
        raise InputError("duplicate id", path=path, item=sid)
    seen.add(sid)
    turns = rec["conversations"]
    if not isinstance(turns, list) or not turns:
        raise InputError("'conversations' must be a non-empty list", path=path, item=sid)
    for t in turns:
        if not isinstance(t, dict) or ROLES.get(t.get("from")) is None or not isinstance(t.get("value"), str):
            raise InputError(f"bad turn {t!r}: need {{from: human|gpt, value: str}}", path=path, item=sid)
    if not any(ROLES[t["from"]] == "assistant" for t in turns):
        raise InputError("no assistant (gpt) turn to learn from", path=path, item=sid)
    n_image = sum(t["value"].count(IMAGE_TOKEN) for t in turns)
    if rec.get("image") and n_image != 1:
        raise InputError(f"has an image, so the first human turn needs exactly one {IMAGE_TOKEN} (found {n_image})", path=path, item=sid)
    if not rec.get("image") and n_image:
        raise InputError(f"{IMAGE_TOKEN} in the text but no 'image'", path=path, item=sid)


def to_messages(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """LLaVA turns -> chat messages; the image part goes first in its turn, as at inference."""
    messages = []
    for t in rec["conversations"]:
        value = t["value"]
        if IMAGE_TOKEN in value:
            text = value.replace(IMAGE_TOKEN, "").strip("\n")
            content: Any = [{"type": "image"}, {"type": "text", "text": text}]
        else:
            content = value
        messages.append({"role": ROLES[t["from"]], "content": content})
    return messages


def _render(tokenizer, messages: list[dict[str, Any]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def _ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, in one batched call; BOS is added unless the template already wrote it."""
    bos = tokenizer.bos_token
    add = [not (bos and t.startswith(bos)) for t in texts]
    out: list[list[int]] = [[] for _ in texts]
    for flag in set(add):
        at = [k for k, a in enumerate(add) if a == flag]
        for k, ids in zip(at, tokenizer([texts[k] for k in at], add_special_tokens=flag)["input_ids"]):
            out[k] = ids
    return out


def mask_conversation(tokenizer, messages: list[dict[str, Any]], sample_id: str) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and labels that keep only the assistant turns."""
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    texts = [_render(tokenizer, messages, False)]
    for i in turns:
        texts += [_render(tokenizer, messages[:i], True), _render(tokenizer, messages[: i + 1], False)]
    full, *parts = _ids(tokenizer, texts)
    labels = [IGNORE] * len(full)
    for i, before, through in zip(turns, parts[::2], parts[1::2]):
        for name, part in (("the prompt before", before), ("the conversation through", through)):
            if full[: len(part)] != part:
                raise InputError(
                    f"label masking failed: {name} assistant turn {i} does not tokenize as a prefix of the whole "
                    "conversation under this chat template", item=sample_id,
                )
        if len(through) <= len(before):
            raise InputError(f"label masking failed: assistant turn {i} renders to no tokens", item=sample_id)
        labels[len(before) : len(through)] = full[len(before) : len(through)]
    return full, labels


@dataclass
class Encoded:
    """One training sample, ready to batch."""

    id: str
    input_ids: list[int]
    labels: list[int]
    pixel_values: torch.Tensor | None = None
    image_size: tuple[int, int] | None = None


def count_image_tokens(processor, height: int, width: int) -> int:
    """How many <image> tokens LLaVA-NeXT's anyres gives an image of this size (own arithmetic).

    Base view + the best pinpoint's grid of tiles, unpadded back to the image's aspect ratio, with one
    image_newline per row; minus the CLS token under the 'default' feature strategy.
    """
    ip = processor.image_processor
    size = ip.crop_size["height"] if isinstance(ip.crop_size, dict) else ip.crop_size.height
    side = size // processor.patch_size  # patches per side of one tile
    best_h, best_w = _best_resolution(height, width, ip.image_grid_pinpoints)
    cur_h, cur_w = side * (best_h // size), side * (best_w // size)
    if width / height > cur_w / cur_h:
        new_h = int(round(height * (cur_w / width), 7))
        cur_h -= ((cur_h - new_h) // 2) * 2
    else:
        new_w = int(round(width * (cur_h / height), 7))
        cur_w -= ((cur_w - new_w) // 2) * 2
    base = side * side + processor.num_additional_image_tokens
    total = base + cur_h * cur_w + cur_h
    return total - 1 if processor.vision_feature_select_strategy == "default" else total


def _best_resolution(height: int, width: int, pinpoints: list[list[int]]) -> tuple[int, int]:
    """The pinpoint keeping most of the image's resolution, then wasting least area (LLaVA-NeXT's rule)."""
    best, best_eff, best_waste = None, -1, float("inf")
    for h, w in pinpoints:
        scale = min(w / width, h / height)
        dw, dh = int(width * scale), int(height * scale)
        eff = min(dw * dh, width * height)
        waste = w * h - eff
        if eff > best_eff or (eff == best_eff and waste < best_waste):
            best, best_eff, best_waste = (h, w), eff, waste
    return best  # type: ignore[return-value]


def encode_sample(processor, rec: dict[str, Any], images_dir: str | Path | None, max_length: int, pixels: bool = True,
                  text: tuple[Sequence[int], Sequence[int]] | None = None, image_cache: dict | None = None,
                  sizes: dict | None = None) -> Encoded:
    """Mask, expand the image placeholder to its anyres token count, and truncate text only.

    `pixels=False` still opens the image (its size sets the token count) but skips the image
    processor: the pre-training check needs every error, not the tensors. `text` is the sample's
    `mask_conversation` result when it is already known; `image_cache` keeps each image's tensors, and
    `sizes` each image's size, so a picture that several samples share is opened once."""
    sid = rec["id"]
    ids, labels = (list(text[0]), list(text[1])) if text is not None else mask_conversation(processor.tokenizer, to_messages(rec), sid)
    pixel, size = None, None
    if rec.get("image"):
        try:
            path = safe_path(images_dir or ".", rec["image"])
        except InputError as exc:
            raise InputError(exc.message, item=sid) from None
        if pixels and image_cache is not None and path in image_cache:
            pixel, size = image_cache[path]
        elif not pixels and sizes is not None and path in sizes:
            size = sizes[path]
        else:
            try:
                image = load_image(path)
            except InputError as exc:
                raise InputError(exc.message, path=path, item=sid) from None
            size = (image.height, image.width)
            if sizes is not None:
                sizes[path] = size
            if pixels:
                pixel = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"][0]
                if image_cache is not None:
                    image_cache[path] = (pixel, size)
        n = count_image_tokens(processor, *size)
        at = ids.index(processor.image_token_id)
        ids = ids[:at] + [processor.image_token_id] * n + ids[at + 1 :]
        labels = labels[:at] + [IGNORE] * n + labels[at + 1 :]
        if at + n >= max_length:
            raise InputError(f"the image needs {n} tokens after {at} text tokens, more than --max-length {max_length}; raise it", item=sid)
    ids, labels = ids[:max_length], labels[:max_length]
    if all(v == IGNORE for v in labels[1:]):
        raise InputError(f"no answer tokens left within --max-length {max_length}; raise it", item=sid)
    return Encoded(sid, ids, labels, pixel, size)


class ConversationDataset(torch.utils.data.Dataset):
    """Encodes lazily, so a large JSON starts at once; every error names its sample id.

    `check()` encodes every sample up front, so a bad one fails before training rather than hours
    in. It keeps the text part (two int32 arrays, 8 bytes a token) and each sample's length, so the
    epochs after it only open images and length-grouped batches need no second pass.
    `cache_images` keeps each image's tensors after first use: for a small image set seen over
    several epochs, not for LLaVA's hundreds of thousands of images.
    """

    def __init__(self, records: list[dict[str, Any]], processor, images_dir: str | Path | None, max_length: int = 2048,
                 cache_images: bool = False):
        self.records, self.processor, self.images_dir, self.max_length = records, processor, images_dir, max_length
        self.text: list[tuple[array, array]] | None = None
        self.lengths: list[int] | None = None
        self.image_cache: dict | None = {} if cache_images else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Encoded:
        text = self.text[i] if self.text is not None else None
        return encode_sample(self.processor, self.records[i], self.images_dir, self.max_length, text=text, image_cache=self.image_cache)

    def check(self, advance: Callable[[], Any] = lambda: None) -> None:
        text, lengths, sizes = [], [], {}
        for rec in self.records:
            ids, labels = mask_conversation(self.processor.tokenizer, to_messages(rec), rec["id"])
            enc = encode_sample(self.processor, rec, self.images_dir, self.max_length, pixels=False, text=(ids, labels), sizes=sizes)
            text.append((array("i", ids), array("i", labels)))
            lengths.append(len(enc.input_ids))
            advance()
        self.text, self.lengths = text, lengths


def collate(samples: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad text; stack images of the samples that have one, padding their tile counts."""
    width = max(len(s.input_ids) for s in samples)
    ids = torch.full((len(samples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(samples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(samples), width), dtype=torch.long)
    for b, s in enumerate(samples):
        n = len(s.input_ids)
        ids[b, :n], labels[b, :n], mask[b, :n] = torch.tensor(s.input_ids), torch.tensor(s.labels), 1
    batch = {"input_ids": ids, "labels": labels, "attention_mask": mask}
    with_image = [s for s in samples if s.pixel_values is not None]
    if with_image:
        tiles = max(s.pixel_values.shape[0] for s in with_image)
        pv = torch.zeros((len(with_image), tiles, *with_image[0].pixel_values.shape[1:]), dtype=with_image[0].pixel_values.dtype)
        for b, s in enumerate(with_image):
            pv[b, : s.pixel_values.shape[0]] = s.pixel_values
        batch["pixel_values"] = pv
        batch["image_sizes"] = torch.tensor([s.image_size for s in with_image], dtype=torch.long)
    return batch
