"""Every command, option and positional of the command line explains itself in --help."""

from __future__ import annotations

import argparse

import pytest

from transfer_gui import cli

COMMANDS = ("gui", "train", "lr-find", "probe", "audit", "predict", "evaluate", "explain", "export", "models", "runs")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    found = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def _walk(parser: argparse.ArgumentParser, path: str = "transfer-gui"):
    yield path, parser
    for name, sub in _subparsers(parser).items():
        yield from _walk(sub, f"{path} {name}")


def test_every_action_has_help():
    missing = []
    for path, parser in _walk(cli.build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            text = action.help
            if not text or text == argparse.SUPPRESS or not str(text).strip():
                label = "/".join(action.option_strings) or action.dest
                missing.append(f"{path}: {label}")
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:  # the one-line description of each command
                    if not (choice.help or "").strip():
                        missing.append(f"{path}: command {choice.dest}")
    assert not missing, "no help text: " + ", ".join(missing)


def test_every_help_page_renders():
    """A stray % in a help string only fails when the page is formatted: format them all."""
    for path, parser in _walk(cli.build_parser()):
        text = parser.format_help()
        assert text.startswith("usage: "), path
        if path != "transfer-gui":
            assert parser.description, f"{path} has no description"
            assert "example:" in text, f"{path} has no example"


def test_top_level_help_lists_commands_with_a_line_each_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    for name in COMMANDS:
        line = next((ln for ln in lines if ln.strip().startswith(name + " ")), None)
        assert line is not None and len(line.split()) > 2, f"{name} is not listed with a description:\n{out}"
    assert "examples:" in out and "transfer-gui train --data" in out


def test_commands_and_options_keep_their_names():
    subs = _subparsers(cli.build_parser())
    assert tuple(subs) == COMMANDS
    quick = {"--set", "--data", "--val-data", "--out", "--model", "--weights", "--freeze", "--train-from", "--lr",
             "--head-lr", "--lr-decay", "--warmup-steps", "--warmup-epochs", "--schedule", "--optimizer", "--epochs",
             "--batch-size", "--image-size", "--device", "--no-augment", "--seed"}
    expected = {
        "train": quick | {"--resume", "--quiet"},
        "lr-find": quick | {"--steps", "--start-lr", "--end-lr", "--json", "--quiet"},
        "probe": quick | {"--tolerance", "--json", "--quiet"},
        "predict": {"--top-k", "--json", "--csv"},
        "evaluate": {"--data", "--out", "--split", "--quiet"},
        "export": {"--format", "--out", "--parity-images"},
        "models": {"--json"},
        "runs": {"--json"},
    }
    for name, options in expected.items():
        have = {s for a in subs[name]._actions for s in a.option_strings}
        assert options <= have, f"{name} lost {sorted(options - have)}"


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["predict", "model.onnx", "x.png", "--top-k", "two"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("transfer-gui: error: argument --top-k"), err
    assert "transfer-gui predict --help" in err[0]
