"""The README's set-up commands stay the ones CI runs and the app prints."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_system_packages_line_is_the_list_ci_installs():
    packages = (ROOT / "packaging" / "debian-packages.txt").read_text().split()
    line = re.search(r"^sudo apt-get install (.+)$", README, re.M).group(1).split()
    assert line == packages
    assert "packaging/debian-packages.txt" in (ROOT / ".ci" / "run").read_text()


def test_the_test_command_is_what_ci_runs_verbatim():
    command = "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"
    assert f"```bash\n{command}\n```" in README
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith(command)
