"""Project files for the window: New, Open, Save, Save As and the recent list. A project is
the same TOML config file the command line reads (``transfer_gui.config.save/load``)."""

from __future__ import annotations

import os
from pathlib import Path

from transfer_gui.config import ConfigError
from transfer_gui.ui import applog, dialogs

PROJECT_FILTER = "transfer_gui project (*.toml);;All files (*)"
MAX_RECENT = 8


class ProjectFiles:
    def __init__(self, window):
        self.w = window  # the MainWindow: its project, settings, dialogs' parent

    def confirm_discard(self) -> bool:
        """True when it is fine to throw the current project away (saved, discarded)."""
        if not self.w.project.dirty:
            return True
        answer = dialogs.ask_save_changes(self.w, f"The project “{self.w.project.title}”")
        if answer == dialogs.SAVE:
            return self.save()
        return answer == dialogs.DISCARD

    def new(self) -> None:
        if self.w.training.is_running():
            self.w._status("Stop training before starting a new project.")
            return
        if self.confirm_discard():
            self.w.project.new()
            self._remember_session()
            self.w.results.refresh_runs()
            self.w.go_to("Data")

    def open_dialog(self) -> None:
        path = dialogs.open_file(self.w, "Open project", self.w.ctx.last_dir("project"), PROJECT_FILTER)
        if path:
            self.open(path)

    def open(self, path: str | os.PathLike[str]) -> bool:
        if self.w.training.is_running():
            self.w._status("Stop training before opening another project.")
            return False
        if not self.confirm_discard():
            return False
        try:
            self.w.project.open(path)
        except ConfigError as exc:
            dialogs.show_error(self.w, "Cannot open project", str(exc))
            self._forget_recent(str(path))
            return False
        self.w.ctx.remember_dir("project", str(path))
        self._add_recent(str(Path(path).resolve()))
        self._remember_session()
        self.w.results.refresh_runs(open_latest=True)
        self.w._status(f"Opened {path}")
        applog.info(f"opened {path}")
        self.w.go_to("Data")
        return True

    def save(self) -> bool:
        if self.w.project.path is None:
            return self.save_as()
        return self._save_to(self.w.project.path)

    def save_as(self) -> bool:
        start = str(self.w.project.path or Path(self.w.ctx.last_dir("project")) / "project.toml")
        path = dialogs.save_file(self.w, "Save project as", start, PROJECT_FILTER)
        if not path:
            return False
        if not Path(path).suffix:
            path += ".toml"
        return self._save_to(Path(path))

    def _save_to(self, path: Path) -> bool:
        try:
            self.w.project.save(path)
        except (OSError, ConfigError) as exc:
            dialogs.show_error(self.w, "Cannot save project", f"Could not save {path}: {exc}")
            return False
        self.w.ctx.remember_dir("project", str(path))
        self._add_recent(str(path.resolve()))
        self._remember_session()
        self.w.results.refresh_runs()
        self.w._status(f"Saved {path}")
        applog.info(f"saved {path}")
        return True

    def _remember_session(self) -> None:
        """The project to reopen when the window starts next time ("" = a new one)."""
        path = self.w.project.path
        self.w.settings.setValue("session/project", str(path.resolve()) if path else "")

    def recent(self) -> list[str]:
        value = self.w.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, path: str) -> None:
        items = [path] + [p for p in self.recent() if p != path]
        self.w.settings.setValue("recent", items[:MAX_RECENT])

    def _forget_recent(self, path: str) -> None:
        self.w.settings.setValue("recent", [p for p in self.recent() if p != str(path)])

    def fill_recent_menu(self, menu) -> None:
        menu.clear()
        files = self.recent()
        for path in files:
            act = menu.addAction(Path(path).name)
            act.setToolTip(path)
            act.triggered.connect(lambda _=False, p=path: self.open(p))
        if not files:
            none = menu.addAction("No recent projects")
            none.setEnabled(False)
        else:
            menu.addSeparator()
            clear = menu.addAction("Clear list")
            clear.triggered.connect(lambda: self.w.settings.setValue("recent", []))
