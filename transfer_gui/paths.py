"""Where the application's assets are: ``resources/`` at the top of a checkout, installed as
the package ``transfer_gui.resources`` (by a wheel, an editable install or PyInstaller)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

INSTALLED_RESOURCES = Path(__file__).resolve().parent / "resources"  # a wheel puts them in the package
CHECKOUT_RESOURCES = Path(__file__).resolve().parent.parent / "resources"  # a checkout, PyInstaller


def resources_dir() -> Path:
    """The folder of assets: icons, the sample images, the list of model names.

    Installed files are plain files (never zipped), so this is a real folder that can be
    scanned like any user folder."""
    try:
        found = Path(str(importlib.resources.files("transfer_gui.resources")))
    except (ModuleNotFoundError, TypeError):
        found = None
    for folder in (found, INSTALLED_RESOURCES, CHECKOUT_RESOURCES):
        if folder is not None and (folder / "sample_data").is_dir():
            return folder
    return CHECKOUT_RESOURCES


def sample_data_dir() -> Path:
    """The bundled sample image set: one sub-folder per class (Fashion-MNIST, MIT licence)."""
    return resources_dir() / "sample_data"


def icon_file(size: int | None = None) -> Path:
    """The application icon: the 256 px PNG, or the one of ``size`` px from the hicolor set."""
    if size is None:
        return resources_dir() / "icons" / "transfer-gui.png"
    return resources_dir() / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "transfer-gui.png"
