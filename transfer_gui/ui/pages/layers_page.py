"""Step 3, Layers: the model's layer groups with a frozen tick and a learning rate each,
freezing helpers, and the learning-rate panel with its live schedule preview.

The groups come from building the architecture on a worker thread (about a second), cached
per model: the grouping does not depend on the weights, so the architecture is built without
any (no download needed just to look)."""

from __future__ import annotations


from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QHBoxLayout, QHeaderView, QLabel, QPushButton,
                               QSlider, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from transfer_gui.errors import Cancelled, UserError
from transfer_gui.state.project import GroupInfo, freeze_changes, frozen_set
from transfer_gui.ui.binding import bind, signals_blocked
from transfer_gui.ui.context import Context
from transfer_gui.ui.theme import group_color, readable, status_colors
from transfer_gui.ui.widgets.lr_panel import LRPanel
from transfer_gui.ui.widgets.probe_view import ProbeView, percent
from transfer_gui.ui.widgets.sci_spin import SciSpinBox

FROZEN, NAME, PARAMS, LR, PROBE = range(5)
PROBE_TIP = ("Depth probe: validation accuracy of a linear classifier on the frozen activations entering this "
             "group, i.e. what training from this group on starts from. Press “Probe depths” below.")
PROBE_KEYS = ("model.", "data.")  # a change of these makes a probe's figures stale
FREEZE_TIP = ("Frozen groups keep their pretrained weights: they are not trained, which is faster and "
              "needs fewer images. With everything below the head frozen (and no augmentation) the "
              "backbone's features are computed once and only the head trains. Unfreeze more groups "
              "when you have more images or your images look unlike ImageNet photos.")
_CACHE: dict[str, GroupInfo] = {}


def groups_job(task, name: str) -> GroupInfo:
    if name in _CACHE:
        return _CACHE[name]
    from transfer_gui.engine import catalog, surgery

    built = catalog.build_model(name, "none")
    groups = surgery.split_groups(built.model, built.head_path)
    outputs = max(1, surgery.num_outputs(built.model, built.head_path))
    info = GroupInfo(name, [g.name for g in groups], [g.num_params for g in groups],
                     groups[-1].num_params / outputs)
    _CACHE[name] = info
    return info


def probe_job(task, cfg):
    """The depth probe on a task thread: progress as engine events, stopped by the task's cancel."""
    from transfer_gui.engine.probe import probe

    return probe(cfg, on_event=task.report, cancel=lambda: task.cancelled)


def compute_lrs(names: list[str], layers_cfg) -> dict[str, float]:
    """Each group's learning rate: the engine's rule, the one its optimizer is built with."""
    from transfer_gui.engine.rules import group_rates

    return group_rates(names, layers_cfg)


SPEED = {"features": "Fast, even on a CPU.", "prefix": "Each epoch then costs only the groups that train.",
         "none": "Slower on a CPU."}


def speed_note(cfg, names: list[str], frozen: set[str]) -> str:
    """How fast an epoch will be, in the engine's words: the cache plan the run will use (a plan
    for the frozen input side is confirmed by the run, which measures whether it fits)."""
    from transfer_gui.engine.rules import plan_cache_for

    plan = plan_cache_for(names, cfg, frozen=frozen)
    return f"{plan.reason[0].upper()}{plan.reason[1:]}. {SPEED[plan.kind]}"


def group_colors(names: list[str]) -> dict[str, str]:
    """Each layer group's colour, readable on the current background: the one source of the
    table's swatches and of every picture that names the groups (Help's guide), so a group
    looks the same wherever it is shown."""
    return {name: readable(group_color(r, len(names))) for r, name in enumerate(names)}


def _swatch(color: str) -> QIcon:
    pm = QPixmap(12, 12)
    pm.fill(QColor(color))
    return QIcon(pm)


class LayersPage(QWidget):
    def __init__(self, ctx: Context):
        super().__init__()
        self.ctx = ctx
        self.project = ctx.project
        self.spins: list[SciSpinBox] = []
        self.probe_result = None  # engine.probe.ProbeResult of the current model and data
        self._build()
        p = self.project
        p.config_changed.connect(self._config_changed)
        p.groups_changed.connect(self._groups_changed)
        p.scan_changed.connect(self._refresh)
        self._loaded_for: str | None = None
        self._config_changed({""})

    def _build(self) -> None:
        left = QVBoxLayout()
        left.addWidget(self._build_table(), 1)
        self.loading = QLabel()
        self.loading.setWordWrap(True)
        left.addWidget(self.loading)
        left.addLayout(self._build_buttons())
        left.addLayout(self._build_slider())
        self.train_bn = QCheckBox("Update BatchNorm statistics of frozen groups")
        self.train_bn.setToolTip("Normally frozen groups keep their normalisation statistics too "
                                 "(layers.train_bn). Tick to let them adapt to your images.")
        left.addWidget(self.train_bn)
        self.totals = QLabel()
        self.totals.setWordWrap(True)
        self.totals.setToolTip("Parameters that will be trained, of all parameters in the model.")
        left.addWidget(self.totals)
        self.probe_view = ProbeView()
        self.probe_view.start_requested.connect(self.start_probe)
        self.probe_view.cancel_requested.connect(self.cancel_probe)
        self.probe_view.use_requested.connect(self.use_probe)
        left.addWidget(self.probe_view)
        self.lr_panel = LRPanel(self.project)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(left, 1)
        lay.addWidget(self.lr_panel, 1)
        bind(self.train_bn, self.project, "layers.train_bn")

    def _build_table(self) -> QTableWidget:
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Frozen", "Layer group", "Parameters", "Learning rate", "Probe"])
        self.table.setToolTip(FREEZE_TIP)
        self.table.horizontalHeaderItem(FROZEN).setToolTip("Ticked = frozen: the group keeps its pretrained "
                                                           "weights (layers.frozen / layers.train_from).")
        self.table.horizontalHeaderItem(LR).setToolTip("Each trainable group's own learning rate. Type a value "
                                                       "to override one group (layers.lr).")
        self.table.horizontalHeaderItem(PROBE).setToolTip(PROBE_TIP)
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(FROZEN, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(NAME, QHeaderView.ResizeMode.Stretch)
        hh.setSectionResizeMode(PARAMS, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(LR, QHeaderView.ResizeMode.ResizeToContents)
        hh.setSectionResizeMode(PROBE, QHeaderView.ResizeMode.ResizeToContents)
        self.table.itemChanged.connect(self._item_changed)
        return self.table

    def _build_buttons(self) -> QHBoxLayout:
        self.head_only = QPushButton("Freeze all but head")
        self.head_only.setToolTip("Train only the new classification head (fast, good with few images).")
        self.head_only.clicked.connect(lambda: self.project.update({"layers.train_from": "head", "layers.frozen": []}))
        self.unfreeze = QPushButton("Unfreeze all")
        self.unfreeze.setToolTip("Fine-tune every layer (slower; best with many images). Pair it with "
                                 "discriminative rates and warmup.")
        self.unfreeze.clicked.connect(lambda: self.project.update({"layers.train_from": "", "layers.frozen": []}))
        buttons = QHBoxLayout()
        buttons.addWidget(self.head_only)
        buttons.addWidget(self.unfreeze)
        buttons.addStretch(1)
        return buttons

    def _build_slider(self) -> QHBoxLayout:
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("Train from this group on: every group before it is frozen (layers.train_from). "
                               "Slide left to fine-tune more of the network.")
        self.slider.setPageStep(1)
        self.slider.valueChanged.connect(self._slider_moved)
        self.slider_label = QLabel()
        self.slider_label.setMinimumWidth(170)
        slide = QHBoxLayout()
        lab = QLabel("Train from")
        lab.setToolTip(self.slider.toolTip())
        slide.addWidget(lab)
        slide.addWidget(self.slider, 1)
        slide.addWidget(self.slider_label)
        return slide

    # ------------------------------------------------------------------ groups
    def _load_groups(self) -> None:
        name = self.project.cfg.model.name
        if self._loaded_for == name:
            return
        self._loaded_for = name
        if name in _CACHE:
            self.project.set_groups(_CACHE[name])
            return
        self.loading.setText(f"Reading the layer groups of {name}…")
        self.ctx.tasks.start("groups", groups_job, name, heavy=True, on_done=self.project.set_groups,
                             on_error=lambda e: self.project.set_groups(
                                 None, f"Cannot read the layers of {name}: {e}"))

    def _groups_changed(self) -> None:
        info = self._info()
        if info is not None:
            self._sanitise(info)
        self._rebuild_table()
        self._refresh()

    def _info(self) -> GroupInfo | None:
        g = self.project.groups
        return g if g is not None and g.model == self.project.cfg.model.name else None

    def _sanitise(self, info: GroupInfo) -> None:
        """Drop group names the chosen model does not have (left over from another model)."""
        L, names = self.project.cfg.layers, set(info.names)
        changes = {}
        if any(n not in names for n in L.frozen):
            changes["layers.frozen"] = [n for n in L.frozen if n in names]
        if L.train_from and L.train_from not in names:
            changes["layers.train_from"] = "head"
        if any(n not in names for n in L.lr):
            changes["layers.lr"] = {k: v for k, v in L.lr.items() if k in names}
        if any(n not in names for n in L.unfreeze_at):
            changes["layers.unfreeze_at"] = {k: v for k, v in L.unfreeze_at.items() if k in names}
        if changes:
            self.project.update(changes)
            self.ctx.status("Layer settings that named groups of the previous model were reset.")

    def _rebuild_table(self) -> None:
        info = self._info()
        with signals_blocked(self.table, self.slider):
            self.table.setRowCount(0)
            self.spins = []
            if info is None:
                return
            n = len(info.names)
            colors = group_colors(info.names)
            self.table.setRowCount(n)
            for r, name in enumerate(info.names):
                box = QTableWidgetItem()
                box.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
                box.setToolTip(FREEZE_TIP)
                self.table.setItem(r, FROZEN, box)
                label = QTableWidgetItem(_swatch(colors[name]), name + ("  (new classifier)" if name == "head" else ""))
                label.setToolTip(f"Layer group “{name}”, number {r + 1} of {n} from the input. The colour is "
                                 f"its curve in the learning-rate plots.")
                self.table.setItem(r, NAME, label)
                params = QTableWidgetItem()
                params.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                self.table.setItem(r, PARAMS, params)
                acc = QTableWidgetItem()
                acc.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                acc.setToolTip(PROBE_TIP)
                self.table.setItem(r, PROBE, acc)
                spin = SciSpinBox(0.0, 10.0, allow_zero=True)
                spin.setAccessibleName(f"Learning rate of {name}")
                spin.setFrame(False)
                spin.setToolTip(f"Learning rate of “{name}”. " + ("This is the head rate (layers.head_lr)."
                                if name == "head" else "Typing a value overrides the discriminative rate "
                                "for this group only (layers.lr)."))
                spin.valueChanged.connect(lambda v, g=name: self._lr_edited(g, float(v)))
                self.table.setCellWidget(r, LR, spin)
                self.spins.append(spin)
            self.slider.setRange(0, n - 1)

    # ------------------------------------------------------------------ edits
    def _item_changed(self, item: QTableWidgetItem) -> None:
        info = self._info()
        if info is None or item.column() != FROZEN:
            return
        frozen = {info.names[r] for r in range(self.table.rowCount())
                  if self.table.item(r, FROZEN).checkState() == Qt.CheckState.Checked}
        self.project.update(freeze_changes(info.names, frozen))

    def set_frozen(self, frozen: set[str]) -> None:
        info = self._info()
        if info is not None:
            self.project.update(freeze_changes(info.names, set(frozen)))

    def _slider_moved(self, value: int) -> None:
        info = self._info()
        if info is None:
            return
        self.project.update(freeze_changes(info.names, set(info.names[:value])))

    def _lr_edited(self, group: str, value: float) -> None:
        info = self._info()
        if info is None:
            return
        L = self.project.cfg.layers
        if group == "head":
            self.project.set("layers.head_lr", max(value, 1e-12))
            return
        explicit = dict(L.lr)
        explicit.pop(group, None)
        default = compute_lrs(info.names, L.__class__(head_lr=L.head_lr, lr_decay=L.lr_decay))[group]
        if abs(value - default) > 1e-6 * max(default, 1e-12):
            explicit[group] = value
        self.project.set("layers.lr", explicit)

    # ------------------------------------------------------------------ showing
    def on_shown(self) -> None:
        self._load_groups()

    def _config_changed(self, keys: set) -> None:
        if "" in keys or "model.name" in keys:
            if self._loaded_for is not None or self.isVisible():
                self._load_groups()
        if self.probe_result is not None and any(k == "" or k.startswith(PROBE_KEYS) for k in keys):
            self.probe_result = None  # another model or other images: the figures no longer apply
            self.probe_view.clear()
        self._refresh()

    def _refresh(self) -> None:
        p = self.project
        cfg = p.cfg
        info = self._info()
        names = info.names if info else ["head"]
        frozen = frozen_set(names, cfg.layers) if info else set()
        lrs = compute_lrs(names, cfg.layers) if info else {"head": cfg.layers.head_lr}
        for w in (self.head_only, self.unfreeze, self.slider):
            w.setEnabled(info is not None)
        self.probe_view.set_available(info is not None and bool(cfg.data.folders),
                                      "" if cfg.data.folders else "Add image folders on the Data step first.")
        if info is None:
            if p.groups_error and not self.ctx.tasks.running("groups"):
                self.loading.setText(f"<span style='color:{status_colors()['error']}'>{p.groups_error}</span>")
            elif self._loaded_for is None:
                self.loading.setText(f"The layer groups of {cfg.model.name} are read when this step opens.")
            self.totals.setText("")
        else:
            self.loading.setText("")
            counts = info.counts(p.num_classes() or None)
            with signals_blocked(self.table, self.slider, *self.spins):
                self._show_groups(info, counts, frozen, lrs)
            self._show_totals(info, counts, frozen)
        self.lr_panel.refresh(names, lrs, frozen)

    def _show_groups(self, info: GroupInfo, counts: list[int], frozen: set[str], lrs: dict[str, float]) -> None:
        """Ticks, parameter counts and rates of the table, and the slider (signals blocked)."""
        layers = self.project.cfg.layers
        for r, name in enumerate(info.names):
            self.table.item(r, FROZEN).setCheckState(Qt.CheckState.Checked if name in frozen
                                                     else Qt.CheckState.Unchecked)
            self.table.item(r, PARAMS).setText(f"{counts[r]:,}")
            spin = self.spins[r]
            spin.setValue(lrs[name])
            spin.setEnabled(name not in frozen)
            f = spin.font()
            f.setBold(name in layers.lr)
            spin.setFont(f)
        self._show_probe(info)
        first = next((i for i, n in enumerate(info.names) if n not in frozen), len(info.names) - 1)
        self.slider.setValue(first)
        self.slider_label.setText(f"{info.names[first]} ({len(info.names) - first} of {len(info.names)} "
                                  f"groups train)")

    def _show_totals(self, info: GroupInfo, counts: list[int], frozen: set[str]) -> None:
        total = sum(counts)
        trainable = sum(c for n, c in zip(info.names, counts) if n not in frozen)
        self.totals.setText(f"<b>Trainable: {trainable:,} of {total:,} parameters "
                            f"({trainable / max(1, total):.1%})</b>. {speed_note(self.project.cfg, info.names, frozen)}")

    # ------------------------------------------------------------------ depth probe
    def _show_probe(self, info: GroupInfo) -> None:
        """The probe's accuracy in the row of the group each depth feeds; the suggestion in bold."""
        r = self.probe_result
        accs = r.accuracy() if r is not None and r.groups == info.names else {}
        for row, name in enumerate(info.names):
            item = self.table.item(row, PROBE)
            item.setText(percent(accs[name]) if name in accs else ("—" if accs else ""))
            f = item.font()
            f.setBold(bool(accs) and name == r.suggestion)
            item.setFont(f)

    def start_probe(self) -> None:
        cfg = self.project.cfg
        if not cfg.data.folders or self._info() is None:
            self.probe_view.show_message("Add image folders on the Data step and wait for the layer groups first.")
            return
        self.probe_result = None
        self.probe_view.set_running(True)
        self._refresh()
        self.ctx.tasks.start("probe", probe_job, cfg, heavy=True, on_progress=self.probe_view.show_progress,
                             on_done=self._probe_done, on_error=self._probe_failed)

    def cancel_probe(self) -> None:
        self.ctx.tasks.cancel("probe")
        self.probe_view.show_message("Probe cancelled.", "muted")

    def _probe_done(self, result) -> None:
        if result.model != self.project.cfg.model.name:
            self.probe_view.show_message("The model changed while probing; probe again.")
            return
        self.probe_result = result
        self.probe_view.show_result(result)
        self._refresh()

    def _probe_failed(self, exc: BaseException) -> None:
        if isinstance(exc, Cancelled):
            self.probe_view.show_message("Probe cancelled.", "muted")
        else:
            text = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
            self.probe_view.show_message(f"The probe failed: {text}", "error")

    def use_probe(self, train_from: str) -> None:
        info = self._info()
        if info is None or train_from not in info.names:
            return
        k = info.names.index(train_from)
        self.project.update(freeze_changes(info.names, set(info.names[:k])))
        self.ctx.status(f"Train from {train_from}: the probe's suggestion.")
