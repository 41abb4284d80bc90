"""Start the window: ``run_app(argv) -> exit code``.

The window paints before torch is imported: nothing on the way to the first paint imports
torch; the model catalog, layer groups and devices are read on worker threads afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

ORG = "transfer_gui"
APP = "transfer_gui"


def run_app(argv: list[str] | None = None) -> int:
    """``argv`` as in ``sys.argv``: the program name first, then an optional project file.

    ``TRANSFER_GUI_QUIT_AFTER_MS`` quits after that many milliseconds (smoke tests of builds).
    Returns 3 (``display_check.EXIT_DISPLAY``), with what to install or set on stderr, when the
    display cannot be used (``TRANSFER_GUI_SKIP_DISPLAY_CHECK=1`` skips that check).
    """
    import os

    argv = list(sys.argv if argv is None else argv)
    from transfer_gui.ui import display_check  # before any Qt GUI module: Qt aborts where this explains

    if not display_check.ready_for_qt():
        return display_check.EXIT_DISPLAY
    from PySide6.QtCore import QTimer

    app, settings = _make_app(argv)
    from transfer_gui.ui import applog
    from transfer_gui.ui.main_window import MainWindow

    applog.setup_logging()
    window = MainWindow(settings)
    applog.install_excepthook(window.error_reported.emit)  # a signal: safe from any thread
    window.show()
    _warn_about_binding(window)
    projects = [a for a in argv[1:] if not a.startswith("-")]
    if projects:
        path = Path(projects[0])
        window.after_first_paint(lambda: window.open_project(path))
    else:
        window.after_first_paint(window.restore_session)  # the project that was open last time
    QTimer.singleShot(150, window.start_background_work)
    quit_after = os.environ.get("TRANSFER_GUI_QUIT_AFTER_MS", "")
    if quit_after.isdigit():
        QTimer.singleShot(int(quit_after), window.close)
        QTimer.singleShot(int(quit_after) + 50, app.quit)
    return app.exec()


def _make_app(argv: list[str]):
    """The QApplication with its names, theme and icon, and the settings it remembers."""
    from PySide6.QtCore import QSettings
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    from transfer_gui import __version__
    from transfer_gui.ui import theme

    app = QApplication.instance() or QApplication(argv[:1] + [a for a in argv[1:] if a.startswith("-")])
    app.setOrganizationName(ORG)
    app.setApplicationName(APP)
    app.setApplicationDisplayName("transfer_gui")
    app.setApplicationVersion(__version__)
    app.setDesktopFileName("transfer-gui")  # matches packaging/transfer-gui.desktop (Wayland icons)
    settings = QSettings()
    name = settings.value("theme", "light", type=str)
    theme.apply_theme(app, name if name in theme.THEMES else "light")
    from transfer_gui.paths import icon_file

    icon = icon_file()
    if icon.is_file():
        app.setWindowIcon(QIcon(str(icon)))
    return app, settings


def _warn_about_binding(window) -> None:
    from PySide6.QtCore import QTimer

    from transfer_gui.ui.qt_check import binding_problem

    problem = binding_problem()
    if problem:
        print(f"transfer_gui: {problem}", file=sys.stderr)
        from PySide6.QtWidgets import QMessageBox

        QTimer.singleShot(0, lambda: QMessageBox.warning(window, "Qt binding defect", problem))


if __name__ == "__main__":
    raise SystemExit(run_app())
