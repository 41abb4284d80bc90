"""The Help menu's pages: a short guide to transfer learning as this app does it (with pictures
drawn by the app from the open project: its layer groups and the engine's own learning-rate
schedule), the keyboard shortcuts read from the window's actions, and where files are kept."""

from __future__ import annotations

import html
import os
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSettings, Qt, QUrl
from PySide6.QtGui import QColor, QFont, QImage, QKeySequence, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

from transfer_gui.engine import rules
from transfer_gui.engine import schedule as schedule_mod
from transfer_gui.ui import theme
from transfer_gui.ui.pages.layers_page import group_colors
from transfer_gui.ui.widgets.sci_spin import fmt_sci

GENERIC_GROUPS = ["stem", "block1", "block2", "block3", "block4", "head"]


def _canvas(w: int, h: int, scale: float) -> tuple[QImage, QPainter]:
    img = QImage(int(w * scale), int(h * scale), QImage.Format.Format_ARGB32_Premultiplied)
    img.setDevicePixelRatio(scale)
    img.fill(QColor(0, 0, 0, 0))
    p = QPainter(img)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    return img, p


def freezing_picture(groups: list[str], frozen: set[str], scale: float = 1.0) -> QImage:
    """The network as a row of layer groups, input to head: frozen ones grey with a lock line,
    trainable ones in their colour on the Layers step."""
    n = max(1, len(groups))
    gap, h = 8, 74
    box_w = max(52, min(92, (660 - 10) // n - gap))
    img, p = _canvas(n * (box_w + gap) + 10, h, scale)
    text = QColor(theme.status_colors()["muted"])
    colors = group_colors(groups)
    for i, name in enumerate(groups):
        r = QRectF(5 + i * (box_w + gap), 8, box_w, 44)
        on = name not in frozen
        fill = QColor(colors[name]) if on else QColor("#9a9aa0")
        fill.setAlpha(230 if on else 110)
        p.setPen(QPen(fill.darker(140), 1.4))
        p.setBrush(fill)
        p.drawRoundedRect(r, 6, 6)
        p.setPen(QColor(theme.text_on(fill)) if on else QColor("#2b2b2e"))
        f = QFont()
        f.setPointSizeF(8.5)
        p.setFont(f)
        label = p.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, int(box_w - 6))
        p.drawText(r, Qt.AlignmentFlag.AlignCenter, label)
        p.setPen(text)
        p.drawText(QRectF(r.left(), 54, box_w, 18), Qt.AlignmentFlag.AlignCenter, "trains" if on else "frozen")
        if i + 1 < n:
            p.setPen(QPen(text, 1.2))
            p.drawLine(QPointF(r.right() + 1, 30), QPointF(r.right() + gap - 1, 30))
    p.end()
    return img


@dataclass(frozen=True)
class ScheduleView:
    """What the guide's schedule picture shows: the open project's run as the engine will do it.
    ``curves``: each group that trains from the start -> (steps, rates) from the engine's
    ``schedule.curve``; ``labels``: the legend as drawn, one per curve."""
    name: str
    epochs: int
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int
    rates: dict[str, float]
    frozen: tuple[str, ...]
    colors: dict[str, str]
    curves: dict[str, tuple[list[int], list[float]]]
    labels: tuple[str, ...]


def schedule_view(cfg, groups: list[str], frozen: set[str], steps_per_epoch: int) -> ScheduleView:
    """The run of ``cfg`` over ``groups``: each group's rate by the engine's rule
    (``rules.group_rates``, what the optimizer and the Layers table use), the warmup and decay by
    ``schedule.from_config`` and ``schedule.curve``, the colours of the Layers table."""
    sched = schedule_mod.from_config(cfg.schedule, steps_per_epoch, cfg.train.epochs)
    rates = rules.group_rates(groups, cfg.layers)
    colors = group_colors(groups)
    trains = [g for g in groups if g not in frozen][::-1]  # head first, as the legend reads
    curves = {g: schedule_mod.curve(sched, rates[g], points=400) for g in trains}
    return ScheduleView(sched.name, cfg.train.epochs, steps_per_epoch, sched.total_steps, sched.warmup_steps,
                        rates, tuple(g for g in groups if g in frozen), {g: colors[g] for g in trains}, curves,
                        tuple(f"{g}: {fmt_sci(rates[g])}" for g in trains))


def schedule_picture(view: ScheduleView, scale: float = 1.0) -> QImage:
    """Each trainable group's learning rate over the run, drawn from ``view``'s curves: warmup
    from 0 to the dashed line, then the schedule; frozen groups have no curve."""
    w, pad = 520, 34
    h = max(170, 40 + 14 * len(view.labels))
    img, p = _canvas(w, h, scale)
    top = max((max(ys) for _, ys in view.curves.values()), default=0.0) or 1.0
    span = max(1, view.total_steps - 1)
    muted = QColor(theme.status_colors()["muted"])
    p.setPen(QPen(muted, 1))
    p.drawLine(QPointF(pad, h - pad), QPointF(w - 8, h - pad))
    p.drawLine(QPointF(pad, 8), QPointF(pad, h - pad))
    for i, (group, (steps, ys)) in enumerate(view.curves.items()):
        path = QPainterPath()
        for k, (step, y) in enumerate(zip(steps, ys)):
            pt = QPointF(pad + (w - 8 - pad) * step / span, (h - pad) - (h - pad - 8) * y / top)
            path.moveTo(pt) if k == 0 else path.lineTo(pt)
        p.setPen(QPen(QColor(view.colors[group]), 2.2))
        p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(path)
        p.drawText(QPointF(w - 150, 20 + 14 * i), view.labels[i])
    wx = pad + (w - 8 - pad) * min(view.warmup_steps, span) / span
    p.setPen(QPen(muted, 1, Qt.PenStyle.DashLine))
    p.drawLine(QPointF(wx, 8), QPointF(wx, h - pad))
    p.drawText(QRectF(pad, h - pad + 4, wx - pad + 60, 20), Qt.AlignmentFlag.AlignLeft,
               f"warmup ({view.warmup_steps:,} steps)")
    p.drawText(QRectF(pad, h - pad + 4, w - pad - 8, 20), Qt.AlignmentFlag.AlignRight,
               f"{view.total_steps:,} training steps →")
    p.end()
    return img


def _project_groups(project) -> tuple[list[str], set[str], bool]:
    """(groups, frozen, known): the open model's groups as the Layers step shows them, or a
    generic network (known False) while they have not been read yet."""
    from transfer_gui.state.project import frozen_set

    g = project.groups
    if g is not None and g.model == project.cfg.model.name:
        return list(g.names), frozen_set(g.names, project.cfg.layers), True
    start = project.cfg.layers.train_from
    frozen = frozen_set(GENERIC_GROUPS, project.cfg.layers) if start in ("", *GENERIC_GROUPS) else set(GENERIC_GROUPS[:-1])
    return GENERIC_GROUPS, frozen, False


def _schedule_words(project, view: ScheduleView, known: bool) -> str:
    """The sentence under "Warmup" that says which run the picture is."""
    rates = ", ".join(html.escape(t) for t in view.labels) or "no group trains"
    train, _ = project.split_counts()
    data = (f"{train:,} training images in batches of {project.cfg.train.batch_size}" if train
            else "no images scanned yet, so one step per epoch is assumed")
    generic = "" if known else (" (a typical network: the layer groups of the project's model are read when the "
                                "Layers step opens)")
    return (f"This is what the engine will do with this project{generic}: {rates}; {view.warmup_steps:,} warmup "
            f"steps of {view.total_steps:,} ({view.epochs} epochs of {view.steps_per_epoch:,} steps: {data}), "
            f"then {html.escape(view.name)}.")


def guide_html(project, view: ScheduleView | None = None) -> str:
    groups, frozen, known = _project_groups(project)
    if view is None:
        view = schedule_view(project.cfg, groups, frozen, project.steps_per_epoch())
    model = html.escape(project.cfg.model.name)
    return f"""
<h2>Transfer learning in transfer_gui</h2>
<p>A network trained on a million photos (ImageNet) has learned, in its early layers, to see edges,
textures and parts of objects. Those are useful for almost any images, including yours. So instead
of training from nothing, transfer_gui starts from such a network, <b>replaces its last layer</b>
(the <i>head</i>) with a new one for your classes, and <b>fine-tunes</b>.</p>
<h3>1. Freezing</h3>
<p>A frozen layer group keeps its weights exactly as they were, BatchNorm statistics included. On
the Layers step each row is a group, from the input (top) to the head (bottom); tick
<i>Frozen</i> to freeze it, or move <i>Train from</i> to freeze every group before one. This is the project's model, {model}, as it is set now:</p>
<p><img src="tg:freezing"></p>
<p>Freeze everything but the head and only the new last layer learns: fast, hard to overfit with a
few hundred images, and transfer_gui computes the frozen network's output once, so every epoch
after the first takes a moment. With more images, or images unlike ImageNet's (microscopy,
X-rays, factory parts), let the last groups train too.</p>
<h3>2. A learning rate per group</h3>
<p>The new head starts random and needs large steps; the pretrained groups are already good and
need small ones, smallest near the input. Set a rate per group on the Layers step, or one rate and
a <i>decay</i> (0.1: each group ten times lower than the one above it).</p>
<h3>3. Warmup</h3>
<p>In the first steps the new head's gradients are large and random. Warmup starts every rate at 0
and raises it over the first steps, so those gradients cannot wreck the pretrained features.
{_schedule_words(project, view, known)}</p>
<p><img src="tg:schedule"></p>
<h3>4. Is the model any good?</h3>
<p>Watch the validation curves on the Training step: validation loss rising while training loss
falls means over-fitting (fewer epochs, more frozen groups, augmentation, or more images). On
Results, the confusion matrix shows which classes are mixed up and the mistakes gallery shows the
images; often a few are in the wrong folder. <i>Find learning rate…</i> on the Training step
suggests a head rate for your data.</p>
<p>Everything you set is one project file that <code>transfer-gui train project.toml</code> runs
without the window, on this machine or on a cluster (File &gt; Export as Job…).</p>
"""


def shortcuts_html(window) -> str:
    rows = []
    for act in window.actions():
        keys = [k.toString(QKeySequence.SequenceFormat.NativeText) for k in act.shortcuts() if not k.isEmpty()]
        if keys:
            rows.append((act.text().replace("&", "").rstrip("…"), " or ".join(keys), act.toolTip()))
    rows += [("Move between steps", "Up / Down in the step list", "The step list on the left."),
             ("Move between controls", "Tab / Shift+Tab", "Every control can be reached and used from the keyboard."),
             ("Use a labelled control", "Alt + the underlined letter", "For example Alt+S for Load sample data, Alt+U for the run list on Results.")]
    body = "".join(f"<tr><td>{html.escape(a)}</td><td><b>{html.escape(k)}</b></td><td>{html.escape(t)}</td></tr>"
                   for a, k, t in rows)
    return (f"<h2>Keyboard shortcuts</h2><table cellspacing='0' cellpadding='5'>"
            f"<tr><th align='left'>Action</th><th align='left'>Keys</th><th align='left'>What it does</th></tr>"
            f"{body}</table>")


def locations(project, settings: QSettings | None = None) -> list[tuple[str, str]]:
    from transfer_gui.engine import runs as runs_mod
    from transfer_gui.ui import applog

    torch_home = os.environ.get("TORCH_HOME") or str(Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
                                                       / "torch")
    return [("Runs of this project", str(project.runs_dir())),
            ("Runs of untitled projects", str(runs_mod.user_runs_root())),
            ("Application log", str(applog.log_file())),
            ("A run's own log and error details", "inside its run folder: metrics.jsonl, summary.json, error.log"),
            ("Settings", (settings or QSettings()).fileName()),
            ("Downloaded pretrained weights", str(Path(torch_home) / "hub" / "checkpoints"))]


def locations_html(project, settings: QSettings | None = None) -> str:
    rows = "".join(f"<tr><td>{html.escape(a)}</td><td><code>{html.escape(b)}</code></td></tr>"
                   for a, b in locations(project, settings))
    return (f"<h2>Where files are kept</h2><table cellspacing='0' cellpadding='5'>{rows}</table>"
            f"<p>Your image folders are only read, never changed. Every file transfer_gui writes is written "
            f"whole or not at all (a temporary file, then a rename).</p>")


class HelpDialog(QDialog):
    """One page of help in a browser that can be read with the keyboard and closed with Escape."""

    def __init__(self, title: str, body: str, images: dict[str, QImage] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle(title)
        self.browser = QTextBrowser()
        self.browser.setAccessibleName(title)
        self.browser.setOpenExternalLinks(True)
        doc = self.browser.document()
        for name, img in (images or {}).items():
            doc.addResource(doc.ResourceType.ImageResource.value, QUrl(f"tg:{name}"), img)
        self.browser.setHtml(body)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        lay.addWidget(buttons)
        screen = (parent.screen() if parent is not None else None)
        avail = screen.availableGeometry() if screen is not None else None
        w, h = 720, 640
        if avail is not None:
            w, h = min(w, avail.width() - 40), min(h, avail.height() - 60)
        self.resize(w, h)


def show_guide(window) -> HelpDialog:
    """The guide with the open project's pictures; the dialog keeps the schedule it drew
    (``schedule_view``)."""
    scale = window.devicePixelRatioF()
    project = window.project
    groups, frozen, _known = _project_groups(project)
    view = schedule_view(project.cfg, groups, frozen, project.steps_per_epoch())
    images = {"freezing": freezing_picture(groups, frozen, scale), "schedule": schedule_picture(view, scale)}
    dlg = _show(window, "Guide to transfer learning", guide_html(project, view), images)
    dlg.schedule_view = view
    return dlg


def show_shortcuts(window) -> HelpDialog:
    return _show(window, "Keyboard shortcuts", shortcuts_html(window))


def show_locations(window) -> HelpDialog:
    return _show(window, "Where files are kept", locations_html(window.project, window.settings))


def _show(window, title: str, body: str, images=None) -> HelpDialog:
    dlg = HelpDialog(title, body, images, window)
    window.help_dialog = dlg  # reachable from tests; replaced by the next one
    dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
    dlg.show()
    return dlg

