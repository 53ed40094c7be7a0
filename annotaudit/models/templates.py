"""Chat templates: the model's own where it has one, built-in ones for checkpoints that have none."""

from __future__ import annotations

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)

# Built-in templates render one user turn followed by the assistant's cue.
BUILTIN_TEMPLATES: dict[str, str] = {
    "vicuna_v1.1": VICUNA_SYSTEM + " USER: {msg} ASSISTANT:",
    "mistral": "<s>[INST] {msg} [/INST]",
    "raw": "{msg}",
}

# Jinja versions of the built-ins, for writing into a checkpoint (lvlm build) so stock
# transformers renders the same text, assistant turns included, as training saw it.
JINJA_TEMPLATES: dict[str, str] = {
    "mistral": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['content'] is string %}{% set text = message['content'] %}"
        "{% else %}{% set text = namespace(v='') %}{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}{% set text.v = text.v + '<image>\n' %}{% else %}{% set text.v = text.v + part['text'] %}{% endif %}"
        "{% endfor %}{% set text = text.v %}{% endif %}"
        "{% if message['role'] == 'user' %}[INST] {{ text }} [/INST]{% elif message['role'] == 'assistant' %} {{ text }}{{ eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "vicuna_v1.1": (
        "{{ '" + VICUNA_SYSTEM + "' }}{% for message in messages %}"
        "{% if message['content'] is string %}{% set text = message['content'] %}"
        "{% else %}{% set text = namespace(v='') %}{% for part in message['content'] %}"
        "{% if part['type'] == 'image' %}{% set text.v = text.v + '<image>\n' %}{% else %}{% set text.v = text.v + part['text'] %}{% endif %}"
        "{% endfor %}{% set text = text.v %}{% endif %}"
        "{% if message['role'] == 'user' %} USER: {{ text }}{% elif message['role'] == 'assistant' %} ASSISTANT: {{ text }}{{ eos_token }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %} ASSISTANT:{% endif %}"
    ),
}


def render_builtin(template: str, msg: str, image_token: str | None = None) -> str:
    """Render a built-in template; an image placeholder goes before the message, LLaVA-style."""
    if template not in BUILTIN_TEMPLATES:
        raise KeyError(f"unknown chat template {template!r}; built-in: {', '.join(BUILTIN_TEMPLATES)} (or 'own')")
    if image_token:
        msg = f"{image_token}\n{msg}"
    return BUILTIN_TEMPLATES[template].format(msg=msg)


def render_own(processor_or_tokenizer, msg: str, has_image: bool) -> str:
    """Render with the checkpoint's own chat template, an image part first when there is one."""
    if has_image:
        content = [{"type": "image"}, {"type": "text", "text": msg}]
    else:
        content = msg
    return processor_or_tokenizer.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False)
