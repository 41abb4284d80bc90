"""A hand-edited project with several mistakes: the window names all of them at once."""

from __future__ import annotations


def test_opening_a_project_with_two_mistakes_names_both(window, ui_env, tmp_path):
    bad = tmp_path / "hand.toml"
    bad.write_text("[train]\nepochs = 0\nbatch_size = 'big'\n\n[optim]\nname = 'adam'\n")
    assert not window.open_project(bad)
    shown = ui_env["answers"]["errors"][-1]  # the text of the "Cannot open project" dialog
    assert shown.startswith(f"{bad}: 3 problems: (1) train.batch_size: expected a whole number, got 'big'")
    assert "(2) optim.name: must be one of adamw, sgd, got 'adam'" in shown
    assert "(3) train.epochs: must be >= 1, got 0" in shown
    assert window.project.path is None and window.project.cfg.train.epochs == 10  # nothing half-applied
