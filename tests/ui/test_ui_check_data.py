"""The Data step's "Check data" view (ui/widgets/check_data.py): the check runs on a task thread
with progress and Cancel, the suspects are listed with their thumbnails beside the nearest images
of their given and suggested class, and the actions (exclude, move, keep, undo) become
data.exclude_files / data.relabel on the project. One test runs the engine's real audit on
generated images with one image planted in the wrong class folder."""

from __future__ import annotations

import hashlib
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from transfer_gui.engine.events import PhaseChanged, Progress, Warning  # noqa: A004 - the engine's event
from transfer_gui.errors import Cancelled
from transfer_gui.ui import theme
from transfer_gui.ui.widgets import check_data
from transfer_gui.ui.widgets.check_data import PairRow, SuspectRow

from .helpers import make_class_folders, wait_for


@dataclass
class Issue:
    path: str
    given: str
    suggested: str
    score: float
    reason: str = "the model is sure it is another class"


@dataclass
class Pair:
    a: str
    b: str
    similarity: float
    kind: str
    reason: str = "the same photo"


@dataclass
class Out:
    path: str
    score: float
    reason: str = "far from every class"


@dataclass
class FakeResult:
    """AuditResult's agreed shape, for the tests that need no model."""

    label_issues: list
    duplicates: list
    outliers: list
    class_counts: dict
    imbalance: dict | None = None
    seconds: float = 0.25
    neighbour_paths: dict = field(default_factory=dict)

    def neighbours(self, path, class_name, k=3):
        return self.neighbour_paths[class_name][:k]


def fake_result(root) -> FakeResult:
    folders = make_class_folders(root, {"red": 8, "green": 8, "blue": 3}, size=24)
    files = {f.name: sorted(str(p) for p in f.glob("*.png")) for f in folders}
    return FakeResult(
        label_issues=[Issue(files["blue"][0], "blue", "red", 0.95), Issue(files["green"][1], "green", "red", 0.7)],
        duplicates=[Pair(files["red"][2], files["red"][3], 1.0, "duplicate"),
                    Pair(files["green"][4], files["red"][5], 0.99, "leak", "training and validation; two classes")],
        outliers=[Out(files["green"][7], 5.5)],
        class_counts={"red": 8, "green": 8, "blue": 3},
        imbalance={"largest": "red", "smallest": "blue", "ratio": 8 / 3, "advice": "Try class weights."},
        neighbour_paths=files)


def _open_with(qtbot, w, result):
    """Open the view on a project whose check returns ``result`` (the job stands in for the audit)."""
    w.project.set("data.folders", [str(w._test_root)])

    def job(task, cfg):
        task.report(PhaseChanged("audit", "Looking for duplicates and leaks"), force=True)
        task.report(Warning("Class 'blue' has only 3 images."), force=True)
        return result

    check_data_job = check_data.audit_job
    check_data.audit_job = job
    try:
        dialog = w.data.check_btn.open_view()
        wait_for(qtbot, lambda: w.data.check_btn.view.result is result, 30)
    finally:
        check_data.audit_job = check_data_job
    return dialog


def _row(section, cls, path):
    return next(r for r in section.rows if isinstance(r, cls) and path in r.paths())


def test_suspects_pairs_and_outliers_are_listed_with_counts_thumbnails_and_neighbours(qtbot, window, ui_env):
    w = window
    w._test_root = ui_env["tmp"] / "data"
    result = fake_result(w._test_root)
    dialog = _open_with(qtbot, w, result)
    assert [dialog.tabs.tabText(i) for i in range(3)] == ["&Label issues (2)", "Duplicates && leaks (2)",
                                                          "&Outliers (1)"]
    assert [r.issue.path for r in dialog.labels_tab.rows] == [i.path for i in result.label_issues]
    assert [r.pair.kind for r in dialog.pairs_tab.rows] == ["duplicate", "leak"]
    assert "2 possible label error(s), 1 duplicate pair(s), 1 leak(s) between sets, 1 outlier(s)" in \
        dialog.status.text() and "19 training images" in dialog.status.text()
    assert "⚠ Try class weights." in dialog.imbalance.text()  # the engine's advice
    assert "Class 'blue' has only 3 images." in dialog.status.text()  # the check's warnings, with its result
    light = theme.status_colors()["warn"]
    assert light in dialog.imbalance.text()
    w.set_theme("dark")
    wait_for(qtbot, lambda: theme.status_colors()["warn"] != light
             and theme.status_colors()["warn"] in dialog.imbalance.text(), 10)
    assert not dialog.weights_btn.isHidden() and dialog.weights_btn.text() == "Weight the classes"
    w.project.set("data.weighted_sampler", True)  # the classes drawn evenly: no fix offered
    assert dialog.weights_btn.isHidden()
    w.project.set("data.weighted_sampler", False)
    assert not dialog.weights_btn.isHidden()
    dialog.weights_btn.click()  # the one-click fix
    assert w.project.cfg.train.class_weights == "balanced" and dialog.weights_btn.isHidden()
    row = dialog.labels_tab.rows[0]
    assert "in <b>blue</b>, looks like <b>red</b> (score 0.95)" in row.text.text()
    assert row.issue.reason in row.text.text()
    wait_for(qtbot, lambda: not row.images[row.issue.path].pixmap().isNull()
             and not row.near_suggested.pixmap().isNull(), 30)
    assert row.near_given.property("paths") == result.neighbour_paths["blue"][:3]
    assert row.near_suggested.property("paths") == result.neighbour_paths["red"][:3]
    assert row.near_suggested.pixmap().width() > 2 * check_data.SMALL  # three thumbnails side by side
    assert row.move_btn.text() == "Move to red"
    pair = dialog.pairs_tab.rows[1]
    wait_for(qtbot, lambda: all(not label.pixmap().isNull() for label in pair.images.values()), 30)
    assert "Leak between sets" in pair.text.text() and "two classes" in pair.text.text()
    assert w.project.cfg.data.relabel == {} and w.project.cfg.data.exclude_files == ()  # nothing decided yet


def test_move_undo_exclude_and_keep_change_the_project(qtbot, window, ui_env):
    w = window
    w._test_root = ui_env["tmp"] / "data"
    result = fake_result(w._test_root)
    dialog = _open_with(qtbot, w, result)
    w.project.dirty = False
    suspect = _row(dialog.labels_tab, SuspectRow, result.label_issues[0].path)
    path = suspect.issue.path
    suspect.move_btn.click()
    assert w.project.cfg.data.relabel == {path: "red"} and w.project.dirty
    assert "Moved to red" in suspect.decision.text() and not suspect.move_btn.isEnabled()
    assert dialog.undo_btn.isEnabled() and "move 000.png to red" in dialog.undo_btn.toolTip()
    dialog.undo_btn.click()
    assert w.project.cfg.data.relabel == {} and suspect.decision.text() == "" and suspect.move_btn.isEnabled()
    others = {a.text(): a for a in suspect.other_btn.menu().actions()}
    assert set(others) == {"green"}  # the classes other than the given and the suggested one
    others["green"].trigger()
    assert w.project.cfg.data.relabel == {path: "green"} and "Moved to green" in suspect.decision.text()
    assert suspect.move_btn.isEnabled()  # Move to red still possible
    dialog.undo()
    pair = _row(dialog.pairs_tab, PairRow, result.duplicates[0].b)
    pair.exclude_btns[result.duplicates[0].b].click()
    assert w.project.cfg.data.exclude_files == (result.duplicates[0].b,)
    assert "Excluded from training" in pair.decision.text()
    assert not pair.exclude_btns[result.duplicates[0].b].isEnabled()
    assert pair.exclude_btns[result.duplicates[0].a].isEnabled()
    dialog.activateWindow()
    dialog.setFocus()
    qtbot.keyClick(dialog, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # Ctrl+Z undoes it
    assert w.project.cfg.data.exclude_files == () and pair.decision.text() == ""
    before = w.project.cfg
    outlier = dialog.outliers_tab.rows[0]
    outlier.keep_btn.click()
    assert w.project.cfg == before and "Kept" in outlier.decision.text() and not outlier.keep_btn.isEnabled()
    outlier.exclude_btn.click()
    assert w.project.cfg.data.exclude_files == (result.outliers[0].path,)


def test_kept_findings_are_not_listed_at_the_next_check(qtbot, window, ui_env):
    w = window
    w._test_root = ui_env["tmp"] / "data"
    result = fake_result(w._test_root)
    dialog = _open_with(qtbot, w, result)
    dialog.labels_tab.rows[1].keep_btn.click()
    again = fake_result(ui_env["tmp"] / "data")
    check_data_job, check_data.audit_job = check_data.audit_job, lambda task, cfg: again
    try:
        dialog.run_btn.click()
        wait_for(qtbot, lambda: w.data.check_btn.view.result is again, 30)
    finally:
        check_data.audit_job = check_data_job
    assert [r.issue.path for r in dialog.labels_tab.rows] == [result.label_issues[0].path]
    assert dialog.tabs.tabText(0) == "&Label issues (1)" and "1 finding(s) kept earlier" in dialog.status.text()


def test_a_long_list_shows_the_most_suspicious_first_and_says_how_many_more(qtbot, window, ui_env):
    from PySide6.QtWidgets import QLabel

    w = window
    w._test_root = ui_env["tmp"] / "data"
    result = fake_result(w._test_root)
    n = check_data.MAX_ROWS + 5
    result.outliers = [Out(str(w._test_root / "red" / f"missing-{k}.png"), 1 - k / 100) for k in range(n)]
    dialog = _open_with(qtbot, w, result)
    assert dialog.tabs.tabText(2) == f"&Outliers ({n})"
    rows = dialog.outliers_tab.rows
    assert [r.outlier.path for r in rows] == [o.path for o in result.outliers[:check_data.MAX_ROWS]]
    texts = [label.text() for label in dialog.outliers_tab.widget().findChildren(QLabel)]
    assert f"Showing the {check_data.MAX_ROWS} most suspicious of {n}; decide on these and check again for the rest." \
        in texts


def test_cancel_stops_the_check(qtbot, window, ui_env):
    w = window
    make_class_folders(ui_env["tmp"] / "data", {"red": 3, "green": 3}, size=16)
    w.project.set("data.folders", [str(ui_env["tmp"] / "data")])
    started, seen = threading.Event(), []

    def job(task, cfg):  # stands in for the audit: works until it is cancelled
        started.set()
        n = 0
        while not task.cancelled:
            n += 1
            task.report(Progress("audit_folds", n % 5, 5, f"Fold {n % 5} of 5"))
            threading.Event().wait(0.005)
        seen.append(n)
        raise Cancelled("stopped")

    check_data_job, check_data.audit_job = check_data.audit_job, job
    try:
        dialog = w.data.check_btn.open_view()
        assert started.wait(30)
        wait_for(qtbot, lambda: dialog.progress.format().startswith("Fold"), 30)
        assert dialog.progress.maximum() == 5 and 0 <= dialog.progress.value() <= 5
        dialog.show_progress(Progress("features", 40, 160, "Features of training images"))
        assert dialog.progress.format() == "Features of training images: 40 of 160"
        assert (dialog.progress.value(), dialog.progress.maximum()) == (40, 160)
        assert dialog.cancel_btn.isVisible() and not dialog.run_btn.isEnabled() and dialog.running()
        task = w.tasks._current["audit"]
        dialog.cancel_btn.click()
        assert task.finished.wait(30) and seen  # the job saw the cancel and stopped
    finally:
        check_data.audit_job = check_data_job
    assert "cancelled" in dialog.status.text() and dialog.run_btn.isEnabled() and not dialog.cancel_btn.isVisible()
    assert w.data.check_btn.view.result is None and not dialog.running()


def _planted(root):
    """Three colour classes of generated images and one red image copied into blue's folder."""
    make_class_folders(root, {"red": 14, "green": 14, "blue": 14}, size=32)
    planted = root / "blue" / "planted.png"
    shutil.copy(root / "red" / "005.png", planted)
    return planted


def test_the_engines_result_from_features_is_shown_and_a_pair_image_excluded(qtbot, window, ui_env):
    """engine.audit.audit_features on each image's mean colour: the real AuditResult in the view."""
    import numpy as np
    from PIL import Image

    from transfer_gui.engine.audit import audit_features

    w = window
    w._test_root = ui_env["tmp"] / "data"
    planted = _planted(w._test_root)
    classes = ["blue", "green", "red"]
    paths = sorted(str(p) for p in w._test_root.glob("*/*.png"))
    feats = np.array([np.asarray(Image.open(p), dtype=np.float32).mean(axis=(0, 1)) for p in paths])
    labels = [classes.index(p.split("/")[-2]) for p in paths]
    digests = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]  # the copy: the same bytes
    result = audit_features(feats, labels, ["train"] * len(paths), paths, classes, folds=3, digests=digests)
    dialog = _open_with(qtbot, w, result)
    assert str(planted) in [r.issue.path for r in dialog.labels_tab.rows]
    row = _row(dialog.labels_tab, SuspectRow, str(planted))
    assert (row.issue.given, row.issue.suggested) == ("blue", "red")
    wait_for(qtbot, lambda: row.near_suggested.property("paths"), 30)
    assert [p.split("/")[-2] for p in row.near_suggested.property("paths")] == ["red"] * 3
    assert [p.split("/")[-2] for p in row.near_given.property("paths")] == ["blue"] * 3
    pair = next(r for r in dialog.pairs_tab.rows if str(planted) in r.paths())
    other = next(p for p in pair.paths() if p != str(planted))
    assert other.endswith("red/005.png")
    pair.exclude_btns[str(planted)].click()
    assert w.project.cfg.data.exclude_files == (str(planted),)
    assert "Excluded from training" in row.decision.text()  # the same image's suspect row follows
    c = w.data.check_btn.view.counts()
    assert (c.label_issues, c.duplicates + c.leaks, c.outliers) == (len(result.label_issues), len(result.duplicates),
                                                                    len(result.outliers))


def test_the_real_check_finds_a_planted_image_and_move_and_undo_follow(qtbot, window, ui_env):
    w = window
    root = ui_env["tmp"] / "data"
    planted = _planted(root)
    w.project.update({"data.folders": [str(root)], "data.image_size": 32, "data.val_fraction": 0.2})
    wait_for(qtbot, lambda: w.project.scan is not None, 60)
    dialog = w.data.check_btn.open_view()
    view = w.data.check_btn.view
    wait_for(qtbot, lambda: view.result is not None or not dialog.running(), 240)
    assert view.result is not None, dialog.status.text()
    r = view.result
    assert str(planted) in [i.path for i in r.label_issues]
    c = view.counts()
    assert (c.label_issues, c.duplicates + c.leaks, c.outliers) == (len(r.label_issues), len(r.duplicates),
                                                                    len(r.outliers))
    assert dialog.tabs.tabText(0) == f"&Label issues ({len(r.label_issues)})"
    assert sum(r.class_counts.values()) > 0
    row = _row(dialog.labels_tab, SuspectRow, str(planted))
    assert row.issue.given == "blue" and row.issue.suggested == "red"
    wait_for(qtbot, lambda: row.near_suggested.property("paths"), 30)
    assert all("/red/" in p for p in row.near_suggested.property("paths"))
    row.move_btn.click()
    assert w.project.cfg.data.relabel == {str(planted): "red"}
    dialog.undo()
    assert w.project.cfg.data.relabel == {}
    counted = sum(r.class_counts.values())
    row.exclude_btn.click()
    assert w.project.cfg.data.exclude_files == (str(planted),) and "Excluded" in row.decision.text()
    dialog.run_btn.click()  # the next check (like the next run) leaves the excluded image out
    wait_for(qtbot, lambda: view.result is not r and not dialog.running(), 240)
    again = view.result
    assert again is not None, dialog.status.text()
    seen = {i.path for i in again.label_issues} | {p for d in again.duplicates for p in (d.a, d.b)}
    assert str(planted) not in seen and "The images or the model changed" not in dialog.status.text()
    assert sum(again.class_counts.values()) in (counted, counted - 1)  # one fewer if it was a training image
    assert again.class_counts["blue"] <= r.class_counts["blue"]


def test_cancel_stops_the_real_check(qtbot, window, ui_env):
    w = window
    make_class_folders(ui_env["tmp"] / "data", {"red": 10, "green": 10}, size=32)
    w.project.update({"data.folders": [str(ui_env["tmp"] / "data")], "data.image_size": 48})
    wait_for(qtbot, lambda: w.project.scan is not None, 60)
    dialog = w.data.check_btn.open_view()
    task = w.tasks._current["audit"]
    failures: list = []
    task.signals.failed.connect(failures.append)
    dialog.cancel_btn.click()
    assert task.cancelled and task.finished.wait(120)
    wait_for(qtbot, lambda: failures, 30)
    assert isinstance(failures[0], Cancelled)  # the audit stopped on the cancel instead of finishing
    assert "cancelled" in dialog.status.text() and dialog.run_btn.isEnabled()
    assert w.data.check_btn.view.result is None and not w.tasks.running("audit")


def test_while_the_check_runs_it_says_what_it_does_with_the_time_left_in_a_bar_that_shows_it_all(qtbot, window,
                                                                                                    ui_env):
    """Issue #24: the status line said "Not checked yet" during the check and the bar's text was cut."""
    w = window
    make_class_folders(ui_env["tmp"] / "data", {"red": 3, "green": 3}, size=16)
    w.project.set("data.folders", [str(ui_env["tmp"] / "data")])
    started = threading.Event()

    def job(task, cfg):  # stands in for the audit: one phase, then works until it is cancelled
        task.report(PhaseChanged("features", "Features of every image"), force=True)
        started.set()
        while not task.cancelled:
            threading.Event().wait(0.01)
        raise Cancelled("stopped")

    check_data_job, check_data.audit_job = check_data.audit_job, job
    try:
        dialog = w.data.check_btn.open_view()
        assert started.wait(30)
        wait_for(qtbot, lambda: "Features of every image" in dialog.status.text(), 30)
        assert "Not checked yet" not in dialog.status.text() and "Checking" in dialog.status.text()
        now = [100.0]
        dialog.eta = check_data.PhaseEta(clock=lambda: now[0])
        for done, t in ((100, 100.0), (200, 102.0)):  # 100 images in 2 s: 800 left take 16 s
            now[0] = t
            dialog.show_progress(Progress("features", done, 1000, "Features of training images"))
        assert dialog.progress.format() == "Features of training images: 200 of 1,000, about 0:16 left"
        assert "Features of training images" in dialog.status.text()
        qtbot.waitUntil(lambda: dialog.progress.width() > 0)
        shown = dialog.progress.text()
        assert shown.startswith("Features of training images")
        assert dialog.progress.width() >= dialog.progress.fontMetrics().horizontalAdvance(shown) + 20
        dialog.show_progress(Progress("audit_folds", 1, 5, "Fold 1 of 5"))  # a new phase: no estimate yet
        assert dialog.progress.format() == "Fold 1 of 5"
        task = w.tasks._current["audit"]
        dialog.cancel_btn.click()
        assert task.finished.wait(30)
    finally:
        check_data.audit_job = check_data_job
    assert "cancelled" in dialog.status.text()


def test_phase_eta_uses_the_phase_own_rate():
    now = [0.0]
    eta = check_data.PhaseEta(clock=lambda: now[0], settle=1.0)
    assert eta.seconds_left("features", 0, 100) is None  # the phase starts
    now[0] = 0.5
    assert eta.seconds_left("features", 10, 100) is None  # too soon to say
    now[0] = 2.0
    assert eta.seconds_left("features", 20, 100) == 8.0  # 20 images in 2 s, 80 left
    now[0] = 3.0
    assert eta.seconds_left("search", 1, 4) is None  # another phase starts its own clock
    now[0] = 5.0
    assert eta.seconds_left("search", 3, 4) == 1.0
    assert eta.seconds_left("search", 3, 4) == 1.0 and eta.seconds_left("search", 0, 4) is None  # restarted
    now[0] = 10.0
    eta.mark()  # a phase is announced; its first count comes 4 s later with 16 of 96 done
    now[0] = 14.0
    assert eta.seconds_left("features", 16, 96) == 20.0  # 16 in 4 s: 80 left take 20 s
    now[0] = 15.0
    assert eta.seconds_left("features", 20, 96) == pytest.approx(76 * 5 / 20)
