"""What every page gets: the project, the task runner, settings and a way to talk to the window."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from PySide6.QtCore import QSettings

from transfer_gui.state.project import Project
from transfer_gui.ui.tasks import TaskRunner


@dataclass
class Context:
    project: Project
    tasks: TaskRunner
    settings: QSettings
    status: Callable[[str], None]  # a short message in the status bar
    go_to: Callable[[str], None]  # switch to a step by name

    def last_dir(self, key: str) -> str:
        value = self.settings.value(f"dirs/{key}", "", type=str)
        return value if value and os.path.isdir(value) else os.path.expanduser("~")

    def remember_dir(self, key: str, path: str) -> None:
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        if folder:
            self.settings.setValue(f"dirs/{key}", folder)
