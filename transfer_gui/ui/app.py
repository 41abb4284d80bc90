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
    """
    import os

    argv = list(sys.argv if argv is None else argv)
    from PySide6.QtCore import QSettings, QTimer
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

    from transfer_gui.ui.main_window import MainWindow

    icon = Path(__file__).resolve().parent.parent / "resources" / "icons" / "transfer-gui.png"
    if icon.is_file():
        from PySide6.QtGui import QIcon

        app.setWindowIcon(QIcon(str(icon)))

    window = MainWindow(settings)
    window.show()
    from transfer_gui.ui.qt_check import binding_problem

    problem = binding_problem()
    if problem:
        print(f"transfer_gui: {problem}", file=sys.stderr)
        from PySide6.QtWidgets import QMessageBox

        QTimer.singleShot(0, lambda: QMessageBox.warning(window, "Qt binding defect", problem))
    projects = [a for a in argv[1:] if not a.startswith("-")]
    if projects:
        path = Path(projects[0])
        QTimer.singleShot(0, lambda: window.open_project(path))
    QTimer.singleShot(150, window.start_background_work)
    quit_after = os.environ.get("TRANSFER_GUI_QUIT_AFTER_MS", "")
    if quit_after.isdigit():
        QTimer.singleShot(int(quit_after), window.close)
        QTimer.singleShot(int(quit_after) + 50, app.quit)
    return app.exec()


if __name__ == "__main__":
    raise SystemExit(run_app())
