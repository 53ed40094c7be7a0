"""Hallucination audits of vision-language models: POPE (audit.pope) and CHAIR (audit.chair)."""
