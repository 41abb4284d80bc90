"""The installed application on a real X server (Xvfb, Qt's xcb platform, no window manager),
driven with real input events from xdotool as a person would: load the sample data, train,
reach Results; a screenshot of the X screen shows the window.

Needs Xvfb, xdotool and ImageMagick's ``import`` (``.ci/run`` installs them and sets
TRANSFER_GUI_REQUIRE_X=1, so that there they fail instead of being skipped)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

REQUIRED = os.environ.get("TRANSFER_GUI_REQUIRE_X") == "1"
APP = Path(sys.executable).parent / "transfer-gui"


def _missing_tools() -> list[str]:
    return [t for t in ("Xvfb", "xdotool", "import") if shutil.which(t) is None]


@pytest.fixture
def xserver(tmp_path):
    missing = _missing_tools()
    if missing:
        if REQUIRED:
            pytest.fail(f"needed for the desktop test and not installed: {', '.join(missing)}")
        pytest.skip(f"not installed: {', '.join(missing)}")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1366x768x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()  # Xvfb writes its display number once it accepts clients
    assert number.isdigit(), "Xvfb did not start"
    yield f":{number}"
    proc.terminate()
    proc.wait(10)


def _env(tmp_path: Path, display: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QT_", "WAYLAND", "XDG_"))}
    env.update(DISPLAY=display, QT_QPA_PLATFORM="xcb", HOME=str(tmp_path / "home"),
               XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
               XDG_STATE_HOME=str(tmp_path / "state"), XDG_CACHE_HOME=str(tmp_path / "cache"))
    return env


def _x(display: str, *args: str, timeout: float = 30) -> str:
    out = subprocess.run(["xdotool", *args], env={**os.environ, "DISPLAY": display}, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"xdotool {' '.join(args)}: {out.stderr}"
    return out.stdout.strip()


def _wait_for_log(log: Path, pattern: str, proc: subprocess.Popen, timeout: float) -> re.Match:
    """The app logs each step it shows and how each run ends; wait for ``pattern`` there."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = log.read_text(encoding="utf-8") if log.is_file() else ""
        m = re.search(pattern, text)
        if m:
            return m
        assert proc.poll() is None, f"the app ended with {proc.returncode}: {proc.stderr.read()[-3000:]}"
        time.sleep(0.1)  # polling a file another process writes: there is no signal to wait on
    raise AssertionError(f"not in the log after {timeout:.0f} s: {pattern}\n{text[-3000:]}")


def test_sample_flow_on_a_real_x_server(xserver, tmp_path):
    from transfer_gui.ui import display_check

    problem = display_check.startup_problem(dict(os.environ, DISPLAY=xserver, QT_QPA_PLATFORM="xcb"))
    if problem:
        if REQUIRED:
            pytest.fail(problem)
        pytest.skip(problem.splitlines()[0])
    env = _env(tmp_path, xserver)
    log = tmp_path / "state" / "transfer_gui" / "log" / "transfer_gui.log"
    proc = subprocess.Popen([str(APP)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        paint = _wait_for_log(log, r"first paint ([\d.]+) s .*xcb", proc, 60)
        wid = _x(xserver, "search", "--sync", "--onlyvisible", "--name", "transfer_gui")
        wid = wid.splitlines()[0]
        geometry = _x(xserver, "getwindowgeometry", wid)
        w, h = map(int, re.search(r"Geometry: (\d+)x(\d+)", geometry).groups())
        assert w <= 1366 and h <= 768, geometry  # fits the screen
        _x(xserver, "windowfocus", "--sync", wid)
        _x(xserver, "key", "alt+s")  # Load sample data
        _wait_for_log(log, r"scan: 240 images in 4 classes", proc, 60)
        _x(xserver, "key", "ctrl+Return")  # Start training, from any step
        _wait_for_log(log, r"train started", proc, 30)
        _wait_for_log(log, r"train completed", proc, 300)
        _wait_for_log(log, r"step: Results", proc, 60)
        shot = tmp_path / "screen.png"
        subprocess.run(["import", "-window", "root", str(shot)], env={**os.environ, "DISPLAY": xserver},
                       check=True, timeout=60)
        img = Image.open(shot).convert("RGB")
        assert img.size == (1366, 768)
        window = img.crop((0, 0, w, h))
        colours = window.getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) > 200  # text, plots and icons, not an empty frame
        highlight = (0x2F, 0x6F, 0xD6)  # the selected step in the light theme
        strip = window.crop((0, 0, 200, h))
        assert sum(n for n, c in strip.getcolors(1 << 20) if c == highlight) > 2000
        outside = img.crop((w + 5, 0, 1366, 768)) if w < 1361 else None
        assert outside is None or len(outside.getcolors(1 << 20) or [0] * 999) < 5  # the rest is bare screen
        print(f"first paint on Xvfb: {float(paint.group(1)):.2f} s")
        _x(xserver, "key", "ctrl+s")  # save the project (a file dialog opens) ...
        _wait_for_log(log, r"dialog: Save project as", proc, 30)
        dialog = _x(xserver, "search", "--sync", "--onlyvisible", "--name", "Save project as").splitlines()[0]
        _x(xserver, "windowfocus", "--sync", dialog)  # keys typed before it has the focus would be lost
        _x(xserver, "key", "ctrl+a")
        _x(xserver, "type", "--delay", "20", str(tmp_path / "sample.toml"))
        _x(xserver, "key", "Return")
        _wait_for_log(log, r"saved .*sample\.toml", proc, 30)
        _x(xserver, "windowfocus", "--sync", wid)  # no window manager gives the focus back
        _x(xserver, "key", "ctrl+q")  # ... so that Quit has nothing to ask
        assert proc.wait(60) == 0
        assert (tmp_path / "sample.toml").is_file()
    finally:
        if proc.poll() is None:
            subprocess.run(["import", "-window", "root", str(tmp_path / "last.png")],
                           env={**os.environ, "DISPLAY": xserver}, timeout=60)
            print("log:", log.read_text()[-2000:] if log.is_file() else "none", f"\nscreen: {tmp_path / 'last.png'}")
            proc.kill()
            proc.wait()
