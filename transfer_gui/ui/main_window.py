"""The main window: menus, the step list, one page per step, the project file and QSettings.

Each page lives in its own module and talks to the others only through the Project; this
module wires them together and owns what belongs to the whole window (files, drops, close).
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (QApplication, QFrame, QHBoxLayout, QLabel, QMainWindow, QPushButton,
                               QScrollArea, QSplitter, QStackedWidget, QVBoxLayout, QWidget)

from transfer_gui.engine.formats import is_image_name
from transfer_gui.state.project import Project
from transfer_gui.ui import access, applog, dialogs, theme
from transfer_gui.ui.context import Context
from transfer_gui.ui.menus import build_actions, build_menus
from transfer_gui.ui.project_files import ProjectFiles
from transfer_gui.ui.steps import HELP, STEPS, StepList, enabled, readiness
from transfer_gui.ui.tasks import TaskRunner

PREFERRED_SIZE = (1280, 800)
MINIMUM_SIZE = (720, 480)  # smaller than any page needs: below a page's own minimum it scrolls


class _PageFrame(QWidget):
    """Holds one page in its scroll area. Asked how tall it must be at a width, it answers with the
    page's minimum there, not its preferred height, so the page fills the window and scrolls only
    when the window is smaller than the page can be (QScrollArea asks for the preferred one when a
    page has word-wrapped text, which made every such page scroll)."""

    def __init__(self, page: QWidget):
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(page)

    def heightForWidth(self, width: int) -> int:
        return self.layout().totalMinimumHeightForWidth(width)


class _FirstPaint(QObject):
    """Logs when the window first paints, then removes itself. (A Python ``event()`` override on
    the window would also run for its deferred deletion, holding the interpreter lock while Qt
    waits for the task pool's threads, which may need that lock: a deadlock.)"""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.painted = False
        self._then: list = []

    def then(self, fn) -> None:
        """Run ``fn`` from the event loop once the window has painted (at once if it has)."""
        if self.painted:
            QTimer.singleShot(0, fn)
        else:
            self._then.append(fn)

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Paint and not self.painted:
            obj.removeEventFilter(self)
            self.painted = True
            applog.info(f"first paint {applog.process_age():.2f} s after the process started "
                        f"({obj.width()}x{obj.height()} at {obj.devicePixelRatioF():g}x, "
                        f"{QApplication.platformName()})")
            for fn in self._then:
                QTimer.singleShot(0, fn)
            self._then.clear()
        return False


def preload_engine_job(task) -> bool:
    import transfer_gui.engine.loop  # noqa: F401 - imported for its side effect of loading

    return True


class MainWindow(QMainWindow):
    error_reported = Signal(str)  # an error nobody caught, in a sentence (from any thread)

    def __init__(self, settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.settings = settings if settings is not None else QSettings()
        self.project = Project()
        self.tasks = TaskRunner(self)
        self.ctx = Context(self.project, self.tasks, self.settings, self._status, self.go_to)
        self.files = ProjectFiles(self)
        self.setAcceptDrops(True)
        self.setMinimumSize(*MINIMUM_SIZE)
        access.install(QApplication.instance())
        self._first_paint = _FirstPaint(self)
        self.installEventFilter(self._first_paint)
        self._build_pages()
        build_actions(self)
        build_menus(self)
        self._refresh_timer = QTimer(self, singleShot=True, interval=30)
        self._refresh_timer.timeout.connect(self._refresh)
        p = self.project
        for sig in (p.config_changed, p.scan_changed, p.groups_changed, p.run_changed, p.training_changed,
                    p.state_changed):
            sig.connect(lambda *_: self._refresh_timer.start())
        p.state_changed.connect(self._update_title)
        p.config_error.connect(lambda msg: self._status(f"Not changed: {msg}"))
        self.error_reported.connect(self._show_uncaught)
        self.training.run_finished.connect(self.results.open_run)
        self.results.resume_requested.connect(self.training.resume_run)
        self.training.running_changed.connect(lambda running: running or self.results.refresh_runs())
        self.training.running_changed.connect(self._update_run_actions)
        self.training.paused_changed.connect(self._update_run_actions)
        self.statusBar().showMessage("Drop image folders on the window to begin.", 8000)
        self._restore_settings()
        self.results.refresh_runs()
        self.steps.select("Data")
        access.name_controls(self)
        self._update_title()
        self._refresh()
        self._update_run_actions()

    # ------------------------------------------------------------------ construction
    def _build_pages(self) -> None:
        self.steps = StepList(self.project)
        self.stack = self._build_stack()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.steps)
        self.splitter.addWidget(self._build_right())
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setCollapsible(0, False)
        self.splitter.setSizes([210, 1070])
        self.setCentralWidget(self.splitter)
        self.steps.step_selected.connect(self._show_step)

    def _build_stack(self) -> QStackedWidget:
        """One page per step, each in a scroll area."""
        from transfer_gui.ui.pages.data_page import DataPage
        from transfer_gui.ui.pages.export_page import ExportPage
        from transfer_gui.ui.pages.layers_page import LayersPage
        from transfer_gui.ui.pages.model_page import ModelPage
        from transfer_gui.ui.pages.results_page import ResultsPage
        from transfer_gui.ui.pages.training_page import TrainingPage

        self.data = DataPage(self.ctx)
        self.model = ModelPage(self.ctx)
        self.layers = LayersPage(self.ctx)
        self.training = TrainingPage(self.ctx)
        self.results = ResultsPage(self.ctx)
        self.export = ExportPage(self.ctx)
        self.pages = dict(zip(STEPS, (self.data, self.model, self.layers, self.training, self.results,
                                      self.export)))
        stack = QStackedWidget()
        self.scrollers: dict[str, QScrollArea] = {}
        for name, page in self.pages.items():
            # a page never gets less room than it needs: on a small screen (or at 2x) it scrolls
            scroller = QScrollArea()
            scroller.setWidget(_PageFrame(page))
            scroller.setWidgetResizable(True)
            scroller.setFrameShape(QFrame.Shape.NoFrame)
            self.scrollers[name] = scroller
            stack.addWidget(scroller)
        return stack

    def _build_right(self) -> QWidget:
        """The step's heading, what it still needs, its page and the Back / Next buttons."""
        self.heading = QLabel()
        self.heading.setObjectName("PageHeading")
        f = self.heading.font()
        f.setPointSizeF(f.pointSizeF() * 1.45)
        f.setBold(True)
        self.heading.setFont(f)
        self.subheading = QLabel()
        self.subheading.setWordWrap(True)
        self.banner = QLabel()
        self.banner.setObjectName("NotReadyBanner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.setToolTip("What this step still needs before training can start.")
        nav = self._build_nav()
        right = QWidget()
        lay = QVBoxLayout(right)
        lay.setContentsMargins(14, 10, 14, 8)
        lay.setSpacing(6)
        lay.addWidget(self.heading)
        lay.addWidget(self.subheading)
        lay.addWidget(self.banner)
        lay.addWidget(self.stack, 1)
        line = QFrame()
        line.setFrameShape(QFrame.Shape.HLine)
        line.setFrameShadow(QFrame.Shadow.Sunken)
        lay.addWidget(line)
        lay.addLayout(nav)
        return right

    def _build_nav(self) -> QHBoxLayout:
        self.back_btn = QPushButton("← Back")
        self.back_btn.setToolTip("Go to the previous step (Alt+Left).")
        self.next_btn = QPushButton("Next →")
        self.next_btn.setToolTip("Go to the next step (Alt+Right).")
        self.next_btn.setDefault(False)
        self.back_btn.clicked.connect(lambda: self.step_by(-1))
        self.next_btn.clicked.connect(lambda: self.step_by(1))
        nav = QHBoxLayout()
        nav.addWidget(self.back_btn)
        nav.addStretch(1)
        nav.addWidget(self.next_btn)
        return nav

    def start_background_work(self) -> None:
        """After the first paint: read the model catalog, the layer groups and the devices on
        worker threads (this is where torch gets imported, off the GUI thread)."""
        self.model.load_catalog()
        self.layers.on_shown()
        self.training.load_devices()
        # The training loop's modules (torchvision's operators among them) take ~1.5 s to load;
        # load them now, not when Start is pressed and the user watches the window.
        self.tasks.start("preload-engine", preload_engine_job, heavy=True, on_done=self._engine_loaded)

    def _engine_loaded(self, _ok: object) -> None:
        """Everything the window and the engine load once is in memory now (~430,000 objects).
        Move it out of the garbage collector's reach: a full collection then costs ~1 ms, not
        250 ms with the interpreter lock held, which froze the window and stalled training."""
        import gc

        gc.freeze()

    # ------------------------------------------------------------------ navigation
    def go_to(self, name: str) -> None:
        item = self.steps.item(STEPS.index(name))
        item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)
        self.steps.select(name)

    def current_step(self) -> str:
        return STEPS[self.stack.currentIndex()]

    def _show_step(self, name: str) -> None:
        applog.info(f"step: {name}")
        self.stack.setCurrentWidget(self.scrollers[name])
        self.heading.setText(f"{STEPS.index(name) + 1}. {name}")
        self.subheading.setText(HELP[name])
        self._refresh()
        access.name_controls(self.pages[name])  # controls a page built since it was last shown
        shown = getattr(self.pages[name], "on_shown", None)
        if shown is not None:
            shown()

    def next_step(self) -> None:
        """Alt+Right: the next step when it is open, decided now (the Next button follows the
        project on a short timer, so it may not show a change of the last few milliseconds)."""
        i = STEPS.index(self.current_step()) + 1
        if i < len(STEPS) and enabled(self.project, STEPS[i]):
            self.go_to(STEPS[i])

    def step_by(self, delta: int) -> None:
        i = STEPS.index(self.current_step()) + delta
        if 0 <= i < len(STEPS):
            self.go_to(STEPS[i])

    def _refresh(self) -> None:
        self.steps.refresh()
        # keep the current step selectable even if the wizard would close it
        cur = self.current_step()
        item = self.steps.item(STEPS.index(cur))
        item.setFlags(Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled)
        why = readiness(self.project, cur)
        colors = theme.status_colors()
        self.banner.setVisible(bool(why))
        self.banner.setText(f"<b>Not ready:</b> {why}")
        self.banner.setStyleSheet(f"QLabel#NotReadyBanner {{ color: {colors['warn']}; border: 1px solid "
                                  f"{colors['warn']}; border-radius: 4px; padding: 6px; }}")
        i = STEPS.index(cur)
        self.back_btn.setEnabled(i > 0)
        if i + 1 < len(STEPS):
            nxt = STEPS[i + 1]
            self.next_btn.setText(f"Next: {nxt} →")
            ok = enabled(self.project, nxt)
            self.next_btn.setEnabled(ok)
            self.next_btn.setToolTip(f"Go to {nxt} (Alt+Right)." if ok else
                                     f"{nxt} opens when this step is ready: {why or readiness(self.project, nxt)}")
        else:
            self.next_btn.setText("Next →")
            self.next_btn.setEnabled(False)
        self._update_run_actions()

    def _update_run_actions(self, *_args) -> None:
        running = self.training.is_running()
        self.act_start.setEnabled(not running)
        self.act_pause.setEnabled(running)
        self.act_pause.setText("&Resume" if self.training.is_paused() else "&Pause")
        self.act_stop.setEnabled(running)

    def _show_uncaught(self, text: str) -> None:
        self._status(text)
        dialogs.show_error(self, "Something went wrong", text)

    def _status(self, message: str) -> None:
        self.statusBar().showMessage(message, 10000)

    # ------------------------------------------------------------------ project files
    def _update_title(self) -> None:
        self.setWindowTitle(f"{self.project.title}[*] — transfer_gui")
        self.setWindowModified(self.project.dirty)

    def _confirm_discard(self) -> bool:
        return self.files.confirm_discard()

    # the File menu, kept callable on the window
    def new_project(self) -> None:
        self.files.new()

    def open_project_dialog(self) -> None:
        self.files.open_dialog()

    def open_project(self, path: str | os.PathLike[str]) -> bool:
        return self.files.open(path)

    def save_project(self) -> bool:
        return self.files.save()

    def save_project_as(self) -> bool:
        return self.files.save_as()

    def after_first_paint(self, fn, latest_ms: int = 3000) -> None:
        """Run ``fn`` once the window has painted, so that what it costs (opening a project:
        scanning its folders, reading its runs) never delays the first picture; after
        ``latest_ms`` it runs anyway (a window that is hidden or minimised may never paint)."""
        done = []

        def once() -> None:
            if not done:
                done.append(True)
                fn()

        self._first_paint.then(once)
        QTimer.singleShot(latest_ms, once)

    def restore_session(self) -> bool:
        """Reopen the project that was open when the window last closed (with its runs)."""
        path = self.settings.value("session/project", "", type=str)
        return bool(path) and Path(path).is_file() and self.open_project(path)

    def recent_files(self) -> list[str]:
        return self.files.recent()

    def _fill_recent(self) -> None:
        self.files.fill_recent_menu(self.recent_menu)

    # ------------------------------------------------------------------ drag and drop
    @staticmethod
    def _local_paths(event) -> list[str]:
        mime = event.mimeData()
        if not mime.hasUrls():
            return []
        return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        paths = self._local_paths(event)
        if any(os.path.isdir(p) or is_image_name(p) for p in paths):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = self._local_paths(event)
        folders = [p for p in paths if os.path.isdir(p)]
        images = [p for p in paths if os.path.isfile(p) and is_image_name(p)]
        if folders:
            self.data.add_folders(folders)
            self.go_to("Data")
        elif images:
            if self.project.record is not None:
                self.go_to("Results")
                self.results.try_images(images)
            else:
                self._status("Drop folders of images (one sub-folder per class) to add training data.")
        event.acceptProposedAction()

    # ------------------------------------------------------------------ settings, theme, close
    def set_theme(self, name: str) -> None:
        app = QApplication.instance()
        theme.apply_theme(app, name)
        self.theme_actions[name].setChecked(True)
        self.settings.setValue("theme", name)
        from transfer_gui.ui.widgets.plotting import restyle_all

        restyle_all(self)
        for page in self.pages.values():
            hook = getattr(page, "on_theme_changed", None)
            if hook is not None:
                hook()
        self._refresh()

    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.value("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        self.fit_to_screen(resize=geo is None)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        split = s.value("window/splitter")
        if split is not None:
            self.splitter.restoreState(split)
        self.theme_actions[theme.current_theme()].setChecked(True)

    def fit_to_screen(self, resize: bool = True) -> None:
        """Keep the window on its screen: the preferred size where it fits, else what the screen
        has (a 1366x768 laptop, or a 1600x1000 screen at 200 %), with the minimum lowered to it."""
        screen = self.screen() or QApplication.primaryScreen()
        if screen is None:
            return
        avail = screen.availableGeometry()
        room_w, room_h = int(avail.width() * 0.96), int(avail.height() * 0.94)
        self.setMinimumSize(min(MINIMUM_SIZE[0], room_w), min(MINIMUM_SIZE[1], room_h))
        want_w, want_h = (PREFERRED_SIZE if resize else (self.width(), self.height()))
        w, h = min(want_w, room_w), min(want_h, room_h)
        if resize or (w, h) != (self.width(), self.height()):
            self.resize(w, h)
        if not avail.contains(self.frameGeometry().topLeft()):
            self.move(avail.topLeft())

    def _save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.saveState())
        for page in self.pages.values():
            save = getattr(page, "save_settings", None)
            if save is not None:
                save(s)
        s.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.training.is_running():
            if not dialogs.ask_yes_no(self, "Training is running",
                                      "Training is still running. Stop it and close the window? "
                                      "The last finished epoch's checkpoint is kept."):
                event.ignore()
                return
            self.training.shutdown()
        if not self._confirm_discard():
            event.ignore()
            return
        self._save_settings()
        for page in self.pages.values():
            shutdown = getattr(page, "shutdown", None)
            if shutdown is not None:
                shutdown()
        self.tasks.shutdown()
        event.accept()
