"""The end-to-end demo on a synthetic shapes world; sits above every library and is imported by none."""
