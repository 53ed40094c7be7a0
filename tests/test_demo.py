"""`annotaudit demo --quick`, end to end through the command line, as CI runs it."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from annotaudit.cli.main import app


@pytest.mark.slow
def test_demo_quick_writes_report_and_summary(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "--out", str(out), "--quick"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    summary = json.loads((out / "summary.json").read_text())
    for when in ("before", "after"):
        for lang in ("en", "it"):
            for setting in ("random", "popular", "adversarial"):
                for metric in ("f1", "accuracy", "yes_ratio"):
                    value = summary[f"pope.{when}.{lang}.{setting}.{metric}"]
                    assert 0.0 <= value <= 1.0
            assert f"chair.{when}.{lang}.chair_s" in summary
    for who in ("lvlm", "smollm2"):
        assert 0.0 <= summary[f"annotate.{who}.answer_rate"] <= 1.0
    assert summary["annotate.lvlm.answer_rate"] == 1.0  # score mode always answers
    assert any(k.startswith("mmbt.human.") for k in summary)
    assert {"mmbt.human.auroc", "mmbt.lvlm.auroc", "mmbt.smollm2.auroc"} <= set(summary)  # human, LVLM, SmolLM2
    html = (out / "report.html").read_text()
    assert "POPE" in html and "CHAIR" in html and "MMBT" in html and "data:image/png;base64," in html
    assert (out / "report.md").is_file() and (out / "run.json").is_file()
    # every step kept its own run directory with a manifest
    for sub in ("audit_before/pope_en", "audit_after/chair_it", "annotate_lvlm", "annotate_smollm2", "models/lvlm_stage2"):
        assert (out / sub / "run.json").is_file(), sub
