"""The training engine: pure Python and torch. Never imports Qt."""
