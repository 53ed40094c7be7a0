"""Plugins through the `annotaudit.models` entry point, and the models CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from typer.testing import CliRunner

from annotaudit.cli.main import app
from annotaudit.models import ENTRY_POINT_GROUP

PLUGIN_PYPROJECT = f"""
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "annotaudit-plugin-example"
version = "0.0.1"

[project.entry-points."{ENTRY_POINT_GROUP}"]
example = "annotaudit_plugin_example:entries"
"""

PLUGIN_CODE = '''
from annotaudit.models import ModelEntry

def entries():
    return [ModelEntry(name="my-tiny-llama", backend="causal", checkpoint="/models/tiny-llama", chat_template="mistral")]
'''


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("annotaudit")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, env=env, timeout=300)


def test_a_pip_installed_plugin_shows_up_in_models_list(tmp_path):
    pkg = tmp_path / "plugin"
    (pkg / "annotaudit_plugin_example").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (pkg / "annotaudit_plugin_example" / "__init__.py").write_text(PLUGIN_CODE)
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(site), str(pkg)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}
    out = _cli("models", "list", env=env)
    assert out.returncode == 0, out.stderr
    row = next(line for line in out.stdout.splitlines() if "my-tiny-llama" in line)
    assert "plugin:annotaudit-plugin-example" in row and "causal" in row
    assert "vicuna-7b-v1.5" in out.stdout  # built-ins are still there


def test_models_list_shows_every_builtin_entry():
    result = CliRunner().invoke(app, ["models", "list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for name in ("vicuna-13b-v1.5", "instructblip-flan-t5-xxl", "llava-v1.6-mistral-7b", "minerva-7b-base", "fastweb-miia-7b", "smollm2-135m-instruct"):
        assert name in result.output


def test_unknown_model_is_one_clear_line(tmp_path):
    script = "from annotaudit.cli.main import _run; from annotaudit.models import load_model; import typer\n" \
             "app = typer.Typer()\n@app.command()\ndef go(): load_model('vicunna-7b-v1.5')\n_run(app)"
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert res.returncode == 2
    assert "error: unknown model 'vicunna-7b-v1.5'" in res.stderr and "vicuna-7b-v1.5" in res.stderr
    assert "Traceback" not in res.stderr


def test_every_command_has_help_with_an_example():
    import typer.main

    root = typer.main.get_command(app)

    def walk(cmd, path):
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                yield from walk(sub, path + [name])
        else:
            yield path, cmd

    for path, cmd in walk(root, []):
        assert "Example" in (cmd.help or ""), f"`annotaudit {' '.join(path)}` has no example in its --help"
