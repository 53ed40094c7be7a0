"""Zero-shot annotation: LLMs and VLMs as annotators, measured against human labels."""
