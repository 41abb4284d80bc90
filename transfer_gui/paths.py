"""Where the package's bundled files live."""

from __future__ import annotations

import importlib.resources
from pathlib import Path


def sample_data_dir() -> Path:
    """The bundled sample image set: one sub-folder per class (Fashion-MNIST, MIT licence).

    The package is installed as plain files (not zipped), so the resource is a real folder
    that can be scanned like any user folder.
    """
    folder = importlib.resources.files("transfer_gui") / "resources" / "sample_data"
    return Path(str(folder))
