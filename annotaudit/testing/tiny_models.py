"""Tiny random models of every backend, built offline from configs with tokenizers trained on the spot.

Tests and the demo save them with `save_pretrained` and load them back through the registry, so the
path a user's real checkpoint takes is the path these take. Weights are random unless trained.
"""

from __future__ import annotations

import string
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizerFast,
    BlipImageProcessor,
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    ConvNextImageProcessor,
    InstructBlipConfig,
    InstructBlipForConditionalGeneration,
    InstructBlipProcessor,
    InstructBlipQFormerConfig,
    InstructBlipVisionConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaNextConfig,
    LlavaNextForConditionalGeneration,
    LlavaNextImageProcessor,
    LlavaNextProcessor,
    LlavaProcessor,
    MistralConfig,
    MistralForCausalLM,
    PreTrainedTokenizerFast,
    ResNetConfig,
    ResNetModel,
    T5Config,
    T5ForConditionalGeneration,
)

# Special tokens in a fixed order so that every tiny model agrees on their ids.
PAD, EOS, UNK, BOS, IMAGE = "<pad>", "</s>", "<unk>", "<s>", "<image>"
SPECIALS = [PAD, EOS, UNK, BOS, IMAGE]
PAD_ID, EOS_ID, UNK_ID, BOS_ID, IMAGE_ID = range(5)

CORPUS = """
Is there a dog in the image? Yes, there is a dog. No, there is no cat in the image.
Is the text above hateful? The text is not hateful. The text is hateful.
Identify the genre of this movie? Options: drama, comedy or both. Provide short answers. Drama. Comedy. Both.
Premise and hypothesis: entailment, neutral, contradiction. The capital of France is Paris.
Generate a short caption of the image. Provide a brief description of the given image.
A red circle and a blue square on a white background. Two green triangles near a yellow star.
C'è un cane nell'immagine? Sì, c'è un cane. No, non c'è un gatto nell'immagine.
Rispondi utilizzando una sola parola o frase. Rispondi in modo breve e diretto. Rispondi con la lettera.
Un cerchio rosso e un quadrato blu su uno sfondo bianco. Due triangoli verdi vicino a una stella gialla.
A chat between a curious user and an artificial intelligence assistant. USER: ASSISTANT: [INST] [/INST]
<|im_start|>user <|im_end|> <|im_start|>assistant 0 1 2 3 4 5 6 7 8 9 A B C D
"""

CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}{% if part['type'] == 'image' %}<image>\n"
    "{% else %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(corpus: Iterable[str] = (CORPUS,), vocab_size: int = 600, extra_specials: Iterable[str] = ()) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here and now; any text encodes, nothing is downloaded."""
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = SPECIALS + list(extra_specials)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, BOS_ID)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK, pad_token=PAD, padding_side="left")
    fast.add_special_tokens({"additional_special_tokens": [IMAGE] + list(extra_specials)})
    return fast


def _t5_tokenizer() -> PreTrainedTokenizerFast:
    """T5 appends </s> instead of prepending <s>."""
    tok = train_tokenizer()
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(single=f"$A {EOS}", pair=f"$A $B {EOS}", special_tokens=[(EOS, EOS_ID)])
    tok.padding_side = "right"
    return tok


def _text_kwargs(vocab_size: int) -> dict:
    return dict(
        vocab_size=vocab_size, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=BOS_ID, eos_token_id=EOS_ID, pad_token_id=PAD_ID,
        tie_word_embeddings=False,
    )


def _save(model, processor_or_tokenizer, out: Path, seed: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = PAD_ID
    model.save_pretrained(out)
    processor_or_tokenizer.save_pretrained(out)
    return out


def tiny_causal_lm(out: str | Path, arch: str = "llama", chat_template: str | None = None, seed: int = 0, tokenizer: PreTrainedTokenizerFast | None = None,
                   num_attention_heads: int | None = None) -> Path:
    """A tiny Llama or Mistral causal LM. `chat_template` None leaves the checkpoint without one.

    `num_attention_heads` 2 gives 32-wide heads, the narrowest vLLM's CPU attention runs.
    """
    torch.manual_seed(seed)
    tok = tokenizer or train_tokenizer()
    if chat_template:
        tok.chat_template = chat_template
    kwargs = _text_kwargs(len(tok))
    if num_attention_heads:
        kwargs.update(num_attention_heads=num_attention_heads, num_key_value_heads=min(num_attention_heads, kwargs["num_key_value_heads"]))
    model = LlamaForCausalLM(LlamaConfig(**kwargs)) if arch == "llama" else MistralForCausalLM(MistralConfig(**kwargs, sliding_window=None))
    return _save(model, tok, Path(out), seed)


def tiny_clip_vision(out: str | Path, image_size: int = 32, patch_size: int = 8, seed: int = 0) -> Path:
    """A tiny CLIP vision tower with its image processor, the shape of openai/clip-vit-large-patch14-336."""
    torch.manual_seed(seed)
    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=image_size, patch_size=patch_size, projection_dim=32)
    proc = CLIPImageProcessor(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
    return _save_plain(CLIPVisionModel(cfg), proc, Path(out))


def _save_plain(model, processor, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _vision_config(image_size: int = 32, patch_size: int = 8) -> CLIPVisionConfig:
    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=image_size, patch_size=patch_size, projection_dim=32)


def tiny_llava(out: str | Path, seed: int = 0) -> Path:
    """A tiny LLaVA-1.5: CLIP tower, MLP projector, Llama; ChatML template of its own."""
    torch.manual_seed(seed)
    tok = train_tokenizer()
    cfg = LlavaConfig(
        vision_config=_vision_config(), text_config=LlamaConfig(**_text_kwargs(len(tok))), image_token_index=IMAGE_ID,
        vision_feature_layer=-2, vision_feature_select_strategy="default", projector_hidden_act="gelu",
    )
    proc = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}), tokenizer=tok,
        patch_size=8, vision_feature_select_strategy="default", num_additional_image_tokens=1, chat_template=CHATML_TEMPLATE,
    )
    return _save(LlavaForConditionalGeneration(cfg), proc, Path(out), seed)


TINY_PINPOINTS = [[32, 64], [64, 32], [64, 64]]


def tiny_llava_next(out: str | Path, seed: int = 0, pinpoints: list[list[int]] | None = None) -> Path:
    """A tiny LLaVA-NeXT with anyres pinpoints (multiples of its 32-pixel tower)."""
    torch.manual_seed(seed)
    tok = train_tokenizer()
    pinpoints = pinpoints or TINY_PINPOINTS
    cfg = LlavaNextConfig(
        vision_config=_vision_config(), text_config=MistralConfig(**_text_kwargs(len(tok)), sliding_window=None), image_token_index=IMAGE_ID,
        vision_feature_layer=-2, vision_feature_select_strategy="default", image_grid_pinpoints=pinpoints, projector_hidden_act="gelu",
    )
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}, image_grid_pinpoints=pinpoints)
    proc = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
        num_additional_image_tokens=1, chat_template=CHATML_TEMPLATE,
    )
    return _save(LlavaNextForConditionalGeneration(cfg), proc, Path(out), seed)


def tiny_instructblip(out: str | Path, language_model: str = "llama", seed: int = 0) -> Path:
    """A tiny InstructBLIP with a Llama (Vicuna-like) or a T5 (Flan-T5-like) language model."""
    torch.manual_seed(seed)
    tok = train_tokenizer() if language_model == "llama" else _t5_tokenizer()
    qtok = train_tokenizer()
    qtok.padding_side = "right"
    if language_model == "llama":
        text_config = LlamaConfig(**_text_kwargs(len(tok)))
    else:
        text_config = T5Config(
            vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, decoder_start_token_id=PAD_ID,
            pad_token_id=PAD_ID, eos_token_id=EOS_ID, tie_word_embeddings=False, initializer_factor=0.05,
        )
    cfg = InstructBlipConfig(
        vision_config=InstructBlipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8).to_dict(),
        qformer_config=InstructBlipQFormerConfig(vocab_size=len(qtok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, encoder_hidden_size=32, pad_token_id=PAD_ID).to_dict(),
        text_config=text_config.to_dict(), num_query_tokens=4, image_token_index=IMAGE_ID,
    )
    proc = InstructBlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok, qformer_tokenizer=qtok, num_query_tokens=4)
    return _save(InstructBlipForConditionalGeneration(cfg), proc, Path(out), seed)


def tiny_t5(out: str | Path, seed: int = 0) -> Path:
    """A tiny T5 encoder-decoder (Flan-T5 shape)."""
    torch.manual_seed(seed)
    tok = _t5_tokenizer()
    cfg = T5Config(vocab_size=len(tok), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, decoder_start_token_id=PAD_ID, pad_token_id=PAD_ID, eos_token_id=EOS_ID)
    return _save(T5ForConditionalGeneration(cfg), tok, Path(out), seed)


def train_wordpiece(corpus: Iterable[str] = (CORPUS,), vocab_size: int = 400) -> BertTokenizerFast:
    """A BERT WordPiece tokenizer (lower-cased, like bert-base-uncased) whose vocabulary is counted from `corpus`.

    The vocabulary is every character (ASCII ones always), as a word start and as a continuation, then the most frequent
    words (ties alphabetical). Counting it ourselves keeps it identical from run to run, which the
    tokenizers library's WordPiece trainer does not guarantee.
    """
    normalizer, pre = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for text in corpus:
        counts.update(w for w, _ in pre.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in counts for c in w} | set(string.ascii_lowercase + string.digits + string.punctuation))
    words = [w for w, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + chars + ["##" + c for c in chars]
    vocab += words[: max(0, vocab_size - len(vocab))]
    tok = Tokenizer(models.WordPiece(vocab={t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer, tok.decoder = normalizer, pre, decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def tiny_bert(out: str | Path, seed: int = 0, corpus: Iterable[str] = (CORPUS,)) -> Path:
    """A tiny BERT encoder with a WordPiece tokenizer trained on `corpus`."""
    torch.manual_seed(seed)
    tok = train_wordpiece(corpus)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=256)
    return _save_plain(BertModel(cfg), tok, Path(out))


def tiny_resnet(out: str | Path, seed: int = 0, image_size: int = 64) -> Path:
    """A tiny ResNet (the ResNet-152 layout, scaled down) with its image processor."""
    torch.manual_seed(seed)
    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 64, 64], depths=[1, 1, 1, 1], layer_type="bottleneck")
    proc = ConvNextImageProcessor(size={"shortest_edge": image_size}, crop_pct=1.0)
    return _save_plain(ResNetModel(cfg), proc, Path(out))


BUILDERS = {
    "llama": lambda out, **kw: tiny_causal_lm(out, "llama", **kw),
    "mistral": lambda out, **kw: tiny_causal_lm(out, "mistral", **kw),
    "llama-head32": lambda out, **kw: tiny_causal_lm(out, "llama", num_attention_heads=2, **kw),
    "llava": tiny_llava,
    "llava_next": tiny_llava_next,
    "instructblip-vicuna": lambda out, **kw: tiny_instructblip(out, "llama", **kw),
    "instructblip-flan-t5": lambda out, **kw: tiny_instructblip(out, "t5", **kw),
    "clip-vision": tiny_clip_vision,
    "bert": tiny_bert,
    "resnet": tiny_resnet,
}
