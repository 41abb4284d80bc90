"""The PySide6 window. Imports the engine lazily so the window paints before torch loads."""
