"""The installed shape: one top-level name, no clash with a user's own folders, fast commands without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_has_one_top_level_name(tmp_path):
    """Built from a copy of the files git tracks or would track, so no build/ folder of an earlier layout can leak into it."""
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard"], capture_output=True, text=True, check=True).stdout.split()
    for name in tracked:
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(src)],
                   check=True, capture_output=True, timeout=300)
    wheel = next(tmp_path.glob("annotaudit-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"annotaudit"}
    top_level = next(n for n in names if n.endswith(".dist-info/top_level.txt")) if any(n.endswith("top_level.txt") for n in names) else None
    if top_level:
        assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["annotaudit"]
    for data in ("annotaudit/audit/data/chair_synonyms_en.json", "annotaudit/lvlm/configs/accelerate_zero3.yaml"):
        assert data in names
    assert not any("/tests/" in n or n.startswith("tests/") for n in names)


def test_a_script_beside_its_own_models_and_cli_packages_still_annotates(tmp_path, tiny):
    """A user's project with its own `models/` and `cli/` (first on sys.path) must not shadow annotaudit's."""
    project = tmp_path / "project"
    for name in ("models", "cli", "annotate", "audit"):
        (project / name).mkdir(parents=True)
        (project / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package was imported')\n")
    data = project / "data.jsonl"
    data.write_text("".join(json.dumps({"id": f"s{k}", "text": text, "label": label}) + "\n"
                            for k, (text, label) in enumerate([("I love it", "positive"), ("I hate it", "negative"), ("Fine", "positive")])))
    (project / "task.yaml").write_text("labels: [positive, negative]\nprompt: \"{text}\\nPositive or negative?\"\n")
    script = textwrap.dedent(f"""
        from annotaudit.annotate.run import RunConfig, run
        cfg = RunConfig(task="task.yaml", data="data.jsonl", model="hf:{tiny('llama')}", max_new_tokens=4, do_sample=False)
        print(run(cfg, "out")["n"])
    """)
    (project / "label.py").write_text(script)
    env = {**os.environ, "ANNOTAUDIT_NO_PROGRESS": "1", "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "label.py"], cwd=project, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "3"
    assert len((project / "out" / "records.jsonl").read_text().splitlines()) == 3


@pytest.mark.parametrize("args", [
    ["annotaudit", "--help"],
    ["annotate", "extract", "--help"],
    ["audit", "pope", "score", "--help"],
    ["audit", "chair", "score", "--help"],
])
def test_fast_commands_import_no_torch(args):
    """Help and the model-free scorers start without torch or transformers."""
    entry = {"annotaudit": "main", "annotate": "annotate_main", "audit": "audit_main"}[args[0]]
    script = (
        "import sys\n"
        f"sys.argv = {[args[0], *args[1:]]!r}\n"
        "from annotaudit.cli import main\n"
        f"try:\n    main.{entry}()\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'accelerate', 'sklearn') if m in sys.modules)\n"
        "print('HEAVY', ','.join(heavy))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Example" in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "HEAVY", res.stdout.splitlines()[-1]


def test_fast_scorers_run_without_torch(tmp_path):
    """`annotate extract` and `audit pope score` do their work, not just --help, without torch."""
    questions = tmp_path / "q.jsonl"
    answers = tmp_path / "a.jsonl"
    questions.write_text("".join(json.dumps({"question_id": k, "image": f"{k}.jpg", "text": f"Is there a dog{k}?", "label": lab}) + "\n"
                                 for k, lab in enumerate(["yes", "no", "yes", "no"])))
    answers.write_text("".join(json.dumps({"question_id": k, "text": ans}) + "\n" for k, ans in enumerate(["Yes.", "No", "No", "no"])))
    script = (
        "import sys\n"
        f"sys.argv = ['audit', 'pope', 'score', '--questions', {str(questions)!r}, '--answers', {str(answers)!r}, '--out', {str(tmp_path / 'scores')!r}]\n"
        "from annotaudit.cli import main\n"
        "try:\n    main.audit_main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "sys.argv = ['annotate', 'extract', '--task', 'hateful_memes', 'Yes, it is hateful.']\n"
        "try:\n    main.annotate_main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('HEAVY', ','.join(sorted(m for m in ('torch', 'transformers') if m in sys.modules)))\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "hateful" in res.stdout
    assert '"tp": 1' in res.stdout and '"fn": 1' in res.stdout
    assert res.stdout.strip().splitlines()[-1] == "HEAVY"
