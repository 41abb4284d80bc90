"""The window tests: they load Qt (offscreen); fixtures in conftest.py, helpers in helpers.py."""
