"""annotaudit: decide whether to trust a language model with your data."""

__version__ = "0.1.0"
