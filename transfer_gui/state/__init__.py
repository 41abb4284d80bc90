"""What the window knows, in plain Python: the open project (its config, file and what was learned
about it), what the Data step shows of a scan, and the history of a run. Nothing here imports Qt,
so it can be used and tested without a display; the pages in ``transfer_gui.ui`` observe it
through :class:`transfer_gui.state.signals.Signal`."""
