"""The boundaries that keep the engine usable without a screen."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ("The engine, the config and the window's state never import Qt", "Layers:", "No import cycle between the engine's",
             "The rulebook, the file formats, the config and the errors need no torch")


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([exe], cwd=cwd, capture_output=True, text=True, timeout=300, env=env)


def _verdicts(out: str) -> dict[str, str]:
    """Contract name (its first words) -> KEPT or BROKEN, from lint-imports' report."""
    text = " ".join(out.split())  # long names wrap over lines
    found = {name: re.search(re.escape(name) + r".*?\b(KEPT|BROKEN)\b", text) for name in CONTRACTS}
    return {name: m.group(1) for name, m in found.items() if m}


def test_engine_never_imports_qt_contract():
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "KEPT" in proc.stdout and " 0 broken" in proc.stdout
    assert set(_verdicts(proc.stdout)) == set(CONTRACTS), proc.stdout


def test_contracts_catch_what_they_forbid(tmp_path):
    """A copy of the package with one offence per contract (imports inside functions too):
    every contract must report it."""
    shutil.copytree(ROOT / "transfer_gui", tmp_path / "transfer_gui", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    offences = {
        "engine/rundir.py": "def _qt():\n    import PySide6  # noqa\n",  # the engine imports Qt
        "config.py": "def _engine():\n    from transfer_gui.engine import runs  # noqa\n",  # a layer imports upwards
        "engine/rules.py": "def _cycle():\n    from transfer_gui.engine import loop  # noqa\n",  # rules <-> loop
        "engine/formats.py": "import torch  # noqa\n",
    }
    for rel, code in offences.items():
        with open(tmp_path / "transfer_gui" / rel, "a", encoding="utf-8") as fh:
            fh.write("\n\n" + code)
    proc = _lint_imports(tmp_path)
    assert proc.returncode != 0
    verdicts = _verdicts(proc.stdout)
    assert verdicts == {name: "BROKEN" for name in CONTRACTS}, proc.stdout


def test_no_import_cycle_in_the_engine_by_grimp():
    """The same as the acyclic_siblings contract, straight from the import graph (function-level
    imports included): no engine module reaches itself through other engine modules."""
    grimp = pytest.importorskip("grimp")
    graph = grimp.build_graph("transfer_gui")
    engine = sorted(m for m in graph.modules if m.startswith("transfer_gui.engine."))
    for module in engine:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("transfer_gui.engine.") and imported != module:
                assert not graph.chain_exists(imported=module, importer=imported), (module, imported)


def test_engine_runs_without_qt_loaded():
    code = ("import sys; import transfer_gui.engine.loop, transfer_gui.engine.export, transfer_gui.cli; "
            "bad = [m for m in sys.modules if m.startswith(('PySide6', 'pyqtgraph'))]; print(bad); "
            "sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_every_torch_load_is_weights_only():
    offenders = []
    for path in (ROOT / "transfer_gui").rglob("*.py"):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if "torch.load(" in line and "weights_only=True" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}")
    assert not offenders, offenders


def test_no_function_is_longer_than_60_lines():
    """Functions short enough to read at once (Qt layout builders are split by the boxes they build)."""
    import ast

    long = []
    for path in (ROOT / "transfer_gui").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                            f"({node.end_lineno - node.lineno + 1} lines)")
    assert long == []
