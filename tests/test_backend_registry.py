"""Backends by name: lazy built-ins, a pip-installed plugin's backend through `annotaudit.backends`, the decorator, and no torch for server models."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from annotaudit.core.errors import InputError
from annotaudit.models import BACKEND_ENTRY_POINT_GROUP, BACKENDS, ENTRY_POINT_GROUP, GenerationConfig, ModelEntry, Request, backend, load_model
from annotaudit.models.backends import CausalLM

PLUGIN_PYPROJECT = f"""
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "annotaudit-backend-example"
version = "0.0.1"

[project.entry-points."{BACKEND_ENTRY_POINT_GROUP}"]
question-answer = "annotaudit_backend_example.backend:QuestionAnswerLM"
causal = "annotaudit_backend_example.backend:QuestionAnswerLM"
missing = "annotaudit_backend_missing:Model"
not-a-model = "annotaudit_backend_example:entries"

[project.entry-points."{ENTRY_POINT_GROUP}"]
example = "annotaudit_backend_example:entries"
"""

PLUGIN_INIT = '''
from annotaudit.models import ModelEntry

def entries():
    return [ModelEntry(name="tiny-qa", backend="question-answer", checkpoint={checkpoint!r})]
'''

PLUGIN_BACKEND = '''
from annotaudit.models.backends import CausalLM

class QuestionAnswerLM(CausalLM):
    """A base LM prompted as a question and its answer, without a chat template."""

    def render_prompt(self, prompt, has_image):
        return f"Question: {prompt}\\nAnswer:"
'''

# Run in a fresh interpreter with the plugin on its path: what the registry knows before a model loads, then the load.
PLUGIN_SCRIPT = '''
import json, sys
from annotaudit.core.errors import InputError
from annotaudit.models import BACKENDS, GenerationConfig, ModelEntry, Request, load_model, registry

out = {"known": "question-answer" in BACKENDS, "source": BACKENDS.source("question-answer"), "target": BACKENDS.target("question-answer"),
       "imported_before_load": "annotaudit_backend_example.backend" in sys.modules, "torch_before_load": "torch" in sys.modules,
       "plugin_errors": registry().plugin_errors}
model = load_model("tiny-qa")
out["class"] = f"{type(model).__module__}:{type(model).__qualname__}"
cfg = GenerationConfig(max_new_tokens=6)
out["answer"] = [g.texts[0] for g in model.generate([Request("Is the sky blue?")], cfg)]
out["prompt"] = model.render_prompt("Is the sky blue?", False)
raw = load_model(ModelEntry(name="raw", backend="causal", checkpoint=model.entry.checkpoint, chat_template="raw"))
out["raw_answer"] = [g.texts[0] for g in raw.generate([Request(out["prompt"])], cfg)]
out["causal_class"] = type(raw).__qualname__
for broken in ("missing", "not-a-model"):
    try:
        load_model(ModelEntry(name="needs-" + broken, backend=broken, checkpoint="x"))
    except InputError as exc:
        out[broken] = str(exc)
print(json.dumps(out))
'''


def _install_plugin(tmp_path: Path, checkpoint: Path) -> dict[str, str]:
    """pip-install the plugin into its own folder; the environment that puts it on a subprocess's path."""
    pkg = tmp_path / "plugin"
    (pkg / "annotaudit_backend_example").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (pkg / "annotaudit_backend_example" / "__init__.py").write_text(PLUGIN_INIT.format(checkpoint=str(checkpoint)))
    (pkg / "annotaudit_backend_example" / "backend.py").write_text(PLUGIN_BACKEND)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(pkg)], check=True)
    return {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}


def _python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)


def test_a_backend_from_an_entry_point_loads_when_its_model_does(tmp_path, tiny):
    env = _install_plugin(tmp_path, tiny("llama"))
    res = _python(PLUGIN_SCRIPT, env)
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["known"] and out["source"] == "plugin:annotaudit-backend-example"
    assert out["target"] == "annotaudit_backend_example.backend:QuestionAnswerLM"
    assert not out["imported_before_load"] and not out["torch_before_load"]
    assert out["class"] == "annotaudit_backend_example.backend:QuestionAnswerLM"
    assert out["prompt"] == "Question: Is the sky blue?\nAnswer:"
    assert out["answer"] == out["raw_answer"] and out["answer"][0]  # the plugin's model runs the same weights on its own prompt
    # a plugin cannot take a built-in name: the built-in stays, and the refusal is reported
    assert out["causal_class"] == "CausalLM"
    assert any("backend 'causal' is already registered (built-in)" in e for e in out["plugin_errors"])
    assert "backend 'missing' (annotaudit_backend_missing:Model, plugin:annotaudit-backend-example) cannot be imported" in out["missing"]
    assert out["not-a-model"] == "backend 'not-a-model' (annotaudit_backend_example:entries, plugin:annotaudit-backend-example) is not a LoadedModel class"

    listing = subprocess.run([str(Path(sys.executable).with_name("annotaudit")), "models", "list"], capture_output=True, text=True, env=env, timeout=300)
    assert listing.returncode == 0, listing.stderr
    row = next(line for line in listing.stdout.splitlines() if "tiny-qa" in line)
    assert "question-answer" in row and "plugin:annotaudit-backend-example" in row
    assert "plugin failed to load: plugin:annotaudit-backend-example" in listing.stderr and "backend 'causal'" in listing.stderr


def test_load_model_for_a_server_model_imports_no_torch():
    with socket.socket() as closed:  # bound but not listening: a connection is refused at once
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/v1"
        code = textwrap.dedent(f"""
            import sys
            from annotaudit.core.errors import InputError
            from annotaudit.models import EngineOptions, load_model
            try:
                load_model("openai:x", engine=EngineOptions(base_url={url!r}))
            except InputError as exc:
                print(exc)
            print(sorted(m for m in ("torch", "transformers", "annotaudit.models.backends", "annotaudit.models.openai_backend") if m in sys.modules))
        """)
        res = _python(code)
    assert res.returncode == 0, res.stderr
    said, loaded = res.stdout.strip().splitlines()
    assert said.startswith(f"cannot reach the model server at {url}")  # the OpenAI backend was built and asked the server
    assert loaded == "['annotaudit.models.openai_backend']"


def test_models_list_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        from annotaudit.cli.main import app
        try:
            app(["models", "list"])
        except SystemExit as exc:
            assert not exc.code, exc.code
        print(sorted(m for m in ("torch", "transformers", "annotaudit.models.backends") if m in sys.modules))
    """)
    res = _python(code, {**os.environ, "COLUMNS": "250"})
    assert res.returncode == 0, res.stderr
    assert "vicuna-7b-v1.5" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "[]"


def test_the_decorator_registers_a_class_that_load_model_uses(tiny):
    @backend("test-question-answer")
    class QuestionAnswerLM(CausalLM):
        def render_prompt(self, prompt: str, has_image: bool) -> str:
            return f"Question: {prompt}\nAnswer:"

    assert BACKENDS["test-question-answer"] is QuestionAnswerLM
    model = load_model(ModelEntry(name="qa", backend="test-question-answer", checkpoint=str(tiny("llama"))))
    assert isinstance(model, QuestionAnswerLM)
    generation = model.generate([Request("Is it red?")], GenerationConfig(max_new_tokens=4))[0]
    assert generation.prompt == "Question: Is it red?\nAnswer:" and 1 <= generation.num_tokens[0] <= 4


def test_the_old_import_paths_name_the_same_registry():
    import annotaudit.models.backends as old

    assert old.backend is backend and old.BACKENDS is BACKENDS
    assert {"causal", "gguf", "seq2seq", "llava", "llava_next", "instructblip", "openai", "vllm"} <= set(BACKENDS)
    assert BACKENDS.target("openai") == "annotaudit.models.openai_backend:OpenAIModel"


def test_a_model_whose_backend_is_not_installed_is_one_line():
    with pytest.raises(InputError, match=r"model 'x' needs backend 'nope', which is not installed; known: .*causal"):
        load_model(ModelEntry(name="x", backend="nope", checkpoint="y"))
