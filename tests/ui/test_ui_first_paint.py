"""What the window does on start waits for its first picture: opening the last project (a folder
scan, its runs) runs after the first paint, never before it."""

from __future__ import annotations

from tests.ui.helpers import close_window


def test_work_queued_before_the_window_shows_runs_after_its_first_paint(qtbot, ui_env):
    from transfer_gui.ui.main_window import MainWindow

    w = MainWindow(ui_env["settings"])
    seen = []
    w.after_first_paint(lambda: seen.append(w._first_paint.painted), latest_ms=60_000)
    assert seen == []  # not run while the window has not painted
    w.resize(1280, 800)
    w.show()
    qtbot.waitUntil(lambda: bool(seen), timeout=20_000)
    assert seen == [True]
    # queued after the paint: runs once, from the event loop
    later = []
    w.after_first_paint(lambda: later.append(1), latest_ms=60_000)
    assert later == []
    qtbot.waitUntil(lambda: later == [1], timeout=5_000)
    close_window(w)


def test_a_window_that_never_paints_still_runs_it_after_the_limit(qtbot, ui_env):
    from transfer_gui.ui.main_window import MainWindow

    w = MainWindow(ui_env["settings"])  # never shown: no paint will come
    ran = []
    w.after_first_paint(lambda: ran.append(w._first_paint.painted), latest_ms=50)
    qtbot.waitUntil(lambda: bool(ran), timeout=5_000)
    assert ran == [False]
    w.resize(640, 480)
    w.show()  # now it paints: the queued call must not run a second time
    qtbot.waitUntil(lambda: w._first_paint.painted, timeout=20_000)
    marker = []
    w.after_first_paint(lambda: marker.append(1), latest_ms=60_000)  # queued behind any pending call
    qtbot.waitUntil(lambda: marker == [1], timeout=5_000)
    assert ran == [False]
    close_window(w)
