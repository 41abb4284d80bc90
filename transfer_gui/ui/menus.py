"""The window's actions (with their shortcuts) and menus: File, Run, View, Help. Actions are
added to the window itself too, so their shortcuts work whatever has the focus."""

from __future__ import annotations

from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMessageBox

from transfer_gui.ui import theme


def _action(w, text: str, slot, shortcut=None, tip: str = "") -> QAction:
    act = QAction(text, w)
    if shortcut is not None:
        if isinstance(shortcut, (list, tuple)):
            act.setShortcuts([QKeySequence(s) for s in shortcut])
        else:
            act.setShortcut(QKeySequence(shortcut))
    act.setToolTip(tip or text)
    act.setStatusTip(tip or text)
    act.triggered.connect(slot)
    w.addAction(act)
    return act


def build_actions(w) -> None:
    K = QKeySequence.StandardKey
    w.act_new = _action(w, "&New Project", w.new_project, K.New, "Start a new, empty project.")
    w.act_open = _action(w, "&Open Project…", w.open_project_dialog, K.Open,
                         "Open a project file (the same TOML file the command line reads).")
    w.act_save = _action(w, "&Save", w.save_project, K.Save, "Save the project to its file.")
    w.act_save_as = _action(w, "Save &As…", w.save_project_as, K.SaveAs, "Save the project to a new file.")
    w.act_open_run = _action(w, "Open &Run Folder…", w.results.open_run_dialog, "Ctrl+R",
                             "Inspect a finished run, e.g. one trained on a cluster.")
    w.act_export = _action(w, "&Export Model…", lambda: w.go_to("Export"), "Ctrl+E",
                           "Go to the Export step: the trained model as a file for someone without this app "
                           "(ONNX, TorchScript, safetensors, int8), with a deploy kit (Ctrl+E).")
    w.act_job = _action(w, "Export as &Job…", lambda: export_job(w), None,
                        "Write this project with a torchrun launcher and a SLURM script, to train on a GPU server "
                        "or cluster.")
    w.act_quit = _action(w, "&Quit", w.close, K.Quit, "Close the window.")
    w.act_back = _action(w, "Previous Step", lambda: w.step_by(-1), "Alt+Left", "Go to the previous step (Alt+Left).")
    w.act_next = _action(w, "Next Step", w.next_step, "Alt+Right",
                         "Go to the next step when it is open (Alt+Right).")
    w.act_start = _action(w, "&Start Training", w.training.start, ["Ctrl+Return", "Ctrl+Enter"],
                          "Start training with the current settings (Ctrl+Return).")
    w.act_pause = _action(w, "&Pause", w.training.toggle_pause, "Ctrl+P",
                          "Pause or resume training between batches (Ctrl+P).")
    w.act_stop = _action(w, "S&top", w.training.stop, "Ctrl+.",
                         "Stop training after the current batch; the last checkpoint is kept (Ctrl+.).")
    w.theme_group = QActionGroup(w)
    w.theme_actions = {}
    for name in theme.THEMES:
        act = QAction(f"{name.title()} theme", w, checkable=True)
        act.setToolTip(f"Use the {name} colour theme.")
        act.triggered.connect(lambda _=False, n=name: w.set_theme(n))
        w.theme_group.addAction(act)
        w.theme_actions[name] = act


def build_menus(w) -> None:
    K = QKeySequence.StandardKey
    mb = w.menuBar()
    m = mb.addMenu("&File")
    m.setToolTipsVisible(True)
    m.addAction(w.act_new)
    m.addAction(w.act_open)
    w.recent_menu = m.addMenu("Open &Recent")
    w.recent_menu.setToolTipsVisible(True)
    w.recent_menu.aboutToShow.connect(lambda: w.files.fill_recent_menu(w.recent_menu))
    m.addSeparator()
    m.addAction(w.act_save)
    m.addAction(w.act_save_as)
    m.addSeparator()
    m.addAction(w.act_open_run)
    m.addAction(w.act_export)
    m.addAction(w.act_job)
    m.addSeparator()
    m.addAction(w.act_quit)
    r = mb.addMenu("&Run")
    r.setToolTipsVisible(True)
    for act in (w.act_start, w.act_pause, w.act_stop):
        r.addAction(act)
    v = mb.addMenu("&View")
    v.addAction(w.act_back)
    v.addAction(w.act_next)
    v.addSeparator()
    for act in w.theme_actions.values():
        v.addAction(act)
    h = mb.addMenu("&Help")
    h.setToolTipsVisible(True)
    from transfer_gui.ui import help as help_pages

    w.act_guide = _action(w, "&Guide to Transfer Learning", lambda: help_pages.show_guide(w), K.HelpContents,
                          "What freezing, per-group learning rates and warmup do, with pictures of this project (F1).")
    w.act_shortcuts = _action(w, "&Keyboard Shortcuts", lambda: help_pages.show_shortcuts(w), "Ctrl+/",
                              "Every shortcut of the window (Ctrl+/).")
    w.act_locations = _action(w, "&Where Files Are Kept", lambda: help_pages.show_locations(w), None,
                              "Where runs, logs, settings and downloaded weights are kept.")
    for act in (w.act_guide, w.act_shortcuts, w.act_locations):
        h.addAction(act)
    h.addSeparator()
    h.addAction(_action(w, "&About transfer_gui", lambda: show_about(w), None, "Version and licence."))


def export_job(w) -> None:
    from transfer_gui.ui.job_dialog import JobDialog

    dlg = JobDialog(w.project.cfg, w)
    w.job_dialog = dlg  # reachable from tests
    if dlg.exec() and dlg.written:
        w.statusBar().showMessage(f"Job written to {dlg.written['config'].parent}", 8000)


def about_text() -> str:
    """Versions of everything that decides how a model trains, and the device in use."""
    import PySide6
    import timm
    import torch
    import torchvision
    from PySide6.QtCore import qVersion

    from transfer_gui import __version__
    from transfer_gui.engine.prepare import resolve_device

    device = resolve_device("auto")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type.upper()
    return (f"<b>transfer_gui {__version__}</b><p>Transfer learning of image classifiers you can click, watch "
            f"and trust. The project file is the same TOML file <code>transfer-gui train</code> reads.</p>"
            f"<p>torch {torch.__version__}<br>torchvision {torchvision.__version__}<br>timm {timm.__version__}<br>"
            f"Qt {qVersion()} (PySide6 {PySide6.__version__})<br>Device: {name}</p>"
            f"<p>Apache-2.0. Sample images: Fashion-MNIST, Zalando Research (MIT).</p>")


def show_about(w) -> None:
    QMessageBox.about(w, "About transfer_gui", about_text())
