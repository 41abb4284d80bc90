"""One error base: what is the user's to fix (UserError) and what was stopped on request
(Cancelled), told apart by isinstance in the command line, the trainer and the window."""

import subprocess
import sys

import pytest

from conftest import tiny_config
from transfer_gui.cli import CliError, main
from transfer_gui.config import ConfigError
from transfer_gui.engine.catalog import DownloadCancelled, ModelError
from transfer_gui.engine.control import StopRequested
from transfer_gui.engine.export import ExportError
from transfer_gui.engine.freezing import GroupError
from transfer_gui.engine.loop import Trainer
from transfer_gui.engine.rundir import RunFolderError
from transfer_gui.engine.scan import ScanCancelled, ScanError
from transfer_gui.errors import Cancelled, UserError

USER_ERRORS = (ConfigError, ModelError, GroupError, ScanError, ExportError, RunFolderError, CliError)
CANCELS = (StopRequested, ScanCancelled, DownloadCancelled)


def test_every_user_fixable_error_derives_from_user_error():
    for cls in USER_ERRORS:
        assert issubclass(cls, UserError), cls
        assert not issubclass(cls, Cancelled), cls
    for cls in (ConfigError, ModelError, GroupError, ScanError, RunFolderError):
        assert issubclass(cls, ValueError), cls  # older `except ValueError` callers still catch them


def test_every_stop_derives_from_cancelled():
    for cls in CANCELS:
        assert issubclass(cls, Cancelled) and not issubclass(cls, UserError), cls


def test_errors_module_is_the_bottom_layer():
    code = ("import sys, transfer_gui.errors; "
            "sys.exit(1 if [m for m in sys.modules if m.startswith('transfer_gui.') and m != 'transfer_gui.errors'] "
            "else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


@pytest.mark.parametrize("exc", [GroupError("layers.frozen: unknown layer group 'x'"),
                                 ModelError("unknown model 'resnet81'"),
                                 ExportError("cannot write /x.onnx: Permission denied"),
                                 RunFolderError("/r is not a run folder (no config.toml)"),
                                 UserError("a problem of a kind added later")])
def test_cli_exits_2_with_one_line_for_any_user_error(monkeypatch, capsys, exc):
    import transfer_gui.cli as cli

    def boom(args):
        raise exc

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    args = parser.parse_args(["models"])
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    monkeypatch.setattr(args, "func", boom)
    with pytest.raises(SystemExit) as info:
        main(["models"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"transfer-gui: error: {exc}"]


def test_cli_lets_a_program_fault_through(monkeypatch):
    import transfer_gui.cli as cli

    parser = cli.build_parser()
    args = parser.parse_args(["models"])
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(parser, "parse_args", lambda argv: args)
    monkeypatch.setattr(args, "func", lambda a: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):
        main(["models"])


def test_trainer_marks_user_errors_as_bad_input(image_folders, tmp_path):
    result = Trainer().fit(tiny_config(image_folders, tmp_path / "run", **{"layers.train_from": "layer9"}))
    assert result.status == "failed" and result.bad_input and "layer9" in result.message
    missing = Trainer().fit(tiny_config(image_folders, tmp_path / "none"), resume=True)
    assert missing.status == "failed" and missing.bad_input
    assert missing.message == f"nothing to resume in {tmp_path / 'none'}: no checkpoints/last.pt"


def test_trainer_reports_any_cancel_as_stopped(image_folders, tmp_path, monkeypatch):
    from transfer_gui.engine import prepare as prepare_mod

    for cls in CANCELS:
        def cancelled(*a, cls=cls, **k):
            raise cls()

        monkeypatch.setattr(prepare_mod.data_mod, "build_split", cancelled)
        result = Trainer().fit(tiny_config(image_folders, tmp_path / cls.__name__))
        assert result.status == "stopped" and result.message == "Stopped before training began.", cls


def test_window_worker_classifies_by_the_bases():
    """In a child process: the window's worker imports Qt, these tests never do."""
    code = r"""
import os
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
from transfer_gui.engine.catalog import DownloadCancelled, ModelError
from transfer_gui.engine.scan import ScanCancelled
from transfer_gui.errors import Cancelled, UserError
from transfer_gui.ui.worker import finished_from_exception as f
for exc in (ScanCancelled("scan cancelled"), DownloadCancelled(), Cancelled()):
    e = f(exc, "r")
    assert (e.status, e.message) == ("stopped", "Stopped by request."), exc
assert f(ModelError("unknown model 'x'"), "r").message == "unknown model 'x'"
assert f(UserError("first line\nsecond"), "r").message == "first line"
assert f(KeyError("k"), "r").message == "KeyError: 'k'"
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
