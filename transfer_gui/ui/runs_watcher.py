"""Keeps the project's runs list current while the window is open: a run trained from the
command line (or another window) appears, grows epoch by epoch and ends without a restart.

A QFileSystemWatcher on the runs folder and on every listed run folder says *that* something
changed; the project reads the runs again (``Project.reread_runs``: the state layer decides
what a run is and how it stands) a moment later, once a burst of writes is over. A run being
trained can also end without writing a file (``kill -9``), so while a listed run is live its
lock is tested every :data:`LIVE_POLL_MS` (``Project.live_run_ended``), the list read again
only when it was dropped.
"""

from __future__ import annotations

from PySide6.QtCore import QFileSystemWatcher, QObject, QTimer

SETTLE_MS = 300  # a run writes several files per epoch: read once after the burst
LIVE_POLL_MS = 1500


class RunsWatcher(QObject):
    def __init__(self, project, parent: QObject | None = None):
        super().__init__(parent)
        self.project = project
        self.watcher = QFileSystemWatcher(self)
        self.watcher.directoryChanged.connect(lambda _path: self.settle.start())
        self.settle = QTimer(self, singleShot=True, interval=SETTLE_MS)
        self.settle.timeout.connect(self.reread)
        self.poll = QTimer(self, interval=LIVE_POLL_MS)
        self.poll.timeout.connect(lambda: self.project.live_run_ended() and self.reread())
        project.runs_changed.connect(self.rewatch)
        project.state_changed.connect(self.rewatch)  # saved under a new name: another runs folder
        self.rewatch()

    def reread(self) -> None:
        if not self.project.reread_runs():
            self.rewatch()  # e.g. the runs folder was just created: watch it now

    def rewatch(self) -> None:
        """Watch what the project's runs list depends on now; poll while a run is live."""
        wanted = {str(p) for p in self.project.runs_to_watch()}
        have = set(self.watcher.directories())
        if have - wanted:
            self.watcher.removePaths(sorted(have - wanted))
        if wanted - have:
            self.watcher.addPaths(sorted(wanted - have))
        if self.project.has_live_run():
            if not self.poll.isActive():
                self.poll.start()
        else:
            self.poll.stop()

    def watched(self) -> list[str]:
        return sorted(self.watcher.directories())
