"""MMBT (Kiela et al. 2019), written anew because transformers no longer ships it.

A BERT-family encoder reads `[CLS] img_1..img_N [SEP] text [SEP]`: the ResNet feature map is pooled to
N vectors, each projected to the encoder's hidden size and put where word embeddings would go. Image
tokens are segment 0, text is segment 1, and positions restart at 0 for the text, so the encoder's
pretrained position and segment embeddings carry over unchanged. Items without an image are plain
`[CLS] text [SEP]` (or a sentence pair), i.e. ordinary text classification with the same weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_model
from torch import nn

from annotaudit.core.checkpoint import folder_written_whole
from annotaudit.core.errors import InputError
from annotaudit.core.io import read_json, write_json, writing
from annotaudit.models.registry import COMPONENTS, loading, local_folder, pickle_weights  # COMPONENTS: short names of the study's encoders

# Pooled grid for N image embeddings, as in the original implementation (rows x columns).
POOL_SHAPES = {1: (1, 1), 2: (2, 1), 3: (3, 1), 4: (2, 2), 5: (5, 1), 6: (3, 2), 7: (7, 1), 8: (4, 2), 9: (3, 3)}

CONFIG_FILE = "classifier.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class MMBTConfig:
    """What a saved classifier needs besides its weights."""

    labels: list[str]
    multi_label: bool = False
    num_image_embeds: int = 3
    max_length: int = 128
    dropout: float = 0.1
    task: str = ""
    text_encoder: str = ""
    image_encoder: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class MMBT(nn.Module):
    """Text encoder + ResNet features as tokens + a linear head on the pooled output."""

    def __init__(self, text_encoder: nn.Module, image_encoder: nn.Module | None, config: MMBTConfig):
        super().__init__()
        if config.num_image_embeds not in POOL_SHAPES:
            raise ValueError(f"num_image_embeds must be one of {sorted(POOL_SHAPES)}, got {config.num_image_embeds}")
        self.config = config
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        hidden = text_encoder.config.hidden_size
        if image_encoder is not None:
            image_dim = getattr(image_encoder.config, "hidden_sizes", [getattr(image_encoder.config, "hidden_size", 0)])[-1]
            self.pool = nn.AdaptiveAvgPool2d(POOL_SHAPES[config.num_image_embeds])
            self.image_proj = nn.Linear(image_dim, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(hidden, len(config.labels))
        # Multi-label positive weights travel with the checkpoint.
        self.register_buffer("pos_weight", torch.ones(len(config.labels)))

    def train(self, mode: bool = True) -> MMBT:
        """BatchNorm statistics of the image encoder stay fixed: fine-tuning batches are far too small for them."""
        super().train(mode)
        if self.image_encoder is not None:
            self.image_encoder.eval()
        return self

    def freeze(self, text: bool, image: bool) -> None:
        """Freeze or thaw the two pretrained encoders; projection and head always train."""
        for p in self.text_encoder.parameters():
            p.requires_grad_(not text)
        if self.image_encoder is not None:
            for p in self.image_encoder.parameters():
                p.requires_grad_(not image)

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """ResNet feature map pooled to (batch, N, channels), before projection."""
        fmap = self.image_encoder(pixel_values=pixel_values).last_hidden_state
        return self.pool(fmap).flatten(2).transpose(1, 2)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
        has_image: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_feats: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """`pixel_values` or cached `image_feats` hold one entry per item with has_image, in batch order."""
        embeds = self.text_encoder.get_input_embeddings()(input_ids)
        if bool(has_image.any()):
            if image_feats is None:
                image_feats = self.image_features(pixel_values)
            projected = self.image_proj(image_feats.to(embeds.dtype))
            n = self.config.num_image_embeds
            slots = torch.zeros_like(embeds)
            slots[has_image, 1 : n + 1] = projected
            mask = torch.zeros(embeds.shape[:2], dtype=torch.bool, device=embeds.device)
            mask[has_image, 1 : n + 1] = True
            embeds = torch.where(mask.unsqueeze(-1), slots, embeds)
        out = self.text_encoder(inputs_embeds=embeds, attention_mask=attention_mask, token_type_ids=token_type_ids, position_ids=position_ids)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]
        logits = self.classifier(self.dropout(pooled))
        result = {"logits": logits}
        if labels is not None:
            result["loss"] = self.loss(logits, labels)
        return result

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.config.multi_label:
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.float(), pos_weight=self.pos_weight)
        return nn.functional.cross_entropy(logits, labels.long())

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.config.multi_label else torch.softmax(logits, dim=-1)


class SequenceBuilder:
    """Turns text (and whether there is an image) into MMBT's token, segment and position ids."""

    def __init__(self, tokenizer: Any, num_image_embeds: int, max_length: int, use_segments: bool = True):
        self.tokenizer = tokenizer
        self.n = num_image_embeds
        self.max_length = max_length
        self.use_segments = use_segments
        self.cls_id = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
        self.sep_id = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
        self.pad_id = tokenizer.pad_token_id or 0
        if self.cls_id is None or self.sep_id is None:
            raise ValueError("the text encoder's tokenizer has no [CLS]/[SEP] (or BOS/EOS) token")

    def encode(self, text: str, has_image: bool, text_pair: str | None = None) -> dict[str, Any]:
        """One item: lists of input_ids, token_type_ids, position_ids, and has_image."""
        if not has_image:
            enc = self.tokenizer(text, text_pair, truncation=True, max_length=self.max_length)
            ids = enc["input_ids"]
            types = enc.get("token_type_ids") or [0] * len(ids)
            types = types if self.use_segments else [0] * len(ids)
            return {"input_ids": ids, "token_type_ids": types, "position_ids": list(range(len(ids))), "has_image": False}
        if text_pair:
            text = f"{text} {text_pair}"
        room = max(self.max_length - (self.n + 2) - 1, 0)
        text_ids = self.tokenizer(text, add_special_tokens=False, truncation=True, max_length=room)["input_ids"][:room] + [self.sep_id]
        ids = [self.cls_id] + [self.pad_id] * self.n + [self.sep_id] + text_ids
        seg = 1 if self.use_segments else 0
        types = [0] * (self.n + 2) + [seg] * len(text_ids)
        positions = list(range(self.n + 2)) + list(range(len(text_ids)))
        return {"input_ids": ids, "token_type_ids": types, "position_ids": positions, "has_image": True}

    def collate(self, encoded: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        """Right-pad a batch; padding is masked out of attention."""
        width = max(len(e["input_ids"]) for e in encoded)
        batch: dict[str, list] = {"input_ids": [], "token_type_ids": [], "position_ids": [], "attention_mask": []}
        for e in encoded:
            pad = width - len(e["input_ids"])
            batch["input_ids"].append(e["input_ids"] + [self.pad_id] * pad)
            batch["token_type_ids"].append(e["token_type_ids"] + [0] * pad)
            batch["position_ids"].append(e["position_ids"] + [0] * pad)
            batch["attention_mask"].append([1] * len(e["input_ids"]) + [0] * pad)
        out = {k: torch.tensor(v, dtype=torch.long) for k, v in batch.items()}
        out["has_image"] = torch.tensor([e["has_image"] for e in encoded], dtype=torch.bool)
        return out


def resolve_encoder(name: str) -> str:
    """A local path, a short alias (bert-base-uncased, resnet-152) or a hub id."""
    return name if local_folder(name) is not None else COMPONENTS.get(name, name)


def load_encoders(text_encoder: str, image_encoder: str | None, allow_pickle: bool = False) -> tuple[nn.Module, Any, nn.Module | None, Any]:
    """Pretrained text encoder + tokenizer, and image encoder + processor (None for text-only tasks).

    A missing folder, one with only pickle weights (unless `allow_pickle`) or one that does not load
    is one line naming it and the option that gave it.
    """
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    safetensors = None if allow_pickle else True
    text_path = resolve_encoder(text_encoder)
    with loading(text_path, "--text-encoder", allow_pickle):
        tokenizer = AutoTokenizer.from_pretrained(text_path)
        text_model = AutoModel.from_pretrained(text_path, use_safetensors=safetensors)
    if image_encoder is None:
        return text_model, tokenizer, None, None
    image_path = resolve_encoder(image_encoder)
    with loading(image_path, "--image-encoder", allow_pickle):
        return text_model, tokenizer, AutoModel.from_pretrained(image_path, use_safetensors=safetensors), AutoImageProcessor.from_pretrained(image_path)


def uses_segments(text_model: nn.Module) -> bool:
    """RoBERTa-style encoders have a single segment; they then see all tokens as segment 0."""
    return getattr(text_model.config, "type_vocab_size", 0) >= 2


def save_classifier(model: MMBT, out_dir: str | Path, tokenizer: Any, image_processor: Any | None) -> Path:
    """Weights as safetensors, plus the encoder configs and preprocessors, so reloading needs no hub.

    The folder is written whole beside its place and then swapped in: a failed write (a full disk)
    leaves the previous copy and says which folder it could not write.
    """
    with folder_written_whole(out_dir) as out:
        model.text_encoder.config.save_pretrained(out / "text_encoder")
        tokenizer.save_pretrained(out / "text_encoder")
        if model.image_encoder is not None:
            model.image_encoder.config.save_pretrained(out / "image_encoder")
            image_processor.save_pretrained(out / "image_encoder")
        with writing(out / WEIGHTS_FILE):
            save_model(model, str(out / WEIGHTS_FILE))
        write_json(out / CONFIG_FILE, asdict(model.config))
    return Path(out_dir)


def load_classifier(path: str | Path, labels: list[str] | None = None) -> tuple[MMBT, Any, Any | None]:
    """Rebuild a saved classifier from its folder: (model, tokenizer, image processor).

    The head's classes are those listed in its classifier.json; with `labels` (the same names in
    the task's order) the head's rows are put in that order, so a head saved under another order
    predicts the same classes by name.
    """
    from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no classifier in {path} (expected {CONFIG_FILE} and {WEIGHTS_FILE})")
    if not (path / WEIGHTS_FILE).is_file():
        pickles = pickle_weights(path)
        raise InputError(f"holds only pickle weights ({pickles[0].name}), which can run code when loaded; a classifier loads only {WEIGHTS_FILE}"
                         if pickles else f"{WEIGHTS_FILE} is missing beside {CONFIG_FILE}", path=path)
    config = MMBTConfig(**read_json(path / CONFIG_FILE))
    text_model = AutoModel.from_config(AutoConfig.from_pretrained(path / "text_encoder"))
    tokenizer = AutoTokenizer.from_pretrained(path / "text_encoder")
    image_model, processor = None, None
    if (path / "image_encoder").is_dir():
        image_model = AutoModel.from_config(AutoConfig.from_pretrained(path / "image_encoder"))
        processor = AutoImageProcessor.from_pretrained(path / "image_encoder")
    model = MMBT(text_model, image_model, config)
    missing, unexpected = model.load_state_dict(load_file(str(path / WEIGHTS_FILE)), strict=False)
    if unexpected or [k for k in missing if not k.endswith("position_ids")]:
        raise ValueError(f"{path / WEIGHTS_FILE} does not match its {CONFIG_FILE}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if labels is not None:
        reorder_head(model, list(labels))
    model.eval()
    return model, tokenizer, processor


@torch.no_grad()
def reorder_head(model: MMBT, labels: list[str]) -> None:
    """Put the head's classes (and positive weights) in the order of `labels`, matched by name."""
    saved = list(model.config.labels)
    if sorted(saved) != sorted(labels):
        raise ValueError(f"the classifier predicts {', '.join(saved)}, not the task's labels {', '.join(labels)}")
    order = torch.tensor([saved.index(lab) for lab in labels])
    model.classifier.weight.copy_(model.classifier.weight[order])
    model.classifier.bias.copy_(model.classifier.bias[order])
    model.pos_weight.copy_(model.pos_weight[order])
    model.config.labels = list(labels)
