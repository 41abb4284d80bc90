"""A folder the app may not write into (read-only, full, not allowed) is named in one sentence,
the same from the engine, the command line and the window: the folder and what to do, never the
hidden temporary file the write failed on (issue #24: ``[Errno 1] ... .metrics.json.ernf_g0c.part``).

Running as root, a chmod does not stop writing, so the folder is made read-only where the
engine's atomic writes create their temporary file: the OS error is the one a read-only file
system gives, with the temporary file's name in it, as in the report."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from conftest import tiny_config, trained_run
from transfer_gui import atomic, cli
from transfer_gui.engine import evaluate
from transfer_gui.engine.evaluate import EvaluationError
from transfer_gui.engine.loop import Trainer


def make_read_only(monkeypatch, folder: Path) -> None:
    """Writes into ``folder`` fail as on a read-only file system, naming the temporary file."""
    real = atomic.tempfile.mkstemp

    def mkstemp(*args, dir=None, prefix="", suffix="", **kw):
        if dir is not None and Path(dir).absolute() == folder.absolute():
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / f"{prefix}ernf_g0c{suffix}"))
        return real(*args, dir=dir, prefix=prefix, suffix=suffix, **kw)

    monkeypatch.setattr(atomic.tempfile, "mkstemp", mkstemp)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return trained_run(tmp_path_factory.mktemp("unwritable"))


def test_the_report_names_the_folder_not_the_temporary_file(run_dir, tmp_path, monkeypatch):
    out = tmp_path / "report"
    out.mkdir()
    (out / "metrics.json").write_text("{}")
    make_read_only(monkeypatch, out)
    with pytest.raises(EvaluationError) as caught:
        evaluate.write_outputs(evaluate.evaluation_from_run(run_dir, "val"), out)
    message = str(caught.value)
    assert message.startswith(f"cannot write the report folder {out}: {os.strerror(errno.EROFS)}. Choose another")
    assert ".part" not in message and "ernf_g0c" not in message
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json"] and (out / "metrics.json").read_text() == "{}"


def test_the_command_line_says_it_in_one_line_with_exit_2(run_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "report"
    out.mkdir()
    make_read_only(monkeypatch, out)
    with pytest.raises(SystemExit) as code:
        cli.main(["evaluate", str(run_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert code.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert f"error: cannot write the report folder {out}: {os.strerror(errno.EROFS)}." in err and ".part" not in err


def test_train_into_a_read_only_folder_words_it_alike(image_folders, tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    make_read_only(monkeypatch, out)
    result = Trainer().fit(tiny_config(image_folders, out))
    assert result.status == "failed" and result.bad_input
    assert result.message.startswith(f"cannot write the run folder {out}: {os.strerror(errno.EROFS)}. Choose another")


def test_a_write_failing_mid_run_names_the_run_folder(image_folders, tmp_path, monkeypatch):
    """The run folder was writable at the start; its checkpoints folder then fails (full disk,
    a mount gone read-only): the message names the run folder, and says the checkpoint is intact."""
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    make_read_only(monkeypatch, out / "checkpoints")
    result = Trainer().fit(tiny_config(image_folders, out))
    assert result.status == "failed" and ".part" not in result.message and "ernf_g0c" not in result.message
    assert result.message.startswith(f"cannot write the run folder {out}: {os.strerror(errno.EROFS)}.")
    assert "checkpoint is intact" in result.message
