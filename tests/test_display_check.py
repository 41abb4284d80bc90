"""The display check that runs before Qt loads its platform plugin: instead of Qt's abort
(exit 134, "xcb-cursor0 ... is needed"), the window names the libraries that cannot be loaded,
the packages of four distributions that provide them, and exits with 3."""

from __future__ import annotations

import importlib.util
import os
import select
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest

from transfer_gui.ui import display_check as dc
from transfer_gui.ui.display_check import Library, decide



def _qt_plugins() -> Path:
    spec = importlib.util.find_spec("PySide6")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) / "Qt" / "plugins" if locations else Path("/nonexistent")


PLUGINS = _qt_plugins()
QXCB = PLUGINS / "platforms" / "libqxcb.so"
BROKEN = "libxcb-shape.so.0"  # made unloadable by an empty file of that name first on LD_LIBRARY_PATH
COMMAND = Path(sys.executable).parent / "transfer-gui"
QT_ABORT_TEXTS = ("qt.qpa.plugin", "This application failed to start", "Aborted", "core dumped")


def probe(table: dict[str, list[Library]]):
    """An ``unloadable`` for ``decide`` that answers from ``table`` and records its calls."""
    calls: list[str] = []

    def unloadable(family: str) -> list[Library]:
        calls.append(family)
        return table.get(family, [])

    unloadable.calls = calls
    return unloadable


def never(*_args):
    raise AssertionError("this probe must not be called")


# --- the decision ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["offscreen", "minimal", "vnc:size=800x600", "offscreen;xcb"])
def test_explicit_headless_platform_needs_no_check(value):
    result = decide({"QT_QPA_PLATFORM": value}, never, never)
    assert result.ok and result.message == ""
    assert result.qt_qpa_platform is None  # the user's choice stays


@pytest.mark.parametrize("session", [{"WAYLAND_DISPLAY": "wayland-0"}, {"XDG_SESSION_TYPE": "wayland"}])
def test_wayland_session_whose_plugin_loads_uses_wayland_then_xcb(session):
    unloadable = probe({"xcb": [Library("libxcb-icccm.so.4")]})
    result = decide({**session, "DISPLAY": ":0"}, unloadable, never)
    assert result.ok
    assert result.platform == "wayland"
    assert result.qt_qpa_platform == "wayland;xcb"
    assert unloadable.calls == ["wayland"]  # xcb is only Qt's fallback: not probed


def test_wayland_libraries_missing_falls_back_to_xcb_and_says_why():
    unloadable = probe({"wayland": [Library("libwayland-cursor.so.0")]})
    result = decide({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":1"}, unloadable, lambda display: "")
    assert result.ok
    assert result.platform == "xcb"
    assert result.qt_qpa_platform == "xcb"
    assert unloadable.calls == ["wayland", "xcb"]
    assert len(result.notes) == 1
    assert "libwayland-cursor.so.0" in result.notes[0] and "libwayland-cursor0" in result.notes[0]


def test_no_display_at_all_says_what_to_do():
    result = decide({"HOME": "/home/x"}, never, never)
    assert not result.ok
    assert "DISPLAY" in result.message and "WAYLAND_DISPLAY" in result.message
    assert "QT_QPA_PLATFORM=offscreen" in result.message
    assert "transfer-gui train" in result.message


def test_explicit_xcb_without_display_names_the_setting():
    result = decide({"QT_QPA_PLATFORM": "xcb"}, never, never)
    assert not result.ok
    assert "QT_QPA_PLATFORM=xcb" in result.message and "DISPLAY is not set" in result.message


def test_missing_libraries_are_listed_with_the_command_of_each_distribution():
    missing = [Library("libxcb-icccm.so.4"), Library("libxcb-keysyms.so.1")]
    connects = []
    result = decide({"DISPLAY": ":57"}, probe({"xcb": missing}), connects.append)
    assert not result.ok
    assert result.platform == "xcb" and result.missing == tuple(missing)
    assert connects == []  # no connection attempt when the plugin cannot load
    lines = result.message.splitlines()
    assert '"xcb"' in lines[0] and "DISPLAY=:57" in lines[0]
    for lib in missing:
        assert any(line.split() == [lib.soname, "not", "found"] for line in lines), lib
    expected = {
        "Debian/Ubuntu:": "sudo apt-get install libxcb-icccm4 libxcb-keysyms1",
        "Fedora:": "sudo dnf install xcb-util-wm xcb-util-keysyms",
        "Arch:": "sudo pacman -S --needed xcb-util-wm xcb-util-keysyms",
        "openSUSE:": "sudo zypper install libxcb-icccm4 libxcb-keysyms1",
    }
    for distro, command in expected.items():
        assert any(line.split() == [distro, *command.split()] for line in lines), (distro, result.message)
    assert "QT_QPA_PLATFORM=offscreen" in result.message


def test_unreachable_x_display_is_named():
    result = decide({"DISPLAY": ":99"}, probe({}), lambda display: "no X server answers there")
    assert not result.ok
    assert "cannot connect to the X display :99" in result.message
    assert "no X server answers there" in result.message


def test_explicit_list_is_left_to_qt_when_a_later_entry_works():
    unloadable = probe({"wayland": [Library("libwayland-cursor.so.0")]})
    result = decide({"QT_QPA_PLATFORM": "wayland;xcb", "DISPLAY": ":3"}, unloadable, lambda d: "")
    assert result.ok and result.platform == "xcb"
    assert result.qt_qpa_platform is None


def test_both_plugins_broken_names_both():
    unloadable = probe({"wayland": [Library("libwayland-cursor.so.0")], "xcb": [Library("libxcb-icccm.so.4")]})
    result = decide({"WAYLAND_DISPLAY": "wayland-0", "DISPLAY": ":0"}, unloadable, never)
    assert not result.ok
    assert "libwayland-cursor0" in result.message  # the preferred plugin's commands
    assert '"xcb" plugin cannot be used either' in result.message and "libxcb-icccm4" in result.message


def test_damaged_file_on_ld_library_path_is_named_with_the_fix():
    lib = Library(BROKEN, "file too short", f"/opt/odd/{BROKEN}")
    result = decide({"DISPLAY": ":0", "LD_LIBRARY_PATH": "/opt/odd:/usr/lib"}, probe({"xcb": [lib]}), never)
    assert f"/opt/odd/{BROKEN}" in result.message and "file too short" in result.message
    assert "take /opt/odd off LD_LIBRARY_PATH" in result.message
    assert "sudo apt-get install libxcb-shape0" in result.message


def test_library_without_a_known_package_gets_a_search_hint():
    libs = [Library("libfrobnicate.so.7"), Library("libQt6XcbQpa.so.6")]
    message = decide({"DISPLAY": ":0"}, probe({"xcb": libs}), never).message
    assert "apt-file search libfrobnicate.so.7" in message and "dnf provides '*/libfrobnicate.so.7'" in message
    assert "pip install --force-reinstall PySide6-Essentials" in message
    assert "sudo apt-get install" not in message  # nothing known to install


def test_install_commands_name_each_package_once():
    commands = dict(dc.install_commands(["libxcb-shape.so.0", "libxcb-xfixes.so.0", "libxcb-icccm.so.4"]))
    assert commands["Fedora"] == "sudo dnf install libxcb xcb-util-wm"
    assert commands["Debian/Ubuntu"] == "sudo apt-get install libxcb-shape0 libxcb-xfixes0 libxcb-icccm4"
    assert dc.install_commands(["libunknown.so.1"]) == []


def test_parse_ldd_reads_missing_damaged_and_version_errors():
    text = ("\tlibQt6Gui.so.6 => /x/libQt6Gui.so.6 (0x00007f)\n"
            "\tlibxcb-icccm.so.4 => not found\n"
            "\tlibxcb-icccm.so.4 => not found\n"
            "/x/libqxcb.so: /lib/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /x/libQt6Core.so.6)\n"
            "/x/libqxcb.so: error while loading shared libraries: /tmp/b/libxcb-shape.so.0: file too short\n")
    report = dc.parse_ldd(text)
    assert report.not_found == ("libxcb-icccm.so.4",)
    assert report.load_error == ("/tmp/b/libxcb-shape.so.0", "file too short")
    assert report.version_errors[0].soname == "libstdc++.so.6"
    assert "GLIBCXX_3.4.32" in report.version_errors[0].reason and "libQt6Core.so.6" in report.version_errors[0].reason


def test_loader_error_text_names_the_library():
    plugin = "/x/libqxcb.so"
    assert dc.library_from_loader_error(
        "libxcb-icccm.so.4: cannot open shared object file: No such file or directory", plugin
    ) == Library("libxcb-icccm.so.4")
    assert dc.library_from_loader_error("/tmp/b/libxcb-shape.so.0: file too short", plugin) == Library(
        "libxcb-shape.so.0", "file too short", "/tmp/b/libxcb-shape.so.0")


def test_import_error_of_qt_names_the_library_and_package():
    message = dc.import_error_message(ImportError("libEGL.so.1: cannot open shared object file: No such file"))
    assert "libEGL.so.1" in message and "sudo apt-get install libegl1" in message
    assert "sudo dnf install libglvnd-egl" in message


# --- startup_problem: what run_app calls ------------------------------------------------------

def test_skip_variable_turns_the_check_off(monkeypatch):
    monkeypatch.setattr(dc, "qt_application_exists", lambda: False)
    assert dc.startup_problem({}) != ""  # no display: a message ...
    assert dc.startup_problem({dc.SKIP_ENV: "1"}) == ""  # ... unless the check is off


def test_existing_qt_application_skips_the_check(monkeypatch):
    app_class = types.SimpleNamespace(instance=lambda: object())
    monkeypatch.setitem(sys.modules, "PySide6.QtCore", types.SimpleNamespace(QCoreApplication=app_class))
    assert dc.qt_application_exists()
    assert dc.startup_problem({}) == ""


def test_chosen_platform_is_stored_for_qt(monkeypatch):
    monkeypatch.setattr(dc, "qt_application_exists", lambda: False)
    monkeypatch.setattr(dc, "plugin_unloadable", lambda family, env: ())
    env = {"WAYLAND_DISPLAY": "wayland-0"}
    assert dc.startup_problem(env) == ""
    assert env["QT_QPA_PLATFORM"] == "wayland;xcb"


def test_ready_for_qt_prints_the_problem(monkeypatch, capsys):
    monkeypatch.setattr(dc, "qt_application_exists", lambda: False)
    assert dc.ready_for_qt({}) is False
    assert "there is no display" in capsys.readouterr().err


def test_ready_for_qt_explains_a_qt_that_cannot_be_imported(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "PySide6.QtWidgets", None)  # makes the import fail
    assert dc.ready_for_qt({"QT_QPA_PLATFORM": "offscreen"}) is False
    err = capsys.readouterr().err
    assert "Qt (PySide6) cannot be imported" in err and "pip install --force-reinstall PySide6-Essentials" in err


# --- the package table against the installed plugins --------------------------------------------

def ldd_listing(plugin: Path) -> list[tuple[str, str]]:
    """(so-name, resolved path or "not found") of every library ``ldd`` lists for ``plugin``."""
    proc = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "LC_ALL": "C"})
    rows = []
    for line in proc.stdout.splitlines():
        name, sep, rest = line.strip().partition(" => ")
        if sep:
            rows.append((name, rest.split(" (")[0].strip()))
    return rows


def installed_plugins() -> list[Path]:
    if not shutil.which("ldd"):
        pytest.skip("ldd is not installed")
    found = [p for p in [QXCB, *sorted((PLUGINS / "platforms").glob("libqwayland*.so")),
                         *sorted((PLUGINS / "xcbglintegrations").glob("*.so"))] if p.is_file()]
    if QXCB not in found:
        pytest.skip(f"no PySide6 xcb plugin at {QXCB}")
    return found


def system_libraries(plugins: list[Path]) -> dict[str, str]:
    """so-name -> path (or "not found") of the libraries the plugins need that PySide6 does not ship."""
    bundled = str(PLUGINS.parent)
    libs: dict[str, str] = {}
    for plugin in plugins:
        for name, where in ldd_listing(plugin):
            if not where.startswith(bundled) and not os.path.realpath(where).startswith(os.path.realpath(bundled)):
                libs.setdefault(name, where)
    return libs


def test_package_table_covers_every_library_the_plugins_link_to():
    plugins = installed_plugins()
    assert any("wayland" in p.name for p in plugins), plugins
    libs = system_libraries(plugins)
    assert "libxcb.so.1" in libs and "libwayland-client.so.0" in libs  # the listing worked
    uncovered = sorted(set(libs) - set(dc.PACKAGES))
    assert not uncovered, f"add these to display_check.PACKAGES: {uncovered}"


def test_package_table_debian_names_match_dpkg():
    if not shutil.which("dpkg"):
        pytest.skip("not a Debian/Ubuntu system")
    libs = system_libraries(installed_plugins())
    wrong = []
    for name, where in libs.items():
        if where == "not found":
            continue
        proc = subprocess.run(["dpkg", "-S", os.path.realpath(where)], capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            continue  # not installed by a package
        owner = proc.stdout.split(":")[0].strip()
        if owner not in (dc.PACKAGES[name][0], dc.PACKAGES[name][0] + "t64"):  # Ubuntu 24.04 renamed some
            wrong.append((name, owner, dc.PACKAGES[name][0]))
    assert not wrong, wrong


def test_package_table_rows_are_well_formed():
    for name, row in dc.PACKAGES.items():
        assert ".so" in name
        assert len(row) == len(dc.DISTROS)
        assert all(pkg and " " not in pkg for pkg in row), (name, row)


# --- the probes on this machine ------------------------------------------------------------

@pytest.fixture
def broken_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "broken-libs"
    folder.mkdir()
    (folder / BROKEN).write_bytes(b"")  # found first on LD_LIBRARY_PATH, cannot be loaded
    return folder


def with_first_on_path(folder: Path) -> str:
    """LD_LIBRARY_PATH with ``folder`` first."""
    return os.pathsep.join(filter(None, [str(folder), os.environ.get("LD_LIBRARY_PATH")]))


def test_ldd_probe_names_the_damaged_file_and_what_else_is_missing(broken_dir, tmp_path, monkeypatch):
    if not shutil.which("ldd") or not QXCB.is_file():
        pytest.skip("needs ldd and the PySide6 xcb plugin")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    plain = dc.unloadable_libraries(QXCB, os.environ)
    env = {**os.environ, "LD_LIBRARY_PATH": with_first_on_path(broken_dir)}
    broken = {lib.soname: lib for lib in dc.unloadable_libraries(QXCB, env)}
    assert BROKEN in broken
    assert broken[BROKEN].path == str(broken_dir / BROKEN) and broken[BROKEN].reason
    assert {lib.soname for lib in plain} <= set(broken)  # the loader's stop did not hide the others
    assert not list(scratch.iterdir()), "the links to look past the damaged file were left behind"


def test_without_ldd_the_loader_names_a_library(broken_dir):
    if not QXCB.is_file():
        pytest.skip("needs the PySide6 xcb plugin")
    plain = {lib.soname for lib in dc.unloadable_libraries(QXCB, os.environ)} if shutil.which("ldd") else set()
    code = ("import sys; from transfer_gui.ui.display_check import unloadable_libraries as u; "
            "print('\\n'.join(lib.soname for lib in u(sys.argv[1], ldd=None)))")
    env = {**os.environ, "LD_LIBRARY_PATH": with_first_on_path(broken_dir)}
    proc = subprocess.run([sys.executable, "-c", code, str(QXCB)], env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    names = proc.stdout.split()
    assert len(names) == 1 and names[0] in plain | {BROKEN}, proc.stdout


# --- the real command, with a real X server -------------------------------------------------

def free_display_number() -> int:
    for n in range(150, 400):
        if not Path(f"/tmp/.X11-unix/X{n}").exists() and not Path(f"/tmp/.X{n}-lock").exists():
            return n
    pytest.skip("no free X display number")


@pytest.fixture(scope="module")
def xvfb():
    """DISPLAY of a private Xvfb, started with -displayfd so that it says when it is ready."""
    exe = shutil.which("Xvfb")
    if not exe:
        if os.environ.get("TRANSFER_GUI_REQUIRE_X") == "1":
            pytest.fail("Xvfb is not installed, and TRANSFER_GUI_REQUIRE_X=1 requires the X tests")
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([exe, "-displayfd", str(write_end), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=(write_end,), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 60)
        number = os.read(read_end, 64).decode().strip() if ready else ""
        if not number:
            proc.kill()
            pytest.fail(f"Xvfb did not start: {proc.communicate(timeout=30)[1].decode(errors='replace')}")
        yield f":{number}"
    finally:
        os.close(read_end)
        proc.terminate()
        proc.wait(timeout=30)


def command_env(tmp_path: Path, **changes: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "DISPLAY", dc.SKIP_ENV)}
    # should the check miss a problem and the window open anyway, it closes itself (and exits 0)
    env.update(TRANSFER_GUI_QUIT_AFTER_MS="3000", XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.update(changes)
    return env


def run_command(env: dict[str, str]) -> subprocess.CompletedProcess:
    if not COMMAND.is_file():
        pytest.skip(f"the transfer-gui command is not installed at {COMMAND}")
    return subprocess.run([str(COMMAND)], env=env, capture_output=True, text=True, timeout=300)


def assert_no_qt_abort(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode != -6 and proc.returncode != 134
    for text in QT_ABORT_TEXTS:
        assert text not in proc.stderr, proc.stderr


def test_command_with_an_unloadable_xcb_library_exits_3_and_names_it(xvfb, broken_dir, tmp_path):
    proc = run_command(command_env(tmp_path, DISPLAY=xvfb, LD_LIBRARY_PATH=with_first_on_path(broken_dir)))
    assert proc.returncode == dc.EXIT_DISPLAY, (proc.returncode, proc.stderr)
    assert_no_qt_abort(proc)
    assert BROKEN in proc.stderr and f"DISPLAY={xvfb}" in proc.stderr
    apt = [line.split() for line in proc.stderr.splitlines() if line.split()[:2] == ["Debian/Ubuntu:", "sudo"]]
    assert len(apt) == 1 and apt[0][1:4] == ["sudo", "apt-get", "install"], proc.stderr
    assert "libxcb-shape0" in apt[0]  # the Debian package that provides it
    assert str(broken_dir / BROKEN) in proc.stderr  # ... and the file that is in the way


def test_command_without_any_display_exits_3_and_says_what_to_do(tmp_path):
    proc = run_command(command_env(tmp_path))
    assert proc.returncode == dc.EXIT_DISPLAY, (proc.returncode, proc.stderr)
    assert_no_qt_abort(proc)
    assert "there is no display" in proc.stderr
    assert "QT_QPA_PLATFORM=offscreen" in proc.stderr and "transfer-gui train" in proc.stderr


def test_x_connection_probe_against_a_real_server(xvfb):
    try:
        import ctypes

        ctypes.CDLL("libxcb.so.1")
    except OSError:
        pytest.skip("libxcb.so.1 cannot be loaded here")
    assert dc.x_connect_error(xvfb) == ""
    assert dc.x_connect_error(f":{free_display_number()}") != ""


def test_command_with_an_unreachable_x_display_exits_3(tmp_path):
    if not QXCB.is_file() or not shutil.which("ldd"):
        pytest.skip("needs ldd and the PySide6 xcb plugin")
    missing = dc.unloadable_libraries(QXCB, os.environ)
    if missing:
        pytest.skip(f"the xcb plugin cannot load here ({', '.join(lib.soname for lib in missing)}); "
                    f"the library message comes first")
    display = f":{free_display_number()}"
    proc = run_command(command_env(tmp_path, DISPLAY=display))
    assert proc.returncode == dc.EXIT_DISPLAY, (proc.returncode, proc.stderr)
    assert_no_qt_abort(proc)
    assert f"cannot connect to the X display {display}" in proc.stderr
