"""`python -m transfer_gui` and the `transfer-gui` command."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    import multiprocessing

    multiprocessing.freeze_support()  # DataLoader workers in a frozen (PyInstaller) build
    from transfer_gui.cli import main as cli_main

    return cli_main(argv)


def gui_main() -> int:
    from transfer_gui.ui.app import run_app

    return run_app(sys.argv)


if __name__ == "__main__":
    sys.exit(main())
