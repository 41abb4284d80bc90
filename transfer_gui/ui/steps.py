"""The step list on the left: readiness of each step (and why not), a one-line summary, and
the wizard rule: on a first run a step opens once the steps before it are ready; after a run
has finished (or one was opened) every step is free to visit."""

from __future__ import annotations

import math
from pathlib import Path

from PySide6.QtCore import QModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QPainter, QPalette, QPen
from PySide6.QtWidgets import (QAbstractItemView, QListWidget, QListWidgetItem, QStyle,
                               QStyledItemDelegate, QStyleOptionViewItem)

from transfer_gui.state.project import Project, frozen_set
from transfer_gui.ui.theme import status_colors, text_on

STEPS = ("Data", "Model", "Layers", "Training", "Results", "Export")
HELP = {
    "Data": "Choose the image folders: one sub-folder of images per class.",
    "Model": "Choose the pretrained network to start from.",
    "Layers": "Choose which layers train, their learning rates, warmup and schedule.",
    "Training": "Choose the device and run length, then train and watch the curves.",
    "Results": "See what the model gets right and wrong, and try it on new images.",
    "Export": "Save the trained model as a file other programs can use.",
}
SUMMARY_ROLE = Qt.ItemDataRole.UserRole + 1
READY_ROLE = Qt.ItemDataRole.UserRole + 2


def readiness(project: Project, step: str) -> str:
    """"" when ``step`` is ready, else a sentence saying why not and what to do."""
    cfg = project.cfg
    if step == "Data":
        if not cfg.data.folders:
            return "Add image folders: drop them on the window, or use Add folder… or Load sample data."
        if project.scanning:
            return "Scanning the image folders…"
        if project.scan_error:
            return project.scan_error
        if project.scan is None:
            return "The folders have not been scanned yet."
        n = project.num_classes()
        if n < 2:
            return f"Training needs at least two classes; {n} {'is' if n == 1 else 'are'} selected."
        if project.val_scan_error:
            return f"Validation folder: {project.val_scan_error}"
        return ""
    if step == "Model":
        weights = cfg.model.weights
        if weights not in ("pretrained", "none") and not Path(weights).is_file():
            return f"The weights file {weights} does not exist: import another or use the pretrained weights."
        return getattr(project, "model_problem", "")
    if step == "Layers":
        if project.groups_error:
            return project.groups_error
        g = project.groups
        if g is not None and g.model == cfg.model.name:
            frozen = frozen_set(g.names, cfg.layers)
            if len(frozen) == len(g.names) and not cfg.layers.unfreeze_at:
                return "Every layer group is frozen, so nothing would train: unfreeze at least the head."
        return ""
    if step == "Training":
        for before in ("Data", "Model", "Layers"):
            why = readiness(project, before)
            if why:
                return f"{before} step: {why}"
        return ""
    if step == "Results":
        if project.record is None:
            return "No results yet: train a model, or open a run folder (File > Open Run Folder…)."
        return ""
    if step == "Export":
        # the Export page shows no words of its own for these two: this is the one message
        if project.record is None:
            return "Nothing to export yet: train a model, or open a run folder (File > Open Run Folder…)."
        if project.record.best_checkpoint is None:
            return (f"Nothing to export yet: run {project.record.run_dir.name} has no checkpoint. Train a model, "
                    f"or open a run folder that has one (File > Open Run Folder…).")
        if project.training:
            return "Training is running; export after it finishes."
        return ""
    raise KeyError(step)


def summary(project: Project, step: str) -> str:
    cfg = project.cfg
    if step == "Data":
        if project.scanning:
            return "scanning…"
        counts = project.class_counts()
        return f"{sum(counts.values()):,} images · {len(counts)} classes" if counts else "no images yet"
    if step == "Model":
        return cfg.model.name if cfg.model.weights != "none" else f"{cfg.model.name} (random init)"
    if step == "Layers":
        from transfer_gui.ui.widgets.sci_spin import fmt_sci

        lr = fmt_sci(cfg.layers.head_lr)
        if cfg.layers.train_from == "head" and not cfg.layers.frozen:
            return f"head only · lr {lr}"
        if not cfg.layers.train_from and not cfg.layers.frozen:
            return f"all layers · lr {lr}"
        return f"partly frozen · lr {lr}"
    if step == "Training":
        if project.training:
            return "paused" if project.paused else "running…"
        return f"{cfg.train.epochs} epochs · batch {cfg.train.batch_size}"
    if step == "Results":
        rec = project.record
        if rec is None:
            return "no run yet"
        accs = [h.get("val_acc") for h in rec.history if isinstance(h.get("val_acc"), (int, float))]
        best = max((a for a in accs if not math.isnan(a)), default=None)
        if best is not None:
            return f"best accuracy {best:.1%}"
        return f"{rec.run_dir.name} · no finished epoch" if not rec.history else rec.run_dir.name
    if step == "Export":
        if project.record is None:
            return "after training"
        return "ready to export" if not readiness(project, "Export") else "nothing to export"
    return ""


def shows_tick(project: Project, step: str) -> bool:
    """The tick in the step list: this step is ready and so is every step it builds on (Model and
    Layers are not "done" while there are no images to train on)."""
    i = STEPS.index(step)
    if step in ("Results", "Export"):
        return not readiness(project, step)
    g = project.groups
    if step in ("Layers", "Training") and (g is None or g.model != project.cfg.model.name):
        return False  # the layer table is still being read
    return all(not readiness(project, s) for s in STEPS[:i + 1])


def enabled(project: Project, step: str) -> bool:
    i = STEPS.index(step)
    if step in ("Results", "Export"):
        return project.has_trained or project.record is not None or project.training
    if project.has_trained:
        return True
    return all(not readiness(project, s) for s in STEPS[:i])


class _Delegate(QStyledItemDelegate):
    """Step name in bold with a number badge, and a muted one-line summary under it."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:
        h = option.fontMetrics.height()
        return QSize(150, int(h * 2.6) + 12)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        painter.save()
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawPrimitive(QStyle.PrimitiveElement.PE_PanelItemViewItem, opt, painter, opt.widget)
        pal = option.palette
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        is_enabled = bool(index.flags() & Qt.ItemFlag.ItemIsEnabled)
        text_col = pal.color(QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text)
        if not is_enabled:
            text_col = pal.color(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text)
        ready = bool(index.data(READY_ROLE))
        colors = status_colors()
        r = option.rect.adjusted(10, 6, -6, -6)
        d = min(22, r.height() - 8)
        badge = QRect(r.left(), r.top() + (r.height() - d) // 2, d, d)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        badge_col = QColor(colors["ok"] if ready else (colors["warn"] if is_enabled else colors["muted"]))
        painter.setPen(QPen(badge_col, 1.6))
        painter.setBrush(badge_col if ready else Qt.BrushStyle.NoBrush)
        painter.drawEllipse(badge)
        painter.setPen(QColor(text_on(badge_col)) if ready else badge_col)
        f = QFont(option.font)
        f.setBold(True)
        painter.setFont(f)
        painter.drawText(badge, Qt.AlignmentFlag.AlignCenter, "✓" if ready else str(index.row() + 1))
        text_rect = r.adjusted(d + 10, 0, 0, 0)
        fm_h = option.fontMetrics.height()
        painter.setPen(text_col)
        painter.drawText(QRect(text_rect.left(), text_rect.top() + 1, text_rect.width(), fm_h + 2),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, index.data())
        f.setBold(False)
        f.setPointSizeF(max(7.0, option.font.pointSizeF() * 0.9))
        painter.setFont(f)
        muted = QColor(text_col)
        muted.setAlpha(170)
        painter.setPen(muted)
        sub = painter.fontMetrics().elidedText(str(index.data(SUMMARY_ROLE) or ""), Qt.TextElideMode.ElideRight,
                                               text_rect.width())
        painter.drawText(QRect(text_rect.left(), text_rect.top() + fm_h + 4, text_rect.width(), fm_h + 2),
                         Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, sub)
        painter.restore()


class StepList(QListWidget):
    """Arrow keys move between the steps that are open; Enter is not needed."""

    step_selected = Signal(str)

    def __init__(self, project: Project, parent=None):
        super().__init__(parent)
        self.project = project
        self.setObjectName("StepList")
        self.setItemDelegate(_Delegate(self))
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setAccessibleName("Steps")
        self.setToolTip("The steps of a run. Use the arrow keys or click to move between them.")
        for name in STEPS:
            item = QListWidgetItem(name)
            self.addItem(item)
        self.currentRowChanged.connect(lambda row: row >= 0 and self.step_selected.emit(STEPS[row]))
        self.setMinimumWidth(190)
        self.setMaximumWidth(280)
        self.refresh()

    def refresh(self) -> None:
        for row, name in enumerate(STEPS):
            item = self.item(row)
            why = readiness(self.project, name)
            is_enabled = enabled(self.project, name)
            flags = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled if is_enabled else Qt.ItemFlag.NoItemFlags
            item.setFlags(flags)
            item.setData(READY_ROLE, shows_tick(self.project, name))
            item.setData(SUMMARY_ROLE, summary(self.project, name))
            tip = HELP[name] + ("\n\nReady." if not why else f"\n\nNot ready: {why}")
            if not is_enabled:
                tip += "\n\nOpens when the steps before it are ready."
            item.setToolTip(tip)
        self.viewport().update()

    def select(self, name: str) -> None:
        self.setCurrentRow(STEPS.index(name))
