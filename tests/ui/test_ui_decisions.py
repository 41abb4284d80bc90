"""The Data step with file decisions and class balance: the counts follow data.exclude_files and
data.relabel, the imbalance warning (more than 3x) comes with its one-click fix, and the two
balancing switches write their config keys."""

from __future__ import annotations

import re

from transfer_gui.engine import rules

from .helpers import make_class_folders, wait_for


def _totals(w) -> tuple[int, int]:
    text = re.sub(r"<[^>]+>", "", w.data.totals.text())
    m = re.search(r"([\d,]+) images: ([\d,]+) for training", text)
    return int(m.group(1).replace(",", "")), int(m.group(2).replace(",", ""))


def _warnings(w) -> str:
    return "\n".join(w.data.warnings.item(i).text() for i in range(w.data.warnings.count()))


def test_imbalance_warning_and_its_one_click_fix(qtbot, window, ui_env):
    w, p = window, window.project
    make_class_folders(ui_env["tmp"] / "data", {"red": 31, "green": 10, "blue": 12})
    w.data.add_folders([str(ui_env["tmp"] / "data")])
    wait_for(qtbot, lambda: p.scan is not None)
    box = w.data.balance
    assert not box.isHidden() and not box.warning.isHidden() and not box.fix_btn.isHidden()
    assert "'red' has 31 images, 3.1x the 10 of 'green'" in box.warning.text()
    assert not box.weights_check.isChecked() and not box.sampler_check.isChecked()
    box.fix_btn.click()
    assert p.cfg.train.class_weights == "balanced"
    assert box.weights_check.isChecked() and box.fix_btn.isHidden()
    assert "the run balances the classes" in box.warning.text()
    box.weights_check.click()
    assert p.cfg.train.class_weights == "none" and not box.fix_btn.isHidden()
    box.sampler_check.click()
    assert p.cfg.data.weighted_sampler and box.fix_btn.isHidden()
    # two images of red left out: 29 vs 10 is still above 3x; two more and the warning goes
    red = sorted(str(f) for f in (ui_env["tmp"] / "data" / "red").glob("*.png"))
    p.set("data.exclude_files", red[:4])
    assert p.class_counts()["red"] == 27 and box.warning.isHidden()


def test_the_counts_follow_the_decisions(qtbot, window, ui_env):
    w, p = window, window.project
    root = ui_env["tmp"] / "data"
    make_class_folders(root, {"red": 12, "green": 10, "blue": 10})
    w.data.add_folders([str(root)])
    wait_for(qtbot, lambda: p.scan is not None)
    assert _totals(w)[0] == 32 and w.data.balance.decisions.isHidden()
    green = sorted(str(f) for f in (root / "green").glob("*.png"))
    p.update({"data.exclude_files": [str(root / "red" / "000.png")], "data.relabel": {green[0]: "blue", green[1]: "blue"}})
    assert p.class_counts() == {"blue": 12, "green": 8, "red": 11}
    images, train = _totals(w)
    assert images == 31 and train == rules.split_sizes(p.class_counts(), p.cfg.data)[0] == 25  # 9 + 6 + 10
    assert "1 image(s) left out and 2 given another class" in w.data.balance.decisions.text()
    assert not w.data.balance.decisions.isHidden()
    p.set("data.relabel", {green[0]: "purple"})  # not a class: the window says so before a run refuses it
    assert "data.relabel" in _warnings(w) and "'purple'" in _warnings(w)
    assert p.class_counts() == {"blue": 10, "green": 10, "red": 11}
