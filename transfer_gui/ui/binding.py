"""Controls bound to config keys, both ways.

``bind(widget, project, "train.epochs")`` shows the config value in the control, shows it again
whenever ``project.config_changed`` names the key (or ``""``: everything), and calls
``project.set(key, value)`` when the user changes the control. The control is updated with its
signals blocked, so showing a value never writes it back; a value the project refuses is shown
back at once, because the project names the refused key in ``config_changed``.

A control that is not one plain key (a slider over group names, a value and its unit) keeps an
explicit handler, filled inside :func:`signals_blocked`.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator, Mapping, Sequence

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import QAbstractButton, QComboBox, QDoubleSpinBox, QLineEdit, QRadioButton, QSpinBox

Converter = Callable[[Any], Any]


@contextlib.contextmanager
def signals_blocked(*objects: QObject) -> Iterator[None]:
    """Change controls without their signals reaching anyone (each one's previous state comes back)."""
    previous = [obj.blockSignals(True) for obj in objects]
    try:
        yield
    finally:
        for obj, was in zip(objects, previous):
            obj.blockSignals(was)


def config_value(cfg: Any, key: str) -> Any:
    """The value at a dotted key of a RunConfig: ``config_value(cfg, "train.epochs")``."""
    node = cfg
    for part in key.split("."):
        node = node[part] if isinstance(node, Mapping) else getattr(node, part)
    return node


def names_key(keys: set[str], key: str) -> bool:
    """Whether a ``config_changed`` set concerns ``key``: everything, the key, a section above it
    or a part of it."""
    return any(k == "" or k == key or key.startswith(k + ".") or k.startswith(key + ".") for k in keys)


def fill_combo(combo: QComboBox, choices: Sequence[str], labels: Mapping[str, str] | None = None,
               tips: Mapping[str, str] | None = None) -> None:
    """One item per config choice (its itemData), shown by its label (the value itself when none)."""
    for value in choices:
        combo.addItem((labels or {}).get(value, value), value)
        if tips and value in tips:
            combo.setItemData(combo.count() - 1, tips[value], Qt.ItemDataRole.ToolTipRole)


class _Unmatched:
    """What a radio group reads when the checked button stands for no single value."""

    def __repr__(self) -> str:
        return "<no value>"


UNMATCHED = _Unmatched()


class _Adapter:
    """How one kind of control is read, written and watched."""

    def __init__(self, widget: Any, add_missing: bool = False, other: QAbstractButton | None = None):
        self.widget = widget
        self.add_missing = add_missing
        self.other = other

    def blockers(self) -> list[QObject]:
        return [self.widget]

    def read(self) -> Any:
        raise NotImplementedError

    def write(self, value: Any) -> None:
        raise NotImplementedError

    def shows(self, value: Any) -> bool:
        return self.read() == value

    def watch(self, changed: Callable[[], None]) -> None:
        raise NotImplementedError

    def default_cast(self) -> Converter:
        return lambda v: v


class _Spin(_Adapter):
    def read(self) -> Any:
        return self.widget.value()

    def write(self, value: Any) -> None:
        self.widget.setValue(value)

    def watch(self, changed: Callable[[], None]) -> None:
        self.widget.valueChanged.connect(lambda _v: changed())

    def default_cast(self) -> Converter:
        return int if isinstance(self.widget, QSpinBox) else float


class _Combo(_Adapter):
    """By itemData; a value without an item gets one (``add_missing``) or shows the first item."""

    def read(self) -> Any:
        return self.widget.currentData()

    def write(self, value: Any) -> None:
        i = self.widget.findData(value)
        if i < 0 and self.add_missing:
            self.widget.addItem(str(value), value)
            i = self.widget.count() - 1
        self.widget.setCurrentIndex(max(0, i))

    def watch(self, changed: Callable[[], None]) -> None:
        self.widget.currentIndexChanged.connect(lambda _i: changed())


class _Check(_Adapter):
    def read(self) -> Any:
        return self.widget.isChecked()

    def write(self, value: Any) -> None:
        self.widget.setChecked(bool(value))

    def watch(self, changed: Callable[[], None]) -> None:
        self.widget.toggled.connect(lambda _on: changed())


class _Line(_Adapter):
    """Written to the config when editing finishes (Return or leaving the field)."""

    def read(self) -> Any:
        return self.widget.text()

    def write(self, value: Any) -> None:
        self.widget.setText(str(value))

    def watch(self, changed: Callable[[], None]) -> None:
        self.widget.editingFinished.connect(changed)


class _Radios(_Adapter):
    """{value: radio button}; ``other`` is checked for any value not in the mapping and reads as
    UNMATCHED (its own handler decides what choosing it means)."""

    def buttons(self) -> list[QAbstractButton]:
        return list(self.widget.values()) + ([self.other] if self.other is not None else [])

    def blockers(self) -> list[QObject]:
        return self.buttons()

    def read(self) -> Any:
        return next((v for v, b in self.widget.items() if b.isChecked()), UNMATCHED)

    def write(self, value: Any) -> None:
        button = self.widget.get(value, self.other)
        if button is not None:
            button.setChecked(True)

    def shows(self, value: Any) -> bool:
        button = self.widget.get(value, self.other)
        return button is not None and button.isChecked()

    def watch(self, changed: Callable[[], None]) -> None:
        for b in self.widget.values():  # toggled(True) of the newly checked one is enough
            b.toggled.connect(lambda on: on and changed())


def _adapter(widget: Any, add_missing: bool, other: QAbstractButton | None) -> _Adapter:
    if isinstance(widget, Mapping):
        if not all(isinstance(b, QRadioButton) for b in widget.values()):
            raise TypeError("a radio group binds a mapping of values to QRadioButtons")
        return _Radios(widget, other=other)
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        return _Spin(widget)
    if isinstance(widget, QComboBox):
        return _Combo(widget, add_missing=add_missing)
    if isinstance(widget, QAbstractButton) and widget.isCheckable():
        return _Check(widget)
    if isinstance(widget, QLineEdit):
        return _Line(widget)
    raise TypeError(f"cannot bind a {type(widget).__name__}")


class Binding:
    """One control (or radio group) bound to one dotted config key of a Project."""

    def __init__(self, widget: Any, project: Any, key: str, to_widget: Converter | None = None,
                 from_widget: Converter | None = None, add_missing: bool = False,
                 other: QAbstractButton | None = None):
        self.widget, self.project, self.key = widget, project, key
        self._adapter = _adapter(widget, add_missing, other)
        self._to_widget = to_widget or (lambda v: v)
        self._from_widget = from_widget or self._adapter.default_cast()
        self._adapter.watch(self._user_changed)
        project.config_changed.connect(self._config_changed)
        self.refresh()

    def value(self) -> Any:
        """The config value as the control shows it."""
        return self._to_widget(config_value(self.project.cfg, self.key))

    def refresh(self) -> None:
        """Show the config's value (signals blocked; nothing happens if it is shown already)."""
        value = self.value()
        if not self._adapter.shows(value):
            with signals_blocked(*self._adapter.blockers()):
                self._adapter.write(value)

    def _config_changed(self, keys: set[str]) -> None:
        if names_key(keys, self.key):
            self.refresh()

    def _user_changed(self) -> None:
        raw = self._adapter.read()
        if raw is None or raw is UNMATCHED:  # a cleared combo box; a radio that is no single value
            return
        value = self._from_widget(raw)
        if value is not None:  # a converter may decline: no change
            self.project.set(self.key, value)


def bind(widget: Any, project: Any, key: str, *, to_widget: Converter | None = None,
         from_widget: Converter | None = None, add_missing: bool = False,
         other: QAbstractButton | None = None) -> Binding:
    """Bind a control to a dotted config key, both ways.

    ``widget``: a QSpinBox or QDoubleSpinBox (SciSpinBox too; valueChanged), a QComboBox (the
    items' data are the values; currentIndexChanged), a checkable button (toggled), a QLineEdit
    (editingFinished) or a ``{value: QRadioButton}`` mapping (``other``: the button for every
    other value, never written by the binding). ``to_widget`` turns the config value into the
    control's, ``from_widget`` the control's into the config's (returning None: no change).
    ``add_missing``: a combo box gets an item for a value it does not list."""
    return Binding(widget, project, key, to_widget=to_widget, from_widget=from_widget,
                   add_missing=add_missing, other=other)
