"""Can the window open here? A check that runs before Qt loads its platform plugin.

When Qt's platform plugin cannot be loaded (a system library it links to is missing or
damaged) or cannot reach the display, Qt aborts the whole process (exit 134, SIGABRT) with
a generic message such as "From 6.5.0, xcb-cursor0 or libxcb-cursor0 is needed ...
Reinstalling the application may fix this problem", whatever is really missing. This module
finds out first, without importing Qt (it locates the PySide6 package with
``importlib.util.find_spec`` only), and says what to do instead:

* which plugin Qt would use: an explicit ``QT_QPA_PLATFORM`` is respected (offscreen,
  minimal, vnc ... need no check); in a Wayland session whose plugin loads,
  ``QT_QPA_PLATFORM`` is set to ``wayland;xcb``; otherwise xcb (X11) when ``DISPLAY`` is set;
* which shared libraries of that plugin (and of libQt6XcbQpa, libQt6Gui ... it links to)
  cannot be loaded (``ldd``, which honours ``LD_LIBRARY_PATH``; ``ctypes`` without ldd);
* the packages that provide them on Debian/Ubuntu, Fedora, Arch and openSUSE (``PACKAGES``);
* whether the X display accepts a connection (libxcb through ctypes).

``ready_for_qt`` runs it all and prints the message; its caller
(``transfer_gui.ui.app.run_app``) then exits with ``EXIT_DISPLAY`` (3: the display cannot be
used) instead of letting Qt abort.
``TRANSFER_GUI_SKIP_DISPLAY_CHECK=1`` turns the check off. ``decide`` holds the decision
logic as a pure function of the environment and two probes, so it can be tested alone.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping, MutableMapping, Sequence

EXIT_DISPLAY = 3
"""Exit code of ``transfer-gui`` (the window) when the display cannot be used."""

SKIP_ENV = "TRANSFER_GUI_SKIP_DISPLAY_CHECK"
PROG = "transfer-gui"

DISTROS = (("Debian/Ubuntu", "sudo apt-get install"), ("Fedora", "sudo dnf install"),
           ("Arch", "sudo pacman -S --needed"), ("openSUSE", "sudo zypper install"))
"""Each distribution with its install command, in the order of the columns of ``PACKAGES``."""

_GLIBC = ("libc6", "glibc", "glibc", "glibc")

PACKAGES: dict[str, tuple[str, str, str, str]] = {
    # so-name: (apt: Debian/Ubuntu, dnf: Fedora, pacman: Arch, zypper: openSUSE)
    # X11 protocol (xcb) libraries
    "libxcb.so.1": ("libxcb1", "libxcb", "libxcb", "libxcb1"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb", "libxcb", "libxcb-glx0"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb", "libxcb", "libxcb-randr0"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb", "libxcb", "libxcb-render0"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb", "libxcb", "libxcb-shape0"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb", "libxcb", "libxcb-shm0"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb", "libxcb", "libxcb-sync1"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb", "libxcb", "libxcb-xfixes0"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb", "libxcb", "libxcb-xinerama0"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb", "libxcb", "libxcb-xinput0"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb", "libxcb", "libxcb-xkb1"),
    # xcb-util libraries
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor", "xcb-util-cursor", "libxcb-cursor0"),
    "libxcb-ewmh.so.2": ("libxcb-ewmh2", "xcb-util-wm", "xcb-util-wm", "libxcb-ewmh2"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm", "xcb-util-wm", "libxcb-icccm4"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image", "xcb-util-image", "libxcb-image0"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms", "xcb-util-keysyms", "libxcb-keysyms1"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil", "xcb-util-renderutil",
                                "libxcb-render-util0"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util", "xcb-util", "libxcb-util1"),
    # Xlib and friends
    "libX11.so.6": ("libx11-6", "libX11", "libx11", "libX11-6"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb", "libx11", "libX11-xcb1"),
    "libXau.so.6": ("libxau6", "libXau", "libxau", "libXau6"),
    "libXdmcp.so.6": ("libxdmcp6", "libXdmcp", "libxdmcp", "libXdmcp6"),
    "libXext.so.6": ("libxext6", "libXext", "libxext", "libXext6"),
    "libXrender.so.1": ("libxrender1", "libXrender", "libxrender", "libXrender1"),
    "libSM.so.6": ("libsm6", "libSM", "libsm", "libSM6"),
    "libICE.so.6": ("libice6", "libICE", "libice", "libICE6"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon", "libxkbcommon", "libxkbcommon0"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11", "libxkbcommon-x11", "libxkbcommon-x11-0"),
    # OpenGL / EGL (libglvnd)
    "libEGL.so.1": ("libegl1", "libglvnd-egl", "libglvnd", "libglvnd"),
    "libGL.so.1": ("libgl1", "libglvnd-glx", "libglvnd", "libglvnd"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx", "libglvnd", "libglvnd"),
    "libGLdispatch.so.0": ("libglvnd0", "libglvnd", "libglvnd", "libglvnd"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl", "libglvnd", "libglvnd"),
    # Wayland
    "libwayland-client.so.0": ("libwayland-client0", "libwayland-client", "wayland", "libwayland-client0"),
    "libwayland-cursor.so.0": ("libwayland-cursor0", "libwayland-cursor", "wayland", "libwayland-cursor0"),
    "libwayland-egl.so.1": ("libwayland-egl1", "libwayland-egl", "wayland", "libwayland-egl1"),
    # fonts, images, compression
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig", "fontconfig", "libfontconfig1"),
    "libfreetype.so.6": ("libfreetype6", "freetype", "freetype2", "libfreetype6"),
    "libpng16.so.16": ("libpng16-16", "libpng", "libpng", "libpng16-16"),
    "libexpat.so.1": ("libexpat1", "expat", "expat", "libexpat1"),
    "libz.so.1": ("zlib1g", "zlib", "zlib", "libz1"),
    "libbz2.so.1.0": ("libbz2-1.0", "bzip2-libs", "bzip2", "libbz2-1"),
    "libbrotlicommon.so.1": ("libbrotli1", "libbrotli", "brotli", "libbrotlicommon1"),
    "libbrotlidec.so.1": ("libbrotli1", "libbrotli", "brotli", "libbrotlidec1"),
    "libzstd.so.1": ("libzstd1", "libzstd", "zstd", "libzstd1"),
    "liblz4.so.1": ("liblz4-1", "lz4-libs", "lz4", "liblz4-1"),
    "liblzma.so.5": ("liblzma5", "xz-libs", "xz", "liblzma5"),
    # D-Bus, GLib and what they link to
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs", "dbus", "libdbus-1-3"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libglib-2_0-0"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2", "glib2", "libgthread-2_0-0"),
    "libpcre2-8.so.0": ("libpcre2-8-0", "pcre2", "pcre2", "libpcre2-8-0"),
    "libffi.so.8": ("libffi8", "libffi", "libffi", "libffi8"),
    "libsystemd.so.0": ("libsystemd0", "systemd-libs", "systemd-libs", "libsystemd0"),
    "libcap.so.2": ("libcap2", "libcap", "libcap", "libcap2"),
    "libgcrypt.so.20": ("libgcrypt20", "libgcrypt", "libgcrypt", "libgcrypt20"),
    "libgpg-error.so.0": ("libgpg-error0", "libgpg-error", "libgpg-error", "libgpg-error0"),
    "libbsd.so.0": ("libbsd0", "libbsd", "libbsd", "libbsd0"),
    "libmd.so.0": ("libmd0", "libmd", "libmd", "libmd0"),
    # C and C++ runtime
    "libc.so.6": _GLIBC,
    "libm.so.6": _GLIBC,
    "libdl.so.2": _GLIBC,
    "libpthread.so.0": _GLIBC,
    "librt.so.1": _GLIBC,
    "libstdc++.so.6": ("libstdc++6", "libstdc++", "gcc-libs", "libstdc++6"),
    "libgcc_s.so.1": ("libgcc-s1", "libgcc", "gcc-libs", "libgcc_s1"),
}

PLUGIN_FILES = {"xcb": ("libqxcb.so",),
                "wayland": ("libqwayland.so", "libqwayland-generic.so", "libqwayland-egl.so")}
"""The plugin file of each display family; the first that exists is checked."""

DISPLAY_PLUGINS = {"xcb": "xcb", "wayland": "wayland", "wayland-egl": "wayland", "wayland-brcm": "wayland"}
"""Platform names (as in ``QT_QPA_PLATFORM``) that need a display, and their family. Any other
name (offscreen, minimal, vnc, eglfs, linuxfb ...) is left to Qt."""

_XCB_ERRORS = {
    1: "no X server answers there, or it refused this client",
    2: "the X server lacks an extension",
    3: "out of memory",
    4: "a request was too long",
    5: "the DISPLAY value cannot be parsed",
    6: "that screen does not exist on the X server",
    7: "passing file descriptors failed",
}


@dataclass(frozen=True)
class Library:
    """A shared library that cannot be loaded: not found, or found at ``path`` but broken."""

    soname: str
    reason: str = "not found"
    path: str = ""


@dataclass(frozen=True)
class Decision:
    """What ``decide`` found. ``message`` non-empty: the window cannot start; print it, exit 3."""

    platform: str = ""                  # "xcb", "wayland", or "" when no display is checked
    qt_qpa_platform: str | None = None  # store this in QT_QPA_PLATFORM; None: leave it alone
    message: str = ""
    reason: str = ""                    # the failure in a few words (for notes about fallbacks)
    missing: tuple[Library, ...] = ()
    notes: tuple[str, ...] = ()         # worth printing even when the window can start

    @property
    def ok(self) -> bool:
        return not self.message


Unloadable = Callable[[str], Sequence[Library]]
ConnectError = Callable[[str], str]


def wayland_session(env: Mapping[str, str]) -> bool:
    return bool(env.get("WAYLAND_DISPLAY")) or env.get("XDG_SESSION_TYPE", "").lower() == "wayland"


def decide(env: Mapping[str, str], unloadable: Unloadable, connect_error: ConnectError | None = None) -> Decision:
    """Which platform plugin Qt should use and whether it can work, from ``env`` alone and
    the probes: ``unloadable(family)`` lists the libraries of the "xcb" or "wayland" plugin
    that cannot be loaded; ``connect_error(display)`` says why an X display refuses a
    connection ("" when it accepts one; None: not checked)."""
    decision = _decide(env, unloadable, connect_error)
    return replace(decision, message=f"{decision.message}\n{headless_hint()}") if decision.message else decision


def _decide(env: Mapping[str, str], unloadable: Unloadable, connect_error: ConnectError | None) -> Decision:
    explicit = env.get("QT_QPA_PLATFORM", "").strip()
    if explicit:
        names = [part.split(":", 1)[0].strip().lower() for part in explicit.split(";") if part.strip()]
        return _first_usable(names, env, unloadable, connect_error, explicit=True)
    if wayland_session(env):
        return _first_usable(["wayland", "xcb"], env, unloadable, connect_error, explicit=False)
    if env.get("DISPLAY"):
        return _first_usable(["xcb"], env, unloadable, connect_error, explicit=False)
    return Decision(message=no_display_message(env), reason="no display is set")


def _first_usable(names: Sequence[str], env: Mapping[str, str], unloadable: Unloadable,
                  connect_error: ConnectError | None, explicit: bool) -> Decision:
    """The first of ``names`` that can work (Qt tries a ``;`` list in order, too)."""
    failures: list[Decision] = []
    for name in names:
        family = DISPLAY_PLUGINS.get(name)
        if family is None:  # offscreen, minimal, vnc ...: no display needed, or Qt's own business
            return Decision(platform="", notes=_fallback_notes(failures))
        result = _check_family(family, env, unloadable, connect_error, explicit)
        if result.ok:
            value = None
            if not explicit:  # say which one, so that Qt does not try another that cannot work
                value = "wayland;xcb" if family == "wayland" else ("xcb" if failures else None)
            return replace(result, qt_qpa_platform=value, notes=_fallback_notes(failures))
        failures.append(result)
    first, others = failures[0], failures[1:]
    extra = "".join(f"\nThe \"{f.platform}\" plugin cannot be used either: {f.reason}{_packages_in_brief(f)}."
                    for f in others)
    return replace(first, message=first.message + extra)


def _packages_in_brief(failure: Decision) -> str:
    """" (packages: Debian/Ubuntu a b | Fedora c | ...)" for the libraries ``failure`` misses."""
    known = [PACKAGES[lib.soname] for lib in failure.missing if lib.soname in PACKAGES]
    if not known:
        return ""
    columns = [f"{distro} {' '.join(dict.fromkeys(row[i] for row in known))}" for i, (distro, _) in enumerate(DISTROS)]
    return f" (packages: {' | '.join(columns)})"


def _fallback_notes(failures: Sequence[Decision]) -> tuple[str, ...]:
    return tuple(f"{PROG}: note: Qt's \"{f.platform}\" plugin cannot be used: {f.reason}{_packages_in_brief(f)}."
                 for f in failures)


def _check_family(family: str, env: Mapping[str, str], unloadable: Unloadable,
                  connect_error: ConnectError | None, explicit: bool) -> Decision:
    display = env.get("DISPLAY", "")
    if family == "xcb" and not display:
        requested = env.get("QT_QPA_PLATFORM", "") if explicit else ""
        return Decision(platform="xcb", message=no_display_message(env, requested), reason="DISPLAY is not set")
    missing = tuple(unloadable(family))
    if missing:
        names = ", ".join(lib.soname for lib in missing)
        return Decision(platform=family, missing=missing, reason=f"cannot load {names}",
                        message=missing_libraries_message(_plugin_title(family, env), missing, env))
    if family == "xcb" and connect_error is not None:
        error = connect_error(display)
        if error:
            return Decision(platform="xcb", message=connect_message(display, error),
                            reason=f"cannot connect to the X display {display}")
    return Decision(platform=family)


# --- messages -------------------------------------------------------------------------------

def headless_hint() -> str:
    return (f"Without a display: QT_QPA_PLATFORM=offscreen {PROG} runs the window invisibly, and the "
            f"command line needs no display at all: {PROG} train --help")


def no_display_message(env: Mapping[str, str], requested: str = "") -> str:
    why = (f"QT_QPA_PLATFORM={requested} asks for X11, but DISPLAY is not set" if requested
           else "there is no display to show it on (neither DISPLAY nor WAYLAND_DISPLAY is set)")
    return (f"{PROG}: the window cannot start: {why}.\n"
            f"  On a desktop, start it from a terminal of the graphical session, or set DISPLAY "
            f"(e.g. DISPLAY=:0 {PROG}).\n"
            f"  Over ssh, connect with ssh -X (or ssh -Y) so that DISPLAY is set.")


def connect_message(display: str, error: str) -> str:
    return (f"{PROG}: the window cannot start: cannot connect to the X display {display} ({error}).\n"
            f"  Check that the X server is running and that DISPLAY is right; if it runs as another user, "
            f"allow this one (xhost +SI:localuser:$USER, or set XAUTHORITY); over ssh use ssh -X.")


def install_commands(sonames: Sequence[str]) -> list[tuple[str, str]]:
    """``(distribution, one-line install command)`` for the so-names ``PACKAGES`` knows."""
    known = [PACKAGES[name] for name in sonames if name in PACKAGES]
    if not known:
        return []
    commands = []
    for column, (distro, command) in enumerate(DISTROS):
        packages = dict.fromkeys(row[column] for row in known)
        commands.append((distro, f"{command} {' '.join(packages)}"))
    return commands


def _plugin_title(family: str, env: Mapping[str, str]) -> str:
    if family == "xcb":
        return f"Qt's X11 platform plugin \"xcb\" (for DISPLAY={env.get('DISPLAY', '')})"
    where = env.get("WAYLAND_DISPLAY") or "the Wayland session"
    return f"Qt's Wayland platform plugin \"wayland\" (for {where})"


def missing_libraries_message(what: str, libs: Sequence[Library], env: Mapping[str, str]) -> str:
    """The message for ``libs`` that ``what`` (e.g. "Qt's X11 platform plugin ...") needs."""
    width = max(len(lib.soname) for lib in libs) + 2
    lines = [f"{PROG}: the window cannot start: {what} needs system libraries "
             f"that cannot be loaded:"]
    lines += [f"  {lib.soname:<{width}}{lib.reason}" for lib in libs]
    commands = install_commands([lib.soname for lib in libs])
    if commands:
        lines.append("Install them with the command for your system:")
        lines += [f"  {distro + ':':<15} {command}" for distro, command in commands]
    lines += _unknown_library_lines(libs)
    lines += _broken_file_lines(libs, env)
    return "\n".join(lines)


def _unknown_library_lines(libs: Sequence[Library]) -> list[str]:
    lines = []
    for lib in libs:
        if lib.soname in PACKAGES:
            continue
        if lib.soname.startswith(("libQt6", "libicu", "libpyside6", "libshiboken6")):
            lines.append(f"{lib.soname} belongs to PySide6 itself: reinstall it "
                         f"(pip install --force-reinstall PySide6-Essentials).")
        else:
            lines.append(f"No package is known here for {lib.soname}; find it with: apt-file search "
                         f"{lib.soname} | dnf provides '*/{lib.soname}' | pacman -F {lib.soname} | "
                         f"zypper search --provides {lib.soname}")
    return lines


def _broken_file_lines(libs: Sequence[Library], env: Mapping[str, str]) -> list[str]:
    search = [d for d in env.get("LD_LIBRARY_PATH", "").split(":") if d]
    lines = []
    for lib in libs:
        if not lib.path:
            continue
        folder = os.path.normpath(os.path.dirname(lib.path))
        if folder in [os.path.normpath(d) for d in search]:
            lines.append(f"{lib.path} is damaged and is found first because {folder} is on LD_LIBRARY_PATH: "
                         f"remove that file or take {folder} off LD_LIBRARY_PATH.")
        elif lib.soname in PACKAGES:  # (a damaged file of PySide6's own is named above)
            lines.append(f"{lib.path} is damaged: reinstall its package (e.g. sudo apt-get install --reinstall).")
    return lines


def import_error_message(exc: BaseException) -> str:
    """A message for an ImportError of PySide6 (e.g. libEGL.so.1 missing for libQt6Gui)."""
    text = str(exc)
    match = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if match:
        message = missing_libraries_message("Qt (PySide6)", [Library(match.group(1))], os.environ)
        return f"{message}\n(other libraries may be missing too: the next start names them)\n{headless_hint()}"
    return (f"{PROG}: the window cannot start: Qt (PySide6) cannot be imported: {text}\n"
            f"  Reinstall it in this environment: pip install --force-reinstall PySide6-Essentials\n"
            f"{headless_hint()}")


# --- probes of this machine -----------------------------------------------------------------

_NOT_FOUND = re.compile(r"^\s*(\S+) => not found\s*$")
_LOAD_ERROR = re.compile(r"error while loading shared libraries: (.+?): (.+?)\s*$")
_VERSION_ERROR = re.compile(r"^\s*\S+: (/\S+): (version `[^']+' not found)(?: \(required by (\S+)\))?")


@dataclass(frozen=True)
class LddReport:
    """What one ``ldd`` run says: so-names not found, the one file the loader stopped at (it
    stops at a file it finds but cannot load, e.g. an empty one), and symbol-version errors."""

    not_found: tuple[str, ...] = ()
    load_error: tuple[str, str] | None = None  # (file, reason)
    version_errors: tuple[Library, ...] = ()


def parse_ldd(text: str) -> LddReport:
    """Parse ``ldd``'s stdout and stderr (together; the loader's error lands on either)."""
    not_found: list[str] = []
    versions: list[Library] = []
    load_error = None
    for line in text.splitlines():
        if match := _NOT_FOUND.match(line):
            not_found.append(match.group(1))
        elif match := _LOAD_ERROR.search(line):
            load_error = load_error or (match.group(1), match.group(2))
        elif match := _VERSION_ERROR.match(line):
            needed_by = f" (needed by {os.path.basename(match.group(3))})" if match.group(3) else ""
            versions.append(Library(os.path.basename(match.group(1)), match.group(2) + needed_by))
    return LddReport(tuple(dict.fromkeys(not_found)), load_error, tuple(versions))


def _run_ldd(program: str, plugin: Path | str, env: Mapping[str, str]) -> tuple[int, str] | None:
    try:
        proc = subprocess.run([program, str(plugin)], env={**env, "LC_ALL": "C"}, capture_output=True,
                              text=True, errors="replace", timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.returncode, proc.stdout + "\n" + proc.stderr


def unloadable_libraries(plugin: Path | str, env: Mapping[str, str] | None = None,
                         ldd: str | None = "") -> tuple[Library, ...]:
    """The libraries ``plugin`` needs (all the way down) that cannot be loaded with ``env``'s
    LD_LIBRARY_PATH. ``ldd``: the program ("": look it up on PATH; None: use ctypes, which
    names only the first missing library). A damaged file found on LD_LIBRARY_PATH stops the
    loader, so it is hidden from the next ``ldd`` run to find what else is missing."""
    env = dict(os.environ if env is None else env)
    program = shutil.which("ldd", path=env.get("PATH")) if ldd == "" else ldd
    if not program:
        return dlopen_problem(plugin)
    found: dict[str, Library] = {}
    scratch = None
    try:
        for _ in range(8):
            run = _run_ldd(program, plugin, env)
            if run is None:
                return dlopen_problem(plugin)
            report = parse_ldd(run[1])
            for name in report.not_found:
                found.setdefault(name, Library(name))
            for lib in report.version_errors:
                found.setdefault(lib.soname, lib)
            if report.load_error is None:
                if run[0] != 0 and not found:  # e.g. "not a dynamic executable": ask the loader
                    return dlopen_problem(plugin)
                break
            path, reason = report.load_error
            name = os.path.basename(path)
            found.setdefault(name, Library(name, reason, path if os.sep in path else ""))
            scratch = scratch or tempfile.mkdtemp(prefix="transfer-gui-ldd-")
            if not _hide_from_search(env, path, scratch):
                break
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return tuple(found.values())


def _hide_from_search(env: dict[str, str], path: str, scratch: str) -> bool:
    """Replace ``path``'s folder on LD_LIBRARY_PATH by a folder of links to everything else in
    it, so that the loader looks further. False when the folder is not on LD_LIBRARY_PATH."""
    folder = os.path.normpath(os.path.dirname(path))
    dirs = env.get("LD_LIBRARY_PATH", "").split(":")
    if folder not in [os.path.normpath(d) for d in dirs if d]:
        return False
    shadow = tempfile.mkdtemp(dir=scratch)
    try:
        with os.scandir(folder) as entries:
            for n, entry in enumerate(entries):
                if n > 20000:
                    return False
                if entry.name != os.path.basename(path):
                    os.symlink(entry.path, os.path.join(shadow, entry.name))
    except OSError:
        return False
    env["LD_LIBRARY_PATH"] = ":".join(shadow if d and os.path.normpath(d) == folder else d for d in dirs)
    return True


def library_from_loader_error(text: str, plugin: str) -> Library:
    """The library a ``dlopen`` error text names ("libfoo.so.1: cannot open shared object file ...")."""
    if match := re.match(r"^(.+?): cannot open shared object file", text):
        return Library(os.path.basename(match.group(1)), "not found")
    if (match := re.match(r"^(.+?): (.+)$", text)) and match.group(1) != plugin:
        path = match.group(1)
        return Library(os.path.basename(path), match.group(2), path if os.sep in path else "")
    return Library(os.path.basename(plugin), text)


def dlopen_problem(plugin: Path | str) -> tuple[Library, ...]:
    """Without ldd: load ``plugin`` and name the first library the loader gives up on."""
    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        lib = library_from_loader_error(str(exc), str(plugin))
        return (replace(lib, reason=lib.reason + " (without ldd only the first problem can be named)"),)
    return ()


def platform_plugin_dirs(env: Mapping[str, str]) -> list[Path]:
    """Where Qt looks for platform plugins, in its order, without importing Qt."""
    dirs = []
    if env.get("QT_QPA_PLATFORM_PLUGIN_PATH"):
        dirs.append(Path(env["QT_QPA_PLATFORM_PLUGIN_PATH"]))
    dirs += [Path(d) / "platforms" for d in env.get("QT_PLUGIN_PATH", "").split(os.pathsep) if d]
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        spec = None
    for location in (spec.submodule_search_locations or []) if spec else []:
        dirs.append(Path(location) / "Qt" / "plugins" / "platforms")
    return dirs


def plugin_file(family: str, env: Mapping[str, str]) -> Path | None:
    for folder in platform_plugin_dirs(env):
        for name in PLUGIN_FILES[family]:
            if (folder / name).is_file():
                return folder / name
    return None


def plugin_unloadable(family: str, env: Mapping[str, str]) -> tuple[Library, ...]:
    """``unloadable`` for ``decide`` on this machine (nothing when the plugin is not found:
    then Qt's own message is all there is)."""
    path = plugin_file(family, env)
    return unloadable_libraries(path, env) if path else ()


def x_connect_error(display: str) -> str:
    """Why the X server at ``display`` refuses a connection; "" when it accepts one (or when
    libxcb cannot be loaded, which the library check reports)."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:
        return ""
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_int)]
    xcb.xcb_connection_has_error.restype = ctypes.c_int
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.restype = None
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)
    if not connection:
        return "libxcb returned no connection"
    try:
        code = xcb.xcb_connection_has_error(connection)
    finally:
        xcb.xcb_disconnect(connection)  # also safe on libxcb's static error connection
    return "" if code == 0 else _XCB_ERRORS.get(code, f"libxcb error {code}")


def qt_application_exists() -> bool:
    """A Q(Core/Gui)Application exists already (tests): its plugin is loaded, nothing to check."""
    core = sys.modules.get("PySide6.QtCore")
    app_class = getattr(core, "QCoreApplication", None)
    return app_class is not None and app_class.instance() is not None


def startup_problem(env: MutableMapping[str, str] | None = None) -> str:
    """Check the display for the window about to start: "" when it can start (or the check is
    off or not needed), else the message to print before exiting with ``EXIT_DISPLAY``. Stores
    the chosen platform in ``env["QT_QPA_PLATFORM"]`` (``env`` is ``os.environ`` by default)."""
    env = os.environ if env is None else env
    if env.get(SKIP_ENV, "").strip().lower() in ("1", "true", "yes") or qt_application_exists():
        return ""
    try:
        decision = decide(env, lambda family: plugin_unloadable(family, env), x_connect_error)
    except Exception as exc:  # a fault in the check must not keep the window from trying
        print(f"{PROG}: the display check failed ({type(exc).__name__}: {exc}); starting anyway",
              file=sys.stderr)
        return ""
    for note in decision.notes:
        print(note, file=sys.stderr)
    if decision.qt_qpa_platform is not None:
        env["QT_QPA_PLATFORM"] = decision.qt_qpa_platform
    return decision.message


def ready_for_qt(env: MutableMapping[str, str] | None = None) -> bool:
    """``startup_problem``, printed to stderr; then the import of Qt's widgets, whose libraries
    (libEGL, libfontconfig ...) every platform needs. False: exit with ``EXIT_DISPLAY``."""
    problem = startup_problem(env)
    if not problem:
        try:
            import PySide6.QtWidgets  # noqa: F401  (only now: the check above must come first)
        except ImportError as exc:
            problem = import_error_message(exc)
    if problem:
        print(problem, file=sys.stderr)
    return not problem
