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


INSTALL_PAGE = (ROOT / "docs" / "install.md").read_text(encoding="utf-8")


def test_the_install_page_gives_the_readmes_commands_and_packages():
    for command in ("python3 -m venv .venv && .venv/bin/pip install -e . && .venv/bin/transfer-gui",
                    "python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && .venv/bin/python -m pytest"):
        assert f"```bash\n{command}\n```" in README
        assert f"```bash\n{command}\n```" in INSTALL_PAGE
    packages = (ROOT / "packaging" / "debian-packages.txt").read_text().split()
    assert re.search(r"^sudo apt-get install (.+)$", INSTALL_PAGE, re.M).group(1).split() == packages


def test_the_config_page_shows_every_field_with_its_default():
    import tomllib

    from transfer_gui import config

    block = re.search(r"```toml\n(.*?)```", (ROOT / "docs" / "config.md").read_text(encoding="utf-8"), re.S)
    assert tomllib.loads(block.group(1)) == config.to_dict(config.RunConfig())


def test_the_readme_stays_short_and_its_links_resolve():
    assert README.count("\n") <= 250
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" not in target:
            assert (ROOT / target).exists(), target


def test_every_docs_page_is_in_the_sites_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages and all(f": {name}" in nav for name in pages)
